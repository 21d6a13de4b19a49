//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// The F16 helpers of attention and the KV cache on NEON, equal to their Go twins bit for bit:
// half to float32 is exact, products of two halves are exact in float32 (so FMLA equals the
// twins' multiply and add), and float32 to half rounds to nearest even as F32ToF16 does.
// Instructions the Go assembler lacks are encoded.

// Group j of eight 16-bit floats (a in Va, b in Vb) widened (lo: elements 0-3, hi: 4-7) into
// the lanes of accumulator j, V8-V11 scratch.
#define HALF_GROUP(wlo, whi, a, b, lo, hi) \
	wlo(a, 8); \
	whi(a, 9); \
	wlo(b, 10); \
	whi(b, 11); \
	VFMLA V10.S4, V8.S4, lo.S4; \
	VFMLA V11.S4, V9.S4, hi.S4

#define F16_GROUP(a, b, lo, hi) HALF_GROUP(FCVTL_S, FCVTL2_S, a, b, lo, hi)

// BF16 widened exactly by a 16-bit shift.
#define BF16_GROUP(a, b, lo, hi) HALF_GROUP(SHLL16, SHLL2_16, a, b, lo, hi)

// The four accumulators of eight float32 lanes of dotF16Go and dotF32Go (accumulator j's
// lanes 0-3 in V(16+2j), 4-7 in V(17+2j)) set to zero, and reduced in reduce4's order into the
// float32 result F0: x = (acc0 + acc2) + (acc1 + acc3), lanes 0-3 in V24 and 4-7 in V26;
// t = x_lo + x_hi; (t0 + t1) + (t2 + t3).
#define ACC8_ZERO \
	VEOR V16.B16, V16.B16, V16.B16; \
	VEOR V17.B16, V17.B16, V17.B16; \
	VEOR V18.B16, V18.B16, V18.B16; \
	VEOR V19.B16, V19.B16, V19.B16; \
	VEOR V20.B16, V20.B16, V20.B16; \
	VEOR V21.B16, V21.B16, V21.B16; \
	VEOR V22.B16, V22.B16, V22.B16; \
	VEOR V23.B16, V23.B16, V23.B16

// The 16-bit float dots of 32-element steps (func (a, b *uint16, n int) float32): group widens
// and accumulates eight of each operand.
#define HALF32_KERNEL(group, loop) \
	MOVD a+0(FP), R0; \
	MOVD b+8(FP), R1; \
	MOVD n+16(FP), R2; \
	ACC8_ZERO; \
loop: \
	VLD1.P 64(R0), [V0.H8, V1.H8, V2.H8, V3.H8]; \
	VLD1.P 64(R1), [V4.H8, V5.H8, V6.H8, V7.H8]; \
	group(0, 4, V16, V17); \
	group(1, 5, V18, V19); \
	group(2, 6, V20, V21); \
	group(3, 7, V22, V23); \
	SUBS $32, R2; \
	BNE  loop; \
	REDUCE4_F0; \
	FMOVS F0, ret+24(FP); \
	RET

#define REDUCE4_F0 \
	FADD4S(20, 16, 24); \
	FADD4S(22, 18, 25); \
	FADD4S(25, 24, 24); \
	FADD4S(21, 17, 26); \
	FADD4S(23, 19, 27); \
	FADD4S(27, 26, 26); \
	FADD4S(26, 24, 24); \
	FADDP4S(24, 24, 24); \
	FADDP_S(24, 0)

// func dotF16NEON32(a, b *uint16, n int) float32
// n a positive multiple of 32: dotF16Go's four accumulators of eight lanes (V16-V23) over
// 32-element steps, reduced in reduce4's order.
TEXT ·dotF16NEON32(SB), NOSPLIT, $0-28
	HALF32_KERNEL(F16_GROUP, h32_loop)

// func dotBF16NEON32(a, b *uint16, n int) float32
// dotF16NEON32 for BF16 (dotBF16AVX2's arithmetic): the bf16Dot of arm64.
TEXT ·dotBF16NEON32(SB), NOSPLIT, $0-28
	HALF32_KERNEL(BF16_GROUP, bh32_loop)

