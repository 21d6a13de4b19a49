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
#define P16_COL(base, acc) P16_COL_HI(base, acc, $4)

// P16_COL with the high-element values hi times 2^sh in Z9, Z11, Z13, Z15 (Q4_0: the
// nibbles in place, 16 times their value; Q5_0: 8 times).
#define P16_COL_HI(base, acc, sh) \
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
	VPSRAD        sh, Z22, Z22; \
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

#define P16_NEXT_BLOCK \
	ADDQ $256, SI; \
	ADDQ $32, R11

#define P16_DX_INIT \
	MOVQ CX, DX; \
	SHLQ $8, DX

// Kernels for packed Q5_0 weights (packedq50.go): the Q4_0 kernels' structure and column
// arithmetic, with 320-byte blocks (the quants, then the rows' fifth bits, rearranged) and
// activations prepared with -16 times their quant sum. Each quant's five bits are put
// together in a byte: a low element's value as it is (nibble | fifth bit·16), a high
// element's times 8 (nibble·8 | fifth bit·128), and the second sum is shifted down by 3.
// Every fifth bit is found by one shift of the bits' register common to all bytes, whose
// result only the byte's own bits reach (spreadQ5Bits).

// Z28 = 0x80 and Z29 = 0x10 in every byte (beside the nibble masks).
#define P5_MASKS \
	MOVL         $0x80808080, AX; \
	VPBROADCASTD AX, Z28; \
	MOVL         $0x10101010, AX; \
	VPBROADCASTD AX, Z29

// Group off(ptr) into lo (low elements) and hi (high elements, times 8), their fifth bits
// from slo (bit 4 of each byte) and shi (bit 7).
#define P5_SPLIT(off, ptr, slo, shi, lo, hi) \
	VMOVDQU64  off(ptr), Z1; \
	VPANDD     Z30, Z1, lo; \
	VPTERNLOGD $0xf8, Z29, slo, lo; \
	VPANDD     Z31, Z1, hi; \
	VPSRLW     $1, hi, hi; \
	VPTERNLOGD $0xf8, Z28, shi, hi

// The block whose quants are at ptr (its fifth bits 256 bytes on) and scales at sc: Z4 = dx,
// Z8-Z15 as for P16_COL_HI(..., $3). Group q's low elements need bit 2q of each byte at bit 4,
// its high elements bit 2q+1 at bit 7: shifts of 4, 2, 0, -2 and 6, 4, 2, 0.
#define P5_UNPACK(ptr, sc) \
	VCVTPH2PS sc, Z4; \
	VMOVDQU64 256(ptr), Z3; \
	VPSLLW    $6, Z3, Z23; \
	VPSLLW    $4, Z3, Z24; \
	VPSLLW    $2, Z3, Z25; \
	VPSRLW    $2, Z3, Z26; \
	P5_SPLIT(0, ptr, Z24, Z23, Z8, Z9); \
	P5_SPLIT(64, ptr, Z25, Z24, Z10, Z11); \
	P5_SPLIT(128, ptr, Z3, Z25, Z12, Z13); \
	P5_SPLIT(192, ptr, Z26, Z3, Z14, Z15)

#define P5_COL(base, acc) P16_COL_HI(base, acc, $3)

// The block at SI (quants) and R11 (scales).
#define P5_BLOCK P5_UNPACK(SI, (R11))

// The many-column kernels' prefetches, eight blocks ahead (see P16_PREFETCH).
#define PF5_DIST 2560
#define P5_PREFETCH \
	PREFETCHT0 PF5_DIST(SI); \
	PREFETCHT0 PF5_DIST+64(SI); \
	PREFETCHT0 PF5_DIST+128(SI); \
	PREFETCHT0 PF5_DIST+192(SI); \
	PREFETCHT0 PF5_DIST+256(SI); \
	PREFETCHT0 256(R11)

#define P5_NEXT_BLOCK \
	ADDQ $320, SI; \
	ADDQ $32, R11

#define P5_DX_INIT IMUL3Q $320, CX, DX

