package accel

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// socNames maps device-tree SoC compatibles to their marketing names.
var socNames = map[string]string{
	"apple,t8103": "Apple M1", "apple,t6000": "Apple M1 Pro", "apple,t6001": "Apple M1 Max",
	"apple,t6002": "Apple M1 Ultra", "apple,t8112": "Apple M2", "apple,t6020": "Apple M2 Pro",
	"apple,t6021": "Apple M2 Max", "apple,t6022": "Apple M2 Ultra",
	"brcm,bcm2711": "Broadcom BCM2711", "brcm,bcm2712": "Broadcom BCM2712",
	"rockchip,rk3588": "Rockchip RK3588", "nvidia,tegra234": "NVIDIA Tegra234 (Orin)",
}

// devtree is what the flattened device tree says about the machine.
type devtree struct {
	model      string
	compatible []string
	soc        string
}

func (d *detector) readDevtree() devtree {
	var dt devtree
	if _, err := os.Stat(d.dt); err != nil {
		return dt // x86 and most VMs have none
	}
	dt.model = readTrim(filepath.Join(d.dt, "model"))
	if b, err := os.ReadFile(filepath.Join(d.dt, "compatible")); err == nil {
		dt.compatible = nulStrings(b)
	} else {
		d.warnf("device tree: %v", err)
	}
	for _, c := range dt.compatible {
		if n, ok := socNames[c]; ok {
			dt.soc = n
			break
		}
	}
	return dt
}

// devtreeGPU describes a SoC GPU recognised by its compatible string.
type devtreeGPU struct {
	prefix, vendor string
	name           func(soc, compat string, all []string) string
	capability     func(all []string) string
}

var devtreeGPUs = []devtreeGPU{
	{
		prefix: "apple,agx-", vendor: "apple",
		name: func(soc, _ string, _ []string) string {
			if soc == "" {
				soc = "Apple"
			}
			return soc + " GPU"
		},
		// "apple,agx-t6001", "apple,agx-g13x": the second names the GPU generation.
		capability: func(all []string) string {
			for _, c := range all {
				if g, ok := strings.CutPrefix(c, "apple,agx-g"); ok {
					return "g" + g
				}
			}
			return ""
		},
	},
	{
		prefix: "arm,mali-", vendor: "arm",
		name: func(_, compat string, _ []string) string {
			return "Arm Mali (" + strings.TrimPrefix(compat, "arm,mali-") + ")"
		},
	},
	{
		prefix: "brcm,", vendor: "broadcom",
		name: func(_, compat string, _ []string) string {
			if !strings.HasSuffix(compat, "-v3d") {
				return ""
			}
			return "Broadcom V3D (" + strings.TrimSuffix(strings.TrimPrefix(compat, "brcm,"), "-v3d") + ")"
		},
	},
}

// devtreeAccelerators walks the device tree for enabled GPU nodes. Their memory is the system's
// (unified), so memTotal is reported as theirs.
func (d *detector) devtreeAccelerators(dt devtree, memTotal uint64) []Accelerator {
	if dt.compatible == nil {
		return nil
	}
	root, ok := resolve(d.dt) // /proc/device-tree is a link to /sys/firmware/devicetree/base
	if !ok {
		return nil
	}
	var out []Accelerator
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // an unreadable node hides only itself
		}
		if e.IsDir() || e.Name() != "compatible" {
			return nil
		}
		node := filepath.Dir(path)
		if st := readTrim(filepath.Join(node, "status")); st != "" && st != "okay" && st != "ok" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		compat := nulStrings(b)
		for _, c := range compat {
			for _, g := range devtreeGPUs {
				if !strings.HasPrefix(c, g.prefix) {
					continue
				}
				name := g.name(dt.soc, c, compat)
				if name == "" {
					continue
				}
				a := Accelerator{
					Vendor:        g.vendor,
					Name:          name,
					UnifiedMemory: true,
					Source:        "devicetree",
					Driver:        d.platformDriver(filepath.Base(node)),
				}
				if g.capability != nil {
					a.ComputeCapability = g.capability(compat)
				}
				if memTotal > 0 {
					a.MemoryTotalBytes = ptr(memTotal)
				}
				out = append(out, a)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		d.warnf("device tree: %v", err)
	}
	return out
}

// platformDriver finds the driver bound to the platform device made from a device-tree node
// "name@addr"; the kernel names such devices "addr.name".
func (d *detector) platformDriver(node string) string {
	name, addr, ok := strings.Cut(node, "@")
	if !ok {
		return ""
	}
	p, ok := resolve(filepath.Join(d.sys, "bus", "platform", "devices", addr+"."+name, "driver"))
	if !ok {
		return ""
	}
	return filepath.Base(p)
}
