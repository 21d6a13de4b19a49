//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The AVX2 kernels of simd_amd64.s. Each takes pointers to the first block of the weight row and
// of the activations and a count of blocks (or elements for the float kernels) that the Go
// wrappers below have checked against the slices.

//go:noescape
func dotQ4KAVX2(x, y *byte, nb int) float32

//go:noescape
func dotQ6KAVX2(x, y *byte, nb int) float32

//go:noescape
func dotQ5KAVX2(x, y *byte, nb int) float32

// The Q2_K and Q3_K dots (q23k_amd64.s).

//go:noescape
func dotQ2KAVX2(x, y *byte, nb int) float32

//go:noescape
func dotQ3KAVX2(x, y *byte, nb int) float32

//go:noescape
func dotQ2Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)

//go:noescape
func dotQ3Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)

// The Q4_1, Q5_0 and Q5_1 dots (legacy_amd64.s).

//go:noescape
func dotQ4_1AVX2(x, y *byte, nb int) float32

//go:noescape
func dotQ5_0AVX2(x, y *byte, nb int) float32

//go:noescape
func dotQ5_1AVX2(x, y *byte, nb int) float32

// Their four-column forms, bit for bit the one-column dots of each column.

//go:noescape
func dotQ4_1x4AVX2(x, y *byte, ystride int, nb int, out *float32)

//go:noescape
func dotQ5_1x4AVX2(x, y *byte, ystride int, nb int, out *float32)

//go:noescape
func dotQ5_0x4AVX2(x, y *byte, ystride int, nb int, out *float32)

// dotQ4KRowsAVX2 is dotQ4KAVX2 for rows weight rows xstride bytes apart, results to out.
//
//go:noescape
func dotQ4KRowsAVX2(x *byte, xstride int, rows int, y *byte, nb int, out *float32)

// dotQ4KRows4AVX2 is dotQ4KRowsAVX2 for four runs of count rows dist rows apart, walked as
// four streams in step.
//
//go:noescape
func dotQ4KRows4AVX2(x *byte, xstride int, count int, dist int, y *byte, nb int, out *float32)

// The four-column Q4_K dot on 512-bit registers (q4k_amd64.s), bit-identical to the AVX2 ones.
//
//go:noescape
func dotQ4Kx4VNNI(x, y *byte, ystride int, nb int, out *float32)

// The four-column kernels: out[c] = row · (y + c*ystride) for c < 4, each bit-identical to the
// one-column kernel.

//go:noescape
func dotQ4Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)

//go:noescape
func dotQ6Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)

//go:noescape
func dotQ5Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)

//go:noescape
func dotQ6KAVX512(x, y *byte, nb int) float32

//go:noescape
func dotQ6Kx4AVX512(x, y *byte, ystride int, nb int, out *float32)

// The exact row dots of Q8_0 (eight blocks per iteration, ggml's arithmetic), with yd and ys the
// activation row's block scales and quant sums (actTables); nb is a positive multiple of 8.

//go:noescape
func dotQ8_0B8(x, y *byte, yd *float32, ys *int32, nb int) float32

//go:noescape
func dotQ8_0B8VNNI(x, y *byte, yd *float32, ys *int32, nb int) float32

// The Q4_0 dots over prepared activations (q4lanes_amd64.s, dotQ4_0Lanes's arithmetic): ng
// groups of eight blocks, the last from xtail when it is not nil.

//go:noescape
func dotQ4_0AVX2(x, y *byte, ng int, xtail *byte) float32

//go:noescape
func dotQ4_0VNNI(x, y *byte, ng int, xtail *byte) float32

//go:noescape
func dotQ4_0RowsVNNI(x *byte, xstride int, rows int, y *byte, ng int, out *float32)

//go:noescape
func dotQ4_0Rows4VNNI(x *byte, xstride int, count int, dist int, y *byte, ng int, out *float32)

//go:noescape
func dotQ4_0x4VNNI(x, y *byte, ng int, xtail *byte, ystride int, out *float32)

// dotF16AVX2 and dotF32AVX2 take a positive multiple of 32 elements.
//
//go:noescape
func dotF16AVX2(x, y *uint16, n int) float32

//go:noescape
func dotF32AVX2(x, y *float32, n int) float32

//go:noescape
func dotBF16AVX2(x, y *uint16, n int) float32

//go:noescape
func dotBF16x4AVX512(x, y *uint16, ystride int, n int, out *float32)

//go:noescape
func dotF16x4AVX512(x, y *uint16, ystride int, n int, out *float32)

// Two rows, y and y+ystride, each against x (n a positive multiple of 32): the one-row AVX2
// kernels' results, out[0] and out[1].
//
//go:noescape
func dotF16R2AVX2(x, y *uint16, ystride int, n int, out *float32)

//go:noescape
func dotBF16R2AVX2(x, y *uint16, ystride int, n int, out *float32)

// Four runs of count rows of the two-row kernels in one call (halfRunsFn): n a positive
// multiple of 32.
//
//go:noescape
func dotF16R2RunsAVX2(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)

//go:noescape
func dotBF16R2RunsAVX2(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)

// The four-column 512-bit kernels' forms of whole runs (halfRunsFn).
//
//go:noescape
func dotF16x4RunsAVX512(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)

//go:noescape
func dotBF16x4RunsAVX512(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)

//go:noescape
func dotBF16DPx4Runs(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)

// RoPE over heads heads of x (hstride bytes apart), cache the dims/2 cos/sin pairs (ropeGo):
// ropeNormAVX2 rotates pairs (2i, 2i+1) of the first dims elements, a multiple of 8;
// ropeNeoxAVX2 pairs (i, i+half), half a multiple of 8.
//
//go:noescape
func ropeNormAVX2(x, cache *float32, dims, heads, hstride int)

//go:noescape
func ropeNeoxAVX2(x, cache *float32, half, heads, hstride int)

// out = a·b, a+b and x·scale·w element-wise over n elements, a positive multiple of 8 (mulGo,
// addGo, normScaleGo).
//
//go:noescape
func mulF32AVX2(out, a, b *float32, n int)

//go:noescape
func addF32AVX2(out, a, b *float32, n int)

//go:noescape
func normScaleAVX2(out, x, w *float32, scale float32, n int)

// F16 weights against activations widened to float32 once per product (halfKernel).
//
//go:noescape
func dotF16F32AVX2(x *uint16, y *float32, n int) float32

//go:noescape
func dotF16F32x4AVX512(x *uint16, y *float32, ystride int, n int, out *float32)

//go:noescape
func dotF16F32R2x4AVX512(x *uint16, xstride int, y *float32, ystride int, n int, out *float32)

// The BF16 dots on VDPBF16PS (bf16dp_amd64.s): n a positive multiple of 32.
//
//go:noescape
func dotBF16DP(x, y *uint16, n int) float32

//go:noescape
func dotBF16DPx4(x, y *uint16, ystride int, n int, out *float32)

//go:noescape
func dotBF16DPR2x4(x *uint16, xstride int, y *uint16, ystride int, n int, out *float32)

// The prepared F16 and BF16 kernels of AVX2 alone (halfpairs_amd64.s).
//
//go:noescape
func dotBF16F32AVX2(x *uint16, y *float32, n int) float32

//go:noescape
func dotF16F32PairsAVX2(x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32, ostride int)

//go:noescape
func dotBF16F32PairsAVX2(x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32, ostride int)

//go:noescape
func dotF16F32TriplesAVX2(x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32, ostride int)

//go:noescape
func dotBF16F32TriplesAVX2(x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32, ostride int)

//go:noescape
func dotF16F32R2x4Chunks(x *uint16, xstride int, pairs int, y *float32, ystride int, n int, out *float32, ostride int)

//go:noescape
func dotF16F32R3x4Rows(x *uint16, xstride int, triples int, y *float32, ystride int, n int, out *float32, ostride int)

//go:noescape
func dotF16F32R2x4Rows(x *uint16, xstride int, pairs int, y *float32, ystride int, n int, out *float32, ostride int)

//go:noescape
func dotBF16DPR2x4Rows(x *uint16, xstride int, pairs int, y *uint16, ystride int, n int, out *float32, ostride int)

//go:noescape
func dotBF16DPR3x4Rows(x *uint16, xstride int, triples int, y *uint16, ystride int, n int, out *float32, ostride int)

// Prompt-batch forms of the eight-row kernels: unpack eight rows once, then dot each activation
// row with the unpacked copy (bit-identical to the eight-row kernels).

//go:noescape
func unpackQ8_0R8(x *byte, xstride int, nb int, dst *byte, sc *float32)

//go:noescape
func dotQ8_0U8VNNI(w *byte, sc *float32, y *byte, yd *float32, ys *int32, nb int, out *float32, pf *byte, pfn int)

//go:noescape
func dotF32LanesAVX2(x, y *float32, n int, lanes *[4]float64)

//go:noescape
func siluAVX2(dst, src *float32, n int)

//go:noescape
func expAVX2(dst, src *float32, n int)

// subBelowAVX2 is subBelowGo for a positive multiple of 8 elements; it writes dst either way.
//
//go:noescape
func subBelowAVX2(dst, src *float32, n int, m float32) bool

//go:noescape
func madF16RowsAVX2(acc, v *uint16, vstride, n, dim int, ms, vs *float32)

//go:noescape
func dotQ8_0RowsAVX2(q, k *byte, kstride, n, nb int, scale float32, out *float32)

//go:noescape
func madQ8_0RowsAVX2(acc *float32, v *byte, vstride, n, nb int, ms, vs *float32)

//go:noescape
func madF16AVX2(acc, v *uint16, s float32, n int)

//go:noescape
func scaleF16AVX2(acc *uint16, s float32, n int)

//go:noescape
func toF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func fromF16AVX2(dst *float32, src *uint16, n int)

//go:noescape
func madF16Rows64AVX2(acc, v *uint16, vstride, n, chunks int, ms, vs *float32)

//go:noescape
func dotF16RowsQ32AVX2(q *float32, k *uint16, kstride, n, dim int, scale float32, out *float32)

// The activation quantizers (quant_amd64.s), bit-identical to quantizeQ8_0ActGo and
// quantizeQ8KGo: nb > 0 blocks of 32 (Q8_0) or super-blocks of 256 (Q8_K).

//go:noescape
func quantizeQ8_0AVX2(x *float32, y *byte, nb int)

//go:noescape
func quantizeQ8KAVX2(x *float32, y *byte, nb int)

// maxQ32Dim is the longest query dotF16RowsImpl converts to float32 once, on the stack (the
// widest heads in use; longer ones take the Go twin). The array is cleared on every call, so it
// stays no larger than that.
const maxQ32Dim = 256

