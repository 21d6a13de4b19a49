//go:build arm64 && !purego

#include "textflag.h"
#include "neon_arm64.h"

// The float dot of F32 rows against F32 activations, exactly as the reference (dotF32Act): four
// elements a step, their float32 products
// widened to float64 and added into four float64 sums (element index mod 4; V5 = sums 0-1, V6
// = sums 2-3), which the Go side finishes. Instructions the Go assembler lacks are encoded.

// The four products in V0·V1 into the sums.
#define ACC4 \
	FMUL4S(1, 0, 2); \
	FCVTL_D(2, 3); \
	FCVTL2_D(2, 4); \
	FADD2D(3, 5, 5); \
	FADD2D(4, 6, 6)

// The four sums to *s.
#define FLOAT_STORE \
	MOVD s+24(FP), R3; \
	VST1 [V5.D2, V6.D2], (R3)

#define FLOAT_ARGS \
	MOVD x+0(FP), R0; \
	MOVD y+8(FP), R1; \
	MOVD n+16(FP), R2; \
	VEOR V5.B16, V5.B16, V5.B16; \
	VEOR V6.B16, V6.B16, V6.B16

// func dotF32NEON(x, y *byte, n int, s *[4]float64)
// n > 0, a multiple of 4.
TEXT ·dotF32NEON(SB), NOSPLIT, $0-32
	FLOAT_ARGS

f32_loop:
	VLD1.P 16(R0), [V0.S4]
	VLD1.P 16(R1), [V1.S4]
	ACC4
	SUBS   $4, R2
	BNE    f32_loop
	FLOAT_STORE
	RET
