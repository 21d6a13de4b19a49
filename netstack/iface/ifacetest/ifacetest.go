// Package ifacetest unpacks fake machines (sysfs, procfs and device-tree trees) for tests.
//
// A machine is one txtar archive, so it stays reviewable text and keeps out of the repository the
// things Go module zips refuse: file names with ':' (every PCI address) and symbolic links. Two
// conventions extend txtar:
//
//	-- sys/class/net/eth0 -> ../../devices/pci0000:00/0000:00:03.0/net/eth0 --
//
// is a symbolic link (target as the kernel writes it, relative), and
//
//	-- sys/firmware/devicetree/base/compatible [nul] --
//
// is a device-tree string list: each line of the body becomes one NUL-terminated string.
package ifacetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

// Extract unpacks the archive into a fresh temporary directory and returns it.
func Extract(tb testing.TB, archive string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := ExtractTo(archive, dir); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// ExtractTo unpacks the archive into dir.
func ExtractTo(archive, dir string) error {
	a, err := txtar.ParseFile(archive)
	if err != nil {
		return fmt.Errorf("reading %s: %w", archive, err)
	}
	var links [][2]string
	for _, f := range a.Files {
		name, data := f.Name, f.Data
		if n, target, ok := strings.Cut(name, " -> "); ok {
			links = append(links, [2]string{n, target})
			continue
		}
		if n, ok := strings.CutSuffix(name, " [nul]"); ok {
			name = n
			data = []byte(strings.ReplaceAll(string(data), "\n", "\x00"))
		}
		if err := checkRel(name); err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	// Links last, so that a link's parent directory, when reached through another link, exists.
	for _, l := range links {
		if err := checkRel(l[0]); err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(l[0]))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(l[1], p); err != nil {
			return fmt.Errorf("%s: link %s: %w", archive, l[0], err)
		}
	}
	return nil
}

func checkRel(name string) error {
	if name == "" || filepath.IsAbs(name) || strings.HasPrefix(filepath.Clean(name), "..") {
		return fmt.Errorf("bad path %q", name)
	}
	return nil
}
