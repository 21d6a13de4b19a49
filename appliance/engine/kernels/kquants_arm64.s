//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// K-quant super-blocks against Q8_K with SDOT (see simd_arm64.s). Each 16- or 32-element
// sub-block's integer dot is an SDOT into a cleared register, added times its scale to four
// int32 lanes; the super-block's sum, exact in 32 bits, is reduced once, and the scalar code adds
// d·yd·sum (and for Q4_K subtracts dmin·yd·(mins·group sums)) to a float32 total. The Go twins sum in eight
// float lanes instead, so these agree with them within the float tolerance, and exactly where
// every float step is exact.

#include "x4_arm64.h"


// Every kernel's arguments: R0 = x, R1 = y, R2 = nb; the float total F20 = 0.
#define KQ_ARGS \
	MOVD  x+0(FP), R0; \
	MOVD  y+8(FP), R1; \
	MOVD  nb+16(FP), R2; \
	FMOVS $(0.0), F20

// The one-column kernels keep the super-block's sum of scaled sub-block dots in the four int32
// lanes of V17 (SUMS_LANES): each sub-block's SDOTs go to V10, which one MLA by element adds
// times the sub-block's scale, lane i of V(sv) (the scales widened to int32 four to a
// register), so that no dot is reduced across lanes until the super-block's end. Integer sums
// in 32 bits: the same total as scaling each reduced dot.

// V17 += the dot of the 32 quants in Vq1, Vq2 with the 32 activations in Vy1, Vy2, times
// scale si of V(sv).
#define DOT32_LANE(y1, y2, q1, q2, sv, si) \
	VEOR V10.B16, V10.B16, V10.B16; \
	SDOT(y1, q1, 10); \
	SDOT(y2, q2, 10); \
	MLA4S_LANE(sv, si, 10, 17)

// The same for the 16 quants in Vq against Vy.
#define DOT16_LANE(y, q, sv, si) \
	VEOR V10.B16, V10.B16, V10.B16; \
	SDOT(y, q, 10); \
	MLA4S_LANE(sv, si, 10, 17)

#define SUMS_LANES_ZERO VEOR V17.B16, V17.B16, V17.B16

// The super-block's sum to R15.
#define SUMS_LANES_OUT \
	VADDV V17.S4, V17; \
	VMOV  V17.S[0], R15

// Sixteen scale bytes of V30 (unsigned: widen = UXTL; signed: SXTL) as int32 in V26-V29 (V31
// scratch).
#define SCALES16_WIDE(w8, w8hi, w4, w4hi) \
	w8(30, 31); \
	w4(31, 26); \
	w4hi(31, 27); \
	w8hi(30, 31); \
	w4(31, 28); \
	w4hi(31, 29)

// Q4_K chunk c (64 elements: 32 bytes of nibbles at 16+32c, low nibbles first; activations at
// 4+64c): R15 += scale(2c)·low dot + scale(2c+1)·high dot, the scales bytes of R3.
#define Q4K_CHUNK(c) \
	K4_NIBBLES(16+32*c, c); \
	K4_DOTS(c)

// Chunk c's 32 bytes of nibbles at off(R0): low nibbles in V0, V1, high in V6, V7; its 64
// activations in V2-V5.
#define K4_NIBBLES(off, c) \
	ADD    $(off), R0, R5; \
	VLD1   (R5), [V0.B16, V1.B16]; \
	ADD    $(4+64*c), R1, R6; \
	VLD1   (R6), [V2.B16, V3.B16, V4.B16, V5.B16]; \
	VUSHR  $4, V0.B16, V6.B16; \
	VUSHR  $4, V1.B16, V7.B16; \
	VAND   V8.B16, V0.B16, V0.B16; \
	VAND   V8.B16, V1.B16, V1.B16

// V17 += scale(2c)·(V0, V1 against V2, V3) + scale(2c+1)·(V6, V7 against V4, V5), the
// scales in V26 (0-3) and V27 (4-7).
#define K4_DOTS(c) \
	DOT32_LANE(2, 3, 0, 1, 26+(c)/2, 2*((c)%2)); \
	DOT32_LANE(4, 5, 6, 7, 26+(c)/2, 2*((c)%2)+1)

// The mins' products with the activations' group sums (Q4_K, Q5_K: min j times group sums 2j
// and 2j+1; Q2_K: min j times group sum j), eight at once by widening multiply-adds: the
// activation row at yp, into the four int32 lanes of V(accn), whose sum is the product (V14, V15
// scratch).

// Q4_K: the pair sums of the 16 group sums (int16 at 260) times the eight mins in V10 (int16).
#define K4_MINS_COL(yp, accn) \
	ADD   $260, yp, R6; \
	VLD1  (R6), [V14.H8, V15.H8]; \
	VADDP V15.H8, V14.H8, V14.H8; \
	SMULL4S(10, 14, accn); \
	SMLAL2_4S(10, 14, accn)

// Q2_K: the 16 group sums times the sixteen mins in V2 (0-7) and V3 (8-15).
#define K2_MINS_COL(yp, accn) \
	ADD   $260, yp, R6; \
	VLD1  (R6), [V14.H8, V15.H8]; \
	SMULL4S(2, 14, accn); \
	SMLAL2_4S(2, 14, accn); \
	SMLAL4S(3, 15, accn); \
	SMLAL2_4S(3, 15, accn)

