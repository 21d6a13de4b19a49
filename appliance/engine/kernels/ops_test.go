package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func close32(a float32, b float64, rel, abs float64) bool {
	return math.Abs(float64(a)-b) <= rel*math.Abs(b)+abs
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 9))
	x := randVec(r, 256, 3)
	w := randVec(r, 256, 1)
	out := make([]float32, 256)
	RMSNorm(out, x, w, 1e-5)
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	inv := 1 / math.Sqrt(ss/256+1e-5)
	for i := range x {
		if want := float64(x[i]) * inv * float64(w[i]); !close32(out[i], want, 1e-6, 1e-7) {
			t.Fatalf("element %d: %g, want %g", i, out[i], want)
		}
	}
	// In place and without weights: the result has unit mean square (eps aside).
	RMSNorm(x, x, nil, 0)
	var ms float64
	for _, v := range x {
		ms += float64(v) * float64(v)
	}
	if math.Abs(ms/256-1) > 1e-5 {
		t.Fatalf("mean square after RMSNorm without weight: %g", ms/256)
	}
	// eps keeps a zero vector finite.
	z := make([]float32, 8)
	RMSNorm(z, z, nil, 1e-6)
	for _, v := range z {
		if v != 0 {
			t.Fatalf("zero vector normalised to %g", v)
		}
	}
}

func TestSoftmax(t *testing.T) {
	x := []float32{1, 2, 3, float32(math.Inf(-1)), 1000, 999}
	Softmax(x)
	e := []float64{math.Exp(1 - 1000), math.Exp(2 - 1000), math.Exp(3 - 1000), 0, 1, math.Exp(-1)}
	var sum float64
	for _, v := range e {
		sum += v
	}
	var got float64
	for i := range x {
		if !close32(x[i], e[i]/sum, 1e-6, 1e-30) {
			t.Errorf("element %d: %g, want %g", i, x[i], e[i]/sum)
		}
		got += float64(x[i])
	}
	if x[3] != 0 {
		t.Errorf("masked entry became %g", x[3])
	}
	if math.Abs(got-1) > 1e-6 {
		t.Errorf("sum %g", got)
	}
	Softmax(nil) // no panic on empty input
}

func TestSiLUMulAdd(t *testing.T) {
	x := []float32{-100, -3, -0.5, 0, 0.5, 3, 100}
	out := make([]float32, len(x))
	SiLU(out, x)
	for i, v := range x {
		want := float64(v) / (1 + math.Exp(-float64(v)))
		if !close32(out[i], want, 1e-6, 1e-30) || math.IsNaN(float64(out[i])) {
			t.Errorf("SiLU(%g) = %g, want %g", v, out[i], want)
		}
	}
	a, b := []float32{1, 2, 3}, []float32{4, -5, 0.5}
	Mul(out[:3], a, b)
	if out[0] != 4 || out[1] != -10 || out[2] != 1.5 {
		t.Errorf("Mul: %v", out[:3])
	}
	Add(a, a, b)
	if a[0] != 5 || a[1] != -3 || a[2] != 3.5 {
		t.Errorf("Add in place: %v", a)
	}
	Scale(a, 2)
	if a[0] != 10 || a[1] != -6 || a[2] != 7 {
		t.Errorf("Scale: %v", a)
	}
	defer func() {
		if recover() == nil {
			t.Error("Mul of different lengths did not panic")
		}
	}()
	Mul(out, a, b)
}

