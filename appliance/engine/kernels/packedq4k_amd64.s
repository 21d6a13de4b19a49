//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Kernels for packed Q4_K weights (packedq4k.go): 16 rows per 512-bit register, one row per
// 32-bit lane, against prepared activations (288 bytes a super-block: the 256 quants, the scale
// as float32, the eight sub-block sums as int16). Per group of four quant bytes, the low
// nibbles (in place) and the high nibbles (in place: 16 times their value) meet the broadcast
// activation quants of their sub-blocks in VPDPBUSD; each sub-block's sums are scaled by its
// 16 rows' scales (VPMULLD), the high ones shifted down exactly; the mins term is four
// VPDPWSSD of the rows' mins with the sub-block sums. Then one FMA by d·yd and one by
// -dmin·yd: dotPackedQ4K's arithmetic. The integer sums are exact, so the order in which a
// kernel adds them does not change the result.
//
// Chunk j of a super-block is sub-blocks 2j (low nibbles) and 2j+1 (high nibbles): quant
// groups 8j..8j+7 at Q4K_Q(j), scales at Q4K_SC(j) (low) and Q4K_SC(j)+16 (high), activations
// at 64j (low) and 64j+32 (high). Chunks 0 and 1, then their scales (a line), chunks 2 and 3,
// their scales, the mins (two lines), d and dmin (a line): packedq4k.go's layout.
//
// Registers: Z30 = 0x0f bytes, Z31 = 0xf0 bytes.
#define Q4K_Q(j) (512*(j)+64*((j)/2))
#define Q4K_SC(j) (Q4K_SCT(j)+32*(j))

// Chunk j's scales less 32j: the tail argument of the macros shared with Q5_K (PAK_ADD1,
// PVK_ADD4), which find chunk j's scales at tail+32j.
#define Q4K_SCT(j) (1024+1024*((j)/2))

// The AVX2 one-column kernel over two runs of panels in step (PAK_RUNS2), chunk by chunk: a
// super-block's reads alternate between the runs every 512 bytes, not every 2368 (whole
// super-blocks, which read slower than one run on a Zen 3 core). The twin's integer sums wait
// in the frame at 64 and 96 while the run's chunk is summed in Y12 and Y13 (Y8, Y9 scratch
// between chunks). Above every function: vet checks a macro's frame offsets against the
// function above it.
#define PA4K_CHUNK_RUNS2(j) \
	PA4K_CHUNK1(P4K_PREFETCH, j); \
	PAK_SWAP(64, Y12, Y13, Y8, Y9); \
	ADDQ R13, SI; \
	PA4K_CHUNK1(P4K_PREFETCH, j); \
	SUBQ R13, SI; \
	PAK_SWAP(64, Y12, Y13, Y8, Y9)

#define PA4K_PAIR_RUNS2 \
	VPXOR        Y12, Y12, Y12; \
	VPXOR        Y13, Y13, Y13; \
	VMOVUPS      Y12, 64(SP); \
	VMOVUPS      Y12, 96(SP); \
	PA4K_CHUNK_RUNS2(0); \
	PA4K_CHUNK_RUNS2(1); \
	PA4K_CHUNK_RUNS2(2); \
	PA4K_CHUNK_RUNS2(3); \
	VBROADCASTSS 256(DI), Y6; \
	PA4K_FINISH(0, (DI), Y12, Y0, Y6, Y8, Y4, Y5); \
	PA4K_FINISH(1, (DI), Y13, Y3, Y6, Y8, Y4, Y5); \
	VMOVUPS      64(SP), Y12; \
	VMOVUPS      96(SP), Y13; \
	PAK_SWAP(0, Y0, Y3, Y8, Y9); \
	ADDQ         R13, SI; \
	PA4K_FINISH(0, (DI), Y12, Y0, Y6, Y8, Y4, Y5); \
	PA4K_FINISH(1, (DI), Y13, Y3, Y6, Y8, Y4, Y5); \
	SUBQ         R13, SI; \
	PAK_SWAP(0, Y0, Y3, Y8, Y9)


