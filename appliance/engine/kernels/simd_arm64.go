//go:build arm64 && !purego

package kernels

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The NEON kernels of simd_arm64.s. The integer block sums use SDOT (the dot-product extension,
// ARMv8.2 and later: every arm64 server core and Apple's); the float steps run per block in
// the reference order, so each kernel equals the reference Dot bit for bit.

//go:noescape
func dotQ8_0SDOT(x, y *byte, nb int) float32

//go:noescape
func dotQ4_0SDOT(x, y *byte, nb int) float32

// Their four-column forms (lanes_arm64.s), each column equal to the one-column kernel.

//go:noescape
func dotQ8_0SDOT4(x, y *byte, ystride, nb int, out *float32)

//go:noescape
func dotQ4_0SDOT4(x, y *byte, ystride, nb int, out *float32)

// The K-quant dots (kquants_arm64.s), within the float tolerance of the Go twins.

//go:noescape
func dotQ4KSDOT(x, y *byte, nb int) float32

//go:noescape
func dotQ6KSDOT(x, y *byte, nb int) float32

// Their four-column forms, each column equal to the one-column kernel.

//go:noescape
func dotQ4KSDOT4(x, y *byte, ystride, nb int, out *float32)

// dotQ4KSDOTR4 is dotQ4KSDOT for four weight rows stride bytes apart at once (decode), out[k]
// row k's.
//
//go:noescape
func dotQ4KSDOTR4(x *byte, stride int, y *byte, nb int, out *float32)

//go:noescape
func dotQ6KSDOT4(x, y *byte, ystride, nb int, out *float32)

//go:noescape
func dotQ5KSDOT4(x, y *byte, ystride, nb int, out *float32)

//go:noescape
func dotQ2KSDOT4(x, y *byte, ystride, nb int, out *float32)

//go:noescape
func dotQ3KSDOT4(x, y *byte, ystride, nb int, out *float32)

//go:noescape
func dotQ5KSDOT(x, y *byte, nb int) float32

//go:noescape
func dotQ2KSDOT(x, y *byte, nb int) float32

//go:noescape
func dotQ3KSDOT(x, y *byte, nb int) float32

// The Q4_1, Q5_0 and Q5_1 dots (legacy_arm64.s), equal to the reference.

//go:noescape
func dotQ4_1SDOT(x, y *byte, nb int) float32

//go:noescape
func dotQ5_0SDOT(x, y *byte, nb int) float32

//go:noescape
func dotQ5_1SDOT(x, y *byte, nb int) float32

// Their four-column forms, each column equal to the one-column kernel.

//go:noescape
func dotQ4_1SDOT4(x, y *byte, ystride, nb int, out *float32)

//go:noescape
func dotQ5_0SDOT4(x, y *byte, ystride, nb int, out *float32)

//go:noescape
func dotQ5_1SDOT4(x, y *byte, ystride, nb int, out *float32)

// The F32 dot (floats_arm64.s): n > 0 elements, a multiple of 4, into the reference's four
// float64 sums.

//go:noescape
func dotF32NEON(x, y *byte, n int, s *[4]float64)

// vecDotF32 is the F32 dot equal to the reference: dotF32NEON's four sums, the elements past
// the last multiple of 4 added to the first, then (s0+s1)+(s2+s3). (Called by name: through a
// func value the sums would escape to the heap on every call.)
func vecDotF32(row, act []byte, n int) float32 {
	geomF32.blocks(row, act, n)
	var s [4]float64
	np := n &^ 3
	if np > 0 {
		dotF32NEON(&row[0], &act[0], np, &s)
	}
	for i := np; i < n; i++ {
		s[0] += float64(f32At(row, i) * f32At(act, i))
	}
	return float32((s[0] + s[1]) + (s[2] + s[3]))
}

// The F16 helpers of attention and the KV cache (halfs_arm64.s), equal to their Go twins.

//go:noescape
func dotF16NEON32(a, b *uint16, n int) float32

// dotBF16NEON32 is dotF16NEON32's arithmetic for BF16 (dotBF16AVX2's), the BF16 weights' dot.
//
//go:noescape
func dotBF16NEON32(a, b *uint16, n int) float32

// The prepared F16 and BF16 kernels (halfKernel; halfs_arm64.s): weights against activations
// widened to float32, one column (n a positive multiple of 32) and runs of row pairs against
// four columns.
//
//go:noescape
func dotF16F32NEON32(x *uint16, y *float32, n int) float32

//go:noescape
func dotBF16F32NEON32(x *uint16, y *float32, n int) float32

//go:noescape
func dotF16F32PairsNEON(x *uint16, xstride, pairs int, y *float32, ystride, n int, out *float32, ostride int)

//go:noescape
func dotBF16F32PairsNEON(x *uint16, xstride, pairs int, y *float32, ystride, n int, out *float32, ostride int)

// halfF32Set names a prepared kernel set of 16-bit float weights (halfKernel).
type halfF32Set uint8

const (
	f16F32NEON halfF32Set = iota
	bf16F32NEON
)

func (s halfF32Set) bf16() bool    { return s == bf16F32NEON }
func (s halfF32Set) name() string  { return "neon" }
func (s halfF32Set) unitRows() int { return 0 }

func (s halfF32Set) one(x *uint16, y *float32, n int) float32 {
	if s.bf16() {
		return dotBF16F32NEON32(x, y, n)
	}
	return dotF16F32NEON32(x, y, n)
}

func (s halfF32Set) four(x *uint16, y *float32, ystride, n int, out *[4]float32) {
	for c := range out {
		out[c] = s.one(x, (*float32)(unsafe.Add(unsafe.Pointer(y), c*ystride)), n)
	}
}

func (s halfF32Set) pairs(x *uint16, xstride, pairs int, y *float32, ystride, n int, out *float32, ostride int) {
	if s.bf16() {
		dotBF16F32PairsNEON(x, xstride, pairs, y, ystride, n, out, ostride)
		return
	}
	dotF16F32PairsNEON(x, xstride, pairs, y, ystride, n, out, ostride)
}

func (s halfF32Set) two(x *uint16, xstride int, y *float32, ystride, n int, out *[8]float32) {
	s.twoByPairs(x, xstride, y, ystride, n, out)
}

// dotF32FastNEON is dotF32Go's arithmetic (DotF32Fast) for a positive multiple of 32 elements.
//
//go:noescape
func dotF32FastNEON(a, b *float32, n int) float32

//go:noescape
func madF16NEON(acc, v *uint16, s float32, n int)

//go:noescape
func scaleF16NEON(acc *uint16, s float32, n int)

//go:noescape
func toF16NEON(dst *uint16, src *float32, n int)

//go:noescape
func fromF16NEON(dst *float32, src *uint16, n int)

// The element-wise steps, RoPE and the exp of SiLU and softmax (elementwise_arm64.s), and the
// activation quantizers (quant_arm64.s): equal to their Go twins bit for bit. n is a positive
// multiple of 8 (the element-wise steps, subBelowNEON) or 4 (expNEON, siluNEON); nb > 0.

//go:noescape
func mulF32NEON(out, a, b *float32, n int)

//go:noescape
func addF32NEON(out, a, b *float32, n int)

//go:noescape
func normScaleNEON(out, x, w *float32, scale float32, n int)

//go:noescape
func subBelowNEON(dst, src *float32, n int, m float32) bool

// ropeNormNEON rotates pairs (2i, 2i+1) of the first dims elements of each head, dims a
// multiple of 8; ropeNeoxNEON pairs (i, i+half), half a multiple of 4. Heads are hstride
// bytes apart.
//
//go:noescape
func ropeNormNEON(x, cache *float32, dims, heads, hstride int)

//go:noescape
func ropeNeoxNEON(x, cache *float32, half, heads, hstride int)

//go:noescape
func expNEON(dst, src *float32, n int)

//go:noescape
func siluNEON(dst, src *float32, n int)

//go:noescape
func quantizeQ8_0NEON(x *float32, y *byte, nb int)

//go:noescape
func quantizeQ8KNEON(x *float32, y *byte, nb int)

// Four rows, stride bytes apart, against one activation row (lanes_arm64.s): out[k] = row k · y
// over nb > 0 blocks, each equal to the one-row kernel bit for bit.

//go:noescape
func dotQ4_0SDOTR4(x *byte, stride int, y *byte, nb int, out *float32)

// maxQ32DimNEON is the longest query dotF16RowsNEON takes, widened on the stack.
const maxQ32DimNEON = 256

//go:noescape
func dotF16RowsNEON(q *float32, k *uint16, kstride, n, dim int, scale float32, out *float32)

// madQ8_0RowsNEON is madQ8_0RowsGo over nb whole blocks a row (attn_arm64.s).
//
//go:noescape
func madQ8_0RowsNEON(acc *float32, v *byte, vstride, n, nb int, ms, vs *float32)

//go:noescape
func dotQ8_0SDOTR4(x *byte, stride int, y *byte, nb int, out *float32)

// Two rows, xstride bytes apart, against four activation rows (lanes_arm64.s): out[4r+c] =
// row r · column c over nb > 0 blocks, each equal to the one-row kernel bit for bit.

//go:noescape
func dotQ4_0SDOT2x4(x *byte, xstride int, y *byte, ystride, nb int, out *float32)

//go:noescape
func dotQ8_0SDOT2x4(x *byte, xstride int, y *byte, ystride, nb int, out *float32)

// x2x4 wraps a two-row four-column kernel with the checks it relies on.
func (g *blockGeom) x2x4(k func(x *byte, xstride int, y *byte, ystride, nb int, out *float32)) vecDot2x4Fn {
	return func(w []byte, wstride int, act []byte, stride int, n int, out *[8]float32) {
		if wstride < 0 || wstride > len(w) {
			panic(fmt.Sprintf("kernels: %s dot of two rows %d bytes apart from %d bytes", g.t, wstride, len(w)))
		}
		nb := g.blocks4(w[wstride:], act, stride, n) // the second row, and the activations
		if nb == 0 {
			*out = [8]float32{}
			return
		}
		k(&w[0], wstride, &act[0], stride, nb, &out[0])
	}
}

// rowsR4 is the rowsFn of a four-row kernel: rows four at a time, the rest by the one-row
// vecDotFn.
func (g *blockGeom) rowsR4(k func(x *byte, stride int, y *byte, nb int, out *float32), one vecDotFn) rowsFn {
	return func(w []byte, stride, rows int, act []byte, n int, out []float32) {
		if rows <= 0 {
			return
		}
		nb := g.blocks(w[(rows-1)*stride:], act, n) // the last row's bytes, and the activations
		_ = out[rows-1]
		r := 0
		if nb > 0 {
			for ; r+4 <= rows; r += 4 {
				k(&w[r*stride], stride, &act[0], nb, &out[r])
			}
		}
		for ; r < rows; r++ {
			out[r] = one(w[r*stride:], act, n)
		}
	}
}

var geomQ4_0 = blockGeom{ggml.Q4_0, 32, 18, 34}

func init() {
	if !cpu.ARM64.HasASIMD {
		return
	}
	// FCVTL/FCVTN between half and single precision are base ASIMD (ARMv8.0).
	useHalfHelpersNEON()
	useElementwiseNEON()
	// The float weight types need no dot-product extension.
	useExact("neon", ggml.F32, vecDotF32)
	// F16 and BF16 weights as on amd64 (ggml's AVX2 sums: four accumulators of eight float32
	// lanes), so that both architectures give the same bits; the reference's float64 sums took
	// 88 instructions a 32-element step to these kernels' 28.
	use("neon", ggml.F16, vecDotF16)
	use("neon", ggml.BF16, bf16Dot(dotBF16NEON32))
	// Prompts and batches (from four activation rows on) widen the activations once and take
	// two weight rows against four of them, in the passes of halfs_arm64.s: a step of eight
	// elements widens the two rows' weights for sixteen FMLAs (28 instructions for 64 products,
	// where the one-column kernel takes 28 for 32).
	usePrepared(halfKernel(f16F32NEON))
	usePrepared(halfKernel(bf16F32NEON))
	if !cpu.ARM64.HasASIMDDP {
		return
	}
	simdName = "neon dotprod"
	q80 := func(row, act []byte, n int) float32 {
		nb := geomQ8_0.blocks(row, act, n)
		if nb == 0 {
			return 0
		}
		return dotQ8_0SDOT(&row[0], &act[0], nb)
	}
	useExact("sdot", ggml.Q8_0, q80)
	// Attention's scores over a Q8_0 cache: the weights' kernels, whose blocks and sums are
	// dotQ8_0Row's, four key rows a call (the Go loop of int8 products took every row before).
	dotQ8_0RowsImpl = func(out []float32, q, rows []byte, stride int, scale float32) {
		nb := len(q) / q8Block
		if nb == 0 {
			dotQ8_0RowsGo(out, q, rows, stride, scale)
			return
		}
		i := 0
		var r4 [4]float32
		for ; i+4 <= len(out); i += 4 {
			dotQ8_0SDOTR4(&rows[i*stride], stride, &q[0], nb, &r4[0])
			for k, v := range r4 {
				out[i+k] = v * scale
			}
		}
		for ; i < len(out); i++ {
			out[i] = dotQ8_0SDOT(&rows[i*stride], &q[0], nb) * scale
		}
	}
	useRows(ggml.Q8_0, geomQ8_0.rowsR4(dotQ8_0SDOTR4, q80), nil)
	use4x2("sdot", ggml.Q8_0, geomQ8_0.x4(dotQ8_0SDOT4), geomQ8_0.x2x4(dotQ8_0SDOT2x4))
	q4k := kDot(&geomQ4K, dotQ4KSDOT)
	use("sdot", ggml.Q4_K, q4k)
	useRows(ggml.Q4_K, geomQ4K.rowsR4(dotQ4KSDOTR4, q4k), nil)
	use4("sdot", ggml.Q4_K, geomQ4K.x4(dotQ4KSDOT4))
	use("sdot", ggml.Q6_K, kDot(&geomQ6K, dotQ6KSDOT))
	use4("sdot", ggml.Q6_K, geomQ6K.x4(dotQ6KSDOT4))
	use("sdot", ggml.Q5_K, kDot(&geomQ5K, dotQ5KSDOT))
	use4("sdot", ggml.Q5_K, geomQ5K.x4(dotQ5KSDOT4))
	use("sdot", ggml.Q2_K, kDot(&geomQ2K, dotQ2KSDOT))
	use4("sdot", ggml.Q2_K, geomQ2K.x4(dotQ2KSDOT4))
	use("sdot", ggml.Q3_K, kDot(&geomQ3K, dotQ3KSDOT))
	use4("sdot", ggml.Q3_K, geomQ3K.x4(dotQ3KSDOT4))
	useExact("sdot", ggml.Q4_1, kDot(&geomQ4_1, dotQ4_1SDOT))
	use4("sdot", ggml.Q4_1, geomQ4_1.x4(dotQ4_1SDOT4))
	useExact("sdot", ggml.Q5_0, kDot(&geomQ5_0, dotQ5_0SDOT))
	use4("sdot", ggml.Q5_0, geomQ5_0.x4(dotQ5_0SDOT4))
	useExact("sdot", ggml.Q5_1, kDot(&geomQ5_1, dotQ5_1SDOT))
	use4("sdot", ggml.Q5_1, geomQ5_1.x4(dotQ5_1SDOT4))
	q40 := func(row, act []byte, n int) float32 {
		nb := geomQ4_0.blocks(row, act, n)
		if nb == 0 {
			return 0
		}
		return dotQ4_0SDOT(&row[0], &act[0], nb)
	}
	useExact("sdot", ggml.Q4_0, q40)
	useRows(ggml.Q4_0, geomQ4_0.rowsR4(dotQ4_0SDOTR4, q40), nil)
	use4x2("sdot", ggml.Q4_0, geomQ4_0.x4(dotQ4_0SDOT4), geomQ4_0.x2x4(dotQ4_0SDOT2x4))
}

func useHalfHelpersNEON() {
	// Attention's value sums over a Q8_0 cache (the Go loop took a value at a time).
	madQ8_0RowsImpl = func(acc []float32, rows []byte, stride int, ms, vs []float32) {
		if len(vs) == 0 || len(acc) == 0 || len(acc)%32 != 0 {
			madQ8_0RowsGo(acc, rows, stride, ms, vs)
			return
		}
		madQ8_0RowsNEON(&acc[0], &rows[0], stride, len(vs), len(acc)/32, &ms[0], &vs[0])
	}
	// Attention's scores over an F16 cache: the query widened once a call, then every key row
	// in the one kernel (a call of the one-row kernel a row widened the query every time).
	dotF16RowsImpl = func(out []float32, q, rows []uint16, stride int, scale float32) {
		dim := len(q)
		if len(out) == 0 || dim == 0 || dim%32 != 0 || dim > maxQ32DimNEON {
			dotF16RowsGo(out, q, rows, stride, scale)
			return
		}
		// Go clears the stack array every call: no more of it than the head width needs.
		// (The widening is called directly: a slice of the array through fromF16Impl, a
		// function value, would move the array to the heap every call.)
		if dim <= 128 {
			var q32 [128]float32
			fromF16NEON(&q32[0], &q[0], dim)
			dotF16RowsNEON(&q32[0], &rows[0], 2*stride, len(out), dim, scale, &out[0])
			return
		}
		var q32 [maxQ32DimNEON]float32
		fromF16NEON(&q32[0], &q[0], dim)
		dotF16RowsNEON(&q32[0], &rows[0], 2*stride, len(out), dim, scale, &out[0])
	}
	dotF16Impl = func(a, b []uint16) float32 {
		np := len(a) &^ 31
		var s float32
		if np > 0 {
			s = dotF16NEON32(&a[0], &b[0], np)
		}
		return dotF16Tail(a, b, np, s)
	}
	dotF32Impl = func(a, b []float32) float32 {
		np := len(a) &^ 31
		var s float32
		if np > 0 {
			s = dotF32FastNEON(&a[0], &b[0], np)
		}
		return dotF32Tail(a, b, np, s)
	}
	madF16Impl = func(acc, v []uint16, s float32) {
		n := len(acc) &^ 7
		if n > 0 {
			madF16NEON(&acc[0], &v[0], s, n)
		}
		madF16Go(acc[n:], v[n:], s)
	}
	scaleF16Impl = func(acc []uint16, s float32) {
		n := len(acc) &^ 7
		if n > 0 {
			scaleF16NEON(&acc[0], s, n)
		}
		scaleF16Go(acc[n:], s)
	}
	toF16Impl = func(dst []uint16, src []float32) {
		n := len(src) &^ 7
		if n > 0 {
			toF16NEON(&dst[0], &src[0], n)
		}
		toF16Go(dst[n:], src[n:])
	}
	fromF16Impl = func(dst []float32, src []uint16) {
		n := len(src) &^ 7
		if n > 0 {
			fromF16NEON(&dst[0], &src[0], n)
		}
		fromF16Go(dst[n:], src[n:])
	}
}

// useElementwiseNEON installs the NEON forms of a layer's element-wise steps (all base ASIMD:
// FRINTN, FCVTNS and FDIV on vectors are ARMv8.0).
func useElementwiseNEON() {
	mulImpl = func(out, a, b []float32) {
		n := len(out) &^ 7
		if n > 0 {
			mulF32NEON(&out[0], &a[0], &b[0], n)
		}
		mulGo(out[n:], a[n:], b[n:])
	}
	addImpl = func(out, a, b []float32) {
		n := len(out) &^ 7
		if n > 0 {
			addF32NEON(&out[0], &a[0], &b[0], n)
		}
		addGo(out[n:], a[n:], b[n:])
	}
	normScaleImpl = func(out, x, w []float32, scale float32) {
		n := len(out) &^ 7
		if n > 0 {
			normScaleNEON(&out[0], &x[0], &w[0], scale, n)
		}
		normScaleGo(out[n:], x[n:], w[n:], scale)
	}
	subBelowImpl = func(dst, src []float32, m float32) bool {
		n := len(src) &^ 7
		if n > 0 && !subBelowNEON(&dst[0], &src[0], n, m) {
			return false
		}
		return subBelowGo(dst[n:], src[n:], m)
	}
	ropeImpl = func(neox bool, x []float32, headDim, dims int, cache []float32) {
		heads := len(x) / headDim
		switch {
		case neox && dims%8 == 0:
			ropeNeoxNEON(&x[0], &cache[0], dims/2, heads, 4*headDim)
		case !neox && dims%8 == 0:
			ropeNormNEON(&x[0], &cache[0], dims, heads, 4*headDim)
		default:
			ropeGo(neox, x, headDim, dims, cache)
		}
	}
	expImpl = func(dst, src []float32) {
		n := len(src) &^ 3
		if n > 0 {
			expNEON(&dst[0], &src[0], n)
		}
		expGo(dst[n:], src[n:])
	}
	siluImpl = func(dst, src []float32) {
		n := len(src) &^ 3
		if n > 0 {
			siluNEON(&dst[0], &src[0], n)
		}
		siluGo(dst[n:], src[n:])
	}
	quantQ8_0Impl = func(x []float32, y []byte) {
		if nb := len(x) / 32; nb > 0 {
			_ = y[nb*34-1]
			quantizeQ8_0NEON(&x[0], &y[0], nb)
		}
	}
	quantQ8KImpl = func(x []float32, y []byte) {
		if nb := len(x) / 256; nb > 0 {
			_ = y[nb*292-1]
			quantizeQ8KNEON(&x[0], &y[0], nb)
		}
	}
}
