package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// q8Matrix returns a rows×cols Q8_0 matrix of real values, with zero rows, rows of arbitrary
// quant bytes (-128 included) and rows of the extreme quants ±127/-128 (fp16 scales finite).
func q8Matrix(t testing.TB, r *rand.Rand, rows, cols int) []byte {
	t.Helper()
	w, err := Quantize(ggml.Q8_0, randVec(r, rows*cols, 0.5))
	if err != nil {
		t.Fatal(err)
	}
	nb := cols / 32
	for i := 0; i < rows; i++ {
		row := w[i*34*nb : (i+1)*34*nb]
		for b := 0; b < nb; b++ {
			blk := row[34*b : 34*b+34]
			switch i % 7 {
			case 3:
				clear(blk)
			case 5:
				for j := 2; j < 34; j++ {
					blk[j] = byte(r.Uint32())
				}
			case 6:
				for j := 2; j < 34; j++ {
					blk[j] = []byte{0x80, 0x7f, 0x81}[r.IntN(3)]
				}
			}
		}
	}
	return w
}

// q8Acts returns a Q8_0 activation row: quantized values, or (odd) arbitrary quant bytes in
// the range the quantizers write, -127..127 (TestQ8_0ActivationsNeverMinus128), with both ends
// frequent. The eight-column AVX2 kernel takes no -128 (as llama.cpp's AVX2 dot).
func q8Acts(r *rand.Rand, cols int, odd bool) []byte {
	act := QuantizeActivations(ggml.Q8_0, randVec(r, cols, 1), nil)
	if odd {
		for j := range act {
			if j%34 >= 2 {
				act[j] = byte(int8(r.IntN(255) - 127))
				if r.IntN(4) == 0 {
					act[j] = byte(int8(127 - 254*r.IntN(2)))
				}
			}
		}
	}
	return act
}

// Packing keeps every Q8_0 row: RowBytes gives back the original bytes and DequantizeRow its
// values; on CPUs with the kernels Pack takes Q8_0.
func TestPackQ8_0RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 41))
	for _, sh := range [][2]int{{1, 32}, {16, 64}, {17, 96}, {40, 256}, {17, 544}, {33, 2048}} {
		rows, cols := sh[0], sh[1]
		w := q8Matrix(t, r, rows, cols)
		p := packAs(ggml.Q8_0, w, rows, cols, nil)
		if p.stride%64 != 0 || p.stride < packedBlock8*p.nb {
			t.Fatalf("%dx%d: panel stride %d", rows, cols, p.stride)
		}
		rb := 34 * cols / 32
		got, want := make([]float32, cols), make([]float32, cols)
		for i := 0; i < rows; i++ {
			row := w[i*rb : (i+1)*rb]
			if b := p.RowBytes(i, make([]byte, rb)); string(b) != string(row) {
				t.Fatalf("%dx%d row %d: bytes differ", rows, cols, i)
			}
			if err := p.DequantizeRow(i, got); err != nil {
				t.Fatal(err)
			}
			if err := Dequantize(ggml.Q8_0, row, want); err != nil {
				t.Fatal(err)
			}
			for k := range got {
				if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
					t.Fatalf("%dx%d row %d element %d: %v, want %v", rows, cols, i, k, got[k], want[k])
				}
			}
		}
	}
	if strings.Contains(SIMD(), "avx512vnni") && Pack(ggml.Q8_0, make([]byte, 34), 1, 32) == nil {
		t.Error("no packed Q8_0 kernels on a CPU with AVX-512 VNNI")
	}
	if Pack(ggml.Q8_0, make([]byte, 34), 1, 48) != nil {
		t.Error("Pack accepted a Q8_0 row that is not whole blocks")
	}
}

