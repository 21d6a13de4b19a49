//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"
#include "x4_arm64.h"

// Four Q8_0 or Q4_0 dots that share an operand, one dot to a float lane: four weight rows
// (stride bytes apart) against one activation row (the decode form, *R4), or one weight row
// against four activation rows (the prompt form, *4). Per block each dot's integer sum is two
// SDOTs into its own register, the four registers are reduced by pairwise adds into one lane a
// dot, and the block's float steps (the one-row kernels', dotQ8_0SDOT's and dotQ4_0SDOT's, in
// their order) and the running sums run on the four lanes at once, so every lane equals its
// one-row kernel bit for bit. The shared operand is loaded (and unpacked) once a block, and the
// one-row kernels' across-lanes add, move to a general register and scalar conversion per
// block give way to three pairwise adds and one vector conversion per four dots.

// The two-row four-column kernels' arguments (see dotQ4_0SDOT2x4): R0, R1 the rows, R19-R22
// the columns, R2 = nb, R23 = out; the totals V20, V21 = 0.
#define L2X4_ARGS \
	MOVD x+0(FP), R0; \
	MOVD xstride+8(FP), R1; \
	ADD  R0, R1, R1; \
	MOVD y+16(FP), R19; \
	MOVD ystride+24(FP), R5; \
	MOVD nb+32(FP), R2; \
	MOVD out+40(FP), R23; \
	ADD  R5, R19, R20; \
	ADD  R5, R20, R21; \
	ADD  R5, R21, R22; \
	VEOR V20.B16, V20.B16, V20.B16; \
	VEOR V21.B16, V21.B16, V21.B16

// The half at p as float32 in every lane of v (vn its number).
#define BCAST_HALF(p, v, vn) \
	MOVHU (p), R8; \
	VDUP  R8, v.H8; \
	FCVTL_S(vn, vn)

// A Q8_0 block at p shared by the four dots: its scale in V18's four lanes, its 32 quants in q1
// and q2.
#define SHARED_BLOCK(p, q1, q2) \
	BCAST_HALF(p, V18, 18); \
	ADD   $2, p, R7; \
	VLD1  (R7), [q1.B16, q2.B16]

// The nibbles of the Q4_0 block at p less 8 in w (elements 0-15) and h (16-31); V30 = 0x0f and
// V31 = 8 in every byte.
#define Q40_NIBBLES(p, w, h) \
	ADD   $2, p, R7; \
	VLD1  (R7), [w.B16]; \
	VUSHR $4, w.B16, h.B16; \
	VAND  V30.B16, w.B16, w.B16; \
	VSUB  V31.B16, w.B16, w.B16; \
	VSUB  V31.B16, h.B16, h.B16

// A Q4_0 weight block at p: its scale in every lane of v, its nibbles in w and h.
#define Q40_BLOCK(p, w, h, v, vn) \
	BCAST_HALF(p, v, vn); \
	Q40_NIBBLES(p, w, h)

#define Q40_CONSTS \
	VMOVI $15, V30.B16; \
	VMOVI $8, V31.B16

// The activation block of the four-row kernels.
#define R4_ACT SHARED_BLOCK(R4, V16, V17)

// The block scale at p into lane lane of V19 (as a half).
#define LANE_SCALE(p, lane) \
	MOVHU (p), R8; \
	VMOV  R8, V19.H[lane]

// A block of 32 quants at p (and its scale) dotted with the shared quants in V(on), V(hn)
// into acc: x and y scratch.
#define LANE_DOT(p, lane, x, y, acc, xn, yn, accn, on, hn) \
	LANE_SCALE(p, lane); \
	ADD  $2, p, R7; \
	VLD1 (R7), [x.B16, y.B16]; \
	VEOR acc.B16, acc.B16, acc.B16; \
	SDOT(on, xn, accn); \
	SDOT(hn, yn, accn)

// A Q4_0 row's block: the 16 bytes of nibbles into w (low, elements 0-15) and h (high,
// 16-31), less 8 (V30 = 0x0f, V31 = 8 in every byte), dotted into acc.
#define Q40_R4ROW(rp, lane, w, h, acc, wn, hn, accn) \
	LANE_SCALE(rp, lane); \
	Q40_NIBBLES(rp, w, h); \
	VEOR  acc.B16, acc.B16, acc.B16; \
	SDOT(16, wn, accn); \
	SDOT(17, hn, accn)

