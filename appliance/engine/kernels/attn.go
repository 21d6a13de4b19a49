package kernels

import (
	"encoding/binary"
	"fmt"
)

// The block forms of attention's F16 products: one call scores a query against many cached
// keys, or adds many cached values into the running sum, instead of one call per position.
// Each row's arithmetic is that of DotF16, ScaleF16 and MadF16, so the results are the same bit
// for bit; only the call overhead, which at head dimension 64 cost as much as the arithmetic,
// is gone.

var (
	dotF16RowsImpl = dotF16RowsGo
	madF16RowsImpl = madF16RowsGo
	// The four-query kernels, where the CPU has them (F16Group reports it).
	dotF16Rows4Impl func(out []float32, qs, rows []uint16, stride int, scale float32) bool
	madF16Rows4Impl func(accs, rows []uint16, stride int, ms, vs []float32) bool
	dotQ8_0RowsImpl = dotQ8_0RowsGo
	madQ8_0RowsImpl = madQ8_0RowsGo
	// The four-query kernels over a Q8_0 cache, where the CPU has them (Q8Group).
	dotQ8_0Rows4Impl func(out []float32, qs, rows []byte, stride int, scale float32) bool
	madQ8_0Rows4Impl func(accs []float32, rows []byte, stride int, ms, vs []float32) bool
)

// DotF16Rows sets out[i] = DotF16(q, rows[i*stride : i*stride+len(q)]) * scale for every i <
// len(out): a query head against len(out) cached keys, stride halves apart.
func DotF16Rows(out []float32, q, rows []uint16, stride int, scale float32) {
	checkRows("DotF16Rows", len(out), len(q), len(rows), stride)
	dotF16RowsImpl(out, q, rows, stride, scale)
}

// MadF16Rows runs, for every i < len(vs), ScaleF16(acc, ms[i]) where ms[i] != 1 and then
// MadF16(acc, rows[i*stride : i*stride+len(acc)], vs[i]): the online softmax's update over
// len(vs) cached values, stride halves apart.
func MadF16Rows(acc, rows []uint16, stride int, ms, vs []float32) {
	checkRows("MadF16Rows", len(vs), len(acc), len(rows), stride)
	if len(ms) != len(vs) {
		panic(fmt.Sprintf("kernels: MadF16Rows with %d rescale factors for %d rows", len(ms), len(vs)))
	}
	madF16RowsImpl(acc, rows, stride, ms, vs)
}

// F16Group is how many query heads DotF16RowsGroup and MadF16RowsGroup serve with one pass
// over the keys and values on this CPU: 4 where it has the kernels for that, else 1 (a group
// then costs what its queries cost one by one).
func F16Group() int {
	if dotF16Rows4Impl != nil {
		return 4
	}
	return 1
}

// DotF16RowsGroup is DotF16Rows for the g query heads in qs (len(qs)/g halves each) against the
// same rows: query j's scores go to out[j*n : (j+1)*n], n = len(out)/g. Where g is F16Group()
// each key row is read and widened once for all of them; the results are DotF16Rows' bits.
func DotF16RowsGroup(out []float32, g int, qs, rows []uint16, stride int, scale float32) {
	if g <= 0 || len(out)%g != 0 || len(qs)%g != 0 {
		panic(fmt.Sprintf("kernels: DotF16RowsGroup of %d queries into %d scores from %d halves", g, len(out), len(qs)))
	}
	n, dim := len(out)/g, len(qs)/g
	checkRows("DotF16RowsGroup", n, dim, len(rows), stride)
	if g == 4 && dotF16Rows4Impl != nil && dotF16Rows4Impl(out, qs, rows, stride, scale) {
		return
	}
	for j := 0; j < g; j++ {
		dotF16RowsImpl(out[j*n:(j+1)*n], qs[j*dim:(j+1)*dim], rows, stride, scale)
	}
}

