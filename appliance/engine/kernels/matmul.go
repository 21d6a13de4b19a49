package kernels

import (
	"fmt"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// MatMulOp is one weight matrix times N activation rows: Out[j*OutStride + r] = row r of W ·
// activation row j, for r < Rows and j < N.
//
// With Act set, the activations are N rows of QuantizeActivations(Type, ...) output, ActStride
// bytes apart, and each product is VecDot (the native path). With X set instead, they are N
// float32 rows, XStride apart, and each product is DotDequant's exact fp32 arithmetic.
type MatMulOp struct {
	Type       ggml.Type
	W          []byte // Rows × Cols values of Type, row-major
	Rows, Cols int
	N          int

	Act       []byte
	ActStride int
	X         []float32
	XStride   int

	Out       []float32
	OutStride int
}

// MatMul multiplies several matrices in one parallel pass: their rows are cut into units that
// the pool's workers take in turn, and every unit serves all N activation rows while its
// weights are in cache, so a batch of N tokens costs one read of the weights instead of N.
// Results do not depend on N, the threads or the split: each output is one fixed dot of a
// weight row with an activation row (VecDot; the reference Dot for Q8_0 and Q4_0, whose SIMD
// kernels reproduce it; DotDequant on the X path).
//
// A MatMul holds the bookkeeping of one call and is reused across calls to avoid allocating; it
// is used by one goroutine at a time.
type MatMul struct {
	Ops []MatMulOp

	units   []int // cumulative unit count per op
	per     []int // rows per unit, per op
	rowB    []int
	scratch [][]float32   // per worker: a dequantized row for the X path
	yd      [][]float32   // per op: activation tables of the eight-row kernels (N × blocks)
	ys      [][]int32     // per op: activation quant sums of the eight-row kernels
	quad    []*[4]float32 // per worker: results of a four-column kernel (on the heap once)
	unp     [][]byte      // per worker: eight unpacked weight rows (prompt batches)
	unpSc   [][]float32   // per worker: their block scales
}

// unitBytes is the weight bytes one unit covers: small enough that a unit's rows stay in the
// level-1/2 cache while all N activation rows pass over them, large enough that the hardware
// prefetcher sees long streams and the shared counter is touched rarely.
const unitBytes = 32 << 10

// Run computes every op on p.
func (m *MatMul) Run(p *Pool) {
	m.units, m.per, m.rowB = m.units[:0], m.per[:0], m.rowB[:0]
	total := 0
	for i := range m.Ops {
		op := &m.Ops[i]
		rb := op.check()
		per := max(1, unitBytes/rb)
		if op.N < 32 {
			// Decode steps (one or a few sequences) stream each weight from memory once; bigger
			// units mean fewer hand-offs and fewer cold starts of the prefetching.
			per = max(1, 4*unitBytes/rb)
		}
		// Keep enough units that every worker gets several, for balance on a busy machine.
		per = max(1, min(per, op.Rows/(8*p.Threads())))
		if fastUnpacked8[op.Type] != nil && op.Act != nil && op.N >= unpackMinN {
			// Whole groups of eight rows for the unpacked kernels.
			per = (per + 7) &^ 7
		}
		total += (op.Rows + per - 1) / per
		m.units = append(m.units, total)
		m.per = append(m.per, per)
		m.rowB = append(m.rowB, rb)
	}
	for len(m.scratch) < p.Threads() {
		m.scratch = append(m.scratch, nil)
		m.quad = append(m.quad, new([4]float32))
		m.unp = append(m.unp, nil)
		m.unpSc = append(m.unpSc, nil)
	}
	for len(m.ys) < len(m.Ops) {
		m.yd = append(m.yd, nil)
		m.ys = append(m.ys, nil)
	}
	for i := range m.Ops {
		op := &m.Ops[i]
		if op.Act == nil || (fastRowTab[op.Type] == nil && fastUnpacked8[op.Type] == nil) {
			continue
		}
		// Per activation row and block, the scale as float32 and the sum of the quants: each is
		// computed once here instead of once per weight row.
		nb := op.Cols / 32
		m.yd[i] = growF32(m.yd[i], op.N*nb)
		if cap(m.ys[i]) < op.N*nb {
			m.ys[i] = make([]int32, op.N*nb)
		}
		m.ys[i] = m.ys[i][:op.N*nb]
		for j := 0; j < op.N; j++ {
			actTables(op.Act[j*op.ActStride:], nb, m.yd[i][j*nb:(j+1)*nb], m.ys[i][j*nb:(j+1)*nb])
		}
	}
	p.For(total, 1, m)
}

// Range implements Ranger over units.
func (m *MatMul) Range(worker, lo, hi int) {
	oi := 0
	for u := lo; u < hi; u++ {
		for u >= m.units[oi] {
			oi++
		}
		start := 0
		if oi > 0 {
			start = m.units[oi-1]
		}
		op := &m.Ops[oi]
		r0 := (u - start) * m.per[oi]
		r1 := min(r0+m.per[oi], op.Rows)
		if op.X != nil {
			m.rangeF32(worker, op, m.rowB[oi], r0, r1)
		} else {
			if u := fastUnpacked8[op.Type]; u != nil && op.N >= unpackMinN && r1-r0 >= 8 {
				m.rangeUnpacked(worker, u, op, m.rowB[oi], r0, r1, m.yd[oi], m.ys[oi])
			} else {
				op.rangeQuant(m.rowB[oi], r0, r1, m.yd[oi], m.ys[oi], m.quad[worker])
			}
		}
	}
}

func (op *MatMulOp) rangeQuant(rb, r0, r1 int, yd []float32, ys []int32, o *[4]float32) {
	t, n := op.Type, op.Cols
	if f := fastRowTab[t]; f != nil {
		nb := n / 32
		for j := 0; j < op.N; j++ {
			act := op.Act[j*op.ActStride:]
			out := op.Out[j*op.OutStride:]
			ydj, ysj := yd[j*nb:(j+1)*nb], ys[j*nb:(j+1)*nb]
			for r := r0; r < r1; r++ {
				out[r] = f(op.W[r*rb:(r+1)*rb], act, ydj, ysj, n)
			}
		}
		return
	}
	if int(t) < len(fastDots) && fastDots[t] != nil {
		f := fastDots[t]
		j := 0
		if f4 := fastDots4[t]; f4 != nil {
			// Four activation rows per weight row: the weights are unpacked once for four
			// products while the four rows stay in the level-1 cache.
			for ; j+4 <= op.N; j += 4 {
				act := op.Act[j*op.ActStride:]
				for r := r0; r < r1; r++ {
					f4(op.W[r*rb:(r+1)*rb], act, op.ActStride, n, o)
					op.Out[j*op.OutStride+r] = o[0]
					op.Out[(j+1)*op.OutStride+r] = o[1]
					op.Out[(j+2)*op.OutStride+r] = o[2]
					op.Out[(j+3)*op.OutStride+r] = o[3]
				}
			}
		}
		for ; j < op.N; j++ {
			act := op.Act[j*op.ActStride:]
			out := op.Out[j*op.OutStride:]
			for r := r0; r < r1; r++ {
				out[r] = f(op.W[r*rb:(r+1)*rb], act, n)
			}
		}
		return
	}
	for j := 0; j < op.N; j++ {
		act := op.Act[j*op.ActStride:]
		out := op.Out[j*op.OutStride:]
		for r := r0; r < r1; r++ {
			out[r] = Dot(t, op.W[r*rb:(r+1)*rb], act, n)
		}
	}
}

// unpackMinN is the batch from which unpacking eight rows once beats unpacking them for every
// activation row.
const unpackMinN = 2

// rangeUnpacked is rangeQuant for prompt batches of the types with an unpacked eight-row form.
func (m *MatMul) rangeUnpacked(worker int, u *unpacked8, op *MatMulOp, rb, r0, r1 int, yd []float32, ys []int32) {
	n := op.Cols
	nb := n / 32
	if cap(m.unp[worker]) < 256*nb {
		m.unp[worker] = make([]byte, 256*nb)
		m.unpSc[worker] = make([]float32, 8*nb)
	}
	buf, sc := m.unp[worker][:256*nb], m.unpSc[worker][:8*nb]
	r := r0
	for ; r+8 <= r1; r += 8 {
		u.unpack(op.W[r*rb:], rb, n, buf, sc)
		// While the activation rows run against these eight rows, the next eight stream in,
		// a share per activation row.
		var next []byte
		if r+16 <= r1 {
			next = op.W[(r+8)*rb : (r+16)*rb]
		}
		share := (len(next)/op.N + 63) &^ 63
		for j := 0; j < op.N; j++ {
			pf := next[min(j*share, len(next)):min((j+1)*share, len(next))]
			u.dot(buf, sc, op.Act[j*op.ActStride:], yd[j*nb:(j+1)*nb], ys[j*nb:(j+1)*nb], n, op.Out[j*op.OutStride+r:], pf)
		}
	}
	for ; r < r1; r++ {
		for j := 0; j < op.N; j++ {
			op.Out[j*op.OutStride+r] = Dot(op.Type, op.W[r*rb:(r+1)*rb], op.Act[j*op.ActStride:], n)
		}
	}
}

// rowKernel returns the function each output of a native MatMul of type t equals exactly: the
// reference Dot where the exact Q8_0/Q4_0 kernels serve t, else VecDot.
func rowKernel(t ggml.Type) func(row, act []byte, n int) float32 {
	if fastRowTab[t] != nil {
		return func(row, act []byte, n int) float32 { return Dot(t, row, act, n) }
	}
	return func(row, act []byte, n int) float32 { return VecDot(t, row, act, n) }
}

// rangeF32 dequantizes each row once and dots it with every activation row; DotDequant does the
// same per call (for F32/F16/BF16 rows too: its direct kernels give DotF32's bits).
func (m *MatMul) rangeF32(worker int, op *MatMulOp, rb, r0, r1 int) {
	if cap(m.scratch[worker]) < op.Cols {
		m.scratch[worker] = make([]float32, op.Cols)
	}
	row := m.scratch[worker][:op.Cols]
	for r := r0; r < r1; r++ {
		if err := Dequantize(op.Type, op.W[r*rb:(r+1)*rb], row); err != nil {
			panic(fmt.Sprintf("kernels: matmul: %v", err))
		}
		for j := 0; j < op.N; j++ {
			op.Out[j*op.OutStride+r] = DotF32(row, op.X[j*op.XStride:j*op.XStride+op.Cols])
		}
	}
}

func growF32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// check validates the op's shapes and returns the weight row size in bytes.
func (op *MatMulOp) check() int {
	rb, err := op.Type.RowSize(int64(op.Cols))
	if err != nil {
		panic(fmt.Sprintf("kernels: matmul: %v", err))
	}
	bad := func(format string, args ...any) {
		panic(fmt.Sprintf("kernels: matmul %s %dx%d by %d: ", op.Type, op.Rows, op.Cols, op.N) + fmt.Sprintf(format, args...))
	}
	if int64(len(op.W)) < rb*int64(op.Rows) {
		bad("%d weight bytes, need %d", len(op.W), rb*int64(op.Rows))
	}
	if op.N < 1 {
		bad("no activation rows")
	}
	if (op.Act == nil) == (op.X == nil) {
		bad("give exactly one of Act and X")
	}
	if op.Act != nil {
		ab, _ := VecDotType(op.Type).RowSize(int64(op.Cols))
		if op.ActStride < int(ab) || len(op.Act) < (op.N-1)*op.ActStride+int(ab) {
			bad("activations of %d bytes with stride %d, rows of %d", len(op.Act), op.ActStride, ab)
		}
	} else if op.XStride < op.Cols || len(op.X) < (op.N-1)*op.XStride+op.Cols {
		bad("inputs of %d with stride %d", len(op.X), op.XStride)
	}
	if op.OutStride < op.Rows || len(op.Out) < (op.N-1)*op.OutStride+op.Rows {
		bad("output of %d with stride %d", len(op.Out), op.OutStride)
	}
	return int(rb)
}
