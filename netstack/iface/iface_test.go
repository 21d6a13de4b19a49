package iface

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/exo-nix/exo/netstack/iface/ifacetest"
)

// The fake machines live with the detection tests that use them as acceptance scenarios.
func machine(t *testing.T, name string) Options {
	t.Helper()
	root := ifacetest.Extract(t, filepath.Join("..", "..", "appliance", "accel", "testdata", "machines", name+".txtar"))
	return Options{SysfsRoot: filepath.Join(root, "sys"), ProcfsRoot: filepath.Join(root, "proc")}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, path, target string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func find(n *Network, name string) *Interface {
	for i := range n.Interfaces {
		if n.Interfaces[i].Name == name {
			return &n.Interfaces[i]
		}
	}
	return nil
}

func TestScanNVIDIAServerNetwork(t *testing.T) {
	n, warns := Scan(machine(t, "nvidia-roce-bond"))
	if len(warns) != 0 {
		t.Errorf("warnings %q", warns)
	}
	var kinds []string
	for _, it := range n.Interfaces {
		kinds = append(kinds, it.Name+"="+string(it.Kind))
	}
	want := []string{"bond0=bond", "ens2f0np0=bond-member", "ens2f1np1=bond-member", "ens3f0np0=roce", "ibp68s0=infiniband", "lo=loopback"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	if ib := find(n, "ibp68s0"); !reflect.DeepEqual(ib.Addresses, []string{"10.60.0.11/16"}) {
		t.Errorf("ibp68s0 addresses %v", ib.Addresses)
	}
}

// Only /proc/net/bonding is readable (sysfs without bonding/, as in some containers): an
// active-backup bond's active member comes from "Currently Active Slave".
func TestBondFromProcOnly(t *testing.T) {
	root := t.TempDir()
	sys, proc := filepath.Join(root, "sys"), filepath.Join(root, "proc")
	write(t, filepath.Join(sys, "class", "net", ".keep"), "")
	write(t, filepath.Join(proc, "net", "bonding", "bond1"), `Ethernet Channel Bonding Driver: v6.8.0

Bonding Mode: fault-tolerance (active-backup)
Primary Slave: None
Currently Active Slave: eth1
MII Status: up
MII Polling Interval (ms): 100

Slave Interface: eth0
MII Status: up
Speed: 10000 Mbps
Duplex: full
Link Failure Count: 2
Permanent HW addr: 52:54:00:00:00:01
Slave queue ID: 0

Slave Interface: eth1
MII Status: up
Speed: 10000 Mbps
Duplex: full
Link Failure Count: 0
Permanent HW addr: 52:54:00:00:00:02
Slave queue ID: 0
`)
	n, _ := Scan(Options{SysfsRoot: sys, ProcfsRoot: proc})
	if len(n.Bonds) != 1 {
		t.Fatalf("bonds %+v", n.Bonds)
	}
	b := n.Bonds[0]
	if b.Mode != "active-backup" || b.ActiveMember != "eth1" || b.MIIStatus != "up" || b.LACPRate != "" || len(b.Members) != 2 {
		t.Fatalf("bond %+v", b)
	}
	if b.Members[0].Active || !b.Members[1].Active || *b.Members[0].LinkFailures != 2 || *b.Members[1].SpeedMbps != 10000 {
		t.Errorf("members %+v", b.Members)
	}
}

// sysfs only: the member list and states still come out; the missing /proc file is named.
func TestBondFromSysfsOnly(t *testing.T) {
	root := t.TempDir()
	sys, proc := filepath.Join(root, "sys"), filepath.Join(root, "proc")
	netDir := filepath.Join(sys, "devices", "virtual", "net")
	for _, f := range []struct{ p, v string }{
		{"bond0/type", "1"}, {"bond0/operstate", "up"}, {"bond0/mtu", "1500"},
		{"bond0/bonding/mode", "balance-xor 2"}, {"bond0/bonding/slaves", "veth-a veth-b"},
		{"bond0/bonding/mii_status", "up"}, {"bond0/bonding/xmit_hash_policy", "layer2+3 2"},
		{"veth-a/type", "1"}, {"veth-a/operstate", "up"}, {"veth-a/speed", "10000"},
		{"veth-a/bonding_slave/mii_status", "up"}, {"veth-a/bonding_slave/state", "active"},
		{"veth-b/type", "1"}, {"veth-b/operstate", "down"},
		{"veth-b/bonding_slave/mii_status", "down"}, {"veth-b/bonding_slave/state", "backup"},
	} {
		write(t, filepath.Join(netDir, f.p), f.v+"\n")
	}
	for _, n := range []string{"bond0", "veth-a", "veth-b"} {
		link(t, filepath.Join(sys, "class", "net", n), filepath.Join("..", "..", "devices", "virtual", "net", n))
	}
	link(t, filepath.Join(netDir, "veth-a", "master"), "../bond0")
	n, warns := Scan(Options{SysfsRoot: sys, ProcfsRoot: proc})
	b := n.Bonds[0]
	if b.Mode != "balance-xor" || b.TransmitHashPolicy != "layer2+3" || b.ActiveAggregator != nil {
		t.Errorf("bond %+v", b)
	}
	if !b.Members[0].Active || *b.Members[0].SpeedMbps != 10000 || b.Members[1].Active || b.Members[1].SpeedMbps != nil {
		t.Errorf("members %+v", b.Members)
	}
	if !strings.Contains(strings.Join(warns, "\n"), "bond bond0: open "+filepath.Join(proc, "net", "bonding", "bond0")) {
		t.Errorf("warnings %q", warns)
	}
	if a := find(n, "veth-a"); a.Kind != KindBondMember || a.Master != "bond0" || a.Bond == nil || !a.Bond.Active {
		t.Errorf("veth-a %+v", a)
	}
}

// A RoCE LAG: mlx5_bond_0's GID table names the bond, so the bond carries the RDMA port and
// stays a bond.
func TestRoCELAG(t *testing.T) {
	root := t.TempDir()
	sys := filepath.Join(root, "sys")
	pci := filepath.Join(sys, "devices", "pci0000:00", "0000:00:02.0", "0000:3b:00.0")
	write(t, filepath.Join(pci, "infiniband", "mlx5_bond_0", "node_type"), "1: CA\n")
	write(t, filepath.Join(pci, "infiniband", "mlx5_bond_0", "ports", "1", "state"), "4: ACTIVE\n")
	write(t, filepath.Join(pci, "infiniband", "mlx5_bond_0", "ports", "1", "link_layer"), "Ethernet\n")
	write(t, filepath.Join(pci, "infiniband", "mlx5_bond_0", "ports", "1", "rate"), "50 Gb/sec (2X EDR)\n")
	write(t, filepath.Join(pci, "infiniband", "mlx5_bond_0", "ports", "1", "gid_attrs", "ndevs", "0"), "bond0\n")
	link(t, filepath.Join(pci, "infiniband", "mlx5_bond_0", "device"), "../../../0000:3b:00.0")
	link(t, filepath.Join(sys, "class", "infiniband", "mlx5_bond_0"), "../../devices/pci0000:00/0000:00:02.0/0000:3b:00.0/infiniband/mlx5_bond_0")
	bond := filepath.Join(sys, "devices", "virtual", "net", "bond0")
	write(t, filepath.Join(bond, "type"), "1\n")
	write(t, filepath.Join(bond, "bonding", "mode"), "802.3ad 4\n")
	link(t, filepath.Join(sys, "class", "net", "bond0"), "../../devices/virtual/net/bond0")
	n, _ := Scan(Options{SysfsRoot: sys, ProcfsRoot: filepath.Join(root, "proc")})
	b := find(n, "bond0")
	if b.Kind != KindBond || b.RDMA == nil || b.RDMA.Device != "mlx5_bond_0" {
		t.Errorf("bond0 %+v", b)
	}
	d := n.RDMADevices[0]
	if d.PCIAddress != "0000:3b:00.0" || *d.Ports[0].RateGbps != 50 || d.Ports[0].PhysState != "" {
		t.Errorf("device %+v", d)
	}
}

// Kernels before DEVTYPE in thunderbolt uevents: the kind of each bus device is read from its name.
func TestThunderboltWithoutDevtype(t *testing.T) {
	root := t.TempDir()
	sys := filepath.Join(root, "sys")
	base := filepath.Join(sys, "devices", "pci0000:00", "0000:00:0d.2", "domain0", "0-0")
	write(t, filepath.Join(base, "device_name"), "host\n")
	write(t, filepath.Join(base, "0-3", "device_name"), "TS4 Dock\n")
	write(t, filepath.Join(base, "0-3", "vendor_name"), "CalDigit, Inc.\n")
	write(t, filepath.Join(base, "0-3", "rx_speed"), "20.0 Gb/s\n")
	write(t, filepath.Join(base, "0-3", "rx_lanes"), "2\n")
	write(t, filepath.Join(base, "0-0:1.1", "device"), "0x8087\n")
	devs := filepath.Join(sys, "bus", "thunderbolt", "devices")
	link(t, filepath.Join(devs, "domain0"), "../../../devices/pci0000:00/0000:00:0d.2/domain0")
	link(t, filepath.Join(devs, "0-0"), "../../../devices/pci0000:00/0000:00:0d.2/domain0/0-0")
	link(t, filepath.Join(devs, "0-3"), "../../../devices/pci0000:00/0000:00:0d.2/domain0/0-0/0-3")
	link(t, filepath.Join(devs, "0-0:1.1"), "../../../devices/pci0000:00/0000:00:0d.2/domain0/0-0/0-0:1.1")
	n, _ := Scan(Options{SysfsRoot: sys, ProcfsRoot: filepath.Join(root, "proc")})
	if len(n.Thunderbolt) != 1 {
		t.Fatalf("want the dock only (not the domain, host router or retimer): %+v", n.Thunderbolt)
	}
	l := n.Thunderbolt[0]
	if l.ID != "0-3" || l.Type != "device" || l.DeviceName != "TS4 Dock" || *l.RxSpeedGbps != 20 || l.TxSpeedGbps != nil || len(l.Netdevs) != 0 {
		t.Errorf("%+v", l)
	}
}

func TestScanNothing(t *testing.T) {
	dir := t.TempDir()
	n, warns := Scan(Options{SysfsRoot: dir, ProcfsRoot: dir})
	if n == nil || n.Interfaces == nil || n.Bonds == nil || n.RDMADevices == nil || n.Thunderbolt == nil {
		t.Fatalf("lists must be empty, not nil: %+v", n)
	}
	joined := strings.Join(warns, "\n")
	for _, want := range []string{"network interfaces: open " + filepath.Join(dir, "class", "net"), "IPv4 addresses: open " + filepath.Join(dir, "net", "fib_trie")} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q lack %q", warns, want)
		}
	}
}

func TestProcAddressesParse(t *testing.T) {
	o := machine(t, "thunderbolt-pair")
	s := &scanner{sys: o.SysfsRoot, proc: o.ProcfsRoot}
	got := s.procAddresses()
	want := map[string][]string{
		"lo":           {"127.0.0.1/8", "::1/128"},
		"eno1":         {"192.168.1.31/24", "fe80::8aae:ddff:fe0c:417a/64"},
		"thunderbolt0": {"10.99.0.1/30", "fe80::5f:8aff:fe2c:179e/64"},
	}
	if !reflect.DeepEqual(got, want) || len(s.warnings) != 0 {
		t.Errorf("got %v warnings %q", got, s.warnings)
	}
}

// Live: netlink on the machine running the tests.
func TestScanLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("netlink is Linux only")
	}
	n, warns := Scan(Options{Live: true})
	lo := find(n, "lo")
	if lo == nil {
		t.Fatalf("no lo; warnings %q", warns)
	}
	if lo.Kind != KindLoopback || !contains(lo.Addresses, "127.0.0.1/8") {
		t.Errorf("lo %+v (warnings %q)", lo, warns)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
