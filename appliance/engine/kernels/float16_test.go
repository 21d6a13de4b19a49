package kernels

import (
	"math"
	"testing"
)

// halfValue decodes a binary16 pattern from its definition, independently of the package.
func halfValue(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10)&0x1f, float64(h&0x3ff)
	switch {
	case e == 0x1f && m == 0:
		return math.Inf(int(sign))
	case e == 0x1f:
		return math.NaN()
	case e == 0:
		return sign * math.Ldexp(m, -24)
	default:
		return sign * math.Ldexp(1+m/1024, e-15)
	}
}

func TestF16ToF32AllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got, want := F16ToF32(h), halfValue(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("%#04x: got %g, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != (h&0x8000 != 0) {
			t.Fatalf("%#04x: got %g, want %g", h, got, want)
		}
	}
}

func TestF32ToF16RoundTripsEveryHalf(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		if math.IsNaN(halfValue(h)) {
			if back := F32ToF16(F16ToF32(h)); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back := F32ToF16(F16ToF32(h)); back != h {
			t.Fatalf("%#04x -> %g -> %#04x", h, F16ToF32(h), back)
		}
	}
}

// Between every two neighbouring halves, the midpoint rounds to the one with an even mantissa
// and the float32 values just beside it round to the nearer half.
func TestF32ToF16RoundsToNearestEven(t *testing.T) {
	for h := uint16(0); h < 0x7bff; h++ { // up to the largest finite half
		for _, sign := range []float32{1, -1} {
			lo, hi := F16ToF32(h)*sign, F16ToF32(h+1)*sign
			mid := float32((float64(lo) + float64(hi)) / 2) // exact: needs 12 significant bits
			even := h
			if h&1 != 0 {
				even = h + 1
			}
			s := uint16(0)
			if sign < 0 {
				s = 0x8000
			}
			if got := F32ToF16(mid); got != even|s {
				t.Fatalf("midpoint %g of %#04x,%#04x: got %#04x want %#04x", mid, h|s, (h+1)|s, got, even|s)
			}
			below := math.Nextafter32(mid, lo)
			above := math.Nextafter32(mid, hi)
			if got := F32ToF16(below); got != h|s {
				t.Fatalf("%g just inside %#04x: got %#04x", below, h|s, got)
			}
			if got := F32ToF16(above); got != (h+1)|s {
				t.Fatalf("%g just inside %#04x: got %#04x", above, (h+1)|s, got)
			}
		}
	}
}

func TestF32ToF16Extremes(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{65504, 0x7bff},                    // largest half
		{65519.996, 0x7bff},                // below the midpoint to the next binade
		{65520, 0x7c00},                    // the midpoint rounds (to even) to infinity
		{1e10, 0x7c00},                     // overflow
		{float32(math.Inf(1)), 0x7c00},     //
		{float32(math.Inf(-1)), 0xfc00},    //
		{float32(math.Ldexp(1, -24)), 1},   // smallest subnormal
		{float32(math.Ldexp(1, -25)), 0},   // half of it: tie to even (zero)
		{float32(math.Ldexp(1.5, -25)), 1}, // above the tie
		{float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, c := range cases {
		if got := F32ToF16(c.in); got != c.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if got := F32ToF16(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("NaN became %#04x", got)
	}
}

func TestBF16(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := BF16ToF32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("%#04x widened to %#08x", h, math.Float32bits(f))
		}
		if f != f { // NaN stays NaN (quietened)
			if back := F32ToBF16(f); back&0x7f80 != 0x7f80 || back&0x7f == 0 || back&0x40 == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back := F32ToBF16(f); back != h {
			t.Fatalf("%#04x round trip gave %#04x", h, back)
		}
		// The float32 halfway to the next bf16 ties to even; one ulp more rounds up.
		if h&0x7f80 != 0x7f80 && h != 0x7f7f && h != 0xff7f {
			mid := math.Float32frombits(uint32(h)<<16 | 0x8000)
			even := h
			if h&1 != 0 {
				even = h + 1
			}
			if got := F32ToBF16(mid); got != even {
				t.Fatalf("midpoint above %#04x: got %#04x want %#04x", h, got, even)
			}
			if got := F32ToBF16(math.Float32frombits(uint32(h)<<16 | 0x8001)); got != h+1 {
				t.Fatalf("just above the midpoint of %#04x: got %#04x", h, got)
			}
		}
	}
}
