//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// The scalar floats live in F20-F23: F0-F9 are the low lanes of the vectors V0-V9.
//
// Per block: the integer sum of the 32 products lands in R7 via SDOT and an across-lanes add;
// then, in scalar float32 like ggml's generic code, sumf += ... with the block scales widened
// from fp16 (FCVTHS).

// func dotQ8_0SDOT(x, y *byte, nb int) float32
TEXT ·dotQ8_0SDOT(SB), NOSPLIT, $0-28
	MOVD  x+0(FP), R0
	MOVD  y+8(FP), R1
	MOVD  nb+16(FP), R2
	FMOVS $(0.0), F20

q80_loop:
	MOVHU  (R0), R3
	MOVHU  (R1), R4
	ADD    $2, R0, R5
	ADD    $2, R1, R6
	VLD1   (R5), [V0.B16, V1.B16]
	VLD1   (R6), [V2.B16, V3.B16]
	VEOR   V4.B16, V4.B16, V4.B16
	SDOT(2, 0, 4)
	SDOT(3, 1, 4)
	VADDV  V4.S4, V4
	VMOV   V4.S[0], R7
	SCVTFWS R7, F21
	FMOVS  R3, F22
	FCVTHS F22, F22
	FMOVS  R4, F23
	FCVTHS F23, F23
	FMULS  F23, F22, F22 // d = dx*dy
	FMULS  F22, F21, F21 // sumi*d
	FADDS  F21, F20, F20
	ADD    $34, R0
	ADD    $34, R1
	SUBS   $1, R2
	BNE    q80_loop
	FMOVS  F20, ret+24(FP)
	RET

// func dotQ4_0SDOT(x, y *byte, nb int) float32
TEXT ·dotQ4_0SDOT(SB), NOSPLIT, $0-28
	MOVD  x+0(FP), R0
	MOVD  y+8(FP), R1
	MOVD  nb+16(FP), R2
	FMOVS $(0.0), F20
	VMOVI $15, V8.B16
	VMOVI $8, V9.B16

q40_loop:
	MOVHU  (R0), R3
	MOVHU  (R1), R4
	ADD    $2, R0, R5
	ADD    $2, R1, R6
	VLD1   (R5), [V0.B16]
	VLD1   (R6), [V2.B16, V3.B16]
	VUSHR  $4, V0.B16, V1.B16
	VAND   V8.B16, V0.B16, V0.B16
	VSUB   V9.B16, V0.B16, V0.B16
	VSUB   V9.B16, V1.B16, V1.B16
	VEOR   V4.B16, V4.B16, V4.B16
	SDOT(2, 0, 4)
	SDOT(3, 1, 4)
	VADDV  V4.S4, V4
	VMOV   V4.S[0], R7
	SCVTFWS R7, F21
	FMOVS  R3, F22
	FCVTHS F22, F22
	FMOVS  R4, F23
	FCVTHS F23, F23
	FMULS  F22, F21, F21 // sumi*dx
	FMULS  F23, F21, F21 // *dy
	FADDS  F21, F20, F20
	ADD    $18, R0
	ADD    $34, R1
	SUBS   $1, R2
	BNE    q40_loop
	FMOVS  F20, ret+24(FP)
	RET