// One block of the panel stream whose quants are at ptr (its scales DX bytes on), as
// P16_STREAM: acc += its column, the quants four blocks on asked into the level-2 cache.
#define P5_STREAM(ptr, acc) \
	PREFETCHT1 1280(ptr); \
	PREFETCHT1 1344(ptr); \
	PREFETCHT1 1408(ptr); \
	PREFETCHT1 1472(ptr); \
	PREFETCHT1 1536(ptr); \
	P5_UNPACK(ptr, (ptr)(DX*1)); \
	P5_COL((DI), acc)

// Panel start in R9: SI = its quants, R11 = its scales (after nb·320 bytes), CX = nb (Q5_0).
#define P5_PANEL \
	MOVQ    R9, SI; \
	MOVQ    nb+24(FP), CX; \
	IMUL3Q  $320, CX, R11; \
	ADDQ    R9, R11

// The kernels of both types share their loops; a type brings its constants (masks, beside
// the nibble masks), panel start (panel), block unpacking (block), column (col), block advance
// (next), and, for the many-column kernels, prefetches (pf).
#define NO_MASKS

// func dotPacked…VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
#define PACKED_DOT1(masks, panel, block, col, next, plab, blab) \
	MOVQ w+0(FP), R9; \
	MOVQ panels+16(FP), R10; \
	MOVQ out+40(FP), R8; \
	PACKED_NIBBLE_MASKS; \
	masks; \
plab: \
	panel; \
	MOVQ   y+32(FP), DI; \
	VPXORD Z0, Z0, Z0; \
blab: \
	block; \
	col((DI), Z0); \
	next; \
	ADDQ $40, DI; \
	DECQ CX; \
	JNZ  blab; \
	VMOVUPS Z0, (R8); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// func dotPacked…x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// Four prepared activation rows ystride bytes apart; column c's results at out + c·ostride
// bytes. Each column's arithmetic is that of the one-column kernel.
#define PACKED_DOT4(masks, panel, pf, block, col, next, plab, blab) \
	PACKED_COLS_ARGS; \
	masks; \
plab: \
	panel; \
	MOVQ   y+32(FP), DI; \
	LEAQ   (DI)(DX*2), R14; \
	ZERO_Z4(Z0, Z5, Z6, Z7); \
blab: \
	pf; \
	block; \
	col((DI), Z0); \
	col((DI)(DX*1), Z5); \
	col((R14), Z6); \
	col((R14)(DX*1), Z7); \
	next; \
	ADDQ $40, DI; \
	ADDQ $40, R14; \
	DECQ CX; \
	JNZ  blab; \
	PACKED_STORE4(Z0, Z5, Z6, Z7); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// func dotPacked…x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// PACKED_DOT4 for eight prepared activation rows: at (DI), (DI)(DX*1), (DI)(DX*2), (R13),
// (R13)(DX*1), (R13)(DX*2), (R14), (R14)(DX*1) (R13 = DI + 3·DX, R14 = DI + 6·DX).
#define PACKED_DOT8(masks, panel, pf, block, col, next, plab, blab) \
	PACKED_COLS_ARGS; \
	masks; \
plab: \
	panel; \
	PACKED_COLS8_ROWS(R13, R14); \
	ZERO_Z4(Z0, Z5, Z6, Z7); \
	ZERO_Z4(Z16, Z17, Z18, Z19); \
blab: \
	pf; \
	block; \
	col((DI), Z0); \
	col((DI)(DX*1), Z5); \
	col((DI)(DX*2), Z6); \
	col((R13), Z7); \
	col((R13)(DX*1), Z16); \
	col((R13)(DX*2), Z17); \
	col((R14), Z18); \
	col((R14)(DX*1), Z19); \
	next; \
	ADDQ $40, DI; \
	ADDQ $40, R13; \
	ADDQ $40, R14; \
	DECQ CX; \
	JNZ  blab; \
	PACKED_STORE8(Z0, Z5, Z6, Z7, Z16, Z17, Z18, Z19); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// func dotPacked…Rows4VNNI(w *byte, stride int, count int, dist int, nb int, y *byte, out *float32)
