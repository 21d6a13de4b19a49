package gguf

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// SynthOptions describe a random-weight model. Exactly one of Preset and Dims is set.
type SynthOptions struct {
	Arch   string    // llama, qwen2 or qwen3; may be empty with a Preset
	Preset string    // name from Presets()
	Dims   *Hparams  // explicit dimensions instead of a preset
	Type   ggml.Type // type of the 2-D weights (1-D tensors are always F32); zero value is F32
	// Medium gives Q4_K and Q5_K files llama-quantize's _M mix (LLAMA_FTYPE_MOSTLY_Q4_K_M,
	// Q5_K_M) instead of Type throughout: Q6_K for the output matrix (the token embedding where
	// it is tied) and for attn_v and ffn_down of the layers useMoreBits picks.
	Medium    bool
	Seed      uint64
	VocabFrom string // copy every tokenizer.* key from this GGUF; empty: placeholder vocabulary
	Out       string // output path
	Name      string // general.name; default derived from preset/arch
}

// Weight scales of the fixture recipe (shared/fixtures/README.md): the gain keeps activations of
// a random network from collapsing or exploding through the layers.
const (
	gainLlama    = 1.5
	gainQwen     = 1.75
	normJitter   = 0.1
	biasStd      = 0.2
	embdStdScale = 4.0 // token_embd ~ N(0, (4/sqrt(n_embd))²)
)

// synthTensor is one tensor of the plan: shape, type and how its values are made.
type synthTensor struct {
	name string
	dims []uint64
	typ  ggml.Type
	kind synthKind
	std  float64   // normal: standard deviation; norm: jitter
	vals []float32 // fixed values (rope_freqs)
}

type synthKind int

const (
	kindNormal synthKind = iota // N(0, std²)
	kindNorm                    // 1 + std·N(0,1)
	kindFixed                   // vals
)

// synthPlan resolves the options into the metadata and tensor list without generating weights.
type synthPlan struct {
	arch    string
	h       Hparams
	kvs     []KV
	tensors []synthTensor
}

