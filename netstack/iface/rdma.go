package iface

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// RDMADevice is an entry of /sys/class/infiniband: an InfiniBand HCA, a RoCE-capable Ethernet
// NIC (mlx5, bnxt_re, irdma, ...), or a software device (rxe, siw).
type RDMADevice struct {
	Name            string     `json:"name"`
	NodeType        string     `json:"node_type"` // CA, switch, router, RNIC, ...
	FirmwareVersion string     `json:"firmware_version"`
	Driver          string     `json:"driver"`
	PCIAddress      string     `json:"pci_address"`
	Ports           []RDMAPort `json:"ports"`
}

// RDMAPort is one port of an RDMA device.
type RDMAPort struct {
	Port      int      `json:"port"`
	State     string   `json:"state"`      // DOWN, INIT, ARMED, ACTIVE, ACTIVE_DEFER
	PhysState string   `json:"phys_state"` // LinkUp, Disabled, Polling, ...
	LinkLayer string   `json:"link_layer"` // InfiniBand or Ethernet (RoCE)
	RateGbps  *float64 `json:"rate_gbps"`
	// Netdev is the net device that carries this port's traffic: the Ethernet NIC for RoCE (or
	// the bond, for a RoCE LAG), the IPoIB interface for InfiniBand.
	Netdev string `json:"netdev"`
}

// afterColon turns sysfs values such as "4: ACTIVE" or "1: CA" into their name.
func afterColon(s string) string {
	if _, v, ok := strings.Cut(s, ":"); ok {
		return strings.TrimSpace(v)
	}
	return s
}

func (s *scanner) rdmaDevices() []RDMADevice {
	dir := filepath.Join(s.sys, "class", "infiniband")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			s.warnf("RDMA devices: %v", err)
		}
		return []RDMADevice{}
	}
	out := []RDMADevice{}
	for _, e := range entries {
		ddir := filepath.Join(dir, e.Name())
		d := RDMADevice{
			Name:            e.Name(),
			NodeType:        afterColon(readTrim(filepath.Join(ddir, "node_type"))),
			FirmwareVersion: readTrim(filepath.Join(ddir, "fw_ver")),
			Ports:           []RDMAPort{},
		}
		devPath, hasDev := resolve(filepath.Join(ddir, "device"))
		var netdevs []string
		if hasDev {
			d.PCIAddress = nearestPCIAddress(devPath)
			if drv, ok := resolve(filepath.Join(devPath, "driver")); ok {
				d.Driver = filepath.Base(drv)
			}
			if ns, err := os.ReadDir(filepath.Join(devPath, "net")); err == nil {
				for _, n := range ns {
					netdevs = append(netdevs, n.Name())
				}
			}
		}
		ports, err := os.ReadDir(filepath.Join(ddir, "ports"))
		if err != nil {
			s.warnf("RDMA device %s: %v", d.Name, err)
		}
		for _, pe := range ports {
			num, err := strconv.Atoi(pe.Name())
			if err != nil {
				continue
			}
			pdir := filepath.Join(ddir, "ports", pe.Name())
			p := RDMAPort{
				Port:      num,
				State:     afterColon(readTrim(filepath.Join(pdir, "state"))),
				PhysState: afterColon(readTrim(filepath.Join(pdir, "phys_state"))),
				LinkLayer: readTrim(filepath.Join(pdir, "link_layer")),
			}
			if f, _, ok := strings.Cut(readTrim(filepath.Join(pdir, "rate")), " "); ok {
				if v, err := strconv.ParseFloat(f, 64); err == nil {
					p.RateGbps = &v
				}
			}
			p.Netdev = s.portNetdev(pdir, num, devPath, netdevs)
			d.Ports = append(d.Ports, p)
		}
		sort.Slice(d.Ports, func(i, j int) bool { return d.Ports[i].Port < d.Ports[j].Port })
		out = append(out, d)
	}
	return out
}

// portNetdev finds the net device of an RDMA port. RoCE ports name it in their GID table
// (gid_attrs/ndevs/0, which also names the bond for a RoCE LAG); InfiniBand ports have no GID
// net devices, so their IPoIB interface is matched through dev_port, which counts ports from 0.
func (s *scanner) portNetdev(pdir string, port int, devPath string, netdevs []string) string {
	if n := readTrim(filepath.Join(pdir, "gid_attrs", "ndevs", "0")); n != "" {
		return n
	}
	if len(netdevs) == 1 {
		return netdevs[0]
	}
	for _, n := range netdevs {
		if v := readIntPtr(filepath.Join(devPath, "net", n, "dev_port")); v != nil && *v == port-1 {
			return n
		}
	}
	return ""
}
