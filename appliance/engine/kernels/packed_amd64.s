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
#define P16_COL_HI(base, acc, sh) P16_COL_GEN(base, acc, sh, P16_OFFSET, P16_NO_MIN)

// The first sum starts at the quant offset term (Q4_0, Q5_0), or at zero (Q4_1, Q5_1, whose
// offsets m, in Z2, meet the activations' sum term in one more FMA).
#define P16_OFFSET(base) VPBROADCASTD 36 base, Z21
#define P16_ZERO(base) VPXORD Z21, Z21, Z21
#define P16_NO_MIN(base, acc)
#define P16_MIN(base, acc) VFMADD231PS.BCST 36 base, Z2, acc

#define P16_COL_GEN(base, acc, sh, init, min) \
	VMULPS.BCST   32 base, Z4, Z20; \
	init(base); \
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
	VFMADD231PS   Z20, Z21, acc; \
	min(base, acc)

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

// The kernels' prefetches, two groups ahead (a group is 2304 bytes: eight blocks of quants and
// their scales): per block, its counterpart's four lines of quants two groups on; per group,
// the four lines of scales two groups on (R11 = this group's). Two groups ahead decoded
// faster than one (t1 1.10x, t2 1.03x, batch 8 1.11x) and than three or four. The
// eight-column kernel prefetches into the level-2 cache (_L2): its lines wait longer for the
// slower arithmetic of eight columns, and in the level-1 cache they were evicted first (a Zen 4
// host, one thread: eight sequences of a Q4_0 model decoded 1.06-1.08x faster, 256 MiB from
// memory 2.85-2.90 ns a block and column against 2.98-3.03).
#define PF16_DIST 4608

#define P16_PREFETCH PF4_LINES(PREFETCHT0, PF16_DIST, SI)
#define P16_PF_GROUP PF4_LINES(PREFETCHT0, PF16_DIST, R11)
#define P16_PREFETCH_L2 PF4_LINES(PREFETCHT1, PF16_DIST, SI)
#define P16_PF_GROUP_L2 PF4_LINES(PREFETCHT1, PF16_DIST, R11)

// Far and near prefetches (the many-column kernels of several types, each file's *N_PREFETCH):
// every line six groups on into the level-2 cache, and one group on from there into the
// level-1 cache. A many-column kernel spends several times as long on a line as the one-column
// one, so prefetching once, a group or two on, either reached too short a way ahead of the
// memory's latency or (further) brought lines into the level-1 cache that were evicted before
// use; the far prefetch hides the memory, the near one the level-2 cache. Over 256 MiB from
// memory at one thread (BenchmarkPackedKernels, BenchmarkPackedQ8_0Kernels; Zen 4, ns a block
// or super-block and column, far and near against the one prefetch before): Q4_0 four columns
// 2.91-2.97 against 3.25; Q8_0 four 4.60 against 5.87, eight 2.96 against 4.17; Q4_K four
// 27.7 against 31.3, eight 23.3-24.1 against 25.9-26.5; Q4_1 four 3.16 against 3.61; Q5_1 four
// 3.61 against 5.31; Q5_0 four 3.33 against 3.48. Q4_0's and Q5_0's eight-column kernels, already
// near their speed on cached weights, gained nothing and keep their one prefetch.
#define P16X4_PREFETCH PF4_LINES(PREFETCHT1, 6*2304, SI); PF4_LINES(PREFETCHT0, 2304, SI)
#define P16X4_PF_GROUP PF4_LINES(PREFETCHT1, 6*2304, R11); PF4_LINES(PREFETCHT0, 2304, R11)

#define P16_NEXT_BLOCK \
	ADDQ $256, SI; \
	ADDQ $32, R11

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

// A block's fifth bits, then its quant group q at P5_Q(q) (packedq50.go).
#define P5_Q(q) (64+64*(q))

// The block at ptr (its fifth bits, then its quants) with scales at sc: Z4 = dx, Z8-Z15 as for
// P16_COL_HI(..., $3). Group q's low elements need bit 2q of each byte at bit 4, its high
// elements bit 2q+1 at bit 7: shifts of 4, 2, 0, -2 and 6, 4, 2, 0.
#define P5_UNPACK(ptr, sc) \
	VCVTPH2PS sc, Z4; \
	VMOVDQU64 (ptr), Z3; \
	VPSLLW    $6, Z3, Z23; \
	VPSLLW    $4, Z3, Z24; \
	VPSLLW    $2, Z3, Z25; \
	VPSRLW    $2, Z3, Z26; \
	P5_SPLIT(P5_Q(0), ptr, Z24, Z23, Z8, Z9); \
	P5_SPLIT(P5_Q(1), ptr, Z25, Z24, Z10, Z11); \
	P5_SPLIT(P5_Q(2), ptr, Z3, Z25, Z12, Z13); \
	P5_SPLIT(P5_Q(3), ptr, Z26, Z3, Z14, Z15)

#define P5_COL(base, acc) P16_COL_HI(base, acc, $3)

// The block at SI (quants) and R11 (scales).
#define P5_BLOCK P5_UNPACK(SI, (R11))

