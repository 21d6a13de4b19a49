//go:build amd64 && !purego

#include "textflag.h"

// Attention's F16 products for four query heads that share their keys and values (one group
// of grouped-query attention): each key or value row is widened once for the four. Per query
// the arithmetic is that of dotF16RowsQ32AVX2 and madF16Rows64AVX2, bit for bit; 512-bit
// registers hold what four queries need (the four queries' accumulators, 32 of 32 registers'
// worth in 256-bit ones).

// DQ4_ROWSUM scores the key row at DI against the four queries at R8 (R13 bytes apart, R14 =
// 3·R13) over dim (R11) elements, into Z8-Z15, and folds each query's two accumulators into
// a0-a3 (acc0+acc2 | acc1+acc3: GGML_REDUCE4's first adds). label names the loop.
#define DQ4_ROWSUM(label, a0, a1, a2, a3) \
	MOVQ        R8, SI; \
	MOVQ        DI, BX; \
	MOVQ        R11, CX; \
	VXORPS      Z8, Z8, Z8; \
	VXORPS      Z9, Z9, Z9; \
	VXORPS      Z10, Z10, Z10; \
	VXORPS      Z11, Z11, Z11; \
	VXORPS      Z12, Z12, Z12; \
	VXORPS      Z13, Z13, Z13; \
	VXORPS      Z14, Z14, Z14; \
	VXORPS      Z15, Z15, Z15; \
label: \
	VCVTPH2PS   (BX), Z0; \
	VCVTPH2PS   32(BX), Z1; \
	VFMADD231PS (SI), Z0, Z8; \
	VFMADD231PS 64(SI), Z1, Z9; \
	VFMADD231PS (SI)(R13*1), Z0, Z10; \
	VFMADD231PS 64(SI)(R13*1), Z1, Z11; \
	VFMADD231PS (SI)(R13*2), Z0, Z12; \
	VFMADD231PS 64(SI)(R13*2), Z1, Z13; \
	VFMADD231PS (SI)(R14*1), Z0, Z14; \
	VFMADD231PS 64(SI)(R14*1), Z1, Z15; \
	ADDQ        $128, SI; \
	ADDQ        $64, BX; \
	SUBQ        $32, CX; \
	JNZ         label; \
	VADDPS      Z9, Z8, a0; \
	VADDPS      Z11, Z10, a1; \
	VADDPS      Z13, Z12, a2; \
	VADDPS      Z15, Z14, a3

// DQ4_FOLD adds the 128-bit lanes of p and q that the shuffles lo and hi pick (each takes two
// lanes of p, then two of q) into w: the reduction's halving steps for two sums at once.
#define DQ4_FOLD(lo, hi, p, q, w) \
	VSHUFF32X4 lo, q, p, Z2; \
	VSHUFF32X4 hi, q, p, Z3; \
	VADDPS     Z3, Z2, w

// DQ4_PAIRS adds neighbouring elements within each 128-bit lane of x0 and then x1 (what
// VHADDPS does in 256-bit registers) into z.
#define DQ4_PAIRS(x0, x1, z) \
	VSHUFPS $0x88, x1, x0, Z2; \
	VSHUFPS $0xDD, x1, x0, Z3; \
	VADDPS  Z3, Z2, z