// At a small position the cached angles are pos * base^(-2i/dims) to float32 accuracy, and
// each pair of a head is rotated by its angle: NORM pairs neighbours, NEOX pairs i with i+dims/2.
func TestRopeAnglesAndPairing(t *testing.T) {
	const headDim, dims, pos = 16, 12, 3
	for _, mode := range []RopeMode{RopeNorm, RopeNeox} {
		rope := Rope{Mode: mode, Dims: dims, Base: 10000}
		cache := make([]float32, dims)
		rope.Cache(pos, cache)
		for i := 0; i < dims/2; i++ {
			theta := pos * math.Pow(10000, -2*float64(i)/dims)
			if !close32(cache[2*i], math.Cos(theta), 0, 1e-6) || !close32(cache[2*i+1], math.Sin(theta), 0, 1e-6) {
				t.Fatalf("pair %d: cos,sin %g,%g, want %g,%g", i, cache[2*i], cache[2*i+1], math.Cos(theta), math.Sin(theta))
			}
		}
		// Two heads; put a unit vector in the first element of each pair.
		x := make([]float32, 2*headDim)
		for h := 0; h < 2; h++ {
			for i := 0; i < headDim; i++ {
				x[h*headDim+i] = float32(100*h + i + 1)
			}
		}
		orig := append([]float32(nil), x...)
		rope.Apply(x, headDim, cache)
		for h := 0; h < 2; h++ {
			o, got := orig[h*headDim:(h+1)*headDim], x[h*headDim:(h+1)*headDim]
			for i := 0; i < dims/2; i++ {
				a, b := 2*i, 2*i+1
				if mode == RopeNeox {
					a, b = i, i+dims/2
				}
				c, s := float64(cache[2*i]), float64(cache[2*i+1])
				wa := float64(o[a])*c - float64(o[b])*s
				wb := float64(o[a])*s + float64(o[b])*c
				if !close32(got[a], wa, 1e-6, 1e-5) || !close32(got[b], wb, 1e-6, 1e-5) {
					t.Fatalf("mode %d head %d pair %d: (%g,%g), want (%g,%g)", mode, h, i, got[a], got[b], wa, wb)
				}
			}
			for i := dims; i < headDim; i++ {
				if got[i] != o[i] {
					t.Fatalf("mode %d: dimension %d beyond the rotated ones changed", mode, i)
				}
			}
		}
	}
}

// The point of RoPE: q·k after rotation depends only on the distance between the positions.
func TestRopeRelativePosition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	rope := Rope{Mode: RopeNeox, Dims: 64, Base: 1e6}
	cache := make([]float32, 64)
	q, k := randVec(r, 64, 1), randVec(r, 64, 1)
	rot := func(v []float32, pos int) []float32 {
		v = append([]float32(nil), v...)
		rope.Rotate(v, 64, pos, cache)
		return v
	}
	base := dot64(rot(q, 5), rot(k, 2))
	for _, p := range []int{10, 100, 1000} {
		if got := dot64(rot(q, p+3), rot(k, p)); math.Abs(got-base) > 2e-3*absDot64(q, k) {
			t.Errorf("q@%d·k@%d = %g, q@5·k@2 = %g", p+3, p, got, base)
		}
	}
}

// Dividing every frequency by 2 (factors) or scaling positions by 1/2 (FreqScale) at position
// 2p gives exactly the angles of position p: ggml's iterative theta scales exactly by 2.
func TestRopeFactorsAndFreqScale(t *testing.T) {
	plain := Rope{Mode: RopeNorm, Dims: 32, Base: 500000}
	factors := make([]float32, 16)
	for i := range factors {
		factors[i] = 2
	}
	withFactors := plain
	withFactors.Factors = factors
	scaled := plain
	scaled.FreqScale = 0.5
	a, b, c := make([]float32, 32), make([]float32, 32), make([]float32, 32)
	for _, p := range []int{1, 7, 1234} {
		plain.Cache(p, a)
		withFactors.Cache(2*p, b)
		scaled.Cache(2*p, c)
		for i := range a {
			if a[i] != b[i] || a[i] != c[i] {
				t.Fatalf("pos %d entry %d: plain %g, factors %g, freq scale %g", p, i, a[i], b[i], c[i])
			}
		}
	}
}

// Llama 3.1 8B's rope scaling (factor 8, low 1, high 4, original context 8192, head 128, base
// 500000): wavelengths 2π·base^(2i/128) below 2048 keep factor 1 (i ≤ 28), above 8192 get 8
// (i ≥ 35), and the ones between blend smoothly and increase.
func TestLlama3RopeFactors(t *testing.T) {
	f := Llama3RopeFactors(128, 500000, 8, 1, 4, 8192)
	if len(f) != 64 {
		t.Fatalf("%d factors, want 64", len(f))
	}
	for i, v := range f {
		wavelen := 2 * math.Pi * math.Pow(500000, 2*float64(i)/128)
		switch {
		case i <= 28:
			if v != 1 {
				t.Errorf("factor %d (wavelength %.0f) = %g, want 1", i, wavelen, v)
			}
		case i >= 35:
			if v != 8 {
				t.Errorf("factor %d (wavelength %.0f) = %g, want 8", i, wavelen, v)
			}
		default:
			smooth := (8192/wavelen - 1) / (4 - 1)
			want := 1 / ((1-smooth)/8 + smooth)
			if !close32(v, want, 1e-5, 0) || v <= f[i-1] {
				t.Errorf("factor %d = %g, want %g, increasing", i, v, want)
			}
		}
	}
}

