package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The block forms equal one DotF16 (times the scale) per row, and one ScaleF16 (where the
// factor is not 1) and MadF16 per row, bit for bit: at head widths the kernels take (multiples
// of 32 and 8) and ones they leave to the per-row path, with rows further apart than wide.
func TestF16RowsMatchPerRowCalls(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	half := func(n int, scale float64) []uint16 { return randHalves(r, n, scale) }
	for _, dim := range []int{8, 24, 32, 64, 128, 256, 320} {
		for _, n := range []int{1, 7, 8, 9, 23, 64} {
			stride := 3*dim + 8
			rows := half((n-1)*stride+dim, 1)
			q := half(dim, 2)

			got, want := make([]float32, n), make([]float32, n)
			DotF16Rows(got, q, rows, stride, 0.125)
			for i := range want {
				want[i] = DotF16(q, rows[i*stride:i*stride+dim]) * 0.125
			}
			if !slices.Equal(got, want) {
				t.Fatalf("dim %d n %d: DotF16Rows %v, per row %v", dim, n, got, want)
			}

			ms, vs := make([]float32, n), make([]float32, n)
			for i := range ms {
				ms[i], vs[i] = 1, float32(r.Float64())
				if i%5 == 2 {
					ms[i], vs[i] = float32(r.Float64()), 1
				}
			}
			acc := half(dim, 3)
			ref := slices.Clone(acc)
			MadF16Rows(acc, rows, stride, ms, vs)
			for i := range vs {
				if ms[i] != 1 {
					ScaleF16(ref, ms[i])
				}
				MadF16(ref, rows[i*stride:i*stride+dim], vs[i])
			}
			for i := range acc {
				if acc[i] != ref[i] {
					t.Fatalf("dim %d n %d: MadF16Rows element %d = %v, per row %v", dim, n, i, F16ToF32(acc[i]), F16ToF32(ref[i]))
				}
			}
		}
	}
}

func TestF16RowsRejectShortInput(t *testing.T) {
	for name, f := range map[string]func(){
		"dot": func() { DotF16Rows(make([]float32, 3), make([]uint16, 32), make([]uint16, 2*40+31), 40, 1) },
		"mad": func() {
			MadF16Rows(make([]uint16, 32), make([]uint16, 100), 40, make([]float32, 3), make([]float32, 3))
		},
		"ms": func() { MadF16Rows(make([]uint16, 8), make([]uint16, 100), 8, make([]float32, 2), make([]float32, 3)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// q8Rows quantizes n rows of nb blocks, stride bytes apart, with random scales; the first row
// holds ±127 everywhere and one quant of -128, the extremes of the integer dot.
func q8Rows(r *rand.Rand, n, nb, stride int) []byte {
	rows := make([]byte, (n-1)*stride+nb*q8Block)
	x := make([]float32, nb*32)
	for i := 0; i < n; i++ {
		for j := range x {
			x[j] = float32(r.NormFloat64()) * float32(1+i%4)
			if i == 0 {
				x[j] = float32(1 - 2*(j%2))
			}
		}
		QuantizeActivations(ggml.Q8_0, x, rows[i*stride:i*stride:i*stride+nb*q8Block])
		if i == 0 {
			rows[2] = 0x80
		}
	}
	return rows
}

// The Q8_0 block forms equal their Go twins bit for bit, the dots equal kernels.Dot's Q8_0
// reference, and the value sums are dequantize-then-axpy value by value, for head widths of
// whole blocks (the kernels) and a padded one (the twin).
func TestQ8_0RowsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 23))
	for _, nb := range []int{1, 2, 4} {
		for _, n := range []int{1, 9, 64} {
			stride := 3*nb*q8Block + 6
			rows := q8Rows(r, n, nb, stride)
			q := q8Rows(r, 2, nb, nb*q8Block)[nb*q8Block:]

			got, twin := make([]float32, n), make([]float32, n)
			DotQ8_0Rows(got, q, rows, stride, 0.25)
			dotQ8_0RowsGo(twin, q, rows, stride, 0.25)
			for i := range got {
				ref := Dot(ggml.Q8_0, rows[i*stride:i*stride+nb*q8Block], q, nb*32) * 0.25
				if got[i] != twin[i] || got[i] != ref {
					t.Fatalf("%d blocks, row %d: DotQ8_0Rows %v, twin %v, kernels.Dot %v", nb, i, got[i], twin[i], ref)
				}
			}

			for _, width := range []int{nb * 32, nb*32 - 8} {
				ms, vs := make([]float32, n), make([]float32, n)
				for i := range ms {
					ms[i], vs[i] = 1, float32(r.Float64())
					if i%7 == 3 {
						ms[i] = float32(r.Float64())
					}
				}
				acc, want, twinAcc := make([]float32, width), make([]float32, width), make([]float32, width)
				for i := range acc {
					acc[i] = float32(i)
				}
				copy(want, acc)
				copy(twinAcc, acc)
				MadQ8_0Rows(acc, rows, stride, ms, vs)
				madQ8_0RowsGo(twinAcc, rows, stride, ms, vs)
				deq := make([]float32, nb*32)
				for i := range vs {
					if err := Dequantize(ggml.Q8_0, rows[i*stride:i*stride+nb*q8Block], deq); err != nil {
						t.Fatal(err)
					}
					for j := range want {
						if ms[i] != 1 {
							want[j] *= ms[i]
						}
						want[j] += float32(deq[j] * vs[i])
					}
				}
				for j := range acc {
					if acc[j] != twinAcc[j] || acc[j] != want[j] {
						t.Fatalf("%d blocks, width %d: acc[%d] %v, twin %v, dequantize-then-axpy %v", nb, width, j, acc[j], twinAcc[j], want[j])
					}
				}
			}
		}
	}
}

// The group forms equal DotF16Rows and MadF16Rows per query, bit for bit: for groups of the
// size the CPU's kernels serve (F16Group) and others, at head widths the kernels take and ones
// they leave to the per-query path, each query rescaling at rows of its own.
func TestF16RowsGroupMatchPerQuery(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 22))
	half := func(n int, scale float64) []uint16 { return randHalves(r, n, scale) }
	t.Logf("F16Group() = %d", F16Group())
	for _, g := range []int{1, 3, 4} {
		for _, dim := range []int{32, 64, 96, 128, 256, 320} {
			for _, n := range []int{1, 4, 5, 7, 64} {
				stride := 8*dim + 16
				rows := half((n-1)*stride+dim, 1)
				qs := half(g*dim, 2)
				got, want := make([]float32, g*n), make([]float32, g*n)
				DotF16RowsGroup(got, g, qs, rows, stride, 0.125)
				for j := 0; j < g; j++ {
					DotF16Rows(want[j*n:(j+1)*n], qs[j*dim:(j+1)*dim], rows, stride, 0.125)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("g %d dim %d n %d: DotF16RowsGroup %v, per query %v", g, dim, n, got, want)
				}

				ms, vs := make([]float32, g*n), make([]float32, g*n)
				for i := range ms {
					ms[i], vs[i] = 1, float32(r.Float64())
					if r.IntN(4) == 0 {
						ms[i], vs[i] = float32(r.Float64()), 1
					}
				}
				accs := half(g*dim, 3)
				ref := slices.Clone(accs)
				MadF16RowsGroup(accs, g, rows, stride, ms, vs)
				for j := 0; j < g; j++ {
					MadF16Rows(ref[j*dim:(j+1)*dim], rows, stride, ms[j*n:(j+1)*n], vs[j*n:(j+1)*n])
				}
				if !slices.Equal(accs, ref) {
					t.Fatalf("g %d dim %d n %d: MadF16RowsGroup differs from MadF16Rows per query", g, dim, n)
				}
			}
		}
	}
}

