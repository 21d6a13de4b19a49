package tokenizer

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/exo-nix/exo/appliance/testfixtures"
)

func ptr[T any](v T) *T { return &v }

// spmVocab is a tiny SentencePiece vocabulary: unknown/control tokens, the 256 byte tokens and
// a few pieces whose scores decide the merge order.
func spmVocab(pieces map[string]float32) Vocab {
	v := Vocab{Model: "llama", Tokens: []string{"<unk>", "<s>", "</s>"}, Types: []TokenType{TypeUnknown, TypeControl, TypeControl}}
	v.Scores = []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		v.Tokens = append(v.Tokens, fmt.Sprintf("<0x%02X>", b))
		v.Types = append(v.Types, TypeByte)
		v.Scores = append(v.Scores, 0)
	}
	for _, p := range sortedKeys(pieces) {
		v.Tokens = append(v.Tokens, p)
		v.Types = append(v.Types, TypeNormal)
		v.Scores = append(v.Scores, pieces[p])
	}
	return v
}

func sortedKeys(m map[string]float32) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

func mustNew(t *testing.T, v Vocab) *Tokenizer {
	t.Helper()
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func texts(tok *Tokenizer, ids []int32) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = tok.Text(id)
	}
	return out
}

// TestSPMMergeOrder: the highest-scoring pair merges first, so "▁ab" + "c" wins over "▁a" +
// "bc" only when its score is higher; unknown characters fall back to bytes.
func TestSPMMergeOrder(t *testing.T) {
	for _, c := range []struct {
		scores map[string]float32
		want   string
	}{
		{map[string]float32{"▁": -1, "a": -1, "b": -1, "c": -1, "▁a": -2, "▁ab": -3, "bc": -2.5, "▁abc": -10}, "▁abc"},
		{map[string]float32{"▁": -1, "a": -1, "b": -1, "c": -1, "▁a": -2, "ab": -3, "bc": -2.5}, "▁a bc"},
		{map[string]float32{"▁": -1, "a": -1, "b": -1, "c": -1, "▁a": -2, "ab": -1.5, "bc": -2.5}, "▁ ab c"},
	} {
		tok := mustNew(t, spmVocab(c.scores))
		got := strings.Join(texts(tok, tok.Encode("abc", false, false)), " ")
		if got != c.want {
			t.Errorf("scores %v: got %q, want %q", c.scores, got, c.want)
		}
	}
	tok := mustNew(t, spmVocab(map[string]float32{"▁": -1, "a": -1}))
	got := texts(tok, tok.Encode("aé", true, false))
	want := []string{"<s>", "▁", "a", "<0xC3>", "<0xA9>"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("byte fallback: got %v, want %v", got, want)
	}
	if s := tok.Detokenize(tok.Encode("aé a", false, false), false, false); s != "aé a" {
		t.Errorf("Detokenize = %q", s)
	}
	// llama.cpp keeps the SentencePiece space when it strips a BOS.
	if s := tok.Detokenize(tok.Encode("aé a", true, false), true, false); s != " aé a" {
		t.Errorf("Detokenize without BOS = %q", s)
	}
	if s := tok.Decode(tok.Encode("aé a", true, false)); s != " aé a" {
		t.Errorf("Decode keeps the SentencePiece space: got %q", s)
	}
}