// The eight mins bytes of R4 as int16 in V10.
#define K4_MINS_WIDE \
	VMOV  R4, V10.D[0]; \
	UXTL8H(10, 10)

// Q2_K's sixteen mins (the high nibbles of the scale bytes at R0) as int16 in V2 and V3.
#define K2_MINS_WIDE \
	VLD1  (R0), [V3.B16]; \
	VUSHR $4, V3.B16, V3.B16; \
	UXTL8H(3, 2); \
	UXTL2_8H(3, 3)

// One column's product (acc's lanes) to R14.
#define MINS_SUM1(acc) \
	VADDV acc.S4, acc; \
	VMOV  acc.S[0], R14

// A Q4_K or Q5_K super-block's scales and mins (12 bytes at 4), unpacked as the AVX2 kernel
// does: R3 = the eight scales, R4 = the eight mins (bytes), the scales as int32 in V26, V27;
// R14 = mins · group sums; the sums V17 = 0.
#define K4_HEAD \
	K4_SCALES; \
	VMOV  R3, V31.D[0]; \
	UXTL8H(31, 31); \
	UXTL4S(31, 26); \
	UXTL2_4S(31, 27); \
	SUMS_LANES_ZERO; \
	K4_MINS_WIDE; \
	K4_MINS_COL(R1, 16); \
	MINS_SUM1(V16)

// K4_HEAD's unpacking alone (R8-R13 scratch).
#define K4_SCALES K4_SCALES_OF(R0, R3, R4)

// The scales and mins of the super-block at p unpacked into sc and mn (R8-R13 scratch).
#define K4_SCALES_OF(p, sc, mn) \
	MOVWU 4(p), R8; \
	MOVWU 8(p), R9; \
	MOVWU 12(p), R10; \
	LSRW  $4, R10, R11; \
	ANDW  $0x0f0f0f0f, R11; \
	LSRW  $6, R9, R12; \
	ANDW  $0x03030303, R12; \
	ORRW  R12<<4, R11, R11; \
	ANDW  $0x3f3f3f3f, R9, R12; \
	ANDW  $0x0f0f0f0f, R10; \
	LSRW  $6, R8, R13; \
	ANDW  $0x03030303, R13; \
	ORRW  R13<<4, R10, R10; \
	ANDW  $0x3f3f3f3f, R8; \
	ORR   R10<<32, R8, sc; \
	ORR   R11<<32, R12, mn

// F20 += d·yd·sums - dmin·yd·R14 (d, dmin the two halves at 0).
#define K4_TAIL \
	SUMS_LANES_OUT; \
	K_TAIL(0)

// The same with d and dmin at off and off+2.
#define K_TAIL(off) \
	FMOVS   (R1), F21; \
	MOVHU   off(R0), R5; \
	FMOVS   R5, F22; \
	FCVTHS  F22, F22; \
	MOVHU   off+2(R0), R6; \
	FMOVS   R6, F23; \
	FCVTHS  F23, F23; \
	FMULS   F21, F22, F22; \
	FMULS   F21, F23, F23; \
	SCVTFWS R15, F24; \
	SCVTFWS R14, F25; \
	FMADDS  F22, F20, F24, F20; \
	FMSUBS  F23, F20, F25, F20

// func dotQ4KSDOT(x, y *byte, nb int) float32
// Q4_K (144 bytes: d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles).
TEXT ·dotQ4KSDOT(SB), NOSPLIT, $0-28
	KQ_ARGS
	VMOVI $15, V8.B16

q4k_loop:
	K4_HEAD
	Q4K_CHUNK(0)
	Q4K_CHUNK(1)
	Q4K_CHUNK(2)
	Q4K_CHUNK(3)
	K4_TAIL
	ADD   $144, R0
	ADD   $292, R1
	SUBS  $1, R2
	BNE   q4k_loop
	FMOVS F20, ret+24(FP)
	RET

// Q5_K chunk c: Q4K_CHUNK with the nibbles at 48+32c and each one's fifth bit (bit 2c of its
// qh byte for the low nibbles, 2c+1 for the high) as 16: V12, V13 hold the 32 qh bytes shifted
// down two bits a chunk; V9 = 0x10 bytes, V11 scratch.
#define Q5K_CHUNK(c) \
	K4_NIBBLES(48+32*c, c); \
	Q5K_BITS; \
	K4_DOTS(c)

// The chunk's fifth bits into V0, V1 (low nibbles) and V6, V7 (high), and the qh bytes in V12,
// V13 on to the next chunk's.
#define Q5K_BITS \
	Q5K_BIT(4, V12, V0); \
	Q5K_BIT(4, V13, V1); \
	Q5K_BIT(3, V12, V6); \
	Q5K_BIT(3, V13, V7); \
	VUSHR  $2, V12.B16, V12.B16; \
	VUSHR  $2, V13.B16, V13.B16;

// Vq |= (Vh << s) & 0x10.
#define Q5K_BIT(s, h, q) \
	VSHL   $s, h.B16, V11.B16; \
	VAND   V9.B16, V11.B16, V11.B16; \
	VORR   V11.B16, q.B16, q.B16

