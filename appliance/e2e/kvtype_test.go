package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/openai/openai-go/v3"
)

// TestServeKVTypeFromConfig: engine.kv_type reaches the models a node serves. On this prompt
// the Q8_0 cache's greedy text departs from the default F16 cache's after a few tokens; a node
// run with EXO_ENGINE__KV_TYPE=q8_0 answers exactly like `exo generate --kv-type q8_0`.
func TestServeKVTypeFromConfig(t *testing.T) {
	file := filepath.Join(fixtures(t), "stories260K", "stories260K-F32.gguf")
	generate := func(kv string) string {
		out, err := execCommand("generate", "--model", file, "--prompt", "The", "-n", "48", "--temp", "0", "--json", "--kv-type", kv).Output()
		if err != nil {
			t.Fatalf("exo generate --kv-type %s: %v\n%s", kv, err, out)
		}
		var g generated
		if err := json.Unmarshal(out, &g); err != nil {
			t.Fatal(err)
		}
		return g.Text
	}
	q8, f16 := generate("q8_0"), generate("f16")
	if q8 == f16 {
		t.Fatalf("the Q8_0 and F16 caches give the same text %q: the prompt no longer tells them apart", q8)
	}
	_, client := storiesNode(t, []string{"EXO_ENGINE__KV_TYPE=q8_0"})
	got, err := client.Completions.New(context.Background(), openai.CompletionNewParams{
		Model: "stories260K-F32", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("The")},
		MaxTokens: openai.Int(48), Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Choices[0].Text != q8 {
		t.Fatalf("node with engine.kv_type=q8_0: %q\nexo generate --kv-type q8_0: %q\n(f16: %q)", got.Choices[0].Text, q8, f16)
	}
}