func init() {
	// x/sys/cpu reports AVX2 and FMA only where the OS saves the YMM registers.
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA || !cpu.X86.HasF16C {
		return
	}
	simdName = "avx2 fma f16c"
	// The packed kernels' AVX-VNNI set (packed_amd64.go), where AVX-512 VNNI's does not replace it.
	if cpu.X86.HasAVXVNNI && !(cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VNNI) {
		simdName += " avxvnni"
	}
	useRowTab("avx2", ggml.Q8_0, geomQ8_0.b8(dotQ8_0B8, tailQ8_0))
	usePrepared(q4_0Kernel(q4AVX2))
	use("avx2", ggml.Q4_K, kDot(&geomQ4K, dotQ4KAVX2))
	useRows(ggml.Q4_K, func(w []byte, stride, rows int, act []byte, n int, out []float32) {
		nb := geomQ4K.blocks(w, act, n)
		if rows <= 0 || nb == 0 {
			clear(out[:max(rows, 0)])
			return
		}
		if stride < 144*nb || len(w) < (rows-1)*stride+144*nb || len(out) < rows {
			panic(fmt.Sprintf("kernels: Q4_K dot of %d rows of %d elements, %d bytes apart, from %d bytes into %d results",
				rows, n, stride, len(w), len(out)))
		}
		dotQ4KRowsAVX2(&w[0], stride, rows, &act[0], nb, &out[0])
	}, func(w []byte, stride, count, dist int, act []byte, n int, out []float32) {
		nb := geomQ4K.blocks(w, act, n)
		checkRows4(ggml.Q4_K, w, stride, count, dist, 144*nb, out)
		if nb == 0 {
			clear(out[:3*dist+count])
			return
		}
		dotQ4KRows4AVX2(&w[0], stride, count, dist, &act[0], nb, &out[0])
	})
	use("avx2", ggml.Q6_K, vecDotQ6K)
	use("avx2", ggml.Q5_K, kDot(&geomQ5K, dotQ5KAVX2))
	use("avx2", ggml.Q3_K, kDot(&geomQ3K, dotQ3KAVX2))
	use("avx2", ggml.Q2_K, kDot(&geomQ2K, dotQ2KAVX2))
	use("avx2", ggml.Q4_1, kDot(&geomQ4_1, dotQ4_1AVX2))
	use("avx2", ggml.Q5_0, kDot(&geomQ5_0, dotQ5_0AVX2))
	use("avx2", ggml.Q5_1, kDot(&geomQ5_1, dotQ5_1AVX2))
	use4("avx2", ggml.Q4_K, geomQ4K.x4(dotQ4Kx4AVX2))
	use4("avx2", ggml.Q6_K, geomQ6K.x4(dotQ6Kx4AVX2))
	use4("avx2", ggml.Q5_K, geomQ5K.x4(dotQ5Kx4AVX2))
	use4("avx2", ggml.Q2_K, geomQ2K.x4(dotQ2Kx4AVX2))
	use4("avx2", ggml.Q3_K, geomQ3K.x4(dotQ3Kx4AVX2))
	use4("avx2", ggml.Q5_0, geomQ5_0.x4(dotQ5_0x4AVX2))
	use4("avx2", ggml.Q4_1, geomQ4_1.x4(dotQ4_1x4AVX2))
	use4("avx2", ggml.Q5_1, geomQ5_1.x4(dotQ5_1x4AVX2))
	use("avx2", ggml.F16, vecDotF16)
	use("avx2", ggml.BF16, bf16Dot(dotBF16AVX2))
	// Prompts and batches of F16 and BF16 (from four activation rows on) widen the activations
	// once and take three weight rows against four of them in the passes of halfpairs_amd64.s:
	// 1.24-1.37x (F16) and 1.77-1.91x (BF16) the prompt speed of the two-row kernels on 16-bit
	// activations (pp128, Llama-3.2-1B-shaped model, one and two threads, Zen 4 as AVX2 only).
	// On AVX-512 without its BF16 extension too, BF16 prompts ran 1.44-1.47x faster than with
	// the 512-bit four-column kernel.
	usePrepared(halfKernel(f16F32AVX2))
	usePrepared(halfKernel(bf16F32AVX2))
	// Decode of F16 and BF16 weights, two rows a call (see the 512-bit forms below).
	useRows(ggml.F16, halfRows(&geomF16, F16ToF32, vecDotF16, f16R2x4), halfRows4(&geomF16, F16ToF32, f16R2x4, dotF16R2RunsAVX2))
	useRows(ggml.BF16, halfRows(&geomBF16, BF16ToF32, bf16Dot(dotBF16AVX2), bf16R2x4), halfRows4(&geomBF16, BF16ToF32, bf16R2x4, dotBF16R2RunsAVX2))
	useExact("avx2", ggml.F32, vecDotF32)
	// VPDPBUSD (AVX-512 VNNI on 256-bit registers) multiplies and sums four byte pairs in one
	// instruction.
	if cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512F {
		simdName += " avx512vnni"
		useRowTab("vnni", ggml.Q8_0, geomQ8_0.b8(dotQ8_0B8VNNI, tailQ8_0))
		useU8("vnni", ggml.Q8_0, geomQ8_0.u8(unpackQ8_0R8, dotQ8_0U8VNNI))
		// The Q4_0 kernels sort a group's bytes with byte permutations of 128 bytes (VPERMT2B,
		// AVX-512 VBMI) on 512-bit registers.
		if cpu.X86.HasAVX512VBMI && cpu.X86.HasAVX512BW {
			usePrepared(q4_0Kernel(q4VNNI))
		}
		if cpu.X86.HasAVX512BW {
			use4("vnni", ggml.Q4_K, geomQ4K.x4(dotQ4Kx4VNNI))
		}
	}
	// Q6_K decodes compute-bound on AVX2 (an unpacked layout, one row at a time); 512-bit
	// registers halve its instructions. Registered after AVX2's, they replace them.
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL {
		use("avx512bw", ggml.Q6_K, vecDotQ6K512)
		use4("avx512bw", ggml.Q6_K, geomQ6K.x4(dotQ6Kx4AVX512))
		// Decode of F16 and BF16 weights: four rows against the activation row at once, which
		// is widened once for them and read once (a row of 8192, as FFN down projections have,
		// streaming through the level-1 cache pushed its activations out), and striped into
		// four runs that stream as four long reads rather than pages one after another. The
		// Llama-3.2-1B-shaped F16 model decoded 1.26x (one thread) and 1.25x (two) faster.
		useRows(ggml.F16, halfRows(&geomF16, F16ToF32, vecDotF16, f16x4AVX512), halfRows4(&geomF16, F16ToF32, f16x4AVX512, dotF16x4RunsAVX512))
		useRows(ggml.BF16, halfRows(&geomBF16, BF16ToF32, bf16Dot(dotBF16AVX2), bf16x4AVX512), halfRows4(&geomBF16, BF16ToF32, bf16x4AVX512, dotBF16x4RunsAVX512))
		// Attention's four-query products (one group of grouped-query attention): the four
		// queries' accumulators fit only in 512-bit registers.
		dotF16Rows4Impl = func(out []float32, qs, rows []uint16, stride int, scale float32) bool {
			dim, n := len(qs)/4, len(out)/4
			if n == 0 || dim == 0 || dim%32 != 0 || dim > maxQ32Dim {
				return false
			}
			// The widened queries live on the stack, which Go clears on every call: no more
			// of it than the head width needs (64 and 128 are the common ones).
			switch {
			case dim <= 64:
				var q32 [4 * 64]float32
				dotQ32x4(q32[:], qs, rows, stride, n, dim, scale, out)
			case dim <= 128:
				var q32 [4 * 128]float32
				dotQ32x4(q32[:], qs, rows, stride, n, dim, scale, out)
			default:
				var q32 [4 * maxQ32Dim]float32
				dotQ32x4(q32[:], qs, rows, stride, n, dim, scale, out)
			}
			return true
		}
		madF16Rows4Impl = func(accs, rows []uint16, stride int, ms, vs []float32) bool {
			dim, n := len(accs)/4, len(vs)/4
			if n == 0 || dim == 0 || dim%64 != 0 {
				return false
			}
			madF16Rows64x4AVX512(&accs[0], 2*dim, &rows[0], 2*stride, n, dim/64, &ms[0], &vs[0], 4*n)
			return true
		}
		if cpu.X86.HasAVX512VNNI {
			useQ8Group()
		}
		usePrepared(halfKernel(f16F32AVX512))
		// VDPBF16PS multiplies and adds BF16 pairs without widening them: a different rounding
		// (one per pair of products, in float32), so its one- and four-column dots replace
		// both of the above together.
		if cpu.X86.HasAVX512BF16 {
			simdName += " avx512bf16"
			unusePrepared(ggml.BF16)
			use("avx512bf16", ggml.BF16, bf16Dot(dotBF16DP))
			use4x2("avx512bf16", ggml.BF16, halfDot4(&geomBF16, BF16ToF32, bf16DPx4), bf16DP2x4)
			usePairs4(ggml.BF16, bf16DPPairs4, 6) // whole triples of rows, in pairs
			useRows(ggml.BF16, halfRows(&geomBF16, BF16ToF32, bf16Dot(dotBF16DP), bf16DPx4), halfRows4(&geomBF16, BF16ToF32, bf16DPx4, dotBF16DPx4Runs))
		}
	}
	quantQ8_0Impl = func(x []float32, y []byte) {
		if nb := len(x) / 32; nb > 0 {
			_ = y[nb*34-1]
			quantizeQ8_0AVX2(&x[0], &y[0], nb)
		}
	}
	quantQ8KImpl = func(x []float32, y []byte) {
		if nb := len(x) / 256; nb > 0 {
			_ = y[nb*292-1]
			quantizeQ8KAVX2(&x[0], &y[0], nb)
		}
	}
	dotF16Impl = func(a, b []uint16) float32 {
		np := len(a) &^ 31
		var s float32
		if np > 0 {
			s = dotF16AVX2(&a[0], &b[0], np)
		}
		return dotF16Tail(a, b, np, s)
	}
	dotF32Impl = func(a, b []float32) float32 {
		np := len(a) &^ 31
		var s float32
		if np > 0 {
			s = dotF32AVX2(&a[0], &b[0], np)
		}
		return dotF32Tail(a, b, np, s)
	}
	madF16Impl = func(acc, v []uint16, s float32) {
		n := len(acc) &^ 7
		if n > 0 {
			madF16AVX2(&acc[0], &v[0], s, n)
		}
		madF16Go(acc[n:], v[n:], s)
	}
	scaleF16Impl = func(acc []uint16, s float32) {
		n := len(acc) &^ 7
		if n > 0 {
			scaleF16AVX2(&acc[0], s, n)
		}
		scaleF16Go(acc[n:], s)
	}
	toF16Impl = func(dst []uint16, src []float32) {
		n := len(src) &^ 7
		if n > 0 {
			toF16AVX2(&dst[0], &src[0], n)
		}
		toF16Go(dst[n:], src[n:])
	}
	mulImpl = func(out, a, b []float32) {
		n := len(out) &^ 7
		if n > 0 {
			mulF32AVX2(&out[0], &a[0], &b[0], n)
		}
		mulGo(out[n:], a[n:], b[n:])
	}
	addImpl = func(out, a, b []float32) {
		n := len(out) &^ 7
		if n > 0 {
			addF32AVX2(&out[0], &a[0], &b[0], n)
		}
		addGo(out[n:], a[n:], b[n:])
	}
	normScaleImpl = func(out, x, w []float32, scale float32) {
		n := len(out) &^ 7
		if n > 0 {
			normScaleAVX2(&out[0], &x[0], &w[0], scale, n)
		}
		normScaleGo(out[n:], x[n:], w[n:], scale)
	}
	ropeImpl = func(neox bool, x []float32, headDim, dims int, cache []float32) {
		heads := len(x) / headDim
		switch {
		case neox && dims%16 == 0:
			ropeNeoxAVX2(&x[0], &cache[0], dims/2, heads, 4*headDim)
		case !neox && dims%8 == 0:
			ropeNormAVX2(&x[0], &cache[0], dims, heads, 4*headDim)
		default:
			ropeGo(neox, x, headDim, dims, cache)
		}
	}
	siluImpl = func(dst, src []float32) {
		n := len(src) &^ 7
		if n > 0 {
			siluAVX2(&dst[0], &src[0], n)
		}
		siluGo(dst[n:], src[n:])
	}
	dotF16RowsImpl = func(out []float32, q, rows []uint16, stride int, scale float32) {
		if len(out) == 0 || len(q) == 0 || len(q)%32 != 0 || len(q) > maxQ32Dim {
			dotF16RowsGo(out, q, rows, stride, scale)
			return
		}
		// As in the four-query form: no more stack (cleared every call) than the width needs.
		switch {
		case len(q) <= 64:
			var q32 [64]float32
			dotQ32(q32[:], q, rows, stride, scale, out)
		case len(q) <= 128:
			var q32 [128]float32
			dotQ32(q32[:], q, rows, stride, scale, out)
		default:
			var q32 [maxQ32Dim]float32
			dotQ32(q32[:], q, rows, stride, scale, out)
		}
	}
	madF16RowsImpl = func(acc, rows []uint16, stride int, ms, vs []float32) {
		if len(vs) == 0 || len(acc) == 0 || len(acc)%8 != 0 {
			madF16RowsGo(acc, rows, stride, ms, vs)
			return
		}
		if len(acc)%64 == 0 && len(vs) > 1 {
			madF16Rows64AVX2(&acc[0], &rows[0], 2*stride, len(vs), len(acc)/64, &ms[0], &vs[0])
			return
		}
		madF16RowsAVX2(&acc[0], &rows[0], 2*stride, len(vs), len(acc), &ms[0], &vs[0])
	}
	dotQ8_0RowsImpl = func(out []float32, q, rows []byte, stride int, scale float32) {
		if len(out) == 0 || len(q) == 0 {
			return
		}
		dotQ8_0RowsAVX2(&q[0], &rows[0], stride, len(out), len(q)/q8Block, scale, &out[0])
	}
	madQ8_0RowsImpl = func(acc []float32, rows []byte, stride int, ms, vs []float32) {
		if len(vs) == 0 || len(acc) == 0 || len(acc)%32 != 0 {
			madQ8_0RowsGo(acc, rows, stride, ms, vs)
			return
		}
		madQ8_0RowsAVX2(&acc[0], &rows[0], stride, len(vs), len(acc)/32, &ms[0], &vs[0])
	}
	subBelowImpl = func(dst, src []float32, m float32) bool {
		n := len(src) &^ 7
		if n > 0 && !subBelowAVX2(&dst[0], &src[0], n, m) {
			return false
		}
		return subBelowGo(dst[n:], src[n:], m)
	}
	expImpl = func(dst, src []float32) {
		n := len(src) &^ 7
		if n > 0 {
			expAVX2(&dst[0], &src[0], n)
		}
		expGo(dst[n:], src[n:])
	}
	fromF16Impl = func(dst []float32, src []uint16) {
		n := len(src) &^ 7
		if n > 0 {
			fromF16AVX2(&dst[0], &src[0], n)
		}
		fromF16Go(dst[n:], src[n:])
	}
}