// randQ8Rows returns n bytes of Q8_0 blocks (34 bytes each) with quants over the whole range
// quantizing gives (-127..127; llama.cpp's AVX2 dot, which the one-query kernel follows,
// takes no -128) and scales of either sign.
func randQ8Rows(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(int8(r.IntN(255) - 127))
	}
	for o := 0; o+q8Block <= n; o += q8Block {
		binary.LittleEndian.PutUint16(b[o:], F32ToF16(float32(r.NormFloat64()*0.05)))
	}
	return b
}

// The Q8_0 group forms equal DotQ8_0Rows and MadQ8_0Rows per query, bit for bit: for groups of
// the size the CPU's kernels serve (Q8Group) and others, at head widths the kernels take (whole
// pairs of blocks; values in 64s) and ones they leave to the per-query path, row counts with
// and without a remainder by four, each query rescaling at rows of its own.
func TestQ8_0RowsGroupMatchPerQuery(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 23))
	t.Logf("Q8Group() = %d", Q8Group())
	bits := func(x []float32) []uint32 {
		u := make([]uint32, len(x))
		for i, v := range x {
			u[i] = math.Float32bits(v)
		}
		return u
	}
	for _, g := range []int{1, 3, 4} {
		for _, nb := range []int{1, 2, 3, 4, 8} {
			for _, n := range []int{1, 3, 4, 5, 7, 64, 130} {
				// Rows a whole number of blocks apart, so that every row's scales are ones.
				qb := nb * q8Block
				stride := qb + 3*q8Block
				rows := randQ8Rows(r, (n-1)*stride+qb)
				qs := randQ8Rows(r, g*qb)
				got, want := make([]float32, g*n), make([]float32, g*n)
				DotQ8_0RowsGroup(got, g, qs, rows, stride, 0.125)
				for j := 0; j < g; j++ {
					DotQ8_0Rows(want[j*n:(j+1)*n], qs[j*qb:(j+1)*qb], rows, stride, 0.125)
				}
				if !slices.Equal(bits(got), bits(want)) {
					t.Fatalf("g %d blocks %d n %d: DotQ8_0RowsGroup %v, per query %v", g, nb, n, got, want)
				}

				dim := nb * 32
				ms, vs := make([]float32, g*n), make([]float32, g*n)
				for i := range ms {
					ms[i], vs[i] = 1, float32(r.Float64())
					if r.IntN(4) == 0 {
						ms[i], vs[i] = float32(r.Float64()), 1
					}
				}
				accs := make([]float32, g*dim)
				for i := range accs {
					accs[i] = float32(r.NormFloat64())
				}
				ref := slices.Clone(accs)
				MadQ8_0RowsGroup(accs, g, rows, stride, ms, vs)
				for j := 0; j < g; j++ {
					MadQ8_0Rows(ref[j*dim:(j+1)*dim], rows, stride, ms[j*n:(j+1)*n], vs[j*n:(j+1)*n])
				}
				if !slices.Equal(bits(accs), bits(ref)) {
					t.Fatalf("g %d blocks %d n %d: MadQ8_0RowsGroup differs from MadQ8_0Rows per query", g, nb, n)
				}
			}
		}
	}
}

