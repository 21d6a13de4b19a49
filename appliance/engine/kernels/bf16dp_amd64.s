//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// BF16 dots on AVX-512 BF16: VDPBF16PS multiplies the sixteen pairs of BF16 values of two
// 512-bit registers and adds each lane's two products into a float32 lane, the odd element's
// first, each with one rounding (a fused add; inputs and outputs below the normal range are
// zero). The rows go in chunks of 32 elements, chunk k into accumulator k mod 2; the two are
// summed, then the halves, quarters, pairs and lanes of the sum, as HSUM does. bf16DPGo is the
// twin, bit for bit. Two accumulators per column let two weight rows and four columns keep
// theirs in registers (dotBF16DPR2x4), where every load serves two or four products.

// The Go assembler has no VDPBF16PS (EVEX.512.F3.0F38.W0 52 /r): zd += zs1·zs2 pairwise, the
// registers by number (0-31), encoded here: P0 carries the inverted high bits of zd (R, R')
// and zs2 (B, X), P1 the inverted zs1 (vvvv) and the F3 prefix, P2 the 512-bit length and
// zs1's inverted fifth bit (V').
#define VDPBF16PS(zd, zs1, zs2) \
	BYTE $0x62; \
	BYTE $(((((zd)>>3)&1)^1)<<7 | ((((zs2)>>4)&1)^1)<<6 | ((((zs2)>>3)&1)^1)<<5 | ((((zd)>>4)&1)^1)<<4 | 0x02); \
	BYTE $((((zs1)&15)^15)<<3 | 0x06); \
	BYTE $(0x40 | ((((zs1)>>4)&1)^1)<<3); \
	BYTE $0x52; \
	BYTE $(0xC0 | ((zd)&7)<<3 | ((zs2)&7))

// The sum of accumulators a0 and a1 into the low lane of xa0 (ya0, xa0: a0's narrower names;
// ya1, xa1: a1's, scratch once a1 is added); stored at off(R8).
#define BF16DP_REDUCE(a0, a1, ya0, xa0, ya1, xa1, off) BF16DP_REDUCE_TO(a0, a1, ya0, xa0, ya1, xa1, off(R8))

// BF16DP_REDUCE, stored at mem.
#define BF16DP_REDUCE_TO(a0, a1, ya0, xa0, ya1, xa1, mem) \
	VADDPS        a1, a0, a0; \
	VEXTRACTF64X4 $1, a0, ya1; \
	VADDPS        ya1, ya0, ya0; \
	HSUM(ya0, xa0, xa1); \
	VMOVSS        xa0, mem

// Arguments of the four-column kernels: the activation rows at DI, DI+DX, R14, R14+DX; CX the
// chunks; R8 the results.
#define BF16DP4_ARGS \
	MOVQ   y+8(FP), DI; \
	MOVQ   ystride+16(FP), DX; \
	MOVQ   n+24(FP), CX; \
	MOVQ   out+32(FP), R8; \
	LEAQ   (DI)(DX*2), R14; \
	SHRQ   $5, CX

// The four columns' sums of accumulators Z0-Z7 (Z8-Z15), stored at 0-12(R8) (16-28(R8)).
#define BF16DP_REDUCE_Z0_7 \
	BF16DP_REDUCE(Z0, Z1, Y0, X0, Y1, X1, 0); \
	BF16DP_REDUCE(Z2, Z3, Y2, X2, Y3, X3, 4); \
	BF16DP_REDUCE(Z4, Z5, Y4, X4, Y5, X5, 8); \
	BF16DP_REDUCE(Z6, Z7, Y6, X6, Y7, X7, 12)

#define BF16DP_REDUCE_Z8_15 \
	BF16DP_REDUCE(Z8, Z9, Y8, X8, Y9, X9, 16); \
	BF16DP_REDUCE(Z10, Z11, Y10, X10, Y11, X11, 20); \
	BF16DP_REDUCE(Z12, Z13, Y12, X12, Y13, X13, 24); \
	BF16DP_REDUCE(Z14, Z15, Y14, X14, Y15, X15, 28)

