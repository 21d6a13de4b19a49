package tokenizer

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// fixtures returns the shared fixture directory: $EXO_FIXTURES, or ../shared/fixtures next to
// the repository root (the directory holding go.mod). Missing fixtures skip, except on CI.
func fixtures(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("EXO_FIXTURES")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "..", "shared", "fixtures")
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if dir == "" {
		missingFixtures(t, "no go.mod above the test directory and EXO_FIXTURES unset")
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		missingFixtures(t, "fixtures not found at "+dir+": "+err.Error())
	}
	return dir
}

func missingFixtures(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// fixture returns the path of a fixture file, skipping (or failing on CI) when it is absent.
func fixture(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(fixtures(t), rel)
	if _, err := os.Stat(p); err != nil {
		missingFixtures(t, err.Error())
	}
	return p
}

var (
	loadMu sync.Mutex
	loaded = map[string]*Tokenizer{}
)

// load builds (once per test binary) the tokenizer of a fixture GGUF; the big vocabularies are
// shared by several tests.
func load(t testing.TB, rel string) *Tokenizer {
	t.Helper()
	path := fixture(t, rel)
	loadMu.Lock()
	defer loadMu.Unlock()
	if tok, ok := loaded[path]; ok {
		return tok
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	loaded[path] = tok
	return tok
}
