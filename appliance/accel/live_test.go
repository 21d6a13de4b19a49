//go:build linux

package accel

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDetectLive runs detection on the machine the tests run on and checks it against what the
// Go runtime and the kernel say through other means.
func TestDetectLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("live detection is tested on Linux")
	}
	rep, err := Detect(Options{Live: true})
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	validate(t, js)
	host, _ := os.Hostname()
	if rep.Hostname != host {
		t.Errorf("hostname %q, os.Hostname %q", rep.Hostname, host)
	}
	if rep.CPU.LogicalCores < runtime.NumCPU() || rep.CPU.PhysicalCores < 1 || rep.CPU.PhysicalCores > rep.CPU.LogicalCores {
		t.Errorf("cpu %+v with runtime.NumCPU() = %d", rep.CPU, runtime.NumCPU())
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	if total := uint64(si.Totalram) * uint64(si.Unit); rep.Memory.TotalBytes != total {
		t.Errorf("memory total %d, sysinfo says %d", rep.Memory.TotalBytes, total)
	}
	if rep.Memory.AvailableBytes == 0 || rep.Memory.AvailableBytes > rep.Memory.TotalBytes {
		t.Errorf("memory %+v", rep.Memory)
	}
	if len(rep.Backends) != 5 || rep.Backends[4].Name != "cpu" {
		t.Errorf("backends %+v", rep.Backends)
	}
	if rep.SelectedBackend == "" {
		t.Errorf("auto selected nothing: %q", rep.Warnings)
	}
	var lo bool
	for _, it := range rep.Network.Interfaces {
		if it.Kind == "loopback" {
			lo = true
		}
	}
	if !lo {
		t.Errorf("no loopback interface in %+v", rep.Network.Interfaces)
	}
	// A machine with no GPU device nodes at all must come out CPU-only.
	gpuNodes, _ := filepath.Glob("/dev/nvidia[0-9]*")
	dri, _ := filepath.Glob("/dev/dri/renderD*")
	if len(gpuNodes)+len(dri) == 0 && !isDir("/dev/kfd") {
		if len(rep.Accelerators) != 0 || rep.SelectedBackend != BackendCPU {
			t.Errorf("no GPU device nodes here, yet accelerators %+v, selected %q", rep.Accelerators, rep.SelectedBackend)
		}
	}
	t.Logf("cpu %q %d/%d, %d accelerators, selected %s, %d warnings %q", rep.CPU.Model, rep.CPU.PhysicalCores, rep.CPU.LogicalCores, len(rep.Accelerators), rep.SelectedBackend, len(rep.Warnings), rep.Warnings)
}