// vecDotQ6K and vecDotQ6K512 are the AVX2 and 512-bit Q6_K dots, bit-identical to each other.
var (
	vecDotQ6K    = kDot(&geomQ6K, dotQ6KAVX2)
	vecDotQ6K512 = kDot(&geomQ6K, dotQ6KAVX512)
)

// halfF32Set names the kernels of a prepared set of 16-bit float weights against activations
// widened to float32 (halfKernel). Calls go through its methods rather than func values, whose
// pointer arguments would escape: each four- and eight-result call would allocate its results.
type halfF32Set uint8

const (
	f16F32AVX512 halfF32Set = iota // F16 on 512-bit registers
	f16F32AVX2                     // F16 on AVX2 alone
	bf16F32AVX2                    // BF16 on AVX2 alone
)

func (s halfF32Set) bf16() bool { return s == bf16F32AVX2 }

// one is the one-column dot of n elements, a positive multiple of 32.
func (s halfF32Set) one(x *uint16, y *float32, n int) float32 {
	if s.bf16() {
		return dotBF16F32AVX2(x, y, n)
	}
	return dotF16F32AVX2(x, y, n)
}

// four is one weight row against four activation rows ystride bytes apart, out[c] column c.
func (s halfF32Set) four(x *uint16, y *float32, ystride, n int, out *[4]float32) {
	if s == f16F32AVX512 {
		dotF16F32x4AVX512(x, y, ystride, n, &out[0])
		return
	}
	for c := range out {
		out[c] = s.one(x, (*float32)(unsafe.Add(unsafe.Pointer(y), c*ystride)), n)
	}
}

