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
#define P8_PF_GROUP_AT(d) \
	PREFETCHT0 d(R11); \
	PREFETCHT0 d+64(R11); \
	PREFETCHT0 d+128(R11); \
	PREFETCHT0 d+192(R11)

#define P8_PREFETCH1 P8_PREFETCH_AT(4352)
#define P8_PF_GROUP1 P8_PF_GROUP_AT(4352)
#define P8_PREFETCH P8_PREFETCH_AT(8704)
#define P8_PF_GROUP P8_PF_GROUP_AT(8704)

#define P8_BLOCK_SI P8_BLOCK(SI, (R11))

TEXT ·dotPackedQ8_0VNNI(SB), NOSPLIT, $0-48
	PACKED_DOT1(EMPTY, LEGACY_GROUP8, P8_PREFETCH1, P8_PF_GROUP1, P8_BLOCK_SI, P8_COL, P8_NEXT_BLOCK, p8_panel, p8_group, p8_block)

TEXT ·dotPackedQ8_0x4VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT4(EMPTY, LEGACY_GROUP8, P8_PREFETCH, P8_PF_GROUP, P8_BLOCK_SI, P8_COL, P8_NEXT_BLOCK, p8x4_panel, p8x4_group, p8x4_block)

TEXT ·dotPackedQ8_0x8VNNI(SB), NOSPLIT, $0-64
	PACKED_DOT8(EMPTY, LEGACY_GROUP8, P8_PREFETCH, P8_PF_GROUP, P8_BLOCK_SI, P8_COL, P8_NEXT_BLOCK, p8x8_panel, p8x8_group, p8x8_block)
