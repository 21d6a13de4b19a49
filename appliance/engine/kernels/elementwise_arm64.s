//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// The element-wise steps of a layer on NEON (simd_arm64.go): each output element is the same
// one or two float32 operations, in the same order, as the Go twin, so the two are equal bit
// for bit. n is a positive multiple of 8 unless said otherwise.

// out = a op b over n elements, eight a step (op: a three-same encoding macro).
#define ELEM2_NEON(op, lab) \
	MOVD out+0(FP), R0; \
	MOVD a+8(FP), R1; \
	MOVD b+16(FP), R2; \
	MOVD n+24(FP), R3; \
lab: \
	VLD1.P 32(R1), [V0.S4, V1.S4]; \
	VLD1.P 32(R2), [V2.S4, V3.S4]; \
	op(2, 0, 0); \
	op(3, 1, 1); \
	VST1.P [V0.S4, V1.S4], 32(R0); \
	SUBS   $8, R3; \
	BNE    lab; \
	RET

// expNEON's and siluNEON's arguments (R0 = dst, R1 = src, R3 = n) and constants.
#define EXP_ARGS \
	MOVD dst+0(FP), R0; \
	MOVD src+8(FP), R1; \
	MOVD n+16(FP), R3; \
	EXP_CONSTS

// func mulF32NEON(out, a, b *float32, n int)
TEXT ·mulF32NEON(SB), NOSPLIT, $0-32
	ELEM2_NEON(FMUL4S, mul_loop)

// func addF32NEON(out, a, b *float32, n int)
TEXT ·addF32NEON(SB), NOSPLIT, $0-32
	ELEM2_NEON(FADD4S, add_loop)

// func normScaleNEON(out, x, w *float32, scale float32, n int)
// out = (x·scale)·w.
TEXT ·normScaleNEON(SB), NOSPLIT, $0-40
	MOVD  out+0(FP), R0
	MOVD  x+8(FP), R1
	MOVD  w+16(FP), R2
	FMOVS scale+24(FP), F4
	MOVD  n+32(FP), R3
	VDUP  V4.S[0], V4.S4

normscale_loop:
	VLD1.P 32(R1), [V0.S4, V1.S4]
	VLD1.P 32(R2), [V2.S4, V3.S4]
	FMUL4S(4, 0, 0)
	FMUL4S(4, 1, 1)
	FMUL4S(2, 0, 0)
	FMUL4S(3, 1, 1)
	VST1.P [V0.S4, V1.S4], 32(R0)
	SUBS   $8, R3
	BNE    normscale_loop
	RET

// func subBelowNEON(dst, src *float32, n int, m float32) bool
// dst = src - m; true where no src > m (FCMGT is ordered: a NaN never exceeds m, as in Go).
TEXT ·subBelowNEON(SB), NOSPLIT, $0-33
	MOVD  dst+0(FP), R0
	MOVD  src+8(FP), R1
	MOVD  n+16(FP), R3
	FMOVS m+24(FP), F4
	VDUP  V4.S[0], V4.S4
	VEOR  V5.B16, V5.B16, V5.B16

subbelow_loop:
	VLD1.P 32(R1), [V0.S4, V1.S4]
	FCMGT4S(4, 0, 2)
	FCMGT4S(4, 1, 3)
	VORR   V2.B16, V5.B16, V5.B16
	VORR   V3.B16, V5.B16, V5.B16
	FSUB4S(4, 0, 0)
	FSUB4S(4, 1, 1)
	VST1.P [V0.S4, V1.S4], 32(R0)
	SUBS   $8, R3
	BNE    subbelow_loop
	VMOV   V5.D[0], R4
	VMOV   V5.D[1], R5
	ORR    R4, R5, R5
	CMP    $0, R5
	CSET   EQ, R6
	MOVB   R6, ret+32(FP)
	RET

// Four pairs x0 (V0), x1 (V1) rotated by cos (V2) and sin (V3): V4 = x0·c - x1·s, V5 = x0·s +
// x1·c, each product rounded on its own as ropeGo (V6, V7 scratch).
#define ROPE_ROTATE \
	FMUL4S(2, 0, 4); \
	FMUL4S(3, 1, 5); \
	FSUB4S(5, 4, 4); \
	FMUL4S(3, 0, 6); \
	FMUL4S(2, 1, 7); \
	FADD4S(7, 6, 5)

// func ropeNormNEON(x, cache *float32, dims, heads, hstride int)
// Pairs (2i, 2i+1), four a step (dims a multiple of 8): LD2 parts each into its own register,
// x0·c - x1·s and x0·s + x1·c, then ST2 weaves them back.
TEXT ·ropeNormNEON(SB), NOSPLIT, $0-40
	MOVD x+0(FP), R0
	MOVD heads+24(FP), R4
	MOVD hstride+32(FP), R5

ropen_head:
	MOVD cache+8(FP), R1
	MOVD R0, R2
	MOVD dims+16(FP), R3

