// Package accel finds out what a node is made of: CPU, memory (honouring cgroup limits),
// accelerators with their memory and live telemetry, which vendor runtimes can be loaded, and the
// network (through netstack/iface). Placement, backend choice and the dashboard all read its
// Report.
//
// Every source is read under a root given in Options, so tests describe whole machines as
// directory trees. Detection never fails because one source is missing or broken: it records a
// warning naming the source and the reason, and reports the rest.
package accel

import (
	_ "embed"

	"github.com/exo-nix/exo/netstack/iface"
)

// Schema is the JSON Schema (draft 2020-12) of a Report as `exo detect --json` prints it.
//
//go:embed detect.schema.json
var Schema []byte

// Report is the result of Detect. Unknown numbers are null, unknown strings empty, lists never
// null.
type Report struct {
	Hostname string `json:"hostname"`
	// Platform names the machine: the device tree's model, or DMI vendor and product.
	Platform        string         `json:"platform"`
	CPU             CPU            `json:"cpu"`
	Memory          Memory         `json:"memory"`
	Accelerators    []Accelerator  `json:"accelerators"`
	Backends        []Backend      `json:"backends"`
	SelectedBackend string         `json:"selected_backend"`
	Network         *iface.Network `json:"network"`
	Warnings        []string       `json:"warnings"`
}

// CPU describes the processors.
type CPU struct {
	Model         string `json:"model"`
	Vendor        string `json:"vendor"`
	Arch          string `json:"arch"` // x86_64 or aarch64, as the cpuinfo format shows
	PhysicalCores int    `json:"physical_cores"`
	LogicalCores  int    `json:"logical_cores"`
	// Features lists the SIMD extensions the kernels care about, present on every CPU: x86 names
	// as in /proc/cpuinfo (avx2, fma, f16c, avx512f, avx512_vnni, avx_vnni, amx_int8, ...);
	// arm64 as neon, fp16, dotprod, i8mm, bf16, sve, sve2.
	Features  []string `json:"features"`
	NUMANodes int      `json:"numa_nodes"`
}

// Memory is system memory as a process of this node may use it.
type Memory struct {
	TotalBytes uint64 `json:"total_bytes"`
	// AvailableBytes is MemAvailable, lowered to what the cgroup limit still allows.
	AvailableBytes uint64 `json:"available_bytes"`
	// CgroupLimitBytes is the tightest memory limit on this process's cgroup; null when none.
	CgroupLimitBytes *uint64 `json:"cgroup_limit_bytes"`
}

// Accelerator is one GPU or other compute device.
type Accelerator struct {
	Vendor string `json:"vendor"` // nvidia, amd, intel, apple, arm, broadcom, ... or pci-XXXX
	Name   string `json:"name"`
	// PCIAddress is empty for SoC GPUs found in the device tree.
	PCIAddress string `json:"pci_address"`
	PCIID      string `json:"pci_id"` // vendor:device, lower-case hex
	Driver     string `json:"driver"`
	NUMANode   *int   `json:"numa_node"`
	// Integrated GPUs share system memory through a small carve-out; UnifiedMemory ones (Apple,
	// Arm SoCs) address all of it, and MemoryTotalBytes is then the system's.
	Integrated         bool     `json:"integrated"`
	UnifiedMemory      bool     `json:"unified_memory"`
	MemoryTotalBytes   *uint64  `json:"memory_total_bytes"`
	MemoryFreeBytes    *uint64  `json:"memory_free_bytes"`
	UtilizationPercent *int     `json:"utilization_percent"`
	TemperatureC       *float64 `json:"temperature_c"`
	PowerW             *float64 `json:"power_w"`
	// ComputeCapability: NVIDIA "8.0", AMD "gfx90a", Apple "g13x".
	ComputeCapability string `json:"compute_capability"`
	DriverVersion     string `json:"driver_version"`
	// RuntimeVersion is the newest runtime the driver supports (NVIDIA: CUDA version).
	RuntimeVersion string `json:"runtime_version"`
	// Source lists what the facts came from, joined by "+": pci, nvml, procfs, sysfs, kfd,
	// devicetree, sysctl.
	Source string `json:"source"`
}

// Options say where to look. Empty roots mean the running system's.
type Options struct {
	SysfsRoot   string // default /sys
	ProcfsRoot  string // default /proc
	DevtreeRoot string // default /proc/device-tree
	// NVMLLibrary is the NVML library to load (path or soname). Empty: libnvidia-ml.so.1 when
	// Live, and no NVML otherwise.
	NVMLLibrary string
	// Live: the roots are this running machine's, so netlink, NVML and the vendor runtimes
	// installed here describe the same machine and may be asked.
	Live bool
	// Accelerator is the configured backend request (auto, cpu, cuda, rocm, intel, opencl);
	// empty means auto. It only decides SelectedBackend.
	Accelerator string
	// Libraries overrides the libraries tried for a backend (key: cuda, rocm, intel, opencl).
	// When not Live, only the backends named here are probed.
	Libraries map[string][]string
}
