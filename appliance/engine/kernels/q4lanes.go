package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The fast Q4_0 path. Q4_0 weights are multiplied with Q8_0 activations that are first
// rearranged once per activation row (prepQ4_0Act), so that the kernels read them with aligned
// 64-byte loads while every weight row streams past; the kernels then accumulate per-block
// integer sums in float lanes (dotQ4_0Lanes is their arithmetic, in Go). A prepared activation
// row serves every weight row of every Q4_0 matrix that takes that input.

// q4Group is the prepared form of eight activation blocks: for each four blocks, their quants
// 0..15 (64 bytes) then their quants 16..31 (64 bytes); then the eight blocks' scales as
// float32 and their quant sums as int32. Blocks past the end of the row are zero.
const q4Group = 320

// q4PrepBytes is the size of a prepared activation row of nb blocks.
func q4PrepBytes(nb int) int { return (nb + 7) / 8 * q4Group }

// prepQ4_0Act writes the prepared form of nb Q8_0 activation blocks to dst
// (q4PrepBytes(nb) bytes).
func prepQ4_0Act(act []byte, nb int, dst []byte) {
	ng := (nb + 7) / 8
	if len(act) < 34*nb || len(dst) < ng*q4Group {
		panic(fmt.Sprintf("kernels: Q4_0 activations of %d blocks from %d bytes into %d", nb, len(act), len(dst)))
	}
	for g := 0; g < ng; g++ {
		p := dst[g*q4Group : (g+1)*q4Group]
		if 8*g+8 > nb {
			clear(p)
		}
		for k := 0; k < 8 && 8*g+k < nb; k++ {
			y := act[(8*g+k)*34 : (8*g+k+1)*34]
			q := p[k/4*128+k%4*16:]
			copy(q[:16], y[2:18])
			copy(q[64:80], y[18:34])
			var s int32
			for _, v := range y[2:] {
				s += int32(int8(v))
			}
			binary.LittleEndian.PutUint32(p[256+4*k:], math.Float32bits(getF16(y, 0)))
			binary.LittleEndian.PutUint32(p[288+4*k:], uint32(s))
		}
	}
}

// dotQ4_0Lanes is the arithmetic of the Q4_0 kernels (q4lanes_amd64.s) in Go: the twin that
// tests hold them to bit for bit. prep is the row's prepared activations.
//
// Per block b, D = float32(dx)·yd[b], and the block's 32 products are summed exactly in four
// int32 lanes: lane j holds elements 4j..4j+3 of the low nibbles and 16+4j..16+4j+3 of the high
// nibbles. Nibbles count unsigned (0..15): the offset of 8 comes off at the end as 8·Σ ys·D,
// summed in eight lanes of its own (block b mod 8). The lanes of blocks 8g..8g+3 and
// 8g+4..8g+7 form two accumulators of 16 float lanes each (lane 4(b mod 4)+j), and every block
// adds float(lane)·D into its four with one FMA; a row that is not a whole number of groups of
// eight blocks is padded with zero blocks, which add nothing.
func dotQ4_0Lanes(row, prep []byte, nb int) float32 {
	var acc [2][16]float32
	var corr [8]float32
	for b := 0; b < (nb+7)&^7; b++ {
		g, k := b/8, b%8
		p := prep[g*q4Group : (g+1)*q4Group]
		yd := math.Float32frombits(binary.LittleEndian.Uint32(p[256+4*k:]))
		ys := int32(binary.LittleEndian.Uint32(p[288+4*k:]))
		var x []byte
		if b < nb {
			x = row[b*18 : b*18+18]
		} else {
			x = make([]byte, 18)
		}
		d := float32(getF16(x, 0) * yd)
		ylo, yhi := p[k/4*128+k%4*16:], p[k/4*128+64+k%4*16:]
		a := acc[k/4][4*(k%4):]
		for j := 0; j < 4; j++ {
			var lane int32
			for e := 4 * j; e < 4*j+4; e++ {
				lane += int32(x[2+e]&0x0f)*int32(int8(ylo[e])) + int32(x[2+e]>>4)*int32(int8(yhi[e]))
			}
			a[j] = fma32x(float32(lane), d, a[j])
		}
		corr[k] = fma32x(float32(ys), d, corr[k])
	}
	var v [8]float32
	for l := range v {
		v[l] = (acc[0][l] + acc[1][l]) + (acc[0][l+8] + acc[1][l+8])
	}
	return sum8(&v) - 8*sum8(&corr)
}

// sum8 adds eight lanes the way the kernels' horizontal sum (HSUM) does.
func sum8(v *[8]float32) float32 {
	h := [4]float32{v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]}
	return (h[0] + h[2]) + (h[1] + h[3])
}

