//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

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

// Eight columns in one pass (AVX2), with llama.cpp's AVX2 product of signed bytes: |w| (unsigned)
// times y·sign(w) (signed) in VPMADDUBSW, whose pair sums stay within int16 (at most
// 2·128·127) as long as no activation quant is -128, which QuantizeActivations never writes
// (|x|·127/amax rounds to at most 127). Each group's pairs go to int32 at once (VPMADDWD by
// words of 1), so a column needs one register, not the two of the four-column kernel's low and
// high nibbles: eight columns' sums fit beside the weights, and the panel is read once for
// them where two passes of four read it twice (once from memory). The integer sums are the
// exact Σ w·y of the block, and the float steps are the four-column kernel's, so are the bits.
// On a Zen 3 core (BenchmarkPackedQ8_0Kernels, ns a block of 16 rows and column): 11.4 in the
// level-3 cache and 12.3 from memory, where a pass of four took 13.7 and 16.3 (a group's
// products alone, 8.3: the per-block float steps, with the sums in the frame, are the rest).
//
// Registers: Y0-Y7 the columns' int32 sums, Y8 the group's quants (w, signed), Y9 |w|, Y10
// scratch, Y12 and Y13 the block's float steps, Y14 = 0x80 bytes, Y15 = words of 1; the float
// sums in the frame (PACKEDA_HALF8).
#define P8S_CONSTS \
	MOVL         $0x80808080, AX; \
	VMOVD        AX, X14; \
	VPBROADCASTD X14, Y14; \
	VPCMPEQW     Y15, Y15, Y15; \
	VPSRLW       $15, Y15, Y15

// Group q of column acc: its activation word at 4q(base), signed by the weights, times |w|,
// pairs widened and added (P8S_COL) or starting the sum (P8S_COL_FIRST).
#define P8S_PRODUCT(q, base) \
	VPBROADCASTD 4*q base, Y10; \
	VPSIGNB      Y8, Y10, Y10; \
	VPMADDUBSW   Y10, Y9, Y10

#define P8S_COL(q, base, c, acc) \
	P8S_PRODUCT(q, base); \
	VPMADDWD     Y15, Y10, Y10; \
	VPADDD       Y10, acc, acc

#define P8S_COL_FIRST(q, base, c, acc) \
	P8S_PRODUCT(q, base); \
	VPMADDWD     Y15, Y10, acc

// Group q of half h: the biased quants back to w (XOR 0x80) and |w|, then every column.
#define P8S_GROUP_WITH(col, q, h) \
	VMOVDQU 64*q+32*h(SI), Y8; \
	VPXOR   Y14, Y8, Y8; \
	VPABSB  Y8, Y9; \
	EACH8(col, q)

#define P8S_GROUP(col, q, h) P8S_GROUP_WITH(P8S_COL, q, h)
#define P8S_GROUP_FIRST(col, q, h) P8S_GROUP_WITH(P8S_COL_FIRST, q, h)

// Column acc's block total into its float sum at 32c(SP): acc = float(sum)·(dx·yd) + sum so
// far, rounded at each step as PA8_ADD4 does; dx (the rows' scales) in Y12.
#define P8S_ADD(x, base, c, acc) \
	VCVTDQ2PS    acc, acc; \
	VBROADCASTSS 32 base, Y13; \
	VMULPS       Y13, Y12, Y13; \
	VMULPS       Y13, acc, acc; \
	VADDPS       c*32(SP), acc, acc; \
	VMOVUPS      acc, c*32(SP)

#define P8S_BLOCK8(h) \
	GROUPS8(P8S_GROUP_FIRST, P8S_GROUP, EMPTY, h); \
	VCVTPH2PS 16*h(R11), Y12; \
	EACH8(P8S_ADD, 0)

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

#define P8_NEXT_BLOCK \
	ADDQ $512, SI; \
	ADDQ $32, R11

// The loads of the weights stall every kernel unless the memory is asked early: each block
// fetches its counterpart a group on (a group is 4352 bytes: eight blocks of quants and their
// scales) while it is computed, and each group the next group's scales; the many-column
// kernels reach two groups on, which read faster in eight columns (1.19x at 256 MiB, one
// thread) and slower in one (0.95x decoding).
#define P8_PREFETCH_AT(d) PACKED_PREFETCH8(d, SI)
#define P8_PF_GROUP_AT(d) PF4_LINES(PREFETCHT0, d, R11)

