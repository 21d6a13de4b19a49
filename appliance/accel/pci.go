package accel

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/jaypipes/ghw"
	"github.com/jaypipes/pcidb"
)

// pciVendor is what we know about a PCI vendor without a pci.ids database.
type pciVendor struct {
	short, name string
	// gpus: this vendor's display-class devices can compute (others are BMC or emulated VGA).
	gpus bool
	// displayOnly: never a compute device, whatever the class.
	displayOnly bool
}

var pciVendors = map[string]pciVendor{
	"10de": {short: "nvidia", name: "NVIDIA", gpus: true},
	"1002": {short: "amd", name: "AMD", gpus: true},
	"1022": {short: "amd", name: "AMD", gpus: true},
	"8086": {short: "intel", name: "Intel", gpus: true},
	"106b": {short: "apple", name: "Apple", gpus: true},
	"1ed5": {short: "mthreads", name: "Moore Threads", gpus: true},
	"1ae0": {short: "google", name: "Google"},
	"1d0f": {short: "amazon", name: "Amazon"},
	"1da3": {short: "habana", name: "Habana Labs"},
	"1e52": {short: "tenstorrent", name: "Tenstorrent"},
	"17cb": {short: "qualcomm", name: "Qualcomm"},
	"1af4": {short: "redhat", name: "Red Hat (virtio)", displayOnly: true},
	"1b36": {short: "redhat", name: "Red Hat (QXL)", displayOnly: true},
	"1234": {short: "qemu", name: "QEMU", displayOnly: true},
	"1a03": {short: "aspeed", name: "ASPEED", displayOnly: true},
	"102b": {short: "matrox", name: "Matrox", displayOnly: true},
	"15ad": {short: "vmware", name: "VMware", displayOnly: true},
	"1414": {short: "microsoft", name: "Microsoft (Hyper-V)", displayOnly: true},
	"1013": {short: "cirrus", name: "Cirrus Logic", displayOnly: true},
	"80ee": {short: "virtualbox", name: "VirtualBox", displayOnly: true},
	"19e5": {short: "huawei", name: "Huawei", displayOnly: true},
}

// PCI base classes that hold compute devices.
const (
	classDisplay     = "03" // VGA, 3D controller, other display
	classAccelerator = "12" // processing accelerator
	classProcessor   = "0b" // subclass 40: co-processor
)

// ghwMu serialises ghw calls: ghw keeps its log level in a package-level variable.
var ghwMu sync.Mutex

// pciIDsPaths are where distributions install pci.ids (hwdata, pciutils), relative to the root
// the sysfs tree belongs to.
var pciIDsPaths = []string{
	"usr/share/hwdata/pci.ids", "usr/share/misc/pci.ids",
	"usr/share/hwdata/pci.ids.gz", "usr/share/misc/pci.ids.gz",
}

// pciDB loads pci.ids from the system the sysfs tree belongs to (the directory above it), never
// from the network or a per-user cache, so that a fake tree's names do not depend on the machine
// the test runs on. Without one, names come from the built-in vendor table.
func (d *detector) pciDB() *pcidb.PCIDB {
	sysRoot := filepath.Dir(filepath.Clean(d.sys))
	for _, rel := range pciIDsPaths {
		p := filepath.Join(sysRoot, rel)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		db, err := pcidb.New(pcidb.WithPath(p))
		if err != nil {
			d.warnf("PCI names: %s: %v; using built-in vendor names", p, err)
			break
		}
		return db
	}
	d.pciIDsMissing = true
	return &pcidb.PCIDB{Classes: map[string]*pcidb.Class{}, Vendors: map[string]*pcidb.Vendor{}, Products: map[string]*pcidb.Product{}}
}

// ghwLog turns ghw's log lines into warnings.
type ghwLog struct{ d *detector }

func (h ghwLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h ghwLog) Handle(_ context.Context, r slog.Record) error {
	// We switch ghw's topology scan off on purpose (NUMA comes from our own reading).
	if strings.Contains(r.Message, "topology detection disabled") {
		return nil
	}
	h.d.warnf("PCI scan: %s", r.Message)
	return nil
}
func (h ghwLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h ghwLog) WithGroup(string) slog.Handler      { return h }

