package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// actTolerance bounds |Dot - exact dot| relative to sum|w*x|: the rounding of the activations
// to the vec-dot type (half a step of amax/127 for the Q8 types).
var actTolerance = map[ggml.Type]float64{
	ggml.F32: 1e-6, ggml.F16: 1e-3, ggml.BF16: 8e-3, ggml.Q8_0: 0.02, ggml.Q8_1: 0.02, ggml.Q8_K: 0.02,
}

func TestVecDotType(t *testing.T) {
	want := map[ggml.Type]ggml.Type{
		ggml.F32: ggml.F32, ggml.F16: ggml.F16, ggml.BF16: ggml.BF16,
		ggml.Q4_0: ggml.Q8_0, ggml.Q5_0: ggml.Q8_0, ggml.Q8_0: ggml.Q8_0,
		ggml.Q4_1: ggml.Q8_1, ggml.Q5_1: ggml.Q8_1, ggml.Q8_1: ggml.Q8_1,
		ggml.Q2_K: ggml.Q8_K, ggml.Q3_K: ggml.Q8_K, ggml.Q4_K: ggml.Q8_K, ggml.Q5_K: ggml.Q8_K,
		ggml.Q6_K: ggml.Q8_K, ggml.Q8_K: ggml.Q8_K,
	}
	for _, ty := range ggml.All() {
		if got := VecDotType(ty); got != want[ty] {
			t.Errorf("VecDotType(%s) = %s, want %s", ty, got, want[ty])
		}
	}
}

// For every weight type, Dot with converted activations
//   - equals, up to float rounding, the exact dot of the dequantized weights with the
//     dequantized activations (this checks the integer decomposition: nibble unpacking, block
//     scales and mins, Q8_1's s and Q8_K's bsums), and
//   - is close to the fp32 dot of the dequantized weights with the original activations, within
//     the activation rounding.
func TestDotMatchesDequantizedDot(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 12))
	const n = 4 * ggml.QK_K
	for _, ty := range ggml.All() {
		at := VecDotType(ty)
		for trial := 0; trial < 20; trial++ {
			w := randVec(r, n, 0.5)
			x := randVec(r, n, 2)
			if trial == 1 { // activations with a zero block and a huge block
				clear(x[:ggml.QK_K])
				for i := ggml.QK_K; i < 2*ggml.QK_K; i++ {
					x[i] *= 1000
				}
			}
			row, err := Quantize(ty, w)
			if err != nil {
				t.Fatal(err)
			}
			act := QuantizeActivations(ty, x, nil)
			got := Dot(ty, row, act, n)

			wd := make([]float32, n)
			if err := Dequantize(ty, row, wd); err != nil {
				t.Fatal(err)
			}
			ad := make([]float32, n)
			if err := Dequantize(at, act, ad); err != nil {
				t.Fatal(err)
			}
			exact, scale := dot64(wd, ad), absDot64(wd, ad)
			slack := 2e-6*scale + 1e-30
			if ty == ggml.Q4_1 || ty == ggml.Q5_1 {
				// Q8_1 keeps s = d*sum(q) in half precision; the weights' min multiplies it.
				bs := ty.TypeSize()
				for b := 0; b < n/32; b++ {
					slack += math.Abs(float64(getF16(row[b*bs:], 2)*getF16(act[b*36:], 2))) / 2048
				}
			}
			if d := math.Abs(float64(got) - exact); d > slack {
				t.Fatalf("%s trial %d: Dot %g, dequantized %s·%s dot %g (diff %g, scale %g)", ty, trial, got, ty, at, exact, d, scale)
			}

			ref := DotDequant(ty, row, x, make([]float32, n))
			if d := math.Abs(float64(got) - float64(ref)); d > actTolerance[at]*absDot64(wd, x) {
				t.Fatalf("%s trial %d: Dot %g vs fp32 %g: diff %g beyond the activation rounding", ty, trial, got, ref, d)
			}
			if math.Abs(float64(ref)-dot64(wd, x)) > 1e-6*absDot64(wd, x) {
				t.Fatalf("%s trial %d: DotDequant %g, exact %g", ty, trial, ref, dot64(wd, x))
			}
		}
	}
}

