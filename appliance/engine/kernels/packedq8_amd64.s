//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

#define PFDIST 4096

// Kernels for packed Q8_0 weights (packedq8.go): 16 rows per 512-bit register, one row per
// 32-bit lane, against prepared activations (40 bytes a block: 32 quants, the scale as
// float32, -128 times the quant sum). Per block, the eight groups of biased weight bytes
// (w+128, unsigned) meet the broadcast activation quants (signed) in VPDPBUSD, into two sums
// (two dependency chains), the first started at -128·Σy; their total is the exact Σ w·y of
// the block, converted to float, multiplied by dx·yd (rounded) and added to the row's sum
// (rounded): dotPackedQ8_0's arithmetic, which is the reference Dot's.
//
// Arguments: w *byte (the first panel), stride int (bytes per panel), panels int, nb int
// (blocks per row), y *byte (prepared activations), ... .

// One column: acc += float(exact dot) · (dx in Z4 times yd), the block's activations at base,
// the biased quants in Z8-Z15.
#define P8_COL(base, acc) \
	VMULPS.BCST   32 base, Z4, Z20; \
	VPBROADCASTD  36 base, Z21; \
	VPDPBUSD.BCST 0 base, Z8, Z21; \
	VPDPBUSD.BCST 4 base, Z9, Z21; \
	VPDPBUSD.BCST 8 base, Z10, Z21; \
	VPDPBUSD.BCST 12 base, Z11, Z21; \
	VPDPBUSD.BCST 16 base, Z12, Z21; \
	VPDPBUSD.BCST 20 base, Z13, Z21; \
	VPDPBUSD.BCST 24 base, Z14, Z21; \
	VPDPBUSD.BCST 28 base, Z15, Z21; \
	VCVTDQ2PS     Z21, Z21; \
	VMULPS        Z20, Z21, Z21; \
	VADDPS        Z21, acc, acc

// The block whose quants are at ptr and scales at sc: Z4 = dx, Z8-Z15 = the biased quants.
#define P8_BLOCK(ptr, sc) \
	VCVTPH2PS sc, Z4; \
	VMOVDQU64 (ptr), Z8; \
	VMOVDQU64 64(ptr), Z9; \
	VMOVDQU64 128(ptr), Z10; \
	VMOVDQU64 192(ptr), Z11; \
	VMOVDQU64 256(ptr), Z12; \
	VMOVDQU64 320(ptr), Z13; \
	VMOVDQU64 384(ptr), Z14; \
	VMOVDQU64 448(ptr), Z15

// Panel start in R9: SI = its quants, R11 = its scales (after nb·512 bytes), CX = nb.
#define P8_PANEL \
	MOVQ R9, SI; \
	MOVQ nb+24(FP), CX; \
	MOVQ CX, R11; \
	SHLQ $9, R11; \
	ADDQ R9, R11

// Batches compute long enough per block for the loads of the weights to stall them unless the
// memory is asked early: PACKED_PREFETCH8 fetches the lines PFDIST bytes on (later blocks, then
// the next panel) while this block is computed.

// func dotPackedQ8_0VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ8_0VNNI(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), R9
	MOVQ panels+16(FP), R10
	MOVQ out+40(FP), R8

p8_panel:
	P8_PANEL
	MOVQ   y+32(FP), DI
	VPXORD Z0, Z0, Z0

p8_block:
	P8_BLOCK(SI, (R11))
	P8_COL((DI), Z0)
	ADDQ $512, SI
	ADDQ $32, R11
	ADDQ $40, DI
	DECQ CX
	JNZ  p8_block

	VMOVUPS Z0, (R8)
	PACKED_NEXT_PANEL(p8_panel)
	VZEROUPPER
	RET

// func dotPackedQ8_0x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// Four prepared activation rows ystride bytes apart; column c's results at out + c·ostride
// bytes. Each column's arithmetic is that of dotPackedQ8_0VNNI.
TEXT ·dotPackedQ8_0x4VNNI(SB), NOSPLIT, $0-64
	PACKED_COLS_ARGS

p8x4_panel:
	P8_PANEL
	MOVQ   y+32(FP), DI
	LEAQ   (DI)(DX*2), R14
	ZERO_Z4(Z0, Z5, Z6, Z7)

