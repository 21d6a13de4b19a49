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

// cpuinfo is /proc/cpuinfo split into per-processor blocks plus the trailing machine-wide lines
// some arm kernels print (Hardware, Model).
type cpuinfo struct {
	procs  []map[string]string
	global map[string]string
}

func parseCPUInfo(path string) (*cpuinfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ci := &cpuinfo{global: map[string]string{}}
	var cur map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024) // flags lines are long
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			cur = nil
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "processor" {
			cur = map[string]string{}
			ci.procs = append(ci.procs, cur)
		}
		if cur == nil {
			ci.global[k] = v
			continue
		}
		cur[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(ci.procs) == 0 {
		return nil, fmt.Errorf("%s: no processor entries", path)
	}
	return ci, nil
}

var x86Vendors = map[string]string{
	"GenuineIntel": "Intel",
	"AuthenticAMD": "AMD",
	"HygonGenuine": "Hygon",
	"CentaurHauls": "Centaur",
	"  Shanghai  ": "Zhaoxin",
}

// x86Features are the flags the kernels dispatch on, in the order they are reported.
var x86Features = []string{
	"sse4_2", "avx", "avx2", "fma", "f16c",
	"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
	"avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
}

// armFeatures maps arm64 hwcap names (cpuinfo "Features") to the names reported.
var armFeatures = []struct{ hwcap, name string }{
	{"asimd", "neon"}, {"asimdhp", "fp16"}, {"asimddp", "dotprod"}, {"i8mm", "i8mm"},
	{"bf16", "bf16"}, {"sve", "sve"}, {"sve2", "sve2"},
}

// armImplementers: "CPU implementer" codes from the Arm ARM (MIDR_EL1).
var armImplementers = map[string]string{
	"0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x46": "Fujitsu", "0x48": "HiSilicon",
	"0x4e": "NVIDIA", "0x50": "APM", "0x51": "Qualcomm", "0x61": "Apple", "0x6d": "Microsoft",
	"0xc0": "Ampere",
}

// armParts names the cores seen in machines we run on; others print as implementer/part.
var armParts = map[string]string{
	"0x41/0xd03": "Cortex-A53", "0x41/0xd04": "Cortex-A35", "0x41/0xd05": "Cortex-A55",
	"0x41/0xd07": "Cortex-A57", "0x41/0xd08": "Cortex-A72", "0x41/0xd09": "Cortex-A73",
	"0x41/0xd0a": "Cortex-A75", "0x41/0xd0b": "Cortex-A76", "0x41/0xd0c": "Neoverse-N1",
	"0x41/0xd0d": "Cortex-A77", "0x41/0xd40": "Neoverse-V1", "0x41/0xd41": "Cortex-A78",
	"0x41/0xd44": "Cortex-X1", "0x41/0xd46": "Cortex-A510", "0x41/0xd47": "Cortex-A710",
	"0x41/0xd48": "Cortex-X2", "0x41/0xd49": "Neoverse-N2", "0x41/0xd4f": "Neoverse-V2",
	"0x41/0xd80": "Cortex-A520", "0x41/0xd81": "Cortex-A720", "0x41/0xd82": "Cortex-X4",
	"0x61/0x022": "Icestorm", "0x61/0x023": "Firestorm",
	"0x61/0x024": "Icestorm", "0x61/0x025": "Firestorm",
	"0x61/0x028": "Icestorm", "0x61/0x029": "Firestorm",
	"0x61/0x032": "Blizzard", "0x61/0x033": "Avalanche",
	"0x61/0x034": "Blizzard", "0x61/0x035": "Avalanche",
	"0x61/0x038": "Blizzard", "0x61/0x039": "Avalanche",
	"0xc0/0xac3": "AmpereOne", "0x4e/0x004": "Carmel",
}

func (d *detector) cpu(soc string) CPU {
	c := CPU{Features: []string{}, NUMANodes: d.numaNodes()}
	path := filepath.Join(d.proc, "cpuinfo")
	ci, err := parseCPUInfo(path)
	if err != nil {
		d.warnf("CPU: %v", err)
		return c
	}
	c.LogicalCores = len(ci.procs)
	first := ci.procs[0]
	if _, ok := first["CPU implementer"]; ok {
		d.armCPU(&c, ci, soc)
	} else {
		c.Arch = "x86_64"
		c.Model = first["model name"]
		c.Vendor = x86Vendors[first["vendor_id"]]
		if c.Vendor == "" {
			c.Vendor = first["vendor_id"]
		}
		c.Features = commonFeatures(ci, "flags", func(flag string) (string, bool) {
			for _, f := range x86Features {
				if f == flag {
					return f, true
				}
			}
			return "", false
		}, x86Order)
	}
	c.PhysicalCores = d.physicalCores(ci)
	return c
}

func x86Order(name string) int {
	for i, f := range x86Features {
		if f == name {
			return i
		}
	}
	return len(x86Features)
}