// The packed Q8_0 twin equals the reference Dot bit for bit (the same integer block dots and
// the same float steps), and the kernels (one column, four streams, four and eight columns)
// equal the twin bit for bit.
func TestPackedQ8_0MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 42))
	for _, nb := range []int{1, 2, 7, 9, 17, 64} {
		n := 32 * nb
		rows := 12 * panelRows
		w := q8Matrix(t, r, rows, n)
		p := packAs(ggml.Q8_0, w, rows, n, nil)
		for trial := 0; trial < 3; trial++ {
			sz := p.actBytes()
			acts := make([][]byte, 8)
			prep := make([]byte, 8*sz)
			for c := range acts {
				acts[c] = q8Acts(r, n, trial == 2)
				p.prep(acts[c], prep[c*sz:(c+1)*sz])
			}
			ref := make([]float32, 8*rows)
			for c := range acts {
				for pi := 0; pi < rows/panelRows; pi++ {
					var twin [panelRows]float32
					p.twin(p.data[pi*p.stride:], prep[c*sz:], &twin)
					for i, v := range twin {
						ri := pi*panelRows + i
						want := Dot(ggml.Q8_0, w[ri*34*nb:(ri+1)*34*nb], acts[c], n)
						if math.Float32bits(v) != math.Float32bits(want) {
							t.Fatalf("nb %d trial %d column %d row %d: twin %v, reference %v", nb, trial, c, ri, v, want)
						}
						ref[c*rows+ri] = want
					}
				}
			}
			if got := p.Dot(rows-1, acts[2]); math.Float32bits(got) != math.Float32bits(ref[2*rows+rows-1]) {
				t.Fatalf("nb %d: Packed.Dot %v, reference %v", nb, got, ref[2*rows+rows-1])
			}
			for _, k := range packedVariants[ggml.Q8_0] {
				checkPackedKernels(t, k, p, nb, trial, prep, sz, ref)
			}
		}
	}
}

// MatMul over packed Q8_0 weights gives the file layout's outputs bit for bit (both are the
// reference Dot), for any batch, thread count and number of rows, and the fp32 path
// dequantizes the packed rows exactly.
func TestMatMulPackedQ8_0(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 43))
	for _, threads := range []int{1, 2, 3} {
		pool := NewPool(threads)
		var mm MatMul
		for _, sh := range [][3]int{{16, 64, 1}, {37, 256, 1}, {150, 512, 6}, {70, 96, 9}, {300, 256, 1}, {300, 512, 2}, {130, 512, 8}, {200, 256, 17}} {
			rows, cols, n := sh[0], sh[1], sh[2]
			shape := fmt.Sprintf("threads %d Q8_0 %dx%d N=%d", threads, rows, cols, n)
			w := q8Matrix(t, r, rows, cols)
			pk := packAs(ggml.Q8_0, w, rows, cols, nil)
			x := randVec(r, n*cols, 1)
			ab := 34 * cols / 32
			act := make([]byte, 0, n*ab)
			for j := 0; j < n; j++ {
				act = append(act, QuantizeActivations(ggml.Q8_0, x[j*cols:(j+1)*cols], nil)...)
			}
			out := make([]float32, n*(rows+2))
			file := make([]float32, n*rows)
			outF := make([]float32, n*rows)
			mm.Ops = append(mm.Ops[:0],
				MatMulOp{Type: ggml.Q8_0, Packed: pk, Rows: rows, Cols: cols, N: n, Act: act, ActStride: ab, Out: out, OutStride: rows + 2},
				MatMulOp{Type: ggml.Q8_0, W: w, Rows: rows, Cols: cols, N: n, Act: act, ActStride: ab, Out: file, OutStride: rows},
				MatMulOp{Type: ggml.Q8_0, Packed: pk, Rows: rows, Cols: cols, N: n, X: x, XStride: cols, Out: outF, OutStride: rows},
			)
			mm.Run(pool)
			scratch := make([]float32, cols)
			for j := 0; j < n; j++ {
				for i := 0; i < rows; i++ {
					row := w[i*ab : (i+1)*ab]
					want := Dot(ggml.Q8_0, row, act[j*ab:], cols)
					if got := out[j*(rows+2)+i]; math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("%s: out[%d][%d] %v, reference %v", shape, j, i, got, want)
					}
					if got := file[j*rows+i]; math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("%s: file layout out[%d][%d] %v, reference %v", shape, j, i, got, want)
					}
					if want := DotDequant(ggml.Q8_0, row, x[j*cols:(j+1)*cols], scratch); outF[j*rows+i] != want {
						t.Fatalf("%s: f32 out[%d][%d] %v, DotDequant %v", shape, j, i, outF[j*rows+i], want)
					}
				}
			}
		}
		pool.Close()
	}
	if runtime.GOARCH == "amd64" && packedFormats[ggml.Q8_0].kernels != nil {
		// Packed products allocate nothing in the steady state, decode and batch.
		w := q8Matrix(t, r, 256, 512)
		pool := NewPool(2)
		defer pool.Close()
		for _, n := range []int{1, 8} {
			act := make([]byte, 0, n*544)
			for j := 0; j < n; j++ {
				act = append(act, q8Acts(r, 512, false)...)
			}
			mm := &MatMul{Ops: []MatMulOp{{Type: ggml.Q8_0, Packed: packAs(ggml.Q8_0, w, 256, 512, nil), Rows: 256, Cols: 512, N: n, Act: act, ActStride: 544, Out: make([]float32, 256*n), OutStride: 256}}}
			mm.Run(pool)
			if a := testing.AllocsPerRun(20, func() { mm.Run(pool) }); a > 0 {
				t.Errorf("packed Q8_0 MatMul.Run, N=%d: %.1f allocations per call", n, a)
			}
		}
	}
}

