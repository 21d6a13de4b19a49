package model

import (
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// q8Elems and q8Bytes are the geometry of a Q8_0 block: 32 values as int8 after an F16 scale.
const (
	q8Elems = 32
	q8Bytes = 34
)

// kvQ8 is the layout of one position's keys (or values) in a Q8_0 cache: each KV head's
// vector is quantized on its own, in whole blocks, and stored in its head's run of positions
// (see Seq), so attention reads one head as a run of blocks. A head width that is not a
// multiple of 32 (tiny test models have 8 or 16) is padded with zeros to whole blocks; llama.cpp
// refuses such models, and for the widths of real models (64, 128) a head's blocks are exactly
// those of llama.cpp's row of Q8_0 blocks.
type kvQ8 struct {
	heads, dim int
	blocks     int // per head
	headBytes  int
	rowBytes   int // per position, all heads
}

func newKVQ8(heads, dim int) kvQ8 {
	nb := (dim + q8Elems - 1) / q8Elems
	return kvQ8{heads: heads, dim: dim, blocks: nb, headBytes: nb * q8Bytes, rowBytes: heads * nb * q8Bytes}
}

// padded is the width of one head after padding to whole blocks.
func (l kvQ8) padded() int { return l.blocks * q8Elems }

// store quantizes x (heads × dim values) as position pos of the layer's cache of ctxLen
// positions. The rounding is that of llama.cpp's CPU copy into a Q8_0 cache (quantize_row_q8_0
// of its SIMD builds, which QuantizeActivations mirrors; each block on its own, so quantizing
// head by head gives its bits). pad is scratch of at least padded() values.
func (l kvQ8) store(layer []byte, ctxLen, pos int, x, pad []float32) {
	p := pad[:l.padded()]
	clear(p[l.dim:])
	for h := 0; h < l.heads; h++ {
		src := x[h*l.dim : (h+1)*l.dim]
		if l.dim%q8Elems != 0 {
			copy(p, src)
			src = p
		}
		o := headAt(h, pos, ctxLen) * l.headBytes
		kernels.QuantizeActivations(ggml.Q8_0, src, layer[o:o+l.headBytes:o+l.headBytes])
	}
}

// quantizeQuery converts one query head to Q8_0 for the dot with the keys (llama.cpp converts
// Q to the keys' vec_dot type the same way), zero-padded like the keys.
func (l kvQ8) quantizeQuery(q, pad []float32, dst []byte) []byte {
	p := pad[:l.padded()]
	copy(p, q)
	clear(p[len(q):])
	return kernels.QuantizeActivations(ggml.Q8_0, p, dst)
}

// headQ8 is attention of one query head over a Q8_0 cache, computed like llama.cpp's CPU flash
// attention with a Q8_0 cache: the query is quantized to Q8_0, scores are Q8_0·Q8_0 dots, and
// the online softmax accumulates dequantized values in float32.
func (j *attnJob) headQ8(sc *attnScratch, seq *Seq, h, pos int, q, out []float32) {
	c, li := j.s.Config, j.li
	kvh := h / (c.NHead / c.NHeadKV)
	kl, vl := j.s.kvK, j.s.kvV
	keys, vals := seq.kQ8[li], seq.vQ8[li]
	q8 := kl.quantizeQuery(q, sc.pad, sc.q8)
	acc := sc.acc32[:c.HeadDimV]
	clear(acc)
	m, sum := float32(math.Inf(-1)), float32(0)
	for t0 := 0; t0 <= pos; t0 += attnBlock {
		n := min(attnBlock, pos+1-t0)
		s, e := sc.scores[:n], sc.expw[:n]
		ko := headAt(kvh, t0, seq.ctxLen) * kl.headBytes
		kernels.DotQ8_0Rows(s, q8, keys[ko:], kl.headBytes, j.scale)
		m, sum = onlineWeights(s, e, sc.rescale[:n], m, sum)
		vo := headAt(kvh, t0, seq.ctxLen) * vl.headBytes
		kernels.MadQ8_0Rows(acc, vals[vo:], vl.headBytes, sc.rescale[:n], e)
	}
	inv := 1 / sum
	for d := range out {
		out[d] = acc[d] * inv
	}
}

// headsQ8 is headQ8 for the g query heads h0.. of one KV head at once (their queries in qs,
// their outputs to outs, head after head): each block of keys and values is read once for all
// of them (kernels.DotQ8_0RowsGroup, MadQ8_0RowsGroup), and each head's arithmetic is headQ8's.
func (j *attnJob) headsQ8(sc *attnScratch, seq *Seq, h0, g, pos int, qs, outs []float32) {
	c, li := j.s.Config, j.li
	kvh := h0 / (c.NHead / c.NHeadKV)
	kl, vl := j.s.kvK, j.s.kvV
	keys, vals := seq.kQ8[li], seq.vQ8[li]
	q8 := sc.q8[:g*kl.headBytes]
	for i := 0; i < g; i++ {
		kl.quantizeQuery(qs[i*c.HeadDimK:(i+1)*c.HeadDimK], sc.pad, q8[i*kl.headBytes:(i+1)*kl.headBytes])
	}
	acc := sc.acc32[:g*c.HeadDimV]
	clear(acc)
	sum := groupBlocks(sc, g, pos, func(s []float32, t0 int) {
		kernels.DotQ8_0RowsGroup(s, g, q8, keys[headAt(kvh, t0, seq.ctxLen)*kl.headBytes:], kl.headBytes, j.scale)
	}, func(ms, e []float32, t0 int) {
		kernels.MadQ8_0RowsGroup(acc, g, vals[headAt(kvh, t0, seq.ctxLen)*vl.headBytes:], vl.headBytes, ms, e)
	})
	for i := 0; i < g; i++ {
		inv := 1 / sum[i]
		for d := i * c.HeadDimV; d < (i+1)*c.HeadDimV; d++ {
			outs[d] = acc[d] * inv
		}
	}
}
