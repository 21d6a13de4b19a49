package accel

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// buildFakeLib compiles testdata/fakelib/<src> into a shared library named name in a temporary
// directory, with the given -D variant flags.
func buildFakeLib(t *testing.T, src, name string, defines ...string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gcc is needed to build the fake vendor libraries: %v", err)
		}
		t.Skipf("gcc not found (%v); the fake vendor libraries cannot be built", err)
	}
	out := filepath.Join(t.TempDir(), name)
	args := []string{"-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", out, filepath.Join("testdata", "fakelib", src)}
	for _, d := range defines {
		args = append(args, "-D"+d)
	}
	if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

const (
	helperEnvLib     = "EXO_ACCEL_TEST_NVML_LIB"
	helperEnvMachine = "EXO_ACCEL_TEST_MACHINE"
	reportBegin      = "---- report ----"
	reportEnd        = "---- end ----"
)

// TestNVMLHelperProcess is not a test: runNVMLHelper starts the test binary again to run Detect
// with one NVML library in a fresh process. go-nvml binds NVML's entry points process-wide the
// first time they are called, so two different libraries cannot be tried in one process.
func TestNVMLHelperProcess(t *testing.T) {
	lib := os.Getenv(helperEnvLib)
	if lib == "" {
		t.Skip("helper process for the NVML tests")
	}
	o, root := machine(t, os.Getenv(helperEnvMachine))
	o.NVMLLibrary = lib
	rep, err := Detect(o)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	js = bytes.ReplaceAll(js, []byte(root), []byte("$ROOT"))
	js = bytes.ReplaceAll(js, []byte(lib), []byte("$NVML"))
	os.Stdout.WriteString(reportBegin + "\n" + string(js) + "\n" + reportEnd + "\n")
}

func runNVMLHelper(t *testing.T, machineName, lib string) (*Report, []byte) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNVMLHelperProcess$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), helperEnvLib+"="+lib, helperEnvMachine+"="+machineName)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	s := string(out)
	i, j := strings.Index(s, reportBegin), strings.Index(s, reportEnd)
	if i < 0 || j < i {
		t.Fatalf("helper printed no report:\n%s", out)
	}
	js := []byte(strings.TrimSpace(s[i+len(reportBegin) : j]))
	var rep Report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatalf("helper report: %v\n%s", err, js)
	}
	return &rep, append(js, '\n')
}