// The one-column kernel for four runs of count panels, dist panels apart (panel k·dist + p,
// its results at out + 64(k·dist + p) bytes), walked as four memory streams in step (stream:
// one block of the stream at its argument). DX is the distance from a block's quants to its
// scales: nb·size at the first block (dxinit sets it from CX = nb), less drop a block.
#define PACKED_ROWS4(masks, dxinit, stream, size, drop, plab, blab) \
	MOVQ  w+0(FP), R9; \
	MOVQ  count+16(FP), R10; \
	MOVQ  dist+24(FP), R13; \
	MOVQ  R13, BX; \
	SHLQ  $6, BX; \
	IMULQ stride+8(FP), R13; \
	MOVQ  out+48(FP), R8; \
	PACKED_NIBBLE_MASKS; \
	masks; \
plab: \
	MOVQ   R9, SI; \
	LEAQ   (SI)(R13*1), R11; \
	LEAQ   (R11)(R13*1), R12; \
	LEAQ   (R12)(R13*1), R14; \
	MOVQ   nb+32(FP), CX; \
	dxinit; \
	MOVQ   y+40(FP), DI; \
	ZERO_Z4(Z0, Z5, Z6, Z7); \
blab: \
	stream(SI, Z0); \
	stream(R11, Z5); \
	stream(R12, Z6); \
	stream(R14, Z7); \
	ADDQ size, SI; \
	ADDQ size, R11; \
	ADDQ size, R12; \
	ADDQ size, R14; \
	SUBQ drop, DX; \
	ADDQ $40, DI; \
	DECQ CX; \
	JNZ  blab; \
	LEAQ    (R8)(BX*2), AX; \
	VMOVUPS Z0, (R8); \
	VMOVUPS Z5, (R8)(BX*1); \
	VMOVUPS Z6, (AX); \
	VMOVUPS Z7, (AX)(BX*1); \
	ADDQ    $64, R8; \
	ADDQ    stride+8(FP), R9; \
	DECQ    R10; \
	JNZ     plab; \
	VZEROUPPER; \
	RET

TEXT ·dotPackedQ4_0VNNI(SB), NOSPLIT, $0-48
	PACKED_DOT1(NO_MASKS, P16_PANEL, P16_BLOCK, P16_COL, P16_NEXT_BLOCK, p16_panel, p16_block)

TEXT ·dotPackedQ4_0x4VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT4(NO_MASKS, P16_PANEL, P16_PREFETCH, P16_BLOCK, P16_COL, P16_NEXT_BLOCK, p16x4_panel, p16x4_block)

TEXT ·dotPackedQ4_0x8VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT8(NO_MASKS, P16_PANEL, P16_PREFETCH, P16_BLOCK, P16_COL, P16_NEXT_BLOCK, p16x8_panel, p16x8_block)

// DX drops by 224 a block: 256·(nb - b) + 32·b for block b.
TEXT ·dotPackedQ4_0Rows4VNNI(SB), NOSPLIT, $0-56
	PACKED_ROWS4(NO_MASKS, P16_DX_INIT, P16_STREAM, $256, $224, p16r4_panel, p16r4_block)

TEXT ·dotPackedQ5_0VNNI(SB), NOSPLIT, $0-48
	PACKED_DOT1(P5_MASKS, P5_PANEL, P5_BLOCK, P5_COL, P5_NEXT_BLOCK, p5_panel, p5_block)

TEXT ·dotPackedQ5_0x4VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT4(P5_MASKS, P5_PANEL, P5_PREFETCH, P5_BLOCK, P5_COL, P5_NEXT_BLOCK, p5x4_panel, p5x4_block)

TEXT ·dotPackedQ5_0x8VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT8(P5_MASKS, P5_PANEL, P5_PREFETCH, P5_BLOCK, P5_COL, P5_NEXT_BLOCK, p5x8_panel, p5x8_block)

// DX drops by 288 a block: 320·(nb - b) + 32·b for block b.
TEXT ·dotPackedQ5_0Rows4VNNI(SB), NOSPLIT, $0-56
	PACKED_ROWS4(P5_MASKS, P5_DX_INIT, P5_STREAM, $320, $288, p5r4_panel, p5r4_block)
