package kernels

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on x86-64, and on arm64 with 4 KiB pages.
const hugePage = 2 << 20

// adviseHuge asks the kernel to back the whole huge pages inside b with transparent huge pages
// (where THP is enabled, "always" or "madvise"). Decoding streams every packed weight once per
// token: with 4 KiB pages that is a TLB miss, and a page walk, every 4 KiB, which measurably
// slows the stream (see weightBytes). The memory stays the Go heap's, so the garbage collector
// frees it as before. Pages faulted in before the advice are collapsed in place where the kernel
// can (MADV_COLLAPSE, Linux 6.1), else later by khugepaged. Both are hints: an error (callers
// other than tests ignore it) only means small pages.
func adviseHuge(b []byte) error {
	if len(b) < hugePage {
		return nil
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	off := int((hugePage - start%hugePage) % hugePage)
	n := (len(b) - off) &^ (hugePage - 1)
	if off >= len(b) || n <= 0 {
		return nil
	}
	r := b[off : off+n]
	if err := unix.Madvise(r, unix.MADV_HUGEPAGE); err != nil {
		return fmt.Errorf("madvise MADV_HUGEPAGE: %w", err)
	}
	// Pages not yet touched need no collapse (they fault in huge); for them the kernel answers
	// EINVAL, hence no error from here.
	_ = unix.Madvise(r, unix.MADV_COLLAPSE)
	return nil
}
