//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// The four-column BF16 kernel on 512-bit registers. dotBF16AVX2 keeps four accumulators of
// eight lanes over 32-element steps (elements 0-7, 8-15, 16-23, 24-31 of each step); here each
// column keeps two of sixteen lanes, the first holding that kernel's first and second
// accumulators, the second its third and fourth, so every lane sees the same FMAs in the same
// order. The reduction adds them in GGML_REDUCE4's order: (acc0+acc2) + (acc1+acc3), then the
// two halves of that, then the two pairs. The weights are widened once for the four columns.

// Sixteen BF16 values at mem widened to float32 (exact) in z.
#define BF16_WIDEN16(mem, z) \
	VPMOVZXWD mem, z; \
	VPSLLD    $16, z, z

// One column of a 32-element step: activations at base, accumulators lo and hi, Z10 scratch;
// the weights are in Z8 (elements 0-15) and Z9 (16-31).
#define BF16X4_COL(base, lo, hi) \
	BF16_WIDEN16(0 base, Z10); \
	VFMADD231PS Z10, Z8, lo; \
	BF16_WIDEN16(32 base, Z10); \
	VFMADD231PS Z10, Z9, hi

// The column's sum, reduced as GGML_REDUCE4 reduces dotBF16AVX2's, to off(R8).
#define BF16X4_REDUCE(zlo, zhi, ylo, xlo, yt, xt, off) \
	VADDPS        zhi, zlo, zlo; \
	VEXTRACTF64X4 $1, zlo, yt; \
	VADDPS        yt, ylo, ylo; \
	VEXTRACTF128  $1, ylo, xt; \
	VADDPS        xt, xlo, xlo; \
	VHADDPS       xlo, xlo, xlo; \
	VHADDPS       xlo, xlo, xlo; \
	VMOVSS        xlo, off(R8)

// func dotBF16x4AVX512(x, y *uint16, ystride int, n int, out *float32)
// Four activation rows ystride bytes apart against one weight row; n a positive multiple of
// 32; out[c] is what dotBF16AVX2 returns for column c.
TEXT ·dotBF16x4AVX512(SB), NOSPLIT, $0-40
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   ystride+16(FP), DX
	MOVQ   n+24(FP), CX
	MOVQ   out+32(FP), R8
	LEAQ   (DI)(DX*2), R14
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7

bf16x4_loop32:
	BF16_WIDEN16((SI), Z8)
	BF16_WIDEN16(32(SI), Z9)
	BF16X4_COL((DI), Z0, Z1)
	BF16X4_COL((DI)(DX*1), Z2, Z3)
	BF16X4_COL((R14), Z4, Z5)
	BF16X4_COL((R14)(DX*1), Z6, Z7)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R14
	SUBQ $32, CX
	JNZ  bf16x4_loop32

	BF16X4_REDUCE(Z0, Z1, Y0, X0, Y8, X8, 0)
	BF16X4_REDUCE(Z2, Z3, Y2, X2, Y8, X8, 4)
	BF16X4_REDUCE(Z4, Z5, Y4, X4, Y8, X8, 8)
	BF16X4_REDUCE(Z6, Z7, Y6, X6, Y8, X8, 12)
	VZEROUPPER
	RET