// func madF16NEON(acc, v *uint16, s float32, n int)
// n a positive multiple of 8: acc = f16(v·s + acc).
TEXT ·madF16NEON(SB), NOSPLIT, $0-32
	MOVD  acc+0(FP), R0
	MOVD  v+8(FP), R1
	FMOVS s+16(FP), F1
	MOVD  n+24(FP), R2
	VDUP  V1.S[0], V1.S4

mad_loop:
	VLD1   (R0), [V2.H8]
	VLD1.P 16(R1), [V3.H8]
	FCVTL_S(2, 4)
	FCVTL2_S(2, 5)
	FCVTL_S(3, 6)
	FCVTL2_S(3, 7)
	VFMLA  V1.S4, V6.S4, V4.S4
	VFMLA  V1.S4, V7.S4, V5.S4
	FCVTN_H(4, 2)
	FCVTN2_H(5, 2)
	VST1.P [V2.H8], 16(R0)
	SUBS   $8, R2
	BNE    mad_loop
	RET

// func scaleF16NEON(acc *uint16, s float32, n int)
// n a positive multiple of 8: acc = f16(acc·s).
TEXT ·scaleF16NEON(SB), NOSPLIT, $0-24
	MOVD  acc+0(FP), R0
	FMOVS s+8(FP), F1
	MOVD  n+16(FP), R2
	VDUP  V1.S[0], V1.S4

scale_loop:
	VLD1   (R0), [V2.H8]
	FCVTL_S(2, 4)
	FCVTL2_S(2, 5)
	FMUL4S(1, 4, 4)
	FMUL4S(1, 5, 5)
	FCVTN_H(4, 2)
	FCVTN2_H(5, 2)
	VST1.P [V2.H8], 16(R0)
	SUBS   $8, R2
	BNE    scale_loop
	RET

// func toF16NEON(dst *uint16, src *float32, n int)
// n a positive multiple of 8.
TEXT ·toF16NEON(SB), NOSPLIT, $0-24
	MOVD dst+0(FP), R0
	MOVD src+8(FP), R1
	MOVD n+16(FP), R2

tof16_loop:
	VLD1.P 32(R1), [V0.S4, V1.S4]
	FCVTN_H(0, 2)
	FCVTN2_H(1, 2)
	VST1.P [V2.H8], 16(R0)
	SUBS   $8, R2
	BNE    tof16_loop
	RET

// func fromF16NEON(dst *float32, src *uint16, n int)
// n a positive multiple of 8.
TEXT ·fromF16NEON(SB), NOSPLIT, $0-24
	MOVD dst+0(FP), R0
	MOVD src+8(FP), R1
	MOVD n+16(FP), R2

fromf16_loop:
	VLD1.P 16(R1), [V2.H8]
	FCVTL_S(2, 0)
	FCVTL2_S(2, 1)
	VST1.P [V0.S4, V1.S4], 32(R0)
	SUBS   $8, R2
	BNE    fromf16_loop
	RET

// func dotF32FastNEON(a, b *float32, n int) float32
// n a positive multiple of 32: dotF32Go's four accumulators of eight lanes with one fused
// multiply-add a product (FMLA rounds once; the twin's fma32 rounds the exact float64 result,
// which differs in the rare halfway case), reduced in reduce4's order.
TEXT ·dotF32FastNEON(SB), NOSPLIT, $0-28
	MOVD a+0(FP), R0
	MOVD b+8(FP), R1
	MOVD n+16(FP), R2
	ACC8_ZERO

f32fast_loop:
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R0), [V4.S4, V5.S4, V6.S4, V7.S4]
	VLD1.P 64(R1), [V8.S4, V9.S4, V10.S4, V11.S4]
	VLD1.P 64(R1), [V12.S4, V13.S4, V14.S4, V15.S4]
	VFMLA  V8.S4, V0.S4, V16.S4
	VFMLA  V9.S4, V1.S4, V17.S4
	VFMLA  V10.S4, V2.S4, V18.S4
	VFMLA  V11.S4, V3.S4, V19.S4
	VFMLA  V12.S4, V4.S4, V20.S4
	VFMLA  V13.S4, V5.S4, V21.S4
	VFMLA  V14.S4, V6.S4, V22.S4
	VFMLA  V15.S4, V7.S4, V23.S4
	SUBS   $32, R2
	BNE    f32fast_loop
	REDUCE4_F0
	FMOVS F0, ret+24(FP)
	RET
