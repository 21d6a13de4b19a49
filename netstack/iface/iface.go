// Package iface discovers a node's network: every interface with its kind, link state, speed, MTU
// and addresses; bonds with their mode and per-member state; RDMA devices and the net devices they
// drive; Thunderbolt links to other hosts. It reads sysfs and procfs under roots given as
// parameters, so tests describe whole machines as directory trees, and uses netlink only when the
// roots are the running system's.
//
// Scan never fails because one source is missing or unreadable: it records a warning that names
// the source and the reason and carries on with what it has.
package iface

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Kind classifies an interface by what it is good for when moving tensors between nodes.
type Kind string

// Interface kinds. An interface has exactly one; a member of a bond is "bond-member" whatever its
// hardware (its RDMA capability still shows in Interface.RDMA).
const (
	KindLoopback    Kind = "loopback"
	KindEthernet    Kind = "ethernet"
	KindWifi        Kind = "wifi"
	KindBond        Kind = "bond"
	KindBondMember  Kind = "bond-member"
	KindBridge      Kind = "bridge"
	KindThunderbolt Kind = "thunderbolt-net"
	KindInfiniband  Kind = "infiniband"
	KindRoCE        Kind = "roce"
	KindVirtual     Kind = "virtual"
)

// Options say where to read from. Empty roots mean the running system's.
type Options struct {
	SysfsRoot  string // default /sys
	ProcfsRoot string // default /proc
	// Live: the roots are the running system's, so netlink may be asked for addresses.
	Live bool
}

// Network is everything Scan found.
type Network struct {
	Interfaces  []Interface       `json:"interfaces"`
	Bonds       []Bond            `json:"bonds"`
	RDMADevices []RDMADevice      `json:"rdma_devices"`
	Thunderbolt []ThunderboltLink `json:"thunderbolt"`
}

// Interface is one network interface.
type Interface struct {
	Name  string `json:"name"`
	Kind  Kind   `json:"kind"`
	State string `json:"state"` // operstate: up, down, unknown, dormant, lowerlayerdown, ...
	MTU   *int   `json:"mtu"`
	// SpeedMbps is nil when the kernel does not know it (link down, wifi, most virtual devices).
	SpeedMbps *int   `json:"speed_mbps"`
	MAC       string `json:"mac"`
	Driver    string `json:"driver"`
	// PCIAddress is the PCI function the interface hangs off, if any (for a Thunderbolt network
	// the host's Thunderbolt controller, for virtio-net the virtio device).
	PCIAddress string `json:"pci_address"`
	// Master is the bond or bridge this interface is enslaved to.
	Master    string          `json:"master"`
	Addresses []string        `json:"addresses"` // CIDR, IPv4 first
	Bond      *BondMembership `json:"bond"`
	RDMA      *InterfaceRDMA  `json:"rdma"`
}

// BondMembership is set on an interface that is a member of a bond.
type BondMembership struct {
	Master    string `json:"master"`
	Active    bool   `json:"active"`
	MIIStatus string `json:"mii_status"`
}

// InterfaceRDMA names the RDMA port that drives this net device.
type InterfaceRDMA struct {
	Device    string `json:"device"`
	Port      int    `json:"port"`
	LinkLayer string `json:"link_layer"`
}

// Scan reads the network configuration. The returned warnings say what could not be read and why.
func Scan(opts Options) (*Network, []string) {
	s := &scanner{sys: root(opts.SysfsRoot, "/sys"), proc: root(opts.ProcfsRoot, "/proc")}
	n := &Network{Interfaces: []Interface{}, Bonds: []Bond{}, RDMADevices: []RDMADevice{}, Thunderbolt: []ThunderboltLink{}}

	n.RDMADevices = s.rdmaDevices()
	n.Thunderbolt = s.thunderbolt()
	n.Interfaces = s.interfaces(n.RDMADevices)
	n.Bonds = s.bonds(n.Interfaces)

	var addrs map[string][]string
	if opts.Live {
		var err error
		addrs, err = liveAddresses()
		if err != nil {
			s.warnf("netlink: %v; reading addresses from %s instead", err, s.proc)
			addrs = nil
		}
	}
	if addrs == nil {
		addrs = s.procAddresses()
	}
	for i := range n.Interfaces {
		if a := addrs[n.Interfaces[i].Name]; a != nil {
			n.Interfaces[i].Addresses = a
		}
	}
	return n, s.warnings
}