// How far ahead the kernels prefetch: each chunk fetches eight lines and one more, 512j on
// and 2048+64j on less 64: the 37 lines of a super-block in all (the last, at 2304, is reached
// by the next super-block's first chunk, as PF4K_DIST is a multiple of the super-block size
// less 64).
#define PF4K_DIST 2*2368-64

// A chunk's prefetches, as described above.
#define P4K_PREFETCH(j) \
	PACKED_PREFETCH8(PF4K_DIST+512*(j), SI); \
	PREFETCHT0 PF4K_DIST+2048+64*(j)(SI)

// The many-column kernels' prefetches (far and near, as packed_amd64.s's P16X4_PREFETCH): each
// chunk's lines six super-blocks on into the level-2 cache, and one super-block on from there
// into the level-1 cache. With P4K_PREFETCH alone these kernels streamed 12-30% slower from
// memory than on weights in the caches. Over 256 MiB at one thread, ns a super-block and column
// against P4K_PREFETCH: eight columns 23.3-24.1 against 25.9-26.5, four 27.7 against 31.3,
// AVX2's four 45.2 against 56.2 (BenchmarkPackedKernels). The one-column kernel's prefetching
// form was slower with them (100 against 93) and keeps P4K_PREFETCH. P4KN_PREFETCH is the
// eight-column kernel's; the four-column ones vary it (P4KX4_PREFETCH, P4KA_PREFETCH).
#define P4KN_PREFETCH(j) P4K_FAR_NEAR(j, SI, 2368-64)

// Chunk j's far prefetches six super-blocks on from fb into the level-2 cache, its near ones
// near bytes on from SI into the level-1 cache.
#define P4K_FAR_NEAR(j, fb, near) \
	PACKED_PREFETCH8_L2(6*2368-64+512*(j), fb); \
	PREFETCHT1 6*2368-64+2048+64*(j)(fb); \
	PACKED_PREFETCH8(near+512*(j), SI); \
	PREFETCHT0 near+2048+64*(j)(SI)

// The four-column kernel's prefetches: P4KN_PREFETCH with the near ones two super-blocks on.
// It loads a chunk's eight lines at once (P4KN_CHUNK), so a line still on its way holds up the
// chunk: 26.0 against 29.3 ns a super-block and column over 256 MiB at one thread (three
// super-blocks on: 26.1; the eight-column kernel, which loads a line as its columns need it,
// read 24.2 against 23.5 with them and keeps P4KN_PREFETCH).
#define P4KX4_PREFETCH(j) P4K_FAR_NEAR(j, SI, 2*2368-64)

// The four-column AVX-VNNI kernel's prefetches of chunk j in half h: as P4KN_PREFETCH, but
// the far ones from R12 (PA_PF_BASE), so that the second half, which reads the panel again
// from the caches, fetches the next panel into the level-2 cache (the AVX2 kernel of that
// form, 256 MiB from memory, one thread: 39.4 against 45.1 ns a super-block and column, 38.7
// on cached weights).
#define P4KA_PREFETCH(j, h) \
	PA_PF_BASE(6*2368-64, h); \
	P4K_FAR_NEAR(j, R12, 2368-64)

// One column: group g of chunk j at SI against the activations at DI, into the running sums
// alo (low nibbles) and ahi (high nibbles, times 16). Z1-Z3 are scratch.
#define P4K1_GROUP(j, g, alo, ahi) \
	PACKED_SPLIT(Q4K_Q(j)+64*g, SI, Z1, Z2, Z3); \
	VPDPBUSD.BCST 64*(j)+4*g(DI), Z2, alo; \
	VPDPBUSD.BCST 64*(j)+32+4*g(DI), Z3, ahi

