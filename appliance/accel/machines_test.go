package accel

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/exo-nix/exo/netstack/iface"
)

// These tests state, independently of the golden files, the facts each fake machine was built
// to show, so a wrong golden cannot pass review by being regenerated.

func accelAt(t *testing.T, r *Report, addr string) Accelerator {
	t.Helper()
	for _, a := range r.Accelerators {
		if a.PCIAddress == addr {
			return a
		}
	}
	t.Fatalf("no accelerator at %s in %+v", addr, r.Accelerators)
	return Accelerator{}
}

func ifaceNamed(t *testing.T, r *Report, name string) iface.Interface {
	t.Helper()
	for _, it := range r.Network.Interfaces {
		if it.Name == name {
			return it
		}
	}
	t.Fatalf("no interface %s", name)
	return iface.Interface{}
}

func eqU(p *uint64, v uint64) bool   { return p != nil && *p == v }
func eqF(p *float64, v float64) bool { return p != nil && *p == v }
func eqI(p *int, v int) bool         { return p != nil && *p == v }

func TestNVIDIAServer(t *testing.T) {
	r, _ := detectMachine(t, "nvidia-roce-bond")
	if len(r.Accelerators) != 2 {
		t.Fatalf("want the two H100s only (not the ASPEED BMC VGA), got %+v", r.Accelerators)
	}
	for i, addr := range []string{"0000:01:00.0", "0000:41:00.0"} {
		a := accelAt(t, r, addr)
		if a.Name != "NVIDIA H100 80GB HBM3" || a.Vendor != "nvidia" || a.Driver != "nvidia" || !eqI(a.NUMANode, i) || a.DriverVersion != "550.54.15" {
			t.Errorf("%s: %+v", addr, a)
		}
		if a.MemoryTotalBytes != nil {
			t.Errorf("%s: memory known without NVML", addr)
		}
	}
	if !hasWarning(r, "NVML: not queried") {
		t.Errorf("no warning that NVML was not queried: %q", r.Warnings)
	}
	c := r.CPU
	if c.PhysicalCores != 16 || c.LogicalCores != 16 || c.NUMANodes != 2 || !contains(c.Features, "avx512_vnni") || !contains(c.Features, "avx512_bf16") {
		t.Errorf("cpu %+v", c)
	}

	if len(r.Network.Bonds) != 1 {
		t.Fatalf("bonds %+v", r.Network.Bonds)
	}
	b := r.Network.Bonds[0]
	if b.Name != "bond0" || b.Mode != "802.3ad" || b.LACPRate != "fast" || b.TransmitHashPolicy != "layer3+4" || !eqI(b.ActiveAggregator, 1) || !eqI(b.SpeedMbps, 25000) {
		t.Errorf("bond %+v", b)
	}
	if len(b.Members) != 2 {
		t.Fatalf("members %+v", b.Members)
	}
	up, down := b.Members[0], b.Members[1]
	if up.Name != "ens2f0np0" || up.State != "up" || !up.Active || !eqI(up.SpeedMbps, 25000) || !eqI(up.LinkFailures, 0) {
		t.Errorf("up member %+v", up)
	}
	if down.Name != "ens2f1np1" || down.State != "down" || down.Active || down.SpeedMbps != nil || !eqI(down.LinkFailures, 1) || !eqI(down.AggregatorID, 2) {
		t.Errorf("down member %+v", down)
	}
	m := ifaceNamed(t, r, "ens2f1np1")
	if m.Kind != iface.KindBondMember || m.Master != "bond0" || m.Bond == nil || m.Bond.Active || m.Bond.MIIStatus != "down" {
		t.Errorf("member interface %+v", m)
	}
	if bi := ifaceNamed(t, r, "bond0"); bi.Kind != iface.KindBond || !reflect.DeepEqual(bi.Addresses, []string{"10.20.0.11/24", "fe80::b696:91ff:fea7:3c10/64"}) {
		t.Errorf("bond0 %+v", bi)
	}

	roce := ifaceNamed(t, r, "ens3f0np0")
	if roce.Kind != iface.KindRoCE || roce.RDMA == nil || roce.RDMA.Device != "mlx5_0" || roce.RDMA.LinkLayer != "Ethernet" || !eqI(roce.SpeedMbps, 100000) {
		t.Errorf("RoCE NIC %+v", roce)
	}
	ib := ifaceNamed(t, r, "ibp68s0")
	if ib.Kind != iface.KindInfiniband || ib.RDMA == nil || ib.RDMA.Device != "mlx5_1" {
		t.Errorf("IPoIB %+v", ib)
	}
	if len(r.Network.RDMADevices) != 2 {
		t.Fatalf("rdma %+v", r.Network.RDMADevices)
	}
	p := r.Network.RDMADevices[0].Ports[0]
	if p.State != "ACTIVE" || p.PhysState != "LinkUp" || !eqF(p.RateGbps, 100) || p.Netdev != "ens3f0np0" {
		t.Errorf("mlx5_0 port %+v", p)
	}
	if q := r.Network.RDMADevices[1].Ports[0]; q.LinkLayer != "InfiniBand" || q.Netdev != "ibp68s0" || !eqF(q.RateGbps, 400) {
		t.Errorf("mlx5_1 port %+v", q)
	}
}