// pciAccelerators scans the PCI bus and keeps display, 3D and processing-accelerator devices of
// vendors that make compute devices. ghw.GPU alone would miss 3D controllers without a DRM card
// (a datacenter GPU under the proprietary driver has none) and processing accelerators.
func (d *detector) pciAccelerators() []Accelerator {
	busDir := filepath.Join(d.sys, "bus", "pci", "devices")
	if _, err := os.Stat(busDir); err != nil {
		d.warnf("PCI: %v; no PCI accelerators detected", err)
		return nil
	}
	abs, err := filepath.Abs(d.sys)
	if err != nil {
		d.warnf("PCI: %v", err)
		return nil
	}
	db := d.pciDB()
	ghwMu.Lock()
	info, err := ghw.PCI(
		ghw.WithChroot("/"),
		ghw.WithPathOverrides(map[string]string{"/sys": abs}),
		ghw.WithDisableTopology(),
		ghw.WithDisableTools(),
		ghw.WithPCIDB(db),
		ghw.WithLogger(slog.New(ghwLog{d})),
	)
	ghwMu.Unlock()
	if err != nil {
		d.warnf("PCI: %v", err)
		return nil
	}
	devs := make([]pciDev, 0, len(info.Devices))
	for _, dev := range info.Devices {
		if dev.Class == nil || dev.Vendor == nil || dev.Product == nil {
			continue
		}
		pd := pciDev{addr: dev.Address, vendor: strings.ToLower(dev.Vendor.ID), device: strings.ToLower(dev.Product.ID),
			class: dev.Class.ID, driver: dev.Driver, vendorName: dev.Vendor.Name, productName: dev.Product.Name}
		if dev.Subclass != nil {
			pd.subclass = dev.Subclass.ID
		}
		devs = append(devs, pd)
	}
	if entries, err := os.ReadDir(busDir); err == nil && len(entries) > 0 && len(devs) == 0 {
		// ghw gives up on the whole bus when one device lacks a readable modalias.
		d.warnf("PCI: the ghw scan returned no devices; reading %s directly", busDir)
		devs = scanPCI(busDir, entries)
	}

	var out []Accelerator
	for _, dev := range devs {
		v, known := pciVendors[dev.vendor]
		switch {
		case v.displayOnly:
			continue
		case dev.class == classDisplay && v.gpus:
		case dev.class == classAccelerator:
		case dev.class == classProcessor && dev.subclass == "40":
		default:
			continue
		}
		a := Accelerator{
			PCIAddress: dev.addr,
			PCIID:      dev.vendor + ":" + dev.device,
			Driver:     dev.driver,
			Source:     "pci",
		}
		if known {
			a.Vendor = v.short
		} else {
			a.Vendor = "pci-" + dev.vendor
		}
		a.Name = pciName(v, known, dev.vendorName, dev.productName, a.PCIID)
		if n, ok := readInt(filepath.Join(busDir, dev.addr, "numa_node")); ok && n >= 0 {
			a.NUMANode = ptr(int(n))
		}
		if a.Driver == "" {
			d.warnf("accelerator %s (%s): no driver bound; it cannot be used until one is", a.PCIAddress, a.PCIID)
		}
		out = append(out, a)
	}
	return out
}

// pciDev is the part of a PCI function that decides whether it is an accelerator.
type pciDev struct {
	addr, vendor, device, class, subclass, driver string
	vendorName, productName                       string
}

// scanPCI reads the identity files of each function under /sys/bus/pci/devices.
func scanPCI(busDir string, entries []os.DirEntry) []pciDev {
	var out []pciDev
	for _, e := range entries {
		dir := filepath.Join(busDir, e.Name())
		class := strings.TrimPrefix(readTrim(filepath.Join(dir, "class")), "0x")
		vendor := strings.TrimPrefix(readTrim(filepath.Join(dir, "vendor")), "0x")
		device := strings.TrimPrefix(readTrim(filepath.Join(dir, "device")), "0x")
		if len(class) != 6 || len(vendor) != 4 || len(device) != 4 {
			continue
		}
		pd := pciDev{addr: e.Name(), vendor: strings.ToLower(vendor), device: strings.ToLower(device),
			class: strings.ToLower(class[0:2]), subclass: strings.ToLower(class[2:4])}
		if drv, ok := resolve(filepath.Join(dir, "driver")); ok {
			pd.driver = filepath.Base(drv)
		}
		out = append(out, pd)
	}
	return out
}

// pciName builds a display name: vendor plus the pci.ids product name when there is one.
func pciName(v pciVendor, known bool, dbVendor, dbProduct, pciID string) string {
	vendor := v.name
	if !known {
		vendor = dbVendor
		if vendor == "" || vendor == "unknown" {
			vendor = "PCI device"
		}
	}
	if dbProduct != "" && dbProduct != "unknown" {
		return vendor + " " + dbProduct
	}
	return fmt.Sprintf("%s [%s]", vendor, pciID)
}