// pairs is the run of row pairs (dotF16F32R2x4Rows' arguments and layout).
func (s halfF32Set) pairs(x *uint16, xstride, pairs int, y *float32, ystride, n int, out *float32, ostride int) {
	switch s {
	case f16F32AVX512:
		if n < f16ChunksMinN {
			// Triples of rows (three rows' FMAs a load), then the one or two pairs left.
			triples, left := runTriples(pairs)
			if triples > 0 {
				dotF16F32R3x4Rows(x, xstride, triples, y, ystride, n, out, ostride)
			}
			if left > 0 {
				x, out = (*uint16)(unsafe.Add(unsafe.Pointer(x), 3*triples*xstride)), (*float32)(unsafe.Add(unsafe.Pointer(out), 12*triples))
				dotF16F32R2x4Rows(x, xstride, left, y, ystride, n, out, ostride)
			}
			return
		}
		// Chunks outermost, up to 16 pairs (the frame's sums) a call.
		for {
			g := min(pairs, 16)
			dotF16F32R2x4Chunks(x, xstride, g, y, ystride, n, out, ostride)
			if pairs -= g; pairs == 0 {
				return // (not past the last row: pointers beyond an object are invalid)
			}
			x, out = (*uint16)(unsafe.Add(unsafe.Pointer(x), 2*g*xstride)), (*float32)(unsafe.Add(unsafe.Pointer(out), 8*g))
		}
	default:
		// Three rows at a time where the run allows (twelve accumulator chains to the two rows'
		// eight: 1.2x), the rest by two.
		triples, rest := runTriples(pairs)
		if triples > 0 {
			if s.bf16() {
				dotBF16F32TriplesAVX2(x, xstride, triples, y, ystride, n, out, ostride)
			} else {
				dotF16F32TriplesAVX2(x, xstride, triples, y, ystride, n, out, ostride)
			}
		}
		if rest > 0 {
			x, out = (*uint16)(unsafe.Add(unsafe.Pointer(x), 3*triples*xstride)), (*float32)(unsafe.Add(unsafe.Pointer(out), 12*triples))
			if s.bf16() {
				dotBF16F32PairsAVX2(x, xstride, rest, y, ystride, n, out, ostride)
			} else {
				dotF16F32PairsAVX2(x, xstride, rest, y, ystride, n, out, ostride)
			}
		}
	}
}