// TestBPEMergeRanks: merges apply by rank inside a word, never across pre-tokenizer words.
func TestBPEMergeRanks(t *testing.T) {
	var toks []string
	for b := 0; b < 256; b++ {
		toks = append(toks, byteToUnicode[b])
	}
	toks = append(toks, "ab", "bc", "abc", "Ġa", "Ġab", "<|end|>")
	// "Ġ a" + "Ġa b" would also spell "Ġab", but "a b" has the better rank, after which only
	// "Ġ ab" can finish the word.
	v := Vocab{Model: "gpt2", Pre: "gpt-2", Tokens: toks, Merges: []string{"b c", "a b", "a bc", "Ġ a", "Ġa b", "Ġ ab"}}
	tok := mustNew(t, v)
	if got := strings.Join(texts(tok, tok.Encode("abc", false, false)), " "); got != "abc" {
		t.Errorf("abc: got %q (rank 0 'b c' first, then 'a bc')", got)
	}
	if got := strings.Join(texts(tok, tok.Encode("ab ab", false, false)), " "); got != "ab Ġab" {
		t.Errorf("ab ab: got %q", got)
	}
	if got := strings.Join(texts(tok, tok.Encode("a1b", false, false)), " "); got != "a 1 b" {
		t.Errorf("a1b must not merge across the number: got %q", got)
	}
	if !tok.IsEOG(int32(len(toks)-1)) || !tok.IsControl(int32(len(toks)-1)) {
		t.Error("<|end|> should be recognised as end of generation and made a control token")
	}
	if got := tok.Encode("x<|end|>", false, true); len(got) != 2 || got[1] != int32(len(toks)-1) {
		t.Errorf("parse special: got %v", got)
	}
	if got := tok.Encode("x<|end|>", false, false); len(got) < 3 {
		t.Errorf("without parse special the marker is text: got %v", got)
	}
}

func TestNewRejectsBadVocab(t *testing.T) {
	cases := map[string]Vocab{
		"empty":          {Model: "llama"},
		"model":          {Model: "rwkv", Tokens: []string{"a"}},
		"no model":       {Tokens: []string{"a"}},
		"duplicate":      {Model: "llama", Tokens: []string{"a", "b", "a"}},
		"pre":            {Model: "gpt2", Pre: "no-such-pre", Tokens: []string{"a"}},
		"short scores":   {Model: "llama", Tokens: []string{"a", "b"}, Scores: []float32{0}},
		"short types":    {Model: "llama", Tokens: []string{"a", "b"}, Types: []TokenType{1}},
		"bos but no bos": {Model: "gpt2", Pre: "glm4", Tokens: []string{"a"}, AddBOS: ptr(true)},
	}
	for name, v := range cases {
		if _, err := New(v); err == nil {
			t.Errorf("%s: New accepted %+v", name, v)
		}
	}
}

// TestStreamDecoderHoldsPartialUTF8: byte tokens that spell a character one byte at a time
// produce nothing until the character is complete.
func TestStreamDecoderHoldsPartialUTF8(t *testing.T) {
	tok := mustNew(t, spmVocab(map[string]float32{"▁": -1, "a": -1}))
	ids := tok.Encode("a🦙é", false, false)
	d := NewStreamDecoder(tok)
	var chunks []string
	for _, id := range ids {
		c := d.Add(id)
		if !utf8.ValidString(c) {
			t.Fatalf("chunk %q is not valid UTF-8", c)
		}
		chunks = append(chunks, c)
	}
	want := []string{" ", "a", "", "", "", "🦙", "", "é"}
	if strings.Join(chunks, "|") != strings.Join(want, "|") {
		t.Errorf("chunks %q, want %q", chunks, want)
	}
	// A character that is cut off shows up as one U+FFFD at the end; a byte that can never
	// start a character is replaced at once.
	d = NewStreamDecoder(tok)
	if s := d.Add(tok.byteToken(0xF0)); s != "" {
		t.Errorf("lead byte alone gave %q", s)
	}
	if s := d.Add(tok.byteToken(0x9F)); s != "" {
		t.Errorf("incomplete sequence gave %q", s)
	}
	if s := d.Flush(); s != "\uFFFD" {
		t.Errorf("Flush = %q, want U+FFFD", s)
	}
	if s := d.Add(tok.byteToken(0x80)); s != "\uFFFD" {
		t.Errorf("stray continuation byte gave %q", s)
	}
	if s := d.Flush(); s != "" {
		t.Errorf("empty Flush = %q", s)
	}
}

