//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Kernels for packed Q3_K weights (packedq3k.go): 16 rows per 512-bit register, one row per
// 32-bit lane, against prepared activations (384 bytes a super-block: the 256 quants, the scale
// as float32, the sixteen int32 offset terms 4·bsum_j). Each 64-byte vector of quant bytes of
// half n gives four vectors of unsigned 3-bit quants: field j (bits 2j..2j+1) shifted down and
// masked, with high bit 4n+j of the high-bit bytes brought to bit 2 and put in by one
// VPTERNLOGD; each meets its four broadcast activation quants in VPDPBUSD. Per quad (half n,
// g = 4h..4h+3: sub-blocks 8n+2j+h) the four sub-block sums are offset, scaled by the 16 rows'
// scales (VPMULLD) and added; then one FMA by d·yd: dotPackedQ3K's arithmetic. The integer
// sums are exact, so their order does not matter. Every 16-bit shift here moves the bits
// wanted within their byte, and the masks drop what crosses from the other byte.
//
// Registers: Z31 = 0x03 and Z30 = 0x04 in every byte; Z1 = quant bytes, Z2 = high-bit bytes,
// Z3 = those shifted, Z5 = the assembled quants, Z6 scratch, Z8 scales and d.

#define Q3_MASKS \
	MOVL         $0x03030303, AX; \
	VPBROADCASTD AX, Z31; \
	MOVL         $0x04040404, AX; \
	VPBROADCASTD AX, Z30

// The high bits shifted into Z3, left or right by k.
#define Q3_HL(k) VPSLLW k, Z2, Z3
#define Q3_HR(k) VPSRLW k, Z2, Z3

// Z5 = the quants of one field: wop takes the field into Z5, hop shifts the high bits so that
// hreg holds the field's at bit 2.
#define Q3_FIELD(wop, hop, hreg) \
	wop; \
	hop; \
	VPTERNLOGD $0xF8, Z30, hreg, Z5

// The group whose quant bytes are at off(SI) and high-bit bytes at hoff(SI): its four fields,
// each handed to its dot (d0..d3, given the activations' offset). h0..h3 and r2 are the half's
// shifts of the high bits: bit 4n+j to bit 2.
#define Q3_GROUP(off, hoff, yoff, h0, h1, h2, r2, h3, d0, d1, d2, d3) \
	VMOVDQU64 off(SI), Z1; \
	VMOVDQU64 hoff(SI), Z2; \
	Q3_FIELD(PK16_W0, h0, Z3); \
	d0(yoff); \
	Q3_FIELD(PK16_WK($2), h1, Z3); \
	d1(yoff+32); \
	Q3_FIELD(PK16_WK($4), h2, r2); \
	d2(yoff+64); \
	Q3_FIELD(PK16_WK($6), h3, Z3); \
	d3(yoff+96)

// Group g = 4h+k of half 0 and of half 1 (offsets: q3kHOff, q3kWOff).
#define Q3_G0(h, k, d0, d1, d2, d3) Q3_GROUP(896*h+128*k+64, 896*h+128*k, 16*h+4*k, Q3_HL($2), Q3_HL($1), EMPTY, Z2, Q3_HR($1), d0, d1, d2, d3)
#define Q3_G1(h, k, d0, d1, d2, d3) Q3_GROUP(896*h+576+64*k, 896*h+128*k, 128+16*h+4*k, Q3_HR($2), Q3_HR($3), Q3_HR($4), Z3, Q3_HR($5), d0, d1, d2, d3)

// The scales of sub-block 8n+2j+h (q3kScOff) into Z8.
#define Q3_SCALES(n, j, h) VPMOVSXBD 896*h+512+320*n+16*j(SI), Z8

