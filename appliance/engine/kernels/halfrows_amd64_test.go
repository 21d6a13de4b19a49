//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"golang.org/x/sys/cpu"
)

// Every F16 and BF16 rows kernel this CPU can run (halfRows and its four-stream form), whether
// or not it is the one dispatched, equals its one-column kernel bit for bit: runs of any length
// (groups of four and the rows left over), rows with a tail beyond the kernels' 32-element
// steps, and rows wider than the level-1 cache holds with the activations.
func TestHalfRowsMatchOneColumn(t *testing.T) {
	type set struct {
		name string
		g    *blockGeom
		wide func(uint16) float32
		one  vecDotFn
		k    func(x, y *uint16, ystride int, n int, out *float32)
	}
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA || !cpu.X86.HasF16C {
		t.Skip("the F16 and BF16 rows kernels need AVX2, FMA and F16C")
	}
	sets := []set{
		{"f16/avx2", &geomF16, F16ToF32, vecDotF16, f16R2x4},
		{"bf16/avx2", &geomBF16, BF16ToF32, bf16Dot(dotBF16AVX2), bf16R2x4},
	}
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL {
		sets = append(sets,
			set{"f16/avx512", &geomF16, F16ToF32, vecDotF16, dotF16x4AVX512},
			set{"bf16/avx512", &geomBF16, BF16ToF32, bf16Dot(dotBF16AVX2), dotBF16x4AVX512})
	}
	if cpu.X86.HasAVX512BF16 {
		sets = append(sets, set{"bf16/avx512bf16", &geomBF16, BF16ToF32, bf16Dot(dotBF16DP), dotBF16DPx4})
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
					// Four runs of count rows, dist apart, as striped decode walks them.
					count, dist := rows/4, rows/4+(rows%4)/3
					out4 := make([]float32, rows+1)
					out4[3*dist+count] = 42
					halfRows4(s.g, s.wide, s.k)(w, stride, count, dist, act, n, out4)
					for k := 0; k < 4; k++ {
						for i := 0; i < count; i++ {
							if got, want := out4[k*dist+i], out[k*dist+i]; math.Float32bits(got) != math.Float32bits(want) {
								t.Fatalf("four runs of %d (%d apart): row %d %v, one-column kernel %v", count, dist, k*dist+i, got, want)
							}
						}
					}
					if out4[3*dist+count] != 42 {
						t.Fatal("four runs: wrote past the results")
					}
				})
			}
		}
	}
	if fastRows[ggml.F16] == nil || fastRows4[ggml.F16] == nil {
		t.Error("no F16 rows kernels dispatched on this CPU")
	}
}
