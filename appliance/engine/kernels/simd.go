package kernels

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The fast path. Dot, MatVec and the float helpers above are the reference: they follow ggml's
// generic C code operation for operation, and tests hold them to llama.cpp's bits. The functions
// here compute the same integer sums with SIMD instructions chosen at run time (simd_amd64.go,
// simd_arm64.go) and accumulate the float block results in vector lanes, as llama.cpp's own
// AVX2 and NEON kernels do; they agree with the reference exactly wherever the float steps are
// exact, and otherwise to float32 rounding of the sum (see simd_test.go).

// vecDotFn is a SIMD dot of one weight row with converted activations of n elements.
type vecDotFn func(row, act []byte, n int) float32

// fastDots holds the SIMD dots by weight type; a nil entry falls back to the reference Dot.
var fastDots [ggml.BF16 + 1]vecDotFn

// variant is one SIMD dot kernel; variants lists every one this CPU can run (also those that
// dispatch passed over for a faster one), so tests check them all against the reference.
type variant struct {
	name  string
	t     ggml.Type
	dot   vecDotFn
	exact bool // equals the reference Dot bit for bit
}

var variants []variant

// use installs kernel f for type t and records it as a variant.
func use(name string, t ggml.Type, f vecDotFn) {
	fastDots[t] = f
	variants = append(variants, variant{name: name, t: t, dot: f})
}

// useExact is use for a kernel that reproduces the reference Dot bit for bit.
func useExact(name string, t ggml.Type, f vecDotFn) {
	use(name, t, f)
	variants[len(variants)-1].exact = true
}

// vecDot4Fn is a four-column SIMD dot: out[c] = row · act[c*stride:] for c < 4, bit-identical
// to four vecDotFn calls.
type vecDot4Fn func(row, act []byte, stride int, n int, out *[4]float32)

// fastDots4 holds the four-column kernels by weight type (nil: none).
var fastDots4 [ggml.BF16 + 1]vecDot4Fn

// variant4 is one four-column kernel and the one-column variant (an index into variants) it
// equals bit for bit: the dispatched single-column dot of its type when it was installed.
type variant4 struct {
	name string
	t    ggml.Type
	dot  vecDot4Fn
	one  int
	two  vecDot2x4Fn // its two-row form, if any
	// pairs: the two-row form over a run of row pairs, if any.
	pairs vecDot2x4PairsFn
}

var variants4 []variant4

// use4 installs f, which must equal the one-column dot last installed for t on every column.
func use4(name string, t ggml.Type, f vecDot4Fn) {
	one := -1
	for i, v := range variants {
		if v.t == t {
			one = i
		}
	}
	fastDots4[t], fastDots2x4[t], fastPairs4[t], pairsUnitRows[t] = f, nil, nil, 0
	variants4 = append(variants4, variant4{name: name, t: t, dot: f, one: one})
}

// vecDot2x4Fn is a vecDot4Fn for two weight rows wstride bytes apart at once (out[4r+c]: row
// r, column c), bit for bit: each activation load serves both rows.
type vecDot2x4Fn func(w []byte, wstride int, act []byte, stride int, n int, out *[8]float32)

// fastDots2x4 holds the two-row forms of fastDots4 (nil: none).
var fastDots2x4 [ggml.BF16 + 1]vecDot2x4Fn

// use4x2 is use4 with the kernel's two-row form f2.
func use4x2(name string, t ggml.Type, f vecDot4Fn, f2 vecDot2x4Fn) {
	use4(name, t, f)
	fastDots2x4[t] = f2
	variants4[len(variants4)-1].two = f2
}

// vecDot2x4PairsFn is a vecDot2x4Fn for pairs of weight rows (rows 2p and 2p+1, wstride
// bytes apart, for p < pairs) in one call, row r's result for column c at out[c·ostride+r], bit
// for bit: a prompt batch's run of weight rows without a call a pair.
type vecDot2x4PairsFn func(w []byte, wstride, pairs int, act []byte, stride, n int, out []float32, ostride int)

// fastPairs4 holds the run forms of fastDots2x4 (nil: none).
var fastPairs4 [ggml.BF16 + 1]vecDot2x4PairsFn

// pairsUnitRows holds, where more than two, the multiple of rows that fastPairs4's kernel
// takes whole (rows in threes, say); MatMul's prompt units are made such multiples.
var pairsUnitRows [ggml.BF16 + 1]int

