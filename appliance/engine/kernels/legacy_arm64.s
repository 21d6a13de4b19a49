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
#define BLOCK_DOT(off) BLOCK_DOT_OF(off, R1)

#define BLOCK_DOT_OF(off, yp) \
	ADD     $off, yp, R6; \
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
// unpacked once for the four, each column's steps those of the one-column kernel (so its
// result equals it bit for bit).

// DM_STEP for the column at yp, dx in F28 and mx in F29: total += float32(dx·dy)·sumi + mx·s.
#define DMX4_COL(yp, total) \
	BLOCK_DOT_OF(4, yp); \
	HALF(0, yp, F23); \
	FMULS F28, F23, F16; \
	FMULS F21, F16, F16; \
	HALF(2, yp, F17); \
	FMULS F29, F17, F17; \
	FADDS F17, F16, F16; \
	FADDS F16, total, total

#define DMX4_BLOCK \
	HALF(0, R0, F28); \
	HALF(2, R0, F29); \
	X4_TOTALS(DMX4_COL)

// func dotQ4_1SDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ4_1SDOT4(SB), NOSPLIT, $0-40
	LEGACYX4_ARGS

q41x4_loop:
	NIBBLES(4)
	DMX4_BLOCK
	X4_NEXT(20, 36)
	BNE   q41x4_loop
	X4_STORE
	RET

// func dotQ5_1SDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ5_1SDOT4(SB), NOSPLIT, $0-40
	LEGACYX4_ARGS

q51x4_loop:
	NIBBLES(8)
	FIFTH(4)
	DMX4_BLOCK
	X4_NEXT(24, 36)
	BNE   q51x4_loop
	X4_STORE
	RET

// The Q5_0 step for the column at yp, dx in F28: total += float32(dx·dy)·sumi.
#define Q50X4_COL(yp, total) \
	BLOCK_DOT_OF(2, yp); \
	HALF(0, yp, F23); \
	FMULS F28, F23, F16; \
	FMULS F21, F16, F16; \
	FADDS F16, total, total

// func dotQ5_0SDOT4(x, y *byte, ystride, nb int, out *float32)
TEXT ·dotQ5_0SDOT4(SB), NOSPLIT, $0-40
	LEGACYX4_ARGS

q50x4_loop:
	Q50_QUANTS
	HALF(0, R0, F28)
	X4_TOTALS(Q50X4_COL)
	X4_NEXT(22, 34)
	BNE   q50x4_loop
	X4_STORE
	RET
