package accel

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func addSource(a *Accelerator, s string) {
	for _, have := range strings.Split(a.Source, "+") {
		if have == s {
			return
		}
	}
	if a.Source == "" {
		a.Source = s
	} else {
		a.Source += "+" + s
	}
}

// nvidiaProc fills what the NVIDIA kernel module says in procfs: the marketing name (also when
// NVML is absent) and the driver version.
func (d *detector) nvidiaProc(a *Accelerator) {
	info := filepath.Join(d.proc, "driver", "nvidia", "gpus", a.PCIAddress, "information")
	if f, err := os.Open(info); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "Model" {
				a.Name = strings.TrimSpace(v)
				addSource(a, "procfs")
			}
		}
		f.Close()
	}
	if v := nvidiaDriverVersion(filepath.Join(d.proc, "driver", "nvidia", "version")); v != "" {
		a.DriverVersion = v
		addSource(a, "procfs")
	}
}

var versionRe = regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+)?$`)

// nvidiaDriverVersion finds the version in "NVRM version: NVIDIA UNIX x86_64 Kernel Module
// 550.54.15  Tue Mar  5 ..." (the open module's line differs, but the version is still the first
// dotted number).
func nvidiaDriverVersion(path string) string {
	first, _, _ := strings.Cut(readTrim(path), "\n")
	for _, f := range strings.Fields(first) {
		if versionRe.MatchString(f) {
			return f
		}
	}
	return ""
}

// hwmon reads temperature and power from the hwmon directory of a PCI device. preferTemp names
// the sensor label to use when there are several (amdgpu: edge; xe: pkg).
func hwmon(devDir, preferTemp string) (temp, power *float64) {
	dirs, _ := filepath.Glob(filepath.Join(devDir, "hwmon", "hwmon*"))
	sort.Strings(dirs)
	for _, h := range dirs {
		if temp == nil {
			inputs, _ := filepath.Glob(filepath.Join(h, "temp*_input"))
			sort.Strings(inputs)
			chosen := ""
			for _, in := range inputs {
				label := readTrim(strings.TrimSuffix(in, "_input") + "_label")
				if chosen == "" || label == preferTemp {
					chosen = in
				}
				if label == preferTemp {
					break
				}
			}
			if chosen != "" {
				if v, ok := readInt(chosen); ok {
					temp = ptr(float64(v) / 1000) // millidegrees
				}
			}
		}
		if power == nil {
			// power1_average on older amdgpu, power1_input on newer and elsewhere; microwatts.
			for _, name := range []string{"power1_average", "power1_input"} {
				if v, ok := readUint(filepath.Join(h, name)); ok {
					power = ptr(float64(v) / 1e6)
					break
				}
			}
		}
	}
	return temp, power
}

// amd fills an amdgpu device from sysfs and the KFD topology.
func (d *detector) amd(a *Accelerator) {
	dev := filepath.Join(d.sys, "bus", "pci", "devices", a.PCIAddress)
	if a.Driver != "amdgpu" {
		return
	}
	if n := readTrim(filepath.Join(dev, "product_name")); n != "" {
		a.Name = n
	}
	total, okT := readUint(filepath.Join(dev, "mem_info_vram_total"))
	used, okU := readUint(filepath.Join(dev, "mem_info_vram_used"))
	if okT {
		a.MemoryTotalBytes = ptr(total)
		if okU && used <= total {
			a.MemoryFreeBytes = ptr(total - used)
		}
		addSource(a, "sysfs")
	} else {
		d.warnf("accelerator %s: %s unreadable; VRAM size unknown", a.PCIAddress, filepath.Join(dev, "mem_info_vram_total"))
	}
	if v, ok := readInt(filepath.Join(dev, "gpu_busy_percent")); ok && v >= 0 && v <= 100 {
		a.UtilizationPercent = ptr(int(v))
	}
	a.TemperatureC, a.PowerW = hwmon(dev, "edge")
	// Only out-of-tree (DKMS) amdgpu has a version; the in-tree driver goes with the kernel.
	a.DriverVersion = readTrim(filepath.Join(d.sys, "module", "amdgpu", "version"))

	if node, ok := d.kfdNode(a.PCIAddress); ok {
		addSource(a, "kfd")
		if v, err := strconv.ParseUint(node["gfx_target_version"], 10, 64); err == nil && v > 0 {
			a.ComputeCapability = gfxTarget(v)
		}
		// KFD marks APUs: a node with both CPU cores and SIMDs.
		if node["cpu_cores_count"] != "" && node["cpu_cores_count"] != "0" && node["simd_count"] != "0" {
			a.Integrated = true
		}
	}
}

// gfxTarget turns KFD's gfx_target_version (major*10000 + minor*100 + stepping) into the LLVM
// target name: 90010 is gfx90a, 110000 gfx1100, 90402 gfx942.
func gfxTarget(v uint64) string {
	return fmt.Sprintf("gfx%d%x%x", v/10000, (v/100)%100, v%100)
}

// kfdNode finds the KFD topology node of a PCI device. location_id packs bus, device and
// function as the PCI BDF (bus<<8 | dev<<3 | fn); domain is separate.
func (d *detector) kfdNode(addr string) (map[string]string, bool) {
	var dom, bus, dv, fn uint64
	if _, err := fmt.Sscanf(addr, "%x:%x:%x.%x", &dom, &bus, &dv, &fn); err != nil {
		return nil, false
	}
	want := bus<<8 | dv<<3 | fn
	nodes, _ := filepath.Glob(filepath.Join(d.sys, "class", "kfd", "kfd", "topology", "nodes", "*", "properties"))
	for _, p := range nodes {
		props := readProperties(p)
		loc, err1 := strconv.ParseUint(props["location_id"], 10, 64)
		domain, err2 := strconv.ParseUint(props["domain"], 10, 64)
		if err2 != nil {
			domain, err2 = 0, nil // kernels before 5.x print no domain
		}
		if err1 == nil && err2 == nil && loc == want && domain == dom && props["simd_count"] != "0" {
			return props, true
		}
	}
	return nil, false
}

// readProperties reads a KFD "key value" properties file.
func readProperties(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// intelDiscretePrefixes are device-ID prefixes of Intel discrete GPUs (DG1, Alchemist,
// Battlemage, Ponte Vecchio), for when the driver does not expose local memory.
var intelDiscretePrefixes = []string{"4905", "4906", "4907", "4908", "4909", "56", "e2", "0bd"}

// intel fills an i915 or xe device. xe exposes the VRAM of each tile; i915 upstream exposes no
// memory sizes in sysfs (Intel's backport driver adds lmem_total_bytes/lmem_avail_bytes on the
// DRM card).
func (d *detector) intel(a *Accelerator) {
	if a.Driver != "xe" && a.Driver != "i915" {
		return
	}
	dev := filepath.Join(d.sys, "bus", "pci", "devices", a.PCIAddress)
	var total uint64
	tiles, _ := filepath.Glob(filepath.Join(dev, "tile*", "physical_vram_size_bytes"))
	for _, t := range tiles {
		if v, ok := readUint(t); ok {
			total += v
		}
	}
	var free *uint64
	if card := d.drmCard(dev); card != "" && total == 0 {
		if v, ok := readUint(filepath.Join(card, "lmem_total_bytes")); ok {
			total = v
			free = readUintPtr(filepath.Join(card, "lmem_avail_bytes"))
		}
	}
	devID := strings.TrimPrefix(a.PCIID, "8086:")
	discrete := total > 0
	for _, p := range intelDiscretePrefixes {
		if strings.HasPrefix(devID, p) {
			discrete = true
		}
	}
	a.Integrated = !discrete
	if total > 0 {
		a.MemoryTotalBytes = ptr(total)
		a.MemoryFreeBytes = free
		addSource(a, "sysfs")
	} else if discrete {
		d.warnf("accelerator %s: %s driver exposes no local-memory size in sysfs", a.PCIAddress, a.Driver)
	}
	a.TemperatureC, a.PowerW = hwmon(dev, "pkg")
}

// drmCard finds /sys/class/drm/cardN whose device is devDir.
func (d *detector) drmCard(devDir string) string {
	want, ok := resolve(devDir)
	if !ok {
		return ""
	}
	cards, _ := filepath.Glob(filepath.Join(d.sys, "class", "drm", "card*"))
	for _, c := range cards {
		if strings.Contains(filepath.Base(c), "-") {
			continue // connectors: card0-DP-1
		}
		if p, ok := resolve(filepath.Join(c, "device")); ok && p == want {
			return c
		}
	}
	return ""
}
