//go:build !linux || !cgo

package accel

// go-nvml needs cgo (and NVML exists only on Linux here); without it NVIDIA devices keep what
// PCI and procfs say.
func (d *detector) nvmlQuery(accels []Accelerator, lib string) []Accelerator {
	d.warnf("NVML: this binary was built without cgo, so %s is not queried; NVIDIA memory, utilisation, temperature and power unknown", lib)
	return accels
}

// nvmlBuiltIn says whether this binary can query NVML.
const nvmlBuiltIn = false
