//go:build linux

package accel

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
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

// TestDetectLiveNVIDIA checks detection against nvidia-smi on a machine with NVIDIA GPUs: every
// GPU the driver lists must be found at its PCI address with NVML's facts (name, memory, compute
// capability, driver), and auto must pick CUDA where the driver's runtime library is present.
func TestDetectLiveNVIDIA(t *testing.T) {
	smi, err := exec.LookPath("nvidia-smi")
	if err != nil {
		t.Skip("nvidia-smi not found: no NVIDIA driver on this machine")
	}
	out, err := exec.Command(smi, "--query-gpu=pci.bus_id,name,memory.total,compute_cap,driver_version",
		"--format=csv,noheader,nounits").Output()
	if err != nil {
		t.Fatalf("nvidia-smi: %v", err)
	}
	rep, err := Detect(Options{Live: true})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("nvidia-smi lists no GPU: %q", out)
	}
	for _, line := range lines {
		f := strings.Split(line, ",")
		if len(f) != 5 {
			t.Fatalf("nvidia-smi line %q: want 5 fields", line)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		addr := smiBusID(t, f[0])
		a := findAccel(rep.Accelerators, addr)
		if a == nil {
			t.Errorf("nvidia-smi lists %s (%s); detection found %+v", addr, f[1], rep.Accelerators)
			continue
		}
		if a.Vendor != "nvidia" || !strings.Contains(a.Source, "nvml") {
			t.Errorf("%s: vendor %q, source %q: want nvidia from nvml (warnings %q)", addr, a.Vendor, a.Source, rep.Warnings)
		}
		if a.Name != f[1] {
			t.Errorf("%s: name %q, nvidia-smi %q", addr, a.Name, f[1])
		}
		mib, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			t.Fatalf("nvidia-smi memory.total %q: %v", f[2], err)
		}
		if a.MemoryTotalBytes == nil || *a.MemoryTotalBytes>>20 != mib {
			t.Errorf("%s: memory total %v bytes, nvidia-smi %d MiB", addr, a.MemoryTotalBytes, mib)
		}
		if a.MemoryFreeBytes == nil || *a.MemoryFreeBytes > *a.MemoryTotalBytes {
			t.Errorf("%s: memory free %v of %v", addr, a.MemoryFreeBytes, a.MemoryTotalBytes)
		}
		if a.ComputeCapability != f[3] {
			t.Errorf("%s: compute capability %q, nvidia-smi %q", addr, a.ComputeCapability, f[3])
		}
		if a.DriverVersion != f[4] {
			t.Errorf("%s: driver %q, nvidia-smi %q", addr, a.DriverVersion, f[4])
		}
		if a.RuntimeVersion == "" {
			t.Errorf("%s: no CUDA version from NVML", addr)
		}
		t.Logf("%s: %s, %d MiB, compute %s, driver %s, CUDA %s, source %s", addr, a.Name, mib, a.ComputeCapability, a.DriverVersion, a.RuntimeVersion, a.Source)
	}
	for _, be := range rep.Backends {
		if be.Name != BackendCUDA {
			continue
		}
		devices := -1
		if be.Devices != nil {
			devices = *be.Devices
		}
		t.Logf("backend cuda: library %s, loadable %v, devices %d, version %s, error %q", be.Library, be.Loadable, devices, be.Version, be.Error)
		if be.Loadable && devices != len(lines) {
			t.Errorf("CUDA runtime reports %d devices, nvidia-smi %d", devices, len(lines))
		}
	}
	if _, err := os.Stat("/dev/nvidiactl"); err == nil && rep.SelectedBackend != BackendCUDA {
		t.Errorf("NVIDIA GPUs and /dev/nvidiactl here, yet auto selected %q (warnings %q)", rep.SelectedBackend, rep.Warnings)
	}
}

// smiBusID turns nvidia-smi's "00000000:3B:00.0" into sysfs's "0000:3b:00.0".
func smiBusID(t *testing.T, s string) string {
	t.Helper()
	var dom, bus, dev, fn uint32
	if _, err := fmt.Sscanf(s, "%x:%x:%x.%x", &dom, &bus, &dev, &fn); err != nil {
		t.Fatalf("nvidia-smi bus id %q: %v", s, err)
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", dom, bus, dev, fn)
}