// The one-column kernels come in two forms: with the prefetches above, and without any
// (pf = P4K_NO_PREFETCH), where the hardware prefetcher alone streams faster; which one a
// machine decodes with is measured at run time (streamtune.go).
#define P4K_NO_PREFETCH(j) NOP

// One column: chunk j's integer sums, low nibbles in Z10 and high ones (times 16) in Z12; Z11,
// Z13 are scratch (two sums each for the low and high nibbles, to halve the dependency chains).
#define P4K1_SUMS(pf, j) \
	pf(j); \
	ZERO_Z4(Z10, Z11, Z12, Z13); \
	P4K1_GROUP(j, 0, Z10, Z12); \
	P4K1_GROUP(j, 1, Z11, Z13); \
	P4K1_GROUP(j, 2, Z10, Z12); \
	P4K1_GROUP(j, 3, Z11, Z13); \
	P4K1_GROUP(j, 4, Z10, Z12); \
	P4K1_GROUP(j, 5, Z11, Z13); \
	P4K1_GROUP(j, 6, Z10, Z12); \
	P4K1_GROUP(j, 7, Z11, Z13); \
	VPADDD     Z11, Z10, Z10; \
	VPADDD     Z13, Z12, Z12

// One column: chunk j's sums lo and hi scaled and added to Z20 (low) and Z21 (high, times 16);
// Z14, Z15 scratch.
#define P4K1_SCALE(j, lo, hi) PK1_SCALE(Q4K_SC(j), lo, hi, Z20, Z21)

// One column: chunks j and j+1, then their scales, so that the super-block is read in order
// (chunk j's sums wait in Z16, Z17).
#define P4K1_PAIR(pf, j) \
	P4K1_SUMS(pf, j); \
	VMOVDQA64  Z10, Z16; \
	VMOVDQA64  Z12, Z17; \
	P4K1_SUMS(pf, j+1); \
	P4K1_SCALE(j, Z16, Z17); \
	P4K1_SCALE(j+1, Z10, Z12)

// One column: a super-block into acc, prefetching with pf.
#define P4K1_SB_TO(pf, acc) \
	VPXORD     Z20, Z20, Z20; \
	VPXORD     Z21, Z21, Z21; \
	P4K1_PAIR(pf, 0); \
	P4K1_PAIR(pf, 2); \
	VPSRAD     $4, Z21, Z21; \
	VPADDD     Z21, Z20, Z20; \
	PK_MINS(2048, (DI), Z22); \
	PK_FMAS(2048, (DI), Z20, Z22, acc)

#define P4K1_SB_AHEAD P4K1_SB_TO(P4K_PREFETCH, Z0)
#define P4K1_SB_STREAM P4K1_SB_TO(P4K_NO_PREFETCH, Z0)
#define P4K1_SB_RUNS2(acc) P4K1_SB_TO(P4K_PREFETCH, acc)

// func dotPackedQ4KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ4KVNNI(SB), NOSPLIT, $0-48
	PACKED_SB1(PACKED_NIBBLE_MASKS, P4K1_SB_AHEAD, $2368, $288, p4k_panel, p4k_block)

// func dotPackedQ4KVNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ4KVNNIStream(SB), NOSPLIT, $0-48
	PACKED_SB1(PACKED_NIBBLE_MASKS, P4K1_SB_STREAM, $2368, $288, p4ks_panel, p4ks_block)

// dotPackedQ4KVNNI over two runs of panels in step (PACKED_SB_RUNS2, streamtune.go), whole
// super-blocks in turn.
TEXT ·dotPackedQ4KVNNIRuns2(SB), NOSPLIT, $0-64
	PACKED_SB_RUNS2(PACKED_NIBBLE_MASKS, P4K1_SB_RUNS2, $2368, $288, p4kr_panel, p4kr_block)