// f16ChunksMinN is the row length from which AVX-512's F16 runs of pairs go by chunks
// (dotF16F32R2x4Chunks): where four rows of activations no longer fit the level-1 cache.
// Cached twelve-row runs (BenchmarkPreparedKernels/F16/avx512/N/run12): 1.50-1.54 G block-
// columns/s against 1.41-1.43 at 8192 elements, but 1.38-1.48 against 1.68-1.71 at 2048.
var f16ChunksMinN = 4096

// two is two weight rows xstride bytes apart against four activation rows, out[4r+c].
func (s halfF32Set) two(x *uint16, xstride int, y *float32, ystride, n int, out *[8]float32) {
	if s == f16F32AVX512 {
		dotF16F32R2x4AVX512(x, xstride, y, ystride, n, &out[0])
		return
	}
	s.twoByPairs(x, xstride, y, ystride, n, out)
}

func (s halfF32Set) name() string {
	if s == f16F32AVX512 {
		return "avx512"
	}
	return "avx2"
}

// runTriples splits a run of pairs of rows into triples and the pairs left (none, one or two).
func runTriples(pairs int) (triples, left int) {
	left = [3]int{0, 2, 1}[2*pairs%3]
	return (2*pairs - 2*left) / 3, left
}

// unitRows: the runs go by three rows (AVX-512's F16 ones where not by chunks), in pairs.
func (s halfF32Set) unitRows() int { return 6 }

// bf16DP2x4 is the two-row form of the VDPBF16PS four-column dot.
func bf16DP2x4(w []byte, wstride int, act []byte, stride int, n int, out *[8]float32) {
	if wstride < 2*n || len(w) < wstride+2*n {
		panic(fmt.Sprintf("kernels: BF16 dot of two rows of %d elements, %d bytes apart, from %d bytes", n, wstride, len(w)))
	}
	geomBF16.blocks4(w, act, stride, n)
	np := n &^ 31
	var s [8]float32
	if np > 0 {
		dotBF16DPR2x4((*uint16)(unsafe.Pointer(&w[0])), wstride, (*uint16)(unsafe.Pointer(&act[0])), stride, np, &s[0])
	}
	for r := range 2 {
		for c := range 4 {
			out[4*r+c] = halfTail(s[4*r+c], w[r*wstride:], act[c*stride:], np, n, BF16ToF32)
		}
	}
}

// bf16DPPairs4 is bf16DP2x4 for pairs of weight rows in one call (a vecDot2x4PairsFn).
func bf16DPPairs4(w []byte, wstride, pairs int, act []byte, stride, n int, out []float32, ostride int) {
	if pairs <= 0 {
		return
	}
	checkPairs4(w, wstride, pairs, n, out, ostride)
	if n == 0 || n%32 != 0 {
		// The kernel takes whole 32-element steps, at least one; rows with a tail go a pair
		// at a time.
		pairsByTwo(bf16DP2x4, w, wstride, pairs, act, stride, n, out, ostride)
		return
	}
	geomBF16.blocks4(w, act, stride, n)
	// Triples of rows first (the faster kernel), then the one or two pairs that are left.
	triples, left := runTriples(pairs)
	y := (*uint16)(unsafe.Pointer(&act[0]))
	if triples > 0 {
		dotBF16DPR3x4Rows((*uint16)(unsafe.Pointer(&w[0])), wstride, triples, y, stride, n, &out[0], 4*ostride)
	}
	if left > 0 {
		r := 3 * triples
		dotBF16DPR2x4Rows((*uint16)(unsafe.Pointer(&w[r*wstride])), wstride, left, y, stride, n, &out[r], 4*ostride)
	}
}

// halfDot4 makes the four-column dot of 16-bit float kernel k (geometry g, conversion wide),
// bit for bit the one-column dot of the same arithmetic on each column.
func halfDot4(g *blockGeom, wide func(uint16) float32, k halfX4Kernel) vecDot4Fn {
	return func(row, act []byte, stride int, n int, out *[4]float32) {
		g.blocks4(row, act, stride, n)
		np := n &^ 31
		var s [4]float32
		if np > 0 {
			k.call((*uint16)(unsafe.Pointer(&row[0])), (*uint16)(unsafe.Pointer(&act[0])), stride, np, &s[0])
		}
		for c := range out {
			out[c] = halfTail(s[c], row, act[c*stride:], np, n, wide)
		}
	}
}

// halfX4Kernel names a four-column kernel of 16-bit floats: x against y + c·ystride bytes for
// c < 4, n a positive multiple of 32, out[c]. Calls go through call, not a func value, through
// which out (a local array where the results need a tail) would escape to the heap.
type halfX4Kernel uint8

const (
	f16R2x4      halfX4Kernel = iota // AVX2: the two-row kernel twice
	bf16R2x4                         // the same for BF16
	f16x4AVX512                      // dotF16x4AVX512
	bf16x4AVX512                     // dotBF16x4AVX512
	bf16DPx4                         // dotBF16DPx4 (VDPBF16PS)
)

func (k halfX4Kernel) call(x, y *uint16, ystride int, n int, out *float32) {
	y2, out2 := (*uint16)(unsafe.Add(unsafe.Pointer(y), 2*ystride)), (*float32)(unsafe.Add(unsafe.Pointer(out), 8))
	switch k {
	case f16R2x4:
		dotF16R2AVX2(x, y, ystride, n, out)
		dotF16R2AVX2(x, y2, ystride, n, out2)
	case bf16R2x4:
		dotBF16R2AVX2(x, y, ystride, n, out)
		dotBF16R2AVX2(x, y2, ystride, n, out2)
	case f16x4AVX512:
		dotF16x4AVX512(x, y, ystride, n, out)
	case bf16x4AVX512:
		dotBF16x4AVX512(x, y, ystride, n, out)
	default:
		dotBF16DPx4(x, y, ystride, n, out)
	}
}

