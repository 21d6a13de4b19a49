//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"golang.org/x/sys/cpu"
)

// Every F16 and BF16 rows kernel this CPU can run (halfRows and its four-stream form, with and
// without a kernel of whole runs), whether or not it is the one dispatched, equals its
// one-column kernel bit for bit: runs of any length
// (groups of four and the rows left over), rows with a tail beyond the kernels' 32-element
// steps, and rows wider than the level-1 cache holds with the activations.
func TestHalfRowsMatchOneColumn(t *testing.T) {
	type set struct {
		name string
		g    *blockGeom
		wide func(uint16) float32
		one  vecDotFn
		k    halfX4Kernel
		runs halfRunsFn
	}
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA || !cpu.X86.HasF16C {
		t.Skip("the F16 and BF16 rows kernels need AVX2, FMA and F16C")
	}
	sets := []set{
		{"f16/avx2", &geomF16, F16ToF32, vecDotF16, f16R2x4, nil},
		{"bf16/avx2", &geomBF16, BF16ToF32, bf16Dot(dotBF16AVX2), bf16R2x4, nil},
		{"f16/avx2-runs", &geomF16, F16ToF32, vecDotF16, f16R2x4, dotF16R2RunsAVX2},
		{"bf16/avx2-runs", &geomBF16, BF16ToF32, bf16Dot(dotBF16AVX2), bf16R2x4, dotBF16R2RunsAVX2},
	}
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL {
		sets = append(sets,
			set{"f16/avx512", &geomF16, F16ToF32, vecDotF16, f16x4AVX512, nil},
			set{"bf16/avx512", &geomBF16, BF16ToF32, bf16Dot(dotBF16AVX2), bf16x4AVX512, nil},
			set{"f16/avx512-runs", &geomF16, F16ToF32, vecDotF16, f16x4AVX512, dotF16x4RunsAVX512},
			set{"bf16/avx512-runs", &geomBF16, BF16ToF32, bf16Dot(dotBF16AVX2), bf16x4AVX512, dotBF16x4RunsAVX512})
	}
	if cpu.X86.HasAVX512BF16 {
		sets = append(sets, set{"bf16/avx512bf16", &geomBF16, BF16ToF32, bf16Dot(dotBF16DP), bf16DPx4, nil},
			set{"bf16/avx512bf16-runs", &geomBF16, BF16ToF32, bf16Dot(dotBF16DP), bf16DPx4, dotBF16DPx4Runs})
	}
	r := rand.New(rand.NewPCG(15, 15))
	for _, s := range sets {
		for _, n := range []int{7, 32, 72, 2048, 8192} {
			for _, rows := range []int{1, 3, 4, 5, 8, 11} {
				t.Run(fmt.Sprintf("%s/n=%d/rows=%d", s.name, n, rows), func(t *testing.T) {
					stride := 2*n + 64
					w := make([]byte, rows*stride)
					for i := 0; i < rows; i++ {
						row, err := Quantize(s.g.t, randVec(r, n, 0.5))
						if err != nil {
							t.Fatal(err)
						}
						copy(w[i*stride:], row)
					}
					act := QuantizeActivations(s.g.t, randVec(r, n, 1), nil)
					out := make([]float32, rows+1)
					out[rows] = 42
					halfRows(s.g, s.wide, s.one, s.k)(w, stride, rows, act, n, out[:rows])
					for i := 0; i < rows; i++ {
						if want := s.one(w[i*stride:i*stride+2*n], act, n); math.Float32bits(out[i]) != math.Float32bits(want) {
							t.Fatalf("row %d: %v, one-column kernel %v", i, out[i], want)
						}
					}
					if out[rows] != 42 {
						t.Fatal("wrote past the results")
					}
					if rows < 4 {
						return
					}
					// Four runs of count rows, dist apart, as striped decode walks them; the
					// results between the runs and past the last are left as they were.
					count, dist := rows/4, rows/4+(rows%4)/3
					out4 := make([]float32, rows+1)
					for i := range out4 {
						out4[i] = 42
					}
					halfRows4(s.g, s.wide, s.k, s.runs)(w, stride, count, dist, act, n, out4)
					for r := range out4 {
						want := float32(42)
						if r%dist < count && r < 4*dist {
							want = out[r]
						}
						if got := out4[r]; math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("four runs of %d (%d apart): result %d %v, want %v", count, dist, r, got, want)
						}
					}
				})
			}
		}
	}
	if fastRows[ggml.F16] == nil || fastRows4[ggml.F16] == nil {
		t.Error("no F16 rows kernels dispatched on this CPU")
	}
}

