package kernels

import (
	"fmt"
	"math"
)

// fp32 element-wise and normalisation operations of a llama-family layer, each written to follow
// the arithmetic of the matching ggml CPU op (ggml-cpu/ops.cpp, vec.h): where ggml sums in
// double, so do these; exp and trigonometric functions are correctly rounded float32 values,
// which glibc's expf/cosf/sinf miss by one ulp now and then (about 1% of RoPE angles).

func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

func sameLen(op string, n int, others ...int) {
	for _, m := range others {
		if m != n {
			panic(fmt.Sprintf("kernels: %s: length %d and %d differ", op, n, m))
		}
	}
}

// RMSNorm sets out = x / sqrt(mean(x²) + eps) * weight (weight may be nil for no scaling). The
// sum of squares is taken in float64 and the scale in float32, like ggml_compute_forward_rms_norm.
// out may be x.
func RMSNorm(out, x, weight []float32, eps float32) {
	sameLen("RMSNorm", len(x), len(out))
	if weight != nil {
		sameLen("RMSNorm weight", len(x), len(weight))
	}
	var sum float64
	for _, v := range x {
		sum += float64(v * v)
	}
	mean := float32(sum / float64(len(x)))
	scale := 1 / float32(math.Sqrt(float64(mean+eps)))
	if weight != nil {
		normScaleImpl(out, x, weight, scale)
		return
	}
	for i, v := range x {
		out[i] = v * scale
	}
}

