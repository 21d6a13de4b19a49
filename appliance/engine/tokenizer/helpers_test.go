package tokenizer

import (
	"sync"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

var (
	loadMu sync.Mutex
	loaded = map[string]*Tokenizer{}
)

// load builds (once per test binary) the tokenizer of a fixture GGUF; the big vocabularies are
// shared by several tests.
func load(t testing.TB, rel string) *Tokenizer {
	t.Helper()
	path := testfixtures.Path(t, rel)
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
