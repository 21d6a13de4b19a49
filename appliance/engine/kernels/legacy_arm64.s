//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// Q4_1, Q5_0 and Q5_1 blocks with SDOT, equal to the reference bit for bit: per block the
// exact integer dot (SDOT of the 32 quants, nibbles in element order, and the activations, then
// an across-lanes add), then ggml's scalar float steps in its order, as dotQ8_0SDOT does.

#include "x4_arm64.h"


// TBL indices that put byte e/8 of the qh word in byte e (V13: e < 16, V14: the rest), and the
// bit each byte tests (V15).
DATA legacyTbl<>+0(SB)/8, $0x0000000000000000
DATA legacyTbl<>+8(SB)/8, $0x0101010101010101
DATA legacyTbl<>+16(SB)/8, $0x0202020202020202
DATA legacyTbl<>+24(SB)/8, $0x0303030303030303
DATA legacyTbl<>+32(SB)/8, $0x8040201008040201
DATA legacyTbl<>+40(SB)/8, $0x8040201008040201
GLOBL legacyTbl<>(SB), RODATA|NOPTR, $48

#define LEGACY_ARGS \
	MOVD  x+0(FP), R0; \
	MOVD  y+8(FP), R1; \
	MOVD  nb+16(FP), R2; \
	FMOVS $(0.0), F20; \
	VMOVI $15, V8.B16; \
	VMOVI $16, V9.B16; \
	MOVD  $legacyTbl<>(SB), R3; \
	VLD1  (R3), [V13.B16, V14.B16, V15.B16]

// The four-column kernels' arguments (x4_arm64.h) and constants.
#define LEGACYX4_ARGS \
	X4_ARGS; \
	VMOVI $15, V8.B16; \
	VMOVI $16, V9.B16; \
	MOVD  $legacyTbl<>(SB), R3; \
	VLD1  (R3), [V13.B16, V14.B16, V15.B16]

// V0 = the low nibbles of the 16 bytes at off(R0) (elements 0-15), V1 the high ones (16-31).
#define NIBBLES(off) \
	ADD   $off, R0, R5; \
	VLD1  (R5), [V0.B16]; \
	VUSHR $4, V0.B16, V1.B16; \
	VAND  V8.B16, V0.B16, V0.B16

// V0, V1 |= 16 where bit e of the 32 bits at off(R0) is set (V2-V4 scratch).
#define FIFTH(off) \
	MOVWU   off(R0), R5; \
	VDUP    R5, V2.S4; \
	VTBL    V13.B16, [V2.B16], V3.B16; \
	VTBL    V14.B16, [V2.B16], V4.B16; \
	VCMTST  V15.B16, V3.B16, V3.B16; \
	VCMTST  V15.B16, V4.B16, V4.B16; \
	VAND    V9.B16, V3.B16, V3.B16; \
	VAND    V9.B16, V4.B16, V4.B16; \
	VORR    V3.B16, V0.B16, V0.B16; \
	VORR    V4.B16, V1.B16, V1.B16

// F21 = the integer dot of V0, V1 with the 32 activation quants at off(R1), as float32.
#define BLOCK_DOT(off) \
	ADD     $off, R1, R6; \
	VLD1    (R6), [V2.B16, V3.B16]; \
	VEOR    V4.B16, V4.B16, V4.B16; \
	SDOT(2, 0, 4); \
	SDOT(3, 1, 4); \
	VADDV   V4.S4, V4; \
	VMOV    V4.S[0], R7; \
	SCVTFWS R7, F21

// Fd = the float16 at off(Rb) as float32.
#define HALF(off, rb, fd) \
	MOVHU  off(rb), R7; \
	FMOVS  R7, fd; \
	FCVTHS fd, fd

// F20 += float32(float32(dx·dy)·sumi) + float32(mx·s): the Q4_1/Q5_1 block step.
#define DM_STEP \
	HALF(0, R0, F22); \
	HALF(0, R1, F23); \
	FMULS F23, F22, F22; \
	FMULS F21, F22, F22; \
	HALF(2, R0, F24); \
	HALF(2, R1, F25); \
	FMULS F25, F24, F24; \
	FADDS F24, F22, F22; \
	FADDS F22, F20, F20

// func dotQ4_1SDOT(x, y *byte, nb int) float32
TEXT ·dotQ4_1SDOT(SB), NOSPLIT, $0-28
	LEGACY_ARGS

q41_loop:
	NIBBLES(4)
	BLOCK_DOT(4)
	DM_STEP
	ADD   $20, R0
	ADD   $36, R1
	SUBS  $1, R2
	BNE   q41_loop
	FMOVS F20, ret+24(FP)
	RET

// func dotQ5_1SDOT(x, y *byte, nb int) float32
TEXT ·dotQ5_1SDOT(SB), NOSPLIT, $0-28
	LEGACY_ARGS

q51_loop:
	NIBBLES(8)
	FIFTH(4)
	BLOCK_DOT(4)
	DM_STEP
	ADD   $24, R0
	ADD   $36, R1
	SUBS  $1, R2
	BNE   q51_loop
	FMOVS F20, ret+24(FP)
	RET

