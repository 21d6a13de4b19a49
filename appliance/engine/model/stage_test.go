package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/kernels"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

// The hyperparameters read from every shipped file equal the generator's record (model.json)
// or the README's table for stories260K.
func TestConfigFromFixtures(t *testing.T) {
	type hp struct {
		NVocab, NEmbd, NLayer, NHead, NHeadKV, HeadDim, NFF, NCtx int
		Base, Eps                                                 float64
		Rope                                                      RopeType
	}
	want := map[string]hp{
		"stories260K/stories260K-Q8_0.gguf": {512, 64, 5, 8, 4, 8, 172, 512, 10000, 1e-5, RopeNorm},
	}
	for _, m := range []string{"llama-spm32k-e256", "llama-bpe128k-e32", "qwen2-e32", "qwen3-e32"} {
		b, err := os.ReadFile(testfixtures.Path(t, filepath.Join("synthetic", m, "model.json")))
		if err != nil {
			t.Fatal(err)
		}
		var mj struct {
			Arch    string `json:"arch"`
			Hparams struct {
				NVocab  int     `json:"n_vocab"`
				NEmbd   int     `json:"n_embd"`
				NLayer  int     `json:"n_layer"`
				NHead   int     `json:"n_head"`
				NHeadKV int     `json:"n_head_kv"`
				HeadDim int     `json:"head_dim"`
				NFF     int     `json:"n_ff"`
				NCtx    int     `json:"n_ctx_train"`
				Base    float64 `json:"rope_freq_base"`
				Eps     float64 `json:"rms_eps"`
			} `json:"hparams"`
		}
		if err := json.Unmarshal(b, &mj); err != nil {
			t.Fatal(err)
		}
		h := mj.Hparams
		rope := RopeNorm
		if mj.Arch != "llama" {
			rope = RopeNeox
		}
		want[filepath.Join("synthetic", m, m+"-F16.gguf")] = hp{h.NVocab, h.NEmbd, h.NLayer, h.NHead, h.NHeadKV, h.HeadDim, h.NFF, h.NCtx, h.Base, h.Eps, rope}
	}
	for file, w := range want {
		c := mustConfig(t, openFixture(t, file))
		got := hp{c.NVocab, c.NEmbd, c.NLayer, c.NHead, c.NHeadKV, c.HeadDimK, c.NFF, c.ContextLength, float64(c.RopeBase), float64(c.RMSEps), c.RopeType}
		if math.Abs(got.Eps-w.Eps) < 1e-12 {
			got.Eps = w.Eps // stored as float32
		}
		if got != w || c.HeadDimV != c.HeadDimK || !c.TiedEmbeddings || c.RopeDims != c.HeadDimK {
			t.Errorf("%s: config %+v, want %+v (tied, rope dims = head dim)", file, c, w)
		}
		if c.QKVBias != (c.Arch == "qwen2") || c.QKNorm != (c.Arch == "qwen3") {
			t.Errorf("%s: arch %s has QKVBias %v QKNorm %v", file, c.Arch, c.QKVBias, c.QKNorm)
		}
	}
}