// One column: the quad of half n (G: Q3_G0 or Q3_G1) and g = 4h..4h+3, sub-blocks 8n+2j+h, into
// the super-block total Z14. The quads go h = 0, 1 and in each n = 0, 1: the layout's order.
#define Q3_QUAD1(G, n, h) \
	ZERO_Z4(Z10, Z11, Z12, Z13); \
	G(h, 0, PK16_D1_0, PK16_D1_1, PK16_D1_2, PK16_D1_3); \
	G(h, 1, PK16_D1_0, PK16_D1_1, PK16_D1_2, PK16_D1_3); \
	G(h, 2, PK16_D1_0, PK16_D1_1, PK16_D1_2, PK16_D1_3); \
	G(h, 3, PK16_D1_0, PK16_D1_1, PK16_D1_2, PK16_D1_3); \
	Q3_SCALES(n, 0, h); \
	PACKED_SC(8*n+h, (DI), Z10, Z14); \
	Q3_SCALES(n, 1, h); \
	PACKED_SC(8*n+2+h, (DI), Z11, Z14); \
	Q3_SCALES(n, 2, h); \
	PACKED_SC(8*n+4+h, (DI), Z12, Z14); \
	Q3_SCALES(n, 3, h); \
	PACKED_SC(8*n+6+h, (DI), Z13, Z14)

// Sub-block 8n+2j+h's sums (field j of the four columns) into the columns' totals.
#define Q3_SC4(n, j, h, a0, a1, a2, a3) \
	Q3_SCALES(n, j, h); \
	PACKED_SC(8*n+2*j+h, (DI), a0, Z13); \
	PACKED_SC(8*n+2*j+h, (DI)(DX*1), a1, Z18); \
	PACKED_SC(8*n+2*j+h, (R14), a2, Z23); \
	PACKED_SC(8*n+2*j+h, (R14)(DX*1), a3, Z7)

#define Q3_QUAD4(G, n, h) \
	ZERO_Z4(Z9, Z10, Z11, Z12); \
	ZERO_Z4(Z14, Z15, Z16, Z17); \
	ZERO_Z4(Z19, Z20, Z21, Z22); \
	ZERO_Z4(Z24, Z25, Z26, Z27); \
	G(h, 0, PK16_D4_0, PK16_D4_1, PK16_D4_2, PK16_D4_3); \
	G(h, 1, PK16_D4_0, PK16_D4_1, PK16_D4_2, PK16_D4_3); \
	G(h, 2, PK16_D4_0, PK16_D4_1, PK16_D4_2, PK16_D4_3); \
	G(h, 3, PK16_D4_0, PK16_D4_1, PK16_D4_2, PK16_D4_3); \
	Q3_SC4(n, 0, h, Z9, Z14, Z19, Z24); \
	Q3_SC4(n, 1, h, Z10, Z15, Z20, Z25); \
	Q3_SC4(n, 2, h, Z11, Z16, Z21, Z26); \
	Q3_SC4(n, 3, h, Z12, Z17, Z22, Z27)

// How far ahead the kernels prefetch: the super-block after next, from the next one's last
// line, eight lines a quad (29 make a super-block). The hardware prefetcher alone left one
// core's stream of 256 MiB at 16 GB/s in one column and 11 in four, against 24 and 20 with it
// (BenchmarkPackedKernels, Zen 4).
#define PF3_DIST 2*1856-64

// The four quads of a super-block (quad: Q3_QUAD1 or Q3_QUAD4), each after its prefetches
// (pf of the quad's offset).
#define Q3_QUADS_WITH(pf, quad) \
	pf(0); \
	quad(Q3_G0, 0, 0); \
	pf(512); \
	quad(Q3_G1, 1, 0); \
	pf(1024); \
	quad(Q3_G0, 0, 1); \
	pf(1536); \
	quad(Q3_G1, 1, 1)

#define Q3_PF(off) PACKED_PREFETCH8(PF3_DIST+off, SI)
#define Q3_QUADS(quad) Q3_QUADS_WITH(Q3_PF, quad)

// The four-column kernel's prefetches of a quad's lines: far and near (as packed_amd64.s's
// P16X4_PREFETCH), six super-blocks on into the level-2 cache and one on into the level-1
// cache: 27.5 against 28.9 ns a super-block and column over 256 MiB at one thread, 27.75 on
// cached weights (two on for the near ones: 27.8).
#define Q3X4_PF(off) \
	PACKED_PREFETCH8_L2(6*1856-64+off, SI); \
	PACKED_PREFETCH8(1856-64+off, SI)

