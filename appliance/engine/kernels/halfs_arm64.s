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

// The 16-bit float weights against activations widened to float32 once (prompts and batches,
// halfKernel): group j of eight weights (Va) widened into V8, V9 against the activations in
// alo, ahi, into accumulator j's lanes.
#define F32ACT_GROUP(wlo, whi, a, alo, ahi, lo, hi) \
	wlo(a, 8); \
	whi(a, 9); \
	VFMLA alo.S4, V8.S4, lo.S4; \
	VFMLA ahi.S4, V9.S4, hi.S4

// The one-column dot of such (func (x *uint16, y *float32, n int) float32, n a positive
// multiple of 32): dotF16NEON32's sums on the widened activations.
#define HALF_F32_KERNEL(wlo, whi, loop) \
	MOVD x+0(FP), R0; \
	MOVD y+8(FP), R1; \
	MOVD n+16(FP), R2; \
	ACC8_ZERO; \
loop: \
	VLD1.P 64(R0), [V0.H8, V1.H8, V2.H8, V3.H8]; \
	VLD1.P 64(R1), [V4.S4, V5.S4, V6.S4, V7.S4]; \
	VLD1.P 64(R1), [V12.S4, V13.S4, V14.S4, V15.S4]; \
	F32ACT_GROUP(wlo, whi, 0, V4, V5, V16, V17); \
	F32ACT_GROUP(wlo, whi, 1, V6, V7, V18, V19); \
	F32ACT_GROUP(wlo, whi, 2, V12, V13, V20, V21); \
	F32ACT_GROUP(wlo, whi, 3, V14, V15, V22, V23); \
	SUBS $32, R2; \
	BNE  loop; \
	REDUCE4_F0; \
	FMOVS F0, ret+24(FP); \
	RET

// Two weight rows against four such activation rows (func (x *uint16, xstride, pairs int, y
// *float32, ystride, n int, out *float32, ostride int)): rows 2p, 2p+1 for p < pairs; row ρ's
// result for column c to out + 4ρ + c·ostride bytes. The eight dots' four accumulators of eight
// lanes would take all 32 registers, so, as halfpairs_amd64.s, the kernel makes four passes
// over chunks of up to 512 elements, pass a adding only elements 8a..8a+7 of each 32-element
// step into accumulator a of each dot (V0-V15: dot i = 4·row + column in V(2i), V(2i+1)), the
// accumulators waiting in the frame (pass a, dot i at 256a + 32i bytes from R20): each lane
// sees the one-column kernel's FMLAs in its order. Per step a pass widens eight weights of each
// row for sixteen FMLAs.

// The eight dots' accumulators of pass a from or to the frame (R23 scratch).
#define HP_FRAME_LOAD(a) \
	ADD    $(256*a), R20, R23; \
	VLD1.P 64(R23), [V0.S4, V1.S4, V2.S4, V3.S4]; \
	VLD1.P 64(R23), [V4.S4, V5.S4, V6.S4, V7.S4]; \
	VLD1.P 64(R23), [V8.S4, V9.S4, V10.S4, V11.S4]; \
	VLD1   (R23), [V12.S4, V13.S4, V14.S4, V15.S4]

#define HP_FRAME_STORE(a) \
	ADD    $(256*a), R20, R23; \
	VST1.P [V0.S4, V1.S4, V2.S4, V3.S4], 64(R23); \
	VST1.P [V4.S4, V5.S4, V6.S4, V7.S4], 64(R23); \
	VST1.P [V8.S4, V9.S4, V10.S4, V11.S4], 64(R23); \
	VST1   [V12.S4, V13.S4, V14.S4, V15.S4], (R23)

// Column c's activations at (ap) against the two rows' widened weights (V26, V27 and V28, V29).
#define HP_COL(ap, r0lo, r0hi, r1lo, r1hi) \
	VLD1.P (ap)(R22), [V30.S4, V31.S4]; \
	VFMLA  V30.S4, V26.S4, r0lo.S4; \
	VFMLA  V31.S4, V27.S4, r0hi.S4; \
	VFMLA  V30.S4, V28.S4, r1lo.S4; \
	VFMLA  V31.S4, V29.S4, r1hi.S4

// Pass a over the chunk's R11 steps: weights at R8 (second row R1 bytes on), activation rows at
// R9 + c·R4.
#define HP_PASS(wlo, whi, a, loop) \
	HP_FRAME_LOAD(a); \
	ADD    $(16*a), R8, R13; \
	ADD    R1, R13, R14; \
	ADD    $(32*a), R9, R15; \
	ADD    R4, R15, R16; \
	ADD    R4, R16, R17; \
	ADD    R4, R17, R19; \
	MOVD   R11, R12; \
loop: \
	VLD1.P (R13)(R21), [V24.H8]; \
	VLD1.P (R14)(R21), [V25.H8]; \
	wlo(24, 26); \
	whi(24, 27); \
	wlo(25, 28); \
	whi(25, 29); \
	HP_COL(R15, V0, V1, V8, V9); \
	HP_COL(R16, V2, V3, V10, V11); \
	HP_COL(R17, V4, V5, V12, V13); \
	HP_COL(R19, V6, V7, V14, V15); \
	SUBS   $1, R12; \
	BNE    loop; \
	HP_FRAME_STORE(a)

