//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Q2_K and Q3_K super-blocks against Q8_K, on AVX2. Both lay out 256 quants as two halves of
// 128; in half k the 32 bytes of quants hold four 2-bit fields, and field s of byte l is element
// 128k + 32s + l, so one shift and mask gives 32 elements: sub-blocks 8k+2s (l < 16, the low
// 128-bit lane) and 8k+2s+1 (the high lane). Their unsigned quants meet the activations in
// VPMADDUBSW, and VPMADDWD scales each lane's words by its sub-block's scale (q2kShuf picks
// them from the scales held as words, eight a half, in both lanes). The integer sums are
// exact; each super-block adds d·sums (and for Q2_K subtracts dmin·(mins·group sums)) into
// eight float lanes, summed at the end, as the Q4_K kernel does.

// Entry s: word 2s in the low lane, word 2s+1 in the high lane, each to all eight words.
DATA q2kShuf<>+0(SB)/8, $0x0100010001000100
DATA q2kShuf<>+8(SB)/8, $0x0100010001000100
DATA q2kShuf<>+16(SB)/8, $0x0302030203020302
DATA q2kShuf<>+24(SB)/8, $0x0302030203020302
DATA q2kShuf<>+32(SB)/8, $0x0504050405040504
DATA q2kShuf<>+40(SB)/8, $0x0504050405040504
DATA q2kShuf<>+48(SB)/8, $0x0706070607060706
DATA q2kShuf<>+56(SB)/8, $0x0706070607060706
DATA q2kShuf<>+64(SB)/8, $0x0908090809080908
DATA q2kShuf<>+72(SB)/8, $0x0908090809080908
DATA q2kShuf<>+80(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA q2kShuf<>+88(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA q2kShuf<>+96(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA q2kShuf<>+104(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA q2kShuf<>+112(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA q2kShuf<>+120(SB)/8, $0x0f0e0f0e0f0e0f0e
GLOBL q2kShuf<>(SB), RODATA|NOPTR, $128

// Field s of the quant bytes in Y8 (Y1, with Y14 = 0x03 bytes), its high bit (Q3_K) already
// merged by the caller where there is one: then Y7 += scaled sums of elements 128k+32s...
#define K2_DOT(k, s, sc) \
	VPMADDUBSW 4+128*k+32*s(DI), Y1, Y1; \
	VPSHUFB    q2kShuf<>+32*s(SB), sc, Y2; \
	VPMADDWD   Y2, Y1, Y1; \
	VPADDD     Y1, Y7, Y7

#define Q2K_STEP(k, s, sc) \
	VPSRLW $(2*s), Y8, Y1; \
	VPAND  Y14, Y1, Y1; \
	K2_DOT(k, s, sc)

#define Q2K_HALF(k, sc) \
	VMOVDQU 16+32*k(SI), Y8; \
	Q2K_STEP(k, 0, sc); \
	Q2K_STEP(k, 1, sc); \
	Q2K_STEP(k, 2, sc); \
	Q2K_STEP(k, 3, sc)

// Q3_K: the element's high-mask bit (bit 4k+s of hmask byte l; Y9 holds hmask shifted down one
// bit a step) becomes bit 2 of the quant (Y13 = 0x04 bytes): the quant is u - 4 with u in 0..7.
#define Q3K_STEP(k, s, sc) \
	VPSRLW $(2*s), Y8, Y1; \
	VPAND  Y14, Y1, Y1; \
	VPSLLW $2, Y9, Y2; \
	VPAND  Y13, Y2, Y2; \
	VPOR   Y2, Y1, Y1; \
	VPSRLW $1, Y9, Y9; \
	K2_DOT(k, s, sc)

#define Q3K_HALF(k, sc) \
	VMOVDQU 32+32*k(SI), Y8; \
	Q3K_STEP(k, 0, sc); \
	Q3K_STEP(k, 1, sc); \
	Q3K_STEP(k, 2, sc); \
	Q3K_STEP(k, 3, sc)

// The sixteen scales as words in Y5: Y11 = words 0-7 in both lanes, Y12 = words 8-15.
#define K2_SPLIT_SCALES \
	VPERMQ $0x44, Y5, Y11; \
	VPERMQ $0xee, Y5, Y12

// func dotQ2KAVX2(x, y *byte, nb int) float32
// Q2_K (84 bytes: 16 bytes of scales (low nibble) and mins (high), 64 of quants, d, dmin).
TEXT ·dotQ2KAVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         y+8(FP), DI
	MOVQ         nb+16(FP), CX
	VXORPS       Y0, Y0, Y0
	MOVL         $0x03030303, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13

q2k_loop:
	MOVL         80(SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	VBROADCASTSS (DI), X1
	VMULPS       X1, X2, X2
	VBROADCASTSS X2, Y3
	VMOVSHDUP    X2, X4
	VBROADCASTSS X4, Y4
	VMOVDQU      (SI), X5
	VPSRLW       $4, X5, X6
	VPAND        X13, X6, X6
	VPAND        X13, X5, X5
	VPMOVZXBW    X6, Y6
	VPMADDWD     260(DI), Y6, Y6
	VCVTDQ2PS    Y6, Y6
	VPMOVZXBW    X5, Y5
	K2_SPLIT_SCALES
	VPXOR        Y7, Y7, Y7
	Q2K_HALF(0, Y11)
	Q2K_HALF(1, Y12)
	VCVTDQ2PS    Y7, Y7
	VFMADD231PS  Y7, Y3, Y0
	VFNMADD231PS Y6, Y4, Y0
	ADDQ         $84, SI
	ADDQ         $292, DI
	DECQ         CX
	JNZ          q2k_loop

	HSUM_Y0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func dotQ3KAVX2(x, y *byte, nb int) float32
// Q3_K (110 bytes: 32 bytes of high-mask bits, 64 of quants, 12 of 6-bit scales, d). The
// scales are unpacked with scalar code (j < 8: low nibble of byte j, else high nibble of byte
// j-8; bits 4-5 from bits 2·(j/4) of byte 8 + j%4), minus 32. Σ (u-4)·y = Σ u·y - 4·Σy, the
// Σy being Q8_K's group sums.
TEXT ·dotQ3KAVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         y+8(FP), DI
	MOVQ         nb+16(FP), CX
	VXORPS       Y0, Y0, Y0
	MOVL         $0x03030303, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $0x04040404, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13
	MOVL         $0x00200020, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         $0x0f0f0f0f0f0f0f0f, R11

q3k_loop:
	MOVWLZX      108(SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	VMULSS       (DI), X2, X2
	VBROADCASTSS X2, Y3
	MOVQ         96(SI), R8
	MOVL         104(SI), R9
	MOVQ         R8, R10
	ANDQ         R11, R10
	SHRQ         $4, R8
	ANDQ         R11, R8
	MOVL         R9, R12
	ANDL         $0x03030303, R12
	MOVL         R9, R13
	SHRL         $2, R13
	ANDL         $0x03030303, R13
	SHLQ         $32, R13
	ORQ          R13, R12
	SHLQ         $4, R12
	ORQ          R12, R10
	MOVL         R9, R12
	SHRL         $4, R12
	ANDL         $0x03030303, R12
	MOVL         R9, R13
	SHRL         $6, R13
	ANDL         $0x03030303, R13
	SHLQ         $32, R13
	ORQ          R13, R12
	SHLQ         $4, R12
	ORQ          R12, R8
	MOVQ         R10, X5
	VPINSRQ      $1, R8, X5, X5
	VPMOVZXBW    X5, Y5
	VPSUBW       Y15, Y5, Y5
	VPMADDWD     260(DI), Y5, Y6
	VPSLLD       $2, Y6, Y6
	K2_SPLIT_SCALES
	VMOVDQU      (SI), Y9
	VPXOR        Y7, Y7, Y7
	Q3K_HALF(0, Y11)
	Q3K_HALF(1, Y12)
	VPSUBD       Y6, Y7, Y7
	VCVTDQ2PS    Y7, Y7
	VFMADD231PS  Y7, Y3, Y0
	ADDQ         $110, SI
	ADDQ         $292, DI
	DECQ         CX
	JNZ          q3k_loop

	HSUM_Y0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET
