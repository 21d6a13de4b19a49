package gguf

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/kernels"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

func synthT(t *testing.T, opts SynthOptions) *File {
	t.Helper()
	opts.Out = filepath.Join(t.TempDir(), "m.gguf")
	if err := Synth(opts); err != nil {
		t.Fatal(err)
	}
	f := openT(t, opts.Out)
	if err := f.ValidateArch(); err != nil {
		t.Fatal(err)
	}
	return f
}

func dequant(t *testing.T, f *File, name string) []float32 {
	t.Helper()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("missing %s", name)
	}
	out := make([]float32, ti.Elements())
	if err := kernels.Dequantize(ti.Type, f.TensorData(ti), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func meanStd(x []float32) (float64, float64) {
	var s, s2 float64
	for _, v := range x {
		s += float64(v)
	}
	m := s / float64(len(x))
	for _, v := range x {
		s2 += (float64(v) - m) * (float64(v) - m)
	}
	return m, math.Sqrt(s2 / float64(len(x)))
}

func TestSynthArchitectures(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		t.Run(arch, func(t *testing.T) {
			h, err := ParseDims(arch, "embd=64,layers=2,heads=4,kv_heads=2,head_dim=32,ffn=256,vocab=300,tied=false")
			if err != nil {
				t.Fatal(err)
			}
			f := synthT(t, SynthOptions{Arch: arch, Dims: &h, Type: ggml.Q4_K, Seed: 7})
			perLayer := map[string]int{"llama": 9, "qwen2": 12, "qwen3": 11}[arch]
			if len(f.Tensors) != 2*perLayer+3 {
				t.Errorf("%d tensors, want %d", len(f.Tensors), 2*perLayer+3)
			}
			for key, want := range map[string]uint64{".block_count": 2, ".embedding_length": 64, ".attention.head_count": 4,
				".attention.head_count_kv": 2, ".attention.key_length": 32, ".rope.dimension_count": 32, ".feed_forward_length": 256, ".vocab_size": 300} {
				if got, ok := f.Uint(arch + key); !ok || got != want {
					t.Errorf("%s%s = %d (%v), want %d", arch, key, got, ok, want)
				}
			}
			wantTypes := map[string]ggml.Type{
				"token_embd.weight":        ggml.Q5_0, // rows of 64: Q4_K falls back
				"blk.1.attn_q.weight":      ggml.Q5_0,
				"blk.1.attn_output.weight": ggml.Q5_0, // rows of 4·32 = 128
				"blk.1.ffn_down.weight":    ggml.Q4_K, // rows of 256 hold a K-block
				"blk.1.attn_norm.weight":   ggml.F32,
				"output.weight":            ggml.Q5_0,
				"output_norm.weight":       ggml.F32,
			}
			if arch == "qwen2" {
				wantTypes["blk.0.attn_k.bias"] = ggml.F32
			}
			if arch == "qwen3" {
				wantTypes["blk.0.attn_q_norm.weight"] = ggml.F32
			}
			for name, typ := range wantTypes {
				if ti, ok := f.Tensor(name); !ok || ti.Type != typ {
					t.Errorf("%s: %v, want %s", name, ti, typ)
				}
			}
			q, _ := f.Tensor("blk.0.attn_q.weight")
			k, _ := f.Tensor("blk.0.attn_k.weight")
			if !reflect.DeepEqual(q.Dims, []uint64{64, 128}) || !reflect.DeepEqual(k.Dims, []uint64{64, 64}) {
				t.Errorf("q %v k %v", q.Dims, k.Dims)
			}
			if ft, _ := f.Uint("general.file_type"); ft != 14 {
				t.Errorf("file_type %d", ft)
			}
		})
	}
}

func TestSynthWeightsAndDeterminism(t *testing.T) {
	h, err := ParseDims("llama", "embd=256,layers=1,heads=4,ffn=512,vocab=2000")
	if err != nil {
		t.Fatal(err)
	}
	f32 := synthT(t, SynthOptions{Arch: "llama", Dims: &h, Type: ggml.F32, Seed: 42})
	// Weight scales follow the recipe: N(0, (1.5/sqrt(fan_in))²), norms 1 + 0.1·N(0,1).
	for name, want := range map[string]float64{
		"token_embd.weight":     4 / math.Sqrt(256),
		"blk.0.attn_q.weight":   1.5 / math.Sqrt(256),
		"blk.0.ffn_down.weight": 1.5 / math.Sqrt(512),
	} {
		m, s := meanStd(dequant(t, f32, name))
		if math.Abs(m) > 0.05*want || math.Abs(s-want) > 0.03*want {
			t.Errorf("%s: mean %.4g std %.4g, want 0 and %.4g", name, m, s, want)
		}
	}
	m, s := meanStd(dequant(t, f32, "blk.0.attn_norm.weight"))
	if math.Abs(m-1) > 0.03 || math.Abs(s-0.1) > 0.03 {
		t.Errorf("norm: mean %v std %v", m, s)
	}
	// Same seed: same values whatever the type; Q8_0 is the F32 values rounded.
	q8 := synthT(t, SynthOptions{Arch: "llama", Dims: &h, Type: ggml.Q8_0, Seed: 42})
	a, b := dequant(t, f32, "blk.0.ffn_up.weight"), dequant(t, q8, "blk.0.ffn_up.weight")
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 0.01*1.5/16*4 {
			t.Fatalf("element %d: F32 %v vs Q8_0 %v", i, a[i], b[i])
		}
	}
	again := synthT(t, SynthOptions{Arch: "llama", Dims: &h, Type: ggml.F32, Seed: 42})
	other := synthT(t, SynthOptions{Arch: "llama", Dims: &h, Type: ggml.F32, Seed: 43})
	for i := range f32.Tensors {
		ti := &f32.Tensors[i]
		if !bytes.Equal(f32.TensorData(ti), again.TensorData(&again.Tensors[i])) {
			t.Errorf("%s differs between two runs with the same seed", ti.Name)
		}
		if bytes.Equal(f32.TensorData(ti), other.TensorData(&other.Tensors[i])) {
			t.Errorf("%s is the same for seeds 42 and 43", ti.Name)
		}
	}
	// Tensors come from independent streams: no two weights of the same shape are equal.
	if bytes.Equal(f32.TensorData(mustTensor(t, f32, "blk.0.ffn_gate.weight")), f32.TensorData(mustTensor(t, f32, "blk.0.ffn_up.weight"))) {
		t.Error("ffn_gate and ffn_up are identical")
	}
}

func mustTensor(t *testing.T, f *File, name string) *TensorInfo {
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("missing %s", name)
	}
	return ti
}

func TestSynthPlaceholderVocab(t *testing.T) {
	h, _ := ParseDims("qwen3", "embd=32,layers=1,heads=2,ffn=64,vocab=2000")
	f := synthT(t, SynthOptions{Arch: "qwen3", Dims: &h, Type: ggml.F16, Seed: 1})
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	scores, _ := f.Float32s("tokenizer.ggml.scores")
	types, _ := f.Int32s("tokenizer.ggml.token_type")
	if len(toks) != 2000 || len(scores) != 2000 || len(types) != 2000 {
		t.Fatalf("lengths %d %d %d", len(toks), len(scores), len(types))
	}
	if toks[0] != "<unk>" || toks[1] != "<s>" || toks[2] != "</s>" || toks[3] != "<0x00>" || toks[258] != "<0xFF>" || types[3] != 6 || types[1] != 3 {
		t.Errorf("special/byte tokens wrong: %q %v", toks[:4], types[:4])
	}
	seen := map[string]bool{}
	for i, s := range toks {
		if seen[s] {
			t.Fatalf("token %d %q repeated", i, s)
		}
		seen[s] = true
		// Every word piece must be reachable by merging two existing pieces.
		if i >= placeholderMin && len([]rune(s)) > 1 {
			r := []rune(s)
			if !seen[string(r[:len(r)-1])] || !seen[string(r[len(r)-1:])] {
				t.Errorf("piece %q cannot be merged from earlier pieces", s)
			}
		}
	}
	if ti, _ := f.Tensor("token_embd.weight"); ti.Dims[1] != 2000 {
		t.Errorf("embedding rows %d", ti.Dims[1])
	}
	if ids, ok := f.Uint("tokenizer.ggml.eos_token_id"); !ok || ids != 2 {
		t.Error("eos")
	}
	// The largest preset vocabulary fits too.
	if kv := placeholderVocab(152064); kv[2].Value.Len() != 152064 {
		t.Errorf("placeholder of 152064: %d", kv[2].Value.Len())
	}
}