// func dotBF16DP(x, y *uint16, n int) float32
// n a positive multiple of 32.
TEXT ·dotBF16DP(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   n+16(FP), CX
	LEAQ   ret+24(FP), R8
	SHRQ   $5, CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	MOVQ   CX, DX
	SHRQ   $2, DX
	JZ     bf16dp_rest

bf16dp_loop:
	VMOVDQU64 0(SI), Z4
	VMOVDQU64 64(SI), Z5
	VMOVDQU64 128(SI), Z6
	VMOVDQU64 192(SI), Z7
	VMOVDQU64 0(DI), Z8
	VMOVDQU64 64(DI), Z9
	VMOVDQU64 128(DI), Z10
	VMOVDQU64 192(DI), Z11
	VDPBF16PS(0, 4, 8)
	VDPBF16PS(1, 5, 9)
	VDPBF16PS(0, 6, 10)
	VDPBF16PS(1, 7, 11)
	ADDQ      $256, SI
	ADDQ      $256, DI
	DECQ      DX
	JNZ       bf16dp_loop

bf16dp_rest:
	ANDQ      $3, CX
	JZ        bf16dp_sum
	VMOVDQU64 0(SI), Z4
	VMOVDQU64 0(DI), Z8
	VDPBF16PS(0, 4, 8)
	DECQ      CX
	JZ        bf16dp_sum
	VMOVDQU64 64(SI), Z5
	VMOVDQU64 64(DI), Z9
	VDPBF16PS(1, 5, 9)
	DECQ      CX
	JZ        bf16dp_sum
	VMOVDQU64 128(SI), Z6
	VMOVDQU64 128(DI), Z10
	VDPBF16PS(0, 6, 10)

bf16dp_sum:
	BF16DP_REDUCE(Z0, Z1, Y0, X0, Y1, X1, 0)
	VZEROUPPER
	RET

// One chunk (byte offset off, accumulator k of each column) of the four-column kernel: the
// weights into zw (number nw), then each column's activations into Z20 and onto accumulator
// Z(2c+k) of column c.
#define BF16DP4_CHUNK(k, off, zw, nw) \
	VMOVDQU64 off(SI), zw; \
	VMOVDQU64 off(DI), Z20; \
	VDPBF16PS(k, nw, 20); \
	VMOVDQU64 off(DI)(DX*1), Z20; \
	VDPBF16PS(2+k, nw, 20); \
	VMOVDQU64 off(R14), Z20; \
	VDPBF16PS(4+k, nw, 20); \
	VMOVDQU64 off(R14)(DX*1), Z20; \
	VDPBF16PS(6+k, nw, 20)

// The pass of dotBF16DPx4 (SI = x, DI = the first column, DX = ystride, R14 = DI+2·DX, CX =
// n/32), column c's result to mc; BX scratch.
#define BF16DP4_PASS(lp, lrest, lsum, m0, m1, m2, m3) \
	ZERO_Z4(Z0, Z1, Z2, Z3); \
	ZERO_Z4(Z4, Z5, Z6, Z7); \
	MOVQ   CX, BX; \
	SHRQ   $1, BX; \
	JZ     lrest; \
lp: \
	BF16DP4_CHUNK(0, 0, Z16, 16); \
	BF16DP4_CHUNK(1, 64, Z17, 17); \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	ADDQ $128, R14; \
	DECQ BX; \
	JNZ  lp; \
lrest: \
	ANDQ $1, CX; \
	JZ   lsum; \
	BF16DP4_CHUNK(0, 0, Z16, 16); \
lsum: \
	BF16DP_REDUCE_TO(Z0, Z1, Y0, X0, Y1, X1, m0); \
	BF16DP_REDUCE_TO(Z2, Z3, Y2, X2, Y3, X3, m1); \
	BF16DP_REDUCE_TO(Z4, Z5, Y4, X4, Y5, X5, m2); \
	BF16DP_REDUCE_TO(Z6, Z7, Y6, X6, Y7, X7, m3)

// func dotBF16DPx4(x, y *uint16, ystride int, n int, out *float32)
// Four activation rows ystride bytes apart against one weight row; n a positive multiple of
// 32; out[c] is what dotBF16DP returns for column c.
TEXT ·dotBF16DPx4(SB), NOSPLIT, $0-40
	MOVQ   x+0(FP), SI
	BF16DP4_ARGS
	BF16DP4_PASS(bf16dp4_loop, bf16dp4_rest, bf16dp4_sum, 0(R8), 4(R8), 8(R8), 12(R8))
	VZEROUPPER
	RET

// func dotBF16DPx4Runs(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)
// The four runs of decode in one call (halfRunsFn): for each i < count, dotBF16DPx4's pass with
// the activation row as x and rows y + i·stride + k·ystride as the columns, row (k, i)'s result
// to out + k·ostride + 4i.
TEXT ·dotBF16DPx4Runs(SB), NOSPLIT, $0-64
	RUNS_ARGS(R8, R13)
	LEAQ (R13)(R13*2), R12

bf16dp4r_row:
	MOVQ x+0(FP), SI
	MOVQ R9, DI
	LEAQ (DI)(DX*2), R14
	MOVQ n+40(FP), CX
	SHRQ $5, CX
	BF16DP4_PASS(bf16dp4r_loop, bf16dp4r_rest, bf16dp4r_sum, (R8), (R8)(R13*1), (R8)(R13*2), (R8)(R12*1))
	RUNS_NEXT(R8, bf16dp4r_row)

// One chunk (byte offset off, accumulator k) of the two-row kernel: both rows' weights (the
// second BX bytes on) into zw0 and zw1, then each column's activations into Z20, onto
// accumulator Z(2c+k) of the first row and Z(8+2c+k) of the second.
#define BF16DPR2_CHUNK(k, off, zw0, nw0, zw1, nw1) \
	VMOVDQU64 off(SI), zw0; \
	VMOVDQU64 off(SI)(BX*1), zw1; \
	VMOVDQU64 off(DI), Z20; \
	VDPBF16PS(k, nw0, 20); \
	VDPBF16PS(8+k, nw1, 20); \
	VMOVDQU64 off(DI)(DX*1), Z20; \
	VDPBF16PS(2+k, nw0, 20); \
	VDPBF16PS(10+k, nw1, 20); \
	VMOVDQU64 off(R14), Z20; \
	VDPBF16PS(4+k, nw0, 20); \
	VDPBF16PS(12+k, nw1, 20); \
	VMOVDQU64 off(R14)(DX*1), Z20; \
	VDPBF16PS(6+k, nw0, 20); \
	VDPBF16PS(14+k, nw1, 20)

// The two-row kernel's pass over CX elements (SI: the first row, BX on the second; activation
// rows at DI, DI+DX, R14, R14+DX), the sums left in Z0-Z15 for the label sum.
#define BF16DPR2_PASS(loop, rest, sum) \
	SHRQ   $5, CX; \
	ZERO_Z4(Z0, Z1, Z2, Z3); \
	ZERO_Z4(Z4, Z5, Z6, Z7); \
	ZERO_Z4(Z8, Z9, Z10, Z11); \
	ZERO_Z4(Z12, Z13, Z14, Z15); \
	MOVQ   CX, AX; \
	SHRQ   $1, AX; \
	JZ     rest; \
loop: \
	BF16DPR2_CHUNK(0, 0, Z16, 16, Z17, 17); \
	BF16DPR2_CHUNK(1, 64, Z18, 18, Z19, 19); \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	ADDQ $128, R14; \
	DECQ AX; \
	JNZ  loop; \
rest: \
	ANDQ $1, CX; \
	JZ   sum; \
	BF16DPR2_CHUNK(0, 0, Z16, 16, Z17, 17)

// func dotBF16DPR2x4(x *uint16, xstride int, y *uint16, ystride int, n int, out *float32)
// Two weight rows xstride bytes apart against four activation rows ystride bytes apart; n a
// positive multiple of 32; out[4r+c] is what dotBF16DPx4 returns for row r and column c.
TEXT ·dotBF16DPR2x4(SB), NOSPLIT, $0-48
	R2X4_ARGS
	BF16DPR2_PASS(bf16dpr2_loop, bf16dpr2_rest, bf16dpr2_sum)

bf16dpr2_sum:
	BF16DP_REDUCE_Z0_7
	BF16DP_REDUCE_Z8_15
	VZEROUPPER
	RET

// Accumulators Z(8r)-Z(8r+7) of row r's four columns reduced (BF16DP_REDUCE) to column c's
// result for the row at off(R8)(R9·c), R10 = R8+3·R9 for the last column.
#define BF16DP_REDUCE_COLS(z0, z1, z2, z3, z4, z5, z6, z7, y0, x0, y1, x1, y2, x2, y3, x3, y4, x4, y5, x5, y6, x6, y7, x7, off) \
	BF16DP_REDUCE_TO(z0, z1, y0, x0, y1, x1, off(R8)); \
	BF16DP_REDUCE_TO(z2, z3, y2, x2, y3, x3, off(R8)(R9*1)); \
	BF16DP_REDUCE_TO(z4, z5, y4, x4, y5, x5, off(R8)(R9*2)); \
	BF16DP_REDUCE_TO(z6, z7, y6, x6, y7, x7, off(R10))

// func dotBF16DPR2x4Rows(x *uint16, xstride int, pairs int, y *uint16, ystride int, n int, out *float32, ostride int)
// dotBF16DPR2x4 for pairs of weight rows in one call: rows 2p and 2p+1 (xstride bytes apart)
// for p < pairs, each row's four results stored at out + 4·row + c·ostride bytes for column c,
// as the matrix product lays them out. A prompt batch calls it once for a run of weight rows
// rather than once a pair, which on a Zen 4 core took about a sixth of the kernel's time.
TEXT ·dotBF16DPR2x4Rows(SB), NOSPLIT, $0-64
	PAIRS_ARGS

bf16dprr_pair:
	PAIRS_START
	BF16DPR2_PASS(bf16dprr_loop, bf16dprr_rest, bf16dprr_sum)

bf16dprr_sum:
	BF16DP_REDUCE_COLS(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Y0, X0, Y1, X1, Y2, X2, Y3, X3, Y4, X4, Y5, X5, Y6, X6, Y7, X7, 0)
	BF16DP_REDUCE_COLS(Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15, Y8, X8, Y9, X9, Y10, X10, Y11, X11, Y12, X12, Y13, X13, Y14, X14, Y15, X15, 4)
	PAIRS_NEXT(bf16dprr_pair)
	VZEROUPPER
	RET



// One chunk (byte offset off, accumulator k) of the three-row kernel: the rows' weights (at SI,
// SI+BX, SI+2·BX) into z0-z2 (numbers n0-n2), then each column's activations into za (number
// na), onto accumulator Z(8r+2c+k) of row r and column c.
#define BF16DPR3_CHUNK(k, off, z0, n0, z1, n1, z2, n2, za, na) \
	VMOVDQU64 off(SI), z0; \
	VMOVDQU64 off(SI)(BX*1), z1; \
	VMOVDQU64 off(SI)(BX*2), z2; \
	BF16DPR3_COL(k, off(DI), n0, n1, n2, za, na, 0); \
	BF16DPR3_COL(k, off(DI)(DX*1), n0, n1, n2, za, na, 2); \
	BF16DPR3_COL(k, off(R14), n0, n1, n2, za, na, 4); \
	BF16DPR3_COL(k, off(R14)(DX*1), n0, n1, n2, za, na, 6)

#define BF16DPR3_COL(k, mem, n0, n1, n2, za, na, c2) \
	VMOVDQU64 mem, za; \
	VDPBF16PS(c2+k, n0, na); \
	VDPBF16PS(8+c2+k, n1, na); \
	VDPBF16PS(16+c2+k, n2, na)

// func dotBF16DPR3x4Rows(x *uint16, xstride int, triples int, y *uint16, ystride int, n int, out *float32, ostride int)
// dotBF16DPR2x4Rows for triples of weight rows: rows 3t, 3t+1 and 3t+2 for t < triples, each
// row's four results at out + 4·row + c·ostride bytes. Three rows take 24 of the 32 registers
// for their accumulators, and each activation load serves three products where the two-row
// kernel's serves two. That matters where the activations do not fit the level-1 cache: rows
// of 8192 elements (FFN down projections; four columns' activations are 64 KiB) ran at 19
// products a cycle in the two-row kernel and 23-26 in this one on a Zen 4 core (32 at its
// peak), while rows of 2048 run at about 29 in both.
TEXT ·dotBF16DPR3x4Rows(SB), NOSPLIT, $0-64
	PAIRS_ARGS

bf16dpr3_triple:
	PAIRS_START
	SHRQ $5, CX
	ZERO_Z4(Z0, Z1, Z2, Z3)
	ZERO_Z4(Z4, Z5, Z6, Z7)
	ZERO_Z4(Z8, Z9, Z10, Z11)
	ZERO_Z4(Z12, Z13, Z14, Z15)
	ZERO_Z4(Z16, Z17, Z18, Z19)
	ZERO_Z4(Z20, Z21, Z22, Z23)
	MOVQ CX, AX
	SHRQ $1, AX
	JZ   bf16dpr3_rest

bf16dpr3_loop:
	BF16DPR3_CHUNK(0, 0, Z24, 24, Z25, 25, Z26, 26, Z30, 30)
	BF16DPR3_CHUNK(1, 64, Z27, 27, Z28, 28, Z29, 29, Z31, 31)
	ADDQ $128, SI
	ADDQ $128, DI
	ADDQ $128, R14
	DECQ AX
	JNZ  bf16dpr3_loop

bf16dpr3_rest:
	ANDQ $1, CX
	JZ   bf16dpr3_sum
	BF16DPR3_CHUNK(0, 0, Z24, 24, Z25, 25, Z26, 26, Z30, 30)

bf16dpr3_sum:
	BF16DP_REDUCE_COLS(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Y0, X0, Y1, X1, Y2, X2, Y3, X3, Y4, X4, Y5, X5, Y6, X6, Y7, X7, 0)
	BF16DP_REDUCE_COLS(Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15, Y8, X8, Y9, X9, Y10, X10, Y11, X11, Y12, X12, Y13, X13, Y14, X14, Y15, X15, 4)

	// The third row's sums into Z0-Z7, where the reduction's VEX forms reach them.
	VMOVAPS Z16, Z0
	VMOVAPS Z17, Z1
	VMOVAPS Z18, Z2
	VMOVAPS Z19, Z3
	VMOVAPS Z20, Z4
	VMOVAPS Z21, Z5
	VMOVAPS Z22, Z6
	VMOVAPS Z23, Z7
	BF16DP_REDUCE_COLS(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Y0, X0, Y1, X1, Y2, X2, Y3, X3, Y4, X4, Y5, X5, Y6, X6, Y7, X7, 8)
	LEAQ (R12)(BX*2), R12
	ADDQ BX, R12
	ADDQ $12, R8
	ADDQ $12, R10
	DECQ R11
	JNZ  bf16dpr3_triple
	VZEROUPPER
	RET