// A hand-built Q4_0 row and Q8_0 activation with known integers: the dot is
// d_w * d_a * sum((q_w - 8) * q_a) per block.
func TestDotQ4_0KnownAnswer(t *testing.T) {
	row := make([]byte, 18)
	putF16(row, 0, 0.5)
	for j := 0; j < 16; j++ {
		row[2+j] = uint8(j) | uint8(15-j)<<4 // quants j-8 and 7-j
	}
	act := make([]byte, 34)
	putF16(act, 0, 0.25)
	want := 0
	for j := 0; j < 32; j++ {
		a := j - 16
		act[2+j] = uint8(int8(a))
		wq := j - 8
		if j >= 16 {
			wq = 7 - (j - 16)
		}
		want += wq * a
	}
	if got := Dot(ggml.Q4_0, row, act, 32); got != float32(want)*0.5*0.25 {
		t.Fatalf("Dot = %g, want %g", got, float32(want)*0.5*0.25)
	}
}

// Activations are rounded like llama.cpp's SIMD quantize_row_q8_0 (ties to even, multiplier
// 127/amax), while Quantize(Q8_0) is the _ref quantizer (ties away from zero).
func TestActivationRoundingDiffersFromReference(t *testing.T) {
	x := make([]float32, 32)
	x[0] = 127 // amax 127: d = 1, so values map to themselves
	x[1] = 2.5
	x[2] = -3.5
	act := QuantizeActivations(ggml.Q8_0, x, nil)
	ref, _ := Quantize(ggml.Q8_0, x)
	if int8(act[3]) != 2 || int8(act[4]) != -4 {
		t.Errorf("activations rounded 2.5, -3.5 to %d, %d; want 2, -4 (ties to even)", int8(act[3]), int8(act[4]))
	}
	if int8(ref[3]) != 3 || int8(ref[4]) != -4 {
		t.Errorf("reference rounded 2.5, -3.5 to %d, %d; want 3, -4 (away from zero)", int8(ref[3]), int8(ref[4]))
	}
	// Q8_1 activations carry s = d * sum(q).
	a1 := QuantizeActivations(ggml.Q4_1, x, nil)
	if s := getF16(a1, 2); s != 127+2-4 {
		t.Errorf("Q8_1 s = %g, want %d", s, 127+2-4)
	}
}

func TestQuantizeActivationsReusesBuffer(t *testing.T) {
	x := make([]float32, ggml.QK_K)
	buf := make([]byte, 0, 1024)
	for _, ty := range ggml.All() {
		got := QuantizeActivations(ty, x, buf)
		if &got[:1][0] != &buf[:1][0] {
			t.Errorf("%s: a %d-byte result did not reuse a buffer of capacity %d", ty, len(got), cap(buf))
		}
	}
}

func TestDotF32(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 3, 4, 7, 64, 1001} {
		a, b := randVec(r, n, 1), randVec(r, n, 1)
		if got, want := DotF32(a, b), dot64(a, b); math.Abs(float64(got)-want) > 1e-6*(absDot64(a, b)+1e-30) {
			t.Errorf("n=%d: DotF32 %g, exact %g", n, got, want)
		}
	}
}

func randMatrix(t *testing.T, r *rand.Rand, ty ggml.Type, rows, cols int) []byte {
	t.Helper()
	w, err := Quantize(ty, randVec(r, rows*cols, 0.3))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// MatVec, serial or split over workers, gives exactly the per-row Dot; MatVecF32 exactly the
// per-row DotDequant.
func TestMatVecMatchesRowDots(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for _, ty := range []ggml.Type{ggml.F32, ggml.F16, ggml.BF16, ggml.Q8_0, ggml.Q4_0, ggml.Q4_1, ggml.Q5_0, ggml.Q5_1, ggml.Q2_K, ggml.Q3_K, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K} {
		for _, shape := range [][2]int{{3, 256}, {130, 512}} { // below and above the split threshold
			rows, cols := shape[0], shape[1]
			w := randMatrix(t, r, ty, rows, cols)
			x := randVec(r, cols, 1)
			out := make([]float32, rows)
			MatVec(ty, w, rows, cols, x, out)
			act := QuantizeActivations(ty, x, nil)
			rb, _ := ty.RowSize(int64(cols))
			scratch := make([]float32, cols)
			outF := make([]float32, rows)
			MatVecF32(ty, w, rows, cols, x, outF)
			for i := 0; i < rows; i++ {
				row := w[int64(i)*rb : int64(i+1)*rb]
				if want := Dot(ty, row, act, cols); out[i] != want {
					t.Fatalf("%s %dx%d row %d: MatVec %g, Dot %g", ty, rows, cols, i, out[i], want)
				}
				if want := DotDequant(ty, row, x, scratch); outF[i] != want {
					t.Fatalf("%s %dx%d row %d: MatVecF32 %g, DotDequant %g", ty, rows, cols, i, outF[i], want)
				}
			}
		}
	}
}

func TestMatVecConcurrentCallers(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	const rows, cols = 256, 512
	w := randMatrix(t, r, ggml.Q4_K, rows, cols)
	x := randVec(r, cols, 1)
	want := make([]float32, rows)
	MatVec(ggml.Q4_K, w, rows, cols, x, want)
	done := make(chan []float32)
	for g := 0; g < 4; g++ {
		go func() {
			out := make([]float32, rows)
			for k := 0; k < 5; k++ {
				MatVec(ggml.Q4_K, w, rows, cols, x, out)
			}
			done <- out
		}()
	}
	for g := 0; g < 4; g++ {
		out := <-done
		for i := range out {
			if out[i] != want[i] {
				t.Fatalf("concurrent call: row %d %g, want %g", i, out[i], want[i])
			}
		}
	}
}

func TestMatVecSteadyStateAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	r := rand.New(rand.NewPCG(2, 2))
	for _, shape := range [][2]int{{8, 256}, {512, 256}} {
		rows, cols := shape[0], shape[1]
		for _, ty := range []ggml.Type{ggml.Q8_0, ggml.Q6_K, ggml.F16} {
			w := randMatrix(t, r, ty, rows, cols)
			x := randVec(r, cols, 1)
			out := make([]float32, rows)
			MatVec(ty, w, rows, cols, x, out) // warm the pools and workers
			MatVecF32(ty, w, rows, cols, x, out)
			if a := testing.AllocsPerRun(20, func() { MatVec(ty, w, rows, cols, x, out) }); a > 0 {
				t.Errorf("MatVec %s %dx%d: %.1f allocations per call", ty, rows, cols, a)
			}
			if a := testing.AllocsPerRun(20, func() { MatVecF32(ty, w, rows, cols, x, out) }); a > 0 {
				t.Errorf("MatVecF32 %s %dx%d: %.1f allocations per call", ty, rows, cols, a)
			}
		}
	}
}