// perRowQuery returns a sub-benchmark runner reporting ns per row and query of rowQueries.
func perRowQuery(b *testing.B, rowQueries int) func(name string, f func()) {
	return func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				f()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rowQueries), "ns/row·query")
		})
	}
}

// BenchmarkF16Rows is one attention block (64 cached positions, head width 64) for the four
// query heads of a grouped-query group: DotF16Rows and MadF16Rows per query against the group
// forms. ns/row·query is per position and query head.
func BenchmarkF16Rows(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const g, dim, n, stride = 4, 64, 64, 512
	rows := make([]uint16, n*stride)
	for i := range rows {
		rows[i] = F32ToF16(float32(r.NormFloat64()))
	}
	qs := make([]uint16, g*dim)
	for i := range qs {
		qs[i] = F32ToF16(float32(r.NormFloat64()))
	}
	out, accs := make([]float32, g*n), make([]uint16, g*dim)
	ms, vs := make([]float32, g*n), make([]float32, g*n)
	for i := range ms {
		ms[i], vs[i] = 1, 0.01
	}
	run := perRowQuery(b, g*n)
	run("dot/per-query", func() {
		for j := 0; j < g; j++ {
			DotF16Rows(out[j*n:(j+1)*n], qs[j*dim:(j+1)*dim], rows, stride, 0.125)
		}
	})
	run("dot/group", func() { DotF16RowsGroup(out, g, qs, rows, stride, 0.125) })
	run("mad/per-query", func() {
		for j := 0; j < g; j++ {
			MadF16Rows(accs[j*dim:(j+1)*dim], rows, stride, ms[j*n:(j+1)*n], vs[j*n:(j+1)*n])
		}
	})
	run("mad/group", func() { MadF16RowsGroup(accs, g, rows, stride, ms, vs) })
}