// MadF16RowsGroup is MadF16Rows for the g value sums in accs (len(accs)/g halves each) over the
// same rows, sum j with the factors ms[j*n : (j+1)*n] and vs[j*n : (j+1)*n], n = len(vs)/g.
// Where g is F16Group() each value row is read and widened once for all of them; the results
// are MadF16Rows' bits.
func MadF16RowsGroup(accs []uint16, g int, rows []uint16, stride int, ms, vs []float32) {
	if g <= 0 || len(accs)%g != 0 || len(vs)%g != 0 || len(ms) != len(vs) {
		panic(fmt.Sprintf("kernels: MadF16RowsGroup of %d sums of %d halves with %d and %d factors", g, len(accs), len(ms), len(vs)))
	}
	n, dim := len(vs)/g, len(accs)/g
	checkRows("MadF16RowsGroup", n, dim, len(rows), stride)
	if g == 4 && madF16Rows4Impl != nil && madF16Rows4Impl(accs, rows, stride, ms, vs) {
		return
	}
	for j := 0; j < g; j++ {
		madF16RowsImpl(accs[j*dim:(j+1)*dim], rows, stride, ms[j*n:(j+1)*n], vs[j*n:(j+1)*n])
	}
}

func checkRows(what string, n, width, have, stride int) {
	if n > 0 && (stride < width || have < (n-1)*stride+width) {
		panic(fmt.Sprintf("kernels: %s of %d rows of %d halves, %d apart, from %d halves", what, n, width, stride, have))
	}
}

func dotF16RowsGo(out []float32, q, rows []uint16, stride int, scale float32) {
	for i := range out {
		out[i] = dotF16Impl(q, rows[i*stride:i*stride+len(q)]) * scale
	}
}

func madF16RowsGo(acc, rows []uint16, stride int, ms, vs []float32) {
	for i := range vs {
		if ms[i] != 1 {
			scaleF16Impl(acc, ms[i])
		}
		madF16Impl(acc, rows[i*stride:i*stride+len(acc)], vs[i])
	}
}

// The Q8_0 KV cache's block forms: keys and values of one head are whole Q8_0 blocks (34 bytes:
// an F16 scale, 32 int8), rows stride bytes apart.

// DotQ8_0Rows sets out[i] = k_i·q · scale for every i < len(out), k_i being the len(q)/34 Q8_0
// blocks at rows[i*stride:] and q the query's blocks. Each block's integer dot is scaled by
// dk·dq and summed in float32 in block order: kernels.Dot's Q8_0 arithmetic (llama.cpp's scalar
// vec_dot_q8_0_q8_0).
func DotQ8_0Rows(out []float32, q, rows []byte, stride int, scale float32) {
	if len(q)%q8Block != 0 {
		panic(fmt.Sprintf("kernels: DotQ8_0Rows query of %d bytes, not whole blocks", len(q)))
	}
	checkRows("DotQ8_0Rows", len(out), len(q), len(rows), stride)
	dotQ8_0RowsImpl(out, q, rows, stride, scale)
}

// MadQ8_0Rows runs, for every i < len(vs), acc *= ms[i] (Scale) where ms[i] != 1 and then
// acc[j] += v_j·vs[i] for the first len(acc) values v of the Q8_0 blocks at rows[i*stride:],
// each dequantized to float32 (d·q rounded) before it is scaled and added, as llama.cpp's flash
// attention does for a quantized V.
func MadQ8_0Rows(acc []float32, rows []byte, stride int, ms, vs []float32) {
	width := (len(acc) + 31) / 32 * q8Block
	checkRows("MadQ8_0Rows", len(vs), width, len(rows), stride)
	if len(ms) != len(vs) {
		panic(fmt.Sprintf("kernels: MadQ8_0Rows with %d rescale factors for %d rows", len(ms), len(vs)))
	}
	madQ8_0RowsImpl(acc, rows, stride, ms, vs)
}

// Q8Group is F16Group for the Q8_0 cache: how many query heads DotQ8_0RowsGroup and
// MadQ8_0RowsGroup serve with one pass over the keys and values on this CPU.
func Q8Group() int {
	if dotQ8_0Rows4Impl != nil {
		return 4
	}
	return 1
}

