package gguf

import (
	"bytes"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/testfixtures"
)

func extractT(t *testing.T, src *File, first, last int) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stage.gguf")
	if err := ExtractFile(src, first, last, path); err != nil {
		t.Fatal(err)
	}
	return openT(t, path)
}

func names(f *File) []string {
	var out []string
	for _, t := range f.Tensors {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

func TestExtractStories(t *testing.T) {
	src := openT(t, testfixtures.Path(t, "stories260K/stories260K-Q8_0.gguf"))
	blockTensors := func(b int) []string {
		var out []string
		for _, n := range []string{"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"} {
			out = append(out, "blk."+string(rune('0'+b))+"."+n+".weight")
		}
		return out
	}
	cases := []struct {
		first, last int
		extra       []string
	}{
		{0, 2, []string{"token_embd.weight"}},
		{2, 3, nil},
		// Tied output: the last stage needs token_embd.weight for the logits.
		{3, 5, []string{"output_norm.weight", "token_embd.weight"}},
		{0, 5, []string{"output_norm.weight", "token_embd.weight"}},
	}
	for _, c := range cases {
		st := extractT(t, src, c.first, c.last)
		want := append([]string(nil), c.extra...)
		for b := c.first; b < c.last; b++ {
			want = append(want, blockTensors(b)...)
		}
		sort.Strings(want)
		if got := names(st); !reflect.DeepEqual(got, want) {
			t.Errorf("[%d,%d): tensors %v, want %v", c.first, c.last, got, want)
		}
		for i := range st.Tensors {
			ti := &st.Tensors[i]
			si, _ := src.Tensor(ti.Name)
			if ti.Type != si.Type || !reflect.DeepEqual(ti.Dims, si.Dims) || !bytes.Equal(st.TensorData(ti), src.TensorData(si)) {
				t.Errorf("[%d,%d): %s differs from the source", c.first, c.last, ti.Name)
			}
		}
		// All source metadata is kept, in order, followed by the stage keys.
		if !reflect.DeepEqual(st.KVs[:len(src.KVs)], src.KVs) {
			t.Errorf("[%d,%d): metadata changed", c.first, c.last)
		}
		a, b, total, err := st.LayerRange()
		if err != nil || a != c.first || b != c.last || total != 5 {
			t.Errorf("LayerRange = %d %d %d %v", a, b, total, err)
		}
		if n, _ := st.Uint(KeyStageSourceCount); n != 5 {
			t.Errorf("source block count %d", n)
		}
		if err := st.ValidateArch(); err != nil {
			t.Error(err)
		}
		if c.first == 0 && c.last == 5 {
			// The whole model, re-extracted from a stage file, is stable.
			again := extractT(t, st, 0, 5)
			if !reflect.DeepEqual(again.KVs, st.KVs) || !reflect.DeepEqual(names(again), names(st)) {
				t.Error("extracting [0,5) from a full stage changed it")
			}
		}
	}
}

func TestExtractFromStage(t *testing.T) {
	src := openT(t, testfixtures.Path(t, "synthetic/qwen3-e32/qwen3-e32-F16.gguf"))
	mid := extractT(t, src, 1, 4)
	if _, ok := mid.Tensor("token_embd.weight"); !ok {
		t.Fatal("tied last stage lacks token_embd.weight")
	}
	if _, ok := mid.Tensor("blk.0.attn_q.weight"); ok {
		t.Fatal("stage [1,4) holds blk.0")
	}
	if _, ok := mid.Tensor("blk.1.attn_q_norm.weight"); !ok {
		t.Fatal("stage [1,4) lacks qwen3 q_norm of block 1")
	}
	sub := extractT(t, mid, 2, 3)
	if got := names(sub); len(got) != 11 || !strings.HasPrefix(got[0], "blk.2.") {
		t.Errorf("stage [2,3) from [1,4): %v", got)
	}
	if err := Extract(mid, 0, 2, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "blocks [1, 4) this file holds") {
		t.Errorf("range outside a stage: %v", err)
	}
}

func TestExtractRejectsBadRanges(t *testing.T) {
	src := openT(t, testfixtures.Path(t, "stories260K/stories260K-F32.gguf"))
	for _, r := range [][2]int{{-1, 2}, {2, 2}, {3, 1}, {0, 6}} {
		if err := Extract(src, r[0], r[1], &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "not within the model's 5 blocks") {
			t.Errorf("range %v: %v", r, err)
		}
	}
	vocab := openT(t, testfixtures.Path(t, "tokenizer/ggml-vocab-gpt-2.gguf"))
	if err := Extract(vocab, 0, 1, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no tensors for block 0") {
		t.Errorf("vocab-only file: %v", err)
	}
}

// Untied models keep token_embd on the first stage only and output.weight on the last; tensors
// used by every layer (rope_freqs) go to every stage.
func TestExtractUntiedAndGlobal(t *testing.T) {
	w := NewWriter()
	w.AddKV("general.architecture", Str("llama"))
	w.AddKV("llama.block_count", U32(3))
	add := func(name string) {
		if err := w.AddTensor(name, 0, []uint64{2}, []byte(strings.Repeat(name[:1], 8))); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"token_embd.weight", "rope_freqs.weight", "blk.0.attn_q.weight", "blk.1.attn_q.weight", "blk.2.attn_q.weight", "output_norm.weight", "output.weight"} {
		add(n)
	}
	src := roundTrip(t, w)
	for _, c := range []struct {
		first, last int
		want        []string
	}{
		{0, 1, []string{"blk.0.attn_q.weight", "rope_freqs.weight", "token_embd.weight"}},
		{1, 2, []string{"blk.1.attn_q.weight", "rope_freqs.weight"}},
		{2, 3, []string{"blk.2.attn_q.weight", "output.weight", "output_norm.weight", "rope_freqs.weight"}},
	} {
		ts, err := StageTensors(src, c.first, c.last)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ti := range ts {
			got = append(got, ti.Name)
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("[%d,%d): %v, want %v", c.first, c.last, got, c.want)
		}
	}
}
