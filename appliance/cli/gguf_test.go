package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
)

func runGGUFCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestGGUFCommands(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m.gguf")
	code, out, errs := runGGUFCLI(t, "gguf", "synth", "--arch", "qwen3", "--dims", "embd=64,layers=3,heads=4,kv_heads=2,head_dim=32,ffn=256,vocab=400",
		"--type", "q4_k", "--seed", "5", "--out", model)
	if code != 0 {
		t.Fatalf("synth: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "qwen3, 35 tensors") {
		t.Errorf("synth output: %q", out)
	}

	code, out, errs = runGGUFCLI(t, "gguf", "info", model)
	if code != 0 {
		t.Fatalf("info: exit %d: %s", code, errs)
	}
	for _, want := range []string{"qwen3.block_count", "[]string", "… (400 string)", "blk.2.ffn_down.weight", "Q4_K", "256×64", "Q5_0"} {
		if !strings.Contains(out, want) {
			t.Errorf("info text lacks %q", want)
		}
	}

	code, out, errs = runGGUFCLI(t, "gguf", "info", "--json", model)
	if code != 0 {
		t.Fatalf("info --json: exit %d: %s", code, errs)
	}
	var doc struct {
		Version  uint32
		Metadata []struct {
			Key   string
			Type  string
			Count *int
			Value json.RawMessage
		}
		Tensors []struct {
			Name  string
			Type  string
			Dims  []uint64
			Bytes int64
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("info --json is not JSON: %v", err)
	}
	if doc.Version != 3 || len(doc.Tensors) != 35 {
		t.Errorf("json: version %d, %d tensors", doc.Version, len(doc.Tensors))
	}
	for _, kv := range doc.Metadata {
		if kv.Key == "tokenizer.ggml.tokens" {
			var v []string
			if err := json.Unmarshal(kv.Value, &v); err != nil || len(v) != 8 || kv.Count == nil || *kv.Count != 400 {
				t.Errorf("tokens in json: %d shown, count %v, err %v", len(v), kv.Count, err)
			}
		}
	}

	stage := filepath.Join(dir, "stage.gguf")
	code, out, errs = runGGUFCLI(t, "gguf", "extract", model, "--layers", "1:3", "--out", stage)
	if code != 0 {
		t.Fatalf("extract: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "blocks [1, 3)") {
		t.Errorf("extract output %q", out)
	}
	f, err := gguf.Open(stage)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if a, b, total, err := f.LayerRange(); err != nil || a != 1 || b != 3 || total != 3 {
		t.Errorf("stage range %d %d %d %v", a, b, total, err)
	}

	for _, bad := range [][]string{
		{"gguf", "extract", model, "--layers", "3:1", "--out", stage},
		{"gguf", "extract", model, "--layers", "x", "--out", stage},
		{"gguf", "synth", "--preset", "qwen3-0.6b", "--dims", "embd=1", "--out", stage},
		{"gguf", "synth", "--dims", "embd=64", "--out", stage},
		{"gguf", "synth", "--preset", "qwen3-0.6b", "--type", "q9", "--out", stage},
		{"gguf", "synth", "--preset", "qwen3-0.6b", "--type", "q8_0_m", "--out", stage},
	} {
		if code, _, errs := runGGUFCLI(t, bad...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d (%q), want usage error 2", bad, code, errs)
		}
	}
	// llama-quantize's _M mix: Q6_K for the tied embedding and attn_v/ffn_down of layers 2 and 3
	// (of four), file type 15.
	mixed := filepath.Join(dir, "km.gguf")
	if code, _, errs := runGGUFCLI(t, "gguf", "synth", "--arch", "llama", "--dims", "embd=256,layers=4,heads=4,ffn=512,vocab=400,tied=true",
		"--type", "Q4_K_M", "--seed", "5", "--out", mixed); code != 0 {
		t.Fatalf("synth q4_k_m: exit %d: %s", code, errs)
	}
	km, err := gguf.Open(mixed)
	if err != nil {
		t.Fatal(err)
	}
	defer km.Close()
	if ft, _ := km.Uint("general.file_type"); ft != 15 {
		t.Errorf("q4_k_m file type %d, want 15", ft)
	}
	for name, want := range map[string]ggml.Type{"token_embd.weight": ggml.Q6_K, "blk.2.attn_v.weight": ggml.Q6_K, "blk.3.ffn_down.weight": ggml.Q6_K,
		"blk.1.ffn_down.weight": ggml.Q4_K, "blk.0.attn_v.weight": ggml.Q4_K, "blk.3.ffn_up.weight": ggml.Q4_K} {
		if ti, ok := km.Tensor(name); !ok || ti.Type != want {
			t.Errorf("q4_k_m %s: %v, want %s", name, ti, want)
		}
	}
	if code, _, errs := runGGUFCLI(t, "gguf", "info", filepath.Join(dir, "missing.gguf")); code != 1 || !strings.Contains(errs, "missing.gguf") {
		t.Errorf("missing file: exit %d %q", code, errs)
	}
}
