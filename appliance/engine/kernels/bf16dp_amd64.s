//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// BF16 dots on AVX-512 BF16: VDPBF16PS multiplies the sixteen pairs of BF16 values of two
// 512-bit registers and adds each lane's two products into a float32 lane, the odd element's
// first, each with one rounding (a fused add; inputs and outputs below the normal range are
// zero). The rows go in chunks of 32 elements: in groups of four, chunk k of a group into
// accumulator k; the chunks after the last group into accumulators 0, 1, 2. The accumulators
// are summed (0+1) + (2+3), then the halves, quarters, pairs and lanes of the sum, as HSUM
// does. bf16DPGo is the twin, bit for bit.

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

// The sum of accumulators a0-a3 into the low lane of xa0 (ya0, xa0: a0's narrower names; ya1,
// xa1: a1's, scratch once a1 is added).
#define BF16DP_REDUCE(a0, a1, a2, a3, ya0, xa0, ya1, xa1) \
	VADDPS        a1, a0, a0; \
	VADDPS        a3, a2, a2; \
	VADDPS        a2, a0, a0; \
	VEXTRACTF64X4 $1, a0, ya1; \
	VADDPS        ya1, ya0, ya0; \
	HSUM(ya0, xa0, xa1)

// func dotBF16DP(x, y *uint16, n int) float32
// n a positive multiple of 32.
TEXT ·dotBF16DP(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   n+16(FP), CX
	SHRQ   $5, CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
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
	VDPBF16PS(2, 6, 10)
	VDPBF16PS(3, 7, 11)
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
	VDPBF16PS(2, 6, 10)

bf16dp_sum:
	BF16DP_REDUCE(Z0, Z1, Z2, Z3, Y0, X0, Y1, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// One chunk k (byte offset off) of the four-column kernel: the weights into zw (number nw),
// then each column's activations into za (number na) and onto that column's accumulator k
// (column c keeps Z(4c)-Z(4c+3)).
#define BF16DP4_CHUNK(k, off, zw, nw, za, na) \
	VMOVDQU64 off(SI), zw; \
	VMOVDQU64 off(DI), za; \
	VDPBF16PS(k, nw, na); \
	VMOVDQU64 off(DI)(DX*1), za; \
	VDPBF16PS(4+k, nw, na); \
	VMOVDQU64 off(R14), za; \
	VDPBF16PS(8+k, nw, na); \
	VMOVDQU64 off(R14)(DX*1), za; \
	VDPBF16PS(12+k, nw, na)

// func dotBF16DPx4(x, y *uint16, ystride int, n int, out *float32)
// Four activation rows ystride bytes apart against one weight row; n a positive multiple of
// 32; out[c] is what dotBF16DP returns for column c.
TEXT ·dotBF16DPx4(SB), NOSPLIT, $0-40
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   ystride+16(FP), DX
	MOVQ   n+24(FP), CX
	LEAQ   (DI)(DX*2), R14
	SHRQ   $5, CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	MOVQ   CX, BX
	SHRQ   $2, BX
	JZ     bf16dp4_rest

bf16dp4_loop:
	BF16DP4_CHUNK(0, 0, Z16, 16, Z20, 20)
	BF16DP4_CHUNK(1, 64, Z17, 17, Z21, 21)
	BF16DP4_CHUNK(2, 128, Z18, 18, Z22, 22)
	BF16DP4_CHUNK(3, 192, Z19, 19, Z23, 23)
	ADDQ $256, SI
	ADDQ $256, DI
	ADDQ $256, R14
	DECQ BX
	JNZ  bf16dp4_loop

bf16dp4_rest:
	ANDQ $3, CX
	JZ   bf16dp4_sum
	BF16DP4_CHUNK(0, 0, Z16, 16, Z20, 20)
	DECQ CX
	JZ   bf16dp4_sum
	BF16DP4_CHUNK(1, 64, Z17, 17, Z21, 21)
	DECQ CX
	JZ   bf16dp4_sum
	BF16DP4_CHUNK(2, 128, Z18, 18, Z22, 22)

bf16dp4_sum:
	MOVQ   out+32(FP), R8
	BF16DP_REDUCE(Z0, Z1, Z2, Z3, Y0, X0, Y1, X1)
	VMOVSS X0, 0(R8)
	BF16DP_REDUCE(Z4, Z5, Z6, Z7, Y4, X4, Y5, X5)
	VMOVSS X4, 4(R8)
	BF16DP_REDUCE(Z8, Z9, Z10, Z11, Y8, X8, Y9, X9)
	VMOVSS X8, 8(R8)
	BF16DP_REDUCE(Z12, Z13, Z14, Z15, Y12, X12, Y13, X13)
	VMOVSS X12, 12(R8)
	VZEROUPPER
	RET