func TestAMDWorkstation(t *testing.T) {
	r, _ := detectMachine(t, "amd-instinct-radeon")
	mi := accelAt(t, r, "0000:03:00.0")
	if mi.Name != "AMD Instinct MI210" || mi.ComputeCapability != "gfx90a" || !eqU(mi.MemoryTotalBytes, 68702699520) ||
		!eqU(mi.MemoryFreeBytes, 68702699520-11010048) || !eqF(mi.TemperatureC, 41) || !eqF(mi.PowerW, 42) || !eqI(mi.UtilizationPercent, 0) || mi.Integrated {
		t.Errorf("MI210 %+v", mi)
	}
	rx := accelAt(t, r, "0000:0c:00.0")
	// No FRU product name on consumer boards: the name comes from the tree's pci.ids.
	if rx.Name != "AMD Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]" || rx.ComputeCapability != "gfx1100" ||
		!eqU(rx.MemoryTotalBytes, 25753026560) || !eqF(rx.PowerW, 31) || !eqF(rx.TemperatureC, 38) || !eqI(rx.UtilizationPercent, 3) {
		t.Errorf("RX 7900 XTX %+v", rx)
	}
	if len(r.Accelerators) != 2 {
		t.Errorf("audio function or bridges counted: %+v", r.Accelerators)
	}
	if r.Platform != "ASUS Pro WS X570-ACE" {
		t.Errorf("platform %q", r.Platform)
	}
	if c := r.CPU; c.PhysicalCores != 8 || c.LogicalCores != 16 || contains(c.Features, "avx512f") {
		t.Errorf("cpu %+v", c)
	}
	if br := ifaceNamed(t, r, "br0"); br.Kind != iface.KindBridge {
		t.Errorf("br0 %+v", br)
	}
	if e := ifaceNamed(t, r, "enp5s0"); e.Kind != iface.KindEthernet || e.Master != "br0" {
		t.Errorf("enp5s0 %+v", e)
	}
	if w := ifaceNamed(t, r, "wlp6s0"); w.Kind != iface.KindWifi || w.State != "down" {
		t.Errorf("wlp6s0 %+v", w)
	}
}

func TestIntelArc(t *testing.T) {
	r, _ := detectMachine(t, "intel-arc-xe")
	arc := accelAt(t, r, "0000:03:00.0")
	if arc.Driver != "xe" || arc.Integrated || !eqU(arc.MemoryTotalBytes, 17163091968) || !eqF(arc.TemperatureC, 46) || arc.PCIID != "8086:56a0" {
		t.Errorf("Arc %+v", arc)
	}
	igpu := accelAt(t, r, "0000:00:02.0")
	if igpu.Driver != "i915" || !igpu.Integrated || igpu.MemoryTotalBytes != nil {
		t.Errorf("iGPU %+v", igpu)
	}
	if c := r.CPU; c.PhysicalCores != 10 || c.LogicalCores != 16 || !contains(c.Features, "avx_vnni") {
		t.Errorf("cpu %+v", c)
	}
	if !hasWarning(r, "0000:00:02.0, 0000:03:00.0 named by PCI ID") {
		t.Errorf("warnings %q", r.Warnings)
	}
}