// halfRows is the rowsFn of 16-bit float weights over k, a four-column kernel of them: its
// products are symmetric (each a product of two widened values, summed by position), so with
// the activation row in the weight row's place and four weight rows as its columns it returns
// what one, the one-column kernel of the same arithmetic, returns for each of those rows. The
// rows left over after the groups of four go through one.
func halfRows(g *blockGeom, wide func(uint16) float32, one vecDotFn, k halfX4Kernel) rowsFn {
	return func(w []byte, stride, rows int, act []byte, n int, out []float32) {
		if rows <= 0 {
			return
		}
		if stride < g.wb*n || len(w) < (rows-1)*stride+g.wb*n || len(act) < g.ab*n || len(out) < rows {
			panic(fmt.Sprintf("kernels: %s dot of %d rows of %d elements, %d bytes apart, from %d bytes and activations of %d into %d results",
				g.t, rows, n, stride, len(w), len(act), len(out)))
		}
		np := n &^ 31
		r := 0
		if np > 0 {
			var s [4]float32
			for ; r+4 <= rows; r += 4 {
				k.call((*uint16)(unsafe.Pointer(&act[0])), (*uint16)(unsafe.Pointer(&w[r*stride])), stride, np, &s[0])
				for c := range 4 {
					out[r+c] = halfTail(s[c], w[(r+c)*stride:], act, np, n, wide)
				}
			}
		}
		for ; r < rows; r++ {
			out[r] = one(w[r*stride:r*stride+g.wb*n], act, n)
		}
	}
}

// halfRunsFn walks the four runs of a rows4Fn in one call, the activation row as x: rows
// y + i·stride + k·ystride (i < count, k < 4), row (k, i)'s result at out + k·ostride + 4i
// bytes, each what the four-column kernel it is made of returns; n a positive multiple of 32.
// A Go call every four rows, with its checks and tails, was 4-5% of an F16 model's decode as
// an AVX2-only CPU and 2-3% with AVX-512 (profiles, Zen 4, one thread); 256 MiB from memory
// at one thread (BenchmarkHalfRows4) the runs read 1.03-1.07x faster on AVX2, 1.03-1.10x on
// AVX-512's F16 kernel, 0.99-1.02x on the BF16 VDPBF16PS one.
type halfRunsFn func(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)

// halfRows4 is halfRows' four-stream form (rows4Fn): the rows i of the four runs, dist rows
// apart, are k's columns. Where runs is not nil and the rows have no tail, it takes them all.
func halfRows4(g *blockGeom, wide func(uint16) float32, k halfX4Kernel, runs halfRunsFn) rows4Fn {
	return func(w []byte, stride, count, dist int, act []byte, n int, out []float32) {
		checkRows4(g.t, w, stride, count, dist, g.wb*n, out)
		if len(act) < g.ab*n {
			panic(fmt.Sprintf("kernels: %s dot of %d elements with activations of %d bytes", g.t, n, len(act)))
		}
		np := n &^ 31
		if runs != nil && np == n && n > 0 {
			runs((*uint16)(unsafe.Pointer(&act[0])), (*uint16)(unsafe.Pointer(&w[0])), dist*stride, count, stride, n, &out[0], 4*dist)
			return
		}
		var s [4]float32
		for i := 0; i < count; i++ {
			if np > 0 {
				k.call((*uint16)(unsafe.Pointer(&act[0])), (*uint16)(unsafe.Pointer(&w[i*stride])), dist*stride, np, &s[0])
			}
			for c := range 4 {
				r := c*dist + i
				out[r] = halfTail(s[c], w[r*stride:], act, np, n, wide)
			}
		}
	}
}

