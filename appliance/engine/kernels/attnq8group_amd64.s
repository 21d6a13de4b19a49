//go:build amd64 && !purego

#include "textflag.h"

// Attention's Q8_0 products for four query heads that share their keys and values (one group
// of grouped-query attention), each cached row read and unpacked once for the four. Per query
// the arithmetic is dotQ8_0Row's and madQ8_0RowsGo's, bit for bit: the integer block dots are
// exact whatever the order of their additions, and every float operation is the one-query
// kernels' own, in their order.

// Score kernel: a row's two blocks of a pair fill one 512-bit register (block 2p in the low
// half, 2p+1 in the high), flipped to unsigned (k+128) for VPDPBUSD against each query's two
// blocks; the 128·Σq that the flip adds is subtracted per block after the lanes are summed.

// Q8D_ROWKEYS loads the row at mem's pair of blocks (quants at 2 and 36) into z as unsigned.
#define Q8D_ROWKEYS(mem0, mem1, y, z) \
	VMOVDQU      mem0, y; \
	VINSERTI64X4 $1, mem1, z, z; \
	VPXORD       Z31, z, z

// Q8D_FOLD128 and Q8D_FOLD32 add neighbouring 128-bit (32-bit) parts of a and of b: dst's
// parts are a's two sums, then b's (per 128-bit lane for Q8D_FOLD32). Uses Z2, Z3.
#define Q8D_FOLD128(a, b, dst) \
	VSHUFI32X4 $0x88, b, a, Z2; \
	VSHUFI32X4 $0xDD, b, a, Z3; \
	VPADDD     Z3, Z2, dst

#define Q8D_FOLD32(a, b, dst) \
	VSHUFPS $0x88, b, a, Z2; \
	VSHUFPS $0xDD, b, a, Z3; \
	VPADDD  Z3, Z2, dst

// Q8D_HALF scores two rows (r0 at mem r0, r1 at mem r1, each with its scale words at 0 and 34
// from it) against the four queries of the pair at SI into f: 32-bit lane 4l+i holds row i>>1,
// query 2(i&1)+(l>>1), block l&1 of the pair, as block product (float32(sum)·(dk·dq)).
// Uses Z0-Z4, Z8-Z15.
#define Q8D_HALF(r0q0, r0q1, r1q0, r1q1, r0d0, r0d1, r1d0, r1d1, f) \
	Q8D_ROWKEYS(r0q0, r0q1, Y0, Z0); \
	Q8D_ROWKEYS(r1q0, r1q1, Y1, Z1); \
	VPXORD   Z8, Z8, Z8; \
	VPXORD   Z9, Z9, Z9; \
	VPXORD   Z10, Z10, Z10; \
	VPXORD   Z11, Z11, Z11; \
	VPXORD   Z12, Z12, Z12; \
	VPXORD   Z13, Z13, Z13; \
	VPXORD   Z14, Z14, Z14; \
	VPXORD   Z15, Z15, Z15; \
	VPDPBUSD 0(SI), Z0, Z8; \
	VPDPBUSD 64(SI), Z0, Z9; \
	VPDPBUSD 128(SI), Z0, Z10; \
	VPDPBUSD 192(SI), Z0, Z11; \
	VPDPBUSD 0(SI), Z1, Z12; \
	VPDPBUSD 64(SI), Z1, Z13; \
	VPDPBUSD 128(SI), Z1, Z14; \
	VPDPBUSD 192(SI), Z1, Z15; \
	Q8D_FOLD128(Z8, Z9, Z8); \
	Q8D_FOLD128(Z10, Z11, Z10); \
	Q8D_FOLD128(Z12, Z13, Z12); \
	Q8D_FOLD128(Z14, Z15, Z14); \
	Q8D_FOLD32(Z8, Z10, Z8); \
	Q8D_FOLD32(Z12, Z14, Z12); \
	Q8D_FOLD32(Z8, Z12, Z8); \
	VPSUBD       256(SI), Z8, Z8; \
	VCVTDQ2PS    Z8, Z8; \
	VPBROADCASTW r0d0, K1, Y4; \
	VPBROADCASTW r1d0, K2, Y4; \
	VPBROADCASTW r0d1, K3, Y4; \
	VPBROADCASTW r1d1, K4, Y4; \
	VCVTPH2PS    Y4, Z4; \
	VMULPS       320(SI), Z4, Z4; \
	VMULPS       Z4, Z8, f