// The kernels' prefetches, two groups ahead (a group is 2816 bytes; see P16_PREFETCH), into
// the level-2 cache for the many-column kernels (_L2): 256 MiB from memory at one thread, Zen 4,
// ns a block and column against PREFETCHT0: four columns 3.61-3.67 against 4.26-4.35, eight
// 3.02-3.05 against 3.40-3.44, AVX2's four 6.77-6.83 against 7.58-7.75 (one column: no gain).
#define PF5_DIST 5632

#define P5_PREFETCH_WITH(pf) \
	PF4_LINES(pf, PF5_DIST, SI); \
	pf PF5_DIST+256(SI)

#define P5_PREFETCH P5_PREFETCH_WITH(PREFETCHT0)
#define P5_PF_GROUP PF4_LINES(PREFETCHT0, PF5_DIST, R11)
#define P5_PREFETCH_L2 P5_PREFETCH_WITH(PREFETCHT1)
#define P5_PF_GROUP_L2 PF4_LINES(PREFETCHT1, PF5_DIST, R11)

// The next panel's copy of a block's lines (PACKEDA_DOT4's second half).
#define P5_PF_NEXT \
	PA_PF_NEXT4(SI); \
	PREFETCHT1 256(SI)(R13*1)

#define P5_NEXT_BLOCK \
	ADDQ $320, SI; \
	ADDQ $32, R11

// Packed Q4_1 and Q5_1 (packedq1.go): the blocks of Q4_0 and Q5_0, each after its line of
// scales (the rows' d's, then their m's, which go to Z2), the first sum started at zero, and
// acc += m·sy after each block's FMA.
#define P41_COL(base, acc) P16_COL_GEN(base, acc, $4, P16_ZERO, P16_MIN)
#define P51_COL(base, acc) P16_COL_GEN(base, acc, $3, P16_ZERO, P16_MIN)

#define P41_BLOCK \
	P16_UNPACK(SI, (R11)); \
	VCVTPH2PS 32(R11), Z2

#define P51_BLOCK \
	P5_UNPACK(SI, (R11)); \
	VCVTPH2PS 32(R11), Z2

#define P41_NEXT_BLOCK \
	ADDQ $256, SI; \
	ADDQ $64, R11

#define P51_NEXT_BLOCK \
	ADDQ $320, SI; \
	ADDQ $64, R11

// Eight blocks ahead (2560 bytes for Q4_1, 3072 for Q5_1): the block's line of scales and its
// lines of quants.
#define P41_PREFETCH \
	PREFETCHT0 2560-64(SI); \
	PREFETCHT0 2560(SI); \
	PREFETCHT0 2560+64(SI); \
	PREFETCHT0 2560+128(SI); \
	PREFETCHT0 2560+192(SI)

#define P51_PREFETCH \
	PREFETCHT0 3072-64(SI); \
	PREFETCHT0 3072(SI); \
	PREFETCHT0 3072+64(SI); \
	PREFETCHT0 3072+128(SI); \
	PREFETCHT0 3072+192(SI); \
	PREFETCHT0 3072+256(SI)

// P41_PREFETCH and P51_PREFETCH with a far prefetch (see P16X4_PREFETCH), for the many-column
// kernels (the AVX2 four-column ones in their first half: Q5_1 6.70 against 8.77 ns a block and
// column over 256 MiB, Q4_1 4.52 against 4.72).
#define P41N_PREFETCH \
	PREFETCHT1 6*2560-64(SI); \
	PF4_LINES(PREFETCHT1, 6*2560, SI); \
	P41_PREFETCH

#define P51N_PREFETCH \
	PREFETCHT1 6*3072-64(SI); \
	PF4_LINES(PREFETCHT1, 6*3072, SI); \
	PREFETCHT1 6*3072+256(SI); \
	P51_PREFETCH

// The four-column Q5_0 kernel's far and near prefetches (see P16X4_PREFETCH).
#define P5N_PREFETCH PF4_LINES(PREFETCHT1, 3*PF5_DIST, SI); PREFETCHT1 3*PF5_DIST+256(SI); PF4_LINES(PREFETCHT0, 2816, SI); PREFETCHT0 2816+256(SI)
#define P5N_PF_GROUP PF4_LINES(PREFETCHT1, 3*PF5_DIST, R11); PF4_LINES(PREFETCHT0, 2816, R11)

TEXT ·dotPackedQ4_0VNNI(SB), NOSPLIT, $0-48
	PACKED_DOT1(EMPTY, LEGACY_GROUP8, P16_PREFETCH, P16_PF_GROUP, P16_BLOCK, P16_COL, P16_NEXT_BLOCK, p16_panel, p16_group, p16_block)

// dotPackedQ4_0VNNI without software prefetches (streamtune.go): with the hardware prefetcher
// alone, a Zen 4 host decoded a Q4_0 model 1.05x faster at one thread.
TEXT ·dotPackedQ4_0VNNIStream(SB), NOSPLIT, $0-48
	PACKED_DOT1(EMPTY, LEGACY_GROUP8, EMPTY, EMPTY, P16_BLOCK, P16_COL, P16_NEXT_BLOCK, p16s_panel, p16s_group, p16s_block)

