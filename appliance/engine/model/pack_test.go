package model

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// Native compute of models of every type with a packed layout (all quantized types but Q8_1) uses the packed layout where the CPU has its
// kernels, and the packed layout computes what the file's own layout computes: to float
// rounding for Q4 (close logits, and on the trained model the same greedy tokens), exactly
// for Q8_0, whose packed products keep the reference Dot's arithmetic. (The random-weight model is checked on its
// prompt only: there a last-bit difference that moves one activation across a Q8_0 rounding
// boundary a few steps later changes logits by a few percent, with either layout as likely.)
func TestPackedWeightsMatchFileLayout(t *testing.T) {
	for _, tc := range []struct {
		file  string
		synth ggml.Type // a random-weight model of this type made here, where file is ""
		steps int
		exact bool
	}{
		{"stories260K/stories260K-Q4_0.gguf", 0, 24, false},
		{"synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf", 0, 0, false},
		{"stories260K/stories260K-Q8_0.gguf", 0, 24, true},
		// There are no Q5_K, Q5_0, Q3_K, Q2_K, Q4_1 or Q5_1 fixtures.
		{"", ggml.Q5_K, 8, false},
		{"", ggml.Q5_0, 8, false},
		{"", ggml.Q3_K, 8, false},
		{"", ggml.Q2_K, 8, false},
		{"", ggml.Q4_1, 8, false},
		// From step 4 on, this model's logits part by 1% between the layouts (0.14 of 11.8)
		// where the steps before agree within 1e-3: the drift of last-bit differences
		// described above (the products themselves are checked in the kernels' tests).
		{"", ggml.Q5_1, 3, false},
	} {
		file := tc.file
		if file == "" {
			file = synthModel(t, tc.synth)
		}
		t.Run(name(file), func(t *testing.T) {
			var f *gguf.File
			if tc.file == "" {
				var err error
				if f, err = gguf.Open(file); err != nil {
					t.Fatal(err)
				}
				defer f.Close()
			} else {
				f = openFixture(t, file)
			}
			load := func(pack bool) *Stage {
				t.Helper()
				packWeights = pack
				defer func() { packWeights = true }()
				st, err := LoadStage(f, 0, mustConfig(t, f).NLayer, Options{KVType: ggml.F32})
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			packed, plain := load(true), load(false)
			q := packed.layers[0].down
			if tc.file == "" {
				q = packed.layers[0].wq // down is Q6_K in the first layers of a _M mix
				if q.typ != tc.synth {
					t.Fatalf("%s is %s, want %s", q.name, q.typ, tc.synth)
				}
			}
			switch q.typ {
			case ggml.Q4_0, ggml.Q4_1, ggml.Q5_0, ggml.Q5_1, ggml.Q2_K, ggml.Q3_K, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K, ggml.Q8_0:
				want := kernels.Pack(q.typ, plain.layers[0].down.data, q.rows, q.cols) != nil
				if (q.packed != nil) != want {
					t.Fatalf("%s: packed=%v, but this CPU's kernels.Pack gives a copy: %v", q.name, q.packed != nil, want)
				}
				if !want {
					t.Skipf("this CPU has no packed kernels for %s (needs AVX-512 VNNI and BW)", q.typ)
				}
				if q.data != nil {
					t.Fatalf("%s keeps its mapped bytes next to the packed copy", q.name)
				}
			}
			prompt := []int32{1, 5, 9, 3, 17, 2, 11}
			sp, sq := packed.NewSequence(48), plain.NewSequence(48)
			a, err := packed.Forward(sp, Batch{Tokens: prompt})
			if err != nil {
				t.Fatal(err)
			}
			b, err := plain.Forward(sq, Batch{Tokens: prompt})
			if err != nil {
				t.Fatal(err)
			}
			for step := 0; ; step++ {
				var worst, scale float64
				for i := range a.Logits {
					worst = math.Max(worst, math.Abs(float64(a.Logits[i]-b.Logits[i])))
					scale = math.Max(scale, math.Abs(float64(b.Logits[i])))
				}
				if tc.exact && worst != 0 {
					t.Fatalf("step %d: packed Q8_0 logits differ from the file layout's by %g", step, worst)
				}
				if worst > 1e-3*math.Max(scale, 1) {
					t.Fatalf("step %d: packed logits differ by %g (largest logit %g)", step, worst, scale)
				}
				ta, tb := argmax(a.Logits), argmax(b.Logits)
				if ta != tb {
					t.Fatalf("step %d: packed layout picks token %d, file layout %d", step, ta, tb)
				}
				if step == tc.steps {
					break
				}
				if a, err = packed.Forward(sp, Batch{Pos: sp.Len(), Tokens: []int32{ta}}); err != nil {
					t.Fatal(err)
				}
				if b, err = plain.Forward(sq, Batch{Pos: sq.Len(), Tokens: []int32{tb}}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// synthModel writes a small Llama-shaped model of type ty to a temporary file, as the _M mix
// (Q6_K where llama-quantize puts it) for a K-quant.
func synthModel(t *testing.T, ty ggml.Type) string {
	h := gguf.Hparams{Vocab: 512, Embd: 256, Layers: 2, Heads: 8, KVHeads: 4, HeadDim: 32, FFN: 512,
		Context: 256, RopeTheta: 10000, RMSEps: 1e-5, Tied: true}
	path := filepath.Join(t.TempDir(), ty.String()+".gguf")
	if err := gguf.Synth(gguf.SynthOptions{Arch: "llama", Dims: &h, Type: ty, Medium: ty == ggml.Q5_K, Seed: 5, Out: path}); err != nil {
		t.Fatal(err)
	}
	return path
}

func argmax(v []float32) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return int32(best)
}

// A stage that only looks token embeddings up (the first of several) leaves the table in the
// file mapping, whatever its type: only the rows used become resident. A stage that also
// computes logits with the tied table moves it (packed where the CPU has the kernels).
func TestLookupEmbeddingStaysMapped(t *testing.T) {
	const file = "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf" // tied Q6_K table
	f := openFixture(t, file)
	n := mustConfig(t, f).NLayer
	first, err := LoadStage(f, 0, n-1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e := first.embd; e.packed != nil || e.data == nil {
		t.Errorf("first stage: the lookup-only table %s was moved (packed %v, mapped %v)", e.name, e.packed != nil, e.data != nil)
	}
	whole, err := LoadStage(f, 0, n, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := whole.embd
	if whole.output != e {
		t.Fatal("the fixture's output is not its tied embedding")
	}
	if kernels.PackedSize(e.typ, e.rows, e.cols) > 0 && (e.packed == nil || e.data != nil) {
		t.Errorf("whole model: the tied table %s computes logits but was not packed", e.name)
	}
}
