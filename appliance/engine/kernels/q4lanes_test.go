package kernels

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// trialOperands returns n weights of type ty (real values) and matching activations; for some
// trials with zero blocks, activations of one sign over a wide range (where an offset
// correction is at its largest), or arbitrary bytes at offsets quants[0] to quants[1] of every
// block (its quants; the scales stay finite), where quants is not zero.
func trialOperands(t *testing.T, r *rand.Rand, ty ggml.Type, n, trial int, quants [2]int) (row, act []byte) {
	t.Helper()
	w := randVec(r, n, 0.5)
	x := randVec(r, n, 2)
	switch trial % 4 {
	case 1:
		for i := range x {
			x[i] = float32(math.Abs(float64(x[i]))) * float32(1+i%7*100)
		}
	case 2:
		clear(w[:min(n, 64)])
		clear(x[min(n, 32):min(n, 96)])
	}
	row, err := Quantize(ty, w)
	if err != nil {
		t.Fatal(err)
	}
	if trial%4 == 3 && quants[1] > 0 {
		bs := ty.TypeSize()
		for b := 0; b < n/ty.BlockSize(); b++ {
			for j := quants[0]; j < quants[1]; j++ {
				row[b*bs+j] = byte(r.Uint32())
			}
		}
	}
	return row, QuantizeActivations(ty, x, nil)
}

// q4_0Operands is trialOperands for nb blocks of Q4_0 (arbitrary nibbles in trial 3).
func q4_0Operands(t *testing.T, r *rand.Rand, nb int, trial int) (row, act []byte) {
	t.Helper()
	return trialOperands(t, r, ggml.Q4_0, 32*nb, trial, [2]int{2, 18})
}

// preparedCase is how the prepared kernels of a weight type are tested: operands of n
// elements, the Go twin that every kernel equals bit for bit, and the lengths to try.
type preparedCase struct {
	operands func(t *testing.T, r *rand.Rand, n, trial int) (row, act []byte)
	twin     func(row, act, prep []byte, n int) float32
	sizes    []int
}

var preparedCases = map[ggml.Type]preparedCase{
	// Whole groups of eight blocks and a padded last group.
	ggml.Q4_0: {
		operands: func(t *testing.T, r *rand.Rand, n, trial int) ([]byte, []byte) {
			return q4_0Operands(t, r, n/32, trial)
		},
		twin:  func(row, _, prep []byte, n int) float32 { return dotQ4_0Lanes(row, prep, n/32) },
		sizes: []int{32, 64, 96, 160, 224, 256, 288, 480, 512, 544, 736, 2048, 8192},
	},
	ggml.F16: {
		operands: func(t *testing.T, r *rand.Rand, n, trial int) ([]byte, []byte) {
			return trialOperands(t, r, ggml.F16, n, trial, [2]int{})
		},
		twin: func(row, act, _ []byte, n int) float32 {
			return dotF16Go(unsafe.Slice((*uint16)(unsafe.Pointer(&row[0])), n), unsafe.Slice((*uint16)(unsafe.Pointer(&act[0])), n))
		},
		sizes: halfPreparedSizes,
	},
	ggml.BF16: {
		operands: func(t *testing.T, r *rand.Rand, n, trial int) ([]byte, []byte) {
			return trialOperands(t, r, ggml.BF16, n, trial, [2]int{})
		},
		twin:  func(row, act, _ []byte, n int) float32 { return dotBF16Twin(row, act, n) },
		sizes: halfPreparedSizes,
	},
}

// halfPreparedSizes are the lengths the 16-bit float kernels are tried on: they take whole
// steps of 32 elements (the rest is added in Go), the AVX2 ones in chunks of up to 16 steps.
var halfPreparedSizes = []int{1, 7, 31, 32, 33, 64, 100, 128, 255, 256, 512, 544, 1056, 2048, 2093}