// func dotQ8_0Rows4AVX512(tab *byte, k *byte, kstride, groups, pairs int, scale float32, out *float32, ostride int)
// For groups·4 key rows kstride bytes apart, of pairs·2 Q8_0 blocks each, and the four queries
// in tab: out[j·ostride bytes + 4i] = scale · dotQ8_0Row(row i, query j). tab holds 384 bytes
// a pair of blocks: the four queries' 64 bytes of quants each, then per lane of Q8D_HALF's
// layout 128·Σq of that query and block (int32) and the query block's scale (float32).
TEXT ·dotQ8_0Rows4AVX512(SB), NOSPLIT, $0-64
	MOVQ         tab+0(FP), R8
	MOVQ         k+8(FP), DI
	MOVQ         kstride+16(FP), R9
	LEAQ         (R9)(R9*2), R14
	MOVQ         groups+24(FP), R10
	MOVQ         pairs+32(FP), R11
	VBROADCASTSS scale+40(FP), Z30
	MOVQ         out+48(FP), R12
	MOVQ         ostride+56(FP), R15
	LEAQ         (R15)(R15*2), AX
	MOVL         $0x80808080, DX
	VPBROADCASTD DX, Z31
	// The sums' lanes (Q8D_HALF's, rows 0-1 in 128-bit lanes 0-1 and rows 2-3 in 2-3) to
	// query-major order: out lane 4j+r takes sum lane q8dPerm[4j+r].
	VMOVDQU32    ·q8dPerm(SB), Z29
	// Word masks of the scale broadcasts: row r of a half, block b at words {2r, 2r+1} + 4b + 8·{0,1}.
	MOVL         $0x0303, DX
	KMOVW        DX, K1
	MOVL         $0x0C0C, DX
	KMOVW        DX, K2
	MOVL         $0x3030, DX
	KMOVW        DX, K3
	MOVL         $0xC0C0, DX
	KMOVW        DX, K4

q8d_group:
	VPXORD Z28, Z28, Z28
	MOVQ   R8, SI
	MOVQ   DI, BX
	MOVQ   R11, CX

q8d_pair:
	Q8D_HALF(2(BX), 36(BX), 2(BX)(R9*1), 36(BX)(R9*1), 0(BX), 34(BX), 0(BX)(R9*1), 34(BX)(R9*1), Z16)
	Q8D_HALF(2(BX)(R9*2), 36(BX)(R9*2), 2(BX)(R14*1), 36(BX)(R14*1), 0(BX)(R9*2), 34(BX)(R9*2), 0(BX)(R14*1), 34(BX)(R14*1), Z17)
	// The pair's first block's products of rows 0-3, added to the sums before its second's.
	VSHUFF32X4 $0x88, Z17, Z16, Z2
	VADDPS     Z2, Z28, Z28
	VSHUFF32X4 $0xDD, Z17, Z16, Z3
	VADDPS     Z3, Z28, Z28
	ADDQ       $68, BX
	ADDQ       $384, SI
	DECQ       CX
	JNZ        q8d_pair

	VMULPS        Z30, Z28, Z28
	VPERMPS       Z28, Z29, Z28
	VMOVUPS       X28, (R12)
	VEXTRACTF32X4 $1, Z28, (R12)(R15*1)
	VEXTRACTF32X4 $2, Z28, (R12)(R15*2)
	VEXTRACTF32X4 $3, Z28, (R12)(AX*1)
	ADDQ          $16, R12
	LEAQ          (DI)(R9*4), DI
	DECQ          R10
	JNZ           q8d_group
	VZEROUPPER
	RET

// Sum lane of row r, query j (Q8D_HALF's 4l+i for rows 0-1, plus 8 for rows 2-3), in the order
// of the output's lanes 4j+r.
DATA ·q8dPerm+0(SB)/4, $0
DATA ·q8dPerm+4(SB)/4, $2
DATA ·q8dPerm+8(SB)/4, $8
DATA ·q8dPerm+12(SB)/4, $10
DATA ·q8dPerm+16(SB)/4, $4
DATA ·q8dPerm+20(SB)/4, $6
DATA ·q8dPerm+24(SB)/4, $12
DATA ·q8dPerm+28(SB)/4, $14
DATA ·q8dPerm+32(SB)/4, $1
DATA ·q8dPerm+36(SB)/4, $3
DATA ·q8dPerm+40(SB)/4, $9
DATA ·q8dPerm+44(SB)/4, $11
DATA ·q8dPerm+48(SB)/4, $5
DATA ·q8dPerm+52(SB)/4, $7
DATA ·q8dPerm+56(SB)/4, $13
DATA ·q8dPerm+60(SB)/4, $15
GLOBL ·q8dPerm(SB), RODATA|NOPTR, $64

// Value kernel: a row's 64 values of a chunk (blocks 2c and 2c+1) dequantized once, d·q
// rounded, into Z0-Z3; each query then scales them by its weight and adds (no fused
// operations), its 64 sums held in four registers over all rows.

// Q8M_BLOCK dequantizes the block at mem (scale at off, quants at off+2) into za, zb.
#define Q8M_BLOCK(off, za, zb) \
	VPBROADCASTW off(BX), Y4; \
	VCVTPH2PS    Y4, Z4; \
	VPMOVSXBD    off+2(BX), za; \
	VPMOVSXBD    off+18(BX), zb; \
	VCVTDQ2PS    za, za; \
	VCVTDQ2PS    zb, zb; \
	VMULPS       Z4, za, za; \
	VMULPS       Z4, zb, zb