// One column's super-block.
#define Q3_SB1 \
	VPXORD Z14, Z14, Z14; \
	Q3_QUADS(Q3_QUAD1); \
	VCVTPH2PS 1792(SI), Z8; \
	PACKED_FMA((DI), Z14, Z0)

// Four columns' super-block.
#define Q3_SB4 \
	ZERO_Z4(Z13, Z18, Z23, Z7); \
	Q3_QUADS_WITH(Q3X4_PF, Q3_QUAD4); \
	VCVTPH2PS 1792(SI), Z8; \
	PACKED_FMA4(0, (DI), Z13); \
	PACKED_FMA4(1, (DI)(DX*1), Z18); \
	PACKED_FMA4(2, (R14), Z23); \
	PACKED_FMA4(3, (R14)(DX*1), Z7)

// func dotPackedQ3KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ3KVNNI(SB), NOSPLIT, $0-48
	PACKED_SB1(Q3_MASKS, Q3_SB1, $1856, $384, q3_panel, q3_block)

// func dotPackedQ3Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// Four prepared activation rows ystride bytes apart; column c's results at out + c·ostride
// bytes, its float sums meanwhile in the frame. Each column's arithmetic is that of
// dotPackedQ3KVNNI.
TEXT ·dotPackedQ3Kx4VNNI(SB), NOSPLIT, $256-64
	PACKED_SB4(Q3_MASKS, Q3_SB4, $1856, $384, q3x4_panel, q3x4_block)

// Eight columns (activations as PK8_DP's). The four sums of a quad a column do not fit
// beside eight totals, so each quad is taken in two passes, fields 0-1 and then 2-3, each
// group's vectors read again from the level-1 cache. Registers: Z0-Z7 the columns' totals,
// Z16-Z23 and Z24-Z31 the pass's two sums of each column, Z8, Z9 their scales, Z10 = quant
// bytes, Z11 = high-bit bytes, Z12 = those shifted, Z13 = the assembled quants; the masks are
// broadcast from memory; the float sums live in the frame (PK8_FMA_FRAME).
#define Q3X8_W0 VPANDD.BCST q3m03<>(SB), Z10, Z13
#define Q3X8_WK(k) \
	VPSRLW      k, Z10, Z13; \
	VPANDD.BCST q3m03<>(SB), Z13, Z13
#define Q3X8_HL(k) VPSLLW k, Z11, Z12
#define Q3X8_HR(k) VPSRLW k, Z11, Z12

#define Q3X8_FIELD(wop, hop, hreg) \
	wop; \
	hop; \
	VPTERNLOGD.BCST $0xF8, q3m04<>(SB), hreg, Z13

#define Q3X8_A(yoff) PK8_DP(yoff, Z13, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23)
#define Q3X8_B(yoff) PK8_DP(yoff, Z13, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31)

// Fields 0 and 1 of a group (Q3_GROUP's arguments), then fields 2 and 3.
#define Q3X8_FIELDS01(off, hoff, yoff, h0, h1) \
	VMOVDQU64 off(SI), Z10; \
	VMOVDQU64 hoff(SI), Z11; \
	Q3X8_FIELD(Q3X8_W0, h0, Z12); \
	Q3X8_A(yoff); \
	Q3X8_FIELD(Q3X8_WK($2), h1, Z12); \
	Q3X8_B(yoff+32)

#define Q3X8_FIELDS23(off, hoff, yoff, h2, r2, h3) \
	VMOVDQU64 off(SI), Z10; \
	VMOVDQU64 hoff(SI), Z11; \
	Q3X8_FIELD(Q3X8_WK($4), h2, r2); \
	Q3X8_A(yoff+64); \
	Q3X8_FIELD(Q3X8_WK($6), h3, Z12); \
	Q3X8_B(yoff+96)

// Q3_G0's and Q3_G1's groups in the two passes.
#define Q3X8_G0A(h, k) Q3X8_FIELDS01(896*h+128*k+64, 896*h+128*k, 16*h+4*k, Q3X8_HL($2), Q3X8_HL($1))
#define Q3X8_G0B(h, k) Q3X8_FIELDS23(896*h+128*k+64, 896*h+128*k, 16*h+4*k, EMPTY, Z11, Q3X8_HR($1))
#define Q3X8_G1A(h, k) Q3X8_FIELDS01(896*h+576+64*k, 896*h+128*k, 128+16*h+4*k, Q3X8_HR($2), Q3X8_HR($3))
#define Q3X8_G1B(h, k) Q3X8_FIELDS23(896*h+576+64*k, 896*h+128*k, 128+16*h+4*k, Q3X8_HR($4), Z12, Q3X8_HR($5))

