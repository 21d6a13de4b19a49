package tokenizer

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/exo-nix/exo/appliance/testfixtures"
)

type goldenMode struct {
	GreedyIDs      []int32  `json:"greedy_ids"`
	GreedyText     string   `json:"greedy_text"`
	GreedyTextHex  string   `json:"greedy_text_hex"`
	Lossy          bool     `json:"greedy_text_lossy_utf8"`
	GreedyPieces   []string `json:"greedy_pieces"`
	FirstEOGStep   *int     `json:"first_eog_step"`
	CompletionSame *bool    `json:"llama_completion_text_equal"`
}

type goldenFile struct {
	Modes   map[string]json.RawMessage `json:"modes"`
	Prompts []map[string]json.RawMessage
}

type goldenPrompt struct {
	ID       string `json:"id"`
	Text     string `json:"text"`
	Tokenize struct {
		AddSpecial   bool `json:"add_special"`
		ParseSpecial bool `json:"parse_special"`
	} `json:"tokenize"`
	PromptIDs []int32 `json:"prompt_ids"`
}

// goldenSets maps each golden directory to a shipped GGUF with the same tokenizer (all
// variants of a model share it).
var goldenSets = []struct{ dir, model string }{
	{"stories260K/golden", "stories260K/stories260K-F32.gguf"},
	{"synthetic/llama-spm32k-e256/golden", "synthetic/llama-spm32k-e256/llama-spm32k-e256-F16.gguf"},
	{"synthetic/llama-bpe128k-e32/golden", "synthetic/llama-bpe128k-e32/llama-bpe128k-e32-F16.gguf"},
	{"synthetic/qwen2-e32/golden", "synthetic/qwen2-e32/qwen2-e32-F16.gguf"},
	{"synthetic/qwen3-e32/golden", "synthetic/qwen3-e32/qwen3-e32-F16.gguf"},
}

func goldenFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testfixtures.Path(t, dir), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		testfixtures.Missing(t, "no golden files in "+dir)
	}
	return files
}

// TestGoldenPrompts checks prompt_ids (llama_tokenize with add_special and parse_special) of
// every prompt of every golden file, and that the generated ids decode to greedy_text exactly,
// also when streamed token by token.
func TestGoldenPrompts(t *testing.T) {
	for _, set := range goldenSets {
		t.Run(strings.TrimSuffix(filepath.Base(set.model), ".gguf"), func(t *testing.T) {
			tok := load(t, set.model)
			checked := 0
			for _, file := range goldenFiles(t, set.dir) {
				if strings.HasSuffix(file, "-chat.json") {
					continue
				}
				raw, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				var g goldenFile
				if err := json.Unmarshal(raw, &g); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				for _, pr := range g.Prompts {
					var p goldenPrompt
					if err := remarshal(pr, &p); err != nil {
						t.Fatalf("%s: %v", file, err)
					}
					got := tok.Encode(p.Text, p.Tokenize.AddSpecial, p.Tokenize.ParseSpecial)
					if !equalIDs(got, p.PromptIDs) {
						t.Errorf("%s %s: Encode(%q)\n got %v\nwant %v", filepath.Base(file), p.ID, p.Text, got, p.PromptIDs)
					}
					for mode := range g.Modes {
						var m goldenMode
						if err := json.Unmarshal(pr[mode], &m); err != nil {
							t.Fatalf("%s %s %s: %v", file, p.ID, mode, err)
						}
						checkGreedy(t, tok, filepath.Base(file)+" "+p.ID+" "+mode, m)
						checked++
					}
				}
			}
			if checked == 0 {
				t.Fatal("no greedy outputs found in the golden files")
			}
		})
	}
}

func checkGreedy(t *testing.T, tok *Tokenizer, what string, m goldenMode) {
	t.Helper()
	if len(m.GreedyIDs) == 0 {
		t.Fatalf("%s: no greedy_ids", what)
	}
	want := m.GreedyText
	if m.Lossy {
		b, err := hex.DecodeString(m.GreedyTextHex)
		if err != nil {
			t.Fatalf("%s: greedy_text_hex: %v", what, err)
		}
		want = string(b)
	}
	got := tok.Decode(m.GreedyIDs)
	if got != want {
		t.Errorf("%s: Decode\n got %q\nwant %q", what, got, want)
	}
	for i, id := range m.GreedyIDs {
		if i < len(m.GreedyPieces) && utf8.Valid(tok.TokenPiece(id, true)) &&
			string(tok.TokenPiece(id, true)) != m.GreedyPieces[i] {
			t.Errorf("%s: piece %d (id %d) = %q, want %q", what, i, id, tok.TokenPiece(id, true), m.GreedyPieces[i])
		}
		if tok.IsEOG(id) && m.FirstEOGStep == nil {
			t.Errorf("%s: step %d id %d is end-of-generation but the golden saw none", what, i, id)
		}
	}

	// Streaming: every chunk is valid UTF-8 and the chunks add up to the decoded text (with
	// bytes that never form a character replaced).
	d := NewStreamDecoder(tok)
	var sb strings.Builder
	for _, id := range m.GreedyIDs {
		chunk := d.Add(id)
		if !utf8.ValidString(chunk) {
			t.Fatalf("%s: stream chunk %q is not valid UTF-8", what, chunk)
		}
		sb.WriteString(chunk)
	}
	rest := d.Flush()
	if !utf8.ValidString(rest) {
		t.Fatalf("%s: flushed %q is not valid UTF-8", what, rest)
	}
	sb.WriteString(rest)
	if want := replaceInvalid(got); sb.String() != want {
		t.Errorf("%s: streamed\n got %q\nwant %q", what, sb.String(), want)
	}
}

// replaceInvalid is what a stream of the given bytes must produce: valid characters as they
// are, each byte that cannot start a character as U+FFFD, and an unfinished character at the
// end as one U+FFFD.
func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if !utf8.FullRuneInString(s[i:]) {
			b.WriteRune(utf8.RuneError)
			break
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

type chatGolden struct {
	Conversations []struct {
		ID      string `json:"id"`
		Renders []struct {
			Engine              string  `json:"engine"`
			AddGenerationPrompt bool    `json:"add_generation_prompt"`
			OK                  bool    `json:"ok"`
			Text                string  `json:"text"`
			IDs                 []int32 `json:"ids"`
		} `json:"renders"`
	} `json:"conversations"`
}

// TestChatGoldens checks the ids of rendered chat prompts: control tokens written in the text
// must become single tokens, with BOS added where the vocabulary asks for it.
func TestChatGoldens(t *testing.T) {
	for _, set := range goldenSets {
		files, err := filepath.Glob(filepath.Join(testfixtures.Dir(t), set.dir, "*-chat.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			t.Run(filepath.Base(file), func(t *testing.T) {
				tok := load(t, set.model)
				raw, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				var g chatGolden
				if err := json.Unmarshal(raw, &g); err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, c := range g.Conversations {
					for _, r := range c.Renders {
						if !r.OK || r.IDs == nil {
							continue
						}
						n++
						if got := tok.Encode(r.Text, true, true); !equalIDs(got, r.IDs) {
							t.Errorf("%s %s agp=%v: Encode(%q)\n got %v\nwant %v", c.ID, r.Engine, r.AddGenerationPrompt, r.Text, got, r.IDs)
						}
						// Rendering special tokens must give the text back (minus the BOS
						// the tokenizer added).
						ids := r.IDs
						if tok.AddBOS() && len(ids) > 0 && ids[0] == tok.BOS() && !strings.HasPrefix(r.Text, tok.Text(tok.BOS())) {
							ids = ids[1:]
						}
						if got := tok.Detokenize(ids, false, true); got != r.Text {
							t.Errorf("%s %s: Detokenize(special)\n got %q\nwant %q", c.ID, r.Engine, got, r.Text)
						}
					}
				}
				if n == 0 {
					t.Fatal("no renders with ids")
				}
			})
		}
	}
}

func remarshal(in map[string]json.RawMessage, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}
