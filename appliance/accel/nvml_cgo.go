//go:build linux && cgo

package accel

import (
	"fmt"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/ebitengine/purego"
)

// nvmlMu serialises NVML use: go-nvml keeps the loaded library's entry points in package state.
var nvmlMu sync.Mutex

// nvmlRequired must all exist before go-nvml may touch the library: go-nvml calls through
// symbols it resolves lazily, and a missing one kills the process instead of returning an error.
var nvmlRequired = []string{
	"nvmlInit_v2", "nvmlShutdown", "nvmlErrorString", "nvmlDeviceGetCount_v2",
	"nvmlDeviceGetHandleByIndex_v2",
}

// nvmlPCIInfo: go-nvml uses the newest of these the library has.
var nvmlPCIInfo = []string{"nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo"}

// nvmlQuery adds what NVML knows to the NVIDIA accelerators found on PCI (and any NVML sees that
// PCI did not: a fake or partial sysfs).
func (d *detector) nvmlQuery(accels []Accelerator, lib string) []Accelerator {
	nvmlMu.Lock()
	defer nvmlMu.Unlock()

	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		d.warnf("NVML: cannot load %s: %v; NVIDIA memory, utilisation, temperature and power unknown", lib, err)
		return accels
	}
	defer purego.Dlclose(h)
	has := func(sym string) bool {
		_, err := purego.Dlsym(h, sym)
		return err == nil
	}
	for _, sym := range nvmlRequired {
		if !has(sym) {
			d.warnf("NVML: %s lacks %s; not using it", lib, sym)
			return accels
		}
	}
	pciOK := false
	for _, sym := range nvmlPCIInfo {
		pciOK = pciOK || has(sym)
	}
	if !pciOK {
		d.warnf("NVML: %s has no nvmlDeviceGetPciInfo; not using it", lib)
		return accels
	}

	n := nvml.New(nvml.WithLibraryPath(lib))
	if ret := n.Init(); ret != nvml.SUCCESS {
		d.warnf("NVML: nvmlInit on %s: %s", lib, nvmlErr(ret))
		return accels
	}
	defer func() {
		if ret := n.Shutdown(); ret != nvml.SUCCESS {
			d.warnf("NVML: nvmlShutdown: %s", nvmlErr(ret))
		}
	}()

	var driver, cuda string
	if has("nvmlSystemGetDriverVersion") {
		if v, ret := n.SystemGetDriverVersion(); ret == nvml.SUCCESS {
			driver = v
		} else {
			d.nvmlWarn("", "nvmlSystemGetDriverVersion", ret)
		}
	}
	var cv int
	ret := nvml.ERROR_FUNCTION_NOT_FOUND
	switch {
	case has("nvmlSystemGetCudaDriverVersion_v2"):
		cv, ret = n.SystemGetCudaDriverVersion_v2()
	case has("nvmlSystemGetCudaDriverVersion"):
		cv, ret = n.SystemGetCudaDriverVersion()
	}
	if ret == nvml.SUCCESS && cv > 0 {
		cuda = fmt.Sprintf("%d.%d", cv/1000, (cv%1000)/10)
	} else if ret != nvml.ERROR_FUNCTION_NOT_FOUND {
		d.nvmlWarn("", "nvmlSystemGetCudaDriverVersion", ret)
	}

	count, ret := n.DeviceGetCount()
	if ret != nvml.SUCCESS {
		d.nvmlWarn("", "nvmlDeviceGetCount", ret)
		return accels
	}
	for i := 0; i < count; i++ {
		dev, ret := n.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			d.nvmlWarn(fmt.Sprintf("index %d", i), "nvmlDeviceGetHandleByIndex", ret)
			continue
		}
		pci, ret := dev.GetPciInfo()
		if ret != nvml.SUCCESS {
			d.nvmlWarn(fmt.Sprintf("index %d", i), "nvmlDeviceGetPciInfo", ret)
			continue
		}
		addr := nvmlBusID(pci)
		a := findAccel(accels, addr)
		if a == nil {
			accels = append(accels, Accelerator{
				Vendor:     "nvidia",
				PCIAddress: addr,
				PCIID:      fmt.Sprintf("%04x:%04x", pci.PciDeviceId&0xffff, pci.PciDeviceId>>16),
				Source:     "nvml",
			})
			a = &accels[len(accels)-1]
		}
		addSource(a, "nvml")
		if driver != "" {
			a.DriverVersion = driver
		}
		a.RuntimeVersion = cuda
		if has("nvmlDeviceGetName") {
			if name, ret := dev.GetName(); ret == nvml.SUCCESS {
				a.Name = name
			} else {
				d.nvmlWarn(addr, "nvmlDeviceGetName", ret)
			}
		}
		if has("nvmlDeviceGetMemoryInfo") {
			if m, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
				a.MemoryTotalBytes, a.MemoryFreeBytes = ptr(m.Total), ptr(m.Free)
			} else {
				d.nvmlWarn(addr, "nvmlDeviceGetMemoryInfo", ret)
			}
		}
		if has("nvmlDeviceGetUtilizationRates") {
			if u, ret := dev.GetUtilizationRates(); ret == nvml.SUCCESS {
				a.UtilizationPercent = ptr(int(u.Gpu))
			} else {
				d.nvmlWarn(addr, "nvmlDeviceGetUtilizationRates", ret)
			}
		}
		if has("nvmlDeviceGetTemperature") {
			if t, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
				a.TemperatureC = ptr(float64(t))
			} else {
				d.nvmlWarn(addr, "nvmlDeviceGetTemperature", ret)
			}
		}
		if has("nvmlDeviceGetPowerUsage") {
			if p, ret := dev.GetPowerUsage(); ret == nvml.SUCCESS {
				a.PowerW = ptr(float64(p) / 1000) // milliwatts
			} else {
				d.nvmlWarn(addr, "nvmlDeviceGetPowerUsage", ret)
			}
		}
		if has("nvmlDeviceGetCudaComputeCapability") {
			if major, minor, ret := dev.GetCudaComputeCapability(); ret == nvml.SUCCESS {
				a.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
			} else {
				d.nvmlWarn(addr, "nvmlDeviceGetCudaComputeCapability", ret)
			}
		}
	}
	return accels
}

// nvmlWarn records a failed NVML call; "not supported" is how NVML says a GPU lacks a sensor,
// which is no news.
func (d *detector) nvmlWarn(dev, call string, ret nvml.Return) {
	if ret == nvml.ERROR_NOT_SUPPORTED {
		return
	}
	if dev != "" {
		d.warnf("NVML: device %s: %s: %s", dev, call, nvmlErr(ret))
		return
	}
	d.warnf("NVML: %s: %s", call, nvmlErr(ret))
}

func nvmlErr(ret nvml.Return) string {
	return fmt.Sprintf("%s (code %d)", ret.Error(), int32(ret))
}

// nvmlBusID turns NVML's "00000000:3B:00.0" into sysfs's "0000:3b:00.0".
func nvmlBusID(p nvml.PciInfo) string {
	b := make([]byte, 0, len(p.BusId))
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	var dom, bus, dev, fn uint32
	if _, err := fmt.Sscanf(string(b), "%x:%x:%x.%x", &dom, &bus, &dev, &fn); err != nil {
		return fmt.Sprintf("%04x:%02x:%02x.0", p.Domain, p.Bus, p.Device)
	}
	return strings.ToLower(fmt.Sprintf("%04x:%02x:%02x.%x", dom, bus, dev, fn))
}

// nvmlBuiltIn says whether this binary can query NVML.
const nvmlBuiltIn = true
