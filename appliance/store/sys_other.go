//go:build !(linux || darwin || freebsd)

package store

import "os"

func diskFree(string) (int64, error) {
	return -1, nil // unknown: the free-space check is skipped
}

func accessWritable(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir() && st.Mode().Perm()&0o200 != 0
}

func lockFile(interface{ Fd() uintptr }) error { return nil }