// The end of a pass: each column's two sums (started at their offset terms) times their
// rows' scales (Z8, Z9), added to its total.
// A pass over a quad's four groups (G) for its sub-blocks ja and jb (fields 2p and 2p+1, their
// scales from 32p on): the sums start at their offset terms (PK8_START) and end scaled in the
// totals (PK8_SCALE_SUMS). A quad (Q3_QUAD4's) is two passes, GA's and GB's.
#define Q3X8_PASS(G, n, h, p) \
	PK8_START(8*n+4*p+h, 8*n+4*p+2+h); \
	G(h, 0); \
	G(h, 1); \
	G(h, 2); \
	G(h, 3); \
	VPMOVSXBD 896*h+512+320*n+32*p(SI), Z8; \
	VPMOVSXBD 896*h+512+320*n+32*p+16(SI), Z9; \
	PK8_SCALE_SUMS

#define Q3X8_QUAD(GA, GB, n, h) \
	Q3X8_PASS(GA, n, h, 0); \
	Q3X8_PASS(GB, n, h, 1)

#define Q3X8_QUAD_G0(n, h) Q3X8_QUAD(Q3X8_G0A, Q3X8_G0B, n, h)
#define Q3X8_QUAD_G1(n, h) Q3X8_QUAD(Q3X8_G1A, Q3X8_G1B, n, h)

// Eight columns' super-block.
#define Q3X8_SB \
	PACKED_PREFETCH8(PF3_DIST, SI); \
	Q3X8_QUAD_G0(0, 0); \
	PACKED_PREFETCH8(PF3_DIST+512, SI); \
	Q3X8_QUAD_G1(1, 0); \
	PACKED_PREFETCH8(PF3_DIST+1024, SI); \
	Q3X8_QUAD_G0(0, 1); \
	PACKED_PREFETCH8(PF3_DIST+1536, SI); \
	Q3X8_QUAD_G1(1, 1); \
	VCVTPH2PS 1792(SI), Z8; \
	PK8_FMA_ALL(PK8_FMA_FRAME)

// func dotPackedQ3Kx8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ3Kx8VNNI(SB), NOSPLIT, $512-64
	PACKED_SB8(EMPTY, Q3X8_SB, 1856, 384, q3x8_panel, q3x8_block)

DATA q3m03<>+0(SB)/4, $0x03030303
GLOBL q3m03<>(SB), RODATA|NOPTR, $4
DATA q3m04<>+0(SB)/4, $0x04040404
GLOBL q3m04<>(SB), RODATA|NOPTR, $4

// AVX2 (PA_SB_DOT1, PA_SB_DOT4): packed Q3_K, each field of a quant vector (bits 2j..2j+1)
// shifted down and masked, its high bit brought to bit 2 and ORed in: unsigned 3-bit quants u,
// whose products sum as PA_DOT's; the offsets are 4·bsum_j. Registers as PA_DOT's callers
// have them: Y4-Y7 the quad's scale words (fields 0-3), Y8 the group's quant bytes, Y9 its
// high-bit bytes, Y10 a field's quants, Y11 scratch; the masks from memory.

// Field j (a shift of the quant bytes into Y10) and its high bits (a shift of the high-bit
// bytes into Y11, bit 4n+j to bit 2).
#define PA3_W0 VPAND pa3Field<>(SB), Y8, Y10
#define PA3_WK(k) VPSRLW k, Y8, Y10; VPAND pa3Field<>(SB), Y10, Y10
#define PA3_H0 VPAND pa3High<>(SB), Y9, Y11
#define PA3_HL(k) VPSLLW k, Y9, Y11; VPAND pa3High<>(SB), Y11, Y11
#define PA3_HR(k) VPSRLW k, Y9, Y11; VPAND pa3High<>(SB), Y11, Y11
#define PA3_FIELD(w, hb) w; hb; VPOR Y11, Y10, Y10