// A Q8_0 row's block against the activations.
#define Q80_R4ROW(rp, lane, w, h, acc, wn, hn, accn) LANE_DOT(rp, lane, w, h, acc, wn, hn, accn, 16, 17)

#define R4_EACH(row) \
	row(R0, 0, V0, V1, V8, 0, 1, 8); \
	row(R1, 1, V2, V3, V9, 2, 3, 9); \
	row(R2, 2, V4, V5, V10, 4, 5, 10); \
	row(R3, 3, V6, V7, V11, 6, 7, 11)

// V12 = the four dots' integer sums (dot k in lane k) as float32, V19 = their scales.
#define LANE_SUMS \
	LANES4(V8, V9, V10, V11, V13, V12); \
	SCVTF4S(12, 12); \
	FCVTL_S(19, 19)

// Q8_0's float steps on the four lanes: sum += sumi·(dx·dy), the scales in V18 and V19.
#define Q80_LANES_STEP \
	FMUL4S(18, 19, 19); \
	FMUL4S(19, 12, 12); \
	FADD4S(12, 20, 20)

// func dotQ4_0SDOTR4(x *byte, stride int, y *byte, nb int, out *float32)
// nb > 0: out[k] = row k · y, each sum += (sumi·dx)·dy as dotQ4_0SDOT.
TEXT ·dotQ4_0SDOTR4(SB), NOSPLIT, $0-40
	R4_ARGS
	Q40_CONSTS

q40r4_loop:
	R4_ACT
	R4_EACH(Q40_R4ROW)
	LANE_SUMS
	FMUL4S(19, 12, 12)
	FMUL4S(18, 12, 12)
	FADD4S(12, 20, 20)
	R4_NEXT(18, 34)
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
	LANE_SUMS
	Q80_LANES_STEP
	R4_NEXT(34, 34)
	BNE  q80r4_loop
	VST1 [V20.S4], (R6)
	RET

// The four-column kernels: R0 = the weight row, R19-R22 = the four activation rows, R23 = out
// (X4_ARGS); the weight block's scale dx in V18, its quants in V0 and V1; column c's
// activation block dotted into V(8+c).
#define X4L_EACH(col) \
	col(R19, 0, V2, V3, V8, 2, 3, 8); \
	col(R20, 1, V4, V5, V9, 4, 5, 9); \
	col(R21, 2, V6, V7, V10, 6, 7, 10); \
	col(R22, 3, V14, V15, V11, 14, 15, 11)

#define X4L_COL(yp, lane, a, b, acc, an, bn, accn) LANE_DOT(yp, lane, a, b, acc, an, bn, accn, 0, 1)

// func dotQ8_0SDOT4(x, y *byte, ystride, nb int, out *float32)
// nb > 0: out[c] = x · column c, each sum += sumi·(dx·dy) as dotQ8_0SDOT.
TEXT ·dotQ8_0SDOT4(SB), NOSPLIT, $0-40
	X4_ARGS
	VEOR V20.B16, V20.B16, V20.B16

q80x4_loop:
	SHARED_BLOCK(R0, V0, V1)
	X4L_EACH(X4L_COL)
	LANE_SUMS
	Q80_LANES_STEP
	X4_NEXT(34, 34)
	BNE  q80x4_loop
	VST1 [V20.S4], (R23)
	RET

// func dotQ4_0SDOT4(x, y *byte, ystride, nb int, out *float32)
// nb > 0: out[c] = x · column c, each sum += (sumi·dx)·dy as dotQ4_0SDOT; the weight block's
// nibbles are unpacked once for the four columns.
TEXT ·dotQ4_0SDOT4(SB), NOSPLIT, $0-40
	X4_ARGS
	VEOR  V20.B16, V20.B16, V20.B16
	Q40_CONSTS