// Synth writes a random-weight model: real architecture and dimensions, weights drawn from a
// seeded PCG stream per tensor (so the same options give the same file on any machine and any
// number of CPUs), quantized with the reference quantizers.
func Synth(opts SynthOptions) error {
	if opts.Out == "" {
		return errors.New("synth: no output path")
	}
	plan, err := planSynth(opts)
	if err != nil {
		return err
	}
	w := NewWriter()
	for _, kv := range plan.kvs {
		w.AddKV(kv.Key, kv.Value)
	}
	for i := range plan.tensors {
		st := &plan.tensors[i]
		if err := w.AddTensorFunc(st.name, st.typ, st.dims, func(dst io.Writer) error {
			return st.generate(opts.Seed, dst)
		}); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	if err := w.WriteFile(opts.Out); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

func planSynth(opts SynthOptions) (*synthPlan, error) {
	arch, name := opts.Arch, opts.Name
	var h Hparams
	switch {
	case opts.Preset != "" && opts.Dims != nil:
		return nil, errors.New("synth: give a preset or explicit dims, not both")
	case opts.Preset != "":
		p, ok := LookupPreset(opts.Preset)
		if !ok {
			var known []string
			for _, p := range Presets() {
				known = append(known, p.Name)
			}
			return nil, fmt.Errorf("synth: unknown preset %q (known: %s)", opts.Preset, strings.Join(known, ", "))
		}
		if arch != "" && arch != p.Arch {
			return nil, fmt.Errorf("synth: preset %s is a %s model, not %s", p.Name, p.Arch, arch)
		}
		arch, h = p.Arch, p.H
		if name == "" {
			name = p.Name + "-random"
		}
	case opts.Dims != nil:
		h = *opts.Dims
		if name == "" {
			name = fmt.Sprintf("%s-e%d-l%d-random", arch, h.Embd, h.Layers)
		}
	default:
		return nil, errors.New("synth: give a preset or explicit dims")
	}
	if _, _, err := archDefaults(arch); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	if err := checkWeightType(opts.Type); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	if opts.Medium && opts.Type != ggml.Q4_K && opts.Type != ggml.Q5_K {
		return nil, fmt.Errorf("synth: the _M mix exists for Q4_K and Q5_K, not %s", opts.Type)
	}

	var vocab []KV
	if opts.VocabFrom != "" {
		src, err := Open(opts.VocabFrom)
		if err != nil {
			return nil, fmt.Errorf("synth: vocabulary: %w", err)
		}
		for _, kv := range src.KVs {
			if strings.HasPrefix(kv.Key, "tokenizer.") {
				vocab = append(vocab, kv)
			}
		}
		toks, ok := src.Strings("tokenizer.ggml.tokens")
		_ = src.Close() // the KVs were copied out of the map; they outlive it
		if !ok || len(toks) == 0 {
			return nil, fmt.Errorf("synth: vocabulary: %s has no tokenizer.ggml.tokens", opts.VocabFrom)
		}
		// The embedding must have one row per token, so the vocabulary decides the size.
		h.Vocab = len(toks)
	} else {
		if h.Vocab < placeholderMin {
			return nil, fmt.Errorf("synth: vocab %d is smaller than the %d tokens of the placeholder vocabulary", h.Vocab, placeholderMin)
		}
		vocab = placeholderVocab(h.Vocab)
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}

	p := &synthPlan{arch: arch, h: h}
	add := func(k string, v Value) { p.kvs = append(p.kvs, KV{k, v}) }
	add("general.architecture", Str(arch))
	add("general.name", Str(name))
	add("general.description", Str(fmt.Sprintf("RANDOM WEIGHTS (exo gguf synth, seed %d); not a trained model", opts.Seed)))
	add(arch+".context_length", U32(uint32(h.Context)))
	add(arch+".embedding_length", U32(uint32(h.Embd)))
	add(arch+".block_count", U32(uint32(h.Layers)))
	add(arch+".feed_forward_length", U32(uint32(h.FFN)))
	add(arch+".attention.head_count", U32(uint32(h.Heads)))
	add(arch+".attention.head_count_kv", U32(uint32(h.KVHeads)))
	if h.HeadDim*h.Heads != h.Embd {
		add(arch+".attention.key_length", U32(uint32(h.HeadDim)))
		add(arch+".attention.value_length", U32(uint32(h.HeadDim)))
	}
	add(arch+".rope.dimension_count", U32(uint32(h.HeadDim)))
	add(arch+".attention.layer_norm_rms_epsilon", F32(float32(h.RMSEps)))
	add(arch+".rope.freq_base", F32(float32(h.RopeTheta)))
	add(arch+".vocab_size", U32(uint32(h.Vocab)))
	ftype := fileType(opts.Type)
	if opts.Medium {
		ftype++ // MOSTLY_Q4_K_M = MOSTLY_Q4_K_S+1, MOSTLY_Q5_K_M = MOSTLY_Q5_K_S+1
	}
	add("general.file_type", U32(ftype))
	if opts.Type != ggml.F32 && opts.Type != ggml.F16 && opts.Type != ggml.BF16 {
		add("general.quantization_version", U32(2))
	}
	p.kvs = append(p.kvs, vocab...)

	gain := gainLlama
	if arch != "llama" {
		gain = gainQwen
	}
	e, q, kv, f := uint64(h.Embd), uint64(h.Heads*h.HeadDim), uint64(h.KVHeads*h.HeadDim), uint64(h.FFN)
	// layer is the block of the weight, -1 outside the blocks.
	weight := func(name string, layer int, in, out uint64, std float64) {
		t := opts.Type
		if opts.Medium {
			t = mediumType(t, name, layer, h, arch)
		}
		p.tensors = append(p.tensors, synthTensor{name: name, dims: []uint64{in, out}, typ: storageType(t, in), std: std})
	}
	linear := func(name string, layer int, in, out uint64) {
		weight(name, layer, in, out, gain/math.Sqrt(float64(in)))
	}
	vec := func(name string, n uint64, kind synthKind, std float64) {
		p.tensors = append(p.tensors, synthTensor{name: name, dims: []uint64{n}, typ: ggml.F32, kind: kind, std: std})
	}
	weight("token_embd.weight", -1, e, uint64(h.Vocab), embdStdScale/math.Sqrt(float64(h.Embd)))
	if h.Rope != nil {
		p.tensors = append(p.tensors, synthTensor{name: "rope_freqs.weight", dims: []uint64{uint64(h.HeadDim / 2)},
			typ: ggml.F32, kind: kindFixed, vals: llama3RopeFactors(h.HeadDim, h.RopeTheta, *h.Rope)})
	}
	for b := 0; b < h.Layers; b++ {
		pre := fmt.Sprintf("blk.%d.", b)
		vec(pre+"attn_norm.weight", e, kindNorm, normJitter)
		linear(pre+"attn_q.weight", b, e, q)
		linear(pre+"attn_k.weight", b, e, kv)
		linear(pre+"attn_v.weight", b, e, kv)
		if arch == "qwen2" {
			vec(pre+"attn_q.bias", q, kindNormal, biasStd)
			vec(pre+"attn_k.bias", kv, kindNormal, biasStd)
			vec(pre+"attn_v.bias", kv, kindNormal, biasStd)
		}
		if arch == "qwen3" {
			vec(pre+"attn_q_norm.weight", uint64(h.HeadDim), kindNorm, normJitter)
			vec(pre+"attn_k_norm.weight", uint64(h.HeadDim), kindNorm, normJitter)
		}
		linear(pre+"attn_output.weight", b, q, e)
		vec(pre+"ffn_norm.weight", e, kindNorm, normJitter)
		linear(pre+"ffn_gate.weight", b, e, f)
		linear(pre+"ffn_up.weight", b, e, f)
		linear(pre+"ffn_down.weight", b, f, e)
	}
	vec("output_norm.weight", e, kindNorm, normJitter)
	if !h.Tied {
		linear("output.weight", -1, e, uint64(h.Vocab))
	}
	return p, nil
}

// mediumType is the type llama-quantize gives the weight name (of block layer, -1 outside the
// blocks) in its Q4_K_M or Q5_K_M mix of base (llama_tensor_get_type in llama-quant.cpp, for
// the dense models synth makes): more bits where quantization error costs the most.
func mediumType(base ggml.Type, name string, layer int, h Hparams, arch string) ggml.Type {
	switch {
	case name == "output.weight" || (h.Tied && name == "token_embd.weight"):
		return ggml.Q6_K // storageType turns it into Q8_0 where rows do not hold 256-blocks
	case strings.HasSuffix(name, ".attn_v.weight"):
		if useMoreBits(layer, h.Layers) {
			return ggml.Q6_K
		}
		if arch == "llama" && h.Layers == 80 && base == ggml.Q4_K {
			// llama.cpp's 70B rule: eight query heads share each attn_v, which is small, so it
			// gets more bits.
			return ggml.Q5_K
		}
	case strings.HasSuffix(name, ".ffn_down.weight"):
		if useMoreBits(layer, h.Layers) {
			return ggml.Q6_K
		}
	}
	return base
}

// useMoreBits picks the first and last eighth of n layers and every third one between them.
func useMoreBits(layer, n int) bool {
	return layer < n/8 || layer >= 7*n/8 || (layer-n/8)%3 == 2
}

// checkWeightType refuses types that llama.cpp never stores weights in (Q8_1 and Q8_K exist only
// as activation formats).
func checkWeightType(t ggml.Type) error {
	if !t.Known() {
		return fmt.Errorf("unknown tensor type %d", uint32(t))
	}
	if t == ggml.Q8_1 || t == ggml.Q8_K {
		return fmt.Errorf("%s is an activation format, not a weight type", t)
	}
	return nil
}

// storageType is t, or llama.cpp's fallback when rows of n elements do not hold whole blocks of
// t: K-quants step down to the legacy 32-blocks of similar precision, and anything still
// incompatible becomes F16. (llama.cpp sends Q2_K/Q3_K to IQ4_NL, which this program does not
// implement; Q4_0 is the nearest legacy type.)
func storageType(t ggml.Type, n uint64) ggml.Type {
	fits := func(t ggml.Type) bool { return n%uint64(t.BlockSize()) == 0 }
	if fits(t) {
		return t
	}
	switch t {
	case ggml.Q2_K, ggml.Q3_K:
		t = ggml.Q4_0
	case ggml.Q4_K:
		t = ggml.Q5_0
	case ggml.Q5_K:
		t = ggml.Q5_1
	case ggml.Q6_K:
		t = ggml.Q8_0
	}
	if fits(t) {
		return t
	}
	return ggml.F16
}

// fileType is llama.cpp's general.file_type (enum llama_ftype) for a model quantized to t; the
// K-quants map to their "_S" mixes, the nearest description of a uniform file.
func fileType(t ggml.Type) uint32 {
	switch t {
	case ggml.F32:
		return 0
	case ggml.F16:
		return 1
	case ggml.Q4_0:
		return 2
	case ggml.Q4_1:
		return 3
	case ggml.Q8_0:
		return 7
	case ggml.Q5_0:
		return 8
	case ggml.Q5_1:
		return 9
	case ggml.Q2_K:
		return 10
	case ggml.Q3_K:
		return 11
	case ggml.Q4_K:
		return 14
	case ggml.Q5_K:
		return 16
	case ggml.Q6_K:
		return 18
	case ggml.BF16:
		return 32
	}
	return 0
}

// llama3RopeFactors computes the per-frequency divisors that Llama 3.1+ applies to RoPE, the
// values convert_hf_to_gguf.py stores as rope_freqs.weight: 1 for wavelengths shorter than the
// original context / high_freq_factor, factor for those longer than original / low_freq_factor,
// and a smooth blend between.
func llama3RopeFactors(headDim int, theta float64, s RopeScaling) []float32 {
	lowWave := float64(s.OriginalContext) / s.LowFreqFactor
	highWave := float64(s.OriginalContext) / s.HighFreqFactor
	out := make([]float32, headDim/2)
	for i := range out {
		freq := 1 / math.Pow(theta, float64(2*i)/float64(headDim))
		wave := 2 * math.Pi / freq
		switch {
		case wave < highWave:
			out[i] = 1
		case wave > lowWave:
			out[i] = float32(s.Factor)
		default:
			smooth := (float64(s.OriginalContext)/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
			out[i] = float32(1 / ((1-smooth)/s.Factor + smooth))
		}
	}
	return out
}

// chunkElems is the number of values one RNG stream produces. Streams are keyed by tensor name
// and chunk index, so chunks can be generated in parallel while the output stays independent
// of the number of CPUs.
const chunkElems = 1 << 18

func (st *synthTensor) generate(seed uint64, dst io.Writer) error {
	if st.kind == kindFixed {
		b, err := kernels.Quantize(st.typ, st.vals)
		if err != nil {
			return err
		}
		_, err = dst.Write(b)
		return err
	}
	cols := int64(st.dims[0])
	rows := int64(1)
	for _, d := range st.dims[1:] {
		rows *= int64(d)
	}
	rowsPerChunk := max(1, chunkElems/cols)
	nChunks := (rows + rowsPerChunk - 1) / rowsPerChunk
	h := fnv.New64a()
	_, _ = h.Write([]byte(st.name))
	stream := h.Sum64()

	workers := int64(runtime.GOMAXPROCS(0))
	out := make([][]byte, workers)
	errs := make([]error, workers)
	for base := int64(0); base < nChunks; base += workers {
		n := min(workers, nChunks-base)
		var wg sync.WaitGroup
		for k := int64(0); k < n; k++ {
			wg.Add(1)
			go func(k int64) {
				defer wg.Done()
				c := base + k
				r0 := c * rowsPerChunk
				r1 := min(rows, r0+rowsPerChunk)
				vals := make([]float32, (r1-r0)*cols)
				rng := rand.New(rand.NewPCG(seed, stream^uint64(c)*0x9e3779b97f4a7c15))
				for i := range vals {
					x := rng.NormFloat64() * st.std
					if st.kind == kindNorm {
						x += 1
					}
					vals[i] = float32(x)
				}
				out[k], errs[k] = kernels.Quantize(st.typ, vals)
			}(k)
		}
		wg.Wait()
		for k := int64(0); k < n; k++ {
			if errs[k] != nil {
				return errs[k]
			}
			if _, err := dst.Write(out[k]); err != nil {
				return err
			}
			out[k] = nil
		}
	}
	return nil
}

// placeholderMin is the size of the fixed part of the placeholder vocabulary: <unk>, <s>, </s>
// and the 256 byte tokens.
const placeholderMin = 3 + 256

// placeholderVocab is a SentencePiece-style ("llama") vocabulary that llama.cpp loads: <unk>,
// <s>, </s>, byte-fallback tokens <0x00>..<0xFF>, then word pieces built up letter by letter so
// that every piece can be reached by merging two shorter ones, scored so that earlier (shorter)
// pieces merge first.
func placeholderVocab(n int) []KV {
	tokens := make([]string, 0, n)
	types := make([]int32, 0, n)
	tokens = append(tokens, "<unk>", "<s>", "</s>")
	types = append(types, 2, 3, 3) // UNKNOWN, CONTROL, CONTROL
	for b := 0; b < 256; b++ {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6) // BYTE
	}
	const space = "\u2581"
	singles := []string{space}
	for c := 'a'; c <= 'z'; c++ {
		singles = append(singles, string(c))
	}
	for c := 'A'; c <= 'Z'; c++ {
		singles = append(singles, string(c))
	}
	for c := '0'; c <= '9'; c++ {
		singles = append(singles, string(c))
	}
	for _, c := range ".,;:!?'\"-()" {
		singles = append(singles, string(c))
	}
	emit := func(s string) bool {
		if len(tokens) >= n {
			return false
		}
		tokens = append(tokens, s)
		types = append(types, 1) // NORMAL
		return true
	}
	for _, s := range singles {
		if !emit(s) {
			break
		}
	}
	// Lower-case words of growing length, each also with the word-start marker.
	words := []string{""}
	for len(tokens) < n {
		var next []string
		for _, w := range words {
			for c := 'a'; c <= 'z'; c++ {
				next = append(next, w+string(c))
			}
		}
		for _, w := range next {
			if len(w) == 1 {
				if !emit(space + w) {
					break
				}
				continue
			}
			if !emit(space+w) || !emit(w) {
				break
			}
		}
		words = next
	}
	scores := make([]float32, len(tokens))
	for i := placeholderMin; i < len(tokens); i++ {
		scores[i] = -float32(i - placeholderMin)
	}
	return []KV{
		{"tokenizer.ggml.model", Str("llama")},
		{"tokenizer.ggml.pre", Str("default")},
		{"tokenizer.ggml.tokens", Strs(tokens)},
		{"tokenizer.ggml.scores", F32s(scores)},
		{"tokenizer.ggml.token_type", I32s(types)},
		{"tokenizer.ggml.bos_token_id", U32(1)},
		{"tokenizer.ggml.eos_token_id", U32(2)},
		{"tokenizer.ggml.unknown_token_id", U32(0)},
		{"tokenizer.ggml.add_bos_token", Boolean(true)},
		{"tokenizer.ggml.add_eos_token", Boolean(false)},
	}
}
