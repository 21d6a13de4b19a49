package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeMachineID(t *testing.T, path, id string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityPersistsAndDetectsClones(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "id")
	mid := filepath.Join(t.TempDir(), "machine-id")
	writeMachineID(t, mid, "0123456789abcdef0123456789abcdef")

	first, err := Load(dir, []string{mid})
	if err != nil {
		t.Fatal(err)
	}
	if first.Regenerated != "new" || len(first.ID) != 32 {
		t.Fatalf("fresh identity: %+v", first)
	}
	again, err := Load(dir, []string{mid})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || again.Regenerated != "" || !again.Key.Equal(first.Key) {
		t.Fatalf("identity changed across loads on the same machine: %s -> %s (%q)", first.ID, again.ID, again.Regenerated)
	}
	info, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", info, err)
	}

	// The same disk on another machine: a new ID and key, and the old ID reported.
	writeMachineID(t, mid, "fedcba9876543210fedcba9876543210")
	clone, err := Load(dir, []string{mid})
	if err != nil {
		t.Fatal(err)
	}
	if clone.Regenerated != "cloned" || clone.PreviousID != first.ID || clone.ID == first.ID || clone.Key.Equal(first.Key) {
		t.Fatalf("clone not detected: %+v", clone)
	}
	// ...which then stays stable on its new machine.
	again, err = Load(dir, []string{mid})
	if err != nil || again.ID != clone.ID || again.Regenerated != "" {
		t.Fatalf("cloned identity not kept: %+v %v", again, err)
	}
}

func TestIdentityWithoutMachineID(t *testing.T) {
	dir := t.TempDir()
	missing := []string{filepath.Join(dir, "none")}
	a, err := Load(dir, missing)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir, missing)
	if err != nil || b.ID != a.ID {
		t.Fatalf("identity not stable without machine-id: %v %v", a.ID, b)
	}
	// A machine-id appearing later counts as another machine.
	mid := filepath.Join(dir, "mid")
	writeMachineID(t, mid, "abc")
	c, err := Load(dir, []string{mid})
	if err != nil || c.Regenerated != "cloned" {
		t.Fatalf("binding to no machine-id not enforced: %+v %v", c, err)
	}
}

func TestIdentityCorruptFileNamesItself(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, MetaFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, []string{filepath.Join(dir, "none")})
	if err == nil || !strings.Contains(err.Error(), MetaFile) {
		t.Fatalf("corrupt identity error %v does not name the file", err)
	}
}