func armOrder(name string) int {
	for i, f := range armFeatures {
		if f.name == name {
			return i
		}
	}
	return len(armFeatures)
}

// commonFeatures keeps the features every processor has: on big.LITTLE parts the little cores
// may lack some, and a thread may land on any core.
func commonFeatures(ci *cpuinfo, key string, name func(string) (string, bool), order func(string) int) []string {
	count := map[string]int{}
	for _, p := range ci.procs {
		seen := map[string]bool{}
		for _, flag := range strings.Fields(p[key]) {
			if n, ok := name(flag); ok && !seen[n] {
				seen[n] = true
				count[n]++
			}
		}
	}
	out := []string{}
	for n, k := range count {
		if k == len(ci.procs) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return order(out[i]) < order(out[j]) })
	return out
}

func (d *detector) armCPU(c *CPU, ci *cpuinfo, soc string) {
	c.Arch = "aarch64"
	impl := strings.ToLower(ci.procs[0]["CPU implementer"])
	c.Vendor = armImplementers[impl]
	if c.Vendor == "" {
		c.Vendor = "implementer " + impl
	}
	c.Features = commonFeatures(ci, "Features", func(hw string) (string, bool) {
		for _, f := range armFeatures {
			if f.hwcap == hw {
				return f.name, true
			}
		}
		return "", false
	}, armOrder)

	// Count cores per kind, in order of first appearance, to describe big.LITTLE layouts.
	var kinds []string
	n := map[string]int{}
	for _, p := range ci.procs {
		key := strings.ToLower(p["CPU implementer"]) + "/" + strings.ToLower(p["CPU part"])
		name := armParts[key]
		if name == "" {
			name = "part " + key
		}
		if n[name] == 0 {
			kinds = append(kinds, name)
		}
		n[name]++
	}
	var desc string
	if len(kinds) == 1 {
		desc = kinds[0]
	} else {
		parts := make([]string, len(kinds))
		for i, k := range kinds {
			parts[i] = fmt.Sprintf("%d× %s", n[k], k)
		}
		desc = strings.Join(parts, " + ")
	}
	if soc != "" {
		c.Model = soc + " (" + desc + ")"
	} else {
		c.Model = c.Vendor + " " + desc
	}
}

// physicalCores counts distinct (package, core) pairs: from cpuinfo on x86, from sysfs topology
// elsewhere; SMT siblings share a pair.
func (d *detector) physicalCores(ci *cpuinfo) int {
	pairs := map[string]bool{}
	for _, p := range ci.procs {
		core, ok1 := p["core id"]
		pkg, ok2 := p["physical id"]
		if !ok1 || !ok2 {
			pairs = nil
			break
		}
		pairs[pkg+"/"+core] = true
	}
	if len(pairs) > 0 {
		return len(pairs)
	}
	cpuDir := filepath.Join(d.sys, "devices", "system", "cpu")
	entries, err := os.ReadDir(cpuDir)
	if err == nil {
		sets := map[string]bool{}
		cpus := 0
		for _, e := range entries {
			if !cpuDirRe.MatchString(e.Name()) {
				continue
			}
			topo := filepath.Join(cpuDir, e.Name(), "topology")
			sib := readTrim(filepath.Join(topo, "core_cpus_list"))
			if sib == "" {
				sib = readTrim(filepath.Join(topo, "thread_siblings_list"))
			}
			if sib == "" {
				continue
			}
			cpus++
			sets[sib] = true
		}
		if cpus == len(ci.procs) {
			return len(sets)
		}
	}
	d.warnf("CPU: no core topology in %s or %s; counting each logical CPU as a core", filepath.Join(d.proc, "cpuinfo"), cpuDir)
	return len(ci.procs)
}

var cpuDirRe = regexp.MustCompile(`^cpu[0-9]+$`)
var nodeDirRe = regexp.MustCompile(`^node[0-9]+$`)

// numaNodes counts online NUMA nodes; a kernel without NUMA support has one.
func (d *detector) numaNodes() int {
	dir := filepath.Join(d.sys, "devices", "system", "node")
	if online := readTrim(filepath.Join(dir, "online")); online != "" {
		if n, err := countList(online); err == nil && n > 0 {
			return n
		}
		d.warnf("NUMA: cannot parse %s: %q", filepath.Join(dir, "online"), online)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 1
	}
	n := 0
	for _, e := range entries {
		if nodeDirRe.MatchString(e.Name()) {
			n++
		}
	}
	if n == 0 {
		return 1
	}
	return n
}

// countList counts the members of a kernel list such as "0-3,8,10-11".
func countList(s string) (int, error) {
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, err
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, err
			}
		}
		if b < a {
			return 0, fmt.Errorf("range %q runs backwards", part)
		}
		n += b - a + 1
	}
	return n, nil
}