func TestThunderboltPair(t *testing.T) {
	r, _ := detectMachine(t, "thunderbolt-pair")
	tb := ifaceNamed(t, r, "thunderbolt0")
	if tb.Kind != iface.KindThunderbolt || tb.Driver != "thunderbolt-net" || !reflect.DeepEqual(tb.Addresses, []string{"10.99.0.1/30", "fe80::5f:8aff:fe2c:179e/64"}) {
		t.Errorf("thunderbolt0 %+v", tb)
	}
	if len(r.Network.Thunderbolt) != 1 {
		t.Fatalf("host routers must not count as links: %+v", r.Network.Thunderbolt)
	}
	l := r.Network.Thunderbolt[0]
	if l.ID != "0-1" || l.Type != "xdomain" || l.DeviceName != "node-b" || !eqF(l.RxSpeedGbps, 20) || !eqI(l.RxLanes, 2) || !eqI(l.TxLanes, 2) ||
		!reflect.DeepEqual(l.Netdevs, []string{"thunderbolt0"}) {
		t.Errorf("link %+v", l)
	}
	if w := ifaceNamed(t, r, "wlo1"); w.Kind != iface.KindWifi || w.State != "dormant" {
		t.Errorf("wlo1 %+v", w)
	}
}

func TestARMBoard(t *testing.T) {
	r, _ := detectMachine(t, "arm-rpi5")
	if r.Platform != "Raspberry Pi 5 Model B Rev 1.0" || r.CPU.Model != "Broadcom BCM2712 (Cortex-A76)" || r.CPU.Arch != "aarch64" ||
		!reflect.DeepEqual(r.CPU.Features, []string{"neon", "fp16", "dotprod"}) || r.CPU.PhysicalCores != 4 || r.CPU.NUMANodes != 1 {
		t.Errorf("platform %q cpu %+v", r.Platform, r.CPU)
	}
	if len(r.Accelerators) != 1 {
		t.Fatalf("want only the enabled V3D (not disabled VC4, not the NVMe): %+v", r.Accelerators)
	}
	g := r.Accelerators[0]
	if g.Vendor != "broadcom" || g.Driver != "v3d" || !g.UnifiedMemory || !eqU(g.MemoryTotalBytes, r.Memory.TotalBytes) || g.Source != "devicetree" {
		t.Errorf("GPU %+v", g)
	}
	if len(r.Warnings) != 0 {
		t.Errorf("warnings %q", r.Warnings)
	}
}

func TestAsahi(t *testing.T) {
	r, _ := detectMachine(t, "apple-m1max-asahi")
	if r.CPU.Model != "Apple M1 Max (2× Icestorm + 8× Firestorm)" || r.CPU.Vendor != "Apple" || r.CPU.LogicalCores != 10 || r.CPU.PhysicalCores != 10 {
		t.Errorf("cpu %+v", r.CPU)
	}
	if len(r.Accelerators) != 1 {
		t.Fatalf("accelerators %+v", r.Accelerators)
	}
	g := r.Accelerators[0]
	if g.Name != "Apple M1 Max GPU" || g.ComputeCapability != "g13x" || g.Driver != "asahi" || !g.UnifiedMemory || !eqU(g.MemoryTotalBytes, 65195008*1024) {
		t.Errorf("GPU %+v", g)
	}
}