// Q8M_QUERY is query j's update: its sums a0-a3 rescaled where its factor at msa is not 1,
// then the values times its weight at vsa added.
#define Q8M_QUERY(msa, vsa, a0, a1, a2, a3, scale, back) \
	VMOVSS       msa, X4; \
	VUCOMISS     X5, X4; \
	JNE          scale; \
	JP           scale; \
back: \
	VBROADCASTSS vsa, Z24; \
	VMULPS       Z24, Z0, Z25; \
	VMULPS       Z24, Z1, Z26; \
	VMULPS       Z24, Z2, Z27; \
	VMULPS       Z24, Z3, Z28; \
	VADDPS       Z25, a0, a0; \
	VADDPS       Z26, a1, a1; \
	VADDPS       Z27, a2, a2; \
	VADDPS       Z28, a3, a3

#define Q8M_SCALE(a0, a1, a2, a3, scale, back) \
scale: \
	VBROADCASTSS X4, Z4; \
	VMULPS       Z4, a0, a0; \
	VMULPS       Z4, a1, a1; \
	VMULPS       Z4, a2, a2; \
	VMULPS       Z4, a3, a3; \
	JMP          back

// A query's 64 sums of a chunk at q, to or from four registers.
#define Q8M_LOAD(q, a0, a1, a2, a3) \
	VMOVUPS (q), a0; \
	VMOVUPS 64(q), a1; \
	VMOVUPS 128(q), a2; \
	VMOVUPS 192(q), a3

#define Q8M_STORE(q, a0, a1, a2, a3) \
	VMOVUPS a0, (q); \
	VMOVUPS a1, 64(q); \
	VMOVUPS a2, 128(q); \
	VMOVUPS a3, 192(q)

// func madQ8_0Rows64x4AVX512(acc *float32, astride int, v *byte, vstride, n, chunks int, ms, vs *float32, fstride int)
// madQ8_0RowsGo for four sums (astride bytes apart) over the same n value rows of chunks·2
// Q8_0 blocks: query j's factors at ms and vs plus j·fstride bytes.
TEXT ·madQ8_0Rows64x4AVX512(SB), NOSPLIT, $0-72
	MOVQ acc+0(FP), R8
	MOVQ astride+8(FP), R13
	MOVQ v+16(FP), DI
	MOVQ vstride+24(FP), R9
	MOVQ chunks+40(FP), R11
	MOVQ fstride+64(FP), R15
	MOVL $0x3f800000, AX
	VMOVD AX, X5

q8m_chunk:
	// The four queries' sums of the chunk at R8, AX, R12, R14.
	LEAQ (R8)(R13*1), AX
	LEAQ (R8)(R13*2), R12
	LEAQ (AX)(R13*2), R14
	Q8M_LOAD(R8, Z8, Z9, Z10, Z11)
	Q8M_LOAD(AX, Z12, Z13, Z14, Z15)
	Q8M_LOAD(R12, Z16, Z17, Z18, Z19)
	Q8M_LOAD(R14, Z20, Z21, Z22, Z23)
	MOVQ DI, BX
	MOVQ ms+48(FP), SI
	MOVQ vs+56(FP), DX
	MOVQ n+32(FP), CX
	LEAQ (R15)(R15*2), R10

q8m_row:
	Q8M_BLOCK(0, Z0, Z1)
	Q8M_BLOCK(34, Z2, Z3)
	Q8M_QUERY((SI), (DX), Z8, Z9, Z10, Z11, q8m_s0, q8m_b0)
	Q8M_QUERY((SI)(R15*1), (DX)(R15*1), Z12, Z13, Z14, Z15, q8m_s1, q8m_b1)
	Q8M_QUERY((SI)(R15*2), (DX)(R15*2), Z16, Z17, Z18, Z19, q8m_s2, q8m_b2)
	Q8M_QUERY((SI)(R10*1), (DX)(R10*1), Z20, Z21, Z22, Z23, q8m_s3, q8m_b3)
	ADDQ R9, BX
	ADDQ $4, SI
	ADDQ $4, DX
	DECQ CX
	JNZ  q8m_row

	Q8M_STORE(R8, Z8, Z9, Z10, Z11)
	Q8M_STORE(AX, Z12, Z13, Z14, Z15)
	Q8M_STORE(R12, Z16, Z17, Z18, Z19)
	Q8M_STORE(R14, Z20, Z21, Z22, Z23)
	ADDQ $256, R8
	ADDQ $68, DI
	DECQ R11
	JNZ  q8m_chunk
	VZEROUPPER
	RET

	Q8M_SCALE(Z8, Z9, Z10, Z11, q8m_s0, q8m_b0)
	Q8M_SCALE(Z12, Z13, Z14, Z15, q8m_s1, q8m_b1)
	Q8M_SCALE(Z16, Z17, Z18, Z19, q8m_s2, q8m_b2)
	Q8M_SCALE(Z20, Z21, Z22, Z23, q8m_s3, q8m_b3)
