package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Dequantize converts len(dst) elements of type t from src to float32. src must hold at least
// the bytes of those elements; len(dst) must be a whole number of blocks.
func Dequantize(t ggml.Type, src []byte, dst []float32) error {
	need, err := t.RowSize(int64(len(dst)))
	if err != nil {
		return fmt.Errorf("dequantize: %w", err)
	}
	if int64(len(src)) < need {
		return fmt.Errorf("dequantize %s: %d elements need %d bytes, have %d", t, len(dst), need, len(src))
	}
	src = src[:need]
	switch t {
	case ggml.F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case ggml.F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case ggml.BF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case ggml.Q4_0:
		dequantizeQ4_0(src, dst)
	case ggml.Q4_1:
		dequantizeQ4_1(src, dst)
	case ggml.Q5_0:
		dequantizeQ5_0(src, dst)
	case ggml.Q5_1:
		dequantizeQ5_1(src, dst)
	case ggml.Q8_0:
		dequantizeQ8_0(src, dst)
	case ggml.Q8_1:
		dequantizeQ8_1(src, dst)
	case ggml.Q2_K:
		dequantizeQ2K(src, dst)
	case ggml.Q3_K:
		dequantizeQ3K(src, dst)
	case ggml.Q4_K:
		dequantizeQ4K(src, dst)
	case ggml.Q5_K:
		dequantizeQ5K(src, dst)
	case ggml.Q6_K:
		dequantizeQ6K(src, dst)
	case ggml.Q8_K:
		dequantizeQ8K(src, dst)
	default:
		return fmt.Errorf("dequantize: no kernel for type %s", t)
	}
	return nil
}

// Quantize converts src to type t with llama.cpp's reference quantizers (quantize_row_*_ref, the
// path llama-quantize takes without an importance matrix), so equal inputs give equal bytes.
// Rows are independent at block granularity, so a whole tensor can be passed at once.
func Quantize(t ggml.Type, src []float32) ([]byte, error) {
	n, err := t.RowSize(int64(len(src)))
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	dst := make([]byte, n)
	if err := QuantizeInto(t, src, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// QuantizeInto is Quantize writing into dst, which must be exactly the size of the result.
func QuantizeInto(t ggml.Type, src []float32, dst []byte) error {
	n, err := t.RowSize(int64(len(src)))
	if err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	if int64(len(dst)) != n {
		return fmt.Errorf("quantize %s: %d elements need %d bytes, buffer has %d", t, len(src), n, len(dst))
	}
	for i, v := range src {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("quantize %s: element %d is %v", t, i, v)
		}
	}
	switch t {
	case ggml.F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case ggml.F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case ggml.BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
		}
	case ggml.Q4_0:
		quantizeQ4_0(src, dst)
	case ggml.Q4_1:
		quantizeQ4_1(src, dst)
	case ggml.Q5_0:
		quantizeQ5_0(src, dst)
	case ggml.Q5_1:
		quantizeQ5_1(src, dst)
	case ggml.Q8_0:
		quantizeQ8_0(src, dst)
	case ggml.Q8_1:
		quantizeQ8_1(src, dst)
	case ggml.Q2_K:
		quantizeQ2K(src, dst)
	case ggml.Q3_K:
		quantizeQ3K(src, dst)
	case ggml.Q4_K:
		quantizeQ4K(src, dst)
	case ggml.Q5_K:
		quantizeQ5K(src, dst)
	case ggml.Q6_K:
		quantizeQ6K(src, dst)
	case ggml.Q8_K:
		quantizeQ8K(src, dst)
	default:
		return fmt.Errorf("quantize: no kernel for type %s", t)
	}
	return nil
}

// VecDotType is the type llama.cpp's CPU backend converts activations to before a dot product
// with weights of type t (type_traits_cpu[t].vec_dot_type). llama.cpp has no dot for Q8_1 or
// Q8_K weights; here they pair with their own type.
func VecDotType(t ggml.Type) ggml.Type {
	switch t {
	case ggml.F16:
		return ggml.F16
	case ggml.BF16:
		return ggml.BF16
	case ggml.Q4_0, ggml.Q5_0, ggml.Q8_0:
		return ggml.Q8_0
	case ggml.Q4_1, ggml.Q5_1, ggml.Q8_1:
		return ggml.Q8_1
	case ggml.Q2_K, ggml.Q3_K, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K, ggml.Q8_K:
		return ggml.Q8_K
	default:
		return ggml.F32
	}
}