// The group whose quant bytes are at woff and high-bit bytes at hoff (half h of the rows),
// its activations from yoff: each field's products for the columns cols.
#define PA3_GROUP(cols, woff, hoff, yoff, h, h0, h1, h2, h3) \
	VMOVDQU woff+32*h(SI), Y8; \
	VMOVDQU hoff+32*h(SI), Y9; \
	PA3_FIELD(PA3_W0, h0); \
	cols(yoff, Y10, Y4, Y1); \
	PA3_FIELD(PA3_WK($2), h1); \
	cols(yoff+32, Y10, Y5, Y2); \
	PA3_FIELD(PA3_WK($4), h2); \
	cols(yoff+64, Y10, Y6, Y3); \
	PA3_FIELD(PA3_WK($6), h3); \
	cols(yoff+96, Y10, Y7, Y14)

// Group g = 4q+k of half 0 and of half 1 (offsets: q3kHOff, q3kWOff).
#define PA3_G0(cols, q, k, h) PA3_GROUP(cols, 896*q+128*k+64, 896*q+128*k, 16*q+4*k, h, PA3_HL($2), PA3_HL($1), PA3_H0, PA3_HR($1))
#define PA3_G1(cols, q, k, h) PA3_GROUP(cols, 896*q+576+64*k, 896*q+128*k, 128+16*q+4*k, h, PA3_HR($2), PA3_HR($3), PA3_HR($4), PA3_HR($5))

// The quad of half n (G: PA3_G0 or PA3_G1) and g = 4q..4q+3: sub-blocks 8n+2j+q, whose
// scales are at q3kScOff.
#define PA3_QUAD(cols, zero, flush, G, n, q, h) \
	PA_SCW(896*q+512+320*n+8*h, Y4); \
	PA_SCW(896*q+512+320*n+16+8*h, Y5); \
	PA_SCW(896*q+512+320*n+32+8*h, Y6); \
	PA_SCW(896*q+512+320*n+48+8*h, Y7); \
	zero; \
	G(cols, q, 0, h); \
	G(cols, q, 1, h); \
	G(cols, q, 2, h); \
	G(cols, q, 3, h); \
	flush

// The quads in the layout's order, each after its prefetches (as Q3_QUADS, from R12:
// PA_PF_BASE).
#define PA3_QUADS(cols, zero, flush, h) \
	PA_PF_BASE(PF3_DIST, h); \
	PACKED_PREFETCH8(PF3_DIST, R12); \
	PA3_QUAD(cols, zero, flush, PA3_G0, 0, 0, h); \
	PACKED_PREFETCH8(PF3_DIST+512, R12); \
	PA3_QUAD(cols, zero, flush, PA3_G1, 1, 0, h); \
	PACKED_PREFETCH8(PF3_DIST+1024, R12); \
	PA3_QUAD(cols, zero, flush, PA3_G0, 0, 1, h); \
	PACKED_PREFETCH8(PF3_DIST+1536, R12); \
	PA3_QUAD(cols, zero, flush, PA3_G1, 1, 1, h)

// The scale pairs of sub-blocks 2m and 2m+1 (q3kScOff: 896 bytes apart) into Y4-Y11, the
// order of the bsum pairs (prepPackedAct3).
#define PA3_PAIRWS(h) \
	PA_PAIRW(512+8*h, 1408+8*h, X4, Y4); \
	PA_PAIRW(528+8*h, 1424+8*h, X5, Y5); \
	PA_PAIRW(544+8*h, 1440+8*h, X6, Y6); \
	PA_PAIRW(560+8*h, 1456+8*h, X7, Y7); \
	PA_PAIRW(832+8*h, 1728+8*h, X8, Y8); \
	PA_PAIRW(848+8*h, 1744+8*h, X9, Y9); \
	PA_PAIRW(864+8*h, 1760+8*h, X10, Y10); \
	PA_PAIRW(880+8*h, 1776+8*h, X11, Y11)

