//go:build arm64 && !purego

#include "textflag.h"

// Four-column forms of the Q8_0 and Q4_0 dots of simd_arm64.s: one weight row against four
// activation rows ystride bytes apart. Each block's weights are loaded (and for Q4_0 unpacked)
// once for the four columns, and the four columns' float chains (one add a block, the latency
// that bounds the one-column kernels) run side by side. Every column's steps are the one-column
// kernel's, so each result equals it bit for bit.

#include "x4_arm64.h"
#include "neon_arm64.h"

// One column's block: the 32 activations at 2(yp) against the weights in V0, V1 (SDOT into
// vacc, numbered acc); fi = the integer sum as float32, fdy = the activation scale.
#define COL_SUM(yp, a1, a2, acc, va1, va2, vacc, fdy, fi) \
	MOVHU   (yp), R4; \
	FMOVS   R4, fdy; \
	FCVTHS  fdy, fdy; \
	ADD     $2, yp, R6; \
	VLD1    (R6), [va1.B16, va2.B16]; \
	VEOR    vacc.B16, vacc.B16, vacc.B16; \
	SDOT(a1, 0, acc); \
	SDOT(a2, 1, acc); \
	VADDV   vacc.S4, vacc; \
	VMOV    vacc.S[0], R7; \
	SCVTFWS R7, fi

// Q8_0: fsum += sumi·(dx·dy), dx in F28.
#define Q80_COL(yp, a1, a2, acc, va1, va2, vacc, fdy, fi, fsum) \
	COL_SUM(yp, a1, a2, acc, va1, va2, vacc, fdy, fi); \
	FMULS   F28, fdy, fdy; \
	FMULS   fdy, fi, fi; \
	FADDS   fi, fsum, fsum

// Q4_0: fsum += (sumi·dx)·dy.
#define Q40_COL(yp, a1, a2, acc, va1, va2, vacc, fdy, fi, fsum) \
	COL_SUM(yp, a1, a2, acc, va1, va2, vacc, fdy, fi); \
	FMULS   F28, fi, fi; \
	FMULS   fdy, fi, fi; \
	FADDS   fi, fsum, fsum

// col for each of the four columns: its activation row, vector registers (numbered for SDOT and
// named) and float registers of its own.
#define X4_EACH(col) \
	col(R19, 2, 3, 4, V2, V3, V4, F16, F20, F24); \
	col(R20, 5, 6, 7, V5, V6, V7, F17, F21, F25); \
	col(R21, 8, 9, 10, V8, V9, V10, F18, F22, F26); \
	col(R22, 11, 12, 13, V11, V12, V13, F19, F23, F27)

// The weight block's scale into F28.
#define X_SCALE \
	MOVHU  (R0), R3; \
	FMOVS  R3, F28; \
	FCVTHS F28, F28

// func dotQ8_0SDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ8_0SDOT4(SB), NOSPLIT, $0-40
	X4_ARGS

q80x4_loop:
	X_SCALE
	ADD  $2, R0, R5
	VLD1 (R5), [V0.B16, V1.B16]
	X4_EACH(Q80_COL)
	X4_NEXT(34, 34)
	BNE  q80x4_loop
	X4_STORE
	RET

// func dotQ4_0SDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ4_0SDOT4(SB), NOSPLIT, $0-40
	X4_ARGS
	VMOVI $15, V14.B16
	VMOVI $8, V15.B16

q40x4_loop:
	X_SCALE
	ADD   $2, R0, R5
	VLD1  (R5), [V0.B16]
	VUSHR $4, V0.B16, V1.B16
	VAND  V14.B16, V0.B16, V0.B16
	VSUB  V15.B16, V0.B16, V0.B16
	VSUB  V15.B16, V1.B16, V1.B16
	X4_EACH(Q40_COL)
	X4_NEXT(18, 34)
	BNE   q40x4_loop
	X4_STORE
	RET
