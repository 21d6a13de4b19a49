package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// littleEndianHost: F32 and I32 payloads are the host's own bits on little-endian machines (every
// platform exo ships for), so they are sent and received without conversion. On a big-endian host
// the helpers below convert instead.
var littleEndianHost = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// F32Bytes returns the payload bytes of x: a view of x's memory on little-endian hosts (no copy),
// a little-endian copy elsewhere.
func F32Bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	if littleEndianHost {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 4*len(x))
	}
	out := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}

// F32View returns payload as float32 values without copying when the host is little-endian and
// payload is 4-byte aligned (buffers from make are); ok is false otherwise, and then Decode copies.
func F32View(payload []byte) (x []float32, ok bool) {
	if len(payload)%4 != 0 || !littleEndianHost {
		return nil, false
	}
	if len(payload) == 0 {
		return nil, true
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(payload)))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(payload))), len(payload)/4), true
}

// I32Bytes returns the payload bytes of token ids, a view on little-endian hosts.
func I32Bytes(x []int32) []byte {
	if len(x) == 0 {
		return nil
	}
	if littleEndianHost {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 4*len(x))
	}
	out := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
	}
	return out
}

// DecodeI32 appends the token ids of an I32 payload to dst[:0].
func DecodeI32(payload []byte, dst []int32) ([]int32, error) {
	if len(payload)%4 != 0 {
		return nil, fmt.Errorf("wire: I32 payload of %d bytes is not a multiple of 4", len(payload))
	}
	dst = dst[:0]
	for i := 0; i < len(payload); i += 4 {
		dst = append(dst, int32(binary.LittleEndian.Uint32(payload[i:])))
	}
	return dst, nil
}

// EncodedSize is the payload size of n float32 values in dtype dt.
func EncodedSize(dt DType, n int) (int, error) {
	switch dt {
	case F32:
		return 4 * n, nil
	case F16:
		return 2 * n, nil
	case Q8_0:
		if n%Q8Block != 0 {
			return 0, fmt.Errorf("wire: Q8_0 needs a multiple of %d values, have %d", Q8Block, n)
		}
		return n / Q8Block * (2 + Q8Block), nil
	}
	return 0, fmt.Errorf("wire: %s is not an activation encoding (want F32, F16 or Q8_0)", dt)
}

// Encode converts activations to dtype dt. For F32 the result is F32Bytes(src), a view of src and
// not a copy; for F16 and Q8_0 it is written into dst, which is grown when too small.
func Encode(dt DType, src []float32, dst []byte) ([]byte, error) {
	size, err := EncodedSize(dt, len(src))
	if err != nil {
		return nil, err
	}
	switch dt {
	case F32:
		return F32Bytes(src), nil
	case F16:
		out := Grow(dst, size)
		for i, v := range src {
			binary.LittleEndian.PutUint16(out[2*i:], F32ToF16(v))
		}
		return out, nil
	default: // Q8_0
		out := Grow(dst, size)
		for b := 0; b < len(src)/Q8Block; b++ {
			quantizeQ8Block(src[b*Q8Block:(b+1)*Q8Block], out[b*(2+Q8Block):(b+1)*(2+Q8Block)])
		}
		return out, nil
	}
}

// Decode converts a payload of dtype dt back to float32 values in dst, grown when too small.
func Decode(dt DType, payload []byte, dst []float32) ([]float32, error) {
	var n int
	switch dt {
	case F32:
		if len(payload)%4 != 0 {
			return nil, fmt.Errorf("wire: F32 payload of %d bytes is not a multiple of 4", len(payload))
		}
		n = len(payload) / 4
	case F16:
		if len(payload)%2 != 0 {
			return nil, fmt.Errorf("wire: F16 payload of %d bytes is not a multiple of 2", len(payload))
		}
		n = len(payload) / 2
	case Q8_0:
		if len(payload)%(2+Q8Block) != 0 {
			return nil, fmt.Errorf("wire: Q8_0 payload of %d bytes is not a multiple of the %d-byte block", len(payload), 2+Q8Block)
		}
		n = len(payload) / (2 + Q8Block) * Q8Block
	default:
		return nil, fmt.Errorf("wire: %s is not an activation encoding (want F32, F16 or Q8_0)", dt)
	}
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(payload[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(payload[2*i:]))
		}
	case Q8_0:
		for b := 0; b < n/Q8Block; b++ {
			blk := payload[b*(2+Q8Block):]
			d := F16ToF32(binary.LittleEndian.Uint16(blk))
			for j := 0; j < Q8Block; j++ {
				dst[b*Q8Block+j] = float32(int8(blk[2+j])) * d
			}
		}
	}
	return dst, nil
}

// quantizeQ8Block follows ggml's reference Q8_0 quantizer: scale d = max|x|/127 stored as F16,
// q = round(x/d) with halves away from zero, using the unrounded d, so a receiver can hand the
// bytes to a Q8_0 dot product unchanged.
func quantizeQ8Block(x []float32, out []byte) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(out, F32ToF16(d))
	for j, v := range x {
		out[2+j] = byte(int8(math.Round(float64(v * id))))
	}
}

// F32ToF16 converts to IEEE 754 binary16 with round to nearest, ties to even; values beyond the
// F16 range become infinities, NaN stays NaN.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half: its mantissa counts units of 2^-24.
		shift := uint32(14 - e)
		if shift > 24 {
			return sign
		}
		full := man | 0x800000
		m := full >> shift
		rem := full & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && m&1 == 1) {
			m++ // may carry into the smallest normal, which is the right answer
		}
		return sign | uint16(m)
	}
	m := man >> 13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && m&1 == 1) {
		m++ // a carry out of the mantissa bumps the exponent, up to infinity
	}
	return sign | (uint16(e)<<10 + uint16(m))
}

// F16ToF32 converts IEEE 754 binary16 to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	e := uint32(h>>10) & 0x1f
	m := uint32(h & 0x3ff)
	switch {
	case e == 0:
		v := float32(m) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	case e == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | m<<13)
	}
	return math.Float32frombits(sign | (e+112)<<23 | m<<13)
}