func TestCPUOnlyVMWithCgroupLimit(t *testing.T) {
	r, _ := detectMachine(t, "cpu-vm-cgroup")
	if len(r.Accelerators) != 0 {
		t.Errorf("virtio-gpu is not an accelerator: %+v", r.Accelerators)
	}
	const limit = 8 << 30
	// Headroom under the limit: limit - (memory.current - inactive_file); tighter than MemAvailable.
	want := uint64(limit - (1342177280 - 209715200))
	if !eqU(r.Memory.CgroupLimitBytes, limit) || r.Memory.AvailableBytes != want || r.Memory.TotalBytes != 16370812*1024 {
		t.Errorf("memory %+v, want available %d", r.Memory, want)
	}
	if r.SelectedBackend != BackendCPU {
		t.Errorf("selected %q", r.SelectedBackend)
	}
	if ts := ifaceNamed(t, r, "tailscale0"); ts.Kind != iface.KindVirtual {
		t.Errorf("tailscale0 %+v", ts)
	}
	if e := ifaceNamed(t, r, "enp1s0"); e.Driver != "virtio_net" || e.PCIAddress != "0000:01:00.0" || e.Kind != iface.KindEthernet {
		t.Errorf("enp1s0 %+v", e)
	}
	if !hasWarning(r, "100.101.102.103: no connected route") {
		t.Errorf("warnings %q", r.Warnings)
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

func TestGfxTarget(t *testing.T) {
	for v, want := range map[uint64]string{90010: "gfx90a", 110000: "gfx1100", 90402: "gfx942", 100300: "gfx1030", 90008: "gfx908"} {
		if got := gfxTarget(v); got != want {
			t.Errorf("gfxTarget(%d) = %s, want %s", v, got, want)
		}
	}
}

func TestCountList(t *testing.T) {
	for s, want := range map[string]int{"0": 1, "0-1": 2, "0-3,8,10-11": 7} {
		if n, err := countList(s); err != nil || n != want {
			t.Errorf("countList(%q) = %d, %v", s, n, err)
		}
	}
	for _, bad := range []string{"", "a", "3-1"} {
		if _, err := countList(bad); err == nil {
			t.Errorf("countList(%q) accepted", bad)
		}
	}
}

func TestNvidiaDriverVersion(t *testing.T) {
	dir := t.TempDir()
	for line, want := range map[string]string{
		"NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.161.08  Tue Mar  5 22:23:56 UTC 2024": "535.161.08",
		"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build":        "550.54.15",
		"garbage": "",
	} {
		p := dir + "/v"
		writeFile(t, p, line+"\nGCC version: gcc 12.2.0\n")
		if got := nvidiaDriverVersion(p); got != want {
			t.Errorf("%q: got %q want %q", line, got, want)
		}
	}
}

func TestHeterogeneousFeatures(t *testing.T) {
	// A little core without dotprod: the common set must drop it.
	ci := &cpuinfo{procs: []map[string]string{
		{"Features": "fp asimd asimdhp asimddp i8mm"},
		{"Features": "fp asimd asimdhp"},
	}}
	got := commonFeatures(ci, "Features", func(hw string) (string, bool) {
		for _, f := range armFeatures {
			if f.hwcap == hw {
				return f.name, true
			}
		}
		return "", false
	}, armOrder)
	if strings.Join(got, ",") != "neon,fp16" {
		t.Errorf("got %v", got)
	}
}

// ghw drops the whole bus when one function has no modalias; detection then reads sysfs itself.
func TestPCIFallbackWhenGHWGivesUp(t *testing.T) {
	o, _ := machine(t, "amd-instinct-radeon")
	bridge := filepath.Join(o.SysfsRoot, "bus", "pci", "devices", "0000:00:00.0", "modalias")
	if err := os.Remove(bridge); err != nil {
		t.Fatal(err)
	}
	r, err := Detect(o)
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(r, "the ghw scan returned no devices") || len(r.Accelerators) != 2 {
		t.Fatalf("accelerators %+v warnings %q", r.Accelerators, r.Warnings)
	}
	mi, rx := accelAt(t, r, "0000:03:00.0"), accelAt(t, r, "0000:0c:00.0")
	if mi.Name != "AMD Instinct MI210" || mi.ComputeCapability != "gfx90a" || rx.PCIID != "1002:744c" || rx.Driver != "amdgpu" || !eqU(rx.MemoryTotalBytes, 25753026560) {
		t.Errorf("MI210 %+v\nRX %+v", mi, rx)
	}
}