func TestMatVecRejectsBadShapes(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	w := make([]byte, 34*4)
	mustPanic("short weights", func() { MatVec(ggml.Q8_0, w, 5, 32, make([]float32, 32), make([]float32, 5)) })
	mustPanic("input length", func() { MatVec(ggml.Q8_0, w, 4, 32, make([]float32, 31), make([]float32, 4)) })
	mustPanic("partial block", func() { MatVecF32(ggml.Q8_0, w, 4, 20, make([]float32, 20), make([]float32, 4)) })
	mustPanic("short output", func() { MatVecF32(ggml.Q8_0, w, 4, 32, make([]float32, 32), make([]float32, 3)) })
}

// BenchmarkMatVec measures the output projection of the e256 fixture model (32000×256), the
// largest matrix of a decoding step.
func BenchmarkMatVec(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const rows, cols = 32000, 256
	x := randVec(r, cols, 1)
	out := make([]float32, rows)
	for _, ty := range []ggml.Type{ggml.F32, ggml.F16, ggml.Q8_0, ggml.Q4_0, ggml.Q4_K, ggml.Q6_K} {
		w, err := Quantize(ty, randVec(r, rows*cols, 0.3))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(ty.String(), func(b *testing.B) {
			b.SetBytes(int64(len(w)))
			for b.Loop() {
				MatVec(ty, w, rows, cols, x, out)
			}
		})
		b.Run(ty.String()+"/f32", func(b *testing.B) {
			b.SetBytes(int64(len(w)))
			for b.Loop() {
				MatVecF32(ty, w, rows, cols, x, out)
			}
		})
	}
}

// The float types share one summation pattern, so converting first and calling DotF32 gives the
// very bits of the direct kernels.
func TestFloatDotsAgreeBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 1))
	for _, n := range []int{1, 6, 256, 1027} {
		for _, ty := range []ggml.Type{ggml.F32, ggml.F16, ggml.BF16} {
			row, _ := Quantize(ty, randVec(r, n, 1))
			x := randVec(r, n, 1)
			wd := make([]float32, n)
			if err := Dequantize(ty, row, wd); err != nil {
				t.Fatal(err)
			}
			if got, want := DotDequant(ty, row, x, nil), DotF32(wd, x); got != want {
				t.Errorf("%s n=%d: DotDequant %g, DotF32 of the dequantized row %g", ty, n, got, want)
			}
			act := QuantizeActivations(ty, x, nil)
			ad := make([]float32, n)
			if err := Dequantize(ty, act, ad); err != nil {
				t.Fatal(err)
			}
			if got, want := Dot(ty, row, act, n), DotF32(wd, ad); got != want {
				t.Errorf("%s n=%d: Dot %g, DotF32 of the dequantized operands %g", ty, n, got, want)
			}
		}
	}
}
