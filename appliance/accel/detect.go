package accel

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/exo-nix/exo/netstack/iface"
)

// Default roots: the running system's.
const (
	DefaultSysfsRoot   = "/sys"
	DefaultProcfsRoot  = "/proc"
	DefaultDevtreeRoot = "/proc/device-tree"
	DefaultNVMLLibrary = "libnvidia-ml.so.1"
)

type detector struct {
	sys, proc, dt string
	opts          Options
	warnings      []string
	pciIDsMissing bool
}

func (d *detector) warnf(format string, args ...any) {
	d.warnings = append(d.warnings, fmt.Sprintf(format, args...))
}

// Detect describes the machine under opts' roots. It returns an error only for options that
// make no sense (a root that does not exist); everything that goes wrong while reading becomes
// a warning in the report.
func Detect(opts Options) (*Report, error) {
	d := &detector{
		sys:  orDefault(opts.SysfsRoot, DefaultSysfsRoot),
		proc: orDefault(opts.ProcfsRoot, DefaultProcfsRoot),
		dt:   orDefault(opts.DevtreeRoot, DefaultDevtreeRoot),
		opts: opts,
	}
	for _, r := range []struct{ flag, given string }{
		{"sysfs root", opts.SysfsRoot}, {"procfs root", opts.ProcfsRoot}, {"device-tree root", opts.DevtreeRoot},
	} {
		if r.given != "" && !isDir(r.given) {
			return nil, fmt.Errorf("%s %q: not a directory", r.flag, r.given)
		}
	}

	rep := &Report{Accelerators: []Accelerator{}, Backends: []Backend{}, Warnings: []string{}}
	rep.Hostname = d.hostname()
	dt := d.readDevtree()
	rep.Platform = d.platform(dt)
	var accels []Accelerator
	if runtime.GOOS == "darwin" && opts.Live {
		// macOS has no procfs or sysfs; sysctl answers instead.
		accels = darwinDetect(d, rep)
	} else {
		rep.CPU = d.cpu(dt.soc)
		rep.Memory = d.memory()
		accels = d.pciAccelerators()
	}
	for i := range accels {
		a := &accels[i]
		switch a.Vendor {
		case "nvidia":
			d.nvidiaProc(a)
		case "amd":
			d.amd(a)
		case "intel":
			d.intel(a)
		}
	}
	nvmlLib := opts.NVMLLibrary
	if nvmlLib == "" && opts.Live && runtime.GOOS == "linux" {
		for _, a := range accels {
			if a.Vendor == "nvidia" {
				nvmlLib = DefaultNVMLLibrary
				break
			}
		}
	}
	if nvmlLib != "" {
		accels = d.nvmlQuery(accels, nvmlLib)
	} else {
		for _, a := range accels {
			if a.Vendor == "nvidia" {
				d.warnf("NVML: not queried (detection is not reading this machine and no NVML library was given); NVIDIA memory, utilisation, temperature and power unknown")
				break
			}
		}
	}
	accels = append(accels, d.devtreeAccelerators(dt, rep.Memory.TotalBytes)...)
	if d.pciIDsMissing {
		// Only worth saying when a device was left with a name made of its IDs.
		var unnamed []string
		for _, a := range accels {
			if a.PCIID != "" && strings.HasSuffix(a.Name, "["+a.PCIID+"]") {
				unnamed = append(unnamed, a.PCIAddress)
			}
		}
		if len(unnamed) > 0 {
			d.warnf("PCI names: no pci.ids under %s (install hwdata or pciutils), so %s named by PCI ID", filepath.Dir(filepath.Clean(d.sys)), strings.Join(unnamed, ", "))
		}
	}
	sort.SliceStable(accels, func(i, j int) bool {
		if accels[i].PCIAddress != accels[j].PCIAddress {
			return accels[i].PCIAddress < accels[j].PCIAddress
		}
		return accels[i].Name < accels[j].Name
	})
	rep.Accelerators = append(rep.Accelerators, accels...)

	rep.Backends = probeBackends(opts.Libraries, opts.Live)
	sel, err := Select(opts.Accelerator, rep.Backends)
	if err != nil {
		d.warnf("backend: %v", err)
	}
	rep.SelectedBackend = sel

	netw, nwarn := iface.Scan(iface.Options{SysfsRoot: d.sys, ProcfsRoot: d.proc, Live: opts.Live})
	rep.Network = netw
	for _, w := range nwarn {
		d.warnf("network: %s", w)
	}

	rep.Warnings = append(rep.Warnings, d.warnings...)
	return rep, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func findAccel(accels []Accelerator, addr string) *Accelerator {
	for i := range accels {
		if accels[i].PCIAddress == addr {
			return &accels[i]
		}
	}
	return nil
}

func (d *detector) hostname() string {
	if d.opts.Live {
		h, err := os.Hostname()
		if err != nil {
			d.warnf("hostname: %v", err)
		}
		return h
	}
	p := filepath.Join(d.proc, "sys", "kernel", "hostname")
	h := readTrim(p)
	if h == "" {
		d.warnf("hostname: %s unreadable", p)
	}
	return h
}

// platform names the machine: the device tree's model on boards and Macs, DMI elsewhere. Values
// firmware vendors leave as placeholders are dropped.
func (d *detector) platform(dt devtree) string {
	if dt.model != "" {
		return dt.model
	}
	dmi := filepath.Join(d.sys, "class", "dmi", "id")
	var parts []string
	placeholder := func(v string) bool {
		switch strings.ToLower(v) {
		case "", "to be filled by o.e.m.", "system product name", "system manufacturer", "default string", "not specified":
			return true
		}
		return false
	}
	if v := readTrim(filepath.Join(dmi, "sys_vendor")); !placeholder(v) {
		parts = append(parts, v)
	}
	// Desktop boards often leave the product empty; the board name still says what it is.
	if v := readTrim(filepath.Join(dmi, "product_name")); !placeholder(v) {
		parts = append(parts, v)
	} else if v := readTrim(filepath.Join(dmi, "board_name")); !placeholder(v) {
		parts = append(parts, v)
	}
	return strings.Join(parts, " ")
}