// func dotF16RowsQ32x4AVX512(q *float32, qstride int, k *uint16, kstride, n, dim int, scale float32, out *float32, ostride int)
// For each of n key rows kstride bytes apart and each query j < 4 (float32, qstride bytes
// apart): out[j·ostride bytes + 4i] = scale · (q_j · k_i). A 512-bit accumulator holds two of
// dotF16RowsQ32AVX2's (dims 0-15 and 16-31 of each 32-element step), so the fold and the
// reduction pair the same sums in the same order. dim is a positive multiple of 32.
//
// Four rows at a time, the sixteen sums (row r, query j) are reduced together: each halving
// step adds lanes of two registers at once, and the last leaves query j's four scores in lane
// j, one 128-bit store each. Per sum the adds are the one-row path's: the two halves of
// acc0+acc2 | acc1+acc3, then their 128-bit halves, then neighbours, then the two pairs.
TEXT ·dotF16RowsQ32x4AVX512(SB), NOSPLIT, $0-72
	MOVQ         q+0(FP), R8
	MOVQ         qstride+8(FP), R13
	LEAQ         (R13)(R13*2), R14
	MOVQ         k+16(FP), DI
	MOVQ         kstride+24(FP), R9
	MOVQ         n+32(FP), R10
	MOVQ         dim+40(FP), R11
	VBROADCASTSS scale+48(FP), Z7
	MOVQ         out+56(FP), R12
	MOVQ         ostride+64(FP), R15
	LEAQ         (R15)(R15*2), AX
	MOVQ         R10, DX
	SHRQ         $2, DX
	JZ           dq4_rows

dq4_four:
	// Row r's four sums in Z16+4r .. Z19+4r.
	DQ4_ROWSUM(dq4_l0, Z16, Z17, Z18, Z19)
	ADDQ R9, DI
	DQ4_ROWSUM(dq4_l1, Z20, Z21, Z22, Z23)
	ADDQ R9, DI
	DQ4_ROWSUM(dq4_l2, Z24, Z25, Z26, Z27)
	ADDQ R9, DI
	DQ4_ROWSUM(dq4_l3, Z28, Z29, Z30, Z31)
	ADDQ R9, DI

	// 256-bit halves added: row r's queries 0 and 1 in Z16+4r, 2 and 3 in Z17+4r.
	DQ4_FOLD($0x44, $0xEE, Z16, Z17, Z16)
	DQ4_FOLD($0x44, $0xEE, Z18, Z19, Z17)
	DQ4_FOLD($0x44, $0xEE, Z20, Z21, Z20)
	DQ4_FOLD($0x44, $0xEE, Z22, Z23, Z21)
	DQ4_FOLD($0x44, $0xEE, Z24, Z25, Z24)
	DQ4_FOLD($0x44, $0xEE, Z26, Z27, Z25)
	DQ4_FOLD($0x44, $0xEE, Z28, Z29, Z28)
	DQ4_FOLD($0x44, $0xEE, Z30, Z31, Z29)
	// 128-bit halves added: row r's query j in lane j of Z16+4r.
	DQ4_FOLD($0x88, $0xDD, Z16, Z17, Z16)
	DQ4_FOLD($0x88, $0xDD, Z20, Z21, Z20)
	DQ4_FOLD($0x88, $0xDD, Z24, Z25, Z24)
	DQ4_FOLD($0x88, $0xDD, Z28, Z29, Z28)
	// Neighbours, then pairs: query j's scores of rows 0-3 in lane j.
	DQ4_PAIRS(Z16, Z20, Z16)
	DQ4_PAIRS(Z24, Z28, Z24)
	DQ4_PAIRS(Z16, Z24, Z16)
	VMULPS        Z7, Z16, Z16
	VMOVUPS       X16, (R12)
	VEXTRACTF32X4 $1, Z16, (R12)(R15*1)
	VEXTRACTF32X4 $2, Z16, (R12)(R15*2)
	VEXTRACTF32X4 $3, Z16, (R12)(AX*1)
	ADDQ          $16, R12
	DECQ          DX
	JNZ           dq4_four

dq4_rows:
	ANDQ $3, R10
	JZ   dq4_done

