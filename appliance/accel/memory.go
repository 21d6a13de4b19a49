package accel

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroup v1 reports "no limit" as the largest page-aligned int64; anything this large is none.
const noLimitThreshold = uint64(1) << 62

func (d *detector) memory() Memory {
	m := Memory{}
	path := filepath.Join(d.proc, "meminfo")
	mi, err := parseMeminfo(path)
	if err != nil {
		d.warnf("memory: %v", err)
		return m
	}
	m.TotalBytes = mi["MemTotal"]
	if m.TotalBytes == 0 {
		d.warnf("memory: %s has no MemTotal", path)
	}
	if v, ok := mi["MemAvailable"]; ok {
		m.AvailableBytes = v
	} else {
		// Kernels before 3.14: the classic estimate.
		m.AvailableBytes = mi["MemFree"] + mi["Buffers"] + mi["Cached"]
		d.warnf("memory: %s has no MemAvailable; estimating from MemFree+Buffers+Cached", path)
	}

	limit, used, ok := d.cgroupMemory()
	if ok {
		m.CgroupLimitBytes = &limit
		headroom := uint64(0)
		if limit > used {
			headroom = limit - used
		}
		if headroom < m.AvailableBytes {
			m.AvailableBytes = headroom
		}
	}
	return m
}

// parseMeminfo returns /proc/meminfo in bytes.
func parseMeminfo(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: bad value %q", path, k, fs[0])
		}
		if len(fs) > 1 && fs[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out, sc.Err()
}

// cgroupMemory finds the memory limit that binds this process and the memory already charged
// against it, not counting inactive page cache (the kernel reclaims that before it OOM-kills, as
// kubelet's "working set" assumes). ok is false when no limit applies.
func (d *detector) cgroupMemory() (limit, used uint64, ok bool) {
	path := filepath.Join(d.proc, "self", "cgroup")
	f, err := os.Open(path)
	if err != nil {
		d.warnf("cgroup: %v; memory limits not checked", err)
		return 0, 0, false
	}
	defer f.Close()
	var v1Path, v2Path string
	haveV2 := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.SplitN(sc.Text(), ":", 3)
		if len(fs) != 3 {
			continue
		}
		if fs[0] == "0" && fs[1] == "" {
			v2Path, haveV2 = fs[2], true
			continue
		}
		for _, ctl := range strings.Split(fs[1], ",") {
			if ctl == "memory" {
				v1Path = fs[2]
			}
		}
	}
	cg := filepath.Join(d.sys, "fs", "cgroup")
	if v1Path != "" {
		return d.cgroupV1(cg, v1Path)
	}
	if haveV2 {
		return d.cgroupV2(cg, v2Path)
	}
	d.warnf("cgroup: %s names no memory cgroup", path)
	return 0, 0, false
}

func (d *detector) cgroupV2(root, rel string) (limit, used uint64, ok bool) {
	leaf := filepath.Join(root, filepath.Clean("/"+rel))
	if !isDir(leaf) {
		// A cgroup namespace shows its own cgroup as "/", or the path is from another mount
		// namespace: the mount root is then this process's cgroup.
		leaf = root
	}
	limit = ^uint64(0)
	// Every ancestor's memory.max binds too; the tightest wins.
	for dir := leaf; ; dir = filepath.Dir(dir) {
		if s := readTrim(filepath.Join(dir, "memory.max")); s != "" && s != "max" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				d.warnf("cgroup: %s: bad value %q", filepath.Join(dir, "memory.max"), s)
			} else if v < limit {
				limit = v
			}
		}
		if dir == root || len(dir) <= len(root) {
			break
		}
	}
	if limit == ^uint64(0) {
		return 0, 0, false
	}
	cur, _ := readUint(filepath.Join(leaf, "memory.current"))
	inactive := statValue(filepath.Join(leaf, "memory.stat"), "inactive_file")
	if inactive < cur {
		cur -= inactive
	}
	return limit, cur, true
}

func (d *detector) cgroupV1(root, rel string) (limit, used uint64, ok bool) {
	dir := filepath.Join(root, "memory", filepath.Clean("/"+rel))
	if !isDir(dir) {
		dir = filepath.Join(root, "memory")
	}
	stat := filepath.Join(dir, "memory.stat")
	// hierarchical_memory_limit already folds in the ancestors' limits.
	limit = statValue(stat, "hierarchical_memory_limit")
	if limit == 0 {
		v, okLimit := readUint(filepath.Join(dir, "memory.limit_in_bytes"))
		if !okLimit {
			d.warnf("cgroup: no memory limit readable in %s", dir)
			return 0, 0, false
		}
		limit = v
	}
	if limit >= noLimitThreshold {
		return 0, 0, false
	}
	cur, _ := readUint(filepath.Join(dir, "memory.usage_in_bytes"))
	inactive := statValue(stat, "total_inactive_file")
	if inactive < cur {
		cur -= inactive
	}
	return limit, cur, true
}

// statValue reads one "key value" line of a cgroup memory.stat file; 0 when absent.
func statValue(path, key string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
