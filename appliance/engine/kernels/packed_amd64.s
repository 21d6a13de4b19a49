//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Kernels for packed Q4_0 weights (packed.go): 16 rows per 512-bit register, one row per
// 32-bit lane, against prepared activations (40 bytes a block: 32 quants, the scale as
// float32, -8 times the quant sum). Per block, the low nibbles (masked in place) and the high
// nibbles (masked in place: 16 times their value) meet the broadcast activation quants in
// VPDPBUSD, into two sums: the first starts at -8·Σy (the nibble offset), the second, a
// multiple of 16, is shifted down exactly and added; the block's exact integer dot is
// converted to float and added with one FMA by dx·yd. That is dotPackedQ4_0's arithmetic.
//
// Arguments: w *byte (the first panel), stride int (bytes per panel), panels int, nb int
// (blocks per row), y *byte (prepared activations), ... .

// One column: acc += float(exact dot) · (dx in Z4 times yd), the block's activations at base,
// the nibbles in Z8-Z15.
#define P16_COL(base, acc) \
	VMULPS.BCST   32 base, Z4, Z20; \
	VPBROADCASTD  36 base, Z21; \
	VPXORD        Z22, Z22, Z22; \
	VPDPBUSD.BCST 0 base, Z8, Z21; \
	VPDPBUSD.BCST 16 base, Z9, Z22; \
	VPDPBUSD.BCST 4 base, Z10, Z21; \
	VPDPBUSD.BCST 20 base, Z11, Z22; \
	VPDPBUSD.BCST 8 base, Z12, Z21; \
	VPDPBUSD.BCST 24 base, Z13, Z22; \
	VPDPBUSD.BCST 12 base, Z14, Z21; \
	VPDPBUSD.BCST 28 base, Z15, Z22; \
	VPSRAD        $4, Z22, Z22; \
	VPADDD        Z22, Z21, Z21; \
	VCVTDQ2PS     Z21, Z21; \
	VFMADD231PS   Z20, Z21, acc

// The block whose quants are at ptr and scales at sc: Z4 = dx, Z8-Z15 = the nibbles of groups
// 0-3 (Z1 scratch).
#define P16_UNPACK(ptr, sc) \
	VCVTPH2PS sc, Z4; \
	PACKED_SPLIT(0, ptr, Z1, Z8, Z9); \
	PACKED_SPLIT(64, ptr, Z1, Z10, Z11); \
	PACKED_SPLIT(128, ptr, Z1, Z12, Z13); \
	PACKED_SPLIT(192, ptr, Z1, Z14, Z15)

// The block at SI (quants) and R11 (scales).
#define P16_BLOCK P16_UNPACK(SI, (R11))

// The prefetches of the many-column kernels, eight blocks ahead: the block's four lines of
// quants, and the line of scales at the same distance (the scales of two blocks share a line,
// so every line is fetched twice: simpler than alternating, and cheap).
#define PF16_DIST 2048
#define P16_PREFETCH \
	PREFETCHT0 PF16_DIST(SI); \
	PREFETCHT0 PF16_DIST+64(SI); \
	PREFETCHT0 PF16_DIST+128(SI); \
	PREFETCHT0 PF16_DIST+192(SI); \
	PREFETCHT0 PF16_DIST/8(R11)

// Panel start in R9: SI = its quants, R11 = its scales (after nb·256 bytes), CX = nb.
#define P16_PANEL \
	MOVQ R9, SI; \
	MOVQ nb+24(FP), CX; \
	MOVQ CX, R11; \
	SHLQ $8, R11; \
	ADDQ R9, R11

// func dotPackedQ4_0VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ4_0VNNI(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), R9
	MOVQ panels+16(FP), R10
	MOVQ out+40(FP), R8
	PACKED_NIBBLE_MASKS

p16_panel:
	P16_PANEL
	MOVQ   y+32(FP), DI
	VPXORD Z0, Z0, Z0

p16_block:
	P16_BLOCK
	P16_COL((DI), Z0)
	ADDQ $256, SI
	ADDQ $32, R11
	ADDQ $40, DI
	DECQ CX
	JNZ  p16_block

	VMOVUPS Z0, (R8)
	PACKED_NEXT_PANEL(p16_panel)
	VZEROUPPER
	RET

// func dotPackedQ4_0x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// Four prepared activation rows ystride bytes apart; column c's results at out + c·ostride
// bytes. Each column's arithmetic is that of dotPackedQ4_0VNNI.
TEXT ·dotPackedQ4_0x4VNNI(SB), NOSPLIT, $0-64
	PACKED_COLS_ARGS

p16x4_panel:
	P16_PANEL
	MOVQ   y+32(FP), DI
	LEAQ   (DI)(DX*2), R14
	ZERO_Z4(Z0, Z5, Z6, Z7)