// BenchmarkPackedQ8_0 times the packed Q8_0 kernels against the file layout's exact kernels
// (through MatMul, one thread) on an FFN-sized matrix, per activation row, for decode (N=1)
// and batches of 4 and 8.
func BenchmarkPackedQ8_0(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 9))
	if Pack(ggml.Q8_0, make([]byte, 34), 1, 32) == nil {
		b.Skip("no packed Q8_0 kernels on this CPU")
	}
	const rows, cols = 8192, 2048
	w := q8Matrix(b, r, rows, cols)
	pk := Pack(ggml.Q8_0, w, rows, cols)
	pool := NewPool(1)
	defer pool.Close()
	for _, n := range []int{1, 4, 8} {
		act := make([]byte, 0, n*34*cols/32)
		for j := 0; j < n; j++ {
			act = append(act, q8Acts(r, cols, false)...)
		}
		out := make([]float32, n*rows)
		for _, packed := range []bool{false, true} {
			op := MatMulOp{Type: ggml.Q8_0, W: w, Rows: rows, Cols: cols, N: n, Act: act, ActStride: 34 * cols / 32, Out: out, OutStride: rows}
			name := "file"
			if packed {
				op.W, op.Packed, name = nil, pk, "packed"
			}
			mm := &MatMul{Ops: []MatMulOp{op}}
			b.Run(fmt.Sprintf("N=%d/%s", n, name), func(b *testing.B) {
				b.SetBytes(int64(len(w)))
				for b.Loop() {
					mm.Run(pool)
				}
				b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/float64(n), "ns/col")
			})
		}
	}
}

// BenchmarkPackedQ8_0Kernels times each set of packed Q8_0 kernels per panel·block and column, on a
// matrix in the level-2 cache (compute) and one four times FFN-sized (memory, beyond the
// level-3 cache).
func BenchmarkPackedQ8_0Kernels(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 10))
	if Pack(ggml.Q8_0, make([]byte, 34), 1, 32) == nil {
		b.Skip("no packed Q8_0 kernels on this CPU")
	}
	for _, rows := range []int{256, 32768} {
		const cols = 2048
		p := Pack(ggml.Q8_0, q8Matrix(b, r, rows, cols), rows, cols)
		sz := p.actBytes()
		prep := make([]byte, 8*sz)
		for c := 0; c < 8; c++ {
			p.prep(q8Acts(r, cols, false), prep[c*sz:(c+1)*sz])
		}
		panels := rows / panelRows
		out := make([]float32, 8*rows)
		units := float64(panels * p.nb)
		for _, k := range packedVariants[ggml.Q8_0] {
			run := func(name string, cols int, f func()) {
				b.Run(fmt.Sprintf("rows=%d/%s/%s", rows, k.name, name), func(b *testing.B) {
					b.SetBytes(int64(len(p.data)))
					for b.Loop() {
						f()
					}
					b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/units/float64(cols), "ns/unit·col")
				})
			}
			run("dot", 1, func() { k.dot(p.data, p.stride, panels, p.nb, prep[:sz], out) })
			run("dot4", 4, func() { k.dot4(p.data, p.stride, panels, p.nb, prep, sz, out, rows) })
			if k.dot8 == nil {
				continue
			}
			run("dot8", 8, func() { k.dot8(p.data, p.stride, panels, p.nb, prep, sz, out, rows) })
			// Two threads on halves of the matrix: the memory shared as in a batched decode step.
			run("dot8x2", 8, func() {
				var wg sync.WaitGroup
				for h := 0; h < 2; h++ {
					wg.Go(func() {
						p0 := h * panels / 2
						k.dot8(p.data[p0*p.stride:], p.stride, panels/2, p.nb, prep, sz, out[p0*panelRows:], rows)
					})
				}
				wg.Wait()
			})
		}
	}
}