// dotPackedQ4_0VNNI over two runs of panels in step (PACKED_RUNS2, streamtune.go).
TEXT ·dotPackedQ4_0VNNIRuns2(SB), NOSPLIT, $0-64
	PACKED_RUNS2(EMPTY, LEGACY_GROUP8, P16_PREFETCH, P16_PF_GROUP, P16_BLOCK, P16_COL, P16_NEXT_BLOCK, p16r_panel, p16r_group, p16r_block)

TEXT ·dotPackedQ4_0x4VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT4(EMPTY, LEGACY_GROUP8, P16X4_PREFETCH, P16X4_PF_GROUP, P16_BLOCK, P16_COL, P16_NEXT_BLOCK, p16x4_panel, p16x4_group, p16x4_block)

TEXT ·dotPackedQ4_0x8VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT8(EMPTY, LEGACY_GROUP8, P16_PREFETCH_L2, P16_PF_GROUP_L2, P16_BLOCK, P16_COL, P16_NEXT_BLOCK, p16x8_panel, p16x8_group, p16x8_block)

TEXT ·dotPackedQ5_0VNNI(SB), NOSPLIT, $0-48
	PACKED_DOT1(P5_MASKS, LEGACY_GROUP8, P5_PREFETCH, P5_PF_GROUP, P5_BLOCK, P5_COL, P5_NEXT_BLOCK, p5_panel, p5_group, p5_block)

// dotPackedQ5_0VNNI without software prefetches (streamtune.go): 256 MiB from memory at one
// thread, Zen 4, 28.6-31.5 GB/s against 26.5-30.4 with them (BenchmarkPackedStreamRead).
TEXT ·dotPackedQ5_0VNNIStream(SB), NOSPLIT, $0-48
	PACKED_DOT1(P5_MASKS, LEGACY_GROUP8, EMPTY, EMPTY, P5_BLOCK, P5_COL, P5_NEXT_BLOCK, p5s_panel, p5s_group, p5s_block)

TEXT ·dotPackedQ5_0x4VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT4(P5_MASKS, LEGACY_GROUP8, P5N_PREFETCH, P5N_PF_GROUP, P5_BLOCK, P5_COL, P5_NEXT_BLOCK, p5x4_panel, p5x4_group, p5x4_block)

TEXT ·dotPackedQ5_0x8VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT8(P5_MASKS, LEGACY_GROUP8, P5_PREFETCH_L2, P5_PF_GROUP_L2, P5_BLOCK, P5_COL, P5_NEXT_BLOCK, p5x8_panel, p5x8_group, p5x8_block)

TEXT ·dotPackedQ4_1VNNI(SB), NOSPLIT, $0-48
	PACKED_DOT1(EMPTY, LEGACY_GROUP1, EMPTY, EMPTY, P41_BLOCK, P41_COL, P41_NEXT_BLOCK, p41_panel, p41_group, p41_block)

TEXT ·dotPackedQ4_1x4VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT4(EMPTY, LEGACY_GROUP1, P41N_PREFETCH, EMPTY, P41_BLOCK, P41_COL, P41_NEXT_BLOCK, p41x4_panel, p41x4_group, p41x4_block)

TEXT ·dotPackedQ4_1x8VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT8(EMPTY, LEGACY_GROUP1, P41N_PREFETCH, EMPTY, P41_BLOCK, P41_COL, P41_NEXT_BLOCK, p41x8_panel, p41x8_group, p41x8_block)

TEXT ·dotPackedQ5_1VNNI(SB), NOSPLIT, $0-48
	PACKED_DOT1(P5_MASKS, LEGACY_GROUP1, EMPTY, EMPTY, P51_BLOCK, P51_COL, P51_NEXT_BLOCK, p51_panel, p51_group, p51_block)

TEXT ·dotPackedQ5_1x4VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT4(P5_MASKS, LEGACY_GROUP1, P51N_PREFETCH, EMPTY, P51_BLOCK, P51_COL, P51_NEXT_BLOCK, p51x4_panel, p51x4_group, p51x4_block)

TEXT ·dotPackedQ5_1x8VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT8(P5_MASKS, LEGACY_GROUP1, P51N_PREFETCH, EMPTY, P51_BLOCK, P51_COL, P51_NEXT_BLOCK, p51x8_panel, p51x8_group, p51x8_block)

// AVX2 (PACKEDA_DOT1, PACKEDA_DOT4): packed Q4_0 with the nibbles shifted down to their
// values. Per block, the int16 sums of each half's eight rows, then as P16_COL: the offset
// term added in int32, one FMA by dx·yd.

// One column: group q's activation quants in Y6 (low elements) and Y7 (high); half h of the
// group's weights into the int16 sums sum.
#define PA4_HALF1(q, h, sum) PA_NIBBLES_DOT(64*q+32*h, Y6, Y7, sum, sum)

#define PA4_GROUP1(q) \
	VPBROADCASTD 4*q(DI), Y6; \
	VPBROADCASTD 16+4*q(DI), Y7; \
	PA4_HALF1(q, 0, Y8); \
	PA4_HALF1(q, 1, Y9)

