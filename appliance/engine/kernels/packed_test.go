package kernels

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// packedTypes are the types Pack handles.
var packedTypes = []ggml.Type{ggml.Q4_0, ggml.Q4_1, ggml.Q5_0, ggml.Q5_1, ggml.Q2_K, ggml.Q3_K, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K}

// q4Matrix returns a rows×cols matrix of a packed type of real values, some rows zero and some
// with arbitrary quant bytes (and for the K-quants arbitrary scale and min bytes; fp16 scales
// kept finite).
func q4Matrix(t *testing.T, r *rand.Rand, ty ggml.Type, rows, cols int) []byte {
	t.Helper()
	w, err := Quantize(ty, randVec(r, rows*cols, 0.5))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := ty.RowSize(int64(cols))
	bs := ty.TypeSize()
	first, last := 2, ty.TypeSize() // the arbitrary bytes: all but the fp16 scales
	switch ty {
	case ggml.Q4_K, ggml.Q5_K, ggml.Q4_1, ggml.Q5_1:
		first = 4
	case ggml.Q6_K:
		first, last = 0, 208
	case ggml.Q3_K:
		first, last = 0, 108
	case ggml.Q2_K:
		first, last = 0, 80
	}
	for i := 0; i < rows; i++ {
		row := w[i*int(rb) : (i+1)*int(rb)]
		switch i % 7 {
		case 3:
			clear(row)
		case 5:
			for b := 0; b < len(row)/bs; b++ {
				for j := first; j < last; j++ {
					row[b*bs+j] = byte(r.Uint32())
				}
			}
		}
	}
	return w
}

// q4_0Matrix is q4Matrix for Q4_0.
func q4_0Matrix(t *testing.T, r *rand.Rand, rows, cols int) []byte {
	return q4Matrix(t, r, ggml.Q4_0, rows, cols)
}

// packAny is Pack without the check of the kernels (for the twins everywhere).
func packAny(ty ggml.Type, w []byte, rows, cols int) *Packed { return packAs(ty, w, rows, cols, nil) }

// Packing keeps every row: RowBytes gives back the original bytes and DequantizeRow its values.
func TestPackRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 31))
	for _, sh := range []struct {
		ty         ggml.Type
		rows, cols int
	}{{ggml.Q4_0, 1, 32}, {ggml.Q4_0, 16, 64}, {ggml.Q4_0, 17, 96}, {ggml.Q4_0, 40, 256}, {ggml.Q4_0, 17, 544}, {ggml.Q5_0, 1, 32}, {ggml.Q5_0, 17, 288}, {ggml.Q4_1, 17, 544}, {ggml.Q5_1, 9, 288}, {ggml.Q5_0, 17, 96}, {ggml.Q5_0, 40, 256}, {ggml.Q3_K, 1, 256}, {ggml.Q3_K, 19, 512}, {ggml.Q2_K, 1, 256}, {ggml.Q2_K, 19, 512}, {ggml.Q4_K, 1, 256}, {ggml.Q4_K, 19, 512}, {ggml.Q5_K, 1, 256}, {ggml.Q5_K, 33, 768}} {
		rows, cols, ty := sh.rows, sh.cols, sh.ty
		shape := fmt.Sprintf("%s %dx%d", ty, rows, cols)
		w := q4Matrix(t, r, ty, rows, cols)
		p := packAny(ty, w, rows, cols)
		rb64, _ := ty.RowSize(int64(cols))
		rb := int(rb64)
		got, want := make([]float32, cols), make([]float32, cols)
		for i := 0; i < rows; i++ {
			row := w[i*rb : (i+1)*rb]
			if b := p.RowBytes(i, make([]byte, rb)); string(b) != string(row) {
				t.Fatalf("%v row %d: bytes differ", shape, i)
			}
			if err := p.DequantizeRow(i, got); err != nil {
				t.Fatal(err)
			}
			if err := Dequantize(ty, row, want); err != nil {
				t.Fatal(err)
			}
			for k := range got {
				if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
					t.Fatalf("%v row %d element %d: %v, want %v", shape, i, k, got[k], want[k])
				}
			}
		}
		if err := p.DequantizeRow(0, make([]float32, cols+1)); err == nil {
			t.Errorf("%v: wrong length accepted", shape)
		}
	}
	if Pack(ggml.Q8_1, make([]byte, 36), 1, 32) != nil || Pack(ggml.Q4_0, make([]byte, 18), 1, 48) != nil || Pack(ggml.Q4_K, make([]byte, 144), 1, 128) != nil {
		t.Error("Pack accepted a type or shape without packed kernels")
	}
	if strings.Contains(SIMD(), "avx512vnni") && (Pack(ggml.Q4_0, make([]byte, 18), 1, 32) == nil || Pack(ggml.Q5_0, make([]byte, 22), 1, 32) == nil || Pack(ggml.Q3_K, make([]byte, 110), 1, 256) == nil || Pack(ggml.Q4_K, make([]byte, 144), 1, 256) == nil) {
		t.Error("no packed kernels on a CPU with AVX-512 VNNI")
	}
}

