package tokenizer

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/testfixtures"
)

// vectorSets pairs llama.cpp's test-tokenizer-0 vectors with the GGUF holding that vocabulary
// (for llama-bpe and qwen2 the vocab-only files are not shipped; the synthetic models carry the
// same tokenizers, see the fixture README section 6).
var vectorSets = []struct{ vectors, model string }{
	{"tokenizer/ggml-vocab-llama-spm.gguf", "tokenizer/ggml-vocab-llama-spm.gguf"},
	{"tokenizer/ggml-vocab-llama-spm.gguf", "synthetic/llama-spm32k-e256/llama-spm32k-e256-F16.gguf"},
	{"tokenizer/ggml-vocab-phi-3.gguf", "tokenizer/ggml-vocab-phi-3.gguf"},
	{"tokenizer/ggml-vocab-llama-bpe.gguf", "synthetic/llama-bpe128k-e32/llama-bpe128k-e32-F16.gguf"},
	{"tokenizer/ggml-vocab-qwen2.gguf", "synthetic/qwen2-e32/qwen2-e32-F16.gguf"},
	{"tokenizer/ggml-vocab-qwen2.gguf", "synthetic/qwen3-e32/qwen3-e32-F16.gguf"},
	{"tokenizer/ggml-vocab-gpt-2.gguf", "tokenizer/ggml-vocab-gpt-2.gguf"},
	{"tokenizer/ggml-vocab-mpt.gguf", "tokenizer/ggml-vocab-mpt.gguf"},
	{"tokenizer/ggml-vocab-falcon.gguf", "tokenizer/ggml-vocab-falcon.gguf"},
	{"tokenizer/ggml-vocab-starcoder.gguf", "tokenizer/ggml-vocab-starcoder.gguf"},
	{"tokenizer/ggml-vocab-refact.gguf", "tokenizer/ggml-vocab-refact.gguf"},
	{"tokenizer/ggml-vocab-deepseek-llm.gguf", "tokenizer/ggml-vocab-deepseek-llm.gguf"},
	{"tokenizer/ggml-vocab-deepseek-coder.gguf", "tokenizer/ggml-vocab-deepseek-coder.gguf"},
	{"tokenizer/ggml-vocab-bert-bge.gguf", "tokenizer/ggml-vocab-bert-bge.gguf"},
}

type vector struct {
	text string
	ids  []int32
}

// readVectors parses a .inp/.out pair: inputs separated by "\n__ggml_vocab_test__\n", one line
// of space-separated ids per input.
func readVectors(t *testing.T, base string) []vector {
	t.Helper()
	inp, err := os.ReadFile(testfixtures.Path(t, base+".inp"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(testfixtures.Path(t, base+".out"))
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	if texts[len(texts)-1] == "" {
		texts = texts[:len(texts)-1]
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d inputs but %d output lines", base, len(texts), len(lines))
	}
	vs := make([]vector, len(texts))
	for i, s := range texts {
		vs[i].text = s
		for _, f := range strings.Fields(lines[i]) {
			id, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				t.Fatalf("%s.out line %d: %v", base, i+1, err)
			}
			vs[i].ids = append(vs[i].ids, int32(id))
		}
	}
	return vs
}

// TestConformanceVectors runs llama.cpp's tokenizer test vectors: Encode(text, false, false) must
// give exactly the ids llama.cpp 34af94cd9 gives.
func TestConformanceVectors(t *testing.T) {
	for _, set := range vectorSets {
		name := strings.TrimSuffix(filepath.Base(set.vectors), ".gguf") + "@" + filepath.Base(set.model)
		t.Run(name, func(t *testing.T) {
			vs := readVectors(t, set.vectors)
			tok := load(t, set.model)
			for i, v := range vs {
				got := tok.Encode(v.text, false, false)
				if !equalIDs(got, v.ids) {
					t.Errorf("vector %d %q:\n got %v\nwant %v", i, v.text, got, v.ids)
				}
			}
		})
	}
}

// TestVocabWithoutVectors loads the vocabularies that have no upstream vectors and checks the
// basic contract on them: special ids from metadata and an exact round trip of plain text.
func TestVocabWithoutVectors(t *testing.T) {
	for _, c := range []struct {
		file     string
		bos, eos int32
	}{
		{"tokenizer/ggml-vocab-baichuan.gguf", 1, 2},
		{"tokenizer/ggml-vocab-gpt-neox.gguf", 0, 0},
	} {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			tok := load(t, c.file)
			if tok.BOS() != c.bos || tok.EOS() != c.eos {
				t.Errorf("bos/eos = %d/%d, want %d/%d", tok.BOS(), tok.EOS(), c.bos, c.eos)
			}
			const s = "Hello, world! 12345 naïve café\n\tend"
			ids := tok.Encode(s, false, false)
			if got := tok.Detokenize(ids, false, false); got != s && tok.Model() == "llama" {
				t.Errorf("round trip %q -> %v -> %q", s, ids, got)
			}
			if got := tok.Decode(ids); got != s && tok.Model() == "gpt2" {
				t.Errorf("round trip %q -> %v -> %q", s, ids, got)
			}
		})
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
