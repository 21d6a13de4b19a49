package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// generateFixture resolves a file of the shared fixture pack ($EXO_FIXTURES, else
// ../shared/fixtures beside the repository root); absent fixtures skip the test, or fail it
// under CI=true.
func generateFixture(t *testing.T, rel string) string {
	t.Helper()
	dir := os.Getenv("EXO_FIXTURES")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; filepath.Dir(d) != d; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "..", "shared", "fixtures")
				break
			}
		}
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); dir == "" || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("fixture %s required under CI", rel)
		}
		t.Skipf("fixture %s unavailable", rel)
	}
	return p
}

type storiesGolden struct {
	Prompts []struct {
		Text      string  `json:"text"`
		PromptIDs []int32 `json:"prompt_ids"`
		F32Ref    struct {
			GreedyIDs  []int32 `json:"greedy_ids"`
			GreedyText string  `json:"greedy_text"`
		} `json:"f32ref"`
	} `json:"prompts"`
}

func TestGenerateCommandJSON(t *testing.T) {
	modelPath := generateFixture(t, "stories260K/stories260K-F32.gguf")
	var g storiesGolden
	b, err := os.ReadFile(generateFixture(t, "stories260K/golden/stories260K-F32.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	p := g.Prompts[0]

	var stdout, stderr bytes.Buffer
	// The golden's f32ref is fp32 attention: the F32 cache, not the default F16 one.
	code := run([]string{"generate", "--model", modelPath, "--prompt", p.Text, "--temp", "0", "-n", "16", "--json", "--kv-type", "f32"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var out struct {
		PromptTokens []int32 `json:"prompt_tokens"`
		Tokens       []int32 `json:"tokens"`
		Text         string  `json:"text"`
		FinishReason string  `json:"finish_reason"`
		Timings      struct {
			PromptMS   *float64 `json:"prompt_ms"`
			GenMS      *float64 `json:"gen_ms"`
			TokensPerS *float64 `json:"tokens_per_s"`
		} `json:"timings"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if !equalInt32(out.PromptTokens, p.PromptIDs) || !equalInt32(out.Tokens, p.F32Ref.GreedyIDs[:16]) {
		t.Errorf("tokens: prompt %v generated %v, want %v and %v", out.PromptTokens, out.Tokens, p.PromptIDs, p.F32Ref.GreedyIDs[:16])
	}
	if !strings.HasPrefix(p.F32Ref.GreedyText, out.Text) || len(out.Text) < 40 || out.FinishReason != "length" {
		t.Errorf("text %q finish %q; want a prefix of %q and length", out.Text, out.FinishReason, p.F32Ref.GreedyText)
	}
	if out.Timings.PromptMS == nil || out.Timings.GenMS == nil || out.Timings.TokensPerS == nil || *out.Timings.TokensPerS <= 0 {
		t.Errorf("timings missing: %s", stdout.String())
	}

	// Streaming mode prints the same text; a stop sequence cuts it.
	stdout.Reset()
	code = run([]string{"generate", "--model", modelPath, "--prompt", p.Text, "--temp", "0", "-n", "16", "--stop", "Lily", "--kv-type", "f32"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := out.Text[:strings.Index(out.Text, "Lily")] + "\n"
	if stdout.String() != want {
		t.Errorf("streamed %q, want %q", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "finish: stop") {
		t.Errorf("stderr summary %q does not report the stop", stderr.String())
	}
}

func TestGenerateCommandChat(t *testing.T) {
	modelPath := generateFixture(t, "synthetic/qwen2-e32/qwen2-e32-F16.gguf")
	var stdout, stderr bytes.Buffer
	code := run([]string{"generate", "--model", modelPath, "--prompt", "Hello!", "--chat", "--temp", "0", "-n", "3", "--json", "--ignore-eos"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var out struct {
		PromptTokens []int32 `json:"prompt_tokens"`
		Tokens       []int32 `json:"tokens"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	// ChatML: starts with <|im_start|> (151644) as one control token and ends with the
	// generation prompt "<|im_start|>assistant\n" = 151644 77091 198.
	n := len(out.PromptTokens)
	if n < 4 || out.PromptTokens[0] != 151644 || !equalInt32(out.PromptTokens[n-3:], []int32{151644, 77091, 198}) || len(out.Tokens) != 3 {
		t.Errorf("chat prompt tokens %v, generated %v", out.PromptTokens, out.Tokens)
	}
}

func TestGenerateCommandUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"generate", "--prompt", "x"},
		{"generate", "--model", "m.gguf"},
		{"generate", "--model", "m.gguf", "--prompt", "x", "--compute", "gpu"},
		{"generate", "--model", "m.gguf", "--prompt", "x", "--top-p", "2"},
		{"generate", "--model", "m.gguf", "--prompt", "x", "--kv-type", "q8"},
		{"generate", "--model", "m.gguf", "--prompt", "x", "--kv-type", "q4_0"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitConfig {
			t.Errorf("%v: exit %d, want %d (usage); stderr %q", args, code, exitConfig, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"generate", "--model", filepath.Join(t.TempDir(), "missing.gguf"), "--prompt", "x"}, &stdout, &stderr)
	if code != exitFail || !strings.Contains(stderr.String(), "missing.gguf") {
		t.Errorf("missing model: exit %d, stderr %q", code, stderr.String())
	}
}

func equalInt32(a, b []int32) bool {
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
