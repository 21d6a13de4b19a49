package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/testfixtures"
)

func fixtures(t *testing.T) string { return testfixtures.Dir(t) }

func TestListFixtureModels(t *testing.T) {
	fx := fixtures(t)
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "broken.gguf"), []byte("GGUF\x03\x00\x00\x00trunc"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := NewCatalog([]string{filepath.Join(fx, "stories260K"), bad, filepath.Join(t.TempDir(), "missing")})
	models, problems := c.List()
	if len(models) != 4 {
		t.Fatalf("models %+v", models)
	}
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), "broken.gguf") {
		t.Fatalf("problems %v", problems)
	}
	m, err := c.Get("stories260K-Q8_0")
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch != "llama" || m.ContextLength != 512 || m.Layers != 5 || m.Quantization != "Q8_0" || m.Size != 454656 {
		t.Fatalf("described %+v", m)
	}
	if _, err := c.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing model: %v", err)
	}
}

func TestEarlierDirectoryWins(t *testing.T) {
	fx := fixtures(t)
	a, b := t.TempDir(), t.TempDir()
	src, err := os.ReadFile(filepath.Join(fx, "stories260K", "stories260K-F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{a, b} {
		if err := os.WriteFile(filepath.Join(d, "m.gguf"), src, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err := NewCatalog([]string{b, a}).Get("m")
	if err != nil || m.Path != filepath.Join(b, "m.gguf") {
		t.Fatalf("%+v %v", m, err)
	}
}