// Many columns: the quants of chunk j of the super-block at SI, low nibbles of groups
// 8j..8j+7 in Z8-Z15, high nibbles (times 16) in Z16-Z23; the chunk's two scale vectors in
// Z26, Z27.
#define P4KN_CHUNK(j) \
	P4KX4_PREFETCH(j); \
	PACKED_SPLIT(Q4K_Q(j), SI, Z28, Z8, Z16); \
	PACKED_SPLIT(Q4K_Q(j)+64, SI, Z28, Z9, Z17); \
	PACKED_SPLIT(Q4K_Q(j)+128, SI, Z28, Z10, Z18); \
	PACKED_SPLIT(Q4K_Q(j)+192, SI, Z28, Z11, Z19); \
	PACKED_SPLIT(Q4K_Q(j)+256, SI, Z28, Z12, Z20); \
	PACKED_SPLIT(Q4K_Q(j)+320, SI, Z28, Z13, Z21); \
	PACKED_SPLIT(Q4K_Q(j)+384, SI, Z28, Z14, Z22); \
	PACKED_SPLIT(Q4K_Q(j)+448, SI, Z28, Z15, Z23); \
	VPMOVZXBD Q4K_SC(j)(SI), Z26; \
	VPMOVZXBD Q4K_SC(j)+16(SI), Z27

// Many columns: chunk j's products for the column with activations at base, its scaled sums
// added to sumi (the high nibbles' sum shifted down from 16 times its value first).
#define P4KN_COL(j, base, sumi) \
	PKN_DOTS(j, base); \
	VPSRAD $4, Z25, Z25; \
	PKN_SCALE(sumi)

// Four columns (activations at (DI), (DI)(DX*1), (R14), (R14)(DX*1)), integer sums Z4-Z7.
#define P4K4_CHUNK(j) \
	P4KN_CHUNK(j); \
	PKN_COLS4(P4KN_COL, j)

// func dotPackedQ4Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// Four prepared activation rows ystride bytes apart, column c's results at out + c·ostride
// bytes; each column's arithmetic is that of dotPackedQ4KVNNI, so the results are identical.
TEXT ·dotPackedQ4Kx4VNNI(SB), NOSPLIT, $0-64
	PACKED_COLS_ARGS

p4kx4_panel:
	PK4_PANEL

p4kx4_block:
	ZERO_Z4(Z4, Z5, Z6, Z7)
	P4K4_CHUNK(0)
	P4K4_CHUNK(1)
	P4K4_CHUNK(2)
	P4K4_CHUNK(3)
	PKN_FINISH(2048, (DI), Z4, Z0)
	PKN_FINISH(2048, (DI)(DX*1), Z5, Z1)
	PKN_FINISH(2048, (R14), Z6, Z2)
	PKN_FINISH(2048, (R14)(DX*1), Z7, Z3)
	PK4_NEXT(2368, p4kx4_block)

	PACKED_STORE4(Z0, Z1, Z2, Z3)
	PACKED_NEXT_PANEL(p4kx4_panel)
	VZEROUPPER
	RET

// Eight columns group by group, as Q6_K's eight-column kernel: each group's 64 bytes are
// loaded and split as the columns need them, rather than a chunk's eight groups at once
// (P4KN_CHUNK), so that a late line holds up one group's products and not a chunk's.
// Registers: Z0-Z7 the columns' totals, Z16-Z23 their low sub-block's sums, Z24-Z31 their high
// one's (16 times their value), Z8, Z9 the chunk's scales, Z10-Z12 scratch; the masks are
// broadcast from memory. The low sub-block's scales are taken 16 times so that the totals are
// 16·sumi, shifted down once a super-block (P4K8_FINISH).
#define P4K8_GROUP(j, g) \
	VMOVDQU64   Q4K_Q(j)+64*g(SI), Z10; \
	VPANDD.BCST p4k0f<>(SB), Z10, Z11; \
	VPANDD.BCST p4kf0<>(SB), Z10, Z12; \
	PK8_DP(64*j+4*g, Z11, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23); \
	PK8_DP(64*j+32+4*g, Z12, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31)