// The int16 sums sum of eight rows, widened and started at the offset term (Y10), converted
// and added to acc by one FMA with the rows' dx (fp16 at sc) times yd (Y11).
#define PA4_FMA(sum, sc, acc) \
	VPMADDWD    Y14, sum, sum; \
	VPADDD      Y10, sum, sum; \
	VCVTDQ2PS   sum, sum; \
	VCVTPH2PS   sc, Y4; \
	VMULPS      Y11, Y4, Y4; \
	VFMADD231PS Y4, sum, acc

// A block's four groups, into Y8 (rows 0-7) and Y9 (rows 8-15) from zero.
#define PA4_GROUPS1 \
	VPXOR        Y8, Y8, Y8; \
	VPXOR        Y9, Y9, Y9; \
	PA4_GROUP1(0); \
	PA4_GROUP1(1); \
	PA4_GROUP1(2); \
	PA4_GROUP1(3)

#define PA4_BLOCK1 PA4_BLOCK1_TO(Y0, Y3)

#define PA4_BLOCK1_TO(a0, a1) \
	PA4_GROUPS1; \
	VPBROADCASTD 36(DI), Y10; \
	VBROADCASTSS 32(DI), Y11; \
	PA4_FMA(Y8, (R11), a0); \
	PA4_FMA(Y9, 16(R11), a1)

// The twin run's block (PACKEDA_RUNS2), into Y5 and Y12 (free in a block).
#define PA4_BLOCK1_TWIN PA4_BLOCK1_TO(Y5, Y12)

// The column at base: its int32 sum started at the offset term (at 36), converted and added
// to acc by one FMA with the rows' dx (Y12) times yd; t and Y13 scratch.
#define PA_OFFSET_FMA(base, sum, acc, t) \
	VPBROADCASTD 36 base, t; \
	VPADDD       t, sum, sum; \
	VCVTDQ2PS    sum, sum; \
	VBROADCASTSS 32 base, t; \
	VMULPS       t, Y12, Y13; \
	VFMADD231PS  Y13, sum, acc

TEXT ·dotPackedQ4_0AVX2(SB), NOSPLIT, $0-48
	PACKEDA_DOT1(PA_CONSTS, LEGACY_GROUP8, P16_PREFETCH, P16_PF_GROUP, PA4_BLOCK1, P16_NEXT_BLOCK, pa4_panel, pa4_group, pa4_block)

// dotPackedQ4_0AVX2 without software prefetches (streamtune.go).
TEXT ·dotPackedQ4_0AVX2Stream(SB), NOSPLIT, $0-48
	PACKEDA_DOT1(PA_CONSTS, LEGACY_GROUP8, EMPTY, EMPTY, PA4_BLOCK1, P16_NEXT_BLOCK, pa4s_panel, pa4s_group, pa4s_block)

// dotPackedQ4_0AVX2 over two runs of panels in step (PACKEDA_RUNS2, streamtune.go).
TEXT ·dotPackedQ4_0AVX2Runs2(SB), NOSPLIT, $0-64
	PACKEDA_RUNS2(PA_CONSTS, LEGACY_GROUP8, PA4_BLOCK1, PA4_BLOCK1_TWIN, Y5, Y12, P16_NEXT_BLOCK, pa4r_panel, pa4r_group, pa4r_block)

// AVX-VNNI (PV_DOT4): packed Q4_0 in four columns. Group q's weights, both halves: the low
// nibbles in Y8 (rows 0-7) and Y10 (rows 8-15), the high ones in Y9 and Y11 (Y15 = 0x0f
// bytes), against the activations of the low and the high elements (PV_COLS2).
#define PV4_WEIGHTS(q) \
	VMOVDQU 64*q(SI), Y9; \
	VMOVDQU 64*q+32(SI), Y11; \
	VPAND   Y15, Y9, Y8; \
	VPAND   Y15, Y11, Y10; \
	VPSRLW  $4, Y9, Y9; \
	VPSRLW  $4, Y11, Y11; \
	VPAND   Y15, Y9, Y9; \
	VPAND   Y15, Y11, Y11

#define PV4_GROUP(q) \
	PV4_WEIGHTS(q); \
	PV_COLS2(4*q, 16+4*q)

#define PV4_BLOCK \
	PV_START4; \
	PV4_GROUP(0); \
	PV4_GROUP(1); \
	PV4_GROUP(2); \
	PV4_GROUP(3); \
	PV_FINISH4(PV_FMA, PV_NO_M)

// func dotPackedQ4_0x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ4_0x4AVXVNNI(SB), NOSPLIT, $256-64
	PV_DOT4(PV_NIBBLES, LEGACY_GROUP8, P16_PREFETCH, P16_PF_GROUP, PV4_BLOCK, P16_NEXT_BLOCK, pv4x4_panel, pv4x4_group, pv4x4_block)

// AVX2 in four columns, both halves at once as the AVX-VNNI kernel (each broadcast activation
// word serves both halves' VPMADDUBSW): the int16 sums of a column's halves in Y0-Y7 (eight
// products of at most 2·15·128 a lane over the block's four groups), widened by VPMADDWD with
// Y14 = words of 1 and started at the offset term, then PV_FINISH4's float steps, which are
// the AVX2 kernel's.
#define PW_COL2(a, b, base, s0, s1) \
	PW_MADD2(a, base, Y8, Y10, s0, s1); \
	PW_MADD2(b, base, Y9, Y11, s0, s1)

// PW_COL2 of a block's first group: the sums start at its products, not at zero (8 of the
// block's 64 VPADDW fewer).
#define PW_COL2_FIRST(a, b, base, s0, s1) \
	VPBROADCASTD a base, Y12; \
	VPMADDUBSW   Y12, Y8, s0; \
	VPMADDUBSW   Y12, Y10, s1; \
	PW_MADD2(b, base, Y9, Y11, s0, s1)

// The activation word at a(base), broadcast, times the weights q0 and q1, added to s0 and s1.
#define PW_MADD2(a, base, q0, q1, s0, s1) \
	VPBROADCASTD a base, Y12; \
	VPMADDUBSW   Y12, q0, Y13; \
	VPADDW       Y13, s0, s0; \
	VPMADDUBSW   Y12, q1, Y13; \
	VPADDW       Y13, s1, s1

#define PW4_GROUP(col, q) \
	PV4_WEIGHTS(q); \
	COLS4_WITH(col, 4*q, 16+4*q, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)

// The column at base: its two int16 sums widened (Q4_1), and started at the offset term
// (Q4_0).
#define PW_WIDEN(a, b, base, s0, s1) \
	VPMADDWD Y14, s0, s0; \
	VPMADDWD Y14, s1, s1

#define PW_WIDEN_OFFSET(a, b, base, s0, s1) \
	PW_WIDEN(a, b, base, s0, s1); \
	VPBROADCASTD 36 base, Y12; \
	VPADDD       Y12, s0, s0; \
	VPADDD       Y12, s1, s1

// A block's four groups into the int32 sums Y0-Y7, each column's by widen.
#define PW4_SUMS(widen) \
	PW4_GROUP(PW_COL2_FIRST, 0); \
	PW4_GROUP(PW_COL2, 1); \
	PW4_GROUP(PW_COL2, 2); \
	PW4_GROUP(PW_COL2, 3); \
	VPCMPEQW Y14, Y14, Y14; \
	VPSRLW   $15, Y14, Y14; \
	COLS4_WITH(widen, 0, 0, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)

#define PW4_BLOCK \
	PW4_SUMS(PW_WIDEN_OFFSET); \
	PV_FINISH4(PV_FMA, PV_NO_M)

// func dotPackedQ4_0x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ4_0x4AVX2(SB), NOSPLIT, $256-64
	PV_DOT4(PV_NIBBLES, LEGACY_GROUP8, P16_PREFETCH, P16_PF_GROUP, PW4_BLOCK, P16_NEXT_BLOCK, pw4x4_panel, pw4x4_group, pw4x4_block)

// Q4_1: Q4_0's groups from zero (no offset term), then its m term; the rows' m (fp16 at
// 32(R11)) into Y10 and Y11.
#define PV41_BLOCK \
	ZERO_Y4(Y0, Y1, Y2, Y3); \
	ZERO_Y4(Y4, Y5, Y6, Y7); \
	PV4_GROUP(0); \
	PV4_GROUP(1); \
	PV4_GROUP(2); \
	PV4_GROUP(3); \
	PV41_FINISH

// Q4_1's block end (AVX-VNNI and AVX2): the rows' m into Y10, Y11, and every column's finish.
#define PV41_FINISH \
	VCVTPH2PS 32(R11), Y10; \
	VCVTPH2PS 48(R11), Y11; \
	PV_FINISH4(PV_FMA, PV_M_SY)

// func dotPackedQ4_1x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ4_1x4AVXVNNI(SB), NOSPLIT, $256-64
	PV_DOT4(PV_NIBBLES, LEGACY_GROUP1, P41_PREFETCH, EMPTY, PV41_BLOCK, P41_NEXT_BLOCK, pv41x4_panel, pv41x4_group, pv41x4_block)

// AVX2, both halves at once (PW4_BLOCK's sums, PV41_BLOCK's finish).
#define PW41_BLOCK \
	PW4_SUMS(PW_WIDEN); \
	PV41_FINISH

// func dotPackedQ4_1x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ4_1x4AVX2(SB), NOSPLIT, $256-64
	PV_DOT4(PV_NIBBLES, LEGACY_GROUP1, P41N_PREFETCH, EMPTY, PW41_BLOCK, P41_NEXT_BLOCK, pw41x4_panel, pw41x4_group, pw41x4_block)

// AVX2 (PACKEDA_DOT1, PACKEDA_DOT4): packed Q5_0, each nibble given its fifth bit (group q's
// low elements have theirs at bit 2q, its high elements at bit 2q+1: spreadQ5Bits) as the AVX2
// Q5_K kernels do; the values (0-31) of the low and of the high elements sum in int16 lanes
// of their own (four groups, 8 products of at most 31·128 a lane), and the block is added as
// P16_COL adds it (the offset term -16·Σy, one FMA by dx·yd).