// Every prepared kernel equals its Go twin bit for bit for any length, its four-column form
// equals it column by column, and both are within the float tolerance of the reference Dot.
func TestPreparedKernelsMatchTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	if runtime.GOARCH == "amd64" && Accelerated(ggml.Q4_0) && len(variantsPrepared) == 0 {
		t.Fatal("AVX2 without the prepared Q4_0 kernels")
	}
	t.Logf("%d prepared kernels", len(variantsPrepared))
	for _, k := range variantsPrepared {
		tc, ok := preparedCases[k.t]
		if !ok {
			t.Fatalf("%s/%s: no test case for prepared kernels of this type", k.t, k.name)
		}
		if k.pairs != nil {
			checkPairRunsEmpty(t, fmt.Sprintf("%s/%s", k.t, k.name), func(w []byte, wstride, pairs int, o []float32, ostride int) {
				k.pairs(w, wstride, pairs, nil, 0, 0, o, ostride)
			})
		}
		for _, n := range tc.sizes {
			nb := n / k.t.BlockSize()
			rb64, _ := k.t.RowSize(int64(n))
			rb := int(rb64)
			for trial := 0; trial < 8; trial++ {
				row, act := tc.operands(t, r, n, trial)
				prep := alignedBytes(nil, k.size(nb))
				k.prep(act, nb, prep)
				got, want := k.dot(row, prep, n), tc.twin(row, act, prep, n)
				if math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("%s/%s %d elements trial %d: kernel %v, twin %v", k.t, k.name, n, trial, got, want)
				}
				checkClose(t, fmt.Sprintf("%s/%s %d elements trial %d", k.t, k.name, n, trial), got, Dot(k.t, row, act, n), absScale(t, k.t, row, act, n))
				if k.minN > 0 {
					// Below minN activation rows MatMul uses the plain dot, which must agree.
					if plain := fastDots[k.t](row, act, n); math.Float32bits(plain) != math.Float32bits(got) {
						t.Fatalf("%s/%s %d elements trial %d: kernel %v, the plain dot %v", k.t, k.name, n, trial, got, plain)
					}
				}
				if k.rows != nil {
					// Several rows some bytes apart (whole groups of four and some more, for
					// the kernels that walk four rows at once), this one among them.
					nr := 3 + 6*(trial%2)
					stride := rb + 2*trial
					w := make([]byte, nr*stride)
					for i := range w {
						w[i] = byte(r.Uint32()) & 0x3f // finite fp16 scales wherever they fall
					}
					copy(w[nr/2*stride:], row)
					out := make([]float32, nr)
					k.rows(w, stride, nr, prep, n, out)
					for i, o := range out {
						if want := k.dot(w[i*stride:], prep, n); math.Float32bits(o) != math.Float32bits(want) {
							t.Fatalf("%s/%s %d elements trial %d: rows kernel row %d of %d %v, one row %v", k.t, k.name, n, trial, i, nr, o, want)
						}
					}
					if k.rows4 != nil && nr >= 4 {
						// Four runs of two rows, dist apart.
						count, dist := 2, nr/4
						out4 := make([]float32, 3*dist+count)
						k.rows4(w, stride, count, dist, prep, n, out4)
						for kk := 0; kk < 4; kk++ {
							for i := 0; i < count; i++ {
								if o := out4[kk*dist+i]; math.Float32bits(o) != math.Float32bits(out[kk*dist+i]) {
									t.Fatalf("%s/%s %d elements: four runs, row %d %v, one row %v", k.t, k.name, n, kk*dist+i, o, out[kk*dist+i])
								}
							}
						}
					}
				}
				if k.dot4 == nil {
					continue
				}
				// Four prepared rows, some padding between them, the given one in column trial%4.
				stride := k.size(nb) + 64*(trial%2)
				prep4 := alignedBytes(nil, 3*stride+k.size(nb))
				acts := make([][]byte, 4)
				for c := range acts {
					_, acts[c] = tc.operands(t, r, n, trial+c)
					if c == trial%4 {
						acts[c] = act
					}
					k.prep(acts[c], nb, prep4[c*stride:])
				}
				var out [4]float32
				k.dot4(row, prep4, stride, n, &out)
				for c := range out {
					if w := k.dot(row, prep4[c*stride:], n); math.Float32bits(out[c]) != math.Float32bits(w) {
						t.Fatalf("%s/%s %d elements trial %d column %d: four-column %v, one-column %v", k.t, k.name, n, trial, c, out[c], w)
					}
				}
				if k.dot2x4 == nil {
					continue
				}
				// Two weight rows some bytes apart, the given one second in odd trials.
				other, _ := tc.operands(t, r, n, trial+1)
				checkTwoRows(t, fmt.Sprintf("%s/%s %d elements", k.t, k.name, n), row, other, trial,
					func(w []byte, wstride int, o *[8]float32) { k.dot2x4(w, wstride, prep4, stride, n, o) },
					func(w []byte, o *[4]float32) { k.dot4(w, prep4, stride, n, o) })
				if k.pairs == nil {
					continue
				}
				third, _ := tc.operands(t, r, n, trial+2)
				checkPairRuns(t, fmt.Sprintf("%s/%s %d elements", k.t, k.name, n), [][]byte{row, other, third}, trial,
					func(w []byte, wstride, pairs int, o []float32, ostride int) {
						k.pairs(w, wstride, pairs, prep4, stride, n, o, ostride)
					},
					func(w []byte, o *[4]float32) { k.dot4(w, prep4, stride, n, o) })
			}
		}
	}
}

