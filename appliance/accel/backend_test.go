package accel

import (
	"path/filepath"
	"strings"
	"testing"
)

func b(name string, loadable bool, devices int) Backend {
	return Backend{Name: name, Library: "lib" + name + ".so", Loadable: loadable, Devices: ptr(devices), Error: map[bool]string{false: "lib" + name + ".so: cannot open shared object file: No such file or directory"}[loadable]}
}

func TestSelect(t *testing.T) {
	all := []Backend{b("cuda", true, 2), b("rocm", true, 1), b("intel", true, 1), b("opencl", true, 3), {Name: "cpu", Loadable: true}}
	cases := []struct {
		req   string
		avail []Backend
		want  string
		err   string
	}{
		{"auto", all, "cuda", ""},
		{"", all, "cuda", ""},
		{" AUTO ", all, "cuda", ""},
		{"auto", []Backend{b("cuda", false, 0), b("rocm", true, 1), b("opencl", true, 1)}, "rocm", ""},
		{"auto", []Backend{b("cuda", true, 0), b("rocm", false, 0), b("intel", true, 1)}, "intel", ""},
		// OpenCL with only a CPU device (PoCL) is no accelerator: auto stays on the CPU.
		{"auto", []Backend{b("cuda", false, 0), b("opencl", true, 0)}, "cpu", ""},
		{"auto", []Backend{b("opencl", true, 1)}, "opencl", ""},
		{"auto", nil, "cpu", ""},
		{"cpu", all, "cpu", ""},
		{"rocm", all, "rocm", ""},
		{"opencl", []Backend{b("opencl", true, 0)}, "opencl", ""},
		{"cuda", []Backend{b("cuda", false, 0)}, "", `accelerator "cuda" requested but libcuda.so cannot be loaded: libcuda.so: cannot open shared object file`},
		{"cuda", []Backend{b("cuda", true, 0)}, "", "libcuda.so loads but reports no devices"},
		{"intel", []Backend{b("cuda", true, 1)}, "", "was not probed"},
		{"vulkan", all, "", `accelerator "vulkan" unknown`},
	}
	for _, c := range cases {
		got, err := Select(c.req, c.avail)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Select(%q) err = %v, want it to contain %q", c.req, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Select(%q) = %q, %v; want %q", c.req, got, err, c.want)
		}
	}
}

func backendNamed(t *testing.T, bs []Backend, name string) Backend {
	t.Helper()
	for _, b := range bs {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no backend %s in %+v", name, bs)
	return Backend{}
}

// TestProbeFakeRuntimes loads stand-ins for each vendor runtime through purego and checks what
// the probe makes of their answers, then the policy on top.
func TestProbeFakeRuntimes(t *testing.T) {
	cuda := buildFakeLib(t, "runtimes.c", "libcuda.so.1", "CUDA_OK")
	hip := buildFakeLib(t, "runtimes.c", "libamdhip64.so", "HIP_OK")
	ze := buildFakeLib(t, "runtimes.c", "libze_loader.so.1", "ZE_UNINIT")
	ocl := buildFakeLib(t, "runtimes.c", "libOpenCL.so.1", "OCL_CPU_ONLY")
	missing := filepath.Join(t.TempDir(), "libcuda.so.1")

	bs := probeBackends(map[string][]string{
		BackendCUDA: {missing, cuda}, BackendROCm: {hip}, BackendIntel: {ze}, BackendOpenCL: {ocl},
	}, false)
	if c := backendNamed(t, bs, "cuda"); !c.Loadable || c.Library != cuda || !eqI(c.Devices, 2) || c.Version != "12.4" || c.Error != "" {
		t.Errorf("cuda %+v (the missing first candidate must not hide the second)", c)
	}
	if h := backendNamed(t, bs, "rocm"); !h.Loadable || !eqI(h.Devices, 1) || h.Version != "6.0" {
		t.Errorf("rocm %+v", h)
	}
	if z := backendNamed(t, bs, "intel"); z.Loadable || z.Error != ze+": zeInit failed with ze_result 0x78000001" {
		t.Errorf("intel %+v", z)
	}
	if o := backendNamed(t, bs, "opencl"); !o.Loadable || !eqI(o.Devices, 0) {
		t.Errorf("opencl %+v", o)
	}
	if c := backendNamed(t, bs, "cpu"); !c.Loadable {
		t.Errorf("cpu %+v", c)
	}
	if got, err := Select("auto", bs); got != "cuda" || err != nil {
		t.Errorf("auto = %q, %v", got, err)
	}
	if _, err := Select("intel", bs); err == nil || !strings.Contains(err.Error(), ze) || !strings.Contains(err.Error(), "zeInit failed") {
		t.Errorf("intel request: %v", err)
	}

	// A library that is not the runtime it claims: the missing entry point is named.
	wrong := probe(BackendCUDA, []string{hip})
	if wrong.Loadable || !strings.Contains(wrong.Error, "missing symbol cuInit") {
		t.Errorf("wrong library %+v", wrong)
	}
	// Nothing loads: every candidate and the loader's message are named.
	none := probe(BackendROCm, []string{missing, missing + ".6"})
	if none.Loadable || none.Library != missing || !strings.Contains(none.Error, missing+".6") || !strings.Contains(none.Error, "No such file") {
		t.Errorf("none %+v", none)
	}

	noDev := probe(BackendCUDA, []string{buildFakeLib(t, "runtimes.c", "libcuda.so.1", "CUDA_NO_DEVICE")})
	if !noDev.Loadable || !eqI(noDev.Devices, 0) {
		t.Errorf("no device %+v", noDev)
	}
	noPlat := probe(BackendOpenCL, []string{buildFakeLib(t, "runtimes.c", "libOpenCL.so.1", "OCL_NO_PLATFORM")})
	if noPlat.Loadable || !strings.Contains(noPlat.Error, "no OpenCL platform") {
		t.Errorf("no platform %+v", noPlat)
	}
}

// Not live and not named in Libraries: listed, not probed, never selected.
func TestBackendsNotProbedOffline(t *testing.T) {
	bs := probeBackends(nil, false)
	if len(bs) != 5 {
		t.Fatalf("%+v", bs)
	}
	for _, b := range bs[:4] {
		if b.Loadable || b.Devices != nil || !strings.HasPrefix(b.Error, "not probed") || b.Library != DefaultLibraries[b.Name][0] {
			t.Errorf("%+v", b)
		}
	}
	if got, _ := Select("auto", bs); got != "cpu" {
		t.Errorf("auto = %s", got)
	}
}