// Mul, Add and RMSNorm's scaling (the SIMD forms where the CPU has them) equal their scalar
// twins bit for bit at every length around the vector widths, with out aliasing an input, and
// carry NaN, infinities, signed zeros and subnormals as the twins do.
func TestElementwiseMatchTwins(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0,
		float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, -1e-40, math.MaxFloat32, -math.MaxFloat32}
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			if r.IntN(8) == 0 {
				v[i] = special[r.IntN(len(special))]
			} else {
				v[i] = float32(r.NormFloat64() * math.Exp(r.NormFloat64()*4))
			}
		}
		return v
	}
	same := func(name string, n int, got, want []float32) {
		t.Helper()
		for i := range want {
			g, w := got[i], want[i]
			if math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w) {
				t.Fatalf("%s n=%d: element %d %v, twin %v", name, n, i, g, w)
			}
		}
	}
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 100, 2048, 2053} {
		a, b, w := vec(n), vec(n), vec(n)
		out, want := make([]float32, n), make([]float32, n)
		Mul(out, a, b)
		mulGo(want, a, b)
		same("Mul", n, out, want)
		Add(out, a, b)
		addGo(want, a, b)
		same("Add", n, out, want)
		// In place, as the layers call them.
		inPlace := append([]float32(nil), a...)
		Add(inPlace, inPlace, b)
		same("Add in place", n, inPlace, want)
		scale := float32(r.NormFloat64())
		normScaleImpl(out, a, w, scale)
		normScaleGo(want, a, w, scale)
		same("RMSNorm scaling", n, out, want)
		if n > 0 {
			x := vec(n)
			for i := range x {
				if x[i] != x[i] || math.IsInf(float64(x[i]), 0) {
					x[i] = 1
				}
			}
			RMSNorm(out, x, w, 1e-5)
			var sum float64
			for _, v := range x {
				sum += float64(v * v)
			}
			s := 1 / float32(math.Sqrt(float64(float32(sum/float64(n))+1e-5)))
			for i, v := range x {
				want[i] = v * s * w[i]
			}
			same("RMSNorm", n, out, want)
		}
	}
}

// Rope.Apply (its SIMD forms where the CPU has them) rotates exactly as its scalar twin, in
// both pairings, for rotary widths below and at the head's, any number of heads, and inputs
// with NaN, infinities and signed zeros.
func TestRopeMatchesTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 22))
	for _, mode := range []RopeMode{RopeNorm, RopeNeox} {
		for _, dc := range []struct{ dims, headDim int }{{8, 8}, {16, 16}, {32, 48}, {64, 64}, {128, 128}, {12, 16}, {24, 24}, {80, 96}} {
			for _, heads := range []int{1, 2, 5} {
				rope := Rope{Dims: dc.dims, Mode: mode, Base: 10000, FreqScale: 1}
				cache := make([]float32, dc.dims)
				rope.Cache(r.IntN(5000), cache)
				x := make([]float32, heads*dc.headDim)
				for i := range x {
					x[i] = float32(r.NormFloat64() * 3)
					switch r.IntN(40) {
					case 0:
						x[i] = float32(math.NaN())
					case 1:
						x[i] = float32(math.Inf(1 - 2*r.IntN(2)))
					case 2:
						x[i] = float32(math.Copysign(0, -1))
					}
				}
				want := append([]float32(nil), x...)
				ropeGo(mode == RopeNeox, want, dc.headDim, dc.dims, cache)
				rope.Apply(x, dc.headDim, cache)
				for i := range x {
					g, w := x[i], want[i]
					if math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w) {
						t.Fatalf("mode %d dims %d head %d heads %d: element %d %v, twin %v", mode, dc.dims, dc.headDim, heads, i, g, w)
					}
				}
			}
		}
	}
}
