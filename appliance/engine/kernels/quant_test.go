package kernels

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// rmseBound is the largest acceptable root-mean-square error of dequant(quant(x)) for standard
// normal x, per type: about 1.25 times what the reference algorithms achieve, so a broken scale
// search or bit packing fails while the reference passes.
var rmseBound = map[ggml.Type]float64{
	ggml.F32: 0, ggml.F16: 3e-4, ggml.BF16: 2.5e-3,
	ggml.Q4_0: 0.11, ggml.Q4_1: 0.098, ggml.Q5_0: 0.055, ggml.Q5_1: 0.048,
	ggml.Q8_0: 0.007, ggml.Q8_1: 0.007,
	ggml.Q2_K: 0.37, ggml.Q3_K: 0.19, ggml.Q4_K: 0.09, ggml.Q5_K: 0.046, ggml.Q6_K: 0.023, ggml.Q8_K: 0.0091,
}

func roundTrip(t *testing.T, ty ggml.Type, x []float32) []float32 {
	t.Helper()
	q, err := Quantize(ty, x)
	if err != nil {
		t.Fatalf("%s: %v", ty, err)
	}
	if want, _ := ty.RowSize(int64(len(x))); int64(len(q)) != want {
		t.Fatalf("%s: %d bytes for %d values, want %d", ty, len(q), len(x), want)
	}
	y := make([]float32, len(x))
	if err := Dequantize(ty, q, y); err != nil {
		t.Fatalf("%s: %v", ty, err)
	}
	for i, v := range y {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("%s: element %d dequantized to %v (input %v)", ty, i, v, x[i])
		}
	}
	return y
}

func rmse(x, y []float32) float64 {
	var s float64
	for i := range x {
		d := float64(x[i]) - float64(y[i])
		s += d * d
	}
	return math.Sqrt(s / float64(len(x)))
}

func TestQuantizeRoundTripError(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	x := randVec(r, 8*ggml.QK_K, 1)
	got := map[ggml.Type]float64{}
	for _, ty := range ggml.All() {
		bound, ok := rmseBound[ty]
		if !ok {
			t.Fatalf("no error bound for %s", ty)
		}
		e := rmse(x, roundTrip(t, ty, x))
		got[ty] = e
		if e > bound {
			t.Errorf("%s: rmse %.5f above %.5f", ty, e, bound)
		}
		// The error is relative: the same data at another scale quantizes equally well.
		for _, s := range []float32{100, 0.01} {
			xs := make([]float32, len(x))
			for i := range x {
				xs[i] = x[i] * s
			}
			if e := rmse(xs, roundTrip(t, ty, xs)) / float64(s); e > bound*1.05 {
				t.Errorf("%s at scale %g: relative rmse %.5f above %.5f", ty, s, e, bound*1.05)
			}
		}
	}
	// More bits must mean less error.
	for _, order := range [][]ggml.Type{
		{ggml.Q2_K, ggml.Q3_K, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K, ggml.Q8_K},
		{ggml.Q4_0, ggml.Q5_0, ggml.Q8_0},
		{ggml.Q4_1, ggml.Q5_1, ggml.Q8_1},
		{ggml.BF16, ggml.F16, ggml.F32},
	} {
		for i := 1; i < len(order); i++ {
			if got[order[i]] >= got[order[i-1]] {
				t.Errorf("%s error %.5f not below %s error %.5f", order[i], got[order[i]], order[i-1], got[order[i-1]])
			}
		}
	}
}

// The 32-element formats have a per-element worst case: half a step, or a whole step for the
// one value the symmetric 4/5-bit grids cannot reach, plus the rounding of the scale to half.
func TestQuantizeLegacyWorstCase(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	x := randVec(r, 64*32, 1)
	for _, c := range []struct {
		ty    ggml.Type
		bound func(b []float32) float32
	}{
		{ggml.Q8_0, func(b []float32) float32 { _, a := absMaxSigned(b); return a/254 + a/2048 }},
		{ggml.Q8_1, func(b []float32) float32 { _, a := absMaxSigned(b); return a/254 + a/2048 }},
		{ggml.Q4_0, func(b []float32) float32 { _, a := absMaxSigned(b); return a/8 + a/2048 }},
		{ggml.Q5_0, func(b []float32) float32 { _, a := absMaxSigned(b); return a/16 + a/2048 }},
		{ggml.Q4_1, func(b []float32) float32 { lo, hi := minMax(b); return (hi-lo)/30 + (hi-lo)/2048 + abs32(lo)/2048 }},
		{ggml.Q5_1, func(b []float32) float32 { lo, hi := minMax(b); return (hi-lo)/62 + (hi-lo)/2048 + abs32(lo)/2048 }},
	} {
		y := roundTrip(t, c.ty, x)
		for b := 0; b < len(x)/32; b++ {
			bound := c.bound(x[b*32 : b*32+32])
			for i := b * 32; i < b*32+32; i++ {
				if d := abs32(x[i] - y[i]); d > bound {
					t.Fatalf("%s element %d: %g became %g, error %g > %g", c.ty, i, x[i], y[i], d, bound)
				}
			}
		}
	}
}