#define P4K8_CHUNK(j) \
	P4KN_PREFETCH(j); \
	PK8_ZERO_SUMS; \
	P4K8_GROUP(j, 0); \
	P4K8_GROUP(j, 1); \
	P4K8_GROUP(j, 2); \
	P4K8_GROUP(j, 3); \
	P4K8_GROUP(j, 4); \
	P4K8_GROUP(j, 5); \
	P4K8_GROUP(j, 6); \
	P4K8_GROUP(j, 7); \
	VPMOVZXBD Q4K_SC(j)(SI), Z8; \
	VPSLLD    $4, Z8, Z8; \
	VPMOVZXBD Q4K_SC(j)+16(SI), Z9; \
	PK8_SCALE_SUMS

#define P4K8_FINISH(c, base, sumi) \
	VPSRAD $4, sumi, sumi; \
	PK8_FINISH(c, base, sumi)

#define P4K8_SB \
	P4K8_CHUNK(0); \
	P4K8_CHUNK(1); \
	P4K8_CHUNK(2); \
	P4K8_CHUNK(3); \
	PK8_FINISH_WITH(2048, P4K8_FINISH)

// func dotPackedQ4Kx8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// dotPackedQ4Kx4VNNI for eight prepared activation rows.
TEXT ·dotPackedQ4Kx8VNNI(SB), NOSPLIT, $512-64
	PACKED_SB8(EMPTY, P4K8_SB, 2368, 288, p4kx8_panel, p4kx8_block)

// AVX2 (PAK_DOT1, and four columns below): packed Q4_K. Per group, the nibbles' products with
// the activations add into int16 lanes (16 products of at most 15·128 a lane over a chunk's
// eight groups), widened and scaled once a sub-block (PAK_ADD1_AT, PA4K_WIDEN4).

// One column, both halves: group g of chunk j, the activation quants of its low sub-block in
// Y6 and of its high one in Y7, half h's weights into the int16 sums lsum and hsum.
#define PA4K_HALF1(j, g, h, lsum, hsum) PA_NIBBLES_DOT(Q4K_Q(j)+64*g+32*h, Y6, Y7, lsum, hsum)

#define PA4K_GROUP1(j, g) \
	VPBROADCASTD 64*j+4*g(DI), Y6; \
	VPBROADCASTD 64*j+32+4*g(DI), Y7; \
	PA4K_HALF1(j, g, 0, Y8, Y9); \
	PA4K_HALF1(j, g, 1, Y10, Y11)

// Chunk j (sub-blocks 2j and 2j+1) of both halves into Y12 (rows 0-7) and Y13 (rows 8-15),
// prefetching with pf.
#define PA4K_CHUNK1(pf, j) \
	pf(j); \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PA4K_GROUP1(j, 0); \
	PA4K_GROUP1(j, 1); \
	PA4K_GROUP1(j, 2); \
	PA4K_GROUP1(j, 3); \
	PA4K_GROUP1(j, 4); \
	PA4K_GROUP1(j, 5); \
	PA4K_GROUP1(j, 6); \
	PA4K_GROUP1(j, 7); \
	PAK_ADD1(Q4K_SCT(j), j)

#define PA4K_SB1_WITH(pf) \
	PA4K_CHUNK1(pf, 0); \
	PA4K_CHUNK1(pf, 1); \
	PA4K_CHUNK1(pf, 2); \
	PA4K_CHUNK1(pf, 3)

#define PA4K_SB1 PA4K_SB1_WITH(P4K_PREFETCH)
#define PA4K_SB1_STREAM PA4K_SB1_WITH(P4K_NO_PREFETCH)

#define PA4K_FINISH(h, base, sumi, acc, yd, mins, d, m) PAK_FINISH(2048, h, base, sumi, acc, yd, mins, d, m)

// func dotPackedQ4KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ4KAVX2(SB), NOSPLIT, $0-48
	PAK_DOT1(PA_CONSTS, PA4K_SB1, PA4K_FINISH, $2368, pa4k_panel, pa4k_block)

// func dotPackedQ4KAVX2Stream(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ4KAVX2Stream(SB), NOSPLIT, $0-48
	PAK_DOT1(PA_CONSTS, PA4K_SB1_STREAM, PA4K_FINISH, $2368, pa4ks_panel, pa4ks_block)

// dotPackedQ4KAVX2Stream over two runs of panels in step (PAK_RUNS2, streamtune.go).
TEXT ·dotPackedQ4KAVX2Runs2(SB), NOSPLIT, $128-64
	PAK_RUNS2(PA_CONSTS, PA4K_PAIR_RUNS2, $2368, pa4kr_panel, pa4kr_block)

// The int16 sums Y4-Y11 at zero (for kernels whose first group adds to them).
#define PAK_SUMS4_ZERO \
	ZERO_Y4(Y4, Y5, Y6, Y7); \
	ZERO_Y4(Y8, Y9, Y10, Y11)

// Chunk j of half h in four columns: its prefetches, then zero (PAK_SUMS4_ZERO or EMPTY), its
// first group by first and the other seven by group (the AVX-VNNI kernel's PV4K_GROUP4 for
// both).
#define P4K_GROUPS4(zero, first, group, j, h) \
	P4KA_PREFETCH(j, h); \
	zero; \
	GROUPS8(first, group, j, h)

// Four columns, both halves of the panel's rows at once, one sub-block at a time: a chunk's
// low nibbles (its low sub-block), then its high ones. A group's quants of rows 0-7 in Y12 and
// of rows 8-15 in Y13 meet each column's broadcast activation quants, so one broadcast serves
// two VPMADDUBSW, where taking one half of the rows at a time, with the low and high
// sub-blocks' int16 sums side by side, a broadcast served one (256 MiB from memory, one thread,
// Zen 3: 65-73 against 78-91 ns a super-block and column; in the level-2 cache 51-61 against
// 65-84; same bits). The int16 sums of column c: rows 0-7 in Y0+c, rows 8-15 in Y4+c (16
// products of at most 15·128 a lane over a sub-block's eight groups); a sub-block's are
// widened and scaled by one VPMADDWD with the rows' scales and added to the column's integer
// sums, rows 0-7 in Y8+c and rows 8-15 in the frame at 256+32c. The float sums are in the frame
// as the Q4_0 kernel's (PV_FRAME_ZERO). Y14 holds the broadcast, Y15 a product.
#define PA4K_COL4(act, base, s0, s1) \
	VPBROADCASTD act base, Y14; \
	VPMADDUBSW   Y14, Y12, Y15; \
	VPADDW       Y15, s0, s0; \
	VPMADDUBSW   Y14, Y13, Y15; \
	VPADDW       Y15, s1, s1

// PA4K_COL4 of a sub-block's first group: the sums start at its products.
#define PA4K_COL4_FIRST(act, base, s0, s1) \
	VPBROADCASTD act base, Y14; \
	VPMADDUBSW   Y14, Y12, s0; \
	VPMADDUBSW   Y14, Y13, s1

#define PA4K_COLS4(col, act) \
	col(act, (DI), Y0, Y4); \
	col(act, (DI)(DX*1), Y1, Y5); \
	col(act, (R14), Y2, Y6); \
	col(act, (R14)(DX*1), Y3, Y7)

// Group g of the chunk at SI: its low nibbles (sub-block 2j, activations at 4g) or its high
// ones (2j+1, at 32+4g) by col.
#define PA4K_LOW4(col, g) \
	VMOVDQU 64*g(SI), Y12; \
	VMOVDQU 64*g+32(SI), Y13; \
	VPAND   ·paNibbles(SB), Y12, Y12; \
	VPAND   ·paNibbles(SB), Y13, Y13; \
	PA4K_COLS4(col, 4*g)

#define PA4K_HIGH4(col, g) \
	VMOVDQU 64*g(SI), Y12; \
	VMOVDQU 64*g+32(SI), Y13; \
	VPSRLW  $4, Y12, Y12; \
	VPSRLW  $4, Y13, Y13; \
	VPAND   ·paNibbles(SB), Y12, Y12; \
	VPAND   ·paNibbles(SB), Y13, Y13; \
	PA4K_COLS4(col, 32+4*g)

#define PA4K_SUB4(half) \
	half(PA4K_COL4_FIRST, 0); \
	half(PA4K_COL4, 1); \
	half(PA4K_COL4, 2); \
	half(PA4K_COL4, 3); \
	half(PA4K_COL4, 4); \
	half(PA4K_COL4, 5); \
	half(PA4K_COL4, 6); \
	half(PA4K_COL4, 7)

// Column c's int16 sums s0 (rows 0-7) and s1 (rows 8-15) scaled by Y12 and Y13, into its
// integer sums t0 and the frame's.
#define PA4K_WIDEN_COL(c, s0, s1, t0) \
	VPMADDWD Y12, s0, s0; \
	VPADDD   s0, t0, t0; \
	VPMADDWD Y13, s1, s1; \
	VPADDD   256+32*c(SP), s1, s1; \
	VMOVDQU  s1, 256+32*c(SP)

// Every column's sums of the sub-block whose scales are at off(R13) (rows 0-7; rows 8-15
// eight bytes on).
#define PA4K_WIDEN4(off) \
	PAK_SCALES_AT(off, (R13), Y12); \
	PAK_SCALES_AT(off+8, (R13), Y13); \
	PA4K_WIDEN_COL(0, Y0, Y4, Y8); \
	PA4K_WIDEN_COL(1, Y1, Y5, Y9); \
	PA4K_WIDEN_COL(2, Y2, Y6, Y10); \
	PA4K_WIDEN_COL(3, Y3, Y7, Y11)

// A chunk (PAK_SB4_LOOP's, whose half argument is unused here): its eight lines fetched six
// super-blocks on into the level-2 cache and one on into the level-1 cache (as
// P4KN_PREFETCH), then its two sub-blocks. From memory (three alternating rounds) the far ones
// alone read 0.95-1.01x as fast, far ones three super-blocks on 0.75-0.91x, near ones alone two
// on 0.76-0.86x.
#define PA4K_CHUNK4(unused) \
	PACKED_PREFETCH8_L2(6*2368-64, SI); \
	PACKED_PREFETCH8(2368-64, SI); \
	PA4K_SUB4(PA4K_LOW4); \
	PA4K_WIDEN4(0); \
	PA4K_SUB4(PA4K_HIGH4); \
	PA4K_WIDEN4(16)

// The super-block's other four lines (the scales of chunks 0 and 1, of 2 and 3, the mins).
#define PA4K_PF_LINE(off) \
	PREFETCHT1 6*2368-64+off(SI); \
	PREFETCHT0 2368-64+off(SI)

// Column c's super-block totals (rows 0-7 in sumi) into its float sums in the frame.
#define PA4K_FINISH4(c, base, sumi) \
	VBROADCASTSS 256 base, Y14; \
	VMOVUPS      32*c(SP), Y15; \
	PA4K_FINISH(0, base, sumi, Y15, Y14, Y12, Y13, Y0); \
	VMOVUPS      Y15, 32*c(SP); \
	VMOVUPS      256+32*c(SP), Y1; \
	VMOVUPS      128+32*c(SP), Y15; \
	PA4K_FINISH(1, base, Y1, Y15, Y14, Y12, Y13, Y0); \
	VMOVUPS      Y15, 128+32*c(SP)

// func dotPackedQ4Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ4Kx4AVX2(SB), NOSPLIT, $384-64
	PACKED_ARGS4

pa4kx4_panel:
	PACKED_SB_START
	LEAQ    (DI)(DX*2), R14
	PV_FRAME_ZERO

pa4kx4_block:
	ZERO_Y4(Y8, Y9, Y10, Y11)
	VMOVUPS Y8, 256(SP)
	VMOVUPS Y8, 288(SP)
	VMOVUPS Y8, 320(SP)
	VMOVUPS Y8, 352(SP)
	PAK_SB4_LOOP(PA4K_CHUNK4, 1024, 0, pa4kx4_n, pa4kx4_q)
	PA4K_PF_LINE(1024)
	PA4K_PF_LINE(2112)
	PA4K_PF_LINE(2176)
	PA4K_PF_LINE(2240)
	PA4K_FINISH4(0, (DI), Y8)
	PA4K_FINISH4(1, (DI)(DX*1), Y9)
	PA4K_FINISH4(2, (R14), Y10)
	PA4K_FINISH4(3, (R14)(DX*1), Y11)
	ADDQ    $2368, SI
	ADDQ    $288, DI
	ADDQ    $288, R14
	DECQ    CX
	JNZ     pa4kx4_block

	PV_FRAME_STORE
	PACKED_NEXT_PANEL(pa4kx4_panel)
	VZEROUPPER
	RET

// AVX-VNNI (PVK_COLS4, PVK_ADD4): packed Q4_K in four columns, one half of the rows at a
// time, its chunks unrolled: the AVX2 kernel's form before it took a loop and then both halves
// at once (neither measured on a CPU with AVX-VNNI). Group g of chunk j of half h: low nibbles in Y12, high in Y13 (Y15 = 0x0f bytes).
#define PV4K_GROUP4(j, g, h) \
	VMOVDQU Q4K_Q(j)+64*g+32*h(SI), Y13; \
	VPAND   Y15, Y13, Y12; \
	VPSRLW  $4, Y13, Y13; \
	VPAND   Y15, Y13, Y13; \
	PVK_COLS4(64*j+4*g, 64*j+32+4*g)

// Chunk j of half h (its sums int32 here). Y15 is loaded again each chunk: the super-block's
// finish uses it.
#define PV4K_CHUNK4(j, h) \
	VMOVDQU ·paNibbles(SB), Y15; \
	P4K_GROUPS4(PAK_SUMS4_ZERO, PV4K_GROUP4, PV4K_GROUP4, j, h); \
	PVK_ADD4(Q4K_SCT(j), j, h)

#define PV4K_BODY4(h) \
	PV4K_CHUNK4(0, h); \
	PV4K_CHUNK4(1, h); \
	PV4K_CHUNK4(2, h); \
	PV4K_CHUNK4(3, h); \
	PAK_FINISH4(PA4K_FINISH, h)

// func dotPackedQ4Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ4Kx4AVXVNNI(SB), NOSPLIT, $128-64
	PA_SB_DOT4(PV4K_BODY4, $2368, $288, pv4kx4_panel, pv4kx4_b0, pv4kx4_b1)

// VPSHUFB indices for PAK_SCALES_AT (of every K-quant kernel, hence not file-local): in each
// 128-bit lane of eight broadcast scale bytes, byte r of the lane's rows (rows 0-3, then 4-7)
// to both words of its 32-bit lane, the high bytes zero.
DATA ·pakScaleWords+0(SB)/8, $0x8001800180008000
DATA ·pakScaleWords+8(SB)/8, $0x8003800380028002
DATA ·pakScaleWords+16(SB)/8, $0x8005800580048004
DATA ·pakScaleWords+24(SB)/8, $0x8007800780068006
GLOBL ·pakScaleWords(SB), RODATA|NOPTR, $32

DATA p4k0f<>+0(SB)/4, $0x0f0f0f0f
GLOBL p4k0f<>(SB), RODATA|NOPTR, $4
DATA p4kf0<>+0(SB)/4, $0xf0f0f0f0
GLOBL p4kf0<>(SB), RODATA|NOPTR, $4