#define P8_PREFETCH1 P8_PREFETCH_AT(4352)
#define P8_PF_GROUP1 P8_PF_GROUP_AT(4352)
#define P8_PREFETCH P8_PREFETCH_AT(8704)
#define P8_PF_GROUP P8_PF_GROUP_AT(8704)

// The many-column kernels' far and near prefetches (packed_amd64.s, P16X4_PREFETCH): six groups
// on into the level-2 cache, one group on into the level-1 cache. They replaced the two
// groups on above: eight columns streamed 256 MiB 1.41x faster, four 1.27x, AVX2's four 1.05-1.1x.
#define P8N_PREFETCH PACKED_PREFETCH8_L2(6*4352, SI); P8_PREFETCH_AT(4352)
#define P8N_PF_GROUP PF4_LINES(PREFETCHT1, 6*4352, R11); P8_PF_GROUP_AT(4352)

#define P8_BLOCK_SI P8_BLOCK(SI, (R11))

TEXT ·dotPackedQ8_0VNNI(SB), NOSPLIT, $0-48
	PACKED_DOT1(EMPTY, LEGACY_GROUP8, P8_PREFETCH1, P8_PF_GROUP1, P8_BLOCK_SI, P8_COL, P8_NEXT_BLOCK, p8_panel, p8_group, p8_block)

// dotPackedQ8_0VNNI without software prefetches (streamtune.go): 1.06-1.18x at one thread on
// a Zen 4 host.
TEXT ·dotPackedQ8_0VNNIStream(SB), NOSPLIT, $0-48
	PACKED_DOT1(EMPTY, LEGACY_GROUP8, EMPTY, EMPTY, P8_BLOCK_SI, P8_COL, P8_NEXT_BLOCK, p8s_panel, p8s_group, p8s_block)

// dotPackedQ8_0VNNI over two runs of panels in step (PACKED_RUNS2, streamtune.go).
TEXT ·dotPackedQ8_0VNNIRuns2(SB), NOSPLIT, $0-64
	PACKED_RUNS2(EMPTY, LEGACY_GROUP8, P8_PREFETCH1, P8_PF_GROUP1, P8_BLOCK_SI, P8_COL, P8_NEXT_BLOCK, p8r_panel, p8r_group, p8r_block)

TEXT ·dotPackedQ8_0x4VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT4(EMPTY, LEGACY_GROUP8, P8N_PREFETCH, P8N_PF_GROUP, P8_BLOCK_SI, P8_COL, P8_NEXT_BLOCK, p8x4_panel, p8x4_group, p8x4_block)

TEXT ·dotPackedQ8_0x8VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT8(EMPTY, LEGACY_GROUP8, P8N_PREFETCH, P8N_PF_GROUP, P8_BLOCK_SI, P8_COL, P8_NEXT_BLOCK, p8x8_panel, p8x8_group, p8x8_block)

// AVX2 (PACKEDA_DOT1, PACKEDA_DOT4): packed Q8_0, each biased weight byte u = w+128 split
// into its nibbles l and h (u = l + 16h), whose products with the activations have int16
// sums of their own; per block l's sum plus 16 times h's, widened and started at the offset
// term (-128·Σy), is the exact Σ w·y, and the block is added as P8_COL adds it (a rounded
// product, then a rounded sum).

// One column: group q's activation quants in Y6; half h of the group's weights into the
// int16 sums lsum (low nibbles) and hsum (high).
#define PA8_HALF1(q, h, lsum, hsum) PA_NIBBLES_DOT(64*q+32*h, Y6, Y6, lsum, hsum)

#define PA8_GROUP1(q) \
	VPBROADCASTD 4*q(DI), Y6; \
	PA8_HALF1(q, 0, Y8, Y9); \
	PA8_HALF1(q, 1, Y12, Y13)

// The sums of eight rows: lsum + 16·hsum widened, plus the offset term (Y10), converted,
// times the rows' dx (fp16 at sc) times yd (Y11), added to acc.
#define PA8_ADD(lsum, hsum, sc, acc) \
	VPMADDWD  Y14, lsum, lsum; \
	VPMADDWD  Y14, hsum, hsum; \
	VPSLLD    $4, hsum, hsum; \
	VPADDD    hsum, lsum, lsum; \
	VPADDD    Y10, lsum, lsum; \
	VCVTDQ2PS lsum, lsum; \
	VCVTPH2PS sc, Y4; \
	VMULPS    Y11, Y4, Y4; \
	VMULPS    Y4, lsum, lsum; \
	VADDPS    lsum, acc, acc

#define PA8_BLOCK1_TO(a0, a1) \
	VPXOR        Y8, Y8, Y8; \
	VPXOR        Y9, Y9, Y9; \
	VPXOR        Y12, Y12, Y12; \
	VPXOR        Y13, Y13, Y13; \
	PA8_GROUP1(0); \
	PA8_GROUP1(1); \
	PA8_GROUP1(2); \
	PA8_GROUP1(3); \
	PA8_GROUP1(4); \
	PA8_GROUP1(5); \
	PA8_GROUP1(6); \
	PA8_GROUP1(7); \
	VPBROADCASTD 36(DI), Y10; \
	VBROADCASTSS 32(DI), Y11; \
	PA8_ADD(Y8, Y9, (R11), a0); \
	PA8_ADD(Y12, Y13, 16(R11), a1)

#define PA8_BLOCK1 PA8_BLOCK1_TO(Y0, Y3)

// The twin run's block (PACKEDA_RUNS2), into Y5 and Y7 (free in a block).
#define PA8_BLOCK1_TWIN PA8_BLOCK1_TO(Y5, Y7)

// Four columns, all sixteen registers in use: sums Y4-Y7 (low nibbles) and Y8-Y11 (high) of
// the columns, the constants from memory. Group q of half h: the high nibbles in Y12, the
// low in Y13; the column at base into lsum and hsum (Y14, Y15 scratch).
#define PA8_COL4(q, base, lsum, hsum) \
	VPBROADCASTD 4*q base, Y14; \
	VPMADDUBSW   Y14, Y13, Y15; \
	VPADDW       Y15, lsum, lsum; \
	VPMADDUBSW   Y14, Y12, Y15; \
	VPADDW       Y15, hsum, hsum

// PA8_COL4 of a block's first group: the sums start at its products rather than at zero.
#define PA8_COL4_FIRST(q, base, lsum, hsum) \
	VPBROADCASTD 4*q base, Y14; \
	VPMADDUBSW   Y14, Y13, lsum; \
	VPMADDUBSW   Y14, Y12, hsum

#define PA8_GROUP4(col, q, h) \
	VMOVDQU 64*q+32*h(SI), Y12; \
	VPAND   ·paNibbles(SB), Y12, Y13; \
	VPSRLW  $4, Y12, Y12; \
	VPAND   ·paNibbles(SB), Y12, Y12; \
	col(q, (DI), Y4, Y8); \
	col(q, (DI)(DX*1), Y5, Y9); \
	col(q, (R14), Y6, Y10); \
	col(q, (R14)(DX*1), Y7, Y11)

// PA8_ADD for the column at base, the rows' dx in Y12 (Y13 scratch).
#define PA8_ADD4(base, lsum, hsum, acc) \
	VPMADDWD     pa8Ones<>(SB), lsum, lsum; \
	VPMADDWD     pa8Sixteens<>(SB), hsum, hsum; \
	VPADDD       hsum, lsum, lsum; \
	VPBROADCASTD 36 base, Y13; \
	VPADDD       Y13, lsum, lsum; \
	VCVTDQ2PS    lsum, lsum; \
	VBROADCASTSS 32 base, Y13; \
	VMULPS       Y13, Y12, Y13; \
	VMULPS       Y13, lsum, lsum; \
	VADDPS       lsum, acc, acc

#define PA8_GROUP4_FIRST(col, q, h) PA8_GROUP4(PA8_COL4_FIRST, q, h)

#define PA8_BLOCK4(h) \
	GROUPS8(PA8_GROUP4_FIRST, PA8_GROUP4, PA8_COL4, h); \
	VCVTPH2PS 16*h(R11), Y12; \
	PA_EACH4_LH(PA8_ADD4)

