package model

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// tinySpec describes a small random model written with gguf.Writer, so that the tests control
// every feature (architecture, untied output, rope scaling) and can break files on purpose.
type tinySpec struct {
	arch        string
	untied      bool
	ropeScaling string // "", "linear", "llama3" (keys only), "llama3-tensor" (rope_freqs tensor)
	skip        string // tensor to leave out
	reshape     string // tensor to write with a wrong shape
	dropKey     string // metadata key to leave out
}

const (
	tinyEmbd, tinyLayers, tinyHead, tinyHeadKV, tinyFF, tinyVocab, tinyCtx = 16, 3, 4, 2, 24, 20, 64
	tinyHeadDim                                                            = 8 // q dim 32 ≠ n_embd 16 for qwen3-like key_length
	tinyRopeBase                                                           = 100.0
)

type tinyModel struct {
	spec    tinySpec
	tensors map[string][]float64 // row-major, rows of dims[0]
	file    *gguf.File
}

func buildTiny(t *testing.T, spec tinySpec) *tinyModel {
	t.Helper()
	if spec.arch == "" {
		spec.arch = "llama"
	}
	r := rand.New(rand.NewPCG(7, uint64(len(spec.arch))))
	m := &tinyModel{spec: spec, tensors: map[string][]float64{}}
	w := gguf.NewWriter()
	a := spec.arch
	kv := func(k string, v gguf.Value) {
		if k != spec.dropKey {
			w.AddKV(k, v)
		}
	}
	kv("general.architecture", gguf.Str(a))
	kv(a+".block_count", gguf.U32(tinyLayers))
	kv(a+".embedding_length", gguf.U32(tinyEmbd))
	kv(a+".feed_forward_length", gguf.U32(tinyFF))
	kv(a+".attention.head_count", gguf.U32(tinyHead))
	kv(a+".attention.head_count_kv", gguf.U32(tinyHeadKV))
	kv(a+".attention.key_length", gguf.U32(tinyHeadDim))
	kv(a+".attention.value_length", gguf.U32(tinyHeadDim))
	kv(a+".context_length", gguf.U32(tinyCtx))
	kv(a+".attention.layer_norm_rms_epsilon", gguf.F32(1e-5))
	kv(a+".rope.freq_base", gguf.F32(tinyRopeBase))
	switch spec.ropeScaling {
	case "linear":
		kv(a+".rope.scaling.type", gguf.Str("linear"))
		kv(a+".rope.scaling.factor", gguf.F32(4))
	case "llama3", "llama3-tensor":
		kv(a+".rope.scaling.type", gguf.Str("llama3"))
		kv(a+".rope.scaling.factor", gguf.F32(8))
		kv(a+".rope.scaling.low_freq_factor", gguf.F32(1))
		kv(a+".rope.scaling.high_freq_factor", gguf.F32(4))
		kv(a+".rope.scaling.original_context_length", gguf.U32(16))
	}
	add := func(name string, dims ...int) {
		if name == spec.skip {
			return
		}
		n := 1
		for _, d := range dims {
			n *= d
		}
		vals := make([]float64, n)
		std := 1 / math.Sqrt(float64(dims[0]))
		if strings.Contains(name, "norm") {
			for i := range vals {
				vals[i] = float64(float32(1 + 0.1*r.NormFloat64()))
			}
		} else {
			for i := range vals {
				vals[i] = float64(float32(1.5 * std * r.NormFloat64()))
			}
		}
		m.tensors[name] = vals
		ud := make([]uint64, len(dims))
		for i, d := range dims {
			ud[i] = uint64(d)
		}
		if name == spec.reshape {
			ud[0]++
			vals = append(vals, make([]float64, n/dims[0])...)
		}
		buf := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(float32(v)))
		}
		if err := w.AddTensor(name, ggml.F32, ud, buf); err != nil {
			t.Fatal(err)
		}
	}
	q, kvd := tinyHead*tinyHeadDim, tinyHeadKV*tinyHeadDim
	add("token_embd.weight", tinyEmbd, tinyVocab)
	for l := 0; l < tinyLayers; l++ {
		p := "blk." + string(rune('0'+l)) + "."
		add(p+"attn_norm.weight", tinyEmbd)
		add(p+"attn_q.weight", tinyEmbd, q)
		add(p+"attn_k.weight", tinyEmbd, kvd)
		add(p+"attn_v.weight", tinyEmbd, kvd)
		if a == "qwen2" {
			add(p+"attn_q.bias", q)
			add(p+"attn_k.bias", kvd)
			add(p+"attn_v.bias", kvd)
		}
		if a == "qwen3" {
			add(p+"attn_q_norm.weight", tinyHeadDim)
			add(p+"attn_k_norm.weight", tinyHeadDim)
		}
		add(p+"attn_output.weight", q, tinyEmbd)
		add(p+"ffn_norm.weight", tinyEmbd)
		add(p+"ffn_gate.weight", tinyEmbd, tinyFF)
		add(p+"ffn_up.weight", tinyEmbd, tinyFF)
		add(p+"ffn_down.weight", tinyFF, tinyEmbd)
	}
	add("output_norm.weight", tinyEmbd)
	if spec.untied {
		add("output.weight", tinyEmbd, tinyVocab)
	}
	if spec.ropeScaling == "llama3-tensor" {
		f := refLlama3Factors()
		buf := make([]byte, 4*len(f))
		for i, v := range f {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(float32(v)))
		}
		if err := w.AddTensor("rope_freqs.weight", ggml.F32, []uint64{uint64(len(f))}, buf); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if _, err := w.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	f.Path = "tiny-" + a + ".gguf"
	m.file = f
	return m
}