// Half h of a super-block, as PA6_BODY (packedq6k_amd64.s).
#define PA3_BODY(cols, zero, flush, end, h) \
	PA3_QUADS(cols, zero, flush, h); \
	end(PA3_PAIRWS, $2, 1792, h)

#define PV3_BODY4(h) PA3_BODY(PV_COLS4X, EMPTY, EMPTY, PA_END4, h)

// The quads of half h as PA3_QUADS, but the code of the first pair (a quad of each half of
// the super-block) in a loop (label lab), run again for the second with SI and the prefetch
// base R12 moved on by 896 bytes and the activations (DI, and R14 for four columns) by 16, as
// PA6_QUADS_LOOP does for Q6_K (the op cache). Each pass prefetches 1024 bytes from its
// quads' start: the two reach all 29 lines of the super-block. Alternating passes, median of
// 15 (Zen 3, one thread): four columns 1.08x in the level-3 cache and 1.14x from memory, one
// column (bound by its arithmetic there) 1.25x and 1.13x.
#define PA3_QUADS_LOOP(cols, zero, flush, h, lab) \
	PA_PF_BASE(PF3_DIST, h); \
	MOVQ $2, AX; \
lab: \
	PACKED_PREFETCH8(PF3_DIST, R12); \
	PA3_QUAD(cols, zero, flush, PA3_G0, 0, 0, h); \
	PACKED_PREFETCH8(PF3_DIST+512, R12); \
	PA3_QUAD(cols, zero, flush, PA3_G1, 1, 0, h); \
	ADDQ $896, SI; \
	ADDQ $896, R12; \
	ADDQ $16, DI; \
	ADDQ $16, R14; \
	DECQ AX; \
	JNZ  lab; \
	SUBQ $1792, SI; \
	SUBQ $32, DI; \
	SUBQ $32, R14

#define PA3_BODY4_LOOP(h, lab) \
	PA3_QUADS_LOOP(PA_COLS4X, EMPTY, EMPTY, h, lab); \
	PA_END4(PA3_PAIRWS, $2, 1792, h)

#define PA3_BODY4_H0(h) PA3_BODY4_LOOP(h, pa3x4_q0)
#define PA3_BODY4_H1(h) PA3_BODY4_LOOP(h, pa3x4_q1)

#define PA3_BODY1_LOOP(h, lab) \
	PA3_QUADS_LOOP(PA_COLS1X, PA_SUMS16_ZERO, PA_SUMS16_FLUSH, h, lab); \
	PA_END1(PA3_PAIRWS, $2, 1792, h)

#define PA3_BODY1_H0(h) PA3_BODY1_LOOP(h, pa3_q0)
#define PA3_BODY1_H1(h) PA3_BODY1_LOOP(h, pa3_q1)

// func dotPackedQ3KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ3KAVX2(SB), NOSPLIT, $64-48
	PA_SB_DOT1_2(PA3_BODY1_H0, PA3_BODY1_H1, $1856, $384, pa3_panel, pa3_b0)

// func dotPackedQ3Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ3Kx4AVX2(SB), NOSPLIT, $128-64
	PA_SB_DOT4_2(PA3_BODY4_H0, PA3_BODY4_H1, $1856, $384, pa3x4_panel, pa3x4_b0, pa3x4_b1)

// func dotPackedQ3Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ3Kx4AVXVNNI(SB), NOSPLIT, $128-64
	PA_SB_DOT4(PV3_BODY4, $1856, $384, pv3x4_panel, pv3x4_b0, pv3x4_b1)

DATA pa3Field<>+0(SB)/8, $0x0303030303030303
DATA pa3Field<>+8(SB)/8, $0x0303030303030303
DATA pa3Field<>+16(SB)/8, $0x0303030303030303
DATA pa3Field<>+24(SB)/8, $0x0303030303030303
GLOBL pa3Field<>(SB), RODATA|NOPTR, $32

DATA pa3High<>+0(SB)/8, $0x0404040404040404
DATA pa3High<>+8(SB)/8, $0x0404040404040404
DATA pa3High<>+16(SB)/8, $0x0404040404040404
DATA pa3High<>+24(SB)/8, $0x0404040404040404
GLOBL pa3High<>(SB), RODATA|NOPTR, $32
