package kernels

import (
	"fmt"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// MatMulOp is one weight matrix times N activation rows: Out[j*OutStride + r] = row r of W ·
// activation row j, for r < Rows and j < N.
//
// With Act set, the activations are N rows of QuantizeActivations(Type, ...) output, ActStride
// bytes apart (Q8_0 quants are never -128 there, and the AVX2 eight-column Q8_0 kernel relies
// on it), and each product is VecDot (the native path). With X set instead, they are N
// float32 rows, XStride apart, and each product is DotDequant's exact fp32 arithmetic.
type MatMulOp struct {
	Type       ggml.Type
	W          []byte // Rows × Cols values of Type, row-major
	Rows, Cols int
	N          int

	// Packed, when set, holds the weights instead of W (which may then be nil): Pack's copy
	// of the same Rows × Cols matrix. Products with it are computed by the packed kernels,
	// with their own arithmetic (see Packed), the same for every batch size.
	Packed *Packed

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
// weight row with an activation row (VecDot; the reference Dot for Q8_0, whose SIMD kernels
// reproduce it; Packed.Dot for packed weights; DotDequant on the X path). Decode products (one
// to three activation rows) walk the matrix as four streams in step where a kernel can (see
// Run): per row the arithmetic is the same.
//
// A MatMul holds the bookkeeping of one call and is reused across calls to avoid allocating; it
// is used by one goroutine at a time.
type MatMul struct {
	Ops []MatMulOp

	units   []int // cumulative unit count per op
	per     []int // rows per unit, per op (per quarter where striped)
	quarter []int // per op: rows per quarter of a striped op, or 0
	rowB    []int
	scratch [][]float32 // per worker: a dequantized row for the X path
	yd      [][]float32 // per op: activation tables of the eight-row kernels (N × blocks)
	ys      [][]int32   // per op: activation quant sums of the eight-row kernels
	prep    [][]byte    // per op: prepared activations (N rows of prepSz[op] bytes)
	prepSz  []int
	// from is, per op, the op whose prepared activations or tables it reads: itself, or an
	// earlier op of the same type over the same activations (q, k and v; gate and up).
	from  []int
	pj    prepJob
	quad  []*[4]float32             // per worker: results of a four-column kernel (on the heap once)
	panel []*[8 * panelRows]float32 // per worker: results of a packed panel cut short
	unp   [][]byte                  // per worker: eight unpacked weight rows (prompt batches)
	unpSc [][]float32               // per worker: their block scales
	pad   [][]float32               // per worker: results of a packed pass wider than its rows
}

// unitBytes is the weight bytes one unit of a decode step covers (N < 32; on several threads
// see decodeUnitBytes): each weight streams from memory once, and bigger units mean fewer
// hand-offs and fewer cold starts of the prefetching, while the shared counter is still
// touched rarely; a unit's rows stay in the level-2 cache for the passes after the first
// where a batch takes several.
const unitBytes = 128 << 10

// decodeUnitBytes is unitBytes on several threads for a decode step that reads each weight
// once, in one pass for all its activation rows (onePass). Longer runs of memory a unit: on
// the 2-core Zen 5 VM at two threads, 1 MiB against 128 KiB decoded Q4_0 1.01-1.19x and Q4_K_M
// 1.10-1.14x faster (512 KiB 1.01-1.13x and 1.04-1.12x; `exo bench -p 0 -n 64 -t 2`, four
// rounds; all three models 1.04-1.11x in three more). One thread walks the units in order
// anyway, and there 1 MiB did no better (0.97-1.00x for Q4_K_M over five rounds). Where many
// threads share a matrix the cap of eight units a worker keeps units smaller anyway.
const decodeUnitBytes = 1 << 20

// promptUnitBytes is the weight bytes one unit of a prompt batch (N >= 32) covers. A unit's
// rows are re-read from the level-2 cache for every group of activation rows, and a bigger unit
// lets each group, once loaded, serve more weight rows. On a Zen 4 core 256 KB sped up pp128 by
// 9-11% for BF16 and F16 weights and 2-3% for Q4_0, Q8_0 and Q4_K_M against the 32 KB before
// (128 and 512 KB did alike).
const promptUnitBytes = 256 << 10

// Run computes every op on p.
func (m *MatMul) Run(p *Pool) {
	m.units, m.per, m.rowB, m.quarter = m.units[:0], m.per[:0], m.rowB[:0], m.quarter[:0]
	total, padLen := 0, 0
	for i := range m.Ops {
		op := &m.Ops[i]
		rb := op.check()
		ub := unitBytes
		if p.Threads() > 1 && op.onePass() {
			ub = decodeUnitBytes
		}
		per := max(1, ub/rb)
		if op.N >= 32 {
			per = max(1, promptUnitBytes/rb)
		}
		// Keep enough units that every worker gets several, for balance on a busy machine.
		per = max(1, min(per, op.Rows/(8*p.Threads())))
		if op.Packed != nil {
			// Whole panels of the packed layout.
			per = (per + panelRows - 1) &^ (panelRows - 1)
			if op.N > 1 {
				padLen = max(padLen, 8*per) // a padded pass's results (rangePacked)
			}
		} else if fastUnpacked8[op.Type] != nil && op.Act != nil && op.N >= unpackMinN {
			// Whole groups of eight rows for the unpacked kernels.
			per = (per + 7) &^ 7
		} else if k := op.prepared(); k != nil && k.unitRows > 1 {
			per = (per + k.unitRows - 1) / k.unitRows * k.unitRows
		} else if u := pairsRows(op.Type); u > 2 && op.N >= 4 {
			// rangeQuant's runs of rows (rows of 8192 BF16 elements came in sixteens: a
			// quarter of them by the slower two-row kernel).
			per = (per + u - 1) / u * u
		}
		q := 0
		if op.Act != nil && op.N < 4 && op.Rows >= stripeMin && op.hasRows4() {
			// Decode: each unit takes the same stretch of the matrix's four quarters, which the
			// kernels walk as four streams in step, and consecutive units continue the streams.
			// A stretch per stream of about ub (short stretches cost a restart of the streams
			// each), but at least four units for each worker.
			q = (op.Rows + 3) / 4
			per = max(1, ub/rb, per/4)
			per = max(1, min(per, q/(4*p.Threads())))
			total += (q + per - 1) / per
		} else {
			total += (op.Rows + per - 1) / per
		}
		m.units = append(m.units, total)
		m.per = append(m.per, per)
		m.rowB = append(m.rowB, rb)
		m.quarter = append(m.quarter, q)
	}
	for len(m.scratch) < p.Threads() {
		m.scratch = append(m.scratch, nil)
		m.quad = append(m.quad, new([4]float32))
		m.panel = append(m.panel, new([8 * panelRows]float32))
		m.unp = append(m.unp, nil)
		m.unpSc = append(m.unpSc, nil)
		m.pad = append(m.pad, nil)
	}
	for w := range m.pad {
		if len(m.pad[w]) < padLen {
			m.pad[w] = make([]float32, padLen)
		}
	}
	for len(m.ys) < len(m.Ops) {
		m.yd = append(m.yd, nil)
		m.ys = append(m.ys, nil)
		m.prep = append(m.prep, nil)
		m.prepSz = append(m.prepSz, 0)
	}
	m.from = m.from[:0]
	m.pj.m, m.pj.ops, m.pj.ends = m, m.pj.ops[:0], m.pj.ends[:0]
	units := 0
	for i := range m.Ops {
		op := &m.Ops[i]
		m.from = append(m.from, i)
		if op.Act == nil {
			continue
		}
		if j := m.samePrep(i); j >= 0 {
			m.from[i] = j
			continue
		}
		switch pk, k := op.Packed, op.prepared(); {
		case pk != nil:
			sz := pk.actBytes()
			m.prep[i] = alignedBytes(m.prep[i], (op.N+packedPad)*sz)
			m.prepSz[i] = sz
		case k != nil:
			// Each activation row is rearranged once for the kernels instead of by every
			// weight row.
			sz := k.size(op.Cols / op.Type.BlockSize())
			m.prep[i] = alignedBytes(m.prep[i], op.N*sz)
			m.prepSz[i] = sz
		case fastRowTab[op.Type] != nil || fastUnpacked8[op.Type] != nil:
			// Per activation row and block, the scale as float32 and the sum of the quants:
			// each is computed once instead of once per weight row.
			nb := op.Cols / 32
			m.yd[i] = growF32(m.yd[i], op.N*nb)
			if cap(m.ys[i]) < op.N*nb {
				m.ys[i] = make([]int32, op.N*nb)
			}
			m.ys[i] = m.ys[i][:op.N*nb]
		default:
			continue
		}
		units += op.N
		m.pj.ops, m.pj.ends = append(m.pj.ops, i), append(m.pj.ends, units)
	}
	// A prompt's activation rows are prepared in parallel: done by one core they cost a
	// twentieth of a pp128 pass at one thread, and with the model's other serial steps they
	// held a 16-core Xeon to 5.8 times its one-thread rate.
	if units >= 4*p.Threads() {
		p.For(units, 0, &m.pj)
	} else {
		m.pj.Range(0, 0, units)
	}
	p.For(total, 1, m)
}

// samePrep returns an earlier op whose prepared activations op i can read (the same type,
// width, rows and activations), or -1.
func (m *MatMul) samePrep(i int) int {
	op := &m.Ops[i]
	for j := range i {
		o := &m.Ops[j]
		if m.from[j] == j && o.Act != nil && o.Type == op.Type && o.Cols == op.Cols && o.N == op.N &&
			o.ActStride == op.ActStride && &o.Act[0] == &op.Act[0] && (o.Packed == nil) == (op.Packed == nil) {
			return j
		}
	}
	return -1
}

// prepJob prepares the activation rows of the ops that need it, one unit per op and row.
type prepJob struct {
	m    *MatMul
	ops  []int // the ops
	ends []int // cumulative rows
}

func (j *prepJob) Range(_, lo, hi int) {
	m, k := j.m, 0
	for u := lo; u < hi; u++ {
		for u >= j.ends[k] {
			k++
		}
		i := j.ops[k]
		op := &m.Ops[i]
		r := u
		if k > 0 {
			r -= j.ends[k-1]
		}
		act := op.Act[r*op.ActStride:]
		switch pk, kern := op.Packed, op.prepared(); {
		case pk != nil:
			sz := m.prepSz[i]
			pk.prep(act, m.prep[i][r*sz:(r+1)*sz])
		case kern != nil:
			sz := m.prepSz[i]
			kern.prep(act, op.Cols/op.Type.BlockSize(), m.prep[i][r*sz:(r+1)*sz])
		default:
			nb := op.Cols / 32
			actTables(act, nb, m.yd[i][r*nb:(r+1)*nb], m.ys[i][r*nb:(r+1)*nb])
		}
	}
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
		if q := m.quarter[oi]; q > 0 {
			c := m.per[oi]
			r0 := (u - start) * c
			if r0+c <= q && 3*q+r0+c <= op.Rows {
				m.rangeRows4(oi, op, r0, c, q)
				continue
			}
			// A stretch cut short by the end of a quarter or of the matrix.
			for k := 0; k < 4; k++ {
				if a, b := k*q+r0, min(k*q+r0+c, (k+1)*q, op.Rows); a < b {
					m.rangeOne(worker, oi, op, a, b)
				}
			}
			continue
		}
		r0 := (u - start) * m.per[oi]
		m.rangeOne(worker, oi, op, r0, min(r0+m.per[oi], op.Rows))
	}
}

// prepared returns the prepared kernels op uses, nil where it takes its activations as they
// are.
func (op *MatMulOp) prepared() *preparedKernel {
	if k := fastPrepared[op.Type]; k != nil && op.N >= k.minN {
		return k
	}
	return nil
}

// stripeMin is the matrix height from which decode products are striped (see Run).
const stripeMin = 64

// hasRows4 reports whether op's single-column products have a four-stream kernel
// (rangeRows4), consulted in rangeOne's order.
func (op *MatMulOp) hasRows4() bool {
	switch {
	case op.Packed != nil:
		return false // one run of memory a panel, streamed best alone (packedSet)
	case op.prepared() != nil:
		return op.prepared().rows4 != nil
	default:
		return fastRows4[op.Type] != nil
	}
}

// rangeRows4 computes rows k·q + [r0, r0+c) for k < 4 of a striped op, every activation row
// in turn, with the four-stream kernels.
func (m *MatMul) rangeRows4(oi int, op *MatMulOp, r0, c, q int) {
	n := op.Cols
	end := 3*q + r0 + c
	for j := 0; j < op.N; j++ {
		out := op.Out[j*op.OutStride+r0 : j*op.OutStride+end]
		switch {
		case op.prepared() != nil:
			rb, f := m.rowB[oi], m.from[oi]
			sz := m.prepSz[f]
			op.prepared().rows4(op.W[r0*rb:end*rb], rb, c, q, m.prep[f][j*sz:(j+1)*sz], n, out)
		default:
			rb := m.rowB[oi]
			fastRows4[op.Type](op.W[r0*rb:end*rb], rb, c, q, op.Act[j*op.ActStride:], n, out)
		}
	}
}

// rangeOne computes rows [r0, r1) of op for every activation row.
func (m *MatMul) rangeOne(worker, oi int, op *MatMulOp, r0, r1 int) {
	f := m.from[oi] // the op whose prepared activations or tables this one reads
	switch {
	case op.X != nil:
		m.rangeF32(worker, op, m.rowB[oi], r0, r1)
	case op.Packed != nil:
		op.rangePacked(r0, r1, m.prep[f], m.prepSz[f], m.panel[worker], m.pad[worker])
	case op.prepared() != nil:
		op.rangePrepared(op.prepared(), m.rowB[oi], r0, r1, m.prep[f], m.prepSz[f], m.quad[worker], (*[8]float32)(m.panel[worker][:8]))
	default:
		if u := fastUnpacked8[op.Type]; u != nil && op.N >= unpackMinN && r1-r0 >= 8 {
			m.rangeUnpacked(worker, u, op, m.rowB[oi], r0, r1, m.yd[f], m.ys[f])
		} else {
			op.rangeQuant(m.rowB[oi], r0, r1, m.yd[f], m.ys[f], m.quad[worker], (*[8]float32)(m.panel[worker][:8]))
		}
	}
}

func (op *MatMulOp) rangeQuant(rb, r0, r1 int, yd []float32, ys []int32, o *[4]float32, o8 *[8]float32) {
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
			// products while the four rows stay in the level-1 cache (and each activation load
			// serves two weight rows, where the kernel has a two-row form).
			f2, fp := fastDots2x4[t], fastPairs4[t]
			for ; j+4 <= op.N; j += 4 {
				act := op.Act[j*op.ActStride:]
				r := r0
				if pairs := (r1 - r0) / 2; fp != nil && pairs > 0 {
					fp(op.W[r0*rb:], rb, pairs, act, op.ActStride, n, op.Out[j*op.OutStride+r0:], op.OutStride)
					r += 2 * pairs
				}
				if f2 != nil {
					for ; r+2 <= r1; r += 2 {
						f2(op.W[r*rb:(r+2)*rb], rb, act, op.ActStride, n, o8)
						for c := range 4 {
							op.Out[(j+c)*op.OutStride+r] = o8[c]
							op.Out[(j+c)*op.OutStride+r+1] = o8[4+c]
						}
					}
				}
				for ; r < r1; r++ {
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
			if fr := fastRows[t]; fr != nil {
				fr(op.W[r0*rb:r1*rb], rb, r1-r0, act, n, out[r0:r1])
				continue
			}
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

// rangePacked is rangeQuant for packed weights: rows [r0, r1) start on a panel; a panel cut
// short by the end of the matrix goes through scr. A pass wider than the activation rows it
// has left (packedPass) reads the padding rows after prep's last for its missing columns and
// writes all its columns to pad, from which the real ones are copied.
func (op *MatMulOp) rangePacked(r0, r1 int, prep []byte, sz int, scr *[8 * panelRows]float32, pad []float32) {
	pk := op.Packed
	p0 := r0 / panelRows
	full := (r1 - r0) / panelRows // whole panels
	tail := r1 - r0 - full*panelRows
	w := pk.data[p0*pk.stride:]
	k, dot := pk.kernels(), pk.dotGo
	if k != nil {
		dot = k.dot
	}
	for j := 0; j < op.N; {
		width, f := packedPass(k, op.N-j)
		if width == 1 {
			p := prep[j*sz : (j+1)*sz]
			out := op.Out[j*op.OutStride+r0:]
			if full > 0 {
				dot(w, pk.stride, full, pk.nb, p, out)
			}
			if tail > 0 {
				dot(w[full*pk.stride:], pk.stride, 1, pk.nb, p, scr[:panelRows])
				copy(out[full*panelRows:r1-r0], scr[:])
			}
			j++
			continue
		}
		cols := min(width, op.N-j)
		p := prep[j*sz : (j+width)*sz]
		if full > 0 {
			if cols == width {
				f(w, pk.stride, full, pk.nb, p, sz, op.Out[j*op.OutStride+r0:], op.OutStride)
			} else {
				span := full * panelRows
				f(w, pk.stride, full, pk.nb, p, sz, pad[:width*span], span)
				for c := 0; c < cols; c++ {
					copy(op.Out[(j+c)*op.OutStride+r0:(j+c)*op.OutStride+r0+span], pad[c*span:])
				}
			}
		}
		if tail > 0 {
			f(w[full*pk.stride:], pk.stride, 1, pk.nb, p, sz, scr[:], panelRows)
			for c := 0; c < cols; c++ {
				copy(op.Out[(j+c)*op.OutStride+r0+full*panelRows:(j+c)*op.OutStride+r1], scr[c*panelRows:])
			}
		}
		j += cols
	}
}

// onePass reports whether a decode step of op serves all its activation rows in one pass over
// the weights: one row, or a batch that one pass of a packed kernel takes whole (packedPass).
func (op *MatMulOp) onePass() bool {
	if op.N == 1 {
		return true
	}
	if op.Packed == nil || op.Act == nil {
		return false
	}
	w, _ := packedPass(op.Packed.kernels(), op.N)
	return w >= op.N
}

// packedPad is how many activation rows past an op's last a packed pass may read (rows of a
// pass beyond the op's N, whose results rangePacked drops; they hold zeros or earlier calls'
// prepared rows, never bits a kernel could trip on).
const packedPad = 7

// packedPass returns the columns of the next pass over packed weights with left activation rows
// still to do, and its kernel (nil for one column, k.dot). Eight, then four rows a pass where
// there are kernels for them: each panel is loaded and unpacked once for all of them, and the
// fewer the passes, the fewer of them wait on memory rather than compute. Fewer rows than the
// kernel's columns ride in one pass of it, where the set's kernels are wide enough that this
// costs less than the passes it replaces (k.pad4, measured at load: padtune.go): from pad4
// rows in a pass of four, and, where a pass of eight would leave a group for such a pass, from
// 4+pad4 rows in a pass of eight (on a Zen 5 core, N=6 took as long as N=8 either way, N=7
// 1.1-1.2x of N=8 in a pass of four and three of one).
func packedPass(k *packedKernelSet, left int) (int, func(w []byte, stride, panels, nb int, y []byte, ystride int, out []float32, ostride int)) {
	if k == nil {
		return 1, nil
	}
	pad := int(k.pad4.Load())
	switch {
	case k.dot8 != nil && (left >= 8 || pad > 0 && left >= 4+pad):
		return 8, k.dot8
	case k.dot4 != nil && (left >= 4 || pad > 0 && left >= pad):
		return 4, k.dot4
	}
	return 1, nil
}

// dotGo is packedKernelSet.dot with the Go twin (CPUs without the kernels).
func (pk *Packed) dotGo(w []byte, stride, panels, nb int, y []byte, out []float32) {
	for p := 0; p < panels; p++ {
		pk.twin(w[p*stride:], y, (*[panelRows]float32)(out[p*panelRows:]))
	}
}

// rangePrepared is rangeQuant for the types whose kernels take prepared activations (sz bytes
// per activation row in prep).
func (op *MatMulOp) rangePrepared(k *preparedKernel, rb, r0, r1 int, prep []byte, sz int, o *[4]float32, o8 *[8]float32) {
	n := op.Cols
	j := 0
	if k.dot4 != nil {
		// Four activation rows per pass over the weight rows: each weight block is loaded and
		// unpacked once for four products (and each activation load serves two weight rows,
		// where there is dot2x4).
		for ; j+4 <= op.N; j += 4 {
			p := prep[j*sz : (j+4)*sz]
			r := r0
			if pairs := (r1 - r0) / 2; k.pairs != nil && pairs > 0 {
				k.pairs(op.W[r0*rb:], rb, pairs, p, sz, n, op.Out[j*op.OutStride+r0:], op.OutStride)
				r += 2 * pairs
			}
			if k.dot2x4 != nil {
				for ; r+2 <= r1; r += 2 {
					k.dot2x4(op.W[r*rb:(r+2)*rb], rb, p, sz, n, o8)
					for c := range 4 {
						op.Out[(j+c)*op.OutStride+r] = o8[c]
						op.Out[(j+c)*op.OutStride+r+1] = o8[4+c]
					}
				}
			}
			for ; r < r1; r++ {
				k.dot4(op.W[r*rb:(r+1)*rb], p, sz, n, o)
				op.Out[j*op.OutStride+r] = o[0]
				op.Out[(j+1)*op.OutStride+r] = o[1]
				op.Out[(j+2)*op.OutStride+r] = o[2]
				op.Out[(j+3)*op.OutStride+r] = o[3]
			}
		}
	}
	for ; j < op.N; j++ {
		p := prep[j*sz : (j+1)*sz]
		out := op.Out[j*op.OutStride:]
		if k.rows != nil {
			k.rows(op.W[r0*rb:r1*rb], rb, r1-r0, p, n, out[r0:r1])
			continue
		}
		for r := r0; r < r1; r++ {
			out[r] = k.dot(op.W[r*rb:(r+1)*rb], p, n)
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
// reference Dot where the exact Q8_0 kernels serve t, else VecDot.
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
		var err error
		if op.Packed != nil {
			err = op.Packed.DequantizeRow(r, row)
		} else {
			err = Dequantize(op.Type, op.W[r*rb:(r+1)*rb], row)
		}
		if err != nil {
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
	if pk := op.Packed; pk != nil {
		if pk.t != op.Type || pk.rows != op.Rows || pk.cols != op.Cols {
			bad("packed weights are %s %dx%d", pk.t, pk.rows, pk.cols)
		}
	} else if int64(len(op.W)) < rb*int64(op.Rows) {
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
