package kernels

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// TestAdviseHugePages: a 16 MiB buffer lies, but for its unaligned ends, on transparent huge
// pages where the system has THP on: advised before it is written (packed weights: fresh heap
// memory), and advised after (heap memory used before, collapsed in place).
func TestAdviseHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("transparent huge pages are off here (%q, %v)", strings.TrimSpace(string(mode)), err)
	}
	const n = 16 << 20
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(i)
		}
	}
	for _, before := range []bool{true, false} {
		b := alignedBytes(nil, n)
		if !before {
			fill(b)
		}
		if err := adviseHuge(b); err != nil {
			t.Fatal(err)
		}
		if before {
			fill(b)
		}
		huge, advised, err := anonHugeKiB(uintptr(unsafe.Pointer(&b[0])), n)
		if err != nil {
			t.Skip(err)
		}
		if !advised {
			if runtime.GOARCH != "amd64" {
				// The arm64 tests run under qemu-user, which takes madvise and does nothing.
				t.Skip("the advice did not reach the kernel (an emulator?): no mapping of the buffer has VmFlags hg")
			}
			t.Fatal("no mapping of the buffer has VmFlags hg: the huge page advice did not take")
		}
		// Of 16 MiB at any alignment, at least 14 MiB are whole huge pages.
		if huge < 14<<10 {
			t.Errorf("advised before it was written: %v; %d KiB of the 16 MiB buffer are on huge pages, want at least 14336", before, huge)
		}
	}
}

// anonHugeKiB sums AnonHugePages over the mappings of /proc/self/smaps that overlap [addr,
// addr+n), and reports whether one of them is advised for huge pages (VmFlags hg).
func anonHugeKiB(addr uintptr, n int) (total int, advised bool, err error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in, found := false, false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if k, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); k == 2 {
			in = lo < addr+uintptr(n) && addr < hi
			found = found || in
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") && slices.Contains(strings.Fields(line)[1:], "hg") {
			advised = true
		}
		var kb int
		if in && strings.HasPrefix(line, "AnonHugePages:") {
			if _, err := fmt.Sscanf(line, "AnonHugePages: %d kB", &kb); err == nil {
				total += kb
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, false, err
	}
	if !found {
		return 0, false, fmt.Errorf("no mapping of /proc/self/smaps holds %#x", addr)
	}
	return total, advised, nil
}
