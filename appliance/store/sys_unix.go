//go:build linux || darwin || freebsd

package store

import (
	"fmt"
	"syscall"
)

// diskFree is the space an unprivileged user may still write in dir's file system.
func diskFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil //nolint:unconvert // field types differ by OS
}

// accessWritable asks the kernel whether dir is writable; it sees read-only mounts, which a
// permission check as root would not.
func accessWritable(dir string) bool {
	return syscall.Access(dir, 0x2 /* W_OK */) == nil
}

// lockFile takes an exclusive lock on f without waiting, so that two exo processes never
// write one partial download at once. The lock ends when f is closed.
func lockFile(f interface{ Fd() uintptr }) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