// Dot i's four accumulators (256 bytes apart from R20 + 32i) into REDUCE4_F0's registers,
// reduced, stored at mem.
#define HP_REDUCE(i, mem) \
	ADD    $(32*(i)), R20, R23; \
	VLD1   (R23), [V16.S4, V17.S4]; \
	ADD    $256, R23; \
	VLD1   (R23), [V18.S4, V19.S4]; \
	ADD    $256, R23; \
	VLD1   (R23), [V20.S4, V21.S4]; \
	ADD    $256, R23; \
	VLD1   (R23), [V22.S4, V23.S4]; \
	REDUCE4_F0; \
	FMOVS  F0, mem

// A row's four results (dots 4r..4r+3) to off(R6) + c·R7 (R24-R26 = R6 + R7, 2·R7, 3·R7).
#define HP_REDUCE_ROW(r, off) \
	HP_REDUCE(4*r, off(R6)); \
	HP_REDUCE(4*r+1, off(R24)); \
	HP_REDUCE(4*r+2, off(R25)); \
	HP_REDUCE(4*r+3, off(R26))

#define HALF_PAIRS_NEON(wlo, whi, l0, l1, l2, l3, lchunk, lpair, lclear) \
	MOVD   x+0(FP), R0; \
	MOVD   xstride+8(FP), R1; \
	MOVD   pairs+16(FP), R2; \
	MOVD   y+24(FP), R3; \
	MOVD   ystride+32(FP), R4; \
	MOVD   n+40(FP), R5; \
	MOVD   out+48(FP), R6; \
	MOVD   ostride+56(FP), R7; \
	MOVD   $acc-1024(SP), R20; \
	MOVD   $64, R21; \
	MOVD   $128, R22; \
lpair: \
	VEOR   V0.B16, V0.B16, V0.B16; \
	VEOR   V1.B16, V1.B16, V1.B16; \
	VEOR   V2.B16, V2.B16, V2.B16; \
	VEOR   V3.B16, V3.B16, V3.B16; \
	MOVD   R20, R23; \
	MOVD   $16, R24; \
lclear: \
	VST1.P [V0.S4, V1.S4, V2.S4, V3.S4], 64(R23); \
	SUBS   $1, R24; \
	BNE    lclear; \
	MOVD   R0, R8; \
	MOVD   R3, R9; \
	MOVD   R5, R10; \
lchunk: \
	LSR    $5, R10, R11; \
	MOVD   $16, R23; \
	CMP    R23, R11; \
	CSEL   GT, R23, R11, R11; \
	HP_PASS(wlo, whi, 0, l0); \
	HP_PASS(wlo, whi, 1, l1); \
	HP_PASS(wlo, whi, 2, l2); \
	HP_PASS(wlo, whi, 3, l3); \
	ADD    R11<<6, R8, R8; \
	ADD    R11<<7, R9, R9; \
	SUB    R11<<5, R10, R10; \
	CBNZ   R10, lchunk; \
	ADD    R7, R6, R24; \
	ADD    R7, R24, R25; \
	ADD    R7, R25, R26; \
	HP_REDUCE_ROW(0, 0); \
	HP_REDUCE_ROW(1, 4); \
	ADD    R1<<1, R0, R0; \
	ADD    $8, R6; \
	SUBS   $1, R2; \
	BNE    lpair; \
	RET

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

// func dotF16F32NEON32(x *uint16, y *float32, n int) float32
TEXT ·dotF16F32NEON32(SB), NOSPLIT, $0-28
	HALF_F32_KERNEL(FCVTL_S, FCVTL2_S, hf32_loop)

// func dotBF16F32NEON32(x *uint16, y *float32, n int) float32
TEXT ·dotBF16F32NEON32(SB), NOSPLIT, $0-28
	HALF_F32_KERNEL(SHLL16, SHLL2_16, bhf32_loop)

// The frame is larger than a NOSPLIT function may take, so these check the stack.

// func dotF16F32PairsNEON(x *uint16, xstride, pairs int, y *float32, ystride, n int, out *float32, ostride int)
TEXT ·dotF16F32PairsNEON(SB), 0, $1024-64
	HALF_PAIRS_NEON(FCVTL_S, FCVTL2_S, f16p_a0, f16p_a1, f16p_a2, f16p_a3, f16p_chunk, f16p_pair, f16p_clear)

// func dotBF16F32PairsNEON(x *uint16, xstride, pairs int, y *float32, ystride, n int, out *float32, ostride int)
TEXT ·dotBF16F32PairsNEON(SB), 0, $1024-64
	HALF_PAIRS_NEON(SHLL16, SHLL2_16, bf16p_a0, bf16p_a1, bf16p_a2, bf16p_a3, bf16p_chunk, bf16p_pair, bf16p_clear)