// pairsRows is t's pairsUnitRows where it has a run kernel, else 0.
func pairsRows(t ggml.Type) int {
	if int(t) < len(fastPairs4) && fastPairs4[t] != nil {
		return pairsUnitRows[t]
	}
	return 0
}

// usePairs4 installs f as the run form of the two-row kernel use4x2 installed last for t; f
// goes fastest over a multiple of unitRows rows.
func usePairs4(t ggml.Type, f vecDot2x4PairsFn, unitRows int) {
	fastPairs4[t], pairsUnitRows[t] = f, unitRows
	variants4[len(variants4)-1].pairs = f
}

// pairsByTwo is a vecDot2x4PairsFn made of calls of the two-row kernel two, a pair each.
func pairsByTwo(two vecDot2x4Fn, w []byte, wstride, pairs int, act []byte, stride, n int, out []float32, ostride int) {
	var o [8]float32
	for p := range pairs {
		two(w[2*p*wstride:], wstride, act, stride, n, &o)
		for c := range 4 {
			out[c*ostride+2*p] = o[c]
			out[c*ostride+2*p+1] = o[4+c]
		}
	}
}

// checkPairs4 panics unless w holds pairs pairs of rows of n elements' worth wstride bytes
// apart (at least 2n bytes a row: the 16-bit float types) and out the four columns' results.
func checkPairs4(w []byte, wstride, pairs, n int, out []float32, ostride int) {
	if wstride < 2*n || len(w) < (2*pairs-1)*wstride+2*n || ostride < 2*pairs || len(out) < 3*ostride+2*pairs {
		panic(fmt.Sprintf("kernels: four-column dot of %d row pairs of %d elements, %d bytes apart, from %d bytes into %d results (stride %d)",
			pairs, n, wstride, len(w), len(out), ostride))
	}
}

// rowsFn is a vecDotFn for rows weight rows stride bytes apart (results to out[:rows]) in one
// call, each result bit-identical to the vecDotFn's: MatMul's decode path, where per-row call
// overhead is a fair part of a short row's time.
type rowsFn func(w []byte, stride, rows int, act []byte, n int, out []float32)

// rows4Fn is a rowsFn for four runs of count rows, dist rows apart (rows k·dist+i for k < 4,
// i < count, results at out[k·dist+i]), walked as four memory streams in step: a core keeps
// more reads in flight that way, and decoding is bound by them.
type rows4Fn func(w []byte, stride, count, dist int, act []byte, n int, out []float32)

var (
	fastRows  [ggml.BF16 + 1]rowsFn
	fastRows4 [ggml.BF16 + 1]rows4Fn
)

func useRows(t ggml.Type, f rowsFn, f4 rows4Fn) { fastRows[t], fastRows4[t] = f, f4 }

// checkRows4 panics unless w (rows stride bytes apart) and out hold the rows of a rows4Fn.
func checkRows4(t ggml.Type, w []byte, stride, count, dist, rowBytes int, out []float32) {
	if count <= 0 || dist < count || stride < rowBytes || len(w) < (3*dist+count-1)*stride+rowBytes || len(out) < 3*dist+count {
		panic(fmt.Sprintf("kernels: %s dot of four runs of %d rows %d apart (stride %d) from %d bytes into %d results",
			t, count, dist, stride, len(w), len(out)))
	}
}

// rowTabFn is an exact row dot of a type with Q8_0 activations that takes the activation row's
// tables (actTables): equal to the reference Dot bit for bit. MatMul computes the tables once
// per activation row; VecDot builds them per call.
type rowTabFn func(row, act []byte, yd []float32, ys []int32, n int) float32

var fastRowTab [ggml.BF16 + 1]rowTabFn

// useRowTab installs an exact row kernel, as the VecDot of t too.
func useRowTab(name string, t ggml.Type, f rowTabFn) {
	fastRowTab[t] = f
	useExact(name, t, func(row, act []byte, n int) float32 {
		// Tables on the stack for rows up to 8192 elements; VecDot is not the hot path (MatMul
		// keeps tables per activation row).
		nb := n / 32
		var ydb [256]float32
		var ysb [256]int32
		yd, ys := ydb[:], ysb[:]
		if nb > len(ydb) {
			yd, ys = make([]float32, nb), make([]int32, nb)
		}
		if len(act) < 34*nb {
			panic(fmt.Sprintf("kernels: %s dot of %d elements with activations of %d bytes", t, n, len(act)))
		}
		actTables(act, nb, yd[:nb], ys[:nb])
		return f(row, act, yd, ys, n)
	})
}