// func dotQ5KSDOT(x, y *byte, nb int) float32
// Q5_K (176 bytes: d, dmin, scales and mins as Q4_K's, 32 bytes of fifth bits, the nibbles).
TEXT ·dotQ5KSDOT(SB), NOSPLIT, $0-28
	KQ_ARGS
	VMOVI $15, V8.B16
	VMOVI $16, V9.B16

q5k_loop:
	K4_HEAD
	ADD   $16, R0, R5
	VLD1  (R5), [V12.B16, V13.B16]
	Q5K_CHUNK(0)
	Q5K_CHUNK(1)
	Q5K_CHUNK(2)
	Q5K_CHUNK(3)
	K4_TAIL
	ADD   $176, R0
	ADD   $292, R1
	SUBS  $1, R2
	BNE   q5k_loop
	FMOVS F20, ret+24(FP)
	RET

// Q6_K half n (128 elements): ql0 = V0, V1 (ql bytes 0-31 of the half), ql1 = V2, V3 (32-63),
// qh = V4, V5. Group g's quants (elements 32g + l) go to V6 (l < 16) and V7 with their two high
// bits at 4-5 (V11 scratch; V8 = 0x0f, V9 = 0x30 bytes).
// Groups 1 and 2: the low nibbles of Va, Vb with the qh pair shifted left by sh to bits 4-5.
#define Q6_LO(a, b, sh) \
	VAND  V8.B16, a.B16, V6.B16; \
	VAND  V8.B16, b.B16, V7.B16; \
	VSHL  $sh, V4.B16, V11.B16; \
	VAND  V9.B16, V11.B16, V11.B16; \
	VORR  V11.B16, V6.B16, V6.B16; \
	VSHL  $sh, V5.B16, V11.B16; \
	VAND  V9.B16, V11.B16, V11.B16; \
	VORR  V11.B16, V7.B16, V7.B16

#define Q6_G1 Q6_LO(V0, V1, 4)

#define Q6_G2 Q6_LO(V2, V3, 2)

#define Q6_G3 \
	VUSHR $4, V0.B16, V6.B16; \
	VUSHR $4, V1.B16, V7.B16; \
	VAND  V9.B16, V4.B16, V11.B16; \
	VORR  V11.B16, V6.B16, V6.B16; \
	VAND  V9.B16, V5.B16, V11.B16; \
	VORR  V11.B16, V7.B16, V7.B16

#define Q6_G4 \
	VUSHR $4, V2.B16, V6.B16; \
	VUSHR $4, V3.B16, V7.B16; \
	VUSHR $2, V4.B16, V11.B16; \
	VAND  V9.B16, V11.B16, V11.B16; \
	VORR  V11.B16, V6.B16, V6.B16; \
	VUSHR $2, V5.B16, V11.B16; \
	VAND  V9.B16, V11.B16, V11.B16; \
	VORR  V11.B16, V7.B16, V7.B16

// Group g of half n, assembled in V6, V7: minus 32 (V12), against its activations at
// 4+128n+32g, times scales 8n+2g and 8n+2g+1 (V26-V29), into V17.
#define Q6_DOT(n, g) \
	VSUB  V12.B16, V6.B16, V6.B16; \
	VSUB  V12.B16, V7.B16, V7.B16; \
	ADD   $(4+128*n+32*g), R1, R6; \
	VLD1  (R6), [V13.B16, V14.B16]; \
	DOT16_LANE(13, 6, 26+2*(n)+(g)/2, 2*((g)%2)); \
	DOT16_LANE(14, 7, 26+2*(n)+(g)/2, 2*((g)%2)+1)

#define Q6_HALF(n) Q6_HALF_WITH(n, Q6_DOT)

// Half n's weights, each group assembled and handed to dot(n, g).
#define Q6_HALF_WITH(n, dot) \
	ADD   $(64*n), R0, R5; \
	VLD1  (R5), [V0.B16, V1.B16, V2.B16, V3.B16]; \
	ADD   $(128+32*n), R0, R5; \
	VLD1  (R5), [V4.B16, V5.B16]; \
	Q6_G1; \
	dot(n, 0); \
	Q6_G2; \
	dot(n, 1); \
	Q6_G3; \
	dot(n, 2); \
	Q6_G4; \
	dot(n, 3)

// func dotQ6KSDOT(x, y *byte, nb int) float32
// Q6_K (210 bytes: 128 bytes of low nibbles, 64 of high bit pairs, 16 signed scales, d).
TEXT ·dotQ6KSDOT(SB), NOSPLIT, $0-28
	KQ_ARGS
	VMOVI $15, V8.B16
	VMOVI $48, V9.B16
	VMOVI $32, V12.B16

q6k_loop:
	ADD     $192, R0, R5
	VLD1    (R5), [V30.B16]
	SCALES16_WIDE(SXTL8H, SXTL2_8H, SXTL4S, SXTL2_4S)
	SUMS_LANES_ZERO
	Q6_HALF(0)
	Q6_HALF(1)
	SUMS_LANES_OUT
	FMOVS   (R1), F21
	MOVHU   208(R0), R5
	FMOVS   R5, F22
	FCVTHS  F22, F22
	FMULS   F21, F22, F22
	SCVTFWS R15, F24
	FMADDS  F22, F20, F24, F20
	ADD     $210, R0
	ADD     $292, R1
	SUBS    $1, R2
	BNE     q6k_loop
	FMOVS   F20, ret+24(FP)
	RET

