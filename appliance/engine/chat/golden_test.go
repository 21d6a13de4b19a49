package chat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

type chatGolden struct {
	ModelFile     string `json:"model_file"`
	ChatTemplate  string `json:"chat_template"`
	Conversations []struct {
		ID       string    `json:"id"`
		Messages []Message `json:"messages"`
		Renders  []struct {
			Engine              string `json:"engine"`
			AddGenerationPrompt bool   `json:"add_generation_prompt"`
			OK                  bool   `json:"ok"`
			Text                string `json:"text"`
		} `json:"renders"`
	} `json:"conversations"`
}

func loadChatGoldens(t *testing.T) map[string]chatGolden {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testfixtures.Dir(t), "synthetic", "*", "golden", "*-chat.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		testfixtures.Missing(t, "no synthetic/*/golden/*-chat.json in the fixture pack")
	}
	out := map[string]chatGolden{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g chatGolden
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if g.ChatTemplate == "" || len(g.Conversations) == 0 {
			t.Fatalf("%s: no chat_template or conversations", f)
		}
		out[f] = g
	}
	return out
}

// goldenTokens gives the BOS/EOS texts and add_bos of the golden models, so that
// this test does not need the GGUF files (TestGoldenFromGGUF reads them).
var goldenTokens = map[string]struct {
	bos, eos string
	addBOS   bool
}{
	"llama-bpe128k-e32-F16.gguf": {"<|begin_of_text|>", "<|end_of_text|>", true},
	"qwen2-e32-F16.gguf":         {"<|endoftext|>", "<|im_end|>", false},
	"qwen3-e32-F16.gguf":         {"<|endoftext|>", "<|im_end|>", false},
}

func checkRenders(t *testing.T, name string, g chatGolden, tmpl *Template) int {
	t.Helper()
	n := 0
	for _, c := range g.Conversations {
		for _, r := range c.Renders {
			if r.Engine != "jinja" || !r.OK {
				continue
			}
			n++
			got, err := tmpl.Render(c.Messages, r.AddGenerationPrompt)
			if err != nil {
				t.Errorf("%s %s agp=%v: %v", name, c.ID, r.AddGenerationPrompt, err)
				continue
			}
			if got != r.Text {
				t.Errorf("%s %s agp=%v:\n got %q\nwant %q", name, c.ID, r.AddGenerationPrompt, got, r.Text)
			}
		}
	}
	return n
}

func TestGoldenJinjaRenders(t *testing.T) {
	total := 0
	for f, g := range loadChatGoldens(t) {
		tok, ok := goldenTokens[g.ModelFile]
		if !ok {
			t.Fatalf("%s: unknown model %s; add its BOS/EOS to goldenTokens", f, g.ModelFile)
		}
		tmpl, err := New(g.ChatTemplate, tok.bos, tok.eos, WithAddBOS(tok.addBOS))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		total += checkRenders(t, filepath.Base(f), g, tmpl)
	}
	if total < 12 {
		t.Fatalf("only %d jinja renders checked, expected at least 12", total)
	}
}

func TestGoldenFromGGUF(t *testing.T) {
	for f, g := range loadChatGoldens(t) {
		path := filepath.Join(filepath.Dir(filepath.Dir(f)), g.ModelFile)
		if _, err := os.Stat(path); err != nil {
			testfixtures.Missing(t, "model file "+path+" not shipped")
		}
		gf, err := gguf.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		tmpl, err := FromGGUF(gf)
		gf.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if tmpl.Source() != g.ChatTemplate {
			t.Errorf("%s: template in GGUF differs from the golden's chat_template", path)
		}
		if want := goldenTokens[g.ModelFile]; tmpl.BOS() != want.bos || tmpl.EOS() != want.eos {
			t.Errorf("%s: bos/eos = %q/%q, want %q/%q", path, tmpl.BOS(), tmpl.EOS(), want.bos, want.eos)
		}
		checkRenders(t, filepath.Base(path), g, tmpl)
	}
}
