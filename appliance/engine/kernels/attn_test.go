package kernels

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The block forms equal one DotF16 (times the scale) per row, and one ScaleF16 (where the
// factor is not 1) and MadF16 per row, bit for bit: at head widths the kernels take (multiples
// of 32 and 8) and ones they leave to the per-row path, with rows further apart than wide.
func TestF16RowsMatchPerRowCalls(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	half := func(n int, scale float64) []uint16 {
		x := make([]uint16, n)
		for i := range x {
			x[i] = F32ToF16(float32(r.NormFloat64() * scale))
		}
		return x
	}
	for _, dim := range []int{8, 24, 32, 64, 128} {
		for _, n := range []int{1, 7, 64} {
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
		"mad": func() { MadF16Rows(make([]uint16, 32), make([]uint16, 100), 40, make([]float32, 3), make([]float32, 3)) },
		"ms":  func() { MadF16Rows(make([]uint16, 8), make([]uint16, 100), 8, make([]float32, 2), make([]float32, 3)) },
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