// BenchmarkQ8_0Rows is BenchmarkF16Rows over a Q8_0 cache: one block of 64 cached positions
// (head width 64) for the four query heads of a group, per query against the group forms.
func BenchmarkQ8_0Rows(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const g, dim, n = 4, 64, 64
	const qb = dim / 32 * q8Block
	const stride = 8 * qb
	rows := randQ8Rows(r, n*stride)
	qs := randQ8Rows(r, g*qb)
	out, accs := make([]float32, g*n), make([]float32, g*dim)
	ms, vs := make([]float32, g*n), make([]float32, g*n)
	for i := range ms {
		ms[i], vs[i] = 1, 0.01
	}
	run := perRowQuery(b, g*n)
	run("dot/per-query", func() {
		for j := 0; j < g; j++ {
			DotQ8_0Rows(out[j*n:(j+1)*n], qs[j*qb:(j+1)*qb], rows, stride, 0.125)
		}
	})
	run("dot/group", func() { DotQ8_0RowsGroup(out, g, qs, rows, stride, 0.125) })
	run("mad/per-query", func() {
		for j := 0; j < g; j++ {
			MadQ8_0Rows(accs[j*dim:(j+1)*dim], rows, stride, ms[j*n:(j+1)*n], vs[j*n:(j+1)*n])
		}
	})
	run("mad/group", func() { MadQ8_0RowsGroup(accs, g, rows, stride, ms, vs) })
}

// BenchmarkF16RowsDepth is a decode step's attention reads at a depth of 4096 in a
// Llama-3.2-1B-shaped model (16 layers, 8 KV heads of width 64, four query heads each; 128 MiB
// of keys and values, read from memory), with the cache laid out as the model's Seq does (each
// head's positions together: "by-head") and with each position's heads together ("by-position",
// the layout before, which strides every head's read past the other heads'). ns/pos·query is
// per position and query head.
func BenchmarkF16RowsDepth(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const g, dim, heads, layers, ctx = 4, 64, 8, 16, 4096
	caches := make([][]uint16, layers)
	for l := range caches {
		caches[l] = randHalves(r, 2*ctx*heads*dim, 1)
	}
	qs := randHalves(r, g*dim, 1)
	out, accs := make([]float32, g*64), make([]uint16, g*dim)
	ms, vs := make([]float32, g*64), make([]float32, g*64)
	for i := range ms {
		ms[i], vs[i] = 1, 0.001
	}
	for _, byHead := range []bool{true, false} {
		name := "by-position"
		if byHead {
			name = "by-head"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				for _, c := range caches {
					keys, vals := c[:ctx*heads*dim], c[ctx*heads*dim:]
					for h := 0; h < heads; h++ {
						at, stride := func(t int) int { return t*heads*dim + h*dim }, heads*dim
						if byHead {
							at, stride = func(t int) int { return (h*ctx + t) * dim }, dim
						}
						for t0 := 0; t0 < ctx; t0 += 64 {
							DotF16RowsGroup(out, g, qs, keys[at(t0):], stride, 0.125)
							MadF16RowsGroup(accs, g, vals[at(t0):], stride, ms, vs)
						}
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(layers*heads*ctx*g), "ns/pos·query")
		})
	}
}

// randHalves returns n F16 values of N(0, scale²).
func randHalves(r *rand.Rand, n int, scale float64) []uint16 {
	x := make([]uint16, n)
	for i := range x {
		x[i] = F32ToF16(float32(r.NormFloat64() * scale))
	}
	return x
}