// Q2_K and Q3_K: in half k the 32 quant bytes (V0: l < 16, V1) hold four 2-bit fields; field s
// of byte l is element 128k + 32s + l, so V6 and V7 (field s of V0 and V1) are sub-blocks
// 8k+2s and 8k+2s+1, against the activations at 4+128k+32s (V2, V3).
#define K2_FIELD(s) \
	VUSHR  $(2*s), V0.B16, V6.B16; \
	VUSHR  $(2*s), V1.B16, V7.B16; \
	VAND   V8.B16, V6.B16, V6.B16; \
	VAND   V8.B16, V7.B16, V7.B16

// Field 0 needs no shift (USHR takes 1 and up).
#define K2_FIELD0 \
	VAND   V8.B16, V0.B16, V6.B16; \
	VAND   V8.B16, V1.B16, V7.B16

#define K2_Y(k, s) \
	ADD    $(4+128*k+32*s), R1, R6; \
	VLD1   (R6), [V2.B16, V3.B16]

// V17 += Q2_K sub-block j's scale (V26-V29) · the dot of Vq, Vy.
#define Q2K_DOT(j, y, q) DOT16_LANE(y, q, 26+(j)/4, (j)%4)

// (r unused: Q3K_STEP takes its scales register there.)
#define Q2K_STEP(k, s, r) \
	K2_Y(k, s); \
	Q2K_DOT(8*k+2*s, 2, 6); \
	Q2K_DOT(8*k+2*s+1, 3, 7)

// Half k of the quants (32 bytes at off+32k) into V0, V1, then each field and its step.
#define K2_HALF(off, k, step, r) \
	ADD    $(off+32*k), R0, R5; \
	VLD1   (R5), [V0.B16, V1.B16]; \
	K2_FIELD0; \
	step(k, 0, r); \
	K2_FIELD(1); \
	step(k, 1, r); \
	K2_FIELD(2); \
	step(k, 2, r); \
	K2_FIELD(3); \
	step(k, 3, r)


// func dotQ2KSDOT(x, y *byte, nb int) float32
// Q2_K (84 bytes: 16 bytes of scales (low nibble) and mins (high), 64 of quants, d, dmin).
TEXT ·dotQ2KSDOT(SB), NOSPLIT, $0-28
	KQ_ARGS
	VMOVI $3, V8.B16
	VMOVI $15, V19.B16

q2k_loop:
	VLD1  (R0), [V30.B16]
	VAND  V19.B16, V30.B16, V30.B16
	SCALES16_WIDE(UXTL8H, UXTL2_8H, UXTL4S, UXTL2_4S)
	SUMS_LANES_ZERO
	K2_MINS_WIDE
	K2_MINS_COL(R1, 16)
	MINS_SUM1(V16)
	K2_HALF(16, 0, Q2K_STEP, R3)
	K2_HALF(16, 1, Q2K_STEP, R3)
	SUMS_LANES_OUT
	K_TAIL(80)
	ADD   $84, R0
	ADD   $292, R1
	SUBS  $1, R2
	BNE   q2k_loop
	FMOVS F20, ret+24(FP)
	RET

// Q3_K: the high-mask bit of element 128k+32s+l is bit 4k+s of hmask byte l (V12: l < 16,
// V13), taken from bit 0 as the halves are shifted down one bit a step; the quant is
// (field | bit·4) - 4 (V9 = 4 bytes), signed for SDOT.
#define Q3K_BITS \
	VSHL   $2, V12.B16, V11.B16; \
	VAND   V9.B16, V11.B16, V11.B16; \
	VORR   V11.B16, V6.B16, V6.B16; \
	VSHL   $2, V13.B16, V11.B16; \
	VAND   V9.B16, V11.B16, V11.B16; \
	VORR   V11.B16, V7.B16, V7.B16; \
	VUSHR  $1, V12.B16, V12.B16; \
	VUSHR  $1, V13.B16, V13.B16; \
	VSUB   V9.B16, V6.B16, V6.B16; \
	VSUB   V9.B16, V7.B16, V7.B16

// Sub-block j's scale (byte j of R3:R4 as the AVX2 kernel unpacks them, minus 32) into dst.
#define Q3K_SCALE_TO(j, r, dst) \
	UBFX   $(8*(j)), r, $8, dst; \
	SUBW   $32, dst

// (r unused: the scales are in V26-V29.)
#define Q3K_STEP(k, s, r) \
	Q3K_BITS; \
	K2_Y(k, s); \
	DOT16_LANE(2, 6, 26+2*(k)+(s)/2, 2*((s)%2)); \
	DOT16_LANE(3, 7, 26+2*(k)+(s)/2, 2*((s)%2)+1)