// DotQ8_0RowsGroup is DotQ8_0Rows for the g query heads in qs (len(qs)/g bytes of Q8_0 blocks
// each) against the same rows: query j's scores go to out[j*n : (j+1)*n], n = len(out)/g.
// Where g is Q8Group() each key row is read and unpacked once for all of them; the results are
// DotQ8_0Rows' bits.
func DotQ8_0RowsGroup(out []float32, g int, qs, rows []byte, stride int, scale float32) {
	if g <= 0 || len(out)%g != 0 || len(qs)%g != 0 || len(qs)/g%q8Block != 0 {
		panic(fmt.Sprintf("kernels: DotQ8_0RowsGroup of %d queries into %d scores from %d bytes", g, len(out), len(qs)))
	}
	n, qb := len(out)/g, len(qs)/g
	checkRows("DotQ8_0RowsGroup", n, qb, len(rows), stride)
	if g == 4 && dotQ8_0Rows4Impl != nil && dotQ8_0Rows4Impl(out, qs, rows, stride, scale) {
		return
	}
	for j := 0; j < g; j++ {
		dotQ8_0RowsImpl(out[j*n:(j+1)*n], qs[j*qb:(j+1)*qb], rows, stride, scale)
	}
}

// MadQ8_0RowsGroup is MadQ8_0Rows for the g value sums in accs (len(accs)/g values each) over
// the same rows, sum j with the factors ms[j*n : (j+1)*n] and vs[j*n : (j+1)*n], n =
// len(vs)/g. Where g is Q8Group() each value row is read and dequantized once for all of them;
// the results are MadQ8_0Rows' bits.
func MadQ8_0RowsGroup(accs []float32, g int, rows []byte, stride int, ms, vs []float32) {
	if g <= 0 || len(accs)%g != 0 || len(vs)%g != 0 || len(ms) != len(vs) {
		panic(fmt.Sprintf("kernels: MadQ8_0RowsGroup of %d sums of %d values with %d and %d factors", g, len(accs), len(ms), len(vs)))
	}
	n, dim := len(vs)/g, len(accs)/g
	checkRows("MadQ8_0RowsGroup", n, (dim+31)/32*q8Block, len(rows), stride)
	if g == 4 && madQ8_0Rows4Impl != nil && madQ8_0Rows4Impl(accs, rows, stride, ms, vs) {
		return
	}
	for j := 0; j < g; j++ {
		madQ8_0RowsImpl(accs[j*dim:(j+1)*dim], rows, stride, ms[j*n:(j+1)*n], vs[j*n:(j+1)*n])
	}
}

// q8Block is the size of a Q8_0 block in bytes.
const q8Block = 34

func dotQ8_0RowsGo(out []float32, q, rows []byte, stride int, scale float32) {
	for i := range out {
		out[i] = dotQ8_0Row(rows[i*stride:], q) * scale
	}
}

func dotQ8_0Row(k, q []byte) float32 {
	var sum float32
	for b := 0; b < len(q)/q8Block; b++ {
		x := k[b*q8Block : (b+1)*q8Block : (b+1)*q8Block]
		y := q[b*q8Block : (b+1)*q8Block : (b+1)*q8Block]
		xs, ys := x[2:], y[2:]
		var s int32
		for j := range xs {
			s += int32(int8(xs[j])) * int32(int8(ys[j]))
		}
		d := F16ToF32(binary.LittleEndian.Uint16(x)) * F16ToF32(binary.LittleEndian.Uint16(y))
		// The conversion rounds the product before the add, as ggml's C does: without it
		// arm64's compiler fuses them into one FMA and the last bit differs.
		sum += float32(float32(s) * d)
	}
	return sum
}

func madQ8_0RowsGo(acc []float32, rows []byte, stride int, ms, vs []float32) {
	for i, s := range vs {
		if ms[i] != 1 {
			Scale(acc, ms[i])
		}
		b := rows[i*stride:]
		for blk := 0; blk*32 < len(acc); blk++ {
			x := b[blk*q8Block : (blk+1)*q8Block]
			d := F16ToF32(binary.LittleEndian.Uint16(x))
			a := acc[blk*32 : min(len(acc), (blk+1)*32)]
			for j := range a {
				v := d * float32(int8(x[2+j]))
				a[j] += float32(v * s)
			}
		}
	}
}
