package model

import (
	"encoding/binary"
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
// vector is quantized on its own, in whole blocks, so attention reads one head as a run of
// blocks. A head width that is not a multiple of 32 (tiny test models have 8 or 16) is padded
// with zeros to whole blocks; llama.cpp refuses such models, and for the widths of real models
// (64, 128) the layout is exactly its row of Q8_0 blocks.
type kvQ8 struct {
	heads, dim int
	blocks     int // per head
	headBytes  int
	rowBytes   int // per position
}

func newKVQ8(heads, dim int) kvQ8 {
	nb := (dim + q8Elems - 1) / q8Elems
	return kvQ8{heads: heads, dim: dim, blocks: nb, headBytes: nb * q8Bytes, rowBytes: heads * nb * q8Bytes}
}

// padded is the width of one head after padding to whole blocks.
func (l kvQ8) padded() int { return l.blocks * q8Elems }

// store quantizes x (heads × dim values) into row. The rounding is that of llama.cpp's CPU
// copy into a Q8_0 cache (quantize_row_q8_0 of its SIMD builds, which QuantizeActivations
// mirrors). pad is scratch of at least padded() values.
func (l kvQ8) store(row []byte, x, pad []float32) {
	if l.dim%q8Elems == 0 {
		// Blocks never straddle heads, so the whole row quantizes in one call.
		kernels.QuantizeActivations(ggml.Q8_0, x, row[:l.rowBytes:l.rowBytes])
		return
	}
	p := pad[:l.padded()]
	clear(p[l.dim:])
	for h := 0; h < l.heads; h++ {
		copy(p, x[h*l.dim:(h+1)*l.dim])
		o := h * l.headBytes
		kernels.QuantizeActivations(ggml.Q8_0, p, row[o:o+l.headBytes:o+l.headBytes])
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

// dotQ8_0 returns k·q for one head: nb Q8_0 blocks of k against the query's blocks q, whose
// scales are given as float32 in qd. Each block's integer dot is scaled by dk·dq and summed in
// float32 in block order: exactly kernels.Dot's Q8_0 arithmetic (llama.cpp's scalar
// vec_dot_q8_0_q8_0). It is plain Go because a head is only two to four blocks: the SIMD
// kernels of kernels.VecDot work eight blocks at a time and fall back to scalar code below
// that, after preparing tables per call that cost more than the dot itself here.
func dotQ8_0(k, q []byte, qd []float32, nb int) float32 {
	var sum float32
	for b := 0; b < nb; b++ {
		x := k[b*q8Bytes : (b+1)*q8Bytes : (b+1)*q8Bytes]
		y := q[b*q8Bytes+2 : (b+1)*q8Bytes : (b+1)*q8Bytes]
		xs := x[2:]
		_, _ = xs[31], y[31]
		var s0, s1, s2, s3 int32
		for j := 0; j < 32; j += 4 {
			s0 += int32(int8(xs[j])) * int32(int8(y[j]))
			s1 += int32(int8(xs[j+1])) * int32(int8(y[j+1]))
			s2 += int32(int8(xs[j+2])) * int32(int8(y[j+2]))
			s3 += int32(int8(xs[j+3])) * int32(int8(y[j+3]))
		}
		d := kernels.F16ToF32(binary.LittleEndian.Uint16(x)) * qd[b]
		// The conversion rounds the product before the add, as ggml's C does: without it
		// arm64's compiler fuses them into one FMA and the last bit differs.
		sum += float32(float32(s0+s1+s2+s3) * d)
	}
	return sum
}

// madQ8_0 adds s·v to acc, v being the first len(acc) values of the Q8_0 blocks b. Each value
// is dequantized to float32 first (d·q rounded), then scaled and added, as llama.cpp's flash
// attention does for a quantized V (to_float, then ggml_vec_mad_f32). Plain Go: a SIMD version
// belongs in kernels (int8 widened to float32 lanes, one fused multiply-add per lane).
func madQ8_0(acc []float32, b []byte, s float32) {
	n := len(acc)
	for blk := 0; blk*q8Elems < n; blk++ {
		x := b[blk*q8Bytes : (blk+1)*q8Bytes]
		d := kernels.F16ToF32(binary.LittleEndian.Uint16(x))
		a := acc[blk*q8Elems : min(n, (blk+1)*q8Elems)]
		qs := x[2 : 2+len(a)]
		for j := range a {
			v := d * float32(int8(qs[j]))
			a[j] += v * s
		}
	}
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
	qd := sc.qd[:kl.blocks]
	for b := range qd {
		qd[b] = kernels.F16ToF32(binary.LittleEndian.Uint16(q8[b*q8Bytes:]))
	}
	acc := sc.acc32[:c.HeadDimV]
	clear(acc)
	m, sum := float32(math.Inf(-1)), float32(0)
	for t0 := 0; t0 <= pos; t0 += attnBlock {
		s, e := sc.scores[:min(attnBlock, pos+1-t0)], sc.expw
		for i := range s {
			ko := (t0+i)*kl.rowBytes + kvh*kl.headBytes
			s[i] = dotQ8_0(keys[ko:ko+kl.headBytes], q8, qd, kl.blocks) * j.scale
		}
		softmaxFactors(s, e, m)
		for i, v := range s {
			ms, vs := float32(1), e[i]
			if v > m {
				ms, vs, m = e[i], 1, v
				kernels.Scale(acc, ms)
			}
			vo := (t0+i)*vl.rowBytes + kvh*vl.headBytes
			madQ8_0(acc, vals[vo:vo+vl.headBytes], vs)
			sum = sum*ms + vs
		}
	}
	inv := 1 / sum
	for d := range out {
		out[d] = acc[d] * inv
	}
}
