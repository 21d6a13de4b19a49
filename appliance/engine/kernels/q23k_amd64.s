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

// Half k of the quants (32 bytes at off+32k) into Y8, then the four fields' steps.
#define K2_HALF(off, k, step, sc) \
	VMOVDQU off+32*k(SI), Y8; \
	step(k, 0, sc); \
	step(k, 1, sc); \
	step(k, 2, sc); \
	step(k, 3, sc)

#define Q2K_STEP(k, s, sc) \
	VPSRLW $(2*s), Y8, Y1; \
	VPAND  Y14, Y1, Y1; \
	K2_DOT(k, s, sc)


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


// The sixteen scales as words in Y5: Y11 = words 0-7 in both lanes, Y12 = words 8-15.
#define K2_SPLIT_SCALES \
	VPERMQ $0x44, Y5, Y11; \
	VPERMQ $0xee, Y5, Y12

// The sixteen 6-bit scales of the Q3_K super-block at SI as words in Y5 (not yet minus 32),
// unpacked with scalar code (R11 = 0x0f0f0f0f0f0f0f0f).
#define Q3K_SCALES_Y5 \
	MOVQ         96(SI), R8; \
	MOVL         104(SI), R9; \
	MOVQ         R8, R10; \
	ANDQ         R11, R10; \
	SHRQ         $4, R8; \
	ANDQ         R11, R8; \
	MOVL         R9, R12; \
	ANDL         $0x03030303, R12; \
	MOVL         R9, R13; \
	SHRL         $2, R13; \
	ANDL         $0x03030303, R13; \
	SHLQ         $32, R13; \
	ORQ          R13, R12; \
	SHLQ         $4, R12; \
	ORQ          R12, R10; \
	MOVL         R9, R12; \
	SHRL         $4, R12; \
	ANDL         $0x03030303, R12; \
	MOVL         R9, R13; \
	SHRL         $6, R13; \
	ANDL         $0x03030303, R13; \
	SHLQ         $32, R13; \
	ORQ          R13, R12; \
	SHLQ         $4, R12; \
	ORQ          R12, R8; \
	VMOVQ        R10, X5; \
	VPINSRQ      $1, R8, X5, X5; \
	VPMOVZXBW    X5, Y5

// The one-column kernels' start: SI, DI, CX = x, y, nb; Y0 = 0; Y14 = 3 in every byte (the
// 2-bit mask); Y13 = mask13 in every 32-bit lane.
#define K23_PROLOGUE(mask13) \
	MOVQ         x+0(FP), SI; \
	MOVQ         y+8(FP), DI; \
	MOVQ         nb+16(FP), CX; \
	VXORPS       Y0, Y0, Y0; \
	MOVL         $0x03030303, AX; \
	VMOVD        AX, X14; \
	VPBROADCASTD X14, Y14; \
	MOVL         $mask13, AX; \
	VMOVD        AX, X13; \
	VPBROADCASTD X13, Y13

// func dotQ2KAVX2(x, y *byte, nb int) float32
// Q2_K (84 bytes: 16 bytes of scales (low nibble) and mins (high), 64 of quants, d, dmin).
TEXT ·dotQ2KAVX2(SB), NOSPLIT, $0-28
	K23_PROLOGUE(0x0f0f0f0f)

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
	K2_HALF(16, 0, Q2K_STEP, Y11)
	K2_HALF(16, 1, Q2K_STEP, Y12)
	VCVTDQ2PS    Y7, Y7
	VFMADD231PS  Y7, Y3, Y0
	VFNMADD231PS Y6, Y4, Y0
	ADDQ         $84, SI
	ADDQ         $292, DI
	DECQ         CX
	JNZ          q2k_loop

	HSUM_Y0
	VZEROUPPER
	VMOVSS X0, ret+24(FP)
	RET