// The packed kernels equal their Go twin bit for bit, one, four and eight columns and four
// streams (where there is a four-stream kernel), and the reference Dot within the float
// tolerance; the Q4_0 twin is exact where the float steps are.
func TestPackedKernelsMatchTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(32, 32))
	for _, ty := range packedTypes {
		bsz := ty.BlockSize()
		nbs := []int{1, 2, 7}
		if bsz == 32 {
			// Q4_0 and Q5_0 go in groups of eight blocks: whole ones, and a last one cut short.
			nbs = append(nbs, 8, 9, 17)
		}
		for _, nb := range nbs {
			n := bsz * nb
			rows := 4 * panelRows
			w := q4Matrix(t, r, ty, rows, n)
			p := packAny(ty, w, rows, n)
			rb64, _ := ty.RowSize(int64(n))
			rb := int(rb64)
			variants := packedVariants[ty]
			if nb == 1 {
				t.Logf("%s: %d kernel sets", ty, len(variants))
			}
			for trial := 0; trial < 3; trial++ {
				const cols = 8
				acts := make([][]byte, cols)
				sz := p.actBytes()
				prep := make([]byte, cols*sz)
				for c := range acts {
					x := randVec(r, n, 1+float64(c))
					if trial == 1 {
						for i := range x {
							x[i] = float32(math.Abs(float64(x[i])))
						}
					}
					acts[c] = QuantizeActivations(ty, x, nil)
					p.prep(acts[c], prep[c*sz:(c+1)*sz])
				}
				twins := make([]float32, cols*rows)
				for c := 0; c < cols; c++ {
					for pi := 0; pi < rows/panelRows; pi++ {
						var twin [panelRows]float32
						p.twin(p.data[pi*p.stride:], prep[c*sz:], &twin)
						copy(twins[c*rows+pi*panelRows:], twin[:])
						for i := 0; i < panelRows; i += 5 {
							ri := pi*panelRows + i
							row := w[ri*rb : (ri+1)*rb]
							checkClose(t, fmt.Sprintf("%s nb %d trial %d column %d row %d", ty, nb, trial, c, ri),
								twin[i], Dot(ty, row, acts[c], n), absScale(t, ty, row, acts[c], n))
						}
					}
				}
				if got := p.Dot(rows-1, acts[2]); math.Float32bits(got) != math.Float32bits(twins[2*rows+rows-1]) {
					t.Fatalf("%s nb %d: Packed.Dot %v, twin %v", ty, nb, got, twins[2*rows+rows-1])
				}
				for _, k := range variants {
					checkPackedKernels(t, k, p, nb, trial, prep, sz, twins)
				}
			}
		}
	}
	// Exact operands: power-of-two scales and small quants make every float step of Q4_0 exact,
	// so the twin equals the reference exactly.
	for _, nb := range []int{1, 5} {
		for trial := 0; trial < 10; trial++ {
			row, act := exactBlocks(r, ggml.Q4_0, nb, trial%5-2)
			p := packAs(ggml.Q4_0, row, 1, 32*nb, nil)
			if got, want := p.Dot(0, act), Dot(ggml.Q4_0, row, act, 32*nb); got != want {
				t.Fatalf("exact blocks nb %d trial %d: packed %v, reference %v", nb, trial, got, want)
			}
		}
	}
}

// checkPackedKernels checks one kernel set's one-, four- and eight-column products of p's rows
// against the Go twin's results twins (column c's at c*rows), bit for bit.
func checkPackedKernels(t *testing.T, k *packedKernelSet, p *Packed, nb, trial int, prep []byte, sz int, twins []float32) {
	t.Helper()
	ty, rows := k.t, p.rows
	cols := len(twins) / rows
	same := func(what string, c, ri int, got float32) {
		t.Helper()
		if want := twins[c*rows+ri]; math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("%s %s nb %d trial %d %s: column %d row %d %v, twin %v", ty, k.name, nb, trial, what, c, ri, got, want)
		}
	}
	for c := 0; c < cols; c++ {
		out := make([]float32, rows)
		k.dot(p.data, p.stride, rows/panelRows, nb, prep[c*sz:(c+1)*sz], out)
		for ri, o := range out {
			same("one column", c, ri, o)
		}
		// The form without prefetches (streamtune.go) computes the same bits.
		if k.dotStream != nil {
			clear(out)
			k.dotStream(p.data, p.stride, rows/panelRows, nb, prep[c*sz:(c+1)*sz], out)
			for ri, o := range out {
				same("one column without prefetch", c, ri, o)
			}
		}
		// So does the form over two runs of panels in step, for every count of panels (the
		// odd one at the end by one), writing no result beyond them.
		if k.dotRuns2 != nil {
			for np := 1; np <= rows/panelRows; np++ {
				clear(out)
				k.dotRuns2(p.data, p.stride, np, nb, prep[c*sz:(c+1)*sz], out)
				for ri, o := range out {
					if ri >= np*panelRows {
						if o != 0 {
							t.Fatalf("%s %s nb %d two runs of %d panels: wrote row %d", ty, k.name, nb, np, ri)
						}
						continue
					}
					same(fmt.Sprintf("two runs of %d panels", np), c, ri, o)
				}
			}
		}
	}
	ostride := rows + 3
	out4 := make([]float32, cols*ostride)
	for c0 := 0; c0 < cols; c0 += 4 {
		k.dot4(p.data, p.stride, rows/panelRows, nb, prep[c0*sz:], sz, out4[c0*ostride:], ostride)
	}
	for c := 0; c < cols; c++ {
		for ri := 0; ri < rows; ri++ {
			same("four columns", c, ri, out4[c*ostride+ri])
		}
	}
	if k.dot8 == nil {
		return
	}
	// Eight columns, with room between the activation rows and the result rows.
	ystride := sz + 64
	y8 := make([]byte, cols*ystride)
	for c := 0; c < cols; c++ {
		copy(y8[c*ystride:], prep[c*sz:(c+1)*sz])
	}
	out8 := make([]float32, cols*ostride)
	k.dot8(p.data, p.stride, rows/panelRows, nb, y8, ystride, out8, ostride)
	for c := 0; c < cols; c++ {
		for ri := 0; ri < rows; ri++ {
			same("eight columns", c, ri, out8[c*ostride+ri])
		}
	}
}

