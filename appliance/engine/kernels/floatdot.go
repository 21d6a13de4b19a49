package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Dot products of the float types. All of them use one summation pattern: products rounded to
// float32 (exact for F16·F16 and BF16·BF16), summed in float64 over four lanes (element index
// mod 4) that are combined pairwise at the end, like ggml_vec_dot_f32's scalar path sums in
// double. Because the pattern and the products are the same, a row of F16 weights gives the same
// bits whether it is dotted directly, or dequantized first and passed to DotF32.

// DotF32 is the fp32 dot product of a and b, which must have equal lengths.
func DotF32(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("kernels: DotF32 of lengths %d and %d", len(a), len(b)))
	}
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		aa, bb := a[i:i+4:i+4], b[i:i+4:i+4]
		s0 += float64(aa[0] * bb[0])
		s1 += float64(aa[1] * bb[1])
		s2 += float64(aa[2] * bb[2])
		s3 += float64(aa[3] * bb[3])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i] * b[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

func f32At(b []byte, i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])) }

// dotRowF32 multiplies a row of little-endian float32 bytes with x.
func dotRowF32(row []byte, x []float32) float32 {
	n := len(x)
	row = row[:4*n]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		r, xx := row[4*i:4*i+16:4*i+16], x[i:i+4:i+4]
		s0 += float64(f32At(r, 0) * xx[0])
		s1 += float64(f32At(r, 1) * xx[1])
		s2 += float64(f32At(r, 2) * xx[2])
		s3 += float64(f32At(r, 3) * xx[3])
	}
	for ; i < n; i++ {
		s0 += float64(f32At(row, i) * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

func f16At(b []byte, i int) float32 { return F16ToF32(binary.LittleEndian.Uint16(b[2*i:])) }

func dotRowF16(row []byte, x []float32) float32 {
	n := len(x)
	row = row[:2*n]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		r, xx := row[2*i:2*i+8:2*i+8], x[i:i+4:i+4]
		s0 += float64(f16At(r, 0) * xx[0])
		s1 += float64(f16At(r, 1) * xx[1])
		s2 += float64(f16At(r, 2) * xx[2])
		s3 += float64(f16At(r, 3) * xx[3])
	}
	for ; i < n; i++ {
		s0 += float64(f16At(row, i) * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

func bf16At(b []byte, i int) float32 { return BF16ToF32(binary.LittleEndian.Uint16(b[2*i:])) }

func dotRowBF16(row []byte, x []float32) float32 {
	n := len(x)
	row = row[:2*n]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		r, xx := row[2*i:2*i+8:2*i+8], x[i:i+4:i+4]
		s0 += float64(bf16At(r, 0) * xx[0])
		s1 += float64(bf16At(r, 1) * xx[1])
		s2 += float64(bf16At(r, 2) * xx[2])
		s3 += float64(bf16At(r, 3) * xx[3])
	}
	for ; i < n; i++ {
		s0 += float64(bf16At(row, i) * x[i])
	}
	return float32((s0 + s1) + (s2 + s3))
}

// decodeAct widens float activations (F32, F16 or BF16 bytes) to float32, exactly.
func decodeAct(at ggml.Type, act []byte, x []float32) {
	switch at {
	case ggml.F32:
		for i := range x {
			x[i] = f32At(act, i)
		}
	case ggml.F16:
		for i := range x {
			x[i] = f16At(act, i)
		}
	case ggml.BF16:
		for i := range x {
			x[i] = bf16At(act, i)
		}
	}
}

func dotF32Act(row, act []byte, n int) float32 {
	var s0, s1, s2, s3 float64
	row, act = row[:4*n], act[:4*n]
	i := 0
	for ; i+4 <= n; i += 4 {
		r, a := row[4*i:4*i+16:4*i+16], act[4*i:4*i+16:4*i+16]
		s0 += float64(f32At(r, 0) * f32At(a, 0))
		s1 += float64(f32At(r, 1) * f32At(a, 1))
		s2 += float64(f32At(r, 2) * f32At(a, 2))
		s3 += float64(f32At(r, 3) * f32At(a, 3))
	}
	for ; i < n; i++ {
		s0 += float64(f32At(row, i) * f32At(act, i))
	}
	return float32((s0 + s1) + (s2 + s3))
}

func dotF16Act(row, act []byte, n int) float32 {
	var s0, s1, s2, s3 float64
	row, act = row[:2*n], act[:2*n]
	i := 0
	for ; i+4 <= n; i += 4 {
		r, a := row[2*i:2*i+8:2*i+8], act[2*i:2*i+8:2*i+8]
		s0 += float64(f16At(r, 0) * f16At(a, 0))
		s1 += float64(f16At(r, 1) * f16At(a, 1))
		s2 += float64(f16At(r, 2) * f16At(a, 2))
		s3 += float64(f16At(r, 3) * f16At(a, 3))
	}
	for ; i < n; i++ {
		s0 += float64(f16At(row, i) * f16At(act, i))
	}
	return float32((s0 + s1) + (s2 + s3))
}

func dotBF16Act(row, act []byte, n int) float32 {
	var s0, s1, s2, s3 float64
	row, act = row[:2*n], act[:2*n]
	i := 0
	for ; i+4 <= n; i += 4 {
		r, a := row[2*i:2*i+8:2*i+8], act[2*i:2*i+8:2*i+8]
		s0 += float64(bf16At(r, 0) * bf16At(a, 0))
		s1 += float64(bf16At(r, 1) * bf16At(a, 1))
		s2 += float64(bf16At(r, 2) * bf16At(a, 2))
		s3 += float64(bf16At(r, 3) * bf16At(a, 3))
	}
	for ; i < n; i++ {
		s0 += float64(bf16At(row, i) * bf16At(act, i))
	}
	return float32((s0 + s1) + (s2 + s3))
}