// tailQ8_0 continues a reference dot (dotQ8_0) from sumf over blocks [b0, nb).
func tailQ8_0(sumf float32, row, act []byte, b0, nb int) float32 {
	for ib := b0; ib < nb; ib++ {
		x, y := row[ib*34:(ib+1)*34], act[ib*34:(ib+1)*34]
		sumi := 0
		for j := 0; j < qk; j++ {
			sumi += int(int8(x[2+j])) * int(int8(y[2+j]))
		}
		sumf += float32(float32(sumi) * float32(getF16(x, 0)*getF16(y, 0)))
	}
	return sumf
}

// unpacked8 is the prompt-batch form of the exact Q8_0 dots: unpack converts eight rows
// (n elements each) into 256 bytes of quants and 8 float32 scales per block, and dot multiplies
// the unpacked rows with one activation row, each result equal to the reference Dot, while it
// prefetches pf (memory it will need next; may be empty).
type unpacked8 struct {
	unpack func(w []byte, xstride, n int, dst []byte, sc []float32)
	dot    func(u []byte, sc []float32, act []byte, yd []float32, ys []int32, n int, out []float32, pf []byte)
}

var fastUnpacked8 [ggml.BF16 + 1]*unpacked8

type variantU8 struct {
	name string
	t    ggml.Type
	k    unpacked8
}

var variantsU8 []variantU8

func useU8(name string, t ggml.Type, k unpacked8) {
	fastUnpacked8[t] = &k
	variantsU8 = append(variantsU8, variantU8{name, t, k})
}

// actTables writes, for each 32-element block of a Q8_0 activation row, its scale as float32
// (yd) and the sum of its quants (ys), which the exact Q8_0 kernels use.
func actTables(act []byte, nb int, yd []float32, ys []int32) {
	for b := 0; b < nb; b++ {
		blk := act[34*b : 34*b+34]
		yd[b] = getF16(blk, 0)
		var s int32
		for _, q := range blk[2:] {
			s += int32(int8(q))
		}
		ys[b] = s
	}
}

// simdName names the instruction sets the dispatch chose ("" for none).
var simdName string

// VecDot is Dot computed by the fastest kernel this CPU has for t (the reference Dot where
// there is none).
func VecDot(t ggml.Type, row, act []byte, n int) float32 {
	if int(t) < len(fastDots) {
		if f := fastDots[t]; f != nil {
			return f(row, act, n)
		}
	}
	return Dot(t, row, act, n)
}

// Accelerated reports whether VecDot has a SIMD kernel for weights of type t on this CPU.
func Accelerated(t ggml.Type) bool { return int(t) < len(fastDots) && fastDots[t] != nil }

// SIMD names the instruction sets the kernels use on this CPU, or "generic".
func SIMD() string {
	if simdName == "" {
		return "generic"
	}
	return simdName
}

// blockGeom is the block geometry of a weight type and its activation type, as constants: the
// checks run once per row, where a lookup in ggml's type table would cost more than a short dot.
type blockGeom struct {
	t             ggml.Type
	elems, wb, ab int // elements per block, weight and activation bytes per block
}

var (
	geomQ8_0 = blockGeom{ggml.Q8_0, 32, 34, 34}
	geomQ4_1 = blockGeom{ggml.Q4_1, 32, 20, 36}
	geomQ5_0 = blockGeom{ggml.Q5_0, 32, 22, 34}
	geomQ5_1 = blockGeom{ggml.Q5_1, 32, 24, 36}
	geomQ4K  = blockGeom{ggml.Q4_K, 256, 144, 292}
	geomQ6K  = blockGeom{ggml.Q6_K, 256, 210, 292}
	geomQ5K  = blockGeom{ggml.Q5_K, 256, 176, 292}
	geomQ3K  = blockGeom{ggml.Q3_K, 256, 110, 292}
	geomQ2K  = blockGeom{ggml.Q2_K, 256, 84, 292}
	geomF16  = blockGeom{ggml.F16, 1, 2, 2}
	geomBF16 = blockGeom{ggml.BF16, 1, 2, 2}
	geomF32  = blockGeom{ggml.F32, 1, 4, 4}
)