// MatMul over packed weights gives every output as Packed.Dot of its row and activation row,
// for any batch (served by the one-, four- and eight-column kernels in turn), thread count and
// number of rows (panels cut short included), and the fp32 path dequantizes the packed rows
// exactly.
func TestMatMulPacked(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 33))
	for _, threads := range []int{1, 2, 3} {
		p := NewPool(threads)
		var mm MatMul
		type shape struct {
			ty            ggml.Type
			rows, cols, n int
		}
		shapes := []shape{{ggml.Q4_0, 16, 64, 1}, {ggml.Q4_0, 37, 256, 1}, {ggml.Q4_0, 150, 512, 6}, {ggml.Q4_0, 70, 96, 9}, {ggml.Q4_0, 300, 256, 1},
			{ggml.Q4_0, 300, 512, 2}, {ggml.Q5_0, 37, 256, 5}, {ggml.Q5_0, 300, 512, 1}, {ggml.Q5_0, 130, 96, 9}, {ggml.Q3_K, 37, 256, 5}, {ggml.Q3_K, 300, 512, 1}, {ggml.Q3_K, 70, 256, 13}, {ggml.Q2_K, 37, 256, 5}, {ggml.Q2_K, 300, 512, 1}, {ggml.Q2_K, 70, 256, 13}, {ggml.Q4_K, 37, 256, 5}, {ggml.Q4_K, 300, 256, 1}, {ggml.Q4_K, 130, 512, 9}, {ggml.Q4_K, 70, 256, 13},
			{ggml.Q5_K, 37, 256, 5}, {ggml.Q5_K, 300, 256, 1}, {ggml.Q5_K, 130, 512, 9}, {ggml.Q5_K, 70, 256, 13}}
		// Every batch up to fifteen (the one-, four- and eight-column kernels, their mixes and
		// their passes padded past the last row), with a panel cut short.
		for n := 1; n <= 15; n++ {
			shapes = append(shapes, shape{ggml.Q4_0, 45, 64, n}, shape{ggml.Q5_0, 45, 64, n}, shape{ggml.Q4_1, 45, 288, n}, shape{ggml.Q5_1, 45, 64, n}, shape{ggml.Q3_K, 45, 256, n}, shape{ggml.Q2_K, 45, 256, n}, shape{ggml.Q4_K, 45, 256, n}, shape{ggml.Q5_K, 45, 256, n}, shape{ggml.Q6_K, 45, 256, n})
		}
		for _, sh := range shapes {
			ty, rows, cols, n := sh.ty, sh.rows, sh.cols, sh.n
			shape := fmt.Sprintf("%s %dx%d N=%d", ty, rows, cols, n)
			w := q4Matrix(t, r, ty, rows, cols)
			pk := packAny(ty, w, rows, cols)
			x := randVec(r, n*cols, 1)
			ab64, _ := VecDotType(ty).RowSize(int64(cols))
			ab := int(ab64)
			wb64, _ := ty.RowSize(int64(cols))
			wb := int(wb64)
			act := make([]byte, 0, n*ab)
			for j := 0; j < n; j++ {
				act = append(act, QuantizeActivations(ty, x[j*cols:(j+1)*cols], nil)...)
			}
			out := make([]float32, n*(rows+2))
			for i := range out {
				out[i] = -7 // the two results' worth between columns must stay untouched
			}
			outF := make([]float32, n*rows)
			mm.Ops = append(mm.Ops[:0],
				MatMulOp{Type: ty, Packed: pk, Rows: rows, Cols: cols, N: n, Act: act, ActStride: ab, Out: out, OutStride: rows + 2},
				MatMulOp{Type: ty, Packed: pk, Rows: rows, Cols: cols, N: n, X: x, XStride: cols, Out: outF, OutStride: rows},
			)
			// Every padding TunePadding may choose, where the type has four-column kernels.
			pads := []int{-1}
			if k := pk.kernels(); k != nil && k.dot4 != nil {
				pads = []int{0, 2, 3}
			}
			for _, pad := range pads {
				for j := 0; j < n; j++ { // stale results from the last pass must not pass
					for i := 0; i < rows; i++ {
						out[j*(rows+2)+i], outF[j*rows+i] = float32(math.NaN()), float32(math.NaN())
					}
				}
				if pad >= 0 {
					k := pk.kernels()
					was := k.pad4.Load()
					k.pad4.Store(int32(pad))
					mm.Run(p)
					k.pad4.Store(was)
				} else {
					mm.Run(p)
				}
				checkMatMulPacked(t, fmt.Sprintf("threads %d %v pad %d", threads, shape, pad), pk, w, x, act, out, outF, ab, wb)
			}
		}
		p.Close()
	}
	if runtime.GOARCH == "amd64" && packedFormats[ggml.Q4_0].kernels != nil {
		// Packed products allocate nothing in the steady state either.
		w := q4_0Matrix(t, r, 256, 512)
		act := QuantizeActivations(ggml.Q4_0, randVec(r, 512, 1), nil)
		pool := NewPool(2)
		defer pool.Close()
		mm := &MatMul{Ops: []MatMulOp{{Type: ggml.Q4_0, Packed: packAs(ggml.Q4_0, w, 256, 512, nil), Rows: 256, Cols: 512, N: 1, Act: act, ActStride: len(act), Out: make([]float32, 256), OutStride: 256}}}
		mm.Run(pool)
		if a := testing.AllocsPerRun(20, func() { mm.Run(pool) }); a > 0 {
			t.Errorf("packed MatMul.Run: %.1f allocations per call", a)
		}
	}
}

// checkMatMulPacked checks TestMatMulPacked's results: out (columns rows+2 apart, the two
// results' worth between them at -7) against Packed.Dot bit for bit, outF (the fp32 path)
// against DotDequant of the file's rows w.
func checkMatMulPacked(t *testing.T, what string, pk *Packed, w []byte, x []float32, act []byte, out, outF []float32, ab, wb int) {
	t.Helper()
	rows, cols, ty := pk.Rows(), pk.Cols(), pk.Type()
	n := len(x) / cols
	scratch := make([]float32, cols)
	for j := 0; j < n; j++ {
		if g := out[j*(rows+2)+rows : (j+1)*(rows+2)]; g[0] != -7 || g[1] != -7 {
			t.Fatalf("%s: written between columns %d and %d: %v", what, j, j+1, g)
		}
		for i := 0; i < rows; i++ {
			if want := pk.Dot(i, act[j*ab:]); math.Float32bits(out[j*(rows+2)+i]) != math.Float32bits(want) {
				t.Fatalf("%s: out[%d][%d] %v, Packed.Dot %v", what, j, i, out[j*(rows+2)+i], want)
			}
			row := w[i*wb : (i+1)*wb]
			if want := DotDequant(ty, row, x[j*cols:(j+1)*cols], scratch); outF[j*rows+i] != want {
				t.Fatalf("%s: f32 out[%d][%d] %v, DotDequant %v", what, j, i, outF[j*rows+i], want)
			}
		}
	}
}