p16x4_block:
	P16_PREFETCH
	P16_BLOCK
	P16_COL((DI), Z0)
	P16_COL((DI)(DX*1), Z5)
	P16_COL((R14), Z6)
	P16_COL((R14)(DX*1), Z7)
	ADDQ $256, SI
	ADDQ $32, R11
	ADDQ $40, DI
	ADDQ $40, R14
	DECQ CX
	JNZ  p16x4_block

	PACKED_STORE4(Z0, Z5, Z6, Z7)
	PACKED_NEXT_PANEL(p16x4_panel)
	VZEROUPPER
	RET

// func dotPackedQ4_0x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// dotPackedQ4_0x4VNNI for eight prepared activation rows: at (DI), (DI)(DX*1), (DI)(DX*2),
// (R13), (R13)(DX*1), (R13)(DX*2), (R14), (R14)(DX*1) (R13 = DI + 3·DX, R14 = DI + 6·DX).
TEXT ·dotPackedQ4_0x8VNNI(SB), NOSPLIT, $0-64
	PACKED_COLS_ARGS

p16x8_panel:
	P16_PANEL
	PACKED_COLS8_ROWS(R13, R14)
	ZERO_Z4(Z0, Z5, Z6, Z7)
	ZERO_Z4(Z16, Z17, Z18, Z19)

p16x8_block:
	P16_PREFETCH
	P16_BLOCK
	P16_COL((DI), Z0)
	P16_COL((DI)(DX*1), Z5)
	P16_COL((DI)(DX*2), Z6)
	P16_COL((R13), Z7)
	P16_COL((R13)(DX*1), Z16)
	P16_COL((R13)(DX*2), Z17)
	P16_COL((R14), Z18)
	P16_COL((R14)(DX*1), Z19)
	ADDQ $256, SI
	ADDQ $32, R11
	ADDQ $40, DI
	ADDQ $40, R13
	ADDQ $40, R14
	DECQ CX
	JNZ  p16x8_block

	PACKED_STORE8(Z0, Z5, Z6, Z7, Z16, Z17, Z18, Z19)
	PACKED_NEXT_PANEL(p16x8_panel)
	VZEROUPPER
	RET

// One block of the panel stream whose quants are at ptr (its scales DX bytes on): acc += its
// column. The quants four blocks on are asked into the level-2 cache: decode at one and two
// threads (exo bench, synth llama-3.2-1b Q4_0, four rounds alternating with the kernel
// without) ran 1-21% faster in every round; PREFETCHT0 made the kernel slower.
#define P16_STREAM(ptr, acc) \
	PREFETCHT1 1024(ptr); \
	PREFETCHT1 1088(ptr); \
	PREFETCHT1 1152(ptr); \
	PREFETCHT1 1216(ptr); \
	P16_UNPACK(ptr, (ptr)(DX*1)); \
	P16_COL((DI), acc)

// func dotPackedQ4_0Rows4VNNI(w *byte, stride int, count int, dist int, nb int, y *byte, out *float32)
// dotPackedQ4_0VNNI for four runs of count panels, dist panels apart (panel k·dist + p, its
// results at out + 64(k·dist + p) bytes), walked as four memory streams in step. DX is the
// distance from a block's quants to its scales: 256·(nb - b) + 32·b for block b, so it drops
// by 224 a block.
TEXT ·dotPackedQ4_0Rows4VNNI(SB), NOSPLIT, $0-56
	MOVQ  w+0(FP), R9
	MOVQ  count+16(FP), R10
	MOVQ  dist+24(FP), R13
	MOVQ  R13, BX
	SHLQ  $6, BX
	IMULQ stride+8(FP), R13
	MOVQ  out+48(FP), R8
	PACKED_NIBBLE_MASKS

p16r4_panel:
	MOVQ   R9, SI
	LEAQ   (SI)(R13*1), R11
	LEAQ   (R11)(R13*1), R12
	LEAQ   (R12)(R13*1), R14
	MOVQ   nb+32(FP), CX
	MOVQ   CX, DX
	SHLQ   $8, DX
	MOVQ   y+40(FP), DI
	ZERO_Z4(Z0, Z5, Z6, Z7)

p16r4_block:
	P16_STREAM(SI, Z0)
	P16_STREAM(R11, Z5)
	P16_STREAM(R12, Z6)
	P16_STREAM(R14, Z7)
	ADDQ $256, SI
	ADDQ $256, R11
	ADDQ $256, R12
	ADDQ $256, R14
	SUBQ $224, DX
	ADDQ $40, DI
	DECQ CX
	JNZ  p16r4_block

	LEAQ    (R8)(BX*2), AX
	VMOVUPS Z0, (R8)
	VMOVUPS Z5, (R8)(BX*1)
	VMOVUPS Z6, (AX)
	VMOVUPS Z7, (AX)(BX*1)
	ADDQ    $64, R8
	ADDQ    stride+8(FP), R9
	DECQ    R10
	JNZ     p16r4_panel
	VZEROUPPER
	RET
