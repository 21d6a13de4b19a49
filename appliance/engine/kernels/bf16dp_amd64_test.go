//go:build amd64 && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// bf16DPGo is the twin of dotBF16DP (n a multiple of 32): VDPBF16PS lane by lane, with the
// kernel's chunks, accumulators and reduction.
func bf16DPGo(x, y []uint16) float32 {
	var acc [2][16]float32
	nc := len(x) / 32
	for c := 0; c < nc; c++ {
		k := c & 1
		for i := range 16 {
			j := 32*c + 2*i
			a := &acc[k][i]
			*a = dpbf16Step(*a, x[j+1], y[j+1])
			*a = dpbf16Step(*a, x[j], y[j])
		}
	}
	var s [16]float32
	for i := range s {
		s[i] = acc[0][i] + acc[1][i]
	}
	var t [8]float32
	for i := range t {
		t[i] = s[i] + s[i+8]
	}
	var u [4]float32
	for i := range u {
		u[i] = t[i] + t[i+4]
	}
	return (u[0] + u[2]) + (u[1] + u[3])
}

// dpbf16Step is one of VDPBF16PS's two steps in a lane: acc + a·b rounded once to float32
// (nearest, ties to even), BF16 inputs below the normal range read as zero, a result below it
// written as zero (signs kept).
func dpbf16Step(acc float32, a, b uint16) float32 {
	p := float64(bf16DAZ(a)) * float64(bf16DAZ(b)) // exact: two 8-bit significands
	r := roundSum32(float64(acc), p)
	if r != 0 && math.Abs(float64(r)) < 0x1p-126 {
		return float32(math.Copysign(0, float64(r)))
	}
	return r
}

func bf16DAZ(v uint16) float32 {
	if v&0x7f80 == 0 {
		return math.Float32frombits(uint32(v&0x8000) << 16)
	}
	return BF16ToF32(v)
}

// roundSum32 is a+b rounded once to float32. The float64 sum may itself be rounded (its exact
// error e from TwoSum); that only matters where it lands exactly halfway between two float32
// values, and then e says which side the exact sum is on.
func roundSum32(a, b float64) float32 {
	s := a + b
	bv := s - a
	e := (a - (s - bv)) + (b - bv)
	f := float32(s)
	d := s - float64(f)
	if e == 0 || d == 0 {
		return f
	}
	g := math.Nextafter32(f, float32(math.Copysign(math.Inf(1), d)))
	if s != (float64(f)+float64(g))/2 {
		return f
	}
	if (e > 0) == (d > 0) {
		return g // the exact sum is past the halfway point, towards g
	}
	return f
}

// randBF16Row is n BF16 values: mostly normal values over a wide range of magnitudes (large
// sums cancel, small products fall below the normal range), with zeros of both signs and
// values below the normal range mixed in.
func randBF16Row(r *rand.Rand, n int) []uint16 {
	x := make([]uint16, n)
	for i := range x {
		switch r.IntN(16) {
		case 0:
			x[i] = uint16(r.IntN(2)) << 15 // ±0
		case 1:
			x[i] = uint16(r.IntN(2))<<15 | uint16(1+r.IntN(0x7f)) // below the normal range
		case 2:
			x[i] = uint16(r.IntN(2))<<15 | uint16(1+r.IntN(40))<<7 | uint16(r.IntN(128)) // tiny
		default:
			v := float32(r.NormFloat64() * math.Exp2(float64(r.IntN(24)-12)))
			x[i] = F32ToBF16(v)
		}
	}
	return x
}

// The VDPBF16PS kernels equal their twin bit for bit, on rows of every chunk count up to nine
// groups and beyond, including zeros, tiny values and values below the normal range.
func TestBF16DPMatchesTwin(t *testing.T) {
	if !cpu.X86.HasAVX512BF16 || !cpu.X86.HasAVX512BW || !cpu.X86.HasAVX512VL {
		t.Skip("this CPU has no AVX-512 BF16")
	}
	r := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{32, 64, 96, 128, 160, 192, 224, 256, 288, 1024, 2080, 4096 + 96} {
		for trial := range 8 {
			x := randBF16Row(r, n)
			var y [4][]uint16
			for c := range y {
				y[c] = randBF16Row(r, n)
			}
			stride := n + 32*trial // elements between activation rows
			act := make([]uint16, 3*stride+n)
			for c := range y {
				copy(act[c*stride:], y[c])
			}
			var out [4]float32
			dotBF16DPx4(&x[0], &act[0], 2*stride, n, &out[0])
			for c := range y {
				want := bf16DPGo(x, y[c])
				got := dotBF16DP(&x[0], &y[c][0], n)
				if math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("n=%d trial %d column %d: dotBF16DP %v (%#x), twin %v (%#x)", n, trial, c, got, math.Float32bits(got), want, math.Float32bits(want))
				}
				if math.Float32bits(out[c]) != math.Float32bits(want) {
					t.Fatalf("n=%d trial %d column %d: dotBF16DPx4 %v, twin %v", n, trial, c, out[c], want)
				}
			}
		}
	}
	// One lane, step by step: 1 in the first chunk, then in the fifth (the same accumulator)
	// 2^-24 as the odd element's product and 2^-23 as the even one's. Odd first: 1 + 2^-24 is a
	// tie and rounds to 1, and 1 + 2^-23 is exact. Even first, or both in one rounding, the
	// result would be 1 + 2^-22.
	x, y := make([]uint16, 160), make([]uint16, 160)
	x[0], y[0] = F32ToBF16(1), F32ToBF16(1)
	x[129], y[129] = F32ToBF16(0x1p-12), F32ToBF16(0x1p-12)
	x[128], y[128] = F32ToBF16(0x1p-12), F32ToBF16(0x1p-11)
	got, want := dotBF16DP(&x[0], &y[0], len(x)), bf16DPGo(x, y)
	if got != want || got != 1+0x1p-23 {
		t.Fatalf("rounding order: kernel %v, twin %v, want %v", got, want, float32(1+0x1p-23))
	}
}