// One column: group q (its fifth bits picked by lb and hb), its activation quants in Y6 (low
// elements) and Y7 (high), half h into the int16 sums lsum and hsum.
#define PA5_HALF1(q, h, lb, hb, lsum, hsum) PA5_NIBBLES_DOT(P5_Q(q)+32*h(SI), 32*h(SI), lb, hb, Y6, Y7, lsum, hsum)

#define PA5_GROUP1(q, lb, hb) \
	VPBROADCASTD 4*q(DI), Y6; \
	VPBROADCASTD 16+4*q(DI), Y7; \
	PA5_HALF1(q, 0, lb, hb, Y8, Y9); \
	PA5_HALF1(q, 1, lb, hb, Y10, Y11)

// The sums of eight rows, widened, added and started at the offset term (Y6), converted and
// added to acc by one FMA with the rows' dx (fp16 at sc) times yd (Y7).
#define PA5_FMA(lsum, hsum, sc, acc) \
	VPMADDWD    ·paWordOnes(SB), lsum, lsum; \
	VPMADDWD    ·paWordOnes(SB), hsum, hsum; \
	VPADDD      hsum, lsum, lsum; \
	VPADDD      Y6, lsum, lsum; \
	VCVTDQ2PS   lsum, lsum; \
	VCVTPH2PS   sc, Y4; \
	VMULPS      Y7, Y4, Y4; \
	VFMADD231PS Y4, lsum, acc

// The four groups, each with the shifts that bring its fifth bits to bit 4.
#define PA5_GROUPS1 \
	PA5_GROUP1(0, PB5_SHL4, PB5_SHL3); \
	PA5_GROUP1(1, PB5_SHL2, PB5_SHL1); \
	PA5_GROUP1(2, PB5_AS_IS, PB5_SHR1); \
	PA5_GROUP1(3, PB5_SHR2, PB5_SHR3)

#define PA5_BLOCK1 \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PA5_GROUPS1; \
	VPBROADCASTD 36(DI), Y6; \
	VBROADCASTSS 32(DI), Y7; \
	PA5_FMA(Y8, Y9, (R11), Y0); \
	PA5_FMA(Y10, Y11, 16(R11), Y3)

// Four columns, all sixteen registers in use (as PA8_BLOCK4): float sums Y0-Y3, int16 sums
// Y4-Y7 (low elements) and Y8-Y11 (high) of the columns.
#define PA5_GROUP4(q, h, lb, hb) \
	PA5_QUANTS4(P5_Q(q)+32*h, 32*h(SI), lb, hb); \
	PAK_COLS4(4*q, 16+4*q)

// PA5_FMA for the column at base, the rows' dx in Y12 (Y13 scratch).
#define PA5_FMA4(base, lsum, hsum, acc) \
	VPMADDWD ·paWordOnes(SB), lsum, lsum; \
	VPMADDWD ·paWordOnes(SB), hsum, hsum; \
	VPADDD   hsum, lsum, lsum; \
	PA_OFFSET_FMA(base, lsum, acc, Y13)

// The four groups of half h by group (PA5_GROUP4, or AVX-VNNI's PV5_GROUP4), each with the
// shifts that bring its fifth bits to bit 4.
#define PA5_GROUPS4_WITH(group, h) \
	group(0, h, PB5_SHL4, PB5_SHL3); \
	group(1, h, PB5_SHL2, PB5_SHL1); \
	group(2, h, PB5_AS_IS, PB5_SHR1); \
	group(3, h, PB5_SHR2, PB5_SHR3)

#define PA5_GROUPS4(h) PA5_GROUPS4_WITH(PA5_GROUP4, h)

#define PA5_BLOCK4(h) \
	ZERO_Y4(Y4, Y5, Y6, Y7); \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PA5_GROUPS4(h); \
	VCVTPH2PS 16*h(R11), Y12; \
	PA_EACH4_LH(PA5_FMA4)

TEXT ·dotPackedQ5_0AVX2(SB), NOSPLIT, $0-48
	PACKEDA_DOT1(PA5_CONSTS, LEGACY_GROUP8, P5_PREFETCH, P5_PF_GROUP, PA5_BLOCK1, P5_NEXT_BLOCK, pa5_panel, pa5_group, pa5_block)

// dotPackedQ5_0AVX2 without software prefetches (streamtune.go).
TEXT ·dotPackedQ5_0AVX2Stream(SB), NOSPLIT, $0-48
	PACKEDA_DOT1(PA5_CONSTS, LEGACY_GROUP8, EMPTY, EMPTY, PA5_BLOCK1, P5_NEXT_BLOCK, pa5s_panel, pa5s_group, pa5s_block)

TEXT ·dotPackedQ5_0x4AVX2(SB), NOSPLIT, $0-64
	PACKEDA_DOT4(EMPTY, LEGACY_GROUP8, P5_PREFETCH_L2, P5_PF_GROUP_L2, P5_PF_NEXT, PA_PF_NEXT4(R11), PA5_BLOCK4, P5_NEXT_BLOCK, pa5x4_panel, pa5x4_g0, pa5x4_b0, pa5x4_g1, pa5x4_b1)

