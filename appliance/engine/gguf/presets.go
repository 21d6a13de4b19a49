package gguf

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Hparams are the dimensions of a llama-family model.
type Hparams struct {
	Vocab     int
	Embd      int
	Layers    int
	Heads     int
	KVHeads   int
	HeadDim   int
	FFN       int
	Context   int
	RopeTheta float64
	RMSEps    float64
	Tied      bool         // output projection shares token_embd (no output.weight)
	Rope      *RopeScaling // Llama 3.1-style frequency scaling, nil for none
}

// RopeScaling holds the "llama3" rope_scaling parameters of a Hugging Face config.
type RopeScaling struct {
	Factor          float64
	LowFreqFactor   float64
	HighFreqFactor  float64
	OriginalContext int
}

// Preset is a published model's architecture, for random-weight stand-ins of realistic size.
type Preset struct {
	Name string
	Arch string
	H    Hparams
}

var llama3Rope8 = &RopeScaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalContext: 8192}
var llama3Rope32 = &RopeScaling{Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalContext: 8192}

// presets follow the models' config.json files on Hugging Face.
var presets = []Preset{
	{"llama-3.2-1b", "llama", Hparams{Vocab: 128256, Embd: 2048, Layers: 16, Heads: 32, KVHeads: 8, HeadDim: 64, FFN: 8192, Context: 131072, RopeTheta: 500000, RMSEps: 1e-5, Tied: true, Rope: llama3Rope32}},
	{"llama-3.2-3b", "llama", Hparams{Vocab: 128256, Embd: 3072, Layers: 28, Heads: 24, KVHeads: 8, HeadDim: 128, FFN: 8192, Context: 131072, RopeTheta: 500000, RMSEps: 1e-5, Tied: true, Rope: llama3Rope32}},
	{"llama-3.1-8b", "llama", Hparams{Vocab: 128256, Embd: 4096, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, FFN: 14336, Context: 131072, RopeTheta: 500000, RMSEps: 1e-5, Tied: false, Rope: llama3Rope8}},
	{"llama-3.1-70b", "llama", Hparams{Vocab: 128256, Embd: 8192, Layers: 80, Heads: 64, KVHeads: 8, HeadDim: 128, FFN: 28672, Context: 131072, RopeTheta: 500000, RMSEps: 1e-5, Tied: false, Rope: llama3Rope8}},
	{"qwen2.5-0.5b", "qwen2", Hparams{Vocab: 151936, Embd: 896, Layers: 24, Heads: 14, KVHeads: 2, HeadDim: 64, FFN: 4864, Context: 32768, RopeTheta: 1000000, RMSEps: 1e-6, Tied: true}},
	{"qwen2.5-1.5b", "qwen2", Hparams{Vocab: 151936, Embd: 1536, Layers: 28, Heads: 12, KVHeads: 2, HeadDim: 128, FFN: 8960, Context: 32768, RopeTheta: 1000000, RMSEps: 1e-6, Tied: true}},
	{"qwen2.5-7b", "qwen2", Hparams{Vocab: 152064, Embd: 3584, Layers: 28, Heads: 28, KVHeads: 4, HeadDim: 128, FFN: 18944, Context: 32768, RopeTheta: 1000000, RMSEps: 1e-6, Tied: false}},
	{"qwen3-0.6b", "qwen3", Hparams{Vocab: 151936, Embd: 1024, Layers: 28, Heads: 16, KVHeads: 8, HeadDim: 128, FFN: 3072, Context: 40960, RopeTheta: 1000000, RMSEps: 1e-6, Tied: true}},
	{"qwen3-1.7b", "qwen3", Hparams{Vocab: 151936, Embd: 2048, Layers: 28, Heads: 16, KVHeads: 8, HeadDim: 128, FFN: 6144, Context: 40960, RopeTheta: 1000000, RMSEps: 1e-6, Tied: true}},
	{"qwen3-4b", "qwen3", Hparams{Vocab: 151936, Embd: 2560, Layers: 36, Heads: 32, KVHeads: 8, HeadDim: 128, FFN: 9728, Context: 40960, RopeTheta: 1000000, RMSEps: 1e-6, Tied: true}},
	{"qwen3-8b", "qwen3", Hparams{Vocab: 151936, Embd: 4096, Layers: 36, Heads: 32, KVHeads: 8, HeadDim: 128, FFN: 12288, Context: 40960, RopeTheta: 1000000, RMSEps: 1e-6, Tied: false}},
}