// refLlama3Factors is the Llama 3.1 scaling formula for the tiny model's parameters (factor 8,
// low 1, high 4, original context 16), in float64.
func refLlama3Factors() []float64 {
	out := make([]float64, tinyHeadDim/2)
	for i := range out {
		freq := math.Pow(tinyRopeBase, -float64(2*i)/tinyHeadDim)
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < 16.0/4:
			out[i] = 1
		case wavelen > 16.0/1:
			out[i] = 8
		default:
			smooth := (16/wavelen - 1) / (4 - 1)
			out[i] = 1 / ((1-smooth)/8 + smooth)
		}
	}
	return out
}

// reference is a straightforward float64 forward pass written from the model definition, used to
// check the engine's graph (RoPE pairing, GQA, biases, q/k norms, scaling, untied output).
func (m *tinyModel) reference(tokens []int32) [][]float64 {
	w := m.tensors
	arch := m.spec.arch
	matvec := func(name string, x []float64) []float64 {
		mat := w[name]
		cols := len(x)
		out := make([]float64, len(mat)/cols)
		for r := range out {
			for c := 0; c < cols; c++ {
				out[r] += mat[r*cols+c] * x[c]
			}
		}
		return out
	}
	norm := func(x []float64, weight []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(x))+1e-5)
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = v * s * weight[i]
		}
		return out
	}
	factors := make([]float64, tinyHeadDim/2)
	for i := range factors {
		factors[i] = 1
	}
	freqScale := 1.0
	switch m.spec.ropeScaling {
	case "linear":
		freqScale = 0.25
	case "llama3", "llama3-tensor":
		factors = refLlama3Factors()
	}
	rope := func(x []float64, pos int) {
		half := tinyHeadDim / 2
		for h := 0; h < len(x)/tinyHeadDim; h++ {
			hd := x[h*tinyHeadDim : (h+1)*tinyHeadDim]
			for i := 0; i < half; i++ {
				theta := float64(pos) * math.Pow(tinyRopeBase, -float64(2*i)/tinyHeadDim) / factors[i] * freqScale
				a, b := 2*i, 2*i+1
				if arch != "llama" {
					a, b = i, i+half
				}
				x0, x1 := hd[a], hd[b]
				hd[a] = x0*math.Cos(theta) - x1*math.Sin(theta)
				hd[b] = x0*math.Sin(theta) + x1*math.Cos(theta)
			}
		}
	}
	keys := make([][][]float64, tinyLayers)
	vals := make([][][]float64, tinyLayers)
	var logits [][]float64
	for pos, tok := range tokens {
		x := append([]float64(nil), w["token_embd.weight"][int(tok)*tinyEmbd:(int(tok)+1)*tinyEmbd]...)
		for l := 0; l < tinyLayers; l++ {
			p := "blk." + string(rune('0'+l)) + "."
			h := norm(x, w[p+"attn_norm.weight"])
			q, k, v := matvec(p+"attn_q.weight", h), matvec(p+"attn_k.weight", h), matvec(p+"attn_v.weight", h)
			if arch == "qwen2" {
				for i := range q {
					q[i] += w[p+"attn_q.bias"][i]
				}
				for i := range k {
					k[i] += w[p+"attn_k.bias"][i]
					v[i] += w[p+"attn_v.bias"][i]
				}
			}
			if arch == "qwen3" {
				for hh := 0; hh < tinyHead; hh++ {
					copy(q[hh*tinyHeadDim:], norm(q[hh*tinyHeadDim:(hh+1)*tinyHeadDim], w[p+"attn_q_norm.weight"]))
				}
				for hh := 0; hh < tinyHeadKV; hh++ {
					copy(k[hh*tinyHeadDim:], norm(k[hh*tinyHeadDim:(hh+1)*tinyHeadDim], w[p+"attn_k_norm.weight"]))
				}
			}
			rope(q, pos)
			rope(k, pos)
			keys[l] = append(keys[l], k)
			vals[l] = append(vals[l], v)
			att := make([]float64, tinyHead*tinyHeadDim)
			for hh := 0; hh < tinyHead; hh++ {
				kvh := hh / (tinyHead / tinyHeadKV)
				sc := make([]float64, pos+1)
				mx := math.Inf(-1)
				for t := 0; t <= pos; t++ {
					for d := 0; d < tinyHeadDim; d++ {
						sc[t] += q[hh*tinyHeadDim+d] * keys[l][t][kvh*tinyHeadDim+d]
					}
					sc[t] /= math.Sqrt(tinyHeadDim)
					mx = math.Max(mx, sc[t])
				}
				var sum float64
				for t := range sc {
					sc[t] = math.Exp(sc[t] - mx)
					sum += sc[t]
				}
				for t := range sc {
					for d := 0; d < tinyHeadDim; d++ {
						att[hh*tinyHeadDim+d] += sc[t] / sum * vals[l][t][kvh*tinyHeadDim+d]
					}
				}
			}
			o := matvec(p+"attn_output.weight", att)
			for i := range x {
				x[i] += o[i]
			}
			h = norm(x, w[p+"ffn_norm.weight"])
			g, u := matvec(p+"ffn_gate.weight", h), matvec(p+"ffn_up.weight", h)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := matvec(p+"ffn_down.weight", g)
			for i := range x {
				x[i] += d[i]
			}
		}
		out := "token_embd.weight"
		if m.spec.untied {
			out = "output.weight"
		}
		logits = append(logits, matvec(out, norm(x, w["output_norm.weight"])))
	}
	return logits
}

var tinyPrompt = []int32{1, 5, 9, 3, 17, 2, 11, 0, 19, 7, 4, 12, 8, 14, 6, 10, 13, 15, 16, 18}

// The engine's graph equals an independent float64 implementation for every architecture and
// feature, in both compute modes (F32 weights make them equivalent up to rounding).
func TestTinyModelsMatchReference(t *testing.T) {
	specs := []tinySpec{
		{arch: "llama"},
		{arch: "llama", untied: true},
		{arch: "qwen2"},
		{arch: "qwen3", untied: true},
		{arch: "llama", ropeScaling: "linear"},
		{arch: "llama", ropeScaling: "llama3"},
		{arch: "llama", ropeScaling: "llama3-tensor"},
	}
	for _, spec := range specs {
		m := buildTiny(t, spec)
		want := m.reference(tinyPrompt)
		for _, comp := range []Compute{ComputeF32, ComputeNative} {
			st, err := LoadStage(m.file, 0, tinyLayers, Options{Compute: comp})
			if err != nil {
				t.Fatalf("%+v: %v", spec, err)
			}
			if st.Config.TiedEmbeddings == spec.untied {
				t.Errorf("%+v: TiedEmbeddings = %v", spec, st.Config.TiedEmbeddings)
			}
			out, err := st.Forward(st.NewSequence(0), Batch{Tokens: tinyPrompt, AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			for p := range want {
				for j, w := range want[p] {
					worst = math.Max(worst, math.Abs(float64(out.Logits[p*tinyVocab+j])-w))
				}
			}
			if worst > 1e-4 {
				t.Errorf("%+v %s: max |Δlogit| vs float64 reference %.3g", spec, comp, worst)
			}
		}
	}
	// The features change the result: rope scaling and untied output are not silently ignored.
	base := buildTiny(t, tinySpec{}).reference(tinyPrompt)
	for _, spec := range []tinySpec{{untied: true}, {ropeScaling: "linear"}, {ropeScaling: "llama3"}} {
		other := buildTiny(t, spec).reference(tinyPrompt)
		if math.Abs(other[len(other)-1][0]-base[len(base)-1][0]) < 1e-6 {
			t.Errorf("%+v: reference logits equal the plain model's; the test would not notice the feature", spec)
		}
	}
}

// (f) Errors name what is wrong.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		spec        tinySpec
		first, last int
		want        []string
	}{
		{tinySpec{skip: "blk.1.ffn_up.weight"}, 0, 3, []string{"missing tensor blk.1.ffn_up.weight"}},
		{tinySpec{reshape: "blk.2.attn_q.weight"}, 1, 3, []string{"blk.2.attn_q.weight", "[17 32]", "[16 32]"}},
		{tinySpec{skip: "output_norm.weight"}, 2, 3, []string{"missing tensor output_norm.weight"}},
		{tinySpec{skip: "token_embd.weight"}, 1, 2, []string{"missing tensor token_embd.weight"}},
		{tinySpec{arch: "qwen2", skip: "blk.0.attn_k.bias"}, 0, 1, []string{"missing tensor blk.0.attn_k.bias"}},
		{tinySpec{arch: "qwen3", reshape: "blk.0.attn_q_norm.weight"}, 0, 1, []string{"blk.0.attn_q_norm.weight", "[9]", "[8]"}},
		{tinySpec{dropKey: "llama.embedding_length"}, 0, 1, []string{"missing key llama.embedding_length"}},
		{tinySpec{dropKey: "llama.attention.layer_norm_rms_epsilon"}, 0, 1, []string{"llama.attention.layer_norm_rms_epsilon"}},
		{tinySpec{arch: "gpt2"}, 0, 1, []string{`architecture "gpt2" is not supported`}},
	}
	for _, tc := range cases {
		m := buildTiny(t, tc.spec)
		_, err := LoadStage(m.file, tc.first, tc.last, Options{})
		if err == nil {
			t.Errorf("%+v: LoadStage(%d,%d) succeeded", tc.spec, tc.first, tc.last)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not mention %q", tc.spec, err, w)
			}
		}
	}
	// A stage touches only its own layers: a broken layer 1 does not stop stages without it.
	m := buildTiny(t, tinySpec{skip: "blk.1.ffn_up.weight"})
	for _, r := range [][2]int{{0, 1}, {2, 3}} {
		if _, err := LoadStage(m.file, r[0], r[1], Options{}); err != nil {
			t.Errorf("stage [%d,%d) failed over a tensor of layer 1: %v", r[0], r[1], err)
		}
	}
}