// AVX2 (PACKEDA_DOT1, PACKEDA_DOT4): packed Q4_1 and Q5_1, Q4_0's and Q5_0's blocks each after
// its line of scales (the rows' d's, then their m's): the integer sums start at zero, and
// after the block's FMA by dx·yd a second adds m times the activation block's sum term
// (float32 at 36): acc = fma(m, sy, acc).

// One column, Q4_1: the half's int16 sums sum, the rows' d at dsc and m at msc; Y10 = sy,
// Y11 = yd (Y14 = words of 1).
#define PA41_FMA(sum, dsc, msc, acc) \
	VPMADDWD    Y14, sum, sum; \
	VCVTDQ2PS   sum, sum; \
	VCVTPH2PS   dsc, Y4; \
	VMULPS      Y11, Y4, Y4; \
	VFMADD231PS Y4, sum, acc; \
	VCVTPH2PS   msc, Y4; \
	VFMADD231PS Y10, Y4, acc

#define PA41_BLOCK1 \
	PA4_GROUPS1; \
	VBROADCASTSS 36(DI), Y10; \
	VBROADCASTSS 32(DI), Y11; \
	PA41_FMA(Y8, (R11), 32(R11), Y0); \
	PA41_FMA(Y9, 16(R11), 48(R11), Y3)

// Four columns: the converted sums sum of the column at base into acc, by dx (Y12) times yd,
// then m (in m) times the sum term; t scratch.
#define PA1_FMA4(base, sum, m, acc, t) \
	VBROADCASTSS 32 base, t; \
	VMULPS       t, Y12, t; \
	VFMADD231PS  t, sum, acc; \
	VBROADCASTSS 36 base, t; \
	VFMADD231PS  t, m, acc

// One column, Q5_1: Y6 = sy, Y7 = yd.
#define PA51_FMA(lsum, hsum, dsc, msc, acc) \
	VPMADDWD    ·paWordOnes(SB), lsum, lsum; \
	VPMADDWD    ·paWordOnes(SB), hsum, hsum; \
	VPADDD      hsum, lsum, lsum; \
	VCVTDQ2PS   lsum, lsum; \
	VCVTPH2PS   dsc, Y4; \
	VMULPS      Y7, Y4, Y4; \
	VFMADD231PS Y4, lsum, acc; \
	VCVTPH2PS   msc, Y4; \
	VFMADD231PS Y6, Y4, acc

#define PA51_BLOCK1 \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PA5_GROUPS1; \
	VBROADCASTSS 36(DI), Y6; \
	VBROADCASTSS 32(DI), Y7; \
	PA51_FMA(Y8, Y9, (R11), 32(R11), Y0); \
	PA51_FMA(Y10, Y11, 16(R11), 48(R11), Y3)

// Four columns, Q5_1 (PA5_BLOCK4's registers): the rows' d in Y12, their m in Y15.
#define PA51_FMA4(base, lsum, hsum, acc) \
	VPMADDWD  ·paWordOnes(SB), lsum, lsum; \
	VPMADDWD  ·paWordOnes(SB), hsum, hsum; \
	VPADDD    hsum, lsum, lsum; \
	VCVTDQ2PS lsum, lsum; \
	PA1_FMA4(base, lsum, Y15, acc, Y13)

#define PA51_BLOCK4(h) \
	ZERO_Y4(Y4, Y5, Y6, Y7); \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PA5_GROUPS4(h); \
	VCVTPH2PS 16*h(R11), Y12; \
	VCVTPH2PS 32+16*h(R11), Y15; \
	PA_EACH4_LH(PA51_FMA4)

TEXT ·dotPackedQ4_1AVX2(SB), NOSPLIT, $0-48
	PACKEDA_DOT1(PA_CONSTS, LEGACY_GROUP1, EMPTY, EMPTY, PA41_BLOCK1, P41_NEXT_BLOCK, pa41_panel, pa41_group, pa41_block)

TEXT ·dotPackedQ5_1AVX2(SB), NOSPLIT, $0-48
	PACKEDA_DOT1(PA5_CONSTS, LEGACY_GROUP1, EMPTY, EMPTY, PA51_BLOCK1, P51_NEXT_BLOCK, pa51_panel, pa51_group, pa51_block)

TEXT ·dotPackedQ5_1x4AVX2(SB), NOSPLIT, $0-64
	PACKEDA_DOT4(EMPTY, LEGACY_GROUP1, P51N_PREFETCH, EMPTY, P51_PREFETCH, EMPTY, PA51_BLOCK4, P51_NEXT_BLOCK, pa51x4_panel, pa51x4_g0, pa51x4_b0, pa51x4_g1, pa51x4_b1)

// AVX-VNNI (PVK_COLS4): packed Q5_0 and Q5_1 in four columns, one half at a time as AVX2's,
// the low and the high elements' products summed in int32 by VPDPBUSD (Y4-Y7, Y8-Y11), so
// the finishes need no widening.
#define PV5_GROUP4(q, h, lb, hb) \
	PA5_QUANTS4(P5_Q(q)+32*h, 32*h(SI), lb, hb); \
	PVK_COLS4(4*q, 16+4*q)