// QuantizeActivations converts x to VecDotType(t), reusing buf when it is large enough, and
// returns the bytes. Q8_0 and Q8_1 activations are rounded like llama.cpp's SIMD CPU path
// (x86 AVX and ARM NEON: multiplier 127/amax, ties to even), not like the _ref quantizer; Q8_K
// uses the reference quantizer, as every CPU backend does. len(x) must be a whole number of
// blocks of that type.
//
// A block holding a NaN or an infinity gets a NaN scale (and sum) and zero quants on every CPU,
// so every dot product with it is NaN and the fault reaches the logits, where the sampler names
// it: the scale search would otherwise skip a NaN or keep it by operand order, an infinity's
// quant would be a conversion's undefined case (∞·0), and a logit of -∞ would pass as a token
// ruled out.
func QuantizeActivations(t ggml.Type, x []float32, buf []byte) []byte {
	at := VecDotType(t)
	n, err := at.RowSize(int64(len(x)))
	if err != nil {
		panic(fmt.Sprintf("kernels: activations for %s weights: %v", t, err))
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	switch at {
	case ggml.F32:
		for i, v := range x {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
	case ggml.F16:
		for i, v := range x {
			binary.LittleEndian.PutUint16(buf[2*i:], F32ToF16(v))
		}
	case ggml.BF16:
		for i, v := range x {
			binary.LittleEndian.PutUint16(buf[2*i:], F32ToBF16(v))
		}
	case ggml.Q8_0:
		quantizeQ8_0Act(x, buf)
	case ggml.Q8_1:
		quantizeQ8_1Act(x, buf)
	case ggml.Q8_K:
		quantizeQ8K(x, buf)
	}
	return buf
}

// quantizeQ8_0Act is the SIMD flavour of quantize_row_q8_0 used for activations on the CPUs
// llama.cpp is normally run on (vectorised where the CPU allows).
func quantizeQ8_0Act(x []float32, y []byte) { quantQ8_0Impl(x, y) }

func quantizeQ8_0ActGo(x []float32, y []byte) {
	for i := 0; i < len(x)/qk; i++ {
		xb, yb := x[i*qk:(i+1)*qk], y[i*34:(i+1)*34]
		var amax float32
		for _, v := range xb {
			amax = max(amax, abs32(v)) // a NaN wins Go's max
		}
		if nonFinite32(amax) {
			putNaNBlock(yb, 2)
			continue
		}
		putF16(yb, 0, amax/127)
		// A zero block, or one so small (amax below 127/MaxFloat32, whose F16 scale is zero)
		// that 127/amax overflows, gets zero quants: infinite products would make the
		// conversions' undefined cases (-128 from the AVX2 kernel, 127 from NEON's, what the
		// platform gives here), and every quant stays within -127..127.
		id := 127 / amax
		if math.IsInf(float64(id), 1) {
			id = 0
		}
		for j, v := range xb {
			yb[2+j] = uint8(int8(math.RoundToEven(float64(v * id))))
		}
	}
}

// The quiet NaNs a block of activations holding a NaN or an infinity gets as its scale (float16
// and float32).
const (
	f16NaN = 0x7e00
	f32NaN = 0x7fc00000
)

// nonFinite32 is true for NaNs and infinities.
func nonFinite32(v float32) bool { return !(abs32(v) <= math.MaxFloat32) }

// putNaNBlock writes a Q8_0 or Q8_1 block for values holding a NaN or an infinity: float16
// NaNs in its first hdr bytes (the scale, and Q8_1's sum), zero quants.
func putNaNBlock(yb []byte, hdr int) {
	for o := 0; o < hdr; o += 2 {
		binary.LittleEndian.PutUint16(yb[o:], f16NaN)
	}
	clear(yb[hdr:])
}

func quantizeQ8_1Act(x []float32, y []byte) {
	for i := 0; i < len(x)/qk; i++ {
		xb, yb := x[i*qk:(i+1)*qk], y[i*36:(i+1)*36]
		var amax float32
		for _, v := range xb {
			amax = max(amax, abs32(v))
		}
		if nonFinite32(amax) {
			putNaNBlock(yb, 4)
			continue
		}
		d := amax / 127
		putF16(yb, 0, d)
		var id float32
		if amax != 0 {
			id = 127 / amax
		}
		sum := 0
		for j, v := range xb {
			q := int8(math.RoundToEven(float64(v * id)))
			yb[4+j] = uint8(q)
			sum += int(q)
		}
		putF16(yb, 2, d*float32(sum))
	}
}

// Dot returns row · act for one weight row of type t and n elements and activations already
// converted with QuantizeActivations(t, ...), computed as llama.cpp's CPU vec_dot does.
func Dot(t ggml.Type, row []byte, act []byte, n int) float32 {
	switch t {
	case ggml.F32:
		return dotF32Act(row, act, n)
	case ggml.F16:
		return dotF16Act(row, act, n)
	case ggml.BF16:
		return dotBF16Act(row, act, n)
	case ggml.Q4_0:
		return dotQ4_0(row, act, n)
	case ggml.Q4_1:
		return dotQ4_1(row, act, n)
	case ggml.Q5_0:
		return dotQ5_0(row, act, n)
	case ggml.Q5_1:
		return dotQ5_1(row, act, n)
	case ggml.Q8_0:
		return dotQ8_0(row, act, n)
	case ggml.Q8_1:
		return dotQ8_1(row, act, n)
	case ggml.Q2_K:
		return dotQ2K(row, act, n)
	case ggml.Q3_K:
		return dotQ3K(row, act, n)
	case ggml.Q4_K:
		return dotQ4K(row, act, n)
	case ggml.Q5_K:
		return dotQ5K(row, act, n)
	case ggml.Q6_K:
		return dotQ6K(row, act, n)
	case ggml.Q8_K:
		return dotQ8K(row, act, n)
	}
	panic(fmt.Sprintf("kernels: no dot product for type %s", t))
}

// DotDequant returns row · x in fp32: the row is dequantized exactly into scratch (len >= n;
// unused for F32, F16 and BF16 rows, which are converted on the fly) and multiplied with DotF32.
// This is the arithmetic of the fixtures' f32ref and dequant_f32ref modes.
func DotDequant(t ggml.Type, row []byte, x []float32, scratch []float32) float32 {
	switch t {
	case ggml.F32:
		return dotRowF32(row, x)
	case ggml.F16:
		return dotRowF16(row, x)
	case ggml.BF16:
		return dotRowBF16(row, x)
	}
	n := len(x)
	if err := Dequantize(t, row, scratch[:n]); err != nil {
		panic(fmt.Sprintf("kernels: %v", err))
	}
	return DotF32(scratch[:n], x)
}