// A Q3_K super-block's scales into R3 and R4 (mask: 0x0f in every byte; R8, R9, R12, R13
// scratch).
#define Q3K_SCALES(mask) \
	MOVD   96(R0), R8; \
	MOVWU  104(R0), R9; \
	AND    mask, R8, R3; \
	LSR    $4, R8, R4; \
	AND    mask, R4, R4; \
	ANDW   $0x03030303, R9, R12; \
	LSRW   $2, R9, R13; \
	ANDW   $0x03030303, R13; \
	ORR    R13<<32, R12, R12; \
	ORR    R12<<4, R3, R3; \
	LSRW   $4, R9, R12; \
	ANDW   $0x03030303, R12; \
	LSRW   $6, R9, R13; \
	ANDW   $0x03030303, R13; \
	ORR    R13<<32, R12, R12; \
	ORR    R12<<4, R4, R4

// func dotQ3KSDOT(x, y *byte, nb int) float32
// Q3_K (110 bytes: 32 bytes of high-mask bits, 64 of quants, 12 of 6-bit scales, d). R3 gets
// scales 0-7 as bytes and R4 scales 8-15 (j < 8: low nibble of byte j, else high nibble of byte
// j-8; bits 4-5 from bits 2·(j/4) of byte 8 + j%4).
TEXT ·dotQ3KSDOT(SB), NOSPLIT, $0-28
	KQ_ARGS
	VMOVI $3, V8.B16
	VMOVI $4, V9.B16
	VMOVI $32, V25.B16
	MOVD  $0x0f0f0f0f0f0f0f0f, R11

q3k_loop:
	Q3K_SCALES(R11)
	VMOV   R3, V30.D[0]
	VMOV   R4, V30.D[1]
	VSUB   V25.B16, V30.B16, V30.B16
	SCALES16_WIDE(SXTL8H, SXTL2_8H, SXTL4S, SXTL2_4S)
	SUMS_LANES_ZERO
	VLD1   (R0), [V12.B16, V13.B16]
	K2_HALF(32, 0, Q3K_STEP, R3)
	K2_HALF(32, 1, Q3K_STEP, R4)
	SUMS_LANES_OUT
	FMOVS   (R1), F21
	MOVHU   108(R0), R5
	FMOVS   R5, F22
	FCVTHS  F22, F22
	FMULS   F21, F22, F22
	SCVTFWS R15, F24
	FMADDS  F22, F20, F24, F20
	ADD     $110, R0
	ADD     $292, R1
	SUBS    $1, R2
	BNE     q3k_loop
	FMOVS   F20, ret+24(FP)
	RET

// The four-column forms of the K-quant dots: one weight row against four Q8_K rows ystride
// bytes apart (x4_arm64.h), each super-block's weights unpacked once for the four. Per
// sub-block every column's SDOTs go to a register of its own (V20-V23), three pairwise adds
// leave column c's integer dot in lane c of V20, and one MLA adds the four times the
// sub-block's scale to the columns' sums (V18); the mins' products with the activations' group
// sums are taken the same way into V19 (one widening multiply-add per eight). The integers are
// the one-column kernel's (the same products, summed exactly in 32 bits), moved to R8-R15 for
// its float steps, the same operations in the same order, so each result equals the
// one-column kernel's bit for bit. Vector registers: V14-V17 and V28-V31 the columns'
// activations, V24-V27 the float totals (F24-F27), V10 scratch.

// V20 = the four columns' dots in lanes (from V20-V23), V18 += V20 · rs (a W register).
#define LANES_MLA(rs) \
	LANES4(V20, V21, V22, V23, V22, V20); \
	VDUP  rs, V10.S4; \
	MLA4S(10, 20, 18)

#define ACC4_ZERO \
	VEOR V20.B16, V20.B16, V20.B16; \
	VEOR V21.B16, V21.B16, V21.B16; \
	VEOR V22.B16, V22.B16, V22.B16; \
	VEOR V23.B16, V23.B16, V23.B16

// The column at yp: its 32 activations at off into a1, a2 (an1, an2 their numbers).
#define LOAD32(yp, off, a1, a2) \
	ADD  $(off), yp, R6; \
	VLD1 (R6), [a1.B16, a2.B16]

// Every column's 32 activations at off.
#define LOAD32_COLS(off) \
	LOAD32(R19, off, V14, V15); \
	LOAD32(R20, off, V16, V17); \
	LOAD32(R21, off, V28, V29); \
	LOAD32(R22, off, V30, V31)

// A sub-block of 32 weights (registers q1, q2 by number) against every column's activations
// (LOAD32_COLS), times the scale rs, into V18.
#define L32_COLS(q1, q2, rs) \
	ACC4_ZERO; \
	SDOT(14, q1, 20); \
	SDOT(15, q2, 20); \
	SDOT(16, q1, 21); \
	SDOT(17, q2, 21); \
	SDOT(28, q1, 22); \
	SDOT(29, q2, 22); \
	SDOT(30, q1, 23); \
	SDOT(31, q2, 23); \
	LANES_MLA(rs)

// A sub-block of 16 weights (register q by number) against the activations in a0-a3 (numbers),
// times the scale rs, into V18.
#define L16_COLS(a0, a1, a2, a3, q, rs) \
	ACC4_ZERO; \
	SDOT(a0, q, 20); \
	SDOT(a1, q, 21); \
	SDOT(a2, q, 22); \
	SDOT(a3, q, 23); \
	LANES_MLA(rs)