// Q5_0: PA5_FMA4 without the widening (the rows' dx in Y12, Y13 scratch).
#define PV5_FMA4(base, lsum, hsum, acc) \
	VPADDD hsum, lsum, lsum; \
	PA_OFFSET_FMA(base, lsum, acc, Y13)

#define PV5_BLOCK4(h) \
	ZERO_Y4(Y4, Y5, Y6, Y7); \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PA5_GROUPS4_WITH(PV5_GROUP4, h); \
	VCVTPH2PS 16*h(R11), Y12; \
	PA_EACH4_LH(PV5_FMA4)

// func dotPackedQ5_0x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ5_0x4AVXVNNI(SB), NOSPLIT, $0-64
	PACKEDA_DOT4(EMPTY, LEGACY_GROUP8, P5_PREFETCH, P5_PF_GROUP, P5_PREFETCH, P5_PF_GROUP, PV5_BLOCK4, P5_NEXT_BLOCK, pv5x4_panel, pv5x4_g0, pv5x4_b0, pv5x4_g1, pv5x4_b1)

// Q5_1: PA51_FMA4 without the widening (the rows' d in Y12, m in Y15).
#define PV51_FMA4(base, lsum, hsum, acc) \
	VPADDD    hsum, lsum, lsum; \
	VCVTDQ2PS lsum, lsum; \
	PA1_FMA4(base, lsum, Y15, acc, Y13)

#define PV51_BLOCK4(h) \
	ZERO_Y4(Y4, Y5, Y6, Y7); \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
	PA5_GROUPS4_WITH(PV5_GROUP4, h); \
	VCVTPH2PS 16*h(R11), Y12; \
	VCVTPH2PS 32+16*h(R11), Y15; \
	PA_EACH4_LH(PV51_FMA4)

// func dotPackedQ5_1x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ5_1x4AVXVNNI(SB), NOSPLIT, $0-64
	PACKEDA_DOT4(EMPTY, LEGACY_GROUP1, P51_PREFETCH, EMPTY, P51_PREFETCH, EMPTY, PV51_BLOCK4, P51_NEXT_BLOCK, pv51x4_panel, pv51x4_g0, pv51x4_b0, pv51x4_g1, pv51x4_b1)

// 0x0f bytes, for the AVX2 kernels that need every register (not file-local: the kernels of
// every packed type use it).
DATA ·paNibbles+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA ·paNibbles+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA ·paNibbles+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA ·paNibbles+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL ·paNibbles(SB), RODATA|NOPTR, $32

// 0x10 bytes (the fifth bits of Q5_0 and Q5_K in place) and words of 1 (VPMADDWD's widening),
// for the AVX2 kernels that need every register.
DATA ·paFifth+0(SB)/8, $0x1010101010101010
DATA ·paFifth+8(SB)/8, $0x1010101010101010
DATA ·paFifth+16(SB)/8, $0x1010101010101010
DATA ·paFifth+24(SB)/8, $0x1010101010101010
GLOBL ·paFifth(SB), RODATA|NOPTR, $32

DATA ·paWordOnes+0(SB)/8, $0x0001000100010001
DATA ·paWordOnes+8(SB)/8, $0x0001000100010001
DATA ·paWordOnes+16(SB)/8, $0x0001000100010001
DATA ·paWordOnes+24(SB)/8, $0x0001000100010001
GLOBL ·paWordOnes(SB), RODATA|NOPTR, $32

// func prepPackedActBiasAVX2(act *byte, nb int, dst *byte, bias int32)
// prepPackedActBias's blocks: the 32 quants copied, the scale as float32 through f16Table (so
// that every half, NaNs included, widens as F16ToF32 widens it), and -bias times the quants'
// sum: VPSADBW sums them as unsigned bytes (each flipped by 0x80, so the sum is 32·128 above
// the signed one). Y15 = 0x80 bytes, Y14 = 0.
TEXT ·prepPackedActBiasAVX2(SB), NOSPLIT, $0-28
	MOVQ         act+0(FP), SI
	MOVQ         nb+8(FP), CX
	MOVQ         dst+16(FP), DI
	MOVL         bias+24(FP), R8
	NEGL         R8
	MOVQ         ·f16Table(SB), R9
	MOVL         $0x80808080, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	VPXOR        Y14, Y14, Y14
	TESTQ        CX, CX
	JZ           prep_done

prep_block:
	VMOVDQU      2(SI), Y0
	VMOVDQU      Y0, (DI)
	VPXOR        Y15, Y0, Y0
	VPSADBW      Y14, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDQ       X1, X0, X0
	VMOVQ        X0, AX
	SUBL         $4096, AX
	IMULL        R8, AX
	MOVL         AX, 36(DI)
	MOVWLZX      (SI), BX
	MOVL         (R9)(BX*4), BX
	MOVL         BX, 32(DI)
	ADDQ         $34, SI
	ADDQ         $40, DI
	DECQ         CX
	JNZ          prep_block

prep_done:
	VZEROUPPER
	RET