func TestSynthVocabFrom(t *testing.T) {
	src := openT(t, testfixtures.Path(t, "stories260K/stories260K-F32.gguf"))
	h, _ := ParseDims("llama", "embd=64,layers=1,heads=8,kv_heads=4,ffn=172,vocab=1000")
	f := synthT(t, SynthOptions{Arch: "llama", Dims: &h, Type: ggml.Q8_0, Seed: 3, VocabFrom: src.Path})
	var want, got []KV
	for _, kv := range src.KVs {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			want = append(want, kv)
		}
	}
	for _, kv := range f.KVs {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			got = append(got, kv)
		}
	}
	if len(want) < 8 || !reflect.DeepEqual(got, want) {
		t.Errorf("tokenizer keys not copied: %d vs %d", len(got), len(want))
	}
	if ti, _ := f.Tensor("token_embd.weight"); ti.Dims[1] != 512 {
		t.Errorf("embedding rows %d, want the 512 tokens of the vocabulary", ti.Dims[1])
	}
	if ti, _ := f.Tensor("blk.0.ffn_down.weight"); ti.Type != ggml.F16 {
		t.Errorf("ffn_down rows of 172 cannot be Q8_0; got %s", ti.Type)
	}
}

func TestSynthPresetPlans(t *testing.T) {
	// Parameter counts of the published checkpoints confirm the preset dimensions.
	published := map[string]int64{
		"llama-3.2-1b": 1235814400, "llama-3.2-3b": 3212749824, "llama-3.1-8b": 8030261248, "llama-3.1-70b": 70553706496,
		"qwen2.5-0.5b": 494032768, "qwen2.5-1.5b": 1543714304, "qwen2.5-7b": 7615616512,
		"qwen3-0.6b": 596049920, "qwen3-1.7b": 1720574976, "qwen3-4b": 4022468096, "qwen3-8b": 8190735360,
	}
	if len(Presets()) != len(published) {
		t.Errorf("%d presets, %d known counts", len(Presets()), len(published))
	}
	for _, p := range Presets() {
		if got := p.H.Params(p.Arch); got != published[p.Name] {
			t.Errorf("%s: %d parameters, published %d", p.Name, got, published[p.Name])
		}
		plan, err := planSynth(SynthOptions{Preset: p.Name, Type: ggml.Q4_K, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		var elems int64
		names := map[string]synthTensor{}
		for _, st := range plan.tensors {
			if st.name != "rope_freqs.weight" {
				n := int64(1)
				for _, d := range st.dims {
					n *= int64(d)
				}
				elems += n
			}
			names[st.name] = st
		}
		if elems != published[p.Name] {
			t.Errorf("%s: plan holds %d weights", p.Name, elems)
		}
		if _, ok := names["output.weight"]; ok == p.H.Tied {
			t.Errorf("%s: output.weight present=%v with tied=%v", p.Name, ok, p.H.Tied)
		}
		if _, ok := names["rope_freqs.weight"]; ok != (p.H.Rope != nil) {
			t.Errorf("%s: rope_freqs present=%v", p.Name, ok)
		}
	}
	plan, _ := planSynth(SynthOptions{Preset: "llama-3.2-1b", Type: ggml.Q4_K})
	var rf []float32
	for _, st := range plan.tensors {
		if st.name == "rope_freqs.weight" {
			rf = st.vals
		}
	}
	// 32 frequencies for head_dim 64: the fastest rotate unscaled, the slowest are divided by 32.
	if len(rf) != 32 || rf[0] != 1 || rf[31] != 32 {
		t.Fatalf("rope factors %v", rf)
	}
	for i := 1; i < len(rf); i++ {
		if rf[i] < rf[i-1] {
			t.Errorf("rope factors not monotonic at %d: %v", i, rf)
		}
	}
	kv := map[string]Value{}
	for _, e := range plan.kvs {
		kv[e.Key] = e.Value
	}
	if kv["llama.rope.freq_base"].V != float32(500000) || kv["llama.context_length"].V != uint32(131072) || kv["llama.vocab_size"].V != uint32(128256) {
		t.Errorf("llama-3.2-1b metadata: %v %v %v", kv["llama.rope.freq_base"], kv["llama.context_length"], kv["llama.vocab_size"])
	}
	if _, ok := kv["llama.attention.key_length"]; ok {
		t.Error("key_length written although head_dim·heads = embd")
	}
	q3, _ := planSynth(SynthOptions{Preset: "qwen3-0.6b", Type: ggml.F16})
	for _, e := range q3.kvs {
		if e.Key == "qwen3.attention.key_length" && e.Value.V != uint32(128) {
			t.Errorf("qwen3-0.6b key_length %v", e.Value)
		}
	}
}

func TestStorageType(t *testing.T) {
	cases := []struct {
		t    ggml.Type
		n    uint64
		want ggml.Type
	}{
		{ggml.Q4_K, 4096, ggml.Q4_K}, {ggml.Q4_K, 896, ggml.Q5_0}, {ggml.Q6_K, 896, ggml.Q8_0}, {ggml.Q5_K, 64, ggml.Q5_1},
		{ggml.Q3_K, 96, ggml.Q4_0}, {ggml.Q4_K, 172, ggml.F16}, {ggml.Q8_0, 172, ggml.F16}, {ggml.BF16, 7, ggml.BF16},
	}
	for _, c := range cases {
		if got := storageType(c.t, c.n); got != c.want {
			t.Errorf("storageType(%s, %d) = %s, want %s", c.t, c.n, got, c.want)
		}
	}
}

func TestSynthRejects(t *testing.T) {
	h, _ := ParseDims("llama", "embd=32,layers=1,heads=2,ffn=64,vocab=300")
	small := h
	small.Vocab = 100
	out := filepath.Join(t.TempDir(), "x.gguf")
	for _, c := range []struct {
		opts SynthOptions
		want string
	}{
		{SynthOptions{Preset: "nope", Out: out}, "unknown preset"},
		{SynthOptions{Preset: "qwen3-0.6b", Arch: "llama", Out: out}, "is a qwen3 model"},
		{SynthOptions{Preset: "qwen3-0.6b", Dims: &h, Out: out}, "not both"},
		{SynthOptions{Arch: "llama", Out: out}, "preset or explicit dims"},
		{SynthOptions{Arch: "gpt2", Dims: &h, Out: out}, "unsupported architecture"},
		{SynthOptions{Arch: "llama", Dims: &h, Type: ggml.Q8_K, Out: out}, "activation format"},
		{SynthOptions{Arch: "llama", Dims: &small, Out: out}, "smaller than the 259"},
		{SynthOptions{Arch: "llama", Dims: &h}, "no output path"},
		{SynthOptions{Arch: "llama", Dims: &h, VocabFrom: out, Out: out}, "vocabulary"},
	} {
		if err := Synth(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.opts, err, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed synth left an output file")
	}
}

func TestParseDims(t *testing.T) {
	h, err := ParseDims("qwen2", "embd=896, layers=24,heads=14,kv_heads=2,ffn=4864,vocab=151936,ctx=32768,tied=true")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := LookupPreset("qwen2.5-0.5b")
	if !reflect.DeepEqual(h, p.H) {
		t.Errorf("dims %+v differ from preset %+v", h, p.H)
	}
	for spec, want := range map[string]string{
		"embd=64,layers=1,heads=3,ffn=8,vocab=300":            "not divisible by heads",
		"embd=64,layers=1,heads=4,kv_heads=3,ffn=8,vocab=300": "not a multiple of kv_heads",
		"embd=64,layers=1,heads=4,ffn=8":                      "vocab is required",
		"embd=64,layers=1,heads=4,ffn=8,vocab=300,colour=red": "unknown key",
		"embd=64,layers=1,heads=4,ffn=8,vocab=-3":             "not a positive integer",
		"embd=64,layers=1,heads=4,ffn=8,vocab=300,embd=32":    "given twice",
		"embd=64,layers=1,heads=4,ffn=8,vocab=300,head_dim=7": "must be even",
		"embd=64,layers=1,heads=4,ffn=8,vocab=300,tied=maybe": "tied=maybe",
		"embd=64,layers=1,heads=4,ffn=8,vocab=300,eps=0":      "eps=0",
		"embd=64 layers=1": "not a positive integer",
	} {
		if _, err := ParseDims("llama", spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", spec, err, want)
		}
	}
}

// TestSynthMediumMix: the _M mix gives every tensor the type llama-quantize gave it in the
// Q4_K_M fixture (4 layers, tied embeddings), and the Llama-3.2-1B preset its 8 layers of Q6_K
// attn_v and ffn_down.
func TestSynthMediumMix(t *testing.T) {
	fx := openT(t, testfixtures.Path(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf"))
	h, err := ParseDims("llama", "embd=256,layers=4,heads=8,kv_heads=4,ffn=768,vocab=32000,tied=true")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := planSynth(SynthOptions{Arch: "llama", Dims: &h, Type: ggml.Q4_K, Medium: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.tensors) != len(fx.Tensors) {
		t.Fatalf("plan of %d tensors, the fixture holds %d", len(plan.tensors), len(fx.Tensors))
	}
	q6 := 0
	for _, st := range plan.tensors {
		want, ok := fx.Tensor(st.name)
		if !ok {
			t.Fatalf("the fixture has no %s", st.name)
		}
		if st.typ != want.Type {
			t.Errorf("%s: %s, llama-quantize made %s", st.name, st.typ, want.Type)
		}
		if st.typ == ggml.Q6_K {
			q6++
		}
	}
	if q6 != 5 { // token_embd, attn_v and ffn_down of layers 2 and 3
		t.Errorf("%d Q6_K tensors, want 5", q6)
	}

	plan, err = planSynth(SynthOptions{Preset: "llama-3.2-1b", Type: ggml.Q4_K, Medium: true})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]ggml.Type{}
	for _, st := range plan.tensors {
		types[st.name] = st.typ
	}
	more := map[int]bool{0: true, 1: true, 4: true, 7: true, 10: true, 13: true, 14: true, 15: true}
	for b := 0; b < 16; b++ {
		want := ggml.Q4_K
		if more[b] {
			want = ggml.Q6_K
		}
		for _, n := range []string{"attn_v", "ffn_down"} {
			if got := types[fmt.Sprintf("blk.%d.%s.weight", b, n)]; got != want {
				t.Errorf("layer %d %s: %s, want %s", b, n, got, want)
			}
		}
		if got := types[fmt.Sprintf("blk.%d.ffn_up.weight", b)]; got != ggml.Q4_K {
			t.Errorf("layer %d ffn_up: %s, want Q4_K", b, got)
		}
	}
	if types["token_embd.weight"] != ggml.Q6_K {
		t.Errorf("token_embd %s, want Q6_K (tied)", types["token_embd.weight"])
	}
	for _, kv := range plan.kvs {
		if kv.Key == "general.file_type" && kv.Value.V != uint32(15) {
			t.Errorf("file_type %v, want 15 (MOSTLY_Q4_K_M)", kv.Value.V)
		}
	}
	if _, err := planSynth(SynthOptions{Preset: "llama-3.2-1b", Type: ggml.Q8_0, Medium: true}); err == nil || !strings.Contains(err.Error(), "_M mix") {
		t.Errorf("the _M mix of Q8_0: %v", err)
	}
}
