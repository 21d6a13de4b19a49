//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Kernels for packed Q6_K weights (packedq6k.go): 16 rows per 512-bit register, one row per
// 32-bit lane, against prepared activations (384 bytes a super-block: the 256 quants, the scale
// as float32, the sixteen int32 offset terms c_j). Per pair of ql groups A and B (and their
// reordered high bits), four vectors of 6-bit quants are assembled: A's and B's low-nibble
// elements as q (nibble | pair in bits 4-5), their high-nibble elements as 4·q (nibble in bits
// 2-5 | pair in bits 6-7), each by one VPTERNLOGD; each meets its four broadcast activation
// quants in VPDPBUSD. Per quad of pairs the four sub-block sums are offset by c_j, scaled by
// the 16 rows' scales (VPMULLD), the 4·q ones shifted down exactly, and added; then one FMA by
// d·yd: dotPackedQ6K's arithmetic. The integer sums are exact, so the order does not matter.
//
// Registers: Z28-Z31 the masks 0x0f, 0x30, 0x3c, 0xc0 (bytes); Z1 = ql group A, Z2 = group B,
// Z3 = their high bits, Z4 = those shifted for B, Z5 = the assembled quants, Z6, Z8 scratch.

#define P6_MASKS \
	MOVL         $0x0f0f0f0f, AX; \
	VPBROADCASTD AX, Z28; \
	MOVL         $0x30303030, AX; \
	VPBROADCASTD AX, Z29; \
	MOVL         $0x3c3c3c3c, AX; \
	VPBROADCASTD AX, Z30; \
	MOVL         $0xc0c0c0c0, AX; \
	VPBROADCASTD AX, Z31

// How far ahead the kernels prefetch: the super-block after next, from the next one's last
// line; each pair fetches its three lines, each quad its line of scales, the super-block its
// line of d. Without it one core streamed 256 MiB at 14-20 GB/s in one column and 10 GB/s in
// four, against 30-40 and 31 with it (BenchmarkPackedKernels, Zen 4). Into the level-2 cache
// (PF6) but for the AVX-512 one-column kernel (P6_PF1): where the level-1 cache also holds
// four or eight columns' activations, or the slower AVX2 arithmetic keeps lines waiting
// longer, lines fetched into it were evicted before use. On another Zen 4 (256 MiB, one
// thread, ns per super-block and column, PREFETCHT0 / PREFETCHT1): AVX-512 four columns
// 49-51 / 36-37, eight 49-50 / 28-29; AVX2 one 245-275 / 171-199, four 86-102 / 63-71;
// AVX-512 one column 140-163 / 157-175 (the form without prefetches is faster still there).
#define PF6_DIST 2*3392-64
#define PF6 PREFETCHT1

// A pair's three lines, PF6_DIST on.
#define P6_PF_PAIR(pb) \
	PF6 PF6_DIST+pb(SI); \
	PF6 PF6_DIST+pb+64(SI); \
	PF6 PF6_DIST+pb+128(SI)

// The four-column kernel's prefetch of the line at off (far and near, as packed_amd64.s's
// P16X4_PREFETCH): six super-blocks on into the level-2 cache and one on from there into the
// level-1 cache. Streaming 256 MiB from memory at one thread it took 29.4-29.6 against
// 31.0-31.4 ns a super-block and column with P6_PF_PAIR's prefetches (BenchmarkPackedKernels);
// the eight-column kernel gained nothing from it.
#define P6X4_PF(off) \
	PREFETCHT1 6*3392-64+off(SI); \
	PREFETCHT0 3392-64+off(SI)

// A pair of ql groups of the super-block at SI and their high bits, at pb.
#define P6_LOAD(pb) \
	VMOVDQU64 pb(SI), Z1; \
	VMOVDQU64 pb+64(SI), Z2; \
	VMOVDQU64 pb+128(SI), Z3

// Z5 = A's low-nibble quants (q), A's high-nibble quants (4·q), B's low (q; Z4 = the pairs
// shifted for B), B's high (4·q).
#define P6_ALO \
	VPANDD     Z29, Z3, Z5; \
	VPTERNLOGD $0xF8, Z28, Z1, Z5

#define P6_AHI \
	VPSRLW     $2, Z1, Z6; \
	VPANDD     Z31, Z3, Z5; \
	VPTERNLOGD $0xF8, Z30, Z6, Z5

#define P6_BLO \
	VPSLLW     $4, Z3, Z4; \
	VPANDD     Z29, Z4, Z5; \
	VPTERNLOGD $0xF8, Z28, Z2, Z5

#define P6_BHI \
	VPSRLW     $2, Z2, Z6; \
	VPANDD     Z31, Z4, Z5; \
	VPTERNLOGD $0xF8, Z30, Z6, Z5

// The 4·q sums (summed as such) of sub-block j: PACKED_SC, shifted down by 2 after the
// scaling.
#define P6_SCH(j, base, acc, tot) \
	VPADDD.BCST 260+4*j base, acc, acc; \
	VPMULLD     Z8, acc, acc; \
	VPSRAD      $2, acc, acc; \
	VPADDD      acc, tot, tot

// One column: a pair's four sub-block sums into Z10 (A low), Z11 (B low), Z12 (A high),
// Z13 (B high).
#define P6_PAIR1(pf, n, gp, pb) \
	pf(pb); \
	pf(pb+64); \
	pf(pb+128); \
	P6_LOAD(pb); \
	P6_ALO; \
	VPDPBUSD.BCST 128*n+4*gp(DI), Z5, Z10; \
	P6_AHI; \
	VPDPBUSD.BCST 128*n+64+4*gp(DI), Z5, Z12; \
	P6_BLO; \
	VPDPBUSD.BCST 128*n+32+4*gp(DI), Z5, Z11; \
	P6_BHI; \
	VPDPBUSD.BCST 128*n+96+4*gp(DI), Z5, Z13

// One column: a quad's sub-blocks (A low jal, B low jbl, A high jah, B high jbh; their scales
// at sb) into Z14.
#define P6_END1(pf, sb, jal, jbl, jah, jbh) \
	pf(sb); \
	VPMOVSXBD sb(SI), Z8; \
	PACKED_SC(jal, (DI), Z10, Z14); \
	VPMOVSXBD sb+16(SI), Z8; \
	PACKED_SC(jbl, (DI), Z11, Z14); \
	VPMOVSXBD sb+32(SI), Z8; \
	P6_SCH(jah, (DI), Z12, Z14); \
	VPMOVSXBD sb+48(SI), Z8; \
	P6_SCH(jbh, (DI), Z13, Z14)

// Four columns, activations at (DI), (DI)(DX*1), (R14), (R14)(DX*1): the sub-block sums of
// column c in Z9+5c.. (A low, B low, A high, B high; column 3: Z24-Z27), its super-block total
// in Z13, Z18, Z23, Z7; the float sums in the frame (64 bytes a column).
#define P6_DP4(off, a0, a1, a2, a3) \
	VPDPBUSD.BCST off(DI), Z5, a0; \
	VPDPBUSD.BCST off(DI)(DX*1), Z5, a1; \
	VPDPBUSD.BCST off(R14), Z5, a2; \
	VPDPBUSD.BCST off(R14)(DX*1), Z5, a3

#define P6_PAIR4(n, gp, pb) \
	P6X4_PF(pb); \
	P6X4_PF(pb+64); \
	P6X4_PF(pb+128); \
	P6_LOAD(pb); \
	P6_ALO; \
	P6_DP4(128*n+4*gp, Z9, Z14, Z19, Z24); \
	P6_AHI; \
	P6_DP4(128*n+64+4*gp, Z11, Z16, Z21, Z26); \
	P6_BLO; \
	P6_DP4(128*n+32+4*gp, Z10, Z15, Z20, Z25); \
	P6_BHI; \
	P6_DP4(128*n+96+4*gp, Z12, Z17, Z22, Z27)

#define P6_END4(sb, jal, jbl, jah, jbh) \
	P6X4_PF(sb); \
	VPMOVSXBD sb(SI), Z8; \
	PACKED_SC(jal, (DI), Z9, Z13); \
	PACKED_SC(jal, (DI)(DX*1), Z14, Z18); \
	PACKED_SC(jal, (R14), Z19, Z23); \
	PACKED_SC(jal, (R14)(DX*1), Z24, Z7); \
	VPMOVSXBD sb+16(SI), Z8; \
	PACKED_SC(jbl, (DI), Z10, Z13); \
	PACKED_SC(jbl, (DI)(DX*1), Z15, Z18); \
	PACKED_SC(jbl, (R14), Z20, Z23); \
	PACKED_SC(jbl, (R14)(DX*1), Z25, Z7); \
	VPMOVSXBD sb+32(SI), Z8; \
	P6_SCH(jah, (DI), Z11, Z13); \
	P6_SCH(jah, (DI)(DX*1), Z16, Z18); \
	P6_SCH(jah, (R14), Z21, Z23); \
	P6_SCH(jah, (R14)(DX*1), Z26, Z7); \
	VPMOVSXBD sb+48(SI), Z8; \
	P6_SCH(jbh, (DI), Z12, Z13); \
	P6_SCH(jbh, (DI)(DX*1), Z17, Z18); \
	P6_SCH(jbh, (R14), Z22, Z23); \
	P6_SCH(jbh, (R14)(DX*1), Z27, Z7)

// One column: the quad of pairs g0..g3 of half n (at b0..b3; scales at sb, sub-blocks jal,
// jbl, jah, jbh) into Z14.
#define P6_QUAD1(pf, n, g0, g1, g2, g3, b0, b1, b2, b3, sb, jal, jbl, jah, jbh) \
	ZERO_Z4(Z10, Z11, Z12, Z13); \
	P6_PAIR1(pf, n, g0, b0); \
	P6_PAIR1(pf, n, g1, b1); \
	P6_PAIR1(pf, n, g2, b2); \
	P6_PAIR1(pf, n, g3, b3); \
	P6_END1(pf, sb, jal, jbl, jah, jbh)

// P6_QUAD1 for four columns.
#define P6_QUAD4(n, g0, g1, g2, g3, b0, b1, b2, b3, sb, jal, jbl, jah, jbh) \
	ZERO_Z4(Z9, Z10, Z11, Z12); \
	ZERO_Z4(Z14, Z15, Z16, Z17); \
	ZERO_Z4(Z19, Z20, Z21, Z22); \
	ZERO_Z4(Z24, Z25, Z26, Z27); \
	P6_PAIR4(n, g0, b0); \
	P6_PAIR4(n, g1, b1); \
	P6_PAIR4(n, g2, b2); \
	P6_PAIR4(n, g3, b3); \
	P6_END4(sb, jal, jbl, jah, jbh)

// One column's prefetch of the line at off, PF6_DIST on, or none (the kernel's second form,
// as packed Q4_K's: streamtune.go measures which one decodes faster).
#define P6_PF1(off) PREFETCHT0 PF6_DIST+off(SI)
#define P6_NO_PF1(off) NOP

// One column's super-block into acc, prefetching with pf.
#define P6_SB1_TO(pf, acc) \
	pf(3328); \
	VPXORD Z14, Z14, Z14; \
	P6_QUAD1(pf, 0, 0, 1, 2, 3, 0, 192, 384, 576, 768, 0, 2, 4, 6); \
	P6_QUAD1(pf, 0, 4, 5, 6, 7, 832, 1024, 1216, 1408, 1600, 1, 3, 5, 7); \
	P6_QUAD1(pf, 1, 0, 1, 2, 3, 1664, 1856, 2048, 2240, 2432, 8, 10, 12, 14); \
	P6_QUAD1(pf, 1, 4, 5, 6, 7, 2496, 2688, 2880, 3072, 3264, 9, 11, 13, 15); \
	VCVTPH2PS 3328(SI), Z8; \
	PACKED_FMA((DI), Z14, acc)

#define P6_SB1 P6_SB1_TO(P6_PF1, Z0)
#define P6_SB1_STREAM P6_SB1_TO(P6_NO_PF1, Z0)
#define P6_SB1_RUNS2(acc) P6_SB1_TO(P6_PF1, acc)

// Four columns' super-block.
#define P6_SB4 \
	P6X4_PF(3328); \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z18, Z18, Z18; \
	VPXORD Z23, Z23, Z23; \
	VPXORD Z7, Z7, Z7; \
	P6_QUAD4(0, 0, 1, 2, 3, 0, 192, 384, 576, 768, 0, 2, 4, 6); \
	P6_QUAD4(0, 4, 5, 6, 7, 832, 1024, 1216, 1408, 1600, 1, 3, 5, 7); \
	P6_QUAD4(1, 0, 1, 2, 3, 1664, 1856, 2048, 2240, 2432, 8, 10, 12, 14); \
	P6_QUAD4(1, 4, 5, 6, 7, 2496, 2688, 2880, 3072, 3264, 9, 11, 13, 15); \
	VCVTPH2PS 3328(SI), Z8; \
	PACKED_FMA4(0, (DI), Z13); \
	PACKED_FMA4(1, (DI)(DX*1), Z18); \
	PACKED_FMA4(2, (R14), Z23); \
	PACKED_FMA4(3, (R14)(DX*1), Z7)

// func dotPackedQ6KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ6KVNNI(SB), NOSPLIT, $0-48
	PACKED_SB1(P6_MASKS, P6_SB1, $3392, $384, p6_panel, p6_block)

// func dotPackedQ6KVNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ6KVNNIStream(SB), NOSPLIT, $0-48
	PACKED_SB1(P6_MASKS, P6_SB1_STREAM, $3392, $384, p6s_panel, p6s_block)

// dotPackedQ6KVNNI over two runs of panels in step (PACKED_SB_RUNS2, streamtune.go), whole
// super-blocks in turn.
TEXT ·dotPackedQ6KVNNIRuns2(SB), NOSPLIT, $0-64
	PACKED_SB_RUNS2(P6_MASKS, P6_SB1_RUNS2, $3392, $384, p6r_panel, p6r_block)

// func dotPackedQ6Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ6Kx4VNNI(SB), NOSPLIT, $256-64
	PACKED_SB4(P6_MASKS, P6_SB4, $3392, $384, p6x4_panel, p6x4_block)

// Eight columns, activations at (DI), (DI)(DX*1), (DI)(DX*2), (R11), (R11)(DX*1), (R11)(DX*2),
// (R13), (R13)(DX*1). Four sums a column do not fit beside eight totals, so each quad is taken
// in two passes of two sub-blocks: A's low and high elements, then B's (the pair's high bits
// read again from the level-1 cache). Each sum starts from its offset term c_j (negated in
// the prepared activations) rather than zero, and the low sub-blocks' scales are taken four
// times, so that all sixteen scaled sums are 4·sc_j·(Σ q·y - 32·bsum_j) and the total is shifted
// down by 2 once a super-block: the same exact sumi with fewer steps a column. Registers: Z0-Z7
// the columns' totals, Z16-Z23 their low sums, Z24-Z31 their high ones, Z8, Z9 the pass's
// scales, Z10-Z15 scratch; the masks are broadcast from memory; the float sums live in the
// frame (P6X8_FMA).
#define P6X8_LO(off) PK8_DP(off, Z14, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23)
#define P6X8_HI(off) PK8_DP(off, Z14, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31)

// Pass A of pair g' = gp of half n (at pb): A's low quants (q), then its high ones (4·q).
#define P6X8_A(n, gp, pb) \
	P6_PF_PAIR(pb); \
	VMOVDQU64       pb(SI), Z10; \
	VMOVDQU64       pb+128(SI), Z12; \
	VPANDD.BCST     p6m30<>(SB), Z12, Z14; \
	VPTERNLOGD.BCST $0xF8, p6m0f<>(SB), Z10, Z14; \
	P6X8_LO(128*n+4*gp); \
	VPSRLW          $2, Z10, Z15; \
	VPANDD.BCST     p6mc0<>(SB), Z12, Z14; \
	VPTERNLOGD.BCST $0xF8, p6m3c<>(SB), Z15, Z14; \
	P6X8_HI(128*n+64+4*gp)

// Pass B of the pair: B's low and high quants, its bit pairs shifted into A's places.
#define P6X8_B(n, gp, pb) \
	VMOVDQU64       pb+64(SI), Z11; \
	VMOVDQU64       pb+128(SI), Z12; \
	VPSLLW          $4, Z12, Z13; \
	VPANDD.BCST     p6m30<>(SB), Z13, Z14; \
	VPTERNLOGD.BCST $0xF8, p6m0f<>(SB), Z11, Z14; \
	P6X8_LO(128*n+32+4*gp); \
	VPSRLW          $2, Z11, Z15; \
	VPANDD.BCST     p6mc0<>(SB), Z13, Z14; \
	VPTERNLOGD.BCST $0xF8, p6m3c<>(SB), Z15, Z14; \
	P6X8_HI(128*n+96+4*gp)

// The end of a pass: the low sums times four times their rows' scales (at sl), the high ones
// times theirs (at sh), added to the columns' totals.
#define P6X8_SCALE(sl, sh) \
	VPMOVSXBD sl(SI), Z8; \
	VPSLLD    $2, Z8, Z8; \
	VPMOVSXBD sh(SI), Z9; \
	PK8_SCALE_SUMS

// A quad: pass A over its four pairs (sub-blocks jal, jah), then pass B (jbl, jbh).
#define P6X8_QUAD(n, g0, g1, g2, g3, b0, b1, b2, b3, sb, jal, jbl, jah, jbh) \
	PF6 PF6_DIST+sb(SI); \
	PK8_START(jal, jah); \
	P6X8_A(n, g0, b0); \
	P6X8_A(n, g1, b1); \
	P6X8_A(n, g2, b2); \
	P6X8_A(n, g3, b3); \
	P6X8_SCALE(sb, sb+32); \
	PK8_START(jbl, jbh); \
	P6X8_B(n, g0, b0); \
	P6X8_B(n, g1, b1); \
	P6X8_B(n, g2, b2); \
	P6X8_B(n, g3, b3); \
	P6X8_SCALE(sb+16, sb+48)

// Eight columns' super-block.
#define P6X8_SB \
	PF6 PF6_DIST+3328(SI); \
	P6X8_QUAD(0, 0, 1, 2, 3, 0, 192, 384, 576, 768, 0, 2, 4, 6); \
	P6X8_QUAD(0, 4, 5, 6, 7, 832, 1024, 1216, 1408, 1600, 1, 3, 5, 7); \
	P6X8_QUAD(1, 0, 1, 2, 3, 1664, 1856, 2048, 2240, 2432, 8, 10, 12, 14); \
	P6X8_QUAD(1, 4, 5, 6, 7, 2496, 2688, 2880, 3072, 3264, 9, 11, 13, 15); \
	VCVTPH2PS 3328(SI), Z8; \
	PK8_FMA_ALL(P6X8_FMA)

// func dotPackedQ6Kx8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ6Kx8VNNI(SB), NOSPLIT, $512-64
	PACKED_SB8(EMPTY, P6X8_SB, 3392, 384, p6x8_panel, p6x8_block)

DATA p6m0f<>+0(SB)/4, $0x0f0f0f0f
GLOBL p6m0f<>(SB), RODATA|NOPTR, $4
DATA p6m30<>+0(SB)/4, $0x30303030
GLOBL p6m30<>(SB), RODATA|NOPTR, $4
DATA p6m3c<>+0(SB)/4, $0x3c3c3c3c
GLOBL p6m3c<>(SB), RODATA|NOPTR, $4
DATA p6mc0<>+0(SB)/4, $0xc0c0c0c0
GLOBL p6mc0<>(SB), RODATA|NOPTR, $4

// AVX2 (PA_SB_DOT1, PA_SB_DOT4): packed Q6_K. The quants are put together as their values
// q (0-63), not 4·q as above: VPMADDUBSW's int16 pairs then hold 2·63·128 at most. The
// offsets are 32·bsum_j, so sumi = Σ_j sc_j·(Σ q·y - 32·bsum_j), dotPackedQ6K's (whose
// (4·Σ q·y - 128·bsum_j)·sc_j >> 2 of the high sub-blocks is the same number). Registers
// as PA_DOT's callers have them: Y4-Y7 the quad's scale words (A low, B low, A high, B high),
// Y8-Y11 the pair's quants.

// The quants of the pair at pb, half h: Y8 = A low, Y9 = A high, Y10 = B low, Y11 = B high,
// each a nibble of A or B under its bit pair of the high bits (Y12; reordered as B low,
// B high, A low, A high from bit 0) moved to bits 4-5.
#define PA6_QUANTS(pb, h) \
	VMOVDQU pb+128+32*h(SI), Y12; \
	VMOVDQU pb+32*h(SI), Y13; \
	VPAND   ·paNibbles(SB), Y13, Y8; \
	VPAND   pa6Pair<>(SB), Y12, Y14; \
	VPOR    Y14, Y8, Y8; \
	VPSRLW  $4, Y13, Y13; \
	VPAND   ·paNibbles(SB), Y13, Y9; \
	VPSRLW  $2, Y12, Y14; \
	VPAND   pa6Pair<>(SB), Y14, Y14; \
	VPOR    Y14, Y9, Y9; \
	VMOVDQU pb+64+32*h(SI), Y13; \
	VPAND   ·paNibbles(SB), Y13, Y10; \
	VPSLLW  $4, Y12, Y14; \
	VPAND   pa6Pair<>(SB), Y14, Y14; \
	VPOR    Y14, Y10, Y10; \
	VPSRLW  $4, Y13, Y13; \
	VPAND   ·paNibbles(SB), Y13, Y11; \
	VPSLLW  $2, Y12, Y14; \
	VPAND   pa6Pair<>(SB), Y14, Y14; \
	VPOR    Y14, Y11, Y11

// The pair of ql groups g' = gp of half n of the super-block (at pb) for the columns cols,
// prefetching from base (PA6_PF_PAIR).
#define PA6_PAIR(cols, n, gp, pb, h, base) \
	PA6_PF_PAIR(pb, base); \
	PA6_QUANTS(pb, h); \
	cols(128*n+4*gp, Y8, Y4); \
	cols(128*n+64+4*gp, Y9, Y6); \
	cols(128*n+32+4*gp, Y10, Y5); \
	cols(128*n+96+4*gp, Y11, Y7)

// A quad: its pairs g0..g3 of half n (at b0..b3), its scales at sb.
#define PA6_QUAD(cols, n, g0, g1, g2, g3, b0, b1, b2, b3, sb, h, base) \
	PF6 PF6_DIST+sb base; \
	PA_SCW(sb+8*h, Y4); \
	PA_SCW(sb+16+8*h, Y5); \
	PA_SCW(sb+32+8*h, Y6); \
	PA_SCW(sb+48+8*h, Y7); \
	PA6_PAIR(cols, n, g0, b0, h, base); \
	PA6_PAIR(cols, n, g1, b1, h, base); \
	PA6_PAIR(cols, n, g2, b2, h, base); \
	PA6_PAIR(cols, n, g3, b3, h, base)

// A pair's three lines, PF6_DIST on from the pair at base (a memory operand's base and index:
// (R12), or (R12)(R13*1) for the one-column kernel's second half).
#define PA6_PF_PAIR(pb, base) \
	PF6 PF6_DIST+pb base; \
	PF6 PF6_DIST+pb+64 base; \
	PF6 PF6_DIST+pb+128 base

// The quads of half h, prefetching from R12 (PA_PF_BASE).
#define PA6_QUADS(cols, h) \
	PA_PF_BASE(PF6_DIST, h); \
	PF6 PF6_DIST+3328(R12); \
	PA6_QUAD(cols, 0, 0, 1, 2, 3, 0, 192, 384, 576, 768, h, (R12)); \
	PA6_QUAD(cols, 0, 4, 5, 6, 7, 832, 1024, 1216, 1408, 1600, h, (R12)); \
	PA6_QUAD(cols, 1, 0, 1, 2, 3, 1664, 1856, 2048, 2240, 2432, h, (R12)); \
	PA6_QUAD(cols, 1, 4, 5, 6, 7, 2496, 2688, 2880, 3072, 3264, h, (R12))

// Every quad's two scale pairs (sub-blocks at sa and sa+16) into Y4-Y11, the order of the
// bsum pairs (prepPackedAct6).
#define PA6_PAIRWS(h) \
	PA_PAIRW(768+8*h, 784+8*h, X4, Y4); \
	PA_PAIRW(800+8*h, 816+8*h, X5, Y5); \
	PA_PAIRW(1600+8*h, 1616+8*h, X6, Y6); \
	PA_PAIRW(1632+8*h, 1648+8*h, X7, Y7); \
	PA_PAIRW(2432+8*h, 2448+8*h, X8, Y8); \
	PA_PAIRW(2464+8*h, 2480+8*h, X9, Y9); \
	PA_PAIRW(3264+8*h, 3280+8*h, X10, Y10); \
	PA_PAIRW(3296+8*h, 3312+8*h, X11, Y11)

// Half h of a super-block, its products by cols (PA_COLS1, PA_COLS4, or AVX-VNNI's PV_COLS4)
// and its end by end (PA_END1, PA_END4).
#define PA6_BODY(cols, end, h) \
	PA6_QUADS(cols, h); \
	end(PA6_PAIRWS, $5, 3328, h)

#define PV6_BODY4(h) PA6_BODY(PV_COLS4, PA_END4, h)

// The quads of half h as PA6_QUADS, but one quad's code in a loop (labels nlab, qlab): two
// halves of the super-block, two quads each, with SI and the prefetch base R12 moved on by a
// quad (832 bytes) and the activations (DI, and R14 for four columns) by its place in them
// (16 bytes to the second quad of a half, 128 to the next half). Unrolled, the four-column
// kernel's half of a super-block was 10 KiB of code, more than a Zen 3 core decodes from its
// op cache at full speed: one quad's code in a loop ran 1.17-1.18x as fast in the level-3
// cache and 1.08-1.18x from memory (three rounds of alternating passes, same bits). The
// one-column kernel, whose speed from memory is what counts, gained nothing there (1.2x in the
// level-3 cache, 0.96x from memory) and stays unrolled.
#define PA6_QUADS_LOOP(cols, h, nlab, qlab) \
	PA_PF_BASE(PF6_DIST, h); \
	PF6 PF6_DIST+3328(R12); \
	PA_LOOP2X2(PA6_QUAD(cols, 0, 0, 1, 2, 3, 0, 192, 384, 576, 768, h, (R12)), 832, 16, 96, nlab, qlab)

#define PA6_BODY4_LOOP(h, nlab, qlab) \
	PA6_QUADS_LOOP(PA_COLS4, h, nlab, qlab); \
	PA_END4(PA6_PAIRWS, $5, 3328, h)

#define PA6_BODY4_H0(h) PA6_BODY4_LOOP(h, pa6x4_n0, pa6x4_q0)
#define PA6_BODY4_H1(h) PA6_BODY4_LOOP(h, pa6x4_n1, pa6x4_q1)

// One column, both halves of each quad in turn: rows 0-7 into Y0, prefetching PF6_DIST on,
// rows 8-15 into Y1, prefetching the next panel's lines (R13 = the stride less PF6_DIST, as
// PA_PF_BASE's second half). Taking a half over the whole super-block before the other, the
// kernel read 0.91-0.98x as fast over 256 MiB at one thread (ten rounds of alternating passes,
// medians of 15; same bits) and as fast in the caches. Rolled into a loop over the quads, as
// the four-column kernel, it ran 1.2-1.4x as fast in the caches but 0.96-1.0x from memory;
// again on the Zen 3 VM (best of seven alternating passes, three runs) 1.15-1.35x in the
// level-3 cache, and from memory 0.95-1.01x prefetching two super-blocks on, 0.94-1.06x
// four, six or eight.
#define PA_COLS1_Y1(off, q, scw) PA_DOT(off, q, scw, (DI), Y1)

#define PA6_QUAD1(n, g0, g1, g2, g3, b0, b1, b2, b3, sb) \
	PA6_QUAD(PA_COLS1, n, g0, g1, g2, g3, b0, b1, b2, b3, sb, 0, (R12)); \
	PA6_QUAD(PA_COLS1_Y1, n, g0, g1, g2, g3, b0, b1, b2, b3, sb, 1, (R12)(R13*1))

#define PA6_SB1 \
	VPXOR Y0, Y0, Y0; \
	VPXOR Y1, Y1, Y1; \
	MOVQ  SI, R12; \
	PF6  PF6_DIST+3328(R12); \
	PF6  PF6_DIST+3328(R12)(R13*1); \
	PA6_QUAD1(0, 0, 1, 2, 3, 0, 192, 384, 576, 768); \
	PA6_QUAD1(0, 4, 5, 6, 7, 832, 1024, 1216, 1408, 1600); \
	PA6_QUAD1(1, 0, 1, 2, 3, 1664, 1856, 2048, 2240, 2432); \
	PA6_QUAD1(1, 4, 5, 6, 7, 2496, 2688, 2880, 3072, 3264); \
	PA_END1_SUM(PA6_PAIRWS, $5, 3328, 0, Y0); \
	PA_END1_SUM(PA6_PAIRWS, $5, 3328, 1, Y1)

#define PA6_ARGS1 \
	MOVQ stride+8(FP), R13; \
	SUBQ $(PF6_DIST), R13

// func dotPackedQ6KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ6KAVX2(SB), NOSPLIT, $64-48
	PA_SB_DOT1_WITH(PA6_ARGS1, PA6_SB1, $3392, $384, pa6_panel, pa6_b0)

// func dotPackedQ6Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ6Kx4AVX2(SB), NOSPLIT, $128-64
	PA_SB_DOT4_2(PA6_BODY4_H0, PA6_BODY4_H1, $3392, $384, pa6x4_panel, pa6x4_b0, pa6x4_b1)

// func dotPackedQ6Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ6Kx4AVXVNNI(SB), NOSPLIT, $128-64
	PA_SB_DOT4(PV6_BODY4, $3392, $384, pv6x4_panel, pv6x4_b0, pv6x4_b1)

DATA pa6Pair<>+0(SB)/8, $0x3030303030303030
DATA pa6Pair<>+8(SB)/8, $0x3030303030303030
DATA pa6Pair<>+16(SB)/8, $0x3030303030303030
DATA pa6Pair<>+24(SB)/8, $0x3030303030303030
GLOBL pa6Pair<>(SB), RODATA|NOPTR, $32

// VPSHUFB indices for PA_SCW (not file-local: Q3_K's kernels use it too): in each 128-bit lane
// of eight broadcast scale bytes, byte r of the lane's rows (rows 0-3, then 4-7) to the high
// byte of both words of its 32-bit lane, the low bytes zero (VPSRAW by 8 then sign-extends).
DATA ·paSignedScaleWords+0(SB)/8, $0x0180018000800080
DATA ·paSignedScaleWords+8(SB)/8, $0x0380038002800280
DATA ·paSignedScaleWords+16(SB)/8, $0x0580058004800480
DATA ·paSignedScaleWords+24(SB)/8, $0x0780078006800680
GLOBL ·paSignedScaleWords(SB), RODATA|NOPTR, $32

// Eight columns (AVX2), one half of the panel's rows at a time (as four columns): each
// quant vector meets all eight columns, so a panel is unpacked once and streamed once for a
// batch of eight, where two passes of four did both twice. Registers: the columns' integer
// sums in Y0-Y7 (column c's activations at DI + c·DX, EACH8's), one kind of a pair's quants
// (A low, B low, A high, B high, as PA6_QUANTS makes them) in Y8, that kind's scale words in
// Y9, the broadcast in Y10, a product in Y11, Y12 scratch; the float sums in the frame (32
// bytes a column, PA8C_START's), the integer sums spilled at 256 for the super-block's end.
//
// One kind of a pair's quants into Y8: the nibbles at ql brought down by qshift, their bit
// pair from the high bits at qh moved to bits 4-5 by hshift.
#define PA6X8_KINDQ(ql, qh, qshift, hshift) \
	VMOVDQU ql(SI), Y8; \
	qshift(Y8); \
	VPAND   ·paNibbles(SB), Y8, Y8; \
	VMOVDQU qh(SI), Y12; \
	hshift(Y12); \
	VPAND   pa6Pair<>(SB), Y12, Y12; \
	VPOR    Y12, Y8, Y8

#define P6_AS_IS(r)
#define P6_SHR4(r) VPSRLW $4, r, r
#define P6_SHR2(r) VPSRLW $2, r, r
#define P6_SHL4(r) VPSLLW $4, r, r
#define P6_SHL2(r) VPSLLW $2, r, r

#define PA6X8_ALO(pb, h) PA6X8_KINDQ(pb+32*h, pb+128+32*h, P6_AS_IS, P6_AS_IS)
#define PA6X8_AHI(pb, h) PA6X8_KINDQ(pb+32*h, pb+128+32*h, P6_SHR4, P6_SHR2)
#define PA6X8_BLO(pb, h) PA6X8_KINDQ(pb+64+32*h, pb+128+32*h, P6_AS_IS, P6_SHL4)
#define PA6X8_BHI(pb, h) PA6X8_KINDQ(pb+64+32*h, pb+128+32*h, P6_SHR4, P6_SHL2)

// The column at base: its four activation quants at off, broadcast, times the quants, scaled,
// added to acc.
#define PA6X8_DOT(off, base, c, acc) \
	VPBROADCASTD off base, Y10; \
	VPMADDUBSW   Y10, Y8, Y11; \
	VPMADDWD     Y9, Y11, Y11; \
	VPADDD       Y11, acc, acc

// One kind of the quad at SI (its scales sc bytes into the quad's line of scales, its
// activations act bytes into each group pair's) in every column.
#define PA6X8_KIND(unpack, sc, act, h) \
	PA_SCW(768+sc+8*h, Y9); \
	unpack(0, h); \
	EACH8(PA6X8_DOT, act); \
	unpack(192, h); \
	EACH8(PA6X8_DOT, act+4); \
	unpack(384, h); \
	EACH8(PA6X8_DOT, act+8); \
	unpack(576, h); \
	EACH8(PA6X8_DOT, act+12)

#define PA6X8_QUAD(h) \
	PF6 PF6_DIST+768(R12); \
	PA6_PF_PAIR(0, (R12)); \
	PA6_PF_PAIR(192, (R12)); \
	PA6_PF_PAIR(384, (R12)); \
	PA6_PF_PAIR(576, (R12)); \
	PA6X8_KIND(PA6X8_ALO, 0, 0, h); \
	PA6X8_KIND(PA6X8_BLO, 16, 32, h); \
	PA6X8_KIND(PA6X8_AHI, 32, 64, h); \
	PA6X8_KIND(PA6X8_BHI, 48, 96, h)

// The four quads of half h, one quad's code in a loop (as PA6_QUADS_LOOP, with R15's columns
// moved on too).
#define PA6X8_QUADS(h, nlab, qlab) \
	MOVQ $2, AX; \
nlab: \
	MOVQ $2, R11; \
qlab: \
	PA6X8_QUAD(h); \
	ADDQ $832, SI; \
	ADDQ $832, R12; \
	ADDQ $16, DI; \
	ADDQ $16, R14; \
	ADDQ $16, R15; \
	DECQ R11; \
	JNZ  qlab; \
	ADDQ $96, DI; \
	ADDQ $96, R14; \
	ADDQ $96, R15; \
	DECQ AX; \
	JNZ  nlab; \
	SUBQ $3328, SI; \
	SUBQ $256, DI; \
	SUBQ $256, R14; \
	SUBQ $256, R15

// The end of half h of a super-block: the integer sums spilled, the scale pairs set (PA6_PAIRWS
// takes Y4-Y11), then each column's sum back in Y0, its offsets off, and one FMA by the rows'
// d (Y1) times yd into its float sum (PA_END4's steps).
#define PA6X8_COL_END(x, base, c, acc) \
	VMOVDQU      256+32*c(SP), Y0; \
	PA_OFFSET(base, Y0, $5); \
	PA_FRAME4_FMA(c, base, Y0, Y1)

#define PA6X8_SPILL(x, base, c, acc) VMOVDQU acc, 256+32*c(SP)

#define PA6X8_END(h) \
	EACH8(PA6X8_SPILL, 0); \
	PA6_PAIRWS(h); \
	VCVTPH2PS 3328+16*h(SI), Y1; \
	EACH8(PA6X8_COL_END, 0)

#define PA6X8_HALF(h, blab, nlab, qlab) \
	PACKED_SB_START; \
	PA8C_START; \
blab: \
	ZERO_Y4(Y0, Y1, Y2, Y3); \
	ZERO_Y4(Y4, Y5, Y6, Y7); \
	PA_PF_BASE(PF6_DIST, h); \
	PF6  PF6_DIST+3328(R12); \
	PA6X8_QUADS(h, nlab, qlab); \
	PA6X8_END(h); \
	ADDQ $3392, SI; \
	ADDQ $384, DI; \
	ADDQ $384, R14; \
	ADDQ $384, R15; \
	DECQ CX; \
	JNZ  blab; \
	PA8C_STORE(h)

// func dotPackedQ6Kx8AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ6Kx8AVX2(SB), NOSPLIT, $512-64
	PACKED_ARGS4

pa6x8_panel:
	PA6X8_HALF(0, pa6x8_b0, pa6x8_n0, pa6x8_q0)
	PA6X8_HALF(1, pa6x8_b1, pa6x8_n1, pa6x8_q1)
	PACKED_NEXT_PANEL(pa6x8_panel)
	VZEROUPPER
	RET