p8x4_block:
	PACKED_PREFETCH8(PFDIST, SI)
	P8_BLOCK(SI, (R11))
	P8_COL((DI), Z0)
	P8_COL((DI)(DX*1), Z5)
	P8_COL((R14), Z6)
	P8_COL((R14)(DX*1), Z7)
	ADDQ $512, SI
	ADDQ $32, R11
	ADDQ $40, DI
	ADDQ $40, R14
	DECQ CX
	JNZ  p8x4_block

	PACKED_STORE4(Z0, Z5, Z6, Z7)
	PACKED_NEXT_PANEL(p8x4_panel)
	VZEROUPPER
	RET

// func dotPackedQ8_0x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// dotPackedQ8_0x4VNNI for eight activation rows: each weight block is loaded once for eight
// products.
TEXT ·dotPackedQ8_0x8VNNI(SB), NOSPLIT, $0-64
	PACKED_COLS_ARGS

p8x8_panel:
	P8_PANEL
	PACKED_COLS8_ROWS(R14, R13)
	ZERO_Z4(Z0, Z5, Z6, Z7)
	ZERO_Z4(Z16, Z17, Z18, Z19)

p8x8_block:
	PACKED_PREFETCH8(PFDIST, SI)
	P8_BLOCK(SI, (R11))
	P8_COL((DI), Z0)
	P8_COL((DI)(DX*1), Z5)
	P8_COL((DI)(DX*2), Z6)
	P8_COL((R14), Z7)
	P8_COL((R14)(DX*1), Z16)
	P8_COL((R14)(DX*2), Z17)
	P8_COL((R13), Z18)
	P8_COL((R13)(DX*1), Z19)
	ADDQ $512, SI
	ADDQ $32, R11
	ADDQ $40, DI
	ADDQ $40, R14
	ADDQ $40, R13
	DECQ CX
	JNZ  p8x8_block

	PACKED_STORE8(Z0, Z5, Z6, Z7, Z16, Z17, Z18, Z19)
	PACKED_NEXT_PANEL(p8x8_panel)
	VZEROUPPER
	RET

// func dotPackedQ8_0Rows4VNNI(w *byte, stride int, count int, dist int, nb int, y *byte, out *float32)
// dotPackedQ8_0VNNI for four runs of count panels, dist panels apart (panel k·dist + p, its
// results at out + 64(k·dist + p) bytes), walked as four memory streams in step. DX is the
// distance from a block's quants to its scales: 512·(nb - b) + 32·b for block b, so it drops
// by 480 a block.
TEXT ·dotPackedQ8_0Rows4VNNI(SB), NOSPLIT, $0-56
	MOVQ  w+0(FP), R9
	MOVQ  count+16(FP), R10
	MOVQ  dist+24(FP), R13
	MOVQ  R13, BX
	SHLQ  $6, BX
	IMULQ stride+8(FP), R13
	MOVQ  out+48(FP), R8

p8r4_panel:
	MOVQ   R9, SI
	LEAQ   (SI)(R13*1), R11
	LEAQ   (R11)(R13*1), R12
	LEAQ   (R12)(R13*1), R14
	MOVQ   nb+32(FP), CX
	MOVQ   CX, DX
	SHLQ   $9, DX
	MOVQ   y+40(FP), DI
	ZERO_Z4(Z0, Z5, Z6, Z7)

p8r4_block:
	P8_BLOCK(SI, (SI)(DX*1))
	P8_COL((DI), Z0)
	P8_BLOCK(R11, (R11)(DX*1))
	P8_COL((DI), Z5)
	P8_BLOCK(R12, (R12)(DX*1))
	P8_COL((DI), Z6)
	P8_BLOCK(R14, (R14)(DX*1))
	P8_COL((DI), Z7)
	ADDQ $512, SI
	ADDQ $512, R11
	ADDQ $512, R12
	ADDQ $512, R14
	SUBQ $480, DX
	ADDQ $40, DI
	DECQ CX
	JNZ  p8r4_block

	LEAQ    (R8)(BX*2), AX
	VMOVUPS Z0, (R8)
	VMOVUPS Z5, (R8)(BX*1)
	VMOVUPS Z6, (AX)
	VMOVUPS Z7, (AX)(BX*1)
	PACKED_NEXT_PANEL(p8r4_panel)
	VZEROUPPER
	RET