// blocks4 is blocks for a four-column kernel.
func (g *blockGeom) blocks4(row, act []byte, stride int, n int) int {
	nb := n / g.elems
	if n%g.elems != 0 || len(row) < nb*g.wb || stride < nb*g.ab || len(act) < 3*stride+nb*g.ab {
		panic(fmt.Sprintf("kernels: %s four-column dot of %d elements with a row of %d and activations of %d bytes (stride %d)",
			g.t, n, len(row), len(act), stride))
	}
	return nb
}

// x4 wraps a four-column kernel with the checks it relies on.
func (g *blockGeom) x4(k func(x, y *byte, ystride int, nb int, out *float32)) vecDot4Fn {
	return func(row, act []byte, stride int, n int, out *[4]float32) {
		nb := g.blocks4(row, act, stride, n)
		if nb == 0 {
			*out = [4]float32{}
			return
		}
		k(&row[0], &act[0], stride, nb, &out[0])
	}
}

// blocks checks that row and act hold n elements and returns the number of blocks; the
// assembly kernels trust it.
func (g *blockGeom) blocks(row, act []byte, n int) int {
	nb := n / g.elems
	if n%g.elems != 0 || len(row) < nb*g.wb || len(act) < nb*g.ab {
		panic(fmt.Sprintf("kernels: %s dot of %d elements with a row of %d and activations of %d bytes", g.t, n, len(row), len(act)))
	}
	return nb
}

// The float vector helpers of attention and the KV cache. Each has a scalar twin here that is
// also the fallback; the SIMD versions are installed by the architecture's init.
var (
	dotF16Impl   = dotF16Go
	madF16Impl   = madF16Go
	scaleF16Impl = scaleF16Go
	toF16Impl    = toF16Go
	fromF16Impl  = fromF16Go
	dotF32Impl   = dotF32Go
	siluImpl     = siluGo
	expImpl      = expGo
	subBelowImpl = subBelowGo
	// The element-wise steps of a layer (RMSNorm's scaling, the residual Add, SwiGLU's Mul):
	// each output element is one float32 operation (two for normScale, in the same order), so
	// the SIMD forms equal the twins bit for bit.
	mulImpl       = mulGo
	addImpl       = addGo
	normScaleImpl = normScaleGo
	// RoPE's rotation: per pair two products and a difference or sum, in the same order.
	ropeImpl = ropeGo
	// Activation quantization: each matrix product's input, once per token and column.
	quantQ8_0Impl = quantizeQ8_0ActGo
	quantQ8KImpl  = quantizeQ8KGo
)

// SiLUFast sets out[i] = x[i] / (1 + exp(-x[i])) with a float32 exp (a degree-6 polynomial after
// range reduction, within 2 ulp of the true exp): the native-compute SiLU, vectorised where the
// CPU allows. SiLU is the reference with a correctly rounded exp. out may be x.
func SiLUFast(out, x []float32) {
	sameLen("SiLUFast", len(x), len(out))
	siluImpl(out, x)
}

// ExpFast sets out[i] = exp(x[i]) with SiLUFast's float32 exp (within 2 ulp): attention's
// softmax weights. An x below -87 gives exp(-87), one above 88 +Inf. out may be x.
func ExpFast(out, x []float32) {
	sameLen("ExpFast", len(x), len(out))
	expImpl(out, x)
}

// SubBelow sets dst[i] = src[i] - m for every i and reports true where no src[i] exceeds m;
// where one does it reports false and leaves dst undefined. Attention's online softmax takes a
// block of scores this way where none raises the running maximum m (most blocks past the
// first), instead of position by position.
func SubBelow(dst, src []float32, m float32) bool {
	sameLen("SubBelow", len(src), len(dst))
	return subBelowImpl(dst, src, m)
}

func mulGo(out, a, b []float32) {
	for i := range out {
		out[i] = a[i] * b[i]
	}
}

func addGo(out, a, b []float32) {
	for i := range out {
		out[i] = a[i] + b[i]
	}
}

// normScaleGo sets out[i] = x[i]·scale·w[i], the product taken left to right (RMSNorm's).
func normScaleGo(out, x, w []float32, scale float32) {
	for i, v := range x {
		out[i] = v * scale * w[i]
	}
}

func subBelowGo(dst, src []float32, m float32) bool {
	for _, v := range src {
		if v > m {
			return false
		}
	}
	for i, v := range src {
		dst[i] = v - m
	}
	return true
}

// The exp of siluGo and expGo: exp(t) = 2^n · e^r with n = round(t·log2 e), r = t - n·ln2 (ln2 in two
// parts so that n·ln2high is exact), e^r by its Taylor polynomial of degree 6; t is clamped to
// [-87, 88] so that 2^n stays a normal float32, and beyond 88 exp(t) is taken as +Inf (so
// SiLU of a large negative x is -0, not a tiny clamped value). Every product is rounded on its own (the
// float32() conversions forbid fused multiply-adds), as in the AVX2 kernel.
const (
	siluLog2e = float32(1.44269504)
	siluLn2Hi = float32(0.693359375)
	siluLn2Lo = float32(-2.12194440e-4)
)

func siluGo(out, x []float32) {
	for i, v := range x {
		e := expPoly(min(max(-v, -87), 88))
		if -v > 88 {
			e = float32(math.Inf(1))
		}
		out[i] = v / (1 + e)
	}
}

func expGo(out, x []float32) {
	for i, v := range x {
		e := expPoly(min(max(v, -87), 88))
		if v > 88 {
			e = float32(math.Inf(1))
		}
		out[i] = e
	}
}

// expPoly is exp(t) for t in [-87, 88] by range reduction and the degree-6 polynomial.
func expPoly(t float32) float32 {
	n := float32(math.RoundToEven(float64(float32(t * siluLog2e))))
	r := t - float32(n*siluLn2Hi)
	r = r - float32(n*siluLn2Lo)
	p := float32(1.0 / 720)
	p = float32(p*r) + float32(1.0/120)
	p = float32(p*r) + float32(1.0/24)
	p = float32(p*r) + float32(1.0/6)
	p = float32(p*r) + 0.5
	p = float32(p*r) + 1
	p = float32(p*r) + 1
	return float32(p * math.Float32frombits(uint32(int32(n)+127)<<23))
}

// DotF16 returns a·b for two F16 vectors of equal length, with float32 products and sums
// (ggml_vec_dot_f16's arithmetic, lanes aside).
func DotF16(a, b []uint16) float32 {
	sameLen("DotF16", len(a), len(b))
	return dotF16Impl(a, b)
}

// MadF16 sets acc[i] = f16(v[i]*s + acc[i]) with one float32 rounding before the half
// rounding (ggml_vec_mad_f16 with F16C).
func MadF16(acc, v []uint16, s float32) {
	sameLen("MadF16", len(acc), len(v))
	madF16Impl(acc, v, s)
}

// ScaleF16 sets acc[i] = f16(acc[i]*s).
func ScaleF16(acc []uint16, s float32) { scaleF16Impl(acc, s) }

// ToF16 rounds src to halves (round to nearest even, as F32ToF16).
func ToF16(dst []uint16, src []float32) {
	sameLen("ToF16", len(dst), len(src))
	toF16Impl(dst, src)
}

// FromF16 widens halves to float32.
func FromF16(dst []float32, src []uint16) {
	sameLen("FromF16", len(dst), len(src))
	fromF16Impl(dst, src)
}

// DotF32Fast returns a·b with float32 products and sums in lanes (DotF32 is the float64
// reference).
func DotF32Fast(a, b []float32) float32 {
	sameLen("DotF32Fast", len(a), len(b))
	return dotF32Impl(a, b)
}

// dotF16Go and dotF32Go are ggml_vec_dot_f16/f32 as ggml's AVX2 build computes them: four
// vectors of eight float32 lanes over steps of 32 elements (an F16 product is exact in float32,
// so adding it equals the FMA), reduced in ggml's order, then the leftover elements (in float64
// for F16, float32 for F32). The SIMD kernels compute the same, so the two agree bit for bit.
func dotF16Go(a, b []uint16) float32 {
	var acc [4][8]float32
	np := len(a) &^ 31
	for i := 0; i < np; i += 32 {
		for j := range acc {
			for l := range acc[j] {
				k := i + 8*j + l
				acc[j][l] += F16ToF32(a[k]) * F16ToF32(b[k])
			}
		}
	}
	var s float32
	if np > 0 {
		s = reduce4(&acc)
	}
	return dotF16Tail(a, b, np, s)
}

