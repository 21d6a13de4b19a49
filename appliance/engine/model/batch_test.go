package model

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// batchFiles are the fixtures the batching tests run on: the types with eight-row, four-column
// and one-row SIMD kernels, and an F32 model whose native path is the float kernel.
var batchFiles = []string{
	"synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf",
	"synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf",
	"stories260K/stories260K-Q4_0.gguf",
	"stories260K/stories260K-F32.gguf",
}

// Several sequences evaluated together — prompts of different lengths in one call, then decode
// steps of all of them in one call — give exactly the logits of evaluating each alone, for every
// KV cache type. This is what lets a scheduler batch requests without changing any of them.
func TestForwardBatchMatchesForward(t *testing.T) {
	prompts := [][]int32{{1, 5, 9, 3, 17, 2, 11}, {1, 7}, {1, 4, 4, 8, 12, 20, 3, 9, 14, 2, 6}}
	steps := 6
	if quick() {
		steps = 3
	}
	for _, file := range batchFiles {
		for _, kv := range []ggml.Type{ggml.F32, ggml.F16, ggml.Q8_0} {
			t.Run(fmt.Sprintf("%s/%s", name(file), kv), func(t *testing.T) {
				f := openFixture(t, file)
				st, err := LoadStage(f, 0, mustConfig(t, f).NLayer, Options{KVType: kv})
				if err != nil {
					t.Fatal(err)
				}
				// Alone: each prompt, then greedy-free fixed continuation tokens.
				next := func(i, step int) int32 { return int32((7*i + 3*step + 2) % 200) }
				want := make([][][]float32, len(prompts))
				for i, p := range prompts {
					seq := st.NewSequence(32)
					out, err := st.Forward(seq, Batch{Tokens: p})
					if err != nil {
						t.Fatal(err)
					}
					want[i] = append(want[i], out.Logits)
					for step := 0; step < steps; step++ {
						out, err := st.Forward(seq, Batch{Pos: seq.Len(), Tokens: []int32{next(i, step)}})
						if err != nil {
							t.Fatal(err)
						}
						want[i] = append(want[i], out.Logits)
					}
				}
				// Together.
				seqs := make([]*Seq, len(prompts))
				items := make([]SeqBatch, len(prompts))
				outs := make([]Out, len(prompts))
				for i, p := range prompts {
					seqs[i] = st.NewSequence(32)
					items[i] = SeqBatch{Seq: seqs[i], Batch: Batch{Tokens: p}}
				}
				for step := -1; step < steps; step++ {
					if step >= 0 {
						for i := range items {
							items[i] = SeqBatch{Seq: seqs[i], Batch: Batch{Pos: seqs[i].Len(), Tokens: []int32{next(i, step)}}}
						}
					}
					if err := st.ForwardBatch(items, outs); err != nil {
						t.Fatal(err)
					}
					for i := range items {
						if !equalF32(outs[i].Logits, want[i][step+1]) {
							t.Fatalf("sequence %d step %d: batched logits differ from the sequence alone", i, step)
						}
					}
				}
			})
		}
	}
}