func TestForwardErrors(t *testing.T) {
	m := buildTiny(t, tinySpec{})
	first, err := LoadStage(m.file, 0, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rest, err := LoadStage(m.file, 1, 3, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seq := first.NewSequence(4)
	if _, err := first.Forward(seq, Batch{Tokens: []int32{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", what, err, want)
		}
	}
	_, err = first.Forward(seq, Batch{Pos: 3, Tokens: []int32{4, 5}})
	check("overflow", err, "context full: positions 3..4 exceed the context length 4")
	_, err = first.Forward(seq, Batch{Pos: 5, Tokens: []int32{4}})
	check("gap", err, "starts at position 5 but the sequence holds 3")
	_, err = first.Forward(seq, Batch{Pos: 3, Tokens: []int32{tinyVocab}})
	check("token range", err, "outside the vocabulary")
	_, err = first.Forward(seq, Batch{Pos: 3})
	check("empty", err, "empty batch")
	_, err = rest.Forward(seq, Batch{Pos: 0, Hidden: make([]float32, tinyEmbd)})
	check("foreign sequence", err, "does not belong")
	_, err = rest.Forward(rest.NewSequence(4), Batch{Tokens: []int32{1}})
	check("tokens to a middle stage", err, "takes hidden states")
	_, err = rest.Forward(rest.NewSequence(4), Batch{Hidden: make([]float32, tinyEmbd+1)})
	check("ragged hidden", err, "not a multiple of n_embd")
	// The last position still fits.
	if _, err := first.Forward(seq, Batch{Pos: 3, Tokens: []int32{4}}); err != nil {
		t.Fatalf("filling the last position: %v", err)
	}
}
