package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzEncode feeds arbitrary bytes to the SentencePiece and byte-level BPE tokenizers. Encode
// must not panic, must only return valid ids, and must be lossless where llama.cpp is:
//   - SentencePiece (byte fallback) reproduces valid UTF-8 that has no literal U+2581, because
//     that character and the escaped space read back the same (with invalid UTF-8 a lead byte
//     can swallow the escaped space that follows it, in llama.cpp too);
//   - byte-level BPE reproduces any valid UTF-8 (invalid bytes become U+FFFD first).
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", " ", "Hello world", " Hello  World!\n\n", "ied 4 ½ months", "\xff\xfe",
		"Emoji 🦙🚀 naïve café — 12345 + 3.14 = ? `fn main() { println!(\"héllo\"); }` 日本語",
		"<|im_start|>user\nhi<|im_end|>", "<s></s><unk>", "\t\r\n \u00a0\u2028x", "'s 'T 'Re", "\xed\xa0\x80",
		"\xf4\x90\x80\x80", "3333333", "a\u0301", "▁▁x", "\xf6 000"} {
		f.Add(s)
	}
	spm := load(f, "stories260K/stories260K-F32.gguf")
	bpe := []*Tokenizer{
		load(f, "tokenizer/ggml-vocab-gpt-2.gguf"),
		load(f, "synthetic/llama-bpe128k-e32/llama-bpe128k-e32-F16.gguf"),
		load(f, "synthetic/qwen2-e32/qwen2-e32-F16.gguf"),
		load(f, "tokenizer/ggml-vocab-deepseek-coder.gguf"),
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range append([]*Tokenizer{spm}, bpe...) {
			for _, parse := range []bool{false, true} {
				for _, id := range tok.Encode(s, true, parse) {
					if id < 0 || int(id) >= tok.VocabSize() {
						t.Fatalf("%s: Encode(%q) gave id %d", tok.Pre(), s, id)
					}
				}
			}
		}
		if utf8.ValidString(s) && !strings.Contains(s, spmSpace) {
			if got := spm.Detokenize(spm.Encode(s, false, false), false, false); got != s {
				t.Errorf("spm round trip %q -> %q", s, got)
			}
		}
		if utf8.ValidString(s) {
			for _, tok := range bpe {
				if got := tok.Decode(tok.Encode(s, false, false)); got != s {
					t.Errorf("%s round trip %q -> %q", tok.Pre(), s, got)
				}
			}
		}
	})
}
