// Package kernels holds the compute kernels of the inference engine: conversion between
// the GGUF tensor types and float32, llama.cpp's reference quantizers, the quantized dot products
// that llama.cpp's CPU backend computes, and the fp32 operations a llama-family forward pass needs.
//
// The reference functions (Dot, MatVec, DotF32, SiLU, ...) favour being an exact, readable mirror
// of ggml over speed. The fast path beside them — VecDot, MatMul on a Pool, the F16 and SiLU
// helpers (simd.go, matmul.go, pool.go) — runs Go assembly chosen at run time (AVX2/FMA/F16C and
// AVX-512 VNNI on amd64, NEON with the dot-product extension on arm64; build tag purego turns it
// off), and tests compare every kernel with its pure-Go twin.
//
// Floating-point note: Go may fuse x*y+z into one FMA instruction on some targets (arm64 always,
// amd64 with GOAMD64=v3). ggml's quantizers are compiled without FMA, so wherever a rounding step
// decides which integer a value quantizes to, products are wrapped in an explicit float32(...)
// conversion, which the Go specification defines as a rounding point that forbids fusion.
package kernels

import "math"

// f16Table maps every IEEE half bit pattern to its float32 value; it makes the F16 weight paths
// a table load per element instead of bit surgery.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = f16ToF32Compute(uint16(i))
	}
	return &t
}()

// F16ToF32 converts an IEEE 754 binary16 value to float32 (exact for every input).
func F16ToF32(h uint16) float32 { return f16Table[h] }

func f16ToF32Compute(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // inf or NaN: keep the payload, widen it
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	default: // subnormal half: mant * 2^-24 is exact in float32
		v := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(sign | math.Float32bits(v))
	}
}

// F32ToF16 converts float32 to IEEE binary16 with round-to-nearest-even, overflow to infinity and
// NaN to a quiet NaN, bit for bit like ggml's software GGML_FP32_TO_FP16 (which the F16C
// instruction also matches for every non-NaN input).
func F32ToF16(f float32) uint16 {
	const scaleToInf = float32(0x1.0p+112)
	const scaleToZero = float32(0x1.0p-110)
	// The two multiplications push values beyond the half range to infinity and let the addition
	// below perform the rounding of the mantissa in hardware.
	base := float32(float32(abs32(f)*scaleToInf) * scaleToZero)

	w := math.Float32bits(f)
	shl1w := w + w
	sign := w & 0x80000000
	bias := shl1w & 0xff000000
	if bias < 0x71000000 {
		bias = 0x71000000
	}
	base = math.Float32frombits((bias>>1)+0x07800000) + base
	bits := math.Float32bits(base)
	expBits := (bits >> 13) & 0x00007c00
	mantBits := bits & 0x00000fff
	nonsign := expBits + mantBits
	if shl1w > 0xff000000 {
		nonsign = 0x7e00
	}
	return uint16(sign>>16) | uint16(nonsign)
}

// BF16ToF32 widens a bfloat16 value (the top half of a float32).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds float32 to bfloat16 with round-to-nearest-even and quiet NaNs, like
// GGML_FP32_TO_BF16.
func F32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 64
	}
	return uint16((u + (0x7fff + ((u >> 16) & 1))) >> 16)
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ 0x80000000) }
