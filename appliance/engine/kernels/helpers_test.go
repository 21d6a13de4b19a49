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

// checkPairRuns checks a vecDot2x4PairsFn against the four-column kernel, bit for bit: runs of
// one to five row pairs (rows from rows, in turn, wstride bytes apart with a gap that depends
// on the trial), their results laid out with a column stride longer than the run, and nothing
// written outside them.
func checkPairRuns(t *testing.T, name string, rows [][]byte, trial int,
	pairs func(w []byte, wstride, pairs int, out []float32, ostride int), four func(w []byte, out *[4]float32)) {
	t.Helper()
	rb := len(rows[0])
	wstride := rb + 2*trial
	for np := 1; np <= 5; np++ {
		w := make([]byte, (2*np-1)*wstride+rb)
		for r := range 2 * np {
			copy(w[r*wstride:], rows[r%len(rows)])
		}
		ostride := 2*np + 1 + trial
		out := make([]float32, 4*ostride)
		const sentinel = float32(-12345)
		for i := range out {
			out[i] = sentinel
		}
		pairs(w, wstride, np, out, ostride)
		var want [4]float32
		for r := range 2 * np {
			four(w[r*wstride:r*wstride+rb], &want)
			for c := range want {
				if got := out[c*ostride+r]; math.Float32bits(got) != math.Float32bits(want[c]) {
					t.Fatalf("%s trial %d, %d pairs: row %d column %d: run %v, four-column %v", name, trial, np, r, c, got, want[c])
				}
			}
		}
		for c := range 4 {
			for i := 2 * np; i < ostride; i++ {
				if out[c*ostride+i] != sentinel {
					t.Fatalf("%s trial %d, %d pairs: wrote column %d's slot %d past the run", name, trial, np, c, i)
				}
			}
		}
	}
}

// checkPairRunsEmpty: a run of pairs over rows of no elements writes zeros (the kernels take at
// least one 32-element step, so an empty row must not reach them).
func checkPairRunsEmpty(t *testing.T, name string, pairs func(w []byte, wstride, pairs int, out []float32, ostride int)) {
	t.Helper()
	out := make([]float32, 4*3)
	for i := range out {
		out[i] = 1
	}
	pairs(make([]byte, 8), 4, 1, out, 3)
	for c := range 4 {
		for r := range 2 {
			if out[c*3+r] != 0 {
				t.Fatalf("%s: empty rows gave %v for row %d column %d", name, out[c*3+r], r, c)
			}
		}
		if out[c*3+2] != 1 {
			t.Fatalf("%s: empty rows wrote past the run in column %d", name, c)
		}
	}
}

// dotBF16Twin is the BF16 dot of dotBF16AVX2 and dotBF16NEON32 (bf16Dot): BF16 products are
// exact in float32, so it is dotF32Go's arithmetic on the widened values, then the leftover
// elements in float64 as dotF16Go adds them.
func dotBF16Twin(row, act []byte, n int) float32 {
	a, b := make([]float32, n), make([]float32, n)
	for i := range n {
		a[i], b[i] = BF16ToF32(le.Uint16(row[2*i:])), BF16ToF32(le.Uint16(act[2*i:]))
	}
	np := n &^ 31
	var s float32
	if np > 0 {
		s = dotF32Go(a[:np], b[:np])
	}
	sum := float64(s)
	for i := np; i < n; i++ {
		sum += float64(a[i] * b[i])
	}
	return float32(sum)
}