q40x4_loop:
	Q40_BLOCK(R0, V0, V1, V18, 18)
	X4L_EACH(X4L_COL)
	LANE_SUMS
	FMUL4S(18, 12, 12)
	FMUL4S(19, 12, 12)
	FADD4S(12, 20, 20)
	X4_NEXT(18, 34)
	BNE  q40x4_loop
	VST1 [V20.S4], (R23)
	RET

// The two-row four-column kernels (prompts): rows R0 and R1 (xstride bytes apart), columns
// R19-R22 (ystride apart), out (R23) = row 0's four results, then row 1's. Each column's
// activation block is loaded once for both rows: row 0's weights in V0, V1 (scale V18), row
// 1's in V12, V13 (scale V26); column c's dots into V(8+c) (row 0) and V(22+c) (row 1); the
// totals in V20 and V21.
// Column c: its dy into lane c of V19, its quants into a, b, dotted with both rows.
#define L2X4_COL(yp, lane, a, b, an, bn, acc0, acc0n, acc1, acc1n) \
	LANE_SCALE(yp, lane); \
	ADD  $2, yp, R7; \
	VLD1 (R7), [a.B16, b.B16]; \
	VEOR acc0.B16, acc0.B16, acc0.B16; \
	VEOR acc1.B16, acc1.B16, acc1.B16; \
	SDOT(an, 0, acc0n); \
	SDOT(bn, 1, acc0n); \
	SDOT(an, 12, acc1n); \
	SDOT(bn, 13, acc1n)

// Every column, then V8 (row 0) and V22 (row 1) = the integer dots as float32, V19 = the dy.
#define L2X4_COLS \
	L2X4_COL(R19, 0, V2, V3, 2, 3, V8, 8, V22, 22); \
	L2X4_COL(R20, 1, V4, V5, 4, 5, V9, 9, V23, 23); \
	L2X4_COL(R21, 2, V6, V7, 6, 7, V10, 10, V24, 24); \
	L2X4_COL(R22, 3, V14, V15, 14, 15, V11, 11, V25, 25); \
	LANES4(V8, V9, V10, V11, V10, V8); \
	LANES4(V22, V23, V24, V25, V24, V22); \
	SCVTF4S(8, 8); \
	SCVTF4S(22, 22); \
	FCVTL_S(19, 19)

#define L2X4_NEXT(wb) \
	ADD $(wb), R1; \
	X4_NEXT(wb, 34)

// func dotQ4_0SDOT2x4(x *byte, xstride int, y *byte, ystride, nb int, out *float32)
// nb > 0: each sum += (sumi·dx)·dy as dotQ4_0SDOT.
TEXT ·dotQ4_0SDOT2x4(SB), NOSPLIT, $0-48
	L2X4_ARGS
	Q40_CONSTS

q40x2x4_loop:
	Q40_BLOCK(R0, V0, V1, V18, 18)
	Q40_BLOCK(R1, V12, V13, V26, 26)
	L2X4_COLS
	FMUL4S(18, 8, 8)
	FMUL4S(19, 8, 8)
	FADD4S(8, 20, 20)
	FMUL4S(26, 22, 22)
	FMUL4S(19, 22, 22)
	FADD4S(22, 21, 21)
	L2X4_NEXT(18)
	BNE  q40x2x4_loop
	VST1 [V20.S4, V21.S4], (R23)
	RET

// func dotQ8_0SDOT2x4(x *byte, xstride int, y *byte, ystride, nb int, out *float32)
// nb > 0: each sum += sumi·(dx·dy) as dotQ8_0SDOT.
TEXT ·dotQ8_0SDOT2x4(SB), NOSPLIT, $0-48
	L2X4_ARGS

q80x2x4_loop:
	SHARED_BLOCK(R0, V0, V1)
	BCAST_HALF(R1, V26, 26)
	ADD  $2, R1, R7
	VLD1 (R7), [V12.B16, V13.B16]
	L2X4_COLS
	FMUL4S(19, 18, 18)
	FMUL4S(18, 8, 8)
	FADD4S(8, 20, 20)
	FMUL4S(19, 26, 26)
	FMUL4S(26, 22, 22)
	FADD4S(22, 21, 21)
	L2X4_NEXT(34)
	BNE  q80x2x4_loop
	VST1 [V20.S4, V21.S4], (R23)
	RET
