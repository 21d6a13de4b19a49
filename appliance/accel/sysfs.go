package accel

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// readTrim returns a sysfs/procfs attribute without surrounding whitespace and trailing NULs
// (device-tree strings end in one), or "" when it cannot be read.
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
}

func readUint(path string) (uint64, bool) {
	s := readTrim(path)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

func readUintPtr(path string) *uint64 {
	if v, ok := readUint(path); ok {
		return &v
	}
	return nil
}

func readInt(path string) (int64, bool) {
	s := readTrim(path)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

func resolve(path string) (string, bool) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", false
	}
	return p, true
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// nulStrings splits a device-tree string list ("a\0b\0").
func nulStrings(b []byte) []string {
	var out []string
	for _, s := range strings.Split(string(b), "\x00") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }
