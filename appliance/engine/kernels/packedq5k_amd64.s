//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Kernels for packed Q5_K weights (packedq5k.go): packed Q4_K's kernels (packedq4k_amd64.s)
// with each quant byte given its fifth bit before it meets the activations. Per group of four
// quant bytes, the low nibbles (v & 0x0f) and the high ones (v >> 4; VPSRLW leaves the
// neighbouring byte's bits above them, which the mask drops) each take bit 4 from the fifth-bit
// vector of their group, shifted by a constant per chunk and masked to 0x10: one VPTERNLOGD
// (a | b&c, imm 0xF8) joins the two. Both sub-blocks' sums are then plain (no shift), scaled,
// and finished with packed Q4_K's mins term and FMAs on the tail at 2560.
//
// A super-block (packedq5k.go): the fifth bits (group g' at 64g'), chunks 0 and 1, their
// scales, chunks 2 and 3, their scales, the mins, d and dmin. Chunk j's quant group g' at
// Q5K_Q(j)+64g', its scales at Q5K_SC(j) (low sub-block) and Q5K_SC(j)+16 (high).
//
// Registers: Z30 = 0x0f bytes, Z31 = 0x10 bytes.

// The fifth bit of chunk j's low (bit 2j) or high (bit 2j+1) sub-block, from the group's bit
// vector m to bit 4 of r, alone.
#define B5_SHL4(m, r) VPSLLW $4, m, r; VPANDD Z31, r, r
#define B5_SHL3(m, r) VPSLLW $3, m, r; VPANDD Z31, r, r
#define B5_SHL2(m, r) VPSLLW $2, m, r; VPANDD Z31, r, r
#define B5_SHL1(m, r) VPSLLW $1, m, r; VPANDD Z31, r, r
#define B5_AS_IS(m, r) VPANDD m, Z31, r
#define B5_SHR1(m, r) VPSRLW $1, m, r; VPANDD Z31, r, r
#define B5_SHR2(m, r) VPSRLW $2, m, r; VPANDD Z31, r, r
#define B5_SHR3(m, r) VPSRLW $3, m, r; VPANDD Z31, r, r

// The fifth bits in the AVX2 kernels' chunk loops (PA5K_BODY4_LOOP, PA5K_SB1_LOOP), where
// every chunk runs the same code: a word shift right by the count in the frame at 128 (2j in
// chunk j; VPSRLW reads 16 bytes there and counts by the low 8) brings each byte's bits 2j and
// 2j+1 to bits 0 and 1 (the neighbouring byte's bits come in above them), and shifts left by 4
// (lb) and 3 (hb) take them to bit 4 alone. lb shifts m in place, for hb after it.
#define PB5_LOOP_LO(m, r, mask) \
	VPSRLW 128(SP), m, m; \
	PB5_SHL4(m, r, mask)

#define PB5_LOOP_HI PB5_SHL3

// Half h of a super-block in four columns with one chunk's code in a loop (PAK_SB4_LOOP from
// chunk 0's quants at 512, R12 at the super-block for the fifth bits, their shift in the
// frame). The four chunks unrolled made 17 KiB of code, beyond what a Zen 3 core decodes from
// its op cache at full speed (as Q4_K's and Q6_K's four-column kernels). In the loop, with one
// shift a group more than the unrolled code's constant ones, a pass ran 1.00-1.16x as fast in
// the level-2 cache, 1.05-1.19x in the level-3 cache and 1.09-1.19x from memory (one thread,
// three rounds of alternating passes, medians of 15; same bits), and pp128 of a Q5_K_M model
// 1.04x (medians of six alternating runs). Each chunk prefetches the eight lines PF5K_DIST-512
// on from its quants (P5K_PREFETCH(j)'s eight, a line later in chunks 2 and 3, where SI has
// moved 576 bytes on); the thirteen other lines P5K_PREFETCH reaches come after the loop.
//
// Group g: its 5-bit quants in Y12 (low sub-block) and Y13 (high) by PA5_QUANTS4, into the
// columns' int16 sums by cols (PAK_COLS4, or PAK_COLS4_FIRST for the first of four groups).
#define PA5K_GROUP4_LOOP_WITH(cols, g, h) \
	PA5_QUANTS4(64*g+32*h, 64*g+32*h(R12), PB5_LOOP_LO, PB5_LOOP_HI); \
	cols(4*g, 32+4*g)

#define PA5K_GROUP4_LOOP(g, h) PA5K_GROUP4_LOOP_WITH(PAK_COLS4, g, h)

#define PA5K_GROUPS4_LOOP(h, g0, g1, g2, g3) \
	PA5K_GROUP4_LOOP_WITH(PAK_COLS4_FIRST, g0, h); \
	PA5K_GROUP4_LOOP(g1, h); \
	PA5K_GROUP4_LOOP(g2, h); \
	PA5K_GROUP4_LOOP(g3, h); \
	PAK_ADD4_AT(h)

#define PA5K_CHUNK4_LOOP(h) \
	PACKED_PREFETCH8_L2(PF5K_DIST-512, SI); \
	PA5K_GROUPS4_LOOP(h, 0, 1, 2, 3); \
	PA5K_GROUPS4_LOOP(h, 4, 5, 6, 7); \
	ADDQ $2, 128(SP)

#define PA5K_BODY4_LOOP(h, nlab, qlab) \
	PA5K_LOOP_START; \
	PAK_SB4_LOOP(PA5K_CHUNK4_LOOP, 1024, h, nlab, qlab); \
	PA5K_LOOP_END(PF5K_DIST); \
	PAK_FINISH4(PA5K_FINISH, h)

// Around a chunk loop (one or four columns): R12 at the super-block for the fifth bits, their
// shift count zero, SI at chunk 0's quants; after it SI back, and the prefetches of the
// thirteen lines P5K_PREFETCH reaches beyond the chunks' eight (dist on, as the chunks').
#define PA5K_LOOP_START \
	MOVQ SI, R12; \
	MOVQ $0, 128(SP); \
	ADDQ $512, SI

#define PA5K_LOOP_END(dist) \
	SUBQ       $512, SI; \
	PREFETCHT1 dist+1024(SI); \
	PF4_LINES(PREFETCHT1, dist+2112, SI); \
	PF4_LINES(PREFETCHT1, dist+2368, SI); \
	PF4_LINES(PREFETCHT1, dist+2624, SI)

#define P5K_MASKS \
	MOVL         $0x0f0f0f0f, AX; \
	VPBROADCASTD AX, Z30; \
	MOVL         $0x10101010, AX; \
	VPBROADCASTD AX, Z31

#define Q5K_Q(j) (512+512*(j)+64*((j)/2))
#define Q5K_SC(j) (Q5K_SCT(j)+32*(j))

// Chunk j's scales less 32j: the tail argument of the macros shared with Q4_K (PAK_ADD1,
// PVK_ADD4), which find chunk j's scales at tail+32j.
#define Q5K_SCT(j) (1536+1024*((j)/2))

// The 5-bit quants at qoff(SI) into lo and hi, their fifth bits from bits (a register or the
// memory at 64g'(SI)), lb and hb picking the chunk's; Z28 is scratch.
#define P5K_SPLIT_AT(qoff, bits, lb, hb, lo, hi) \
	VMOVDQU64  qoff(SI), Z28; \
	lb(bits, lo); \
	VPTERNLOGD $0xF8, Z30, Z28, lo; \
	VPSRLW     $4, Z28, Z28; \
	hb(bits, hi); \
	VPTERNLOGD $0xF8, Z30, Z28, hi

// The 5-bit quants of group g' of chunk j into lo and hi (as P5K_SPLIT_AT).
#define P5K_SPLIT(j, g, lb, hb, lo, hi) P5K_SPLIT_AT(Q5K_Q(j)+64*g, 64*g(SI), lb, hb, lo, hi)

// One column: group g of chunk j, its fifth bits in bits, against the activations at DI, into
// the running sums alo and ahi; Z2, Z3 are scratch.
#define P5K1_GROUP(j, g, bits, lb, hb, alo, ahi) \
	P5K_SPLIT_AT(Q5K_Q(j)+64*g, bits, lb, hb, Z2, Z3); \
	VPDPBUSD.BCST 64*(j)+4*g(DI), Z2, alo; \
	VPDPBUSD.BCST 64*(j)+32+4*g(DI), Z3, ahi

// How far ahead the kernels prefetch: the next super-block but one, from its predecessor's
// last line (as packed Q4_K's PF4K_DIST). Each chunk fetches eight lines, 512j on, and three
// more, 2048+192j on (P5K_PREFETCH), the super-block one more (P5K_PREFETCH_LAST): its 45
// lines, into the level-2 cache: more arithmetic per byte than Q4_K's leaves fewer loads in
// flight than one core's stream from memory needs. Streaming 256 MiB at one thread
// (BenchmarkPackedKernels, ns per super-block and column, this 2-core Zen 4), no prefetch /
// PREFETCHT0 / PREFETCHT1: one column 248 / 238 / 125, four 34 / 67 / 31. That was before the
// layout was put in the order the one-column kernel reads it: since then its form without
// prefetches streams faster (P5K_NO_PREFETCH).
#define PF5K_DIST 2*2880-64

#define P5K_PREFETCH(j) \
	PACKED_PREFETCH8_L2(PF5K_DIST+512*(j), SI); \
	PREFETCHT1 PF5K_DIST+2048+192*(j)(SI); \
	PREFETCHT1 PF5K_DIST+2112+192*(j)(SI); \
	PREFETCHT1 PF5K_DIST+2176+192*(j)(SI)

#define P5K_PREFETCH_LAST PREFETCHT1 PF5K_DIST+2048+768(SI)

// The one-column kernels come in two forms: with the prefetches above, and without any
// (P5K_NO_PREFETCH), where the hardware prefetcher alone may stream faster now that the
// super-block is read in order (streamtune.go measures which).
#define P5K_NO_PREFETCH(j) NOP

// One column: chunk j's integer sums, the low sub-block's in Z10 and the high one's in Z12,
// its fifth bits from the registers P5K1_BITS fills; Z11, Z13 are scratch (two sums each for
// the low and high sub-block, to halve the dependency chains).
#define P5K1_SUMS(pf, j, lb, hb) \
	pf(j); \
	ZERO_Z4(Z10, Z11, Z12, Z13); \
	P5K1_GROUP(j, 0, Z4, lb, hb, Z10, Z12); \
	P5K1_GROUP(j, 1, Z5, lb, hb, Z11, Z13); \
	P5K1_GROUP(j, 2, Z6, lb, hb, Z10, Z12); \
	P5K1_GROUP(j, 3, Z7, lb, hb, Z11, Z13); \
	P5K1_GROUP(j, 4, Z8, lb, hb, Z10, Z12); \
	P5K1_GROUP(j, 5, Z9, lb, hb, Z11, Z13); \
	P5K1_GROUP(j, 6, Z16, lb, hb, Z10, Z12); \
	P5K1_GROUP(j, 7, Z17, lb, hb, Z11, Z13); \
	VPADDD     Z11, Z10, Z10; \
	VPADDD     Z13, Z12, Z12

// One column: the super-block's eight lines of fifth bits, its first, into registers.
#define P5K1_BITS \
	VMOVDQU64 (SI), Z4; \
	VMOVDQU64 64(SI), Z5; \
	VMOVDQU64 128(SI), Z6; \
	VMOVDQU64 192(SI), Z7; \
	VMOVDQU64 256(SI), Z8; \
	VMOVDQU64 320(SI), Z9; \
	VMOVDQU64 384(SI), Z16; \
	VMOVDQU64 448(SI), Z17

// One column: chunk j's sums lo and hi scaled and added to Z20; Z14, Z15 scratch.
#define P5K1_SCALE(j, lo, hi) PK1_SCALE(Q5K_SC(j), lo, hi, Z20, Z20)

// One column: chunks j and j+1 (fifth bits picked by lb0, hb0 and lb1, hb1), then their
// scales, so that the super-block is read in order (chunk j's sums wait in Z18, Z19).
#define P5K1_PAIR(pf, j, lb0, hb0, lb1, hb1) \
	P5K1_SUMS(pf, j, lb0, hb0); \
	VMOVDQA64  Z10, Z18; \
	VMOVDQA64  Z12, Z19; \
	P5K1_SUMS(pf, j+1, lb1, hb1); \
	P5K1_SCALE(j, Z18, Z19); \
	P5K1_SCALE(j+1, Z10, Z12)

// One column: a super-block into Z0, prefetching with pf and last.
#define P5K1_SB(pf, last) \
	last; \
	P5K1_BITS; \
	VPXORD     Z20, Z20, Z20; \
	P5K1_PAIR(pf, 0, B5_SHL4, B5_SHL3, B5_SHL2, B5_SHL1); \
	P5K1_PAIR(pf, 2, B5_AS_IS, B5_SHR1, B5_SHR2, B5_SHR3); \
	PK_MINS(2560, (DI), Z22); \
	PK_FMAS(2560, (DI), Z20, Z22, Z0)

#define P5K1_SB_AHEAD P5K1_SB(P5K_PREFETCH, P5K_PREFETCH_LAST)
#define P5K1_SB_STREAM P5K1_SB(P5K_NO_PREFETCH, NOP)

// The four chunks of a super-block, each with its fifth bits.
#define P5K_CHUNKS(chunk) \
	chunk(0, B5_SHL4, B5_SHL3); \
	chunk(1, B5_SHL2, B5_SHL1); \
	chunk(2, B5_AS_IS, B5_SHR1); \
	chunk(3, B5_SHR2, B5_SHR3)

// func dotPackedQ5KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ5KVNNI(SB), NOSPLIT, $0-48
	PACKED_SB1(P5K_MASKS, P5K1_SB_AHEAD, $2880, $288, p5k_panel, p5k_block)

// func dotPackedQ5KVNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ5KVNNIStream(SB), NOSPLIT, $0-48
	PACKED_SB1(P5K_MASKS, P5K1_SB_STREAM, $2880, $288, p5ks_panel, p5ks_block)

// Many columns: the 5-bit quants of chunk j of the super-block at SI, the low sub-block's in
// Z8-Z15, the high one's in Z16-Z23; the chunk's two scale vectors in Z26, Z27.
#define P5KN_CHUNK(j, lb, hb) \
	P5K_PREFETCH(j); \
	P5K_SPLIT(j, 0, lb, hb, Z8, Z16); \
	P5K_SPLIT(j, 1, lb, hb, Z9, Z17); \
	P5K_SPLIT(j, 2, lb, hb, Z10, Z18); \
	P5K_SPLIT(j, 3, lb, hb, Z11, Z19); \
	P5K_SPLIT(j, 4, lb, hb, Z12, Z20); \
	P5K_SPLIT(j, 5, lb, hb, Z13, Z21); \
	P5K_SPLIT(j, 6, lb, hb, Z14, Z22); \
	P5K_SPLIT(j, 7, lb, hb, Z15, Z23); \
	VPMOVZXBD Q5K_SC(j)(SI), Z26; \
	VPMOVZXBD Q5K_SC(j)+16(SI), Z27

// Many columns: chunk j's products for the column with activations at base, its scaled sums
// added to sumi.
#define P5KN_COL(j, base, sumi) \
	PKN_DOTS(j, base); \
	PKN_SCALE(sumi)

// Four columns (activations at (DI), (DI)(DX*1), (R14), (R14)(DX*1)), integer sums Z4-Z7.
#define P5K4_CHUNK(j, lb, hb) \
	P5KN_CHUNK(j, lb, hb); \
	PKN_COLS4(P5KN_COL, j)

// func dotPackedQ5Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// Four prepared activation rows ystride bytes apart, column c's results at out + c·ostride
// bytes; each column's arithmetic is that of dotPackedQ5KVNNI, so the results are identical.
TEXT ·dotPackedQ5Kx4VNNI(SB), NOSPLIT, $0-64
	PACKED_COLS_ARGS
	P5K_MASKS

p5kx4_panel:
	PK4_PANEL

p5kx4_block:
	P5K_PREFETCH_LAST
	ZERO_Z4(Z4, Z5, Z6, Z7)
	P5K_CHUNKS(P5K4_CHUNK)
	PKN_FINISH(2560, (DI), Z4, Z0)
	PKN_FINISH(2560, (DI)(DX*1), Z5, Z1)
	PKN_FINISH(2560, (R14), Z6, Z2)
	PKN_FINISH(2560, (R14)(DX*1), Z7, Z3)
	PK4_NEXT(2880, p5kx4_block)

	PACKED_STORE4(Z0, Z1, Z2, Z3)
	PACKED_NEXT_PANEL(p5kx4_panel)
	VZEROUPPER
	RET

// Eight columns: activations at (DI), (DI)(DX*1), (DI)(DX*2), (R11), (R11)(DX*1),
// (R11)(DX*2), (R13), (R13)(DX*1) (R11 = DI + 3·DX, R13 = DI + 6·DX); integer sums Z0-Z7,
// float sums in the frame (as dotPackedQ4Kx8VNNI).
#define P5K8_CHUNK(j, lb, hb) \
	P5KN_CHUNK(j, lb, hb); \
	PKN_COLS8(P5KN_COL, j)

#define P5K8_SB \
	P5K_PREFETCH_LAST; \
	P5K_CHUNKS(P5K8_CHUNK); \
	PK8_FINISH_ALL(2560)

#define P5K8_MASKS \
	PACKED_NIBBLE_MASKS; \
	P5K_MASKS

// func dotPackedQ5Kx8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// dotPackedQ5Kx4VNNI for eight prepared activation rows.
TEXT ·dotPackedQ5Kx8VNNI(SB), NOSPLIT, $512-64
	PACKED_SB8(P5K8_MASKS, P5K8_SB, 2880, 288, p5kx8_panel, p5kx8_block)

// AVX2 (PAK_DOT1, PA_SB_DOT4): packed Q5_K, as the AVX2 Q4_K kernels with each nibble given its
// fifth bit (shifted to bit 4, masked to 0x10, ORed in). With 5-bit quants an int16 lane holds
// the products of four groups (8 of at most 31·128), so a chunk's sums are widened and scaled
// twice, after groups 0-3 and after 4-7.

// One column, both halves, one chunk's code in a loop (PAK_SB4_LOOP, its fifth bits from R12
// by the counted shift of PB5_LOOP_LO, as the four-column kernel): group g, the activation
// quants of its low sub-block in Y6 and of its high one in Y7, into the int16 sums of rows
// 0-7 (Y8 low, Y9 high) and 8-15 (Y10, Y11); Y1, Y2, Y4, Y5 scratch. Unrolled over the
// super-block (7 KiB), with prefetches placed for that, the kernel read 5.7-6.9 GB/s over
// 256 MiB at one thread; in the loop 7.8-11.3 (1.3-1.6x, seven rounds of alternating passes,
// medians of 15; same bits), though 0.7-1.1x in the caches. Without prefetches either form
// read 3.6-4.7: the hardware prefetcher does not follow a super-block's order here, with the
// fifth bits read again for every chunk.
#define PA5K_GROUP1_LOOP(g) \
	VPBROADCASTD 4*g(DI), Y6; \
	VPBROADCASTD 32+4*g(DI), Y7; \
	PA5_NIBBLES_DOT(64*g(SI), 64*g(R12), PB5_LOOP_LO, PB5_LOOP_HI, Y6, Y7, Y8, Y9); \
	PA5_NIBBLES_DOT(64*g+32(SI), 64*g+32(R12), PB5_LOOP_LO, PB5_LOOP_HI, Y6, Y7, Y10, Y11)

// Groups g0..g3, their sums widened and scaled into Y12 (rows 0-7) and Y13 (rows 8-15).
#define PA5K_GROUPS1_LOOP(g0, g1, g2, g3) \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PA5K_GROUP1_LOOP(g0); \
	PA5K_GROUP1_LOOP(g1); \
	PA5K_GROUP1_LOOP(g2); \
	PA5K_GROUP1_LOOP(g3); \
	PAK_ADD1_AT(0, (R13))

// The one-column kernel prefetches one super-block on (PF5K1_DIST), not two: over 256 MiB at
// one thread it read 1.03-1.08x as fast so in six rounds of alternating passes (9.08-11.04
// GB/s to 9.38-11.43 in the last four; three or five super-blocks on read as two).
#define PF5K1_DIST 2880-64

#define PA5K_CHUNK1_LOOP(h) \
	PACKED_PREFETCH8_L2(PF5K1_DIST-512, SI); \
	PA5K_GROUPS1_LOOP(0, 1, 2, 3); \
	PA5K_GROUPS1_LOOP(4, 5, 6, 7); \
	ADDQ $2, 128(SP)

#define PA5K_SB1_LOOP \
	PA5K_LOOP_START; \
	PAK_SB4_LOOP(PA5K_CHUNK1_LOOP, 1024, 0, pa5k_n, pa5k_q); \
	PA5K_LOOP_END(PF5K1_DIST)

#define PA5K_FINISH(h, base, sumi, acc, yd, mins, d, m) PAK_FINISH(2560, h, base, sumi, acc, yd, mins, d, m)

// func dotPackedQ5KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)
// The frame holds the fifth bits' shift count at 128 (PB5_LOOP_LO's place).
TEXT ·dotPackedQ5KAVX2(SB), NOSPLIT, $144-48
	PAK_DOT1(PA5_CONSTS, PA5K_SB1_LOOP, PA5K_FINISH, $2880, pa5k_panel, pa5k_block)

#define PA5K_BODY4_H0(h) PA5K_BODY4_LOOP(h, pa5kx4_n0, pa5kx4_q0)
#define PA5K_BODY4_H1(h) PA5K_BODY4_LOOP(h, pa5kx4_n1, pa5kx4_q1)

// func dotPackedQ5Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ5Kx4AVX2(SB), NOSPLIT, $144-64
	PA_SB_DOT4_2(PA5K_BODY4_H0, PA5K_BODY4_H1, $2880, $288, pa5kx4_panel, pa5kx4_b0, pa5kx4_b1)

// AVX-VNNI (PVK_COLS4, PVK_ADD4): packed Q5_K in four columns, a chunk's eight groups summed in
// int32 and scaled once (AVX2 sums four groups in int16 at a time).
#define PV5K_GROUP4(j, g, h, lb, hb) \
	PA5_QUANTS4(Q5K_Q(j)+64*g+32*h, 64*g+32*h(SI), lb, hb); \
	PVK_COLS4(64*j+4*g, 64*j+32+4*g)

#define PV5K_CHUNK4(j, h, lb, hb) \
	P5K_PREFETCH(j); \
	ZERO_Y4(Y4, Y5, Y6, Y7); \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PV5K_GROUP4(j, 0, h, lb, hb); \
	PV5K_GROUP4(j, 1, h, lb, hb); \
	PV5K_GROUP4(j, 2, h, lb, hb); \
	PV5K_GROUP4(j, 3, h, lb, hb); \
	PV5K_GROUP4(j, 4, h, lb, hb); \
	PV5K_GROUP4(j, 5, h, lb, hb); \
	PV5K_GROUP4(j, 6, h, lb, hb); \
	PV5K_GROUP4(j, 7, h, lb, hb); \
	PVK_ADD4(Q5K_SCT(j), j, h)

#define PV5K_BODY4(h) \
	PV5K_CHUNK4(0, h, PB5_SHL4, PB5_SHL3); \
	PV5K_CHUNK4(1, h, PB5_SHL2, PB5_SHL1); \
	PV5K_CHUNK4(2, h, PB5_AS_IS, PB5_SHR1); \
	PV5K_CHUNK4(3, h, PB5_SHR2, PB5_SHR3); \
	P5K_PREFETCH_LAST; \
	PAK_FINISH4(PA5K_FINISH, h)

// func dotPackedQ5Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ5Kx4AVXVNNI(SB), NOSPLIT, $128-64
	PA_SB_DOT4(PV5K_BODY4, $2880, $288, pv5kx4_panel, pv5kx4_b0, pv5kx4_b1)