// A Q5_0 block's 32 quants, (nibble | 16·bit) - 16, into V0, V1.
#define Q50_QUANTS \
	NIBBLES(6); \
	FIFTH(2); \
	VSUB  V9.B16, V0.B16, V0.B16; \
	VSUB  V9.B16, V1.B16, V1.B16

// func dotQ5_0SDOT(x, y *byte, nb int) float32
// The quants are (nibble | 16·bit) - 16, signed; F20 += float32(float32(dx·dy)·sumi).
TEXT ·dotQ5_0SDOT(SB), NOSPLIT, $0-28
	LEGACY_ARGS

q50_loop:
	Q50_QUANTS
	BLOCK_DOT(2)
	HALF(0, R0, F22)
	HALF(0, R1, F23)
	FMULS F23, F22, F22
	FMULS F21, F22, F22
	FADDS F22, F20, F20
	ADD   $22, R0
	ADD   $34, R1
	SUBS  $1, R2
	BNE   q50_loop
	FMOVS F20, ret+24(FP)
	RET

// The four-column forms: one weight row against four activation rows, the block's quants
// unpacked once for the four, one column to a float lane (as lanes_arm64.s): each column's
// SDOTs into its own register (V16-V19), three pairwise adds to one lane a column, then the
// one-column kernel's float steps in its order on the four lanes, so each column's result
// equals it bit for bit. V20 gathers the columns' activation scales dy and V21 their sums s
// (halves), V22 and V23 hold the block's dx and mx, V24 the four totals.

// Column c's block at yp: dy (and s, by sum) into lane c of V20 (V21), its 32 quants at
// off(yp) into a, b and dotted with V0, V1 into acc.
#define LEGX4_COL(yp, lane, a, b, acc, an, bn, accn, off, sum) \
	MOVHU (yp), R8; \
	VMOV  R8, V20.H[lane]; \
	sum(yp, lane); \
	ADD   $(off), yp, R6; \
	VLD1  (R6), [a.B16, b.B16]; \
	VEOR  acc.B16, acc.B16, acc.B16; \
	SDOT(an, 0, accn); \
	SDOT(bn, 1, accn)

#define LEGX4_SUM(yp, lane) \
	MOVHU 2(yp), R8; \
	VMOV  R8, V21.H[lane]

#define LEGX4_NO_SUM(yp, lane)

// Every column (off: the quants' offset in an activation block), then V16 = the integer dots
// as float32 and V20 = the dy as float32.
#define LEGX4_COLS(off, sum) \
	LEGX4_COL(R19, 0, V2, V3, V16, 2, 3, 16, off, sum); \
	LEGX4_COL(R20, 1, V4, V5, V17, 4, 5, 17, off, sum); \
	LEGX4_COL(R21, 2, V6, V7, V18, 6, 7, 18, off, sum); \
	LEGX4_COL(R22, 3, V10, V11, V19, 10, 11, 19, off, sum); \
	LANES4(V16, V17, V18, V19, V18, V16); \
	SCVTF4S(16, 16); \
	FCVTL_S(20, 20)

// The half at off(R0) as float32 in every lane of v.
#define LEGX4_BCAST(off, v, vn) \
	MOVHU off(R0), R8; \
	VDUP  R8, v.H8; \
	FCVTL_S(vn, vn)

// DM_STEP on the four lanes: total += float32(float32(dx·dy)·sumi) + float32(mx·s).
#define DMX4_BLOCK \
	LEGX4_BCAST(0, V22, 22); \
	LEGX4_BCAST(2, V23, 23); \
	LEGX4_COLS(4, LEGX4_SUM); \
	FCVTL_S(21, 21); \
	FMUL4S(22, 20, 20); \
	FMUL4S(20, 16, 16); \
	FMUL4S(23, 21, 21); \
	FADD4S(21, 16, 16); \
	FADD4S(16, 24, 24)

#define LEGX4_START \
	LEGACYX4_ARGS; \
	VEOR V24.B16, V24.B16, V24.B16

// func dotQ4_1SDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ4_1SDOT4(SB), NOSPLIT, $0-40
	LEGX4_START

q41x4_loop:
	NIBBLES(4)
	DMX4_BLOCK
	X4_NEXT(20, 36)
	BNE  q41x4_loop
	VST1 [V24.S4], (R23)
	RET

// func dotQ5_1SDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ5_1SDOT4(SB), NOSPLIT, $0-40
	LEGX4_START

q51x4_loop:
	NIBBLES(8)
	FIFTH(4)
	DMX4_BLOCK
	X4_NEXT(24, 36)
	BNE  q51x4_loop
	VST1 [V24.S4], (R23)
	RET

// func dotQ5_0SDOT4(x, y *byte, ystride, nb int, out *float32)
// total += float32(float32(dx·dy)·sumi) on the four lanes.
TEXT ·dotQ5_0SDOT4(SB), NOSPLIT, $0-40
	LEGX4_START

q50x4_loop:
	Q50_QUANTS
	LEGX4_BCAST(0, V22, 22)
	LEGX4_COLS(2, LEGX4_NO_SUM)
	FMUL4S(22, 20, 20)
	FMUL4S(20, 16, 16)
	FADD4S(16, 24, 24)
	X4_NEXT(22, 34)
	BNE  q50x4_loop
	VST1 [V24.S4], (R23)
	RET
