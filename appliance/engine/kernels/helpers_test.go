package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// randVec returns n values from a normal distribution with standard deviation sd, the shape of
// typical weights and activations.
func randVec(r *rand.Rand, n int, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * sd)
	}
	return v
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func absDot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) * float64(b[i]))
	}
	return s
}

// checkTwoRows runs a two-row kernel (two) on row and other, some bytes apart (row second in
// odd trials), and fails unless each row's results equal those of the four-column kernel (four)
// on that row alone.
func checkTwoRows(t *testing.T, name string, row, other []byte, trial int,
	two func(w []byte, wstride int, out *[8]float32), four func(w []byte, out *[4]float32)) {
	t.Helper()
	rb := len(row)
	wstride := rb + 2*trial
	w2 := make([]byte, wstride+rb)
	copy(w2[(trial%2)*wstride:], row)
	copy(w2[(1-trial%2)*wstride:], other)
	var out8 [8]float32
	var out [4]float32
	two(w2, wstride, &out8)
	for wr := range 2 {
		four(w2[wr*wstride:wr*wstride+rb], &out)
		for c := range out {
			if math.Float32bits(out8[4*wr+c]) != math.Float32bits(out[c]) {
				t.Fatalf("%s trial %d row %d column %d: two-row %v, four-column %v", name, trial, wr, c, out8[4*wr+c], out[c])
			}
		}
	}
}