ropen_loop:
	VLD2.P 32(R1), [V2.S4, V3.S4]
	VLD2   (R2), [V0.S4, V1.S4]
	ROPE_ROTATE
	VST2.P [V4.S4, V5.S4], 32(R2)
	SUBS   $8, R3
	BNE    ropen_loop
	ADD    R5, R0
	SUBS   $1, R4
	BNE    ropen_head
	RET

// func ropeNeoxNEON(x, cache *float32, half, heads, hstride int)
// Pairs (i, i+half), four a step (half a multiple of 4); the cache's cos and sin by LD2.
TEXT ·ropeNeoxNEON(SB), NOSPLIT, $0-40
	MOVD x+0(FP), R0
	MOVD heads+24(FP), R4
	MOVD hstride+32(FP), R5
	MOVD half+16(FP), R6
	LSL  $2, R6

ropex_head:
	MOVD cache+8(FP), R1
	MOVD R0, R2
	ADD  R6, R0, R7
	MOVD half+16(FP), R3

ropex_loop:
	VLD2.P 32(R1), [V2.S4, V3.S4]
	VLD1   (R2), [V0.S4]
	VLD1   (R7), [V1.S4]
	ROPE_ROTATE
	VST1.P [V4.S4], 16(R2)
	VST1.P [V5.S4], 16(R7)
	SUBS   $4, R3
	BNE    ropex_loop
	ADD    R5, R0
	SUBS   $1, R4
	BNE    ropex_head
	RET

// The constants of expPoly's arithmetic (simd.go) into V16-V29: the argument range -87 and 88,
// log2(e), ln2 high and low, the polynomial's coefficients 1/720 .. 1/2, 1, the exponent bias
// 127 (int32) and +Inf.
#define EXP_CONST(bits, v) \
	MOVW $(bits), R9; \
	VDUP R9, v.S4

#define EXP_CONSTS \
	EXP_CONST(0xc2ae0000, V16); \
	EXP_CONST(0x42b00000, V17); \
	EXP_CONST(0x3fb8aa3b, V18); \
	EXP_CONST(0x3f318000, V19); \
	EXP_CONST(0xb95e8083, V20); \
	EXP_CONST(0x3ab60b61, V21); \
	EXP_CONST(0x3c088889, V22); \
	EXP_CONST(0x3d2aaaab, V23); \
	EXP_CONST(0x3e2aaaab, V24); \
	EXP_CONST(0x3f000000, V25); \
	EXP_CONST(0x3f800000, V26); \
	EXP_CONST(127, V27); \
	EXP_CONST(0x7f800000, V28)

// Vd = exp(Vt) for the argument t clamped to [-87, 88] in place (Vt), then +Inf where the
// unclamped argument (Va) exceeds 88: expPoly's range reduction and polynomial, every product
// rounded on its own. V8-V11 scratch.
#define EXP4(a, t, d) \
	FMAX4S(16, t, t); \
	FMIN4S(17, t, t); \
	FMUL4S(18, t, 8); \
	FRINTN4S(8, 8); \
	FMUL4S(19, 8, 9); \
	FSUB4S(9, t, 9); \
	FMUL4S(20, 8, 10); \
	FSUB4S(10, 9, 9); \
	FMUL4S(9, 21, d); \
	FADD4S(22, d, d); \
	FMUL4S(9, d, d); \
	FADD4S(23, d, d); \
	FMUL4S(9, d, d); \
	FADD4S(24, d, d); \
	FMUL4S(9, d, d); \
	FADD4S(25, d, d); \
	FMUL4S(9, d, d); \
	FADD4S(26, d, d); \
	FMUL4S(9, d, d); \
	FADD4S(26, d, d); \
	FCVTZS4S(8, 10); \
	VADD   V27.S4, V10.S4, V10.S4; \
	SHL4S(23, 10, 10); \
	FMUL4S(10, d, d); \
	FCMGT4S(17, a, 11); \
	VBIT16B(11, 28, d)

// func expNEON(dst, src *float32, n int)
// dst = exp(src), as expGo; n a positive multiple of 4.
TEXT ·expNEON(SB), NOSPLIT, $0-24
	EXP_ARGS

exp_loop:
	VLD1.P 16(R1), [V0.S4]
	VMOV   V0.B16, V1.B16
	EXP4(0, 1, 2)
	VST1.P [V2.S4], 16(R0)
	SUBS   $4, R3
	BNE    exp_loop
	RET

// func siluNEON(dst, src *float32, n int)
// dst = x / (1 + exp(-x)), as siluGo; n a positive multiple of 4.
TEXT ·siluNEON(SB), NOSPLIT, $0-24
	EXP_ARGS

silu_loop:
	VLD1.P 16(R1), [V0.S4]
	FNEG4S(0, 1)
	VMOV   V1.B16, V3.B16
	EXP4(1, 3, 2)
	FADD4S(26, 2, 2)
	FDIV4S(2, 0, 0)
	VST1.P [V0.S4], 16(R0)
	SUBS   $4, R3
	BNE    silu_loop
	RET
