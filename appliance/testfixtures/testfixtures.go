// Package testfixtures finds the shared fixture pack (real and synthetic GGUF models with
// llama.cpp goldens) for tests: $EXO_FIXTURES, else ../shared/fixtures beside the repository.
// Where the pack is missing a test skips with the reason, except under CI=true, where the core
// must not be skipped and the test fails instead.
package testfixtures

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the fixture directory.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("EXO_FIXTURES")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			Missing(t, err.Error())
		}
		dir = filepath.Join(root, "..", "shared", "fixtures")
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		Missing(t, "fixtures not found at "+dir+" (set EXO_FIXTURES): "+err.Error())
	}
	return dir
}

// Path returns a file or directory inside the fixture pack, which must exist.
func Path(t testing.TB, rel ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{Dir(t)}, rel...)...)
	if _, err := os.Stat(p); err != nil {
		Missing(t, err.Error())
	}
	return p
}

// Missing skips the test with why, or fails it under CI.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// RepoRoot is the directory holding go.mod, searched upwards from the working directory.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", os.ErrNotExist
		}
	}
}