type scanner struct {
	sys, proc string
	warnings  []string
}

func (s *scanner) warnf(format string, args ...any) {
	s.warnings = append(s.warnings, fmt.Sprintf(format, args...))
}

func root(dir, def string) string {
	if dir == "" {
		return def
	}
	return dir
}

// ARPHRD_* values from <linux/if_arp.h> that decide a kind on their own.
const (
	arphrdEther      = 1
	arphrdInfiniband = 32
	arphrdLoopback   = 772
)

func (s *scanner) interfaces(rdma []RDMADevice) []Interface {
	classNet := filepath.Join(s.sys, "class", "net")
	entries, err := os.ReadDir(classNet)
	if err != nil {
		s.warnf("network interfaces: %v", err)
		return []Interface{}
	}
	// Which RDMA port drives which net device: a RoCE NIC is an Ethernet port that also speaks
	// RDMA, and placement wants to know that.
	byNetdev := map[string]InterfaceRDMA{}
	for _, d := range rdma {
		for _, p := range d.Ports {
			if p.Netdev != "" {
				byNetdev[p.Netdev] = InterfaceRDMA{Device: d.Name, Port: p.Port, LinkLayer: p.LinkLayer}
			}
		}
	}
	out := []Interface{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || name == "bonding_masters" {
			continue
		}
		dir := filepath.Join(classNet, name)
		it := Interface{Name: name, Addresses: []string{}}
		it.State = readTrim(filepath.Join(dir, "operstate"))
		if it.State == "" {
			it.State = "unknown"
		}
		it.MTU = readIntPtr(filepath.Join(dir, "mtu"))
		if v := readIntPtr(filepath.Join(dir, "speed")); v != nil && *v > 0 {
			it.SpeedMbps = v
		}
		it.MAC = readTrim(filepath.Join(dir, "address"))
		arphrd := -1
		if v := readIntPtr(filepath.Join(dir, "type")); v != nil {
			arphrd = *v
		} else {
			s.warnf("interface %s: cannot read %s", name, filepath.Join(dir, "type"))
		}
		devPath, hasDevice := resolve(filepath.Join(dir, "device"))
		if hasDevice {
			if drv, ok := resolve(filepath.Join(devPath, "driver")); ok {
				it.Driver = filepath.Base(drv)
			}
			it.PCIAddress = nearestPCIAddress(devPath)
		}
		if m, ok := resolve(filepath.Join(dir, "master")); ok {
			it.Master = filepath.Base(m)
		}
		if r, ok := byNetdev[name]; ok {
			r := r
			it.RDMA = &r
		}
		it.Kind = s.kind(dir, arphrd, devPath, hasDevice, it)
		if it.Kind == KindBondMember {
			it.Bond = &BondMembership{
				Master:    it.Master,
				Active:    readTrim(filepath.Join(dir, "bonding_slave", "state")) == "active",
				MIIStatus: readTrim(filepath.Join(dir, "bonding_slave", "mii_status")),
			}
		}
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *scanner) kind(dir string, arphrd int, devPath string, hasDevice bool, it Interface) Kind {
	devtype := ueventValue(filepath.Join(dir, "uevent"), "DEVTYPE")
	switch {
	case arphrd == arphrdLoopback:
		return KindLoopback
	case isDir(filepath.Join(dir, "bonding")) || devtype == "bond":
		return KindBond
	case isDir(filepath.Join(dir, "bridge")) || devtype == "bridge":
		return KindBridge
	case isDir(filepath.Join(dir, "bonding_slave")):
		return KindBondMember
	case arphrd == arphrdInfiniband:
		return KindInfiniband
	case it.Driver == "thunderbolt-net" || (hasDevice && subsystemOf(devPath) == "thunderbolt"):
		return KindThunderbolt
	case isDir(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) || devtype == "wlan":
		return KindWifi
	case !hasDevice || arphrd != arphrdEther:
		// No backing device (veth, tun, dummy, vlan, ifb, ...) or a tunnel type: nothing a
		// cable plugs into.
		return KindVirtual
	case it.RDMA != nil:
		return KindRoCE
	default:
		return KindEthernet
	}
}

// subsystemOf names the bus a device sits on (the basename of its "subsystem" link).
func subsystemOf(devPath string) string {
	if p, ok := resolve(filepath.Join(devPath, "subsystem")); ok {
		return filepath.Base(p)
	}
	return ""
}
