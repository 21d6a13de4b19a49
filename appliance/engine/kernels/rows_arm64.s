//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// Four Q8_0 or Q4_0 weight rows (stride bytes apart) against one activation row, one row to a
// float lane: the decode form of dotQ8_0SDOT and dotQ4_0SDOT. Per block each row's integer dot
// is two SDOTs into its own register, the four registers are reduced by pairwise adds into one
// lane a row, and the block's float steps (the one-row kernels' products, in their order) and
// the running sum run on the four lanes at once, so every lane equals its one-row kernel bit for
// bit. The activations and their scale are loaded once for the four rows, and the one-row
// kernels' across-lanes add, move to a general register and scalar conversion per block give
// way to three pairwise adds and one vector conversion per four rows.

// SCVTF Vd.4S, Vn.4S: int32 lanes to float32.
#define SCVTF4S(n, d) WORD $(0x4E21D800 | ((n)<<5) | (d))

// R0-R3 = the four rows, R4 = y, R5 = nb, R6 = out; V20 = the four sums (zero).
#define R4_ARGS \
	MOVD x+0(FP), R0; \
	MOVD stride+8(FP), R9; \
	MOVD y+16(FP), R4; \
	MOVD nb+24(FP), R5; \
	MOVD out+32(FP), R6; \
	ADD  R9, R0, R1; \
	ADD  R9, R1, R2; \
	ADD  R9, R2, R3; \
	VEOR V20.B16, V20.B16, V20.B16

// The activation block: dy in V18's four lanes, the 32 quants in V16 and V17.
#define R4_ACT \
	MOVHU (R4), R8; \
	VDUP  R8, V18.H8; \
	FCVTL_S(18, 18); \
	ADD   $2, R4, R7; \
	VLD1  (R7), [V16.B16, V17.B16]

// Row rp's block scale into lane lane of V19 (as a half).
#define R4_SCALE(rp, lane) \
	MOVHU (rp), R8; \
	VMOV  R8, V19.H[lane]

// A Q4_0 row's block: the 16 bytes of nibbles into w (low, elements 0-15) and h (high,
// 16-31), less 8 (V30 = 0x0f, V31 = 8 in every byte), dotted into acc.
#define Q40_R4ROW(rp, lane, w, h, acc, wn, hn, accn) \
	R4_SCALE(rp, lane); \
	ADD   $2, rp, R7; \
	VLD1  (R7), [w.B16]; \
	VUSHR $4, w.B16, h.B16; \
	VAND  V30.B16, w.B16, w.B16; \
	VSUB  V31.B16, w.B16, w.B16; \
	VSUB  V31.B16, h.B16, h.B16; \
	VEOR  acc.B16, acc.B16, acc.B16; \
	SDOT(16, wn, accn); \
	SDOT(17, hn, accn)

// A Q8_0 row's block: its 32 quants into w and h, dotted into acc.
#define Q80_R4ROW(rp, lane, w, h, acc, wn, hn, accn) \
	R4_SCALE(rp, lane); \
	ADD  $2, rp, R7; \
	VLD1 (R7), [w.B16, h.B16]; \
	VEOR acc.B16, acc.B16, acc.B16; \
	SDOT(16, wn, accn); \
	SDOT(17, hn, accn)

#define R4_EACH(row) \
	row(R0, 0, V0, V1, V8, 0, 1, 8); \
	row(R1, 1, V2, V3, V9, 2, 3, 9); \
	row(R2, 2, V4, V5, V10, 4, 5, 10); \
	row(R3, 3, V6, V7, V11, 6, 7, 11)

// V12 = the four rows' integer sums (row k in lane k) as float32, V19 = their dx.
#define R4_SUMS \
	VADDP V9.S4, V8.S4, V12.S4; \
	VADDP V11.S4, V10.S4, V13.S4; \
	VADDP V13.S4, V12.S4, V12.S4; \
	SCVTF4S(12, 12); \
	FCVTL_S(19, 19)

#define R4_NEXT(wb) \
	ADD  $(wb), R0; \
	ADD  $(wb), R1; \
	ADD  $(wb), R2; \
	ADD  $(wb), R3; \
	ADD  $34, R4; \
	SUBS $1, R5

// func dotQ4_0SDOTR4(x *byte, stride int, y *byte, nb int, out *float32)
// nb > 0: out[k] = row k · y, each sum += (sumi·dx)·dy as dotQ4_0SDOT.
TEXT ·dotQ4_0SDOTR4(SB), NOSPLIT, $0-40
	R4_ARGS
	VMOVI $15, V30.B16
	VMOVI $8, V31.B16

q40r4_loop:
	R4_ACT
	R4_EACH(Q40_R4ROW)
	R4_SUMS
	FMUL4S(19, 12, 12)
	FMUL4S(18, 12, 12)
	FADD4S(12, 20, 20)
	R4_NEXT(18)
	BNE  q40r4_loop
	VST1 [V20.S4], (R6)
	RET

// func dotQ8_0SDOTR4(x *byte, stride int, y *byte, nb int, out *float32)
// nb > 0: out[k] = row k · y, each sum += sumi·(dx·dy) as dotQ8_0SDOT.
TEXT ·dotQ8_0SDOTR4(SB), NOSPLIT, $0-40
	R4_ARGS

q80r4_loop:
	R4_ACT
	R4_EACH(Q80_R4ROW)
	R4_SUMS
	FMUL4S(18, 19, 19)
	FMUL4S(19, 12, 12)
	FADD4S(12, 20, 20)
	R4_NEXT(34)
	BNE  q80r4_loop
	VST1 [V20.S4], (R6)
	RET
