//go:build darwin

package accel

import (
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// darwinDetect reads CPU, memory and the Apple GPU from sysctl. Apple silicon's GPU shares all
// of memory with the CPU, so it reports system memory as its own.
func darwinDetect(d *detector, r *Report) []Accelerator {
	r.CPU = CPU{Features: []string{}, NUMANodes: 1}
	brand, err := unix.Sysctl("machdep.cpu.brand_string")
	if err != nil {
		d.warnf("CPU: sysctl machdep.cpu.brand_string: %v", err)
	}
	r.CPU.Model = brand
	r.CPU.Arch = map[string]string{"arm64": "aarch64", "amd64": "x86_64"}[runtime.GOARCH]
	if strings.HasPrefix(brand, "Apple") {
		r.CPU.Vendor = "Apple"
	} else if i := strings.IndexByte(brand, ' '); i > 0 {
		r.CPU.Vendor = brand[:i]
	}
	if v, err := unix.SysctlUint32("hw.physicalcpu"); err == nil {
		r.CPU.PhysicalCores = int(v)
	} else {
		d.warnf("CPU: sysctl hw.physicalcpu: %v", err)
	}
	if v, err := unix.SysctlUint32("hw.logicalcpu"); err == nil {
		r.CPU.LogicalCores = int(v)
	} else {
		d.warnf("CPU: sysctl hw.logicalcpu: %v", err)
	}
	if runtime.GOARCH == "arm64" {
		for _, f := range []struct{ sysctl, name string }{
			{"hw.optional.AdvSIMD", "neon"}, {"hw.optional.arm.FEAT_FP16", "fp16"},
			{"hw.optional.arm.FEAT_DotProd", "dotprod"}, {"hw.optional.arm.FEAT_I8MM", "i8mm"},
			{"hw.optional.arm.FEAT_BF16", "bf16"},
		} {
			if v, err := unix.SysctlUint32(f.sysctl); err == nil && v == 1 {
				r.CPU.Features = append(r.CPU.Features, f.name)
			}
		}
	}
	mem, err := unix.SysctlUint64("hw.memsize")
	if err != nil {
		d.warnf("memory: sysctl hw.memsize: %v", err)
	}
	r.Memory.TotalBytes = mem
	// macOS has no MemAvailable; free plus inactive pages would need host_statistics (Mach).
	r.Memory.AvailableBytes = mem
	d.warnf("memory: available memory is not measured on macOS; reporting the total")
	if runtime.GOARCH != "arm64" {
		return nil
	}
	a := Accelerator{Vendor: "apple", Name: brand + " GPU", UnifiedMemory: true, Driver: "metal", Source: "sysctl"}
	if mem > 0 {
		a.MemoryTotalBytes = ptr(mem)
	}
	return []Accelerator{a}
}