// Two sub-blocks of 16 (quants in V6, V7; scales rsa, rsb) against the 32 activations at off.
#define L16X2_COLS(off, rsa, rsb) \
	LOAD32_COLS(off); \
	L16_COLS(14, 16, 28, 30, 6, rsa); \
	L16_COLS(15, 17, 29, 31, 7, rsb)

// The columns' sums to R8-R11 and mins products to R12-R15, for the float steps.
#define LANES_OUT \
	VMOV V18.S[0], R8; \
	VMOV V18.S[1], R9; \
	VMOV V18.S[2], R10; \
	VMOV V18.S[3], R11; \
	VMOV V19.S[0], R12; \
	VMOV V19.S[1], R13; \
	VMOV V19.S[2], R14; \
	VMOV V19.S[3], R15

#define SUMS_ZERO VEOR V18.B16, V18.B16, V18.B16

// Q4_K chunk c (two sub-blocks: low nibbles V0, V1 with scale byte 2c of R3, high nibbles V6,
// V7 with byte 2c+1) against every column.
#define K4X4_COLS(c) \
	UBFX   $(16*c), R3, $8, R16; \
	UBFX   $(16*c+8), R3, $8, R17; \
	LOAD32_COLS(4+64*c); \
	L32_COLS(0, 1, R16); \
	LOAD32_COLS(4+64*c+32); \
	L32_COLS(6, 7, R17)

#define K4X4_CHUNK(c) \
	K4X4_NIBBLES(16+32*c); \
	K4X4_COLS(c)

// The 32 bytes of nibbles at off(R0): the low ones in V0, V1, the high ones in V6, V7.
#define K4X4_NIBBLES(off) \
	ADD    $(off), R0, R5; \
	VLD1   (R5), [V0.B16, V1.B16]; \
	VUSHR  $4, V0.B16, V6.B16; \
	VUSHR  $4, V1.B16, V7.B16; \
	VAND   V8.B16, V0.B16, V0.B16; \
	VAND   V8.B16, V1.B16, V1.B16

// K_TAIL for the column at yp: total += d·yd·sums - dmin·yd·mins, d in F22, dmin in F23.
#define K4X4_TAIL(yp, sums, mins, total) \
	FMOVS   (yp), F21; \
	FMULS   F21, F22, F28; \
	FMULS   F21, F23, F29; \
	SCVTFWS sums, F30; \
	SCVTFWS mins, F31; \
	FMADDS  F28, total, F30, total; \
	FMSUBS  F29, total, F31, total

// Every column's tail, d and dmin at off and off+2 (d, dmin into F22, F23).
#define K4X4_TAILS(off) \
	LANES_OUT; \
	MOVHU   off(R0), R5; \
	FMOVS   R5, F22; \
	FCVTHS  F22, F22; \
	MOVHU   off+2(R0), R6; \
	FMOVS   R6, F23; \
	FCVTHS  F23, F23; \
	K4X4_TAIL(R19, R8, R12, F24); \
	K4X4_TAIL(R20, R9, R13, F25); \
	K4X4_TAIL(R21, R10, R14, F26); \
	K4X4_TAIL(R22, R11, R15, F27)

// V19 = the columns' mins products in lanes (col: one of the *_MINS_COL).
#define MINS_COLS(col) \
	col(R19, 20); \
	col(R20, 21); \
	col(R21, 22); \
	col(R22, 23); \
	LANES4(V20, V21, V22, V23, V22, V19)

// A Q4_K or Q5_K super-block's scales (R3) and mins (R4, widened into V10), every column's mins
// products (V19), and the sums V18 = 0.
#define K4X4_HEAD \
	K4_SCALES; \
	K4_MINS_WIDE; \
	MINS_COLS(K4_MINS_COL); \
	SUMS_ZERO

// func dotQ4KSDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ4KSDOT4(SB), NOSPLIT, $0-40
	X4_ARGS
	VMOVI $15, V8.B16

q4kx4_loop:
	K4X4_HEAD
	K4X4_CHUNK(0)
	K4X4_CHUNK(1)
	K4X4_CHUNK(2)
	K4X4_CHUNK(3)
	K4X4_TAILS(0)
	X4_NEXT(144, 292)
	BNE     q4kx4_loop
	X4_STORE
	RET

// Group g of Q6_K half n (quants less 32 in V6, V7; scales the signed bytes at 192) against
// every column's activations at 4+128n+32g.
#define Q6X4_DOT(n, g) \
	VSUB  V12.B16, V6.B16, V6.B16; \
	VSUB  V12.B16, V7.B16, V7.B16; \
	MOVB  (192+8*n+2*g)(R0), R16; \
	MOVB  (193+8*n+2*g)(R0), R17; \
	L16X2_COLS(4+128*n+32*g, R16, R17)

#define Q6X4_HALF(n) Q6_HALF_WITH(n, Q6X4_DOT)

// The Q6_K tail for the column at yp: total += d·yd·sums, d in F22.
#define Q6X4_TAIL(yp, sums, total) \
	FMOVS   (yp), F21; \
	FMULS   F21, F22, F28; \
	SCVTFWS sums, F30; \
	FMADDS  F28, total, F30, total

// Every column's tail, d at off (into F22).
#define DX4_TAILS(off) \
	LANES_OUT; \
	MOVHU   off(R0), R5; \
	FMOVS   R5, F22; \
	FCVTHS  F22, F22; \
	Q6X4_TAIL(R19, R8, F24); \
	Q6X4_TAIL(R20, R9, F25); \
	Q6X4_TAIL(R21, R10, F26); \
	Q6X4_TAIL(R22, R11, F27)

// func dotQ6KSDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ6KSDOT4(SB), NOSPLIT, $0-40
	X4_ARGS
	VMOVI $15, V8.B16
	VMOVI $48, V9.B16
	VMOVI $32, V12.B16

q6kx4_loop:
	SUMS_ZERO
	Q6X4_HALF(0)
	Q6X4_HALF(1)
	DX4_TAILS(208)
	X4_NEXT(210, 292)
	BNE     q6kx4_loop
	X4_STORE
	RET

// Q5_K: Q4_K's with each nibble's fifth bit (see Q5K_CHUNK), the qh bytes in V12, V13.
#define Q5KX4_CHUNK(c) \
	K4X4_NIBBLES(48+32*c); \
	Q5K_BITS; \
	K4X4_COLS(c)

// func dotQ5KSDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ5KSDOT4(SB), NOSPLIT, $0-40
	X4_ARGS
	VMOVI $15, V8.B16
	VMOVI $16, V9.B16

q5kx4_loop:
	K4X4_HEAD
	ADD   $16, R0, R5
	VLD1  (R5), [V12.B16, V13.B16]
	Q5KX4_CHUNK(0)
	Q5KX4_CHUNK(1)
	Q5KX4_CHUNK(2)
	Q5KX4_CHUNK(3)
	K4X4_TAILS(0)
	X4_NEXT(176, 292)
	BNE   q5kx4_loop
	X4_STORE
	RET

// (r unused, as in Q2K_STEP.)
#define Q2KX4_STEP(k, s, r) \
	MOVBU  (8*k+2*s)(R0), R16; \
	ANDW   $15, R16; \
	MOVBU  (8*k+2*s+1)(R0), R17; \
	ANDW   $15, R17; \
	L16X2_COLS(4+128*k+32*s, R16, R17)

// Q2_K's sixteen mins (the high nibbles of the scale bytes) as int16 in V2 (0-7) and V3 (8-15),
// then every column's mins products (V19); the sums V18 = 0.
#define Q2X4_HEAD \
	K2_MINS_WIDE; \
	MINS_COLS(K2_MINS_COL); \
	SUMS_ZERO

// func dotQ2KSDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ2KSDOT4(SB), NOSPLIT, $0-40
	X4_ARGS
	VMOVI $3, V8.B16

q2kx4_loop:
	Q2X4_HEAD
	K2_HALF(16, 0, Q2KX4_STEP, R3)
	K2_HALF(16, 1, Q2KX4_STEP, R3)
	K4X4_TAILS(80)
	X4_NEXT(84, 292)
	BNE   q2kx4_loop
	X4_STORE
	RET

#define Q3KX4_STEP(k, s, r) \
	Q3K_BITS; \
	Q3K_SCALE_TO(2*s, r, R16); \
	Q3K_SCALE_TO(2*s+1, r, R17); \
	L16X2_COLS(4+128*k+32*s, R16, R17)

// func dotQ3KSDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ3KSDOT4(SB), NOSPLIT, $0-40
	X4_ARGS
	VMOVI $3, V8.B16
	VMOVI $4, V9.B16
	MOVD  $0x0f0f0f0f0f0f0f0f, R24

q3kx4_loop:
	Q3K_SCALES(R24)
	SUMS_ZERO
	VLD1  (R0), [V12.B16, V13.B16]
	K2_HALF(32, 0, Q3KX4_STEP, R3)
	K2_HALF(32, 1, Q3KX4_STEP, R4)
	DX4_TAILS(108)
	X4_NEXT(110, 292)
	BNE   q3kx4_loop
	X4_STORE
	RET

// The four-row Q4_K kernel (decode): four weight rows against one activation row, row k's sum
// in lane k. Per sub-block each row's SDOTs go to a register of its own, LANES4 leaves one dot
// in each lane, and one MLA adds them times the rows' scales (a TBL gathers scale j of the four
// rows from their unpacked scale bytes); the mins' products and the float steps run on the
// lanes too, in dotQ4KSDOT's order, so every lane is that kernel's result bit for bit. The
// activations are loaded once for the four rows.

// The four rows' scale bytes as a table for TBL: rows 0, 1 in V12, rows 2, 3 in V13 (R14-R17);
// V16 = the indices of sub-block 0's scales (from V17).
#define K4R4_TABLE \
	VMOV R14, V12.D[0]; \
	VMOV R15, V12.D[1]; \
	VMOV R16, V13.D[0]; \
	VMOV R17, V13.D[1]; \
	VMOV V17.B16, V16.B16

// The next sub-block's scales of the four rows as int32 lanes in V11 (bytes at 0x80 and above
// in V16 index nothing: zero).
#define K4R4_SCALES \
	VTBL V16.B16, [V12.B16, V13.B16], V11.B16; \
	VADD V9.B16, V16.B16, V16.B16

// Row k's mins (mn) times the activations' pair sums of group sums (V14), into V(20+k).
#define K4R4_MINS_ROW(mn, accn) \
	VMOV mn, V10.D[0]; \
	UXTL8H(10, 10); \
	SMULL4S(10, 14, accn); \
	SMLAL2_4S(10, 14, accn)