// BenchmarkHalfRows4 is decode's F16 and BF16 four-stream rows kernel (halfRows4) with and
// without its kernel of whole runs, over rows of 2048 elements in the level-2 cache and from
// memory (GOMAXPROCS=1 for one core's stream).
func BenchmarkHalfRows4(b *testing.B) {
	const n = 2048
	r := rand.New(rand.NewPCG(3, 3))
	type set struct {
		name string
		g    *blockGeom
		k    halfX4Kernel
		runs halfRunsFn
	}
	sets := []set{{"f16/avx2", &geomF16, f16R2x4, dotF16R2RunsAVX2}}
	if cpu.X86.HasAVX512F {
		sets = append(sets, set{"f16/avx512", &geomF16, f16x4AVX512, dotF16x4RunsAVX512}, set{"bf16/dp", &geomBF16, bf16DPx4, dotBF16DPx4Runs})
	}
	for _, size := range []int{512 << 10, 256 << 20} {
		rows := size / (2 * n)
		buf := WeightBytes(rows * 2 * n)
		for i := range buf {
			buf[i] = byte(r.Uint32() & 0x3f)
		}
		act := QuantizeActivations(geomF16.t, randVec(r, n, 1), nil)
		out := make([]float32, rows)
		for _, s := range sets {
			for _, withRuns := range []bool{false, true} {
				var f halfRunsFn
				if withRuns {
					f = s.runs
				}
				fn := halfRows4(s.g, F16ToF32, s.k, f)
				b.Run(fmt.Sprintf("%dKiB/%s/runs=%v", size>>10, s.name, withRuns), func(b *testing.B) {
					b.SetBytes(int64(len(buf)))
					for b.Loop() {
						fn(buf, 2*n, rows/4, rows/4, act, n, out)
					}
				})
			}
		}
	}
}

// AVX-512's F16 runs of pairs by chunks (rows of f16ChunksMinN and more) equal the kernel that
// takes each pair's whole rows, bit for bit: runs longer than a call's 16 pairs, rows that
// end inside a chunk.
func TestF16ChunksMatchWholeRows(t *testing.T) {
	if !cpu.X86.HasAVX512F || !cpu.X86.HasAVX512BW || !cpu.X86.HasAVX512VL {
		t.Skip("the chunked F16 kernel needs AVX-512")
	}
	r := rand.New(rand.NewPCG(17, 17))
	for _, n := range []int{4096, 4128, 8192} {
		for _, pairs := range []int{1, 5, 16, 17, 40} {
			wstride := 2*n + 64
			w := randRows(t, r, ggml.F16, 2*pairs, n, wstride)
			ystride := 4*n + 128
			y := make([]float32, ystride) // four columns of ystride/4 floats
			for c := range 4 {
				copy(y[c*ystride/4:], randVec(r, n, 1))
			}
			ostride := 2*pairs + 3
			got, want := make([]float32, 4*ostride), make([]float32, 4*ostride)
			x := (*uint16)(unsafe.Pointer(&w[0]))
			f16F32AVX512.pairs(x, wstride, pairs, &y[0], ystride, n, &got[0], 4*ostride)
			dotF16F32R2x4Rows(x, wstride, pairs, &y[0], ystride, n, &want[0], 4*ostride)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d, %d pairs: result %d (column %d, row %d) %v, whole rows %v", n, pairs, i, i/ostride, i%ostride, got[i], want[i])
				}
			}
		}
	}
}

// The VDPBF16PS runs of rows (bf16DPPairs4: triples, then the pairs left) equal the two-row
// kernel, bit for bit: runs of every remainder by three, rows of an odd number of 32-element
// steps.
func TestBF16DPRunsMatchTwoRows(t *testing.T) {
	if !cpu.X86.HasAVX512BF16 || !cpu.X86.HasAVX512BW || !cpu.X86.HasAVX512VL {
		t.Skip("the VDPBF16PS kernels need AVX-512 BF16")
	}
	r := rand.New(rand.NewPCG(18, 18))
	for _, n := range []int{32, 2048, 4128} {
		for _, pairs := range []int{1, 2, 3, 4, 5, 16} {
			wstride := 2*n + 64
			w := randRows(t, r, ggml.BF16, 2*pairs, n, wstride)
			ystride := 2*n + 128
			act := make([]byte, 4*ystride)
			for c := range 4 {
				a, err := Quantize(ggml.BF16, randVec(r, n, 1))
				if err != nil {
					t.Fatal(err)
				}
				copy(act[c*ystride:], a)
			}
			ostride := 2*pairs + 3
			got, want := make([]float32, 4*ostride), make([]float32, 4*ostride)
			bf16DPPairs4(w, wstride, pairs, act, ystride, n, got, ostride)
			dotBF16DPR2x4Rows((*uint16)(unsafe.Pointer(&w[0])), wstride, pairs, (*uint16)(unsafe.Pointer(&act[0])), ystride, n, &want[0], 4*ostride)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d, %d pairs: result %d (column %d, row %d) %v, two-row kernel %v", n, pairs, i, i/ostride, i%ostride, got[i], want[i])
				}
			}
		}
	}
}

// randRows quantises rows random rows of n elements to ty, wstride bytes apart.
func randRows(t *testing.T, r *rand.Rand, ty ggml.Type, rows, n, wstride int) []byte {
	t.Helper()
	w := make([]byte, rows*wstride)
	for i := range rows {
		row, err := Quantize(ty, randVec(r, n, 0.5))
		if err != nil {
			t.Fatal(err)
		}
		copy(w[i*wstride:], row)
	}
	return w
}