// vecDotF16 is the SIMD dot of F16 weights (dotF16Impl: dotF16Go's arithmetic).
func vecDotF16(row, act []byte, n int) float32 {
	geomF16.blocks(row, act, n)
	if n == 0 {
		return 0
	}
	a := unsafe.Slice((*uint16)(unsafe.Pointer(&row[0])), n)
	b := unsafe.Slice((*uint16)(unsafe.Pointer(&act[0])), n)
	return dotF16Impl(a, b)
}

// bf16Dot makes a BF16 dot of kernel k, which takes the whole 32-element steps; the last
// elements are added in Go.
func bf16Dot(k func(x, y *uint16, n int) float32) vecDotFn {
	return func(row, act []byte, n int) float32 {
		geomBF16.blocks(row, act, n)
		if n == 0 {
			return 0
		}
		a := unsafe.Slice((*uint16)(unsafe.Pointer(&row[0])), n)
		b := unsafe.Slice((*uint16)(unsafe.Pointer(&act[0])), n)
		np := n &^ 31
		var s float32
		if np > 0 {
			s = k(&a[0], &b[0], np)
		}
		return halfTail(s, row, act, np, n, BF16ToF32)
	}
}

// halfTail adds elements [np, n) of row·act (16-bit floats that wide converts) to the kernel's
// sum s, in float64.
func halfTail(s float32, row, act []byte, np, n int, wide func(uint16) float32) float32 {
	sum := float64(s)
	for i := np; i < n; i++ {
		sum += float64(wide(le.Uint16(row[2*i:])) * wide(le.Uint16(act[2*i:])))
	}
	return float32(sum)
}

func dotF16Tail(a, b []uint16, np int, s float32) float32 {
	sum := float64(s)
	for i := np; i < len(a); i++ {
		sum += float64(F16ToF32(a[i]) * F16ToF32(b[i]))
	}
	return float32(sum)
}

func dotF32Go(a, b []float32) float32 {
	var acc [4][8]float32
	np := len(a) &^ 31
	for i := 0; i < np; i += 32 {
		for j := range acc {
			for l := range acc[j] {
				k := i + 8*j + l
				acc[j][l] = fma32(a[k], b[k], acc[j][l])
			}
		}
	}
	var s float32
	if np > 0 {
		s = reduce4(&acc)
	}
	return dotF32Tail(a, b, np, s)
}

func dotF32Tail(a, b []float32, np int, s float32) float32 {
	for i := np; i < len(a); i++ {
		s += float32(a[i] * b[i])
	}
	return s
}

// reduce4 is GGML_F32x8_REDUCE.
func reduce4(acc *[4][8]float32) float32 {
	var x [8]float32
	for l := range x {
		x[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l])
	}
	t := [4]float32{x[0] + x[4], x[1] + x[5], x[2] + x[6], x[3] + x[7]}
	return (t[0] + t[1]) + (t[2] + t[3])
}

// fma32 is a float32 fused multiply-add: the float64 result of math.FMA is rounded once more to
// float32, which differs from a single rounding only when that float64 lands exactly halfway
// between two float32 values (never for the F16 operands it is used with here, whose exact
// products and sums fit in float64's mantissa unless the exponents are far apart).
func fma32(a, b, c float32) float32 { return float32(math.FMA(float64(a), float64(b), float64(c))) }

func madF16Go(acc, v []uint16, s float32) {
	for i := range acc {
		acc[i] = F32ToF16(fma32(F16ToF32(v[i]), s, F16ToF32(acc[i])))
	}
}

func scaleF16Go(acc []uint16, s float32) {
	for i := range acc {
		acc[i] = F32ToF16(F16ToF32(acc[i]) * s)
	}
}

func toF16Go(dst []uint16, src []float32) {
	for i, v := range src {
		dst[i] = F32ToF16(v)
	}
}

func fromF16Go(dst []float32, src []uint16) {
	for i, v := range src {
		dst[i] = F16ToF32(v)
	}
}

// kDot wraps a block kernel (a K-quant's, or a legacy type's) as a vecDotFn.
func kDot(g *blockGeom, f func(x, y *byte, nb int) float32) vecDotFn {
	return func(row, act []byte, n int) float32 {
		nb := g.blocks(row, act, n)
		if nb == 0 {
			return 0
		}
		return f(&row[0], &act[0], nb)
	}
}