dq4_row:
	DQ4_ROWSUM(dq4_loop, Z8, Z10, Z12, Z14)

	// Per query: the halves of acc0+acc2 | acc1+acc3 added.
	VEXTRACTF64X4 $1, Z8, Y9
	VEXTRACTF64X4 $1, Z10, Y11
	VEXTRACTF64X4 $1, Z12, Y13
	VEXTRACTF64X4 $1, Z14, Y15
	VADDPS        Y9, Y8, Y8
	VADDPS        Y11, Y10, Y10
	VADDPS        Y13, Y12, Y12
	VADDPS        Y15, Y14, Y14

	// The rest for the four at once: queries 0 and 2 share a register, 1 and 3 another, each
	// row's low and high halves added; then pairs, and pairs of pairs.
	VPERM2F128 $0x20, Y12, Y8, Y0
	VPERM2F128 $0x31, Y12, Y8, Y1
	VADDPS     Y1, Y0, Y0
	VPERM2F128 $0x20, Y14, Y10, Y2
	VPERM2F128 $0x31, Y14, Y10, Y3
	VADDPS     Y3, Y2, Y2
	VHADDPS    Y2, Y0, Y0
	VHADDPS    Y0, Y0, Y0
	VMULPS     Y7, Y0, Y0

	// Scores of queries 0 and 1 in lanes 0 and 1, of 2 and 3 in lanes 4 and 5.
	VMOVSS        X0, (R12)
	VEXTRACTPS    $1, X0, (R12)(R15*1)
	VEXTRACTF128  $1, Y0, X1
	VMOVSS        X1, (R12)(R15*2)
	VEXTRACTPS    $1, X1, (R12)(AX*1)
	ADDQ          $4, R12
	ADDQ          R9, DI
	DECQ          R10
	JNZ           dq4_row

dq4_done:
	VZEROUPPER
	RET

// MAD4_ROUND rounds an accumulator through F16 and back, as every update of the F16 sum does.
#define MAD4_ROUND(z, y) \
	VCVTPS2PH $0, z, y; \
	VCVTPH2PS y, z

// MAD4_ROUND4 rounds a query's four accumulators.
#define MAD4_ROUND4(a0, a1, a2, a3) \
	MAD4_ROUND(a0, Y6); \
	MAD4_ROUND(a1, Y7); \
	MAD4_ROUND(a2, Y24); \
	MAD4_ROUND(a3, Y25)

// MAD4_QUERY updates query j's 64-wide slice (a0-a3) with the value row in Z0-Z3: first the
// rescale where its factor at msa is not 1, then the weighted add of its weight at vsa.
#define MAD4_QUERY(msa, vsa, a0, a1, a2, a3, scale, back) \
	VMOVSS       msa, X4; \
	VUCOMISS     X5, X4; \
	JNE          scale; \
	JP           scale; \
back: \
	VBROADCASTSS vsa, Z4; \
	VFMADD231PS  Z4, Z0, a0; \
	VFMADD231PS  Z4, Z1, a1; \
	VFMADD231PS  Z4, Z2, a2; \
	VFMADD231PS  Z4, Z3, a3; \
	MAD4_ROUND4(a0, a1, a2, a3)

#define MAD4_SCALE(a0, a1, a2, a3, scale, back) \
scale: \
	VBROADCASTSS X4, Z4; \
	VMULPS       Z4, a0, a0; \
	VMULPS       Z4, a1, a1; \
	VMULPS       Z4, a2, a2; \
	VMULPS       Z4, a3, a3; \
	MAD4_ROUND4(a0, a1, a2, a3); \
	JMP          back

// func madF16Rows64x4AVX512(acc *uint16, astride int, v *uint16, vstride, n, chunks int, ms, vs *float32, fstride int)
// madF16Rows64AVX2 for four value sums (astride bytes apart) over the same n value rows: query
// j's factors at ms and vs plus j·fstride bytes. Each 64-wide slice of the four sums stays in
// sixteen registers over all rows, as float32 values that are exactly their F16 halves.
TEXT ·madF16Rows64x4AVX512(SB), NOSPLIT, $0-72
	MOVQ acc+0(FP), R8
	MOVQ astride+8(FP), R13
	LEAQ (R13)(R13*2), R14
	MOVQ v+16(FP), DI
	MOVQ vstride+24(FP), R9
	MOVQ chunks+40(FP), R11
	MOVQ fstride+64(FP), R15
	MOVL $0x3f800000, AX
	VMOVD AX, X5