TEXT ·dotPackedQ8_0AVX2(SB), NOSPLIT, $0-48
	PACKEDA_DOT1(PA_CONSTS, LEGACY_GROUP8, P8_PREFETCH1, P8_PF_GROUP1, PA8_BLOCK1, P8_NEXT_BLOCK, pa8_panel, pa8_group, pa8_block)

// dotPackedQ8_0AVX2 without software prefetches (streamtune.go).
TEXT ·dotPackedQ8_0AVX2Stream(SB), NOSPLIT, $0-48
	PACKEDA_DOT1(PA_CONSTS, LEGACY_GROUP8, EMPTY, EMPTY, PA8_BLOCK1, P8_NEXT_BLOCK, pa8s_panel, pa8s_group, pa8s_block)

// dotPackedQ8_0AVX2 over two runs of panels in step (PACKEDA_RUNS2, streamtune.go).
TEXT ·dotPackedQ8_0AVX2Runs2(SB), NOSPLIT, $0-64
	PACKEDA_RUNS2(PA_CONSTS, LEGACY_GROUP8, PA8_BLOCK1, PA8_BLOCK1_TWIN, Y5, Y7, P8_NEXT_BLOCK, pa8r_panel, pa8r_group, pa8r_block)

TEXT ·dotPackedQ8_0x4AVX2(SB), NOSPLIT, $0-64
	PACKEDA_DOT4(EMPTY, LEGACY_GROUP8, P8N_PREFETCH, P8N_PF_GROUP, PA_PF_NEXT8(SI), PA_PF_NEXT4(R11), PA8_BLOCK4, P8_NEXT_BLOCK, pa8x4_panel, pa8x4_g0, pa8x4_b0, pa8x4_g1, pa8x4_b1)

// func dotPackedQ8_0x8AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ8_0x8AVX2(SB), NOSPLIT, $256-64
	PACKEDA_DOT8(P8S_CONSTS, LEGACY_GROUP8, P8N_PREFETCH, P8N_PF_GROUP, PA_PF_NEXT8(SI), PA_PF_NEXT4(R11), P8S_BLOCK8, P8_NEXT_BLOCK, pa8x8_panel, pa8x8_g0, pa8x8_b0, pa8x8_g1, pa8x8_b1)

// AVX-VNNI (PV_DOT4): packed Q8_0 in four columns. Groups q and q+1, both halves, whole
// (biased bytes): group q in Y8 (rows 0-7) and Y10 (rows 8-15), group q+1 in Y9 and Y11,
// against their activations (PV_COLS2).
#define PV8_GROUPS(q) \
	VMOVDQU 64*q(SI), Y8; \
	VMOVDQU 64*q+32(SI), Y10; \
	VMOVDQU 64*q+64(SI), Y9; \
	VMOVDQU 64*q+96(SI), Y11; \
	PV_COLS2(4*q, 4*q+4)

#define PV8_BLOCK \
	PV_START4; \
	PV8_GROUPS(0); \
	PV8_GROUPS(2); \
	PV8_GROUPS(4); \
	PV8_GROUPS(6); \
	PV_FINISH4(PV_MULADD, PV_NO_M)

// func dotPackedQ8_0x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ8_0x4AVXVNNI(SB), NOSPLIT, $256-64
	PV_DOT4(EMPTY, LEGACY_GROUP8, P8_PREFETCH, P8_PF_GROUP, PV8_BLOCK, P8_NEXT_BLOCK, pv8x4_panel, pv8x4_group, pv8x4_block)

DATA pa8Ones<>+0(SB)/8, $0x0001000100010001
DATA pa8Ones<>+8(SB)/8, $0x0001000100010001
DATA pa8Ones<>+16(SB)/8, $0x0001000100010001
DATA pa8Ones<>+24(SB)/8, $0x0001000100010001
GLOBL pa8Ones<>(SB), RODATA|NOPTR, $32

DATA pa8Sixteens<>+0(SB)/8, $0x0010001000100010
DATA pa8Sixteens<>+8(SB)/8, $0x0010001000100010
DATA pa8Sixteens<>+16(SB)/8, $0x0010001000100010
DATA pa8Sixteens<>+24(SB)/8, $0x0010001000100010
GLOBL pa8Sixteens<>(SB), RODATA|NOPTR, $32
