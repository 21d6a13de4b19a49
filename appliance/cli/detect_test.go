package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/exo-nix/exo/appliance/accel"
	"github.com/exo-nix/exo/netstack/iface/ifacetest"
)

func runDetect(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"detect"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func validateDetectJSON(t *testing.T, doc string) {
	t.Helper()
	s, err := jsonschema.UnmarshalJSON(bytes.NewReader(accel.Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("detect.schema.json", s); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("detect.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("exo detect --json does not match the schema: %v", err)
	}
}

// On the machine running the tests (CPU-only in CI): valid JSON, the CPU backend chosen.
func TestDetectJSONLive(t *testing.T) {
	code, out, errs := runDetect(t, "--json", "--accelerator", "auto")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	validateDetectJSON(t, out)
	var rep accel.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.CPU.LogicalCores < 1 || rep.Memory.TotalBytes == 0 || rep.SelectedBackend == "" {
		t.Errorf("report %+v", rep)
	}
}

func TestDetectFakeMachine(t *testing.T) {
	root := ifacetest.Extract(t, filepath.Join("..", "accel", "testdata", "machines", "nvidia-roce-bond.txtar"))
	args := []string{"--sysfs-root", filepath.Join(root, "sys"), "--procfs-root", filepath.Join(root, "proc")}

	code, out, errs := runDetect(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	validateDetectJSON(t, out)
	if !strings.Contains(out, `"name": "NVIDIA H100 80GB HBM3"`) || !strings.Contains(out, `"mode": "802.3ad"`) {
		t.Errorf("JSON lacks the machine's GPUs or bond:\n%s", out)
	}

	code, out, errs = runDetect(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"host:", "gpu-a1 (Supermicro AS -4125GS-TNRT)",
		"AMD EPYC 9124 16-Core Processor, x86_64, 16 cores / 16 threads, 2 NUMA node(s)",
		"0000:41:00.0", "NVIDIA H100 80GB HBM3",
		"selected backend: cpu",
		"bond bond0: 802.3ad, members: ens2f0np0 up active 25000 Mb/s; ens2f1np1 down",
		"rdma mlx5_0 port 1: ACTIVE Ethernet 100 Gb/s -> ens3f0np0",
		"warnings:", "NVML: not queried",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestDetectErrors(t *testing.T) {
	code, _, errs := runDetect(t, "--sysfs-root", filepath.Join(t.TempDir(), "missing"))
	if code != exitConfig || !strings.Contains(errs, "sysfs root") {
		t.Errorf("missing root: exit %d, %q", code, errs)
	}
	// An explicit backend that cannot load is reported, not hidden.
	root := ifacetest.Extract(t, filepath.Join("..", "accel", "testdata", "machines", "cpu-vm-cgroup.txtar"))
	code, out, _ := runDetect(t, "--json", "--sysfs-root", filepath.Join(root, "sys"), "--procfs-root", filepath.Join(root, "proc"), "--accelerator", "cuda")
	if code != 0 || !strings.Contains(out, `"selected_backend": ""`) || !strings.Contains(out, `backend: accelerator \"cuda\" requested but libcuda.so.1 cannot be loaded`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