// func dotQ3KAVX2(x, y *byte, nb int) float32
// Q3_K (110 bytes: 32 bytes of high-mask bits, 64 of quants, 12 of 6-bit scales, d). The
// scales are unpacked with scalar code (j < 8: low nibble of byte j, else high nibble of byte
// j-8; bits 4-5 from bits 2·(j/4) of byte 8 + j%4), minus 32. Σ (u-4)·y = Σ u·y - 4·Σy, the
// Σy being Q8_K's group sums.
TEXT ·dotQ3KAVX2(SB), NOSPLIT, $0-28
	K23_PROLOGUE(0x04040404)
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
	Q3K_SCALES_Y5
	VPSUBW       Y15, Y5, Y5
	VPMADDWD     260(DI), Y5, Y6
	VPSLLD       $2, Y6, Y6
	K2_SPLIT_SCALES
	VMOVDQU      (SI), Y9
	VPXOR        Y7, Y7, Y7
	K2_HALF(32, 0, Q3K_STEP, Y11)
	K2_HALF(32, 1, Q3K_STEP, Y12)
	VPSUBD       Y6, Y7, Y7
	VCVTDQ2PS    Y7, Y7
	VFMADD231PS  Y7, Y3, Y0
	ADDQ         $110, SI
	ADDQ         $292, DI
	DECQ         CX
	JNZ          q3k_loop

	HSUM_Y0
	VZEROUPPER
	VMOVSS X0, ret+24(FP)
	RET

// The four-column forms (prompt batches, several sequences): each field's quants (Y13) and
// scale vector (sv) are made once and meet the four columns' activations (at (DI),
// (DI)(DX*1), (R14), (R14)(DX*1)) into Y4-Y7 (Y0-Y3 hold the float sums); each column's
// arithmetic is the one-column kernel's, so the results are the same bit for bit. Frame: the
// sixteen mins (Q2_K) or scales (Q3_K) as words. The masks come from memory: the sixteen
// registers are all taken.

DATA k3Sub32<>+0(SB)/8, $0x0020002000200020
DATA k3Sub32<>+8(SB)/8, $0x0020002000200020
DATA k3Sub32<>+16(SB)/8, $0x0020002000200020
DATA k3Sub32<>+24(SB)/8, $0x0020002000200020
GLOBL k3Sub32<>(SB), RODATA|NOPTR, $32

DATA k2Mask3<>+0(SB)/8, $0x0303030303030303
DATA k2Mask3<>+8(SB)/8, $0x0303030303030303
DATA k2Mask3<>+16(SB)/8, $0x0303030303030303
DATA k2Mask3<>+24(SB)/8, $0x0303030303030303
GLOBL k2Mask3<>(SB), RODATA|NOPTR, $32

DATA k2Mask4<>+0(SB)/8, $0x0404040404040404
DATA k2Mask4<>+8(SB)/8, $0x0404040404040404
DATA k2Mask4<>+16(SB)/8, $0x0404040404040404
DATA k2Mask4<>+24(SB)/8, $0x0404040404040404
GLOBL k2Mask4<>(SB), RODATA|NOPTR, $32

DATA k2Mask15<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA k2Mask15<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL k2Mask15<>(SB), RODATA|NOPTR, $16

// Field s of half k in Y13 with its scale vector in sv (from sc): Y4-Y7 += the columns'
// scaled sums (Y9 scratch).
#define K2X4_DOT(k, s, sc, sv) \
	VPSHUFB    q2kShuf<>+32*s(SB), sc, sv; \
	K2X4_COL(4+128*k+32*s(DI), Y4, sv); \
	K2X4_COL(4+128*k+32*s(DI)(DX*1), Y5, sv); \
	K2X4_COL(4+128*k+32*s(R14), Y6, sv); \
	K2X4_COL(4+128*k+32*s(R14)(DX*1), Y7, sv)

#define K2X4_COL(yq, sumi, sv) \
	VPMADDUBSW yq, Y13, Y9; \
	VPMADDWD   sv, Y9, Y9; \
	VPADDD     Y9, sumi, sumi

// Field s of the quant bytes in Y8 into Y13.
#define K2X4_FIELD(s) \
	VPSRLW $(2*s), Y8, Y13; \
	VPAND  k2Mask3<>(SB), Y13, Y13