// The super-block's scales (table), the rows' mins products (V19), the sums V18 = 0.
#define K4R4_HEAD \
	K4_SCALES_OF(R0, R14, R19); \
	K4_SCALES_OF(R1, R15, R20); \
	K4_SCALES_OF(R2, R16, R21); \
	K4_SCALES_OF(R3, R17, R22); \
	K4R4_TABLE; \
	ADD   $260, R4, R7; \
	VLD1  (R7), [V14.H8, V15.H8]; \
	VADDP V15.H8, V14.H8, V14.H8; \
	K4R4_MINS_ROW(R19, 20); \
	K4R4_MINS_ROW(R20, 21); \
	K4R4_MINS_ROW(R21, 22); \
	K4R4_MINS_ROW(R22, 23); \
	LANES4(V20, V21, V22, V23, V22, V19); \
	SUMS_ZERO

// Row k's 32 bytes of chunk c's nibbles into V(24+2k), V(25+2k).
#define K4R4_LOAD(rp, c, a, b) \
	ADD  $(16+32*c), rp, R7; \
	VLD1 (R7), [a.B16, b.B16]

// Row k's sub-block dot: its nibbles (a, b) by op into V0, V1, against the activations V(y1),
// V(y2), into acc (accn its number).
#define K4R4_DOT(op, a, b, y1, y2, acc, accn) \
	op(a, V0); \
	op(b, V1); \
	VEOR acc.B16, acc.B16, acc.B16; \
	SDOT(y1, 0, accn); \
	SDOT(y2, 1, accn)

#define K4R4_LOW(r, d) VAND V8.B16, r.B16, d.B16
#define K4R4_HIGH(r, d) VUSHR $4, r.B16, d.B16

// One sub-block of the four rows (op picks its nibbles) against activations V(y1), V(y2):
// V18 += its dots times the rows' scales.
#define K4R4_SUB(op, y1, y2) \
	K4R4_DOT(op, V24, V25, y1, y2, V20, 20); \
	K4R4_DOT(op, V26, V27, y1, y2, V21, 21); \
	K4R4_DOT(op, V28, V29, y1, y2, V22, 22); \
	K4R4_DOT(op, V30, V31, y1, y2, V23, 23); \
	LANES4(V20, V21, V22, V23, V22, V20); \
	K4R4_SCALES; \
	MLA4S(11, 20, 18)

// Chunk c (64 elements: sub-block 2c in the low nibbles, 2c+1 in the high) of the four rows.
#define K4R4_CHUNK(c) \
	ADD  $(4+64*c), R4, R7; \
	VLD1 (R7), [V2.B16, V3.B16, V4.B16, V5.B16]; \
	K4R4_LOAD(R0, c, V24, V25); \
	K4R4_LOAD(R1, c, V26, V27); \
	K4R4_LOAD(R2, c, V28, V29); \
	K4R4_LOAD(R3, c, V30, V31); \
	K4R4_SUB(K4R4_LOW, 2, 3); \
	K4R4_SUB(K4R4_HIGH, 4, 5)

// V6 += d·yd·sums - dmin·yd·mins on the four lanes (K_TAIL's steps): the rows' d and dmin
// gathered as halves into V0 and split by UZP1/UZP2.
#define K4R4_TAIL \
	MOVWU (R0), R7; \
	VMOV  R7, V0.S[0]; \
	MOVWU (R1), R7; \
	VMOV  R7, V0.S[1]; \
	MOVWU (R2), R7; \
	VMOV  R7, V0.S[2]; \
	MOVWU (R3), R7; \
	VMOV  R7, V0.S[3]; \
	VUZP1 V0.H8, V0.H8, V1.H8; \
	VUZP2 V0.H8, V0.H8, V2.H8; \
	FCVTL_S(1, 1); \
	FCVTL_S(2, 2); \
	VLD1R (R4), [V3.S4]; \
	FMUL4S(3, 1, 1); \
	FMUL4S(3, 2, 2); \
	SCVTF4S(18, 18); \
	SCVTF4S(19, 19); \
	VFMLA V18.S4, V1.S4, V6.S4; \
	VFMLS V19.S4, V2.S4, V6.S4

// func dotQ4KSDOTR4(x *byte, stride int, y *byte, nb int, out *float32)
// nb > 0: out[k] = row k · y, each as dotQ4KSDOT.
TEXT ·dotQ4KSDOTR4(SB), NOSPLIT, $0-40
	R4_ARGS
	VEOR  V6.B16, V6.B16, V6.B16
	VMOVI $15, V8.B16
	VMOVI $1, V9.B16
	MOVD  $0x8080800880808000, R7
	VMOV  R7, V17.D[0]
	MOVD  $0x8080801880808010, R7
	VMOV  R7, V17.D[1]

q4kr4_loop:
	K4R4_HEAD
	K4R4_CHUNK(0)
	K4R4_CHUNK(1)
	K4R4_CHUNK(2)
	K4R4_CHUNK(3)
	K4R4_TAIL
	R4_NEXT(144, 292)
	BNE  q4kr4_loop
	VST1 [V6.S4], (R6)
	RET