// vecDotF32 is the reference F32 dot (dotF32Act) with the products and float64 sums in vector
// registers: native compute of F32 weights is exact to the reference, which lands closer to
// llama.cpp's batched F32 products than float32 lanes do.
func vecDotF32(row, act []byte, n int) float32 {
	geomF32.blocks(row, act, n)
	if n == 0 {
		return 0
	}
	a := unsafe.Slice((*float32)(unsafe.Pointer(&row[0])), n)
	b := unsafe.Slice((*float32)(unsafe.Pointer(&act[0])), n)
	var lanes [4]float64
	n4 := n &^ 3
	if n4 > 0 {
		dotF32LanesAVX2(&a[0], &b[0], n4, &lanes)
	}
	for i := n4; i < n; i++ {
		lanes[0] += float64(a[i] * b[i])
	}
	return float32((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
}

// b8 wraps an exact eight-block row kernel: whole groups of eight blocks in assembly, the
// remaining blocks continued in Go with the same arithmetic.
func (g *blockGeom) b8(k func(x, y *byte, yd *float32, ys *int32, nb int) float32, tail func(sumf float32, row, act []byte, b0, nb int) float32) rowTabFn {
	return func(row, act []byte, yd []float32, ys []int32, n int) float32 {
		nb := g.blocks(row, act, n)
		if len(yd) < nb || len(ys) < nb {
			panic(fmt.Sprintf("kernels: %s row dot of %d blocks with tables of %d and %d", g.t, nb, len(yd), len(ys)))
		}
		var sumf float32
		n8 := nb &^ 7
		if n8 > 0 {
			sumf = k(&row[0], &act[0], &yd[0], &ys[0], n8)
		}
		return tail(sumf, row, act, n8, nb)
	}
}

// The Q4_0 kernels by instruction set, for q4_0Kernel's wrappers (which call them directly, so
// that the padded copy of a row's last group stays on the stack).
const (
	q4AVX2 = iota
	q4VNNI
)

// q4_0Kernel wraps the Q4_0 kernels of one instruction set with the checks they rely on; a
// row that ends inside a group of eight blocks passes its last group as a zero-padded copy.
func q4_0Kernel(set int) *preparedKernel {
	check := func(row, prep []byte, stride, cols, n int) int {
		nb := n / 32
		if n%32 != 0 || len(row) < 18*nb || stride < q4PrepBytes(nb) || len(prep) < (cols-1)*stride+q4PrepBytes(nb) {
			panic(fmt.Sprintf("kernels: Q4_0 dot of %d elements with a row of %d and prepared activations of %d bytes (%d columns, stride %d)",
				n, len(row), len(prep), cols, stride))
		}
		return nb
	}
	pk := &preparedKernel{t: ggml.Q4_0, prep: prepQ4_0Act, size: q4PrepBytes}
	pk.dot = func(row, prep []byte, n int) float32 {
		nb := check(row, prep, q4PrepBytes(n/32), 1, n)
		if nb == 0 {
			return 0
		}
		ng := (nb + 7) / 8
		if nb%8 != 0 {
			var tail [144]byte
			copy(tail[:], row[(ng-1)*144:18*nb])
			if set == q4VNNI {
				return dotQ4_0VNNI(&row[0], &prep[0], ng, &tail[0])
			}
			return dotQ4_0AVX2(&row[0], &prep[0], ng, &tail[0])
		}
		if set == q4VNNI {
			return dotQ4_0VNNI(&row[0], &prep[0], ng, nil)
		}
		return dotQ4_0AVX2(&row[0], &prep[0], ng, nil)
	}
	switch set {
	case q4AVX2:
		pk.name = "avx2"
	case q4VNNI:
		pk.name = "vnni"
		pk.rows = func(w []byte, stride, rows int, prep []byte, n int, out []float32) {
			nb := check(w, prep, q4PrepBytes(n/32), 1, n)
			if rows <= 0 {
				return
			}
			if stride < 18*nb || len(w) < (rows-1)*stride+18*nb || len(out) < rows {
				panic(fmt.Sprintf("kernels: Q4_0 dot of %d rows of %d elements, %d bytes apart, from %d bytes into %d results",
					rows, n, stride, len(w), len(out)))
			}
			if nb%8 != 0 || nb == 0 {
				for r := 0; r < rows; r++ {
					out[r] = pk.dot(w[r*stride:], prep, n)
				}
				return
			}
			dotQ4_0RowsVNNI(&w[0], stride, rows, &prep[0], nb/8, &out[0])
		}
		pk.rows4 = func(w []byte, stride, count, dist int, prep []byte, n int, out []float32) {
			nb := check(w, prep, q4PrepBytes(n/32), 1, n)
			checkRows4(ggml.Q4_0, w, stride, count, dist, 18*nb, out)
			if nb%8 != 0 || nb == 0 {
				for k := 0; k < 4; k++ {
					pk.rows(w[k*dist*stride:], stride, count, prep, n, out[k*dist:])
				}
				return
			}
			dotQ4_0Rows4VNNI(&w[0], stride, count, dist, &prep[0], nb/8, &out[0])
		}
		pk.dot4 = func(row, prep []byte, stride int, n int, out *[4]float32) {
			nb := check(row, prep, stride, 4, n)
			if nb == 0 {
				*out = [4]float32{}
				return
			}
			ng := (nb + 7) / 8
			if nb%8 != 0 {
				var tail [144]byte
				copy(tail[:], row[(ng-1)*144:18*nb])
				dotQ4_0x4VNNI(&row[0], &prep[0], ng, &tail[0], stride, &out[0])
				return
			}
			dotQ4_0x4VNNI(&row[0], &prep[0], ng, nil, stride, &out[0])
		}
	}
	return pk
}

// u8 wraps an unpack kernel and its dot with the checks they rely on.
func (g *blockGeom) u8(unpack func(x *byte, xstride int, nb int, dst *byte, sc *float32),
	dot func(w *byte, sc *float32, y *byte, yd *float32, ys *int32, nb int, out *float32, pf *byte, pfn int)) unpacked8 {
	return unpacked8{
		unpack: func(w []byte, xstride, n int, dst []byte, sc []float32) {
			nb := n / g.elems
			if n%g.elems != 0 || nb == 0 || xstride < nb*g.wb || len(w) < 7*xstride+nb*g.wb || len(dst) < 256*nb || len(sc) < 8*nb {
				panic(fmt.Sprintf("kernels: %s unpack of %d elements: weights %d (stride %d), buffers %d and %d", g.t, n, len(w), xstride, len(dst), len(sc)))
			}
			unpack(&w[0], xstride, nb, &dst[0], &sc[0])
		},
		dot: func(u []byte, sc []float32, act []byte, yd []float32, ys []int32, n int, out []float32, pf []byte) {
			nb := n / g.elems
			if n%g.elems != 0 || nb == 0 || len(u) < 256*nb || len(sc) < 8*nb || len(act) < nb*g.ab || len(yd) < nb || len(ys) < nb || len(out) < 8 {
				panic(fmt.Sprintf("kernels: %s unpacked dot of %d elements: buffers %d, %d, activations %d, tables %d, %d, output %d", g.t, n, len(u), len(sc), len(act), len(yd), len(ys), len(out)))
			}
			var pfp *byte
			if len(pf) > 0 {
				pfp = &pf[0]
			}
			dot(&u[0], &sc[0], &act[0], &yd[0], &ys[0], nb, &out[0], pfp, len(pf))
		},
	}
}

// The four-query attention kernels (attngroup_amd64.s), bit-identical per query to
// dotF16RowsQ32AVX2 and madF16Rows64AVX2.

//go:noescape
func dotF16RowsQ32x4AVX512(q *float32, qstride int, k *uint16, kstride, n, dim int, scale float32, out *float32, ostride int)

//go:noescape
func madF16Rows64x4AVX512(acc *uint16, astride int, v *uint16, vstride, n, chunks int, ms, vs *float32, fstride int)

// dotQ32x4 widens the four queries into q32 and runs dotF16RowsQ32x4AVX512.
// dotQ32 widens q into q32 (len(q) of it) and runs the one-query score kernel.
func dotQ32(q32 []float32, q, rows []uint16, stride int, scale float32, out []float32) {
	fromF16AVX2(&q32[0], &q[0], len(q))
	dotF16RowsQ32AVX2(&q32[0], &rows[0], 2*stride, len(out), len(q), scale, &out[0])
}

func dotQ32x4(q32 []float32, qs, rows []uint16, stride, n, dim int, scale float32, out []float32) {
	fromF16AVX2(&q32[0], &qs[0], len(qs))
	dotF16RowsQ32x4AVX512(&q32[0], 4*dim, &rows[0], 2*stride, n, dim, scale, &out[0], 4*n)
}