// Presets returns the known presets by name.
func Presets() []Preset {
	out := append([]Preset(nil), presets...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LookupPreset finds a preset by name (case-insensitive).
func LookupPreset(name string) (Preset, bool) {
	for _, p := range presets {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Preset{}, false
}

// archDefaults are what ParseDims fills in for rope theta and RMS epsilon when not given: the
// values of the family's released models.
func archDefaults(arch string) (theta, eps float64, err error) {
	switch arch {
	case "llama":
		return 500000, 1e-5, nil
	case "qwen2", "qwen3":
		return 1000000, 1e-6, nil
	}
	return 0, 0, fmt.Errorf("unsupported architecture %q (want llama, qwen2 or qwen3)", arch)
}

// ParseDims reads "embd=..,layers=..,heads=..,kv_heads=..,ffn=..,vocab=..,head_dim=.." (also
// ctx, rope_theta, eps, tied=true|false). embd, layers, heads, ffn and vocab are required;
// kv_heads defaults to heads, head_dim to embd/heads, ctx to 4096, tied to true, rope_theta and
// eps to the architecture's usual values.
func ParseDims(arch, spec string) (Hparams, error) {
	theta, eps, err := archDefaults(arch)
	if err != nil {
		return Hparams{}, err
	}
	h := Hparams{Context: 4096, RopeTheta: theta, RMSEps: eps, Tied: true}
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || v == "" {
			return Hparams{}, fmt.Errorf("dims: %q is not key=value", part)
		}
		if seen[k] {
			return Hparams{}, fmt.Errorf("dims: %s given twice", k)
		}
		seen[k] = true
		intp := map[string]*int{"embd": &h.Embd, "layers": &h.Layers, "heads": &h.Heads, "kv_heads": &h.KVHeads,
			"head_dim": &h.HeadDim, "ffn": &h.FFN, "vocab": &h.Vocab, "ctx": &h.Context}[k]
		switch {
		case intp != nil:
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return Hparams{}, fmt.Errorf("dims: %s=%s is not a positive integer", k, v)
			}
			*intp = n
		case k == "rope_theta" || k == "eps":
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || !(x > 0) {
				return Hparams{}, fmt.Errorf("dims: %s=%s is not a positive number", k, v)
			}
			if k == "eps" {
				h.RMSEps = x
			} else {
				h.RopeTheta = x
			}
		case k == "tied":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Hparams{}, fmt.Errorf("dims: tied=%s is not true or false", v)
			}
			h.Tied = b
		default:
			return Hparams{}, fmt.Errorf("dims: unknown key %q (known: embd, layers, heads, kv_heads, head_dim, ffn, vocab, ctx, rope_theta, eps, tied)", k)
		}
	}
	for _, k := range []string{"embd", "layers", "heads", "ffn", "vocab"} {
		if !seen[k] {
			return Hparams{}, fmt.Errorf("dims: %s is required", k)
		}
	}
	if !seen["kv_heads"] {
		h.KVHeads = h.Heads
	}
	if !seen["head_dim"] {
		if h.Embd%h.Heads != 0 {
			return Hparams{}, fmt.Errorf("dims: embd %d is not divisible by heads %d; give head_dim", h.Embd, h.Heads)
		}
		h.HeadDim = h.Embd / h.Heads
	}
	return h, h.Validate()
}

// Validate checks the dimensions make a model llama.cpp can build.
func (h Hparams) Validate() error {
	for _, c := range []struct {
		name string
		v    int
	}{{"vocab", h.Vocab}, {"embd", h.Embd}, {"layers", h.Layers}, {"heads", h.Heads}, {"kv_heads", h.KVHeads},
		{"head_dim", h.HeadDim}, {"ffn", h.FFN}, {"ctx", h.Context}} {
		if c.v <= 0 {
			return fmt.Errorf("dims: %s must be positive, got %d", c.name, c.v)
		}
		if c.v > 1<<24 {
			return fmt.Errorf("dims: %s %d is implausibly large", c.name, c.v)
		}
	}
	if h.Heads%h.KVHeads != 0 {
		return fmt.Errorf("dims: heads %d is not a multiple of kv_heads %d", h.Heads, h.KVHeads)
	}
	if h.HeadDim%2 != 0 {
		return fmt.Errorf("dims: head_dim %d must be even for rotary embeddings", h.HeadDim)
	}
	if !(h.RopeTheta > 0) || !(h.RMSEps > 0) {
		return fmt.Errorf("dims: rope_theta %v and eps %v must be positive", h.RopeTheta, h.RMSEps)
	}
	return nil
}

// Params is the number of weights a model of these dimensions has (biases, norms and q/k norms
// included for the architecture), for sizing and sanity checks.
func (h Hparams) Params(arch string) int64 {
	e, q, kv, f := int64(h.Embd), int64(h.Heads*h.HeadDim), int64(h.KVHeads*h.HeadDim), int64(h.FFN)
	layer := 2*e + e*q + 2*e*kv + q*e + 3*e*f
	switch arch {
	case "qwen2":
		layer += q + 2*kv
	case "qwen3":
		layer += 2 * int64(h.HeadDim)
	}
	n := int64(h.Vocab)*e + int64(h.Layers)*layer + e
	if !h.Tied {
		n += int64(h.Vocab) * e
	}
	return n
}