// (e) Splitting the layers over two stages and handing the hidden states across gives logits
// bit-identical to one stage over all layers, for every split point of every fixture model.
func TestStageSplitBitIdentical(t *testing.T) {
	for _, m := range shipped {
		t.Run(name(m.file), func(t *testing.T) {
			f := openFixture(t, m.file)
			c := mustConfig(t, f)
			prompt := loadGolden(t, m.ownGolden).Prompts[0].PromptIDs
			n := 8
			if quick() {
				n = 4
			}
			prompt = prompt[:min(len(prompt), n)]
			// Two prompt chunks and one decode step exercise cache continuation across the split.
			batches := [][]int32{prompt[:len(prompt)/2], prompt[len(prompt)/2:], {prompt[0]}}
			full, err := LoadStage(f, 0, c.NLayer, Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := runBatches(t, []*Stage{full}, batches)
			for k := 1; k < c.NLayer; k++ {
				a, err := LoadStage(f, 0, k, Options{})
				if err != nil {
					t.Fatal(err)
				}
				b, err := LoadStage(f, k, c.NLayer, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if a.IsLast() || !a.IsFirst() || b.IsFirst() || !b.IsLast() {
					t.Fatalf("split at %d: first/last flags wrong", k)
				}
				got := runBatches(t, []*Stage{a, b}, batches)
				for i := range want {
					for j := range want[i] {
						if math.Float32bits(got[i][j]) != math.Float32bits(want[i][j]) {
							t.Fatalf("split at layer %d, batch %d: logit %d = %v, single stage %v", k, i, j, got[i][j], want[i][j])
						}
					}
				}
			}
		})
	}
}

// runBatches pushes each batch through the pipeline of stages and returns the last-position
// logits of each batch.
func runBatches(t *testing.T, stages []*Stage, batches [][]int32) [][]float32 {
	t.Helper()
	seqs := make([]*Seq, len(stages))
	for i, s := range stages {
		seqs[i] = s.NewSequence(32)
	}
	var res [][]float32
	pos := 0
	for _, toks := range batches {
		in := Batch{Pos: pos, Tokens: toks}
		for i, s := range stages {
			out, err := s.Forward(seqs[i], in)
			if err != nil {
				t.Fatalf("stage [%d,%d): %v", s.First, s.Last, err)
			}
			if s.IsLast() {
				res = append(res, out.Logits)
			} else {
				if len(out.Hidden) != len(toks)*s.Config.NEmbd {
					t.Fatalf("stage [%d,%d) returned %d hidden values for %d tokens", s.First, s.Last, len(out.Hidden), len(toks))
				}
				in = Batch{Pos: pos, Hidden: out.Hidden}
			}
		}
		pos += len(toks)
	}
	return res
}

// A prompt fed as one batch, token by token, or in uneven chunks gives the same logits, and
// AllLogits returns the per-position logits of each token's own evaluation.
func TestBatchingAndAllLogits(t *testing.T) {
	f := openFixture(t, "stories260K/stories260K-F32.gguf")
	st, err := LoadStage(f, 0, 5, Options{Compute: ComputeF32})
	if err != nil {
		t.Fatal(err)
	}
	prompt := loadGolden(t, "stories260K/golden/stories260K-F32.json").Prompts[1].PromptIDs // 7 tokens
	seq := st.NewSequence(16)
	all, err := st.Forward(seq, Batch{Tokens: prompt, AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	nv := st.Config.NVocab
	if len(all.Logits) != len(prompt)*nv {
		t.Fatalf("AllLogits returned %d values, want %d", len(all.Logits), len(prompt)*nv)
	}
	seq2 := st.NewSequence(16)
	for i, tok := range prompt {
		out, err := st.Forward(seq2, Batch{Pos: i, Tokens: []int32{tok}})
		if err != nil {
			t.Fatal(err)
		}
		for j := range out.Logits {
			if out.Logits[j] != all.Logits[i*nv+j] {
				t.Fatalf("position %d: token-by-token logit %d = %v, batch %v", i, j, out.Logits[j], all.Logits[i*nv+j])
			}
		}
	}
	// Positions matter: consecutive positions give different logits.
	if equalF32(all.Logits[:nv], all.Logits[nv:2*nv]) {
		t.Fatal("logits of positions 0 and 1 are identical")
	}
	// Truncating and re-running the tail reproduces the same result.
	if err := seq.Truncate(3); err != nil {
		t.Fatal(err)
	}
	out, err := st.Forward(seq, Batch{Pos: 3, Tokens: prompt[3:]})
	if err != nil {
		t.Fatal(err)
	}
	if !equalF32(out.Logits, all.Logits[(len(prompt)-1)*nv:]) {
		t.Fatal("re-running after Truncate changed the last logits")
	}
}

// A sequence extended to a longer context from the first positions of another continues
// exactly as the original does from there, for every KV cache type; bad arguments are refused
// and the source is left as it was.
func TestSeqExtend(t *testing.T) {
	f := openFixture(t, "stories260K/stories260K-F32.gguf")
	prompt := loadGolden(t, "stories260K/golden/stories260K-F32.json").Prompts[1].PromptIDs // 7 tokens
	for _, kv := range []ggml.Type{ggml.F32, ggml.F16, ggml.Q8_0} {
		st, err := LoadStage(f, 0, 5, Options{KVType: kv})
		if err != nil {
			t.Fatal(err)
		}
		seq := st.NewSequence(8)
		want, err := st.Forward(seq, Batch{Tokens: prompt})
		if err != nil {
			t.Fatal(err)
		}
		wantLogits := append([]float32(nil), want.Logits...)
		for _, bad := range [][2]int{{32, 8}, {32, -1}, {4, 5}} {
			if _, err := seq.Extend(bad[0], bad[1]); err == nil {
				t.Errorf("%s: Extend(%d, %d) of 7 cached positions accepted", kv, bad[0], bad[1])
			}
		}
		ext, err := seq.Extend(32, 4)
		if err != nil {
			t.Fatal(err)
		}
		if ext.Cap() != 32 || ext.Len() != 4 || seq.Len() != len(prompt) {
			t.Fatalf("%s: extended to cap %d len %d, source len %d", kv, ext.Cap(), ext.Len(), seq.Len())
		}
		got, err := st.Forward(ext, Batch{Pos: 4, Tokens: prompt[4:]})
		if err != nil {
			t.Fatal(err)
		}
		if !equalF32(got.Logits, wantLogits) {
			t.Errorf("%s: continuing an extended sequence changed the logits", kv)
		}
		// Positions beyond the old context are usable.
		for pos := len(prompt); pos < 20; pos++ {
			if _, err := st.Forward(ext, Batch{Pos: pos, Tokens: prompt[:1]}); err != nil {
				t.Fatalf("%s: position %d of the extended sequence: %v", kv, pos, err)
			}
		}
	}
}

func equalF32(a, b []float32) bool {
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

// The F16 KV cache mirrors llama.cpp's default configuration (F16 cache + flash attention):
// it lands much closer to the goldens' default mode than the F32 cache, which matches f32ref.
func TestF16KVCacheMatchesDefaultMode(t *testing.T) {
	cases := []struct {
		file, golden string
		compute      Compute
		maxDefault   float64 // bound on |Δ| vs default mode with the F16 cache
	}{
		{"synthetic/qwen3-e32/qwen3-e32-F16.gguf", "synthetic/qwen3-e32/golden/qwen3-e32-F32.json", ComputeF32, 0.003},
		{"stories260K/stories260K-F32.gguf", "stories260K/golden/stories260K-F32.json", ComputeNative, 1e-4},
		{"stories260K/stories260K-Q8_0.gguf", "stories260K/golden/stories260K-Q8_0.json", ComputeNative, 1e-4},
	}
	for _, tc := range cases {
		f := openFixture(t, tc.file)
		c := mustConfig(t, f)
		p := loadGolden(t, tc.golden).Prompts[0]
		var d [2][2]float64 // [kv F32, F16][vs f32ref, vs default]
		for i, kv := range []ggml.Type{ggml.F32, ggml.F16} {
			st, err := LoadStage(f, 0, c.NLayer, Options{Compute: tc.compute, KVType: kv})
			if err != nil {
				t.Fatal(err)
			}
			logits, _ := greedyRun(t, st, p.PromptIDs, 1, nil)
			d[i] = [2]float64{logitDiff(t, logits, p.F32Ref, math.Inf(1)), logitDiff(t, logits, p.Default, math.Inf(1))}
		}
		t.Logf("%s: |Δ| F32 KV vs f32ref %.3g, vs default %.3g; F16 KV vs f32ref %.3g, vs default %.3g", name(tc.file), d[0][0], d[0][1], d[1][0], d[1][1])
		if d[1][1] > tc.maxDefault || d[1][1] > d[0][1]/3 {
			t.Errorf("%s: F16 KV cache is %.3g from default mode (F32 cache: %.3g)", name(tc.file), d[1][1], d[0][1])
		}
		if d[0][0] > d[0][1] {
			t.Errorf("%s: F32 KV cache is closer to default (%.3g) than to f32ref (%.3g)", name(tc.file), d[0][1], d[0][0])
		}
	}
}

func TestOptionsValidated(t *testing.T) {
	f := openFixture(t, "stories260K/stories260K-F32.gguf")
	for _, o := range []Options{{Compute: "gpu"}, {KVType: ggml.Q4_0}} {
		if _, err := LoadStage(f, 0, 5, o); err == nil {
			t.Errorf("LoadStage accepted options %+v", o)
		}
	}
	for _, r := range [][2]int{{-1, 2}, {0, 6}, {3, 3}, {4, 2}} {
		_, err := LoadStage(f, r[0], r[1], Options{})
		if err == nil || !strings.Contains(err.Error(), "layer range") {
			t.Errorf("LoadStage(%d,%d): %v, want a layer range error", r[0], r[1], err)
		}
	}
}

// Attention over the F16 and the Q8_0 cache that takes a KV head's query heads together (where
// the CPU has the group kernels) gives the logits of one head at a time, bit for bit: for a
// prompt and for decode steps (grouped on one thread; on two, a step's 8 heads stay one a
// unit), on one and two threads.
func TestGroupedHeadsMatchOneAtATime(t *testing.T) {
	h := gguf.Hparams{Vocab: 512, Embd: 512, Layers: 2, Heads: 8, KVHeads: 2, HeadDim: 64, FFN: 512,
		Context: 512, RopeTheta: 10000, RMSEps: 1e-5, Tied: true}
	path := filepath.Join(t.TempDir(), "gqa.gguf")
	if err := gguf.Synth(gguf.SynthOptions{Arch: "llama", Dims: &h, Type: ggml.Q8_0, Seed: 9, Out: path}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prompt := make([]int32, 150)
	for i := range prompt {
		prompt[i] = int32(i*37%255 + 1)
	}
	run := func(kv ggml.Type, threads int, grouped bool) ([][]float32, int) {
		defer func(g bool) { groupHeads = g }(groupHeads)
		groupHeads = grouped
		st, err := LoadStage(f, 0, 2, Options{KVType: kv, Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		seq := st.NewSequence(256)
		var res [][]float32
		pos, group := 0, 0
		for i, toks := range [][]int32{prompt, {5}, {77}, {200}} {
			out, err := st.Forward(seq, Batch{Pos: pos, Tokens: toks})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				group = st.wsFree[0].attn.group // the prompt pass's last layer
			}
			res = append(res, out.Logits)
			pos += len(toks)
		}
		return res, group
	}
	for _, kv := range []ggml.Type{ggml.F16, ggml.Q8_0} {
		wantGroup := kernels.F16Group()
		if kv == ggml.Q8_0 {
			wantGroup = kernels.Q8Group()
		}
		for _, threads := range []int{1, 2} {
			want, one := run(kv, threads, false)
			got, g := run(kv, threads, true)
			// (The pass's last layer runs only the token that needs logits: on two threads its
			// four units of one head are too few to group.)
			if one != 1 || (threads == 1 && g != wantGroup) {
				t.Fatalf("%v, threads %d: groups of %d heads ungrouped, %d grouped; want 1 and %d", kv, threads, one, g, wantGroup)
			}
			for i := range want {
				for k := range want[i] {
					if math.Float32bits(got[i][k]) != math.Float32bits(want[i][k]) {
						t.Fatalf("%v, threads %d, step %d: logit %d = %v grouped, %v one head at a time", kv, threads, i, k, got[i][k], want[i][k])
					}
				}
			}
		}
	}
}