// Results depend neither on the thread count nor on a prompt longer than one pass, and decode
// steps neither (from four threads their gated activation runs on the pool).
func TestForwardBatchThreadsAndLongBatches(t *testing.T) {
	f := openFixture(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf")
	n := maxStepTokens + 37
	prompt := make([]int32, n)
	for i := range prompt {
		prompt[i] = int32((i*31 + 1) % 1000)
	}
	var ref, refSteps []float32
	for _, threads := range []int{1, 3, 4} {
		st, err := LoadStage(f, 0, mustConfig(t, f).NLayer, Options{Threads: threads, KVType: ggml.F16})
		if err != nil {
			t.Fatal(err)
		}
		seq := st.NewSequence(n + 3)
		out, err := st.Forward(seq, Batch{Tokens: prompt, AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		var steps []float32
		for i := range 3 {
			o, err := st.Forward(seq, Batch{Pos: n + i, Tokens: []int32{int32(7 + 100*i)}})
			if err != nil {
				t.Fatal(err)
			}
			steps = append(steps, o.Logits...)
		}
		if ref == nil {
			ref, refSteps = out.Logits, steps
			// The last position of the long batch equals a run that feeds the tail alone.
			seq := st.NewSequence(n)
			if _, err := st.Forward(seq, Batch{Tokens: prompt[:n-1]}); err != nil {
				t.Fatal(err)
			}
			tail, err := st.Forward(seq, Batch{Pos: n - 1, Tokens: prompt[n-1:]})
			if err != nil {
				t.Fatal(err)
			}
			nv := st.Config.NVocab
			if !equalF32(tail.Logits, ref[(n-1)*nv:]) {
				t.Fatal("last position of a batch longer than one pass differs from feeding it alone")
			}
			continue
		}
		if !equalF32(out.Logits, ref) {
			t.Fatalf("threads %d: logits differ from 1 thread", threads)
		}
		if !equalF32(steps, refSteps) {
			t.Fatalf("threads %d: decode steps' logits differ from 1 thread", threads)
		}
	}
}

func TestForwardBatchErrors(t *testing.T) {
	f := openFixture(t, "stories260K/stories260K-Q8_0.gguf")
	st, err := LoadStage(f, 0, 5, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := st.NewSequence(8), st.NewSequence(8)
	outs := make([]Out, 2)
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", what, err, want)
		}
	}
	check("same sequence twice", st.ForwardBatch([]SeqBatch{{Seq: a, Batch: Batch{Tokens: []int32{1}}}, {Seq: a, Batch: Batch{Tokens: []int32{2}}}}, outs), "same sequence")
	check("short outputs", st.ForwardBatch([]SeqBatch{{Seq: a, Batch: Batch{Tokens: []int32{1}}}, {Seq: b, Batch: Batch{Tokens: []int32{2}}}}, outs[:1]), "2 batches")
	check("bad item", st.ForwardBatch([]SeqBatch{{Seq: a, Batch: Batch{Tokens: []int32{1}}}, {Seq: b, Batch: Batch{Pos: 3, Tokens: []int32{2}}}}, outs), "batch item 1")
	check("empty", st.ForwardBatch(nil, outs), "empty batch")
	if a.Len() != 0 || b.Len() != 0 {
		t.Errorf("a failed call evaluated positions: lengths %d, %d", a.Len(), b.Len())
	}
}

// A steady decode step of several sequences allocates nothing, over an F16 and a Q8_0 cache.
func TestForwardBatchSteadyStateAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	f := openFixture(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf")
	for _, kv := range []ggml.Type{ggml.F16, ggml.Q8_0} {
		st, err := LoadStage(f, 0, mustConfig(t, f).NLayer, Options{KVType: kv})
		if err != nil {
			t.Fatal(err)
		}
		const nseq = 4
		step := decodeStepper(t, st, nseq, 64)
		step()
		if a := testing.AllocsPerRun(20, step); a > 0 {
			t.Errorf("%v cache: decode step of %d sequences: %.1f allocations", kv, nseq, a)
		}
	}
}

// decodeStepper returns one decode step of nseq new sequences of ctx positions on st: each
// sequence takes one token (its length plus its index), back to the start when its cache is
// full; an error fails tb.
func decodeStepper(tb testing.TB, st *Stage, nseq, ctx int) func() {
	items := make([]SeqBatch, nseq)
	outs := make([]Out, nseq)
	toks := make([]int32, nseq)
	for i := range items {
		items[i].Seq = st.NewSequence(ctx)
	}
	return func() {
		for i := range items {
			q := items[i].Seq
			if q.Len() == ctx {
				_ = q.Truncate(0)
			}
			toks[i] = int32(q.Len() + i)
			items[i].Batch = Batch{Pos: q.Len(), Tokens: toks[i : i+1]}
		}
		if err := st.ForwardBatch(items, outs); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkDecodeStep is one decode step through one layer shaped like Llama-3.2-1B's (n_embd
// 2048, 32 heads, 8 KV heads, FFN 8192) with a small vocabulary, so the figure is the layer's:
// 60M weights, read once per step. It reports the weight bandwidth and allocations (0).
func BenchmarkDecodeStep(b *testing.B) {
	dir := b.TempDir()
	for _, typ := range []ggml.Type{ggml.Q8_0, ggml.Q4_0, ggml.Q4_K} {
		h := gguf.Hparams{Vocab: 512, Embd: 2048, Layers: 1, Heads: 32, KVHeads: 8, HeadDim: 64, FFN: 8192,
			Context: 4096, RopeTheta: 500000, RMSEps: 1e-5, Tied: true}
		path := filepath.Join(dir, typ.String()+".gguf")
		if err := gguf.Synth(gguf.SynthOptions{Arch: "llama", Dims: &h, Type: typ, Seed: 1, Out: path}); err != nil {
			b.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		st, err := LoadStage(f, 0, 1, Options{KVType: ggml.F16})
		if err != nil {
			b.Fatal(err)
		}
		for _, nseq := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/seqs=%d", typ, nseq), func(b *testing.B) {
				step := decodeStepper(b, st, nseq, 256)
				step() // sizes the buffers of the stage and the sequences
				b.SetBytes(st.WeightBytes())
				b.ReportAllocs()
				for b.Loop() {
					step()
				}
				b.ReportMetric(float64(nseq)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
		f.Close()
	}
}

// The last layer evaluates only the tokens that need logits, yet every position's keys and
// values reach the cache: a prompt fed without AllLogits (its other positions skip the last
// layer's attention and feed-forward block) next to one with AllLogits and a decode step gives
// each item the logits it gets alone, and decoding on from either prompt gives the same logits
// as from a prompt evaluated in full.
func TestLastLayerKeepsOnlyOutputTokens(t *testing.T) {
	f := openFixture(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf")
	st, err := LoadStage(f, 0, mustConfig(t, f).NLayer, Options{Threads: 2, KVType: ggml.F16})
	if err != nil {
		t.Fatal(err)
	}
	nv := st.Config.NVocab
	tokens := func(n, seed int) []int32 {
		p := make([]int32, n)
		for i := range p {
			p[i] = int32((i*37 + seed) % 1000)
		}
		return p
	}
	pa, pb, pc := tokens(40, 3), tokens(25, 11), tokens(9, 7)
	full := func(p []int32) (*Seq, []float32) {
		seq := st.NewSequence(64)
		out, err := st.Forward(seq, Batch{Tokens: p, AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		return seq, out.Logits
	}
	refA, allA := full(pa)
	_, allB := full(pb)
	refC, _ := full(pc)
	next, err := st.Forward(refC, Batch{Pos: len(pc), Tokens: []int32{5}})
	if err != nil {
		t.Fatal(err)
	}
	wantC := append([]float32(nil), next.Logits...)

	sa, sb, sc := st.NewSequence(64), st.NewSequence(64), st.NewSequence(64)
	if _, err := st.Forward(sc, Batch{Tokens: pc}); err != nil {
		t.Fatal(err)
	}
	items := []SeqBatch{
		{Seq: sa, Batch: Batch{Tokens: pa}},
		{Seq: sb, Batch: Batch{Tokens: pb, AllLogits: true}},
		{Seq: sc, Batch: Batch{Pos: len(pc), Tokens: []int32{5}}},
	}
	outs := make([]Out, len(items))
	if err := st.ForwardBatch(items, outs); err != nil {
		t.Fatal(err)
	}
	if !equalF32(outs[0].Logits, allA[(len(pa)-1)*nv:]) {
		t.Error("prompt's last logits differ from its AllLogits run")
	}
	if !equalF32(outs[1].Logits, allB) {
		t.Error("AllLogits item beside a prompt lost positions")
	}
	if !equalF32(outs[2].Logits, wantC) {
		t.Error("decode step beside prompts differs from the step alone")
	}
	if sa.Len() != len(pa) || sb.Len() != len(pb) || sc.Len() != len(pc)+1 {
		t.Fatalf("sequence lengths %d %d %d, want %d %d %d", sa.Len(), sb.Len(), sc.Len(), len(pa), len(pb), len(pc)+1)
	}
	for step, tok := range []int32{17, 300, 2} {
		want, err := st.Forward(refA, Batch{Pos: refA.Len(), Tokens: []int32{tok}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := st.Forward(sa, Batch{Pos: sa.Len(), Tokens: []int32{tok}})
		if err != nil {
			t.Fatal(err)
		}
		if !equalF32(got.Logits, want.Logits) {
			t.Fatalf("decode step %d after a prompt without AllLogits differs: the last layer's cache is incomplete", step)
		}
	}
}