// Values that lie on a format's grid come back exactly.
func TestQuantizeExactOnGrid(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const s = 1.0 / 32 // a power of two, so scales and products are exact
	grid := func(lo, hi, extreme int, offset float32) []float32 {
		x := make([]float32, 4*32)
		for b := 0; b < 4; b++ {
			for i := 0; i < 32; i++ {
				x[b*32+i] = offset + float32(lo+r.IntN(hi-lo+1))*s
			}
			at := r.IntN(32)
			x[b*32+at] = offset + float32(extreme)*s
			x[b*32+(at+1+r.IntN(31))%32] = offset + float32(lo)*s
		}
		return x
	}
	cases := map[ggml.Type][]float32{
		ggml.Q8_0: grid(-126, 126, 127, 0),
		ggml.Q8_1: grid(-126, 126, -127, 0),
		ggml.Q4_0: grid(-7, 7, -8, 0), // the extreme is the unique largest magnitude, so d = s
		ggml.Q5_0: grid(-15, 15, -16, 0),
		ggml.Q4_1: grid(0, 15, 15, -3*s),
		ggml.Q5_1: grid(0, 31, 31, 5*s),
	}
	halves := make([]float32, 256)
	for i := range halves {
		halves[i] = F16ToF32(uint16(r.IntN(0x7c00)) | uint16(r.IntN(2))<<15)
	}
	cases[ggml.F16] = halves
	bf := make([]float32, 256)
	for i := range bf {
		bf[i] = BF16ToF32(uint16(r.IntN(0x7f80)) | uint16(r.IntN(2))<<15)
	}
	cases[ggml.BF16] = bf
	for ty, x := range cases {
		y := roundTrip(t, ty, x)
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%s element %d: %g came back as %g", ty, i, x[i], y[i])
			}
		}
	}
}

func TestQuantizeZeroAndExtremeBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	n := 2 * ggml.QK_K
	for _, ty := range ggml.All() {
		// All zero: zeros back, no NaN from a zero scale.
		y := roundTrip(t, ty, make([]float32, n))
		for i, v := range y {
			if v != 0 {
				t.Fatalf("%s: zero input gave %g at %d", ty, v, i)
			}
		}
		// A zero block next to a normal one stays zero.
		x := append(make([]float32, ggml.QK_K), randVec(r, ggml.QK_K, 1)...)
		y = roundTrip(t, ty, x)
		for i := 0; i < ggml.QK_K; i++ {
			if y[i] != 0 {
				t.Fatalf("%s: zero block gave %g at %d", ty, y[i], i)
			}
		}
		// Constant blocks, negative and positive, near the top of the half range, and values so
		// small that the scale underflows: finite results of the right sign or zero.
		for _, c := range []float32{-3, 5, 30000, -30000, 1e-9} {
			x := make([]float32, n)
			for i := range x {
				x[i] = c
			}
			y := roundTrip(t, ty, x)
			for i := range y {
				if d := abs32(y[i] - c); d > abs32(c)*0.07+1e-8 {
					t.Fatalf("%s: constant %g came back as %g", ty, c, y[i])
				}
			}
		}
		// One large outlier among small values: the outlier survives within its step.
		x = randVec(r, n, 0.01)
		x[17] = 50
		y = roundTrip(t, ty, x)
		if d := abs32(y[17] - 50); d > 50*0.07 {
			t.Errorf("%s: outlier 50 came back as %g", ty, y[17])
		}
	}
}

func TestQuantizeRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		ty   ggml.Type
		x    []float32
		want string
	}{
		{ggml.Q4_0, make([]float32, 33), "multiple of the block size"},
		{ggml.Q6_K, make([]float32, 32), "multiple of the block size"},
		{ggml.Q8_0, []float32{0, float32(math.NaN())}, "element 31"},
		{ggml.Type(99), make([]float32, 32), "unknown tensor type"},
	} {
		x := c.x
		if c.ty == ggml.Q8_0 {
			x = append(make([]float32, 30), c.x...)
		}
		if _, err := Quantize(c.ty, x); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Quantize(%s, %d values) error %v, want it to mention %q", c.ty, len(x), err, c.want)
		}
	}
	if err := QuantizeInto(ggml.Q8_0, make([]float32, 32), make([]byte, 33)); err == nil {
		t.Error("QuantizeInto accepted a buffer of the wrong size")
	}
	if err := Dequantize(ggml.Q4_K, make([]byte, 100), make([]float32, 256)); err == nil || !strings.Contains(err.Error(), "need 144 bytes") {
		t.Errorf("Dequantize of a short block: %v", err)
	}
	if err := Dequantize(ggml.Q8_0, make([]byte, 34), make([]float32, 20)); err == nil {
		t.Error("Dequantize accepted a partial block")
	}
}

// The Q8_K activations carry bsums that must equal the sums of their quants.
func TestQ8KBlockSums(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	x := randVec(r, 4*ggml.QK_K, 2)
	q, _ := Quantize(ggml.Q8_K, x)
	for b := 0; b < 4; b++ {
		blk := q[b*292 : (b+1)*292]
		for j := 0; j < 16; j++ {
			s := 0
			for i := 0; i < 16; i++ {
				s += int(int8(blk[4+16*j+i]))
			}
			if got := q8kBsum(blk, j); got != s {
				t.Fatalf("block %d group %d: bsum %d, quants sum to %d", b, j, got, s)
			}
		}
	}
}