#define Q2KX4_STEP(k, s, sc) \
	K2X4_FIELD(s); \
	K2X4_DOT(k, s, sc, Y10)


// Q2_K column total (X15 = d, dmin): acc += d·yd·sumi, acc -= dmin·yd·(mins·group sums).
#define Q2KX4_FINISH(base, sumi, acc) \
	VBROADCASTSS 0 base, X9; \
	VMULPS       X9, X15, X9; \
	VBROADCASTSS X9, Y10; \
	VCVTDQ2PS    sumi, sumi; \
	VFMADD231PS  sumi, Y10, acc; \
	VMOVSHDUP    X9, X9; \
	VBROADCASTSS X9, Y10; \
	VMOVDQU      0(SP), Y9; \
	VPMADDWD     260 base, Y9, Y9; \
	VCVTDQ2PS    Y9, Y9; \
	VFNMADD231PS Y9, Y10, acc

#define ZERO_Y4_7 \
	VPXOR Y4, Y4, Y4; \
	VPXOR Y5, Y5, Y5; \
	VPXOR Y6, Y6, Y6; \
	VPXOR Y7, Y7, Y7

// func dotQ2Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)
TEXT ·dotQ2Kx4AVX2(SB), NOSPLIT, $32-40
	X4_PROLOGUE

q2kx4_loop:
	VMOVDQU   (SI), X5
	VPSRLW    $4, X5, X6
	VPAND     k2Mask15<>(SB), X6, X6
	VPAND     k2Mask15<>(SB), X5, X5
	VPMOVZXBW X6, Y6
	VMOVDQU   Y6, 0(SP)
	VPMOVZXBW X5, Y5
	K2_SPLIT_SCALES
	ZERO_Y4_7
	K2_HALF(16, 0, Q2KX4_STEP, Y11)
	K2_HALF(16, 1, Q2KX4_STEP, Y12)
	MOVL      80(SI), AX
	VMOVD     AX, X15
	VCVTPH2PS X15, X15
	FINISH4(Q2KX4_FINISH)
	X4_NEXT(84, q2kx4_loop)
	X4_STORE
	RET

// Q3_K: the high-mask bit (Y10, shifted down one bit a step) merged as 4 (Y15 scratch).
#define Q3KX4_STEP(k, s, sc) \
	K2X4_FIELD(s); \
	VPSLLW $2, Y10, Y15; \
	VPAND  k2Mask4<>(SB), Y15, Y15; \
	VPOR   Y15, Y13, Y13; \
	VPSRLW $1, Y10, Y10; \
	K2X4_DOT(k, s, sc, Y14)


// Q3_K column total (X15 = d): sumi -= 4·(scales·group sums); acc += d·yd·sumi.
#define Q3KX4_FINISH(base, sumi, acc) \
	VMOVDQU      0(SP), Y9; \
	VPMADDWD     260 base, Y9, Y9; \
	VPSLLD       $2, Y9, Y9; \
	VPSUBD       Y9, sumi, sumi; \
	VCVTDQ2PS    sumi, sumi; \
	VMOVSS       0 base, X9; \
	VMULSS       X9, X15, X9; \
	VBROADCASTSS X9, Y9; \
	VFMADD231PS  sumi, Y9, acc

// func dotQ3Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)
TEXT ·dotQ3Kx4AVX2(SB), NOSPLIT, $32-40
	X4_PROLOGUE
	MOVQ $0x0f0f0f0f0f0f0f0f, R11

q3kx4_loop:
	Q3K_SCALES_Y5
	VPSUBW    k3Sub32<>(SB), Y5, Y5
	VMOVDQU   Y5, 0(SP)
	K2_SPLIT_SCALES
	VMOVDQU   (SI), Y10
	ZERO_Y4_7
	K2_HALF(32, 0, Q3KX4_STEP, Y11)
	K2_HALF(32, 1, Q3KX4_STEP, Y12)
	MOVWLZX   108(SI), AX
	VMOVD     AX, X15
	VCVTPH2PS X15, X15
	FINISH4(Q3KX4_FINISH)
	X4_NEXT(110, q3kx4_loop)
	X4_STORE
	RET