// packedPass runs eight, then four activation rows a pass, and pads short groups into a wider
// pass only from the set's pad4 on: the passes a batch takes, for a set with and without
// eight-column kernels and padding.
func TestPackedPassWidths(t *testing.T) {
	k4 := func(w []byte, stride, panels, nb int, y []byte, ystride int, out []float32, ostride int) {}
	passes := func(k *packedKernelSet, n int) string {
		var s []string
		for left := n; left > 0; {
			w, f := packedPass(k, left)
			if (w == 1) != (f == nil) {
				t.Fatalf("pass of %d with kernel %v", w, f != nil)
			}
			s = append(s, fmt.Sprint(w))
			left -= min(w, left)
		}
		return strings.Join(s, "+")
	}
	set := func(dot8 func(w []byte, stride, panels, nb int, y []byte, ystride int, out []float32, ostride int), pad int) *packedKernelSet {
		k := &packedKernelSet{dot4: k4, dot8: dot8}
		k.pad4.Store(int32(pad))
		return k
	}
	for _, c := range []struct {
		k    *packedKernelSet
		want []string // for N = 1..11
	}{
		{set(k4, 2), []string{"1", "4", "4", "4", "4+1", "8", "8", "8", "8+1", "8+4", "8+4"}},
		{set(nil, 2), []string{"1", "4", "4", "4", "4+1", "4+4", "4+4", "4+4", "4+4+1", "4+4+4", "4+4+4"}},
		{set(nil, 3), []string{"1", "1+1", "4", "4", "4+1", "4+1+1", "4+4", "4+4", "4+4+1", "4+4+1+1", "4+4+4"}},
		{set(k4, 0), []string{"1", "1+1", "1+1+1", "4", "4+1", "4+1+1", "4+1+1+1", "8", "8+1", "8+1+1", "8+1+1+1"}},
		{nil, []string{"1", "1+1", "1+1+1", "1+1+1+1", "1+1+1+1+1", "1+1+1+1+1+1", "1+1+1+1+1+1+1", "1+1+1+1+1+1+1+1", "1+1+1+1+1+1+1+1+1", "1+1+1+1+1+1+1+1+1+1", "1+1+1+1+1+1+1+1+1+1+1"}},
	} {
		for n := 1; n <= len(c.want); n++ {
			if got := passes(c.k, n); got != c.want[n-1] {
				t.Errorf("set %+v N=%d: passes %s, want %s", c.k, n, got, c.want[n-1])
			}
		}
	}
}

// benchPacked returns a packed rows×cols matrix of type ty for benchmarks, at least size
// bytes of it (copies of one quantized block of rows, so that a matrix larger than the caches
// is made quickly), with eight prepared activation rows; it skips where there are no kernels.
func benchPacked(b *testing.B, r *rand.Rand, ty ggml.Type, rows, cols, size int) (*Packed, []byte) {
	if Pack(ty, make([]byte, ty.TypeSize()), 1, ty.BlockSize()) == nil {
		b.Skipf("no packed %s kernels on this CPU", ty)
	}
	w, err := Quantize(ty, randVec(r, rows*cols, 0.3))
	if err != nil {
		b.Fatal(err)
	}
	p := Pack(ty, w, rows, cols)
	copies := max(1, size/len(p.data))
	big := &Packed{t: p.t, f: p.f, rows: rows * copies, cols: cols, nb: p.nb, stride: p.stride, data: WeightBytes(copies * len(p.data))}
	for c := 0; c < copies; c++ {
		copy(big.data[c*len(p.data):], p.data)
	}
	sz := big.actBytes()
	prep := make([]byte, 8*sz)
	for c := 0; c < 8; c++ {
		big.prep(QuantizeActivations(ty, randVec(r, cols, 1), nil), prep[c*sz:(c+1)*sz])
	}
	return big, prep
}

// BenchmarkPackedPadding times two and three activation rows over a matrix streamed from
// memory (128 MiB, one thread) as a pass of the four-column kernel padded past the last row
// ("padded") and as one pass each ("each"), for this CPU's kernels of every packed type: the
// measurements behind packedPad4. Run it under GODEBUG=cpu.avx512f=off (and
// cpu.avx512f=off,cpu.avxvnni=off) for the narrower sets.
func BenchmarkPackedPadding(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 9))
	pool := NewPool(1)
	defer pool.Close()
	const cols = 2048
	for _, ty := range append([]ggml.Type{ggml.Q8_0}, packedTypes...) {
		k := packedFormats[ty].kernels
		if k == nil || k.dot4 == nil {
			continue
		}
		p, _ := benchPacked(b, r, ty, 1024, cols, 128<<20)
		ab64, _ := VecDotType(ty).RowSize(cols)
		var act []byte
		for j := 0; j < 3; j++ {
			act = append(act, QuantizeActivations(ty, randVec(r, cols, 1), nil)...)
		}
		out := make([]float32, 3*p.rows)
		for _, n := range []int{2, 3} {
			for _, pad := range []int{n, 0} {
				mm := &MatMul{Ops: []MatMulOp{{Type: ty, Packed: p, Rows: p.rows, Cols: cols, N: n, Act: act, ActStride: int(ab64), Out: out, OutStride: p.rows}}}
				name := map[bool]string{true: "padded", false: "each"}[pad > 0]
				b.Run(fmt.Sprintf("%s/%s/N=%d/%s", ty, k.name, n, name), func(b *testing.B) {
					defer k.pad4.Store(k.pad4.Load())
					k.pad4.Store(int32(pad))
					b.SetBytes(int64(len(p.data)))
					for b.Loop() {
						mm.Run(pool)
					}
				})
			}
		}
	}
}

// BenchmarkPackedKernels times every packed kernel set this CPU runs (vnni, avx2) in one,
// four and eight columns, per panel and block (Q4_0) or super-block (Q4_K) and column: on a
// matrix that stays in the level-2 cache (compute), one in the level-3 cache and one that
// streams from memory (256 MiB, as decoding does).
func BenchmarkPackedKernels(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 7))
	const cols = 2048
	for _, ty := range packedTypes {
		for _, size := range []int{256 << 10, 8 << 20, 256 << 20} {
			if len(packedVariants[ty]) == 0 {
				continue
			}
			p, prep := benchPacked(b, r, ty, 64, cols, size)
			sz := p.actBytes()
			panels := p.rows / panelRows
			out := make([]float32, 8*p.rows)
			units := float64(panels * p.nb)
			for _, k := range packedVariants[ty] {
				run := func(name string, n int, f func()) {
					b.Run(fmt.Sprintf("%s/%dKiB/%s/%s", ty, size>>10, k.name, name), func(b *testing.B) {
						b.SetBytes(int64(len(p.data)))
						for b.Loop() {
							f()
						}
						b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/units/float64(n), "ns/unit·col")
					})
				}
				run("dot", 1, func() { k.dot(p.data, p.stride, panels, p.nb, prep[:sz], out) })
				if k.dotStream != nil {
					run("dot-noprefetch", 1, func() { k.dotStream(p.data, p.stride, panels, p.nb, prep[:sz], out) })
				}
				if k.dotRuns2 != nil {
					run("dot-runs2", 1, func() { k.dotRuns2(p.data, p.stride, panels, p.nb, prep[:sz], out) })
				}
				run("dot4", 4, func() { k.dot4(p.data, p.stride, panels, p.nb, prep, sz, out, p.rows) })
				if k.dot8 != nil {
					run("dot8", 8, func() { k.dot8(p.data, p.stride, panels, p.nb, prep, sz, out, p.rows) })
				}
			}
		}
	}
}

