package iface

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// readTrim returns a sysfs attribute without surrounding whitespace, or "" when it cannot be read
// (the kernel answers EINVAL for attributes that do not apply, e.g. speed of a down link).
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readIntPtr(path string) *int {
	s := readTrim(path)
	if s == "" {
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return nil
	}
	return &v
}

// resolve follows a sysfs link to the directory it names.
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

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// ueventValue reads KEY=value from a uevent file.
func ueventValue(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k == key {
			return v
		}
	}
	return ""
}

var pciAddrRe = regexp.MustCompile(`^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// nearestPCIAddress walks up a resolved device path to the closest PCI function.
func nearestPCIAddress(devPath string) string {
	for p := devPath; p != "/" && p != "." && p != ""; p = filepath.Dir(p) {
		if b := filepath.Base(p); pciAddrRe.MatchString(b) {
			return b
		}
		if filepath.Dir(p) == p {
			break
		}
	}
	return ""
}