// The twin itself: an exact dot (power-of-two scales, small quants) comes out exact, and a row
// that ends inside a group equals the same row padded with zero blocks.
func TestQ4_0LanesTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 23))
	for _, nb := range []int{1, 7, 8, 13} {
		for trial := 0; trial < 20; trial++ {
			row, act := exactBlocks(r, ggml.Q4_0, nb, trial%5-2)
			prep := make([]byte, q4PrepBytes(nb))
			prepQ4_0Act(act, nb, prep)
			if got, want := dotQ4_0Lanes(row, prep, nb), Dot(ggml.Q4_0, row, act, 32*nb); got != want {
				t.Fatalf("%d blocks trial %d: twin %v, reference %v", nb, trial, got, want)
			}
			nbp := (nb + 7) &^ 7
			rowP := append(append([]byte(nil), row...), make([]byte, 18*(nbp-nb))...)
			actP := append(append([]byte(nil), act...), make([]byte, 34*(nbp-nb))...)
			prepP := make([]byte, q4PrepBytes(nbp))
			prepQ4_0Act(actP, nbp, prepP)
			if a, b := dotQ4_0Lanes(row, prep, nb), dotQ4_0Lanes(rowP, prepP, nbp); math.Float32bits(a) != math.Float32bits(b) {
				t.Fatalf("%d blocks trial %d: %v, padded %v", nb, trial, a, b)
			}
		}
	}
}

// fma32x rounds a·b+c once, ties included: checked against exact big.Float arithmetic on
// random operands and on sums built to land halfway between two float32 values.
func TestFMA32x(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 22))
	exact := func(a, b, c float32) float32 {
		p := new(big.Float).SetPrec(200).Mul(big.NewFloat(float64(a)), big.NewFloat(float64(b)))
		p.Add(p, big.NewFloat(float64(c)))
		f, _ := p.Float32()
		return f
	}
	for i := 0; i < 20000; i++ {
		a := float32(r.NormFloat64() * math.Exp2(float64(r.IntN(40)-20)))
		b := float32(r.NormFloat64())
		var c float32
		switch i % 3 {
		case 0:
			c = float32(r.NormFloat64() * math.Exp2(float64(r.IntN(60)-30)))
		case 1:
			// c = -(a·b rounded) plus half an ulp: a·b + c is a tiny remainder near a tie.
			pr := a * b
			c = -pr
		case 2:
			// (1 + i·2^-23)(2 - i·2^-22) = 2 - i²·2^-45: added to c = ±(2^25 + 4m) (float32 spacing 4
			// there) the float64 sum rounds to a float32 halfway point, c ± 2, which the true value
			// misses by i²·2^-45; rounding that sum again would go to even instead.
			i := 1 + r.IntN(300)
			a = 1 + float32(i)*0x1p-23
			b = 2 - float32(i)*0x1p-22
			c = float32(1<<25) + 4*float32(r.IntN(1<<20))
			if i%2 == 0 {
				c = -c - 4
			}
		}
		if got, want := fma32x(a, b, c), exact(a, b, c); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32x(%g, %g, %g) = %g, exact %g", a, b, c, got, want)
		}
	}
}

// BenchmarkPreparedKernels runs each prepared kernel on weight rows held in cache (the kernel's
// own speed; decoding streams the rows from memory): two rows against one column, four, and
// (two rows at once) four; a run of twelve rows against four.
func BenchmarkPreparedKernels(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 5))
	for _, k := range variantsPrepared {
		for _, n := range []int{2048, 8192} {
			rb, _ := k.t.RowSize(int64(n))
			w, err := Quantize(k.t, randVec(r, 12*n, 0.5)) // a run of twelve rows, the first two alone
			if err != nil {
				b.Fatal(err)
			}
			size := k.size(n / k.t.BlockSize())
			prep := alignedBytes(nil, 4*size)
			for c := 0; c < 4; c++ {
				k.prep(QuantizeActivations(k.t, randVec(r, n, 1), nil), n/k.t.BlockSize(), prep[c*size:])
			}
			b.Run(fmt.Sprintf("%s/%s/%d", k.t, k.name, n), func(b *testing.B) {
				b.SetBytes(2 * rb)
				for b.Loop() {
					k.dot(w[:rb], prep, n)
					k.dot(w[rb:], prep, n)
				}
			})
			if k.dot4 != nil {
				b.Run(fmt.Sprintf("%s/%s/%d/x4", k.t, k.name, n), func(b *testing.B) {
					var out [4]float32
					b.SetBytes(2 * rb)
					for b.Loop() {
						k.dot4(w[:rb], prep, size, n, &out)
						k.dot4(w[rb:], prep, size, n, &out)
					}
					b.ReportMetric(float64(8*n/32)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gblockcols/s")
				})
			}
			if k.dot2x4 != nil {
				b.Run(fmt.Sprintf("%s/%s/%d/2x4", k.t, k.name, n), func(b *testing.B) {
					var out [8]float32
					b.SetBytes(2 * rb)
					for b.Loop() {
						k.dot2x4(w, int(rb), prep, size, n, &out)
					}
					b.ReportMetric(float64(8*n/32)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gblockcols/s")
				})
			}
			if k.pairs != nil {
				b.Run(fmt.Sprintf("%s/%s/%d/run12", k.t, k.name, n), func(b *testing.B) {
					out := make([]float32, 4*12)
					b.SetBytes(12 * rb)
					for b.Loop() {
						k.pairs(w, int(rb), 6, prep, size, n, out, 12)
					}
					b.ReportMetric(float64(48*n/32)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gblockcols/s")
				})
			}
		}
	}
}