// BenchmarkPackedMatMulStream is MatMul over 192 MiB of packed weights (beyond the caches) for
// batches of 1, 4 and 8 activation rows: how the cost of a batch grows where the weights
// stream from memory (the decode of several sequences at once).
func BenchmarkPackedMatMulStream(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 9))
	pool := SharedPool(0)
	const cols = 2048
	for _, ty := range packedTypes {
		p, _ := benchPacked(b, r, ty, 1024, cols, 192<<20)
		ab64, _ := VecDotType(ty).RowSize(cols)
		ab := int(ab64)
		var act []byte
		for j := 0; j < 8; j++ {
			act = append(act, QuantizeActivations(ty, randVec(r, cols, 1), nil)...)
		}
		out := make([]float32, 8*p.rows)
		for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8} {
			mm := &MatMulOp{Type: ty, Packed: p, Rows: p.rows, Cols: cols, N: n, Act: act, ActStride: ab, Out: out, OutStride: p.rows}
			run := func(name string, form decodeForm) {
				k := p.kernels()
				b.Run(fmt.Sprintf("%s/N=%d/threads=%d%s", ty, n, pool.Threads(), name), func(b *testing.B) {
					old := k.form.Load()
					k.form.Store(int32(form))
					defer k.form.Store(old)
					m := &MatMul{Ops: []MatMulOp{*mm}}
					b.SetBytes(int64(len(p.data)))
					for b.Loop() {
						m.Run(pool)
					}
					b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "cols/s")
				})
			}
			run("", formAhead)
			// One column also in the other forms the type has (streamtune.go): the figures
			// TuneStreams compares.
			if n == 1 && p.kernels().has(formStream) {
				run("/noprefetch", formStream)
			}
			if n == 1 && p.kernels().has(formRuns2) {
				run("/runs2", formRuns2)
			}
		}
	}
}

// BenchmarkPackedStreamRead reads one 256 MiB buffer (one thread) as a plain float32 sum and
// as the weights of every packed type's one-column decode kernel (copies of a real packed
// matrix, written into the same memory before each), the form without software prefetches
// where the type has one, and over two runs of panels in step where it has that: how near
// each kernel streams to a plain read of the same pages, as one run and as two in step. A
// kernel that reads a super-block out of order falls behind here (packed Q4_K read its scales
// before the chunk after them: 91% of the plain read, against 97-100% in order).
func BenchmarkPackedStreamRead(b *testing.B) {
	const size = 256 << 20
	buf := WeightBytes(size)
	r := rand.New(rand.NewPCG(2, 5))
	plain := unsafe.Slice((*float32)(unsafe.Pointer(&buf[0])), size/4)
	for i := range plain {
		plain[i] = float32(i & 1023)
	}
	var sink float32
	b.Run("plain", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for i := 0; i < len(plain); i += 4096 {
				sink += DotF32Fast(plain[i:i+4096], plain[i:i+4096])
			}
		}
	})
	b.Run("plain/two-runs", func(b *testing.B) {
		b.SetBytes(size)
		h := len(plain) / 2
		for b.Loop() {
			for i := 0; i < h; i += 4096 {
				sink += DotF32Fast(plain[i:i+4096], plain[h+i:h+i+4096])
			}
		}
	})
	const cols = 2048
	for _, ty := range append([]ggml.Type{ggml.Q8_0}, packedTypes...) {
		k := packedFormats[ty].kernels
		if k == nil {
			continue
		}
		dot := k.dot
		if k.dotStream != nil {
			dot = k.dotStream
		}
		w, err := Quantize(ty, randVec(r, 1024*cols, 0.3))
		if err != nil {
			b.Fatal(err)
		}
		p := Pack(ty, w, 1024, cols)
		n := size / len(p.data) * len(p.data)
		for off := 0; off < n; off += len(p.data) {
			copy(buf[off:], p.data)
		}
		panels := n / p.stride
		prep := make([]byte, p.actBytes())
		p.prep(QuantizeActivations(ty, randVec(r, cols, 1), nil), prep)
		out := make([]float32, panelRows*panels)
		b.Run(ty.String(), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				dot(buf[:n], p.stride, panels, p.nb, prep, out)
			}
		})
		if k.dotRuns2 != nil {
			b.Run(ty.String()+"/runs2", func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					k.dotRuns2(buf[:n], p.stride, panels, p.nb, prep, out)
				}
			})
		}
	}
	_ = sink
}

