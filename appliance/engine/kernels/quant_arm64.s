//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// Activation quantization on NEON (quantizeQ8_0ActGo and quantizeQ8KGo's arithmetic, bit for
// bit): FCVTNS rounds each product to the nearest integer, ties to even, as the Go twins do,
// and no product reaches ±127.5 (Q8_K's are capped at 127 besides), so plain narrowing equals
// their conversion to int8.

// V20 (bytes 0-15) and V21 (16-31) = the 32 int32 of V0-V7, narrowed (V16-V19 scratch).
#define NARROW32 \
	XTN4H(0, 16); \
	XTN2_8H(1, 16); \
	XTN4H(2, 17); \
	XTN2_8H(3, 17); \
	XTN4H(4, 18); \
	XTN2_8H(5, 18); \
	XTN4H(6, 19); \
	XTN2_8H(7, 19); \
	XTN8B(16, 20); \
	XTN2_16B(17, 20); \
	XTN8B(18, 21); \
	XTN2_16B(19, 21)

// op(k) for each of V0-V7.
#define EACH8(op) \
	op(0); \
	op(1); \
	op(2); \
	op(3); \
	op(4); \
	op(5); \
	op(6); \
	op(7)

// Vk = round(Vk·V14) as int32.
#define SCALE_ROUND(k) \
	FMUL4S(14, k, k); \
	FCVTNS4S(k, k)

#define ABS(k) FABS4S(k, k)

// func quantizeQ8_0NEON(x *float32, y *byte, nb int)
// nb > 0 blocks of 32: y gets d = amax/127 as float16 and the 32 quants round(x·127/amax)
// (zero where amax is 0). The largest magnitude by FMAX, which a NaN wins as it wins Go's max;
// a block holding a NaN or an infinity gets a NaN d and zero quants.
TEXT ·quantizeQ8_0NEON(SB), NOSPLIT, $0-24
	MOVD  x+0(FP), R0
	MOVD  y+8(FP), R1
	MOVD  nb+16(FP), R2
	MOVW  $0x42fe0000, R9 // 127
	FMOVS R9, F13

q80_block:
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R0), [V4.S4, V5.S4, V6.S4, V7.S4]
	FABS4S(0, 8)
	FABS4S(1, 9)
	FABS4S(2, 10)
	FABS4S(3, 11)
	FMAX4S(9, 8, 8)
	FMAX4S(11, 10, 10)
	FABS4S(4, 9)
	FABS4S(5, 11)
	FMAX4S(9, 8, 8)
	FMAX4S(11, 10, 10)
	FABS4S(6, 9)
	FABS4S(7, 11)
	FMAX4S(9, 8, 8)
	FMAX4S(11, 10, 10)
	FMAX4S(10, 8, 8)
	FMAXV4S(8, 8)
	FMOVS  F8, R6
	MOVW   $0x7f800000, R8
	CMPW   R8, R6
	BHS    q80_nan // an infinity or a NaN
	FDIVS  F13, F8, F12   // d = amax/127
	FCVTSH F12, F12
	FMOVS  F12, R5
	MOVH   R5, (R1)
	VEOR   V14.B16, V14.B16, V14.B16
	FDIVS  F8, F13, F15       // 127/amax
	FMOVS  F15, R6
	MOVW   $0x7f800000, R8
	CMPW   R8, R6
	BEQ    q80_scaled         // amax 0, or too small for 127/amax: the multiplier stays 0
	VDUP   V15.S[0], V14.S4

q80_scaled:
	EACH8(SCALE_ROUND)
	NARROW32
	ADD  $2, R1, R7
	VST1 [V20.B16, V21.B16], (R7)

q80_next:
	ADD  $34, R1
	SUBS $1, R2
	BNE  q80_block
	RET

q80_nan:
	MOVW $0x7e00, R5
	MOVH R5, (R1)
	VEOR V20.B16, V20.B16, V20.B16
	VEOR V21.B16, V21.B16, V21.B16
	ADD  $2, R1, R7
	VST1 [V20.B16, V21.B16], (R7)
	B    q80_next

// Vk = min(127, round(Vk·V14)) as int32.
#define SCALE_ROUND_CAP(k) \
	SCALE_ROUND(k); \
	SMIN4S(15, k, k)

// The int32 sum of the lanes of a, b, c and e to the int16 at off(R7) (V22 scratch).
#define SUM16(a, b, c, e, off) \
	VADD  a.S4, b.S4, V22.S4; \
	VADD  c.S4, V22.S4, V22.S4; \
	VADD  e.S4, V22.S4, V22.S4; \
	VADDV V22.S4, V22; \
	VMOV  V22.S[0], R8; \
	MOVH  R8, off(R7)