func TestNVMLFakeTwoDevices(t *testing.T) {
	if !nvmlBuiltIn {
		t.Skip("built without cgo: NVML is not compiled in (TestNVMLWithoutCgo covers this build)")
	}
	lib := buildFakeLib(t, "nvml.c", "libnvidia-ml.so.1")
	rep, js := runNVMLHelper(t, "nvidia-roce-bond", lib)
	validate(t, js)
	if len(rep.Accelerators) != 2 {
		t.Fatalf("accelerators %+v", rep.Accelerators)
	}
	type want struct {
		addr        string
		free        uint64
		util        int
		temp, power float64
		numa        int
	}
	for _, w := range []want{
		{"0000:01:00.0", 85520809984 - 62914560000, 87, 63, 512.345, 0},
		{"0000:41:00.0", 85520809984 - 553648128, 0, 34, 71.25, 1},
	} {
		a := accelAt(t, rep, w.addr)
		if a.Name != "NVIDIA H100 80GB HBM3" || !eqU(a.MemoryTotalBytes, 85520809984) || !eqU(a.MemoryFreeBytes, w.free) ||
			!eqI(a.UtilizationPercent, w.util) || !eqF(a.TemperatureC, w.temp) || !eqF(a.PowerW, w.power) ||
			a.ComputeCapability != "9.0" || a.DriverVersion != "550.54.15" || a.RuntimeVersion != "12.4" ||
			a.Source != "pci+procfs+nvml" || !eqI(a.NUMANode, w.numa) {
			t.Errorf("%s: %+v", w.addr, a)
		}
	}
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings %q", rep.Warnings)
	}
	golden := filepath.Join("testdata", "golden", "nvidia-roce-bond+nvml.json")
	if *update {
		if err := os.WriteFile(golden, js, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	wantJS, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(js, wantJS) {
		t.Errorf("%s differs:\n%s", golden, lineDiff(string(wantJS), string(js)))
	}
}

func TestNVMLFakeErrors(t *testing.T) {
	if !nvmlBuiltIn {
		t.Skip("built without cgo")
	}
	lib := buildFakeLib(t, "nvml.c", "libnvidia-ml.so.1", "FAKE_ERRORS")
	rep, js := runNVMLHelper(t, "nvidia-roce-bond", lib)
	validate(t, js)
	wantWarnings := []string{
		"NVML: nvmlSystemGetDriverVersion: Unknown Error (code 999)",
		"NVML: device 0000:01:00.0: nvmlDeviceGetMemoryInfo: Unknown Error (code 999)",
		"NVML: device 0000:01:00.0: nvmlDeviceGetTemperature: GPU is lost (code 15)",
		"NVML: device index 1: nvmlDeviceGetPciInfo: GPU is lost (code 15)",
	}
	if !reflect.DeepEqual(rep.Warnings, wantWarnings) {
		t.Errorf("warnings\n got %q\nwant %q", rep.Warnings, wantWarnings)
	}
	a := accelAt(t, rep, "0000:01:00.0")
	// What did answer is used; what failed stays unknown; procfs's driver version survives.
	if a.MemoryTotalBytes != nil || a.UtilizationPercent != nil || a.TemperatureC != nil || !eqF(a.PowerW, 512.345) ||
		a.ComputeCapability != "9.0" || a.DriverVersion != "550.54.15" {
		t.Errorf("device 0: %+v", a)
	}
	if b := accelAt(t, rep, "0000:41:00.0"); b.Source != "pci+procfs" || b.PowerW != nil {
		t.Errorf("lost device 1 must keep only PCI/procfs facts: %+v", b)
	}
}

func TestNVMLFakeInitFails(t *testing.T) {
	if !nvmlBuiltIn {
		t.Skip("built without cgo")
	}
	lib := buildFakeLib(t, "nvml.c", "libnvidia-ml.so.1", "FAKE_INIT_FAILS")
	rep, js := runNVMLHelper(t, "nvidia-roce-bond", lib)
	validate(t, js)
	if !reflect.DeepEqual(rep.Warnings, []string{"NVML: nvmlInit on $NVML: Driver Not Loaded (code 9)"}) {
		t.Errorf("warnings %q", rep.Warnings)
	}
	if len(rep.Accelerators) != 2 || rep.Accelerators[0].Source != "pci+procfs" {
		t.Errorf("accelerators %+v", rep.Accelerators)
	}
}

// Libraries that go-nvml must never be handed: these run in this process, since the checks
// happen before go-nvml binds anything.
func TestNVMLUnusableLibraries(t *testing.T) {
	noCount := ""
	if _, err := exec.LookPath("gcc"); err == nil || os.Getenv("CI") == "true" {
		noCount = buildFakeLib(t, "nvml.c", "libnvidia-ml.so.1", "FAKE_NO_COUNT")
	}
	notELF := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
	writeFile(t, notELF, "this is not a shared object\n")
	missing := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")

	cases := []struct{ name, lib, want string }{
		{"missing", missing, "NVML: cannot load " + missing + ": "},
		{"not ELF", notELF, "NVML: cannot load " + notELF + ": "},
		{"no nvmlDeviceGetCount_v2", noCount, "NVML: " + noCount + " lacks nvmlDeviceGetCount_v2; not using it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.lib == "" {
				t.Skip("gcc not found")
			}
			if !nvmlBuiltIn {
				c.want = "NVML: this binary was built without cgo"
			}
			o, _ := machine(t, "nvidia-roce-bond")
			o.NVMLLibrary = c.lib
			rep, err := Detect(o)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Warnings) != 1 || !strings.HasPrefix(rep.Warnings[0], c.want) {
				t.Errorf("warnings %q, want one starting %q", rep.Warnings, c.want)
			}
			if len(rep.Accelerators) != 2 || rep.Accelerators[1].Name != "NVIDIA H100 80GB HBM3" {
				t.Errorf("accelerators %+v", rep.Accelerators)
			}
		})
	}
}

// NVML sees GPUs that the PCI scan did not (a container with a partial sysfs): they are added.
func TestNVMLDevicesMissingFromPCI(t *testing.T) {
	if !nvmlBuiltIn {
		t.Skip("built without cgo")
	}
	lib := buildFakeLib(t, "nvml.c", "libnvidia-ml.so.1")
	rep, js := runNVMLHelper(t, "cpu-vm-cgroup", lib)
	validate(t, js)
	if len(rep.Accelerators) != 2 {
		t.Fatalf("accelerators %+v", rep.Accelerators)
	}
	for _, a := range rep.Accelerators {
		if a.Source != "nvml" || a.PCIID != "10de:2330" || a.Vendor != "nvidia" || a.MemoryTotalBytes == nil || a.Driver != "" {
			t.Errorf("%+v", a)
		}
	}
}
