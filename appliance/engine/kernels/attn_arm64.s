//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// F16R_GROUP widens group j of eight keys (V(j)) into V8, V9 and adds their products with the
// query's widened lanes qlo, qhi to accumulator j's lanes lo, hi: HALF_GROUP's FMLAs, with the
// query already in float32.
#define F16R_GROUP(j, qlo, qhi, lo, hi) \
	FCVTL_S(j, 8); \
	FCVTL2_S(j, 9); \
	VFMLA qlo.S4, V8.S4, lo.S4; \
	VFMLA qhi.S4, V9.S4, hi.S4

// Q8M_DEQ8 widens eight int8 of V0/V1 (already 16-bit in h, lanes from lo or hi) to float32
// in a and b and multiplies them by the block scale in V30: d·q, each product rounded.
#define Q8M_DEQ8(h, a, b) \
	SXTL4S(h, a); \
	SXTL2_4S(h, b); \
	SCVTF4S(a, a); \
	SCVTF4S(b, b); \
	FMUL4S(30, a, a); \
	FMUL4S(30, b, b)

// Q8M_ADD4 adds the four weighted values in a0-a3 (times V31, rounded) to the sums at R4.
#define Q8M_ADD4(a0, a1, a2, a3) \
	VLD1 (R4), [V20.S4, V21.S4, V22.S4, V23.S4]; \
	FMUL4S(31, a0, a0); \
	FMUL4S(31, a1, a1); \
	FMUL4S(31, a2, a2); \
	FMUL4S(31, a3, a3); \
	FADD4S(a0, 20, 20); \
	FADD4S(a1, 21, 21); \
	FADD4S(a2, 22, 22); \
	FADD4S(a3, 23, 23); \
	VST1.P [V20.S4, V21.S4, V22.S4, V23.S4], 64(R4)

// func madQ8_0RowsNEON(acc *float32, v *byte, vstride, n, nb int, ms, vs *float32)
// For each of n rows: acc *= ms[i] unless ms[i] is 1, then acc += (d·q)·vs[i] over the row's
// nb whole Q8_0 blocks (madQ8_0RowsGo's arithmetic: no fused operations).
TEXT ·madQ8_0RowsNEON(SB), NOSPLIT, $0-56
	MOVD  acc+0(FP), R0
	MOVD  v+8(FP), R1
	MOVD  vstride+16(FP), R2
	MOVD  n+24(FP), R3
	MOVD  nb+32(FP), R9
	MOVD  ms+40(FP), R10
	MOVD  vs+48(FP), R11
	FMOVS $(1.0), F29

q8m_row:
	FMOVS.P 4(R10), F28
	FCMPS   F29, F28
	BEQ     q8m_mad
	// The rescale: acc·ms over the row's nb·32 sums.
	VDUP  V28.S[0], V28.S4
	MOVD  R0, R4
	MOVD  R9, R5

q8m_scale:
	VLD1   (R4), [V20.S4, V21.S4, V22.S4, V23.S4]
	FMUL4S(28, 20, 20)
	FMUL4S(28, 21, 21)
	FMUL4S(28, 22, 22)
	FMUL4S(28, 23, 23)
	VST1.P [V20.S4, V21.S4, V22.S4, V23.S4], 64(R4)
	VLD1   (R4), [V20.S4, V21.S4, V22.S4, V23.S4]
	FMUL4S(28, 20, 20)
	FMUL4S(28, 21, 21)
	FMUL4S(28, 22, 22)
	FMUL4S(28, 23, 23)
	VST1.P [V20.S4, V21.S4, V22.S4, V23.S4], 64(R4)
	SUBS   $1, R5
	BNE    q8m_scale

q8m_mad:
	FMOVS.P 4(R11), F31
	VDUP    V31.S[0], V31.S4
	MOVD    R0, R4
	MOVD    R1, R6
	MOVD    R9, R5

q8m_block:
	MOVHU  (R6), R7
	FMOVS  R7, F30
	FCVTHS F30, F30
	VDUP   V30.S[0], V30.S4
	ADD    $2, R6, R8
	VLD1   (R8), [V0.B16, V1.B16]
	SXTL8H(0, 2)
	SXTL2_8H(0, 3)
	SXTL8H(1, 4)
	SXTL2_8H(1, 5)
	Q8M_DEQ8(2, 6, 7)
	Q8M_DEQ8(3, 8, 9)
	Q8M_DEQ8(4, 10, 11)
	Q8M_DEQ8(5, 12, 13)
	Q8M_ADD4(6, 7, 8, 9)
	Q8M_ADD4(10, 11, 12, 13)
	ADD    $34, R6
	SUBS   $1, R5
	BNE    q8m_block

	ADD  R2, R1
	SUBS $1, R3
	BNE  q8m_row
	RET

// func dotF16RowsNEON(q *float32, k *uint16, kstride, n, dim int, scale float32, out *float32)
// out[i] = dotF16NEON32(query, row i)·scale for n key rows kstride bytes apart, the query
// widened to float32 once by the caller (exactly): each row's widened keys meet the same
// products in the same four accumulators of eight lanes, reduced in reduce4's order, as one
// call of the one-row kernel a row, without widening the query again for every row. dim is a
// positive multiple of 32.
TEXT ·dotF16RowsNEON(SB), NOSPLIT, $0-56
	MOVD  q+0(FP), R0
	MOVD  k+8(FP), R1
	MOVD  kstride+16(FP), R2
	MOVD  n+24(FP), R3
	MOVD  dim+32(FP), R4
	FMOVS scale+40(FP), F28
	MOVD  out+48(FP), R8

f16r_row:
	ACC8_ZERO
	MOVD R0, R5
	MOVD R1, R6
	MOVD R4, R7

f16r_step:
	VLD1.P 64(R6), [V0.H8, V1.H8, V2.H8, V3.H8]
	VLD1.P 64(R5), [V4.S4, V5.S4, V6.S4, V7.S4]
	VLD1.P 64(R5), [V12.S4, V13.S4, V14.S4, V15.S4]
	F16R_GROUP(0, V4, V5, V16, V17)
	F16R_GROUP(1, V6, V7, V18, V19)
	F16R_GROUP(2, V12, V13, V20, V21)
	F16R_GROUP(3, V14, V15, V22, V23)
	SUBS $32, R7
	BNE  f16r_step

	REDUCE4_F0
	FMULS   F28, F0, F0
	FMOVS.P F0, 4(R8)
	ADD     R2, R1
	SUBS    $1, R3
	BNE     f16r_row
	RET