// Softmax replaces x with exp(x - max) / sum, the sum taken in float64 as ggml_vec_soft_max_f32
// does. Entries of -Inf (masked positions) become 0.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	var sum float64
	for i, v := range x {
		e := expf(v - m)
		x[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range x {
		x[i] *= inv
	}
}

// SiLU sets out[i] = x[i] / (1 + exp(-x[i])) (ggml_silu_f32). out may be x.
func SiLU(out, x []float32) {
	sameLen("SiLU", len(x), len(out))
	for i, v := range x {
		out[i] = v / (1 + expf(-v))
	}
}

// Mul sets out = a * b element-wise. out may alias a or b.
func Mul(out, a, b []float32) {
	sameLen("Mul", len(a), len(b), len(out))
	mulImpl(out, a, b)
}

// Add sets out = a + b element-wise. out may alias a or b.
func Add(out, a, b []float32) {
	sameLen("Add", len(a), len(b), len(out))
	addImpl(out, a, b)
}

// Scale multiplies x by s in place.
func Scale(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

// RopeMode selects how rotary embedding pairs up the dimensions of a head; the values are
// ggml's GGML_ROPE_TYPE_* (llama uses NORM, qwen2/qwen3 NEOX).
type RopeMode int

const (
	RopeNorm RopeMode = 0 // pairs (2i, 2i+1)
	RopeNeox RopeMode = 2 // pairs (i, i+Dims/2)
)

// Rope describes rotary position embedding for heads of some size; the first Dims dimensions of
// each head are rotated, the rest pass through.
type Rope struct {
	Mode      RopeMode
	Dims      int       // rotated dimensions per head (n_rot), even
	Base      float32   // frequency base (rope_freq_base, "theta")
	FreqScale float32   // linear position scaling (1/factor); 0 means 1
	Factors   []float32 // optional per-pair frequency divisors (Llama 3 rope_freqs), len >= Dims/2
}

// Cache writes cos and sin of each rotation angle at position pos into cache[2i], cache[2i+1]
// for the Dims/2 pairs; len(cache) must be at least Dims. Angles follow ggml_rope_cache_init:
// theta starts at pos and is multiplied by base^(-2/Dims) in float32 once per pair, so rounding
// accumulates exactly as in llama.cpp.
func (r *Rope) Cache(pos int, cache []float32) {
	if r.Dims%2 != 0 || r.Dims <= 0 || len(cache) < r.Dims {
		panic(fmt.Sprintf("kernels: rope with %d dims and a cache of %d", r.Dims, len(cache)))
	}
	if r.Factors != nil && len(r.Factors) < r.Dims/2 {
		panic(fmt.Sprintf("kernels: rope with %d dims has %d frequency factors, want %d", r.Dims, len(r.Factors), r.Dims/2))
	}
	freqScale := r.FreqScale
	if freqScale == 0 {
		freqScale = 1
	}
	thetaScale := float32(math.Pow(float64(r.Base), float64(float32(-2)/float32(r.Dims))))
	theta := float32(pos)
	for i := 0; i < r.Dims/2; i++ {
		t := theta
		if r.Factors != nil {
			t /= r.Factors[i]
		}
		t *= freqScale
		cache[2*i] = float32(math.Cos(float64(t)))
		cache[2*i+1] = float32(math.Sin(float64(t)))
		theta *= thetaScale
	}
}

// Apply rotates every head of x (len(x) a multiple of headDim) with the angles in cache, as
// filled by Cache.
func (r *Rope) Apply(x []float32, headDim int, cache []float32) {
	if headDim < r.Dims || len(x)%headDim != 0 {
		panic(fmt.Sprintf("kernels: rope of %d dims over heads of %d in a vector of %d", r.Dims, headDim, len(x)))
	}
	if len(x) == 0 || r.Dims == 0 {
		return
	}
	if len(cache) < r.Dims {
		panic(fmt.Sprintf("kernels: rope of %d dims with a cache of %d", r.Dims, len(cache)))
	}
	ropeImpl(r.Mode == RopeNeox, x, headDim, r.Dims, cache)
}

// ropeGo rotates the first dims dimensions of each head of x (heads headDim apart) by the
// cos/sin pairs in cache: pairs (2i, 2i+1), or (i, i+dims/2) where neox.
func ropeGo(neox bool, x []float32, headDim, dims int, cache []float32) {
	half := dims / 2
	for h := 0; h < len(x); h += headDim {
		head := x[h : h+headDim]
		for i := 0; i < half; i++ {
			c, s := cache[2*i], cache[2*i+1]
			a, b := 2*i, 2*i+1
			if neox {
				a, b = i, i+half
			}
			x0, x1 := head[a], head[b]
			// Each product rounded on its own (the conversions forbid the fused multiply-adds
			// that Go may otherwise use on arm64), as the SIMD forms compute.
			head[a] = float32(x0*c) - float32(x1*s)
			head[b] = float32(x0*s) + float32(x1*c)
		}
	}
}

// Rotate is Cache followed by Apply for one position; cache is scratch of at least Dims floats.
func (r *Rope) Rotate(x []float32, headDim, pos int, cache []float32) {
	r.Cache(pos, cache)
	r.Apply(x, headDim, cache)
}

// Llama3RopeFactors computes the per-pair frequency divisors that llama.cpp's converter writes as
// the rope_freqs tensor for Llama 3.1-style "llama3" rope scaling, in float32 like its torch code:
// wavelengths shorter than origCtx/highFreqFactor keep their frequency, longer than
// origCtx/lowFreqFactor are divided by factor, and those in between are blended smoothly.
func Llama3RopeFactors(headDim int, base, factor, lowFreqFactor, highFreqFactor float32, origCtx int) []float32 {
	lowWavelen := float32(float64(origCtx) / float64(lowFreqFactor))
	highWavelen := float32(float64(origCtx) / float64(highFreqFactor))
	twoPi := float32(2 * math.Pi)
	out := make([]float32, 0, headDim/2)
	for k := 0; k < headDim; k += 2 {
		exp := float32(k) / float32(headDim)
		freq := 1 / float32(math.Pow(float64(base), float64(exp)))
		// torch evaluates scalar/tensor as reciprocal(tensor)*scalar.
		wavelen := (1 / freq) * twoPi
		switch {
		case wavelen < highWavelen:
			out = append(out, 1)
		case wavelen > lowWavelen:
			out = append(out, factor)
		default:
			smooth := (float32((1/wavelen)*float32(origCtx)) - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
			out = append(out, 1/((1-smooth)/factor+smooth))
		}
	}
	return out
}