// func quantizeQ8KNEON(x *float32, y *byte, nb int)
// nb > 0 super-blocks of 256: maxv = the first element of largest magnitude, iscale =
// -127/maxv; y gets 1/iscale (float32), the quants min(127, round(iscale·x)), and the sixteen
// int16 sums of 16 quants. A super-block of zeros is all zeros; one holding a NaN or an infinity
// gets a NaN d and zero quants and sums. The largest magnitude by FMAX, which a NaN wins.
TEXT ·quantizeQ8KNEON(SB), NOSPLIT, $0-24
	MOVD x+0(FP), R0
	MOVD y+8(FP), R1
	MOVD nb+16(FP), R2
	MOVW $127, R9
	VDUP R9, V15.S4

q8k_block:
	VEOR V8.B16, V8.B16, V8.B16
	VEOR V9.B16, V9.B16, V9.B16
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16
	MOVD R0, R3
	MOVD $8, R4

q8k_amax:
	VLD1.P 64(R3), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R3), [V4.S4, V5.S4, V6.S4, V7.S4]
	EACH8(ABS)
	FMAX4S(0, 8, 8)
	FMAX4S(1, 9, 9)
	FMAX4S(2, 10, 10)
	FMAX4S(3, 11, 11)
	FMAX4S(4, 8, 8)
	FMAX4S(5, 9, 9)
	FMAX4S(6, 10, 10)
	FMAX4S(7, 11, 11)
	SUBS $1, R4
	BNE  q8k_amax
	FMAX4S(9, 8, 8)
	FMAX4S(11, 10, 10)
	FMAX4S(10, 8, 8)
	FMAXV4S(8, 8)
	FMOVS F8, R6
	CBZW  R6, q8k_zero
	MOVW  $0x7f800000, R8
	CMPW  R8, R6
	BHS   q8k_nan // an infinity or a NaN (which the search below would never find)
	VDUP  V8.S[0], V8.S4

	// The first element of that magnitude (R3), four at a time: its sign is maxv's.
	MOVD R0, R3

q8k_find:
	VLD1.P 16(R3), [V0.S4]
	FABS4S(0, 0)
	FCMEQ4S(8, 0, 0)
	VMOV   V0.D[0], R4
	VMOV   V0.D[1], R5
	ORR    R4, R5, R6
	CBZ    R6, q8k_find
	SUB    $16, R3
	CBNZ   R4, q8k_lane
	ADD    $8, R3
	MOVD   R5, R4

q8k_lane:
	// The lane is R4's low word (at R3) where it is set, else its high word (R3+4).
	CBNZW R4, q8k_found
	ADD   $4, R3

q8k_found:
	FMOVS (R3), F5
	MOVW  $0xc2fe0000, R9 // -127
	FMOVS R9, F6
	FDIVS F5, F6, F6     // iscale
	FMOVS $(1.0), F7
	FDIVS F6, F7, F7
	FMOVS F7, (R1)
	FMOVS F6, R6
	AND   $0x7fffffff, R6
	MOVW  $0x7f800000, R8
	CMPW  R8, R6
	BNE   q8k_mult
	VEOR  V6.B16, V6.B16, V6.B16 // iscale overflowed (d is a zero): zero quants

q8k_mult:
	VDUP  V6.S[0], V14.S4
	MOVD  R0, R3
	ADD   $4, R1, R10
	ADD   $260, R1, R7
	MOVD  $8, R4

q8k_quants:
	VLD1.P 64(R3), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R3), [V4.S4, V5.S4, V6.S4, V7.S4]
	EACH8(SCALE_ROUND_CAP)
	SUM16(V0, V1, V2, V3, 0)
	SUM16(V4, V5, V6, V7, 2)
	NARROW32
	VST1.P [V20.B16, V21.B16], 32(R10)
	ADD    $4, R7
	SUBS   $1, R4
	BNE    q8k_quants
	B      q8k_next

q8k_nan:
	MOVW $0x7fc00000, R9
	B    q8k_fill

q8k_zero:
	MOVW ZR, R9

q8k_fill:
	// d's bits from R9, zero quants and sums.
	MOVW   R9, (R1)
	VEOR   V0.B16, V0.B16, V0.B16
	ADD    $4, R1, R3
	MOVD   $18, R4

q8k_zero_loop:
	VST1.P [V0.B16], 16(R3)
	SUBS   $1, R4
	BNE    q8k_zero_loop

q8k_next:
	ADD  $1024, R0
	ADD  $292, R1
	SUBS $1, R2
	BNE  q8k_block
	RET
