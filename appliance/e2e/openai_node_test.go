package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenAINodeClient drives exo with the official openai npm package. `make test` installs
// it (npm ci in testdata/openai-node).
func TestOpenAINodeClient(t *testing.T) {
	fx := fixtures(t)
	dir := filepath.Join(repoRoot(t), "appliance", "e2e", "testdata", "openai-node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openai npm package not installed under CI: the test command runs npm ci in " + dir)
		}
		t.Skip("openai npm package not installed: run `npm ci` in appliance/e2e/testdata/openai-node (make test does)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found on PATH")
	}
	p, _ := storiesNode(t, nil)
	cmd := exec.Command(node, "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EXO_BASE_URL=http://"+p.addr+"/v1")
	raw, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node client: %v\n%s", err, stderr)
	}
	var got struct {
		Models     []string
		Completion struct{ Text, Finish string }
		Chat       struct{ Text, Object string }
		Stream     struct {
			Text, Finish, FirstRole string
			Usage                   struct{ Completion_tokens int }
		}
		Stop     struct{ Text, Finish string }
		Seed     struct{ A, B, C string }
		Logprobs []struct {
			Token   string
			Logprob float64
			Top     int
		}
		UnknownModel struct {
			Status int
			Code   string
		}
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("client output %s: %v", raw, err)
	}
	model := filepath.Join(fx, "stories260K", "stories260K-F32.gguf")
	wantText := exoGenerate(t, model, "Once upon a time", 48, false).Text
	wantChat := exoGenerate(t, model, "Tell me a story.", 24, true).Text
	switch {
	case len(got.Models) != 4:
		t.Errorf("models %v", got.Models)
	case got.Completion.Text != wantText || got.Completion.Finish != "length":
		t.Errorf("completion %q, exo generate %q", got.Completion.Text, wantText)
	case got.Chat.Text != wantChat || got.Chat.Object != "chat.completion":
		t.Errorf("chat %q, exo generate --chat %q", got.Chat.Text, wantChat)
	case got.Stream.Text != wantChat || got.Stream.Finish != "length" || got.Stream.FirstRole != "assistant" || got.Stream.Usage.Completion_tokens != 24:
		t.Errorf("stream %+v, want %q", got.Stream, wantChat)
	case got.Stop.Finish != "stop" || strings.Contains(got.Stop.Text, "Lily") || !strings.HasPrefix(wantText, got.Stop.Text):
		t.Errorf("stop %+v", got.Stop)
	case got.Seed.A != got.Seed.B || got.Seed.A == got.Seed.C:
		t.Errorf("seeds %+v", got.Seed)
	case len(got.Logprobs) != 6 || got.Logprobs[0].Top != 2 || got.Logprobs[0].Logprob > 0:
		t.Errorf("logprobs %+v", got.Logprobs)
	case got.UnknownModel.Status != 404 || got.UnknownModel.Code != "model_not_found":
		t.Errorf("unknown model %+v", got.UnknownModel)
	}
}