m4_chunk:
	VCVTPH2PS 0(R8), Z8
	VCVTPH2PS 32(R8), Z9
	VCVTPH2PS 64(R8), Z10
	VCVTPH2PS 96(R8), Z11
	VCVTPH2PS 0(R8)(R13*1), Z12
	VCVTPH2PS 32(R8)(R13*1), Z13
	VCVTPH2PS 64(R8)(R13*1), Z14
	VCVTPH2PS 96(R8)(R13*1), Z15
	VCVTPH2PS 0(R8)(R13*2), Z16
	VCVTPH2PS 32(R8)(R13*2), Z17
	VCVTPH2PS 64(R8)(R13*2), Z18
	VCVTPH2PS 96(R8)(R13*2), Z19
	VCVTPH2PS 0(R8)(R14*1), Z20
	VCVTPH2PS 32(R8)(R14*1), Z21
	VCVTPH2PS 64(R8)(R14*1), Z22
	VCVTPH2PS 96(R8)(R14*1), Z23
	MOVQ      DI, BX
	MOVQ      ms+48(FP), SI
	MOVQ      vs+56(FP), DX
	MOVQ      n+32(FP), CX
	LEAQ      (R15)(R15*2), R10

m4_row:
	VCVTPH2PS 0(BX), Z0
	VCVTPH2PS 32(BX), Z1
	VCVTPH2PS 64(BX), Z2
	VCVTPH2PS 96(BX), Z3
	MAD4_QUERY((SI), (DX), Z8, Z9, Z10, Z11, m4_s0, m4_b0)
	MAD4_QUERY((SI)(R15*1), (DX)(R15*1), Z12, Z13, Z14, Z15, m4_s1, m4_b1)
	MAD4_QUERY((SI)(R15*2), (DX)(R15*2), Z16, Z17, Z18, Z19, m4_s2, m4_b2)
	MAD4_QUERY((SI)(R10*1), (DX)(R10*1), Z20, Z21, Z22, Z23, m4_s3, m4_b3)
	ADDQ R9, BX
	ADDQ $4, SI
	ADDQ $4, DX
	DECQ CX
	JNZ  m4_row

	VCVTPS2PH $0, Z8, 0(R8)
	VCVTPS2PH $0, Z9, 32(R8)
	VCVTPS2PH $0, Z10, 64(R8)
	VCVTPS2PH $0, Z11, 96(R8)
	VCVTPS2PH $0, Z12, 0(R8)(R13*1)
	VCVTPS2PH $0, Z13, 32(R8)(R13*1)
	VCVTPS2PH $0, Z14, 64(R8)(R13*1)
	VCVTPS2PH $0, Z15, 96(R8)(R13*1)
	VCVTPS2PH $0, Z16, 0(R8)(R13*2)
	VCVTPS2PH $0, Z17, 32(R8)(R13*2)
	VCVTPS2PH $0, Z18, 64(R8)(R13*2)
	VCVTPS2PH $0, Z19, 96(R8)(R13*2)
	VCVTPS2PH $0, Z20, 0(R8)(R14*1)
	VCVTPS2PH $0, Z21, 32(R8)(R14*1)
	VCVTPS2PH $0, Z22, 64(R8)(R14*1)
	VCVTPS2PH $0, Z23, 96(R8)(R14*1)
	ADDQ $128, R8
	ADDQ $128, DI
	DECQ R11
	JNZ  m4_chunk
	VZEROUPPER
	RET

	MAD4_SCALE(Z8, Z9, Z10, Z11, m4_s0, m4_b0)
	MAD4_SCALE(Z12, Z13, Z14, Z15, m4_s1, m4_b1)
	MAD4_SCALE(Z16, Z17, Z18, Z19, m4_s2, m4_b2)
	MAD4_SCALE(Z20, Z21, Z22, Z23, m4_s3, m4_b3)