func TestCleanSpaces(t *testing.T) {
	for in, want := range map[string]string{
		"Hello , world !":   "Hello, world!",
		"a ' b":             "a'b",
		"it 's I 'm we 're": "it's I'm we're",
		"don 't I 'd":       "don 't I 'd",
		"":                  "",
		" ?":                "?",
	} {
		if got := string(cleanSpaces([]byte(in))); got != want {
			t.Errorf("cleanSpaces(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSpecialTokens covers the special-token rules on the real vocabularies.
func TestSpecialTokens(t *testing.T) {
	t.Run("qwen", func(t *testing.T) {
		tok := load(t, "synthetic/qwen2-e32/qwen2-e32-F16.gguf")
		start, _ := tok.TokenID("<|im_start|>")
		if got := tok.Encode("<|im_start|>user", false, true); len(got) != 2 || got[0] != start {
			t.Errorf("parse_special: %v", got)
		}
		if got := tok.Encode("<|im_start|>user", false, false); len(got) < 3 || got[0] == start {
			t.Errorf("no parse_special: %v", got)
		}
		think, _ := tok.TokenID("<think>")
		if tok.Type(think) != TypeUserDefined {
			t.Fatalf("<think> type %d, want user-defined", tok.Type(think))
		}
		for _, parse := range []bool{false, true} {
			if got := tok.Encode("a<think>b", false, parse); len(got) != 3 || got[1] != think {
				t.Errorf("user-defined token with parse_special=%v: %v", parse, got)
			}
		}
		for text, eog := range map[string]bool{"<|im_end|>": true, "<|endoftext|>": true, "<|fim_pad|>": true,
			"<|repo_name|>": true, "<|file_sep|>": true, "<|im_start|>": false, "<think>": false, "hello": false} {
			id, ok := tok.TokenID(text)
			if !ok {
				t.Fatalf("%s missing", text)
			}
			if tok.IsEOG(id) != eog {
				t.Errorf("IsEOG(%s) = %v, want %v", text, !eog, eog)
			}
		}
		if tok.AddBOS() || tok.EOS() != 151645 {
			t.Errorf("AddBOS %v EOS %d", tok.AddBOS(), tok.EOS())
		}
		if got := tok.Encode("", true, true); len(got) != 0 {
			t.Errorf("empty text: %v", got)
		}
		if p := tok.Piece(start); len(p) != 0 {
			t.Errorf("control token renders %q in generated text", p)
		}
		if p := string(tok.TokenPiece(start, true)); p != "<|im_start|>" {
			t.Errorf("TokenPiece(special) = %q", p)
		}
		if p := string(tok.Piece(think)); p != "<think>" {
			t.Errorf("user-defined token renders %q", p)
		}
		pad, _ := tok.TokenID("[PAD151700]")
		if tok.Type(pad) != TypeUnused || len(tok.TokenPiece(pad, true)) != 0 {
			t.Errorf("unused token: type %d piece %q", tok.Type(pad), tok.TokenPiece(pad, true))
		}
		// llama.cpp applies no NFC normalization (the Hugging Face Qwen tokenizer does), so a
		// decomposed "é" stays two characters.
		if a, b := tok.Encode("cafe\u0301", false, false), tok.Encode("café", false, false); equalIDs(a, b) {
			t.Errorf("decomposed and precomposed text tokenized alike: %v", a)
		}
		// Qwen does not clean up spaces on detokenization.
		if s := tok.Detokenize(tok.Encode("a , b", false, false), false, false); s != "a , b" {
			t.Errorf("Detokenize = %q", s)
		}
	})
	t.Run("llama3", func(t *testing.T) {
		tok := load(t, "synthetic/llama-bpe128k-e32/llama-bpe128k-e32-F16.gguf")
		for id, eog := range map[int32]bool{128001: true, 128009: true, 128008: false, 128000: false, 128006: false, 9906: false} {
			if tok.IsEOG(id) != eog {
				t.Errorf("IsEOG(%d %q) = %v", id, tok.Text(id), !eog)
			}
		}
		if !tok.AddBOS() || tok.BOS() != 128000 {
			t.Errorf("AddBOS %v BOS %d", tok.AddBOS(), tok.BOS())
		}
		if got := tok.Encode("", true, true); len(got) != 1 || got[0] != 128000 {
			t.Errorf("empty text: %v", got)
		}
		// Llama 3 cleans " ," and " ?" on detokenization.
		if s := tok.Detokenize(tok.Encode("Hello , world ?", false, false), false, false); s != "Hello, world?" {
			t.Errorf("Detokenize = %q", s)
		}
		if p := string(tok.Piece(tok.Encode(" the", false, false)[0])); p != " the" {
			t.Errorf("byte-level piece = %q", p)
		}
	})
	t.Run("spm", func(t *testing.T) {
		tok := load(t, "stories260K/stories260K-F32.gguf")
		plain := tok.Encode("Once", true, false)
		// After a special token SentencePiece starts a new text, so it gets the space again.
		got := tok.Encode("<s>Once", true, true)
		if len(got) != len(plain)+1 || got[0] != 1 || got[1] != 1 || !equalIDs(got[2:], plain[1:]) {
			t.Errorf("Encode(<s>Once) = %v, plain %v", got, plain)
		}
		if !tok.IsEOG(2) || tok.IsEOG(1) {
			t.Error("EOG set wrong")
		}
		nl, _ := tok.TokenID("<0x0A>")
		if p := string(tok.Piece(nl)); p != "\n" {
			t.Errorf("byte token piece %q", p)
		}
		const s = "Once upon a time,\n\tthere was a 🦙."
		if d := tok.Detokenize(tok.Encode(s, false, false), false, false); d != s {
			t.Errorf("Detokenize round trip %q", d)
		}
	})
	t.Run("phi3-rstrip", func(t *testing.T) {
		tok := load(t, "tokenizer/ggml-vocab-phi-3.gguf")
		end, ok := tok.TokenID("<|end|>")
		if !ok {
			t.Fatal("<|end|> missing")
		}
		// Phi-3's special tokens swallow the whitespace after them (llama.cpp sets RSTRIP).
		a := tok.Encode("<|end|>\n  hi", false, true)
		b := tok.Encode("<|end|>hi", false, true)
		if a[0] != end || !equalIDs(a, b) {
			t.Errorf("rstrip: %v vs %v", a, b)
		}
	})
}

// TestLoadTime reports how long the biggest vocabulary takes to build; the merge-rank map is
// built once per tokenizer.
func TestLoadTime(t *testing.T) {
	path := "synthetic/qwen2-e32/qwen2-e32-F16.gguf"
	testfixtures.Path(t, path)
	start := time.Now()
	loadMu.Lock()
	delete(loaded, testfixtures.Path(t, path))
	loadMu.Unlock()
	tok := load(t, path)
	el := time.Since(start)
	t.Logf("qwen2 vocab (%d tokens) loaded in %v", tok.VocabSize(), el)
	if el > 10*time.Second {
		t.Errorf("loading took %v", el)
	}
}

func BenchmarkEncodeLlama3(b *testing.B) {
	tok := load(b, "synthetic/llama-bpe128k-e32/llama-bpe128k-e32-F16.gguf")
	s := strings.Repeat("The quick brown fox jumps over the lazy dog. Emoji 🦙🚀 naïve café 12345\n", 20)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		tok.Encode(s, true, true)
	}
}

func BenchmarkEncodeSPM(b *testing.B) {
	tok := load(b, "synthetic/llama-spm32k-e256/llama-spm32k-e256-F16.gguf")
	s := strings.Repeat("The quick brown fox jumps over the lazy dog. Emoji 🦙🚀 naïve café 12345\n", 20)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		tok.Encode(s, true, true)
	}
}

// TestConcurrentEncode shares one tokenizer between goroutines (run with -race).
func TestConcurrentEncode(t *testing.T) {
	tok := load(t, "synthetic/qwen3-e32/qwen3-e32-F16.gguf")
	const s = "<|im_start|>user\nHello, 🦙 world 12345<|im_end|>"
	want := tok.Encode(s, true, true)
	done := make(chan []int32)
	for range 8 {
		go func() { done <- tok.Encode(s, true, true) }()
	}
	for range 8 {
		if got := <-done; !equalIDs(got, want) {
			t.Errorf("concurrent Encode gave %v, want %v", got, want)
		}
	}
}