// fma32x is a float32 fused multiply-add, rounded once: the product of two float32 values is
// exact in float64, and the float64 sum's own rounding error (two-sum) settles the one case where
// rounding that sum to float32 would round twice, a sum exactly halfway between two float32s.
func fma32x(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	bp := s - float64(c)
	e := (p - bp) + (float64(c) - (s - bp)) // s + e == p + c exactly
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	toward := float32(math.Inf(1))
	if s < float64(r) {
		toward = float32(math.Inf(-1))
	}
	r2 := math.Nextafter32(r, toward) // the float32 on s's other side
	if (float64(r)+float64(r2))/2 != s {
		return r
	}
	// A tie: p+c lies on e's side of it.
	if (e > 0) == (r2 > r) {
		return r2
	}
	return r
}

// preparedKernel is a dot kernel over prepared activations (Q4_0 today): dot multiplies one
// weight row of n elements with one prepared activation row; rows, where not nil, does that for
// rows weight rows stride bytes apart in one call (rows4 for four runs of them in step, as
// rows4Fn), and dot4, where not nil, four prepared rows (stride bytes apart) at once: each
// result bit-identical to dot's.
type preparedKernel struct {
	name  string
	t     ggml.Type
	prep  func(act []byte, nb int, dst []byte)
	size  func(nb int) int
	dot   func(row, prep []byte, n int) float32
	rows  func(w []byte, stride, rows int, prep []byte, n int, out []float32)
	rows4 func(w []byte, stride, count, dist int, prep []byte, n int, out []float32) // a rows4Fn
	dot4  func(row, prep []byte, stride int, n int, out *[4]float32)
	// dot2x4 is dot4 for two weight rows wstride bytes apart at once (out[4r+c]: row r,
	// column c), bit for bit.
	dot2x4 func(w []byte, wstride int, prep []byte, stride int, n int, out *[8]float32)
	// pairs is dot2x4 over a run of row pairs in one call (a vecDot2x4PairsFn), where not nil.
	pairs vecDot2x4PairsFn
	// unitRows, where more than one, is what the rows of MatMul's units are made a multiple
	// of: the row groups pairs runs at its fastest.
	unitRows int
	// minN is the fewest activation rows for which MatMul prepares them; with fewer it uses
	// the type's plain kernels (which must give the same results).
	minN int
}

var (
	fastPrepared     [ggml.BF16 + 1]*preparedKernel
	variantsPrepared []*preparedKernel
)

// prepPool holds the prepared activations of VecDot calls, which do not keep them.
var prepPool = sync.Pool{New: func() any { return new([]byte) }}

// usePrepared installs k for its type, as the VecDot of the type too (preparing the
// activations on every call: MatMul prepares each activation row once instead), unless k is
// only for batches (minN).
func usePrepared(k *preparedKernel) {
	fastPrepared[k.t] = k
	variantsPrepared = append(variantsPrepared, k)
	if k.minN > 0 {
		return // single rows keep the type's plain dot
	}
	use(k.name, k.t, func(row, act []byte, n int) float32 {
		nb := n / k.t.BlockSize()
		bp := prepPool.Get().(*[]byte)
		buf := alignedBytes(*bp, k.size(nb))
		*bp = buf
		k.prep(act, nb, buf)
		r := k.dot(row, buf, n)
		prepPool.Put(bp)
		return r
	})
}

// unusePrepared removes t's prepared kernels, where kernels of a different arithmetic replace
// its plain ones (with which the prepared ones must agree).
func unusePrepared(t ggml.Type) {
	fastPrepared[t] = nil
	variantsPrepared = slices.DeleteFunc(variantsPrepared, func(k *preparedKernel) bool { return k.t == t })
}

// alignedBytes returns n bytes starting on a 64-byte boundary (a cache line, so that the
// kernels' 64-byte loads never straddle two), reusing buf's memory when it is large enough.
func alignedBytes(buf []byte, n int) []byte {
	if cap(buf) < n+63 {
		buf = make([]byte, n+63)
	}
	buf = buf[:cap(buf)]
	off := int(-uintptr(unsafe.Pointer(&buf[0])) & 63)
	return buf[off : off+n]
}

// WeightBytes returns n bytes, 64-byte aligned, for packed weights, on huge pages where the
// system gives them (adviseHuge). On this project's 2-core benchmark machine that raised decode
// at two threads by 5-15% for Q4_0, Q4_K and Q8_0 (exo bench -p 0 -n 64, medians of 4-5
// alternating runs); at one thread by up to 9%.
func WeightBytes(n int) []byte {
	b := alignedBytes(nil, n)
	_ = adviseHuge(b)
	return b
}