// TestPackInto: PackedSize is 0 exactly where Pack declines; PackInto writes the same packed
// matrix into a slice of a shared buffer (as the model loader packs a stage) as Pack into its
// own, and refuses a buffer too small or not 64-byte aligned.
func TestPackInto(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		ty         ggml.Type
		rows, cols int
	}{{ggml.Q4_0, 40, 96}, {ggml.Q4_K, 33, 512}, {ggml.Q8_0, 17, 64}, {ggml.Q5_0, 16, 32}, {ggml.Q4_0, 16, 48}} {
		w, err := Quantize(c.ty, randVec(r, c.rows*c.cols, 0.5))
		if err != nil && c.cols%c.ty.BlockSize() == 0 {
			t.Fatal(err)
		}
		p, n := Pack(c.ty, w, c.rows, c.cols), PackedSize(c.ty, c.rows, c.cols)
		if (p == nil) != (n == 0) {
			t.Fatalf("%s %dx%d: Pack gave %v, PackedSize %d", c.ty, c.rows, c.cols, p != nil, n)
		}
		if p == nil {
			continue
		}
		if len(p.data) != n {
			t.Fatalf("%s %dx%d: %d packed bytes, PackedSize %d", c.ty, c.rows, c.cols, len(p.data), n)
		}
		buf := WeightBytes(64 + n + 64)
		for i := range buf {
			buf[i] = 0xa5 // PackInto must write every byte it keeps, and none outside
		}
		q := PackInto(c.ty, w, c.rows, c.cols, buf[64:64+n])
		if !bytes.Equal(q.data, p.data) || q.stride != p.stride || q.nb != p.nb {
			t.Errorf("%s %dx%d: PackInto differs from Pack", c.ty, c.rows, c.cols)
		}
		if buf[63] != 0xa5 || buf[64+n] != 0xa5 {
			t.Errorf("%s %dx%d: PackInto wrote outside its slice", c.ty, c.rows, c.cols)
		}
		for _, bad := range [][]byte{buf[64 : 64+n-1], buf[32 : 32+n]} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s %dx%d: PackInto took %d bytes at offset %d", c.ty, c.rows, c.cols, len(bad), cap(buf)-cap(bad))
					}
				}()
				PackInto(c.ty, w, c.rows, c.cols, bad)
			}()
		}
	}
}

// TestSumInt8x32: the word-at-a-time sum of 32 signed bytes equals the byte-by-byte one, at
// the extremes (all -128, all 127) and on random bytes.
func TestSumInt8x32(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 200; trial++ {
		b := make([]byte, 32)
		for i := range b {
			switch trial {
			case 0:
				b[i] = 0x80
			case 1:
				b[i] = 0x7f
			case 2:
				b[i] = 0xff
			default:
				b[i] = byte(r.UintN(256))
			}
		}
		var want int32
		for _, v := range b {
			want += int32(int8(v))
		}
		if got := sumInt8x32(b); got != want {
			t.Fatalf("trial %d: sumInt8x32(% x) = %d, want %d", trial, b, got, want)
		}
	}
}

// TestPrepPackedActBias: the prepared blocks this CPU's loop writes (assembly where there is
// one) equal the Go twin's byte for byte, for every half-precision scale (NaNs, infinities and
// subnormals included), quants at the extremes and random, each bias a packed type uses, and
// any count of blocks; nothing past the last block is written.
func TestPrepPackedActBias(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const nb = 1 << 16
	act := make([]byte, 34*nb)
	for b := 0; b < nb; b++ {
		binary.LittleEndian.PutUint16(act[34*b:], uint16(b))
		for i := 2; i < 34; i++ {
			switch b % 5 {
			case 0:
				act[34*b+i] = 0x80
			case 1:
				act[34*b+i] = 0x7f
			case 2:
				act[34*b+i] = 0
			default:
				act[34*b+i] = byte(r.UintN(256))
			}
		}
	}
	for _, bias := range []int32{8, 16, 128} {
		for _, n := range []int{0, 1, 3, 17, nb} {
			got := make([]byte, packedAct*n+packedAct)
			want := make([]byte, len(got))
			for i := range got {
				got[i], want[i] = 0xa5, 0xa5
			}
			prepPackedActBias(act[:34*n], n, got, bias)
			prepPackedActBiasGo(act[:34*n], n, want, bias)
			if !bytes.Equal(got, want) {
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("bias %d, %d blocks: byte %d (block %d) %#x, twin %#x", bias, n, i, i/packedAct, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkPrepPackedActBias prepares one activation row of 2048 (64 blocks), as a layer's
// projections do once each, with this CPU's loop and with the Go twin.
func BenchmarkPrepPackedActBias(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 9))
	const nb = 64
	act := QuantizeActivations(ggml.Q4_0, randVec(r, 32*nb, 1), nil)
	dst := make([]byte, packedAct*nb)
	for _, k := range []struct {
		name string
		f    func([]byte, int, []byte, int32)
	}{{"cpu", prepPackedActBias}, {"go", prepPackedActBiasGo}} {
		b.Run(k.name, func(b *testing.B) {
			for b.Loop() {
				k.f(act, nb, dst, 8)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/nb, "ns/block")
		})
	}
}
