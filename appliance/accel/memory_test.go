package accel

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const meminfo16G = "MemTotal:       16370812 kB\nMemFree:        12980224 kB\nMemAvailable:   14832112 kB\n"

func TestCgroupV1HierarchicalLimit(t *testing.T) {
	root := t.TempDir()
	sys, proc := filepath.Join(root, "sys"), filepath.Join(root, "proc")
	writeFile(t, filepath.Join(proc, "meminfo"), meminfo16G)
	writeFile(t, filepath.Join(proc, "self", "cgroup"), "12:pids:/kubepods/pod1/c1\n4:memory:/kubepods/pod1/c1\n1:name=systemd:/kubepods/pod1/c1\n0::/\n")
	cg := filepath.Join(sys, "fs", "cgroup", "memory", "kubepods", "pod1", "c1")
	// The container's own limit is unlimited; the pod's 4 GiB binds, which memory.stat's
	// hierarchical_memory_limit already says.
	writeFile(t, filepath.Join(cg, "memory.limit_in_bytes"), "9223372036854771712\n")
	writeFile(t, filepath.Join(cg, "memory.usage_in_bytes"), "1073741824\n")
	writeFile(t, filepath.Join(cg, "memory.stat"), "cache 300000000\nrss 700000000\nhierarchical_memory_limit 4294967296\ntotal_inactive_file 73741824\n")
	d := &detector{sys: sys, proc: proc}
	m := d.memory()
	if !eqU(m.CgroupLimitBytes, 4<<30) || m.AvailableBytes != 4<<30-(1073741824-73741824) {
		t.Errorf("memory %+v (warnings %q)", m, d.warnings)
	}
}

func TestCgroupV1Unlimited(t *testing.T) {
	root := t.TempDir()
	sys, proc := filepath.Join(root, "sys"), filepath.Join(root, "proc")
	writeFile(t, filepath.Join(proc, "meminfo"), meminfo16G)
	// Path from another namespace: the memory controller is mounted at this cgroup.
	writeFile(t, filepath.Join(proc, "self", "cgroup"), "4:memory:/process_api/29f9\n")
	writeFile(t, filepath.Join(sys, "fs", "cgroup", "memory", "memory.limit_in_bytes"), "9223372036854771712\n")
	d := &detector{sys: sys, proc: proc}
	m := d.memory()
	if m.CgroupLimitBytes != nil || m.AvailableBytes != 14832112*1024 {
		t.Errorf("memory %+v", m)
	}
	if len(d.warnings) != 0 {
		t.Errorf("warnings %q", d.warnings)
	}
}

func TestCgroupV2AncestorLimit(t *testing.T) {
	root := t.TempDir()
	sys, proc := filepath.Join(root, "sys"), filepath.Join(root, "proc")
	writeFile(t, filepath.Join(proc, "meminfo"), meminfo16G)
	writeFile(t, filepath.Join(proc, "self", "cgroup"), "0::/exo.slice/exo-worker.service\n")
	cg := filepath.Join(sys, "fs", "cgroup")
	writeFile(t, filepath.Join(cg, "exo.slice", "memory.max"), "2147483648\n")
	writeFile(t, filepath.Join(cg, "exo.slice", "exo-worker.service", "memory.max"), "max\n")
	writeFile(t, filepath.Join(cg, "exo.slice", "exo-worker.service", "memory.current"), "536870912\n")
	d := &detector{sys: sys, proc: proc}
	m := d.memory()
	if !eqU(m.CgroupLimitBytes, 2<<30) || m.AvailableBytes != 2<<30-536870912 {
		t.Errorf("memory %+v", m)
	}
}

func TestMeminfoWithoutMemAvailable(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "meminfo"), "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 20 kB\n")
	d := &detector{sys: root, proc: root}
	m := d.memory()
	if m.AvailableBytes != 130*1024 || !hasWarningIn(d.warnings, "no MemAvailable") {
		t.Errorf("memory %+v warnings %q", m, d.warnings)
	}
}

func hasWarningIn(ws []string, sub string) bool {
	return hasWarning(&Report{Warnings: ws}, sub)
}
