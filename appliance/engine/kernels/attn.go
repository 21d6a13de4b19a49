package kernels

import "fmt"

// The block forms of attention's F16 products: one call scores a query against many cached
// keys, or adds many cached values into the running sum, instead of one call per position.
// Each row's arithmetic is that of DotF16, ScaleF16 and MadF16, so the results are the same bit
// for bit; only the call overhead, which at head dimension 64 cost as much as the arithmetic,
// is gone.

var (
	dotF16RowsImpl = dotF16RowsGo
	madF16RowsImpl = madF16RowsGo
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
