// Package model runs llama-family transformers (llama, qwen2, qwen3) from GGUF files. A Stage
// owns a contiguous range of layers and reads its weights in place from the memory-mapped file,
// so a pipeline of stages on different machines each touch only their part of the model.
package model

import (
	"fmt"
	"math"

	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// RopeType selects which dimensions RoPE rotates together.
type RopeType int

const (
	// RopeNorm rotates adjacent pairs (2i, 2i+1); llama.cpp uses it for llama.
	RopeNorm RopeType = iota
	// RopeNeox rotates (i, i+dims/2); llama.cpp uses it for qwen2 and qwen3.
	RopeNeox
)

func (r RopeType) String() string {
	if r == RopeNeox {
		return "neox"
	}
	return "norm"
}

// Config holds the hyperparameters of a model as read from GGUF metadata.
type Config struct {
	Arch          string
	NLayer        int
	NEmbd         int
	NHead         int
	NHeadKV       int
	HeadDimK      int // per-head width of queries and keys
	HeadDimV      int // per-head width of values
	NFF           int
	NVocab        int
	ContextLength int // training context (n_ctx_train)
	RMSEps        float32

	RopeType      RopeType
	RopeBase      float32
	RopeDims      int     // leading dimensions of each head that RoPE rotates
	RopeFreqScale float32 // linear position scaling (1/factor of "linear" scaling; 1 otherwise)
	// RopeScaling describes Llama 3 frequency scaling when the metadata asks for it and the
	// file has no rope_freqs tensor; nil otherwise.
	RopeScaling *Llama3Scaling

	TiedEmbeddings bool // no output.weight: the classifier is token_embd
	QKVBias        bool // qwen2: attn_{q,k,v}.bias
	QKNorm         bool // qwen3: per-head RMSNorm of q and k (attn_{q,k}_norm)
}

// Llama3Scaling are the "llama3" rope scaling parameters (Llama 3.1 and later).
type Llama3Scaling struct {
	Factor         float64
	LowFreqFactor  float64
	HighFreqFactor float64
	OrigContext    int
}

// supportedArch lists the architectures whose graph this package implements.
var supportedArch = map[string]bool{"llama": true, "qwen2": true, "qwen3": true}

// ConfigFromGGUF reads the hyperparameters of f. It looks only at metadata and tensor headers,
// never at weight data.
func ConfigFromGGUF(f *gguf.File) (Config, error) {
	arch := f.Arch()
	if arch == "" {
		return Config{}, fmt.Errorf("%s: missing key general.architecture", f.Path)
	}
	if !supportedArch[arch] {
		return Config{}, fmt.Errorf("%s: architecture %q is not supported (llama, qwen2, qwen3 are)", f.Path, arch)
	}
	c := Config{Arch: arch}
	key := func(k string) string { return arch + "." + k }
	need := func(k string) (int, error) {
		v, ok := f.Uint(key(k))
		if !ok {
			if _, present := f.Get(key(k)); present {
				return 0, fmt.Errorf("%s: key %s is not a non-negative integer (per-layer arrays are not supported)", f.Path, key(k))
			}
			return 0, fmt.Errorf("%s: missing key %s", f.Path, key(k))
		}
		if v == 0 || v > math.MaxInt32 {
			return 0, fmt.Errorf("%s: key %s = %d is out of range", f.Path, key(k), v)
		}
		return int(v), nil
	}
	optional := func(k string, def int) (int, error) {
		if _, present := f.Get(key(k)); !present {
			return def, nil
		}
		return need(k)
	}
	var err error
	if c.NLayer, err = need("block_count"); err != nil {
		return c, err
	}
	if c.NEmbd, err = need("embedding_length"); err != nil {
		return c, err
	}
	if c.NFF, err = need("feed_forward_length"); err != nil {
		return c, err
	}
	if c.NHead, err = need("attention.head_count"); err != nil {
		return c, err
	}
	if c.NHeadKV, err = optional("attention.head_count_kv", c.NHead); err != nil {
		return c, err
	}
	if c.NHead%c.NHeadKV != 0 {
		return c, fmt.Errorf("%s: %s = %d is not a multiple of %s = %d", f.Path,
			key("attention.head_count"), c.NHead, key("attention.head_count_kv"), c.NHeadKV)
	}
	defHead := c.NEmbd / c.NHead
	if c.HeadDimK, err = optional("attention.key_length", defHead); err != nil {
		return c, err
	}
	if c.HeadDimV, err = optional("attention.value_length", defHead); err != nil {
		return c, err
	}
	if c.HeadDimK == 0 || c.HeadDimV == 0 {
		return c, fmt.Errorf("%s: head dimension is 0 (embedding_length %d, head_count %d)", f.Path, c.NEmbd, c.NHead)
	}
	if c.ContextLength, err = need("context_length"); err != nil {
		return c, err
	}
	eps, ok := f.Float(key("attention.layer_norm_rms_epsilon"))
	if !ok {
		return c, fmt.Errorf("%s: missing key %s", f.Path, key("attention.layer_norm_rms_epsilon"))
	}
	c.RMSEps = float32(eps)

	c.RopeType = RopeNorm
	if arch == "qwen2" || arch == "qwen3" {
		c.RopeType = RopeNeox
	}
	c.RopeBase = 10000
	if v, ok := f.Float(key("rope.freq_base")); ok {
		c.RopeBase = float32(v)
	}
	if c.RopeDims, err = optional("rope.dimension_count", c.HeadDimK); err != nil {
		return c, err
	}
	if c.RopeDims > c.HeadDimK || c.RopeDims%2 != 0 {
		return c, fmt.Errorf("%s: %s = %d must be even and at most the head dimension %d", f.Path, key("rope.dimension_count"), c.RopeDims, c.HeadDimK)
	}
	c.RopeFreqScale = 1
	if err := c.readRopeScaling(f, key); err != nil {
		return c, err
	}

	c.QKVBias = arch == "qwen2"
	c.QKNorm = arch == "qwen3"

	emb, ok := f.Tensor("token_embd.weight")
	if !ok {
		// A stage file of middle layers (gguf extract, a stage-only fetch) holds neither the
		// embeddings nor the output: the vocabulary size comes from the tokenizer, and whether
		// the output is tied does not matter to layers that compute neither.
		// The last stage of an untied model has the output projection, which gives it.
		if first, _, _, err := f.LayerRange(); err == nil && first > 0 {
			if out, hasOut := f.Tensor("output.weight"); hasOut && len(out.Dims) == 2 {
				c.NVocab = int(out.Dims[1])
				return c, nil
			}
			tokens, ok := f.Strings("tokenizer.ggml.tokens")
			if !ok || len(tokens) == 0 {
				return c, fmt.Errorf("%s: stage file without token_embd.weight needs tokenizer.ggml.tokens for the vocabulary size", f.Path)
			}
			c.NVocab = len(tokens)
			return c, nil
		}
		return c, fmt.Errorf("%s: missing tensor token_embd.weight", f.Path)
	}
	out, ok := f.Tensor("output.weight")
	c.TiedEmbeddings = !ok
	if !ok {
		out = emb
	}
	if len(out.Dims) != 2 {
		return c, fmt.Errorf("%s: tensor %s has %d dims, want 2", f.Path, out.Name, len(out.Dims))
	}
	c.NVocab = int(out.Dims[1])
	if len(emb.Dims) != 2 || int(emb.Dims[1]) != c.NVocab {
		return c, fmt.Errorf("%s: tensor token_embd.weight has dims %v, want [%d %d] to match %s", f.Path, emb.Dims, c.NEmbd, c.NVocab, out.Name)
	}
	return c, nil
}

// readRopeScaling handles rope.scaling.*: "linear" stretches positions, "llama3" rescales
// frequencies (used only when the file does not carry the precomputed rope_freqs tensor).
func (c *Config) readRopeScaling(f *gguf.File, key func(string) string) error {
	typ, _ := f.String(key("rope.scaling.type"))
	factor, hasFactor := f.Float(key("rope.scaling.factor"))
	switch typ {
	case "", "none":
		return nil
	case "linear":
		if !hasFactor || factor <= 0 {
			return fmt.Errorf("%s: rope.scaling.type linear needs a positive %s", f.Path, key("rope.scaling.factor"))
		}
		c.RopeFreqScale = float32(1 / factor)
		return nil
	case "llama3":
		if _, ok := f.Tensor("rope_freqs.weight"); ok {
			return nil
		}
		if !hasFactor || factor <= 0 {
			return fmt.Errorf("%s: rope.scaling.type llama3 needs a positive %s", f.Path, key("rope.scaling.factor"))
		}
		s := &Llama3Scaling{Factor: factor, LowFreqFactor: 1, HighFreqFactor: 4, OrigContext: 8192}
		if v, ok := f.Float(key("rope.scaling.low_freq_factor")); ok {
			s.LowFreqFactor = v
		}
		if v, ok := f.Float(key("rope.scaling.high_freq_factor")); ok {
			s.HighFreqFactor = v
		}
		if v, ok := f.Uint(key("rope.scaling.original_context_length")); ok {
			s.OrigContext = int(v)
		}
		if s.HighFreqFactor <= s.LowFreqFactor {
			return fmt.Errorf("%s: rope scaling high_freq_factor %v must exceed low_freq_factor %v", f.Path, s.HighFreqFactor, s.LowFreqFactor)
		}
		c.RopeScaling = s
		return nil
	default:
		return fmt.Errorf("%s: %s = %q is not supported (none, linear, llama3 are)", f.Path, key("rope.scaling.type"), typ)
	}
}
