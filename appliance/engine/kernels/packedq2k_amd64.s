//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Kernels for packed Q2_K weights (packedq2k.go): 16 rows per 512-bit register, one row per
// 32-bit lane, against prepared activations (320 bytes a super-block: the 256 quants, the scale
// as float32, the sixteen sub-block sums as int16 in the scale bytes' pairs). Each 64-byte
// vector of quant bytes gives four vectors of 2-bit quants (field j shifted down and masked),
// each meeting its four broadcast activation quants in VPDPBUSD. Per quarter (half n, g =
// 4h..4h+3: sub-blocks 8n+2j+h) the four sub-block sums are scaled by the 16 rows' scales
// (VPMULLD) and added; the mins term is VPDPWSSD of the rows' mins, two sub-blocks a lane, with
// the sub-block sums. Then one FMA by d·yd and one by -dmin·yd: dotPackedQ2K's arithmetic. The
// integer sums are exact, so their order does not matter.
//
// Registers: Z31 = 0x03 in every byte, Z29 = 0x0f in every dword; Z1 = quant bytes, Z5 = the
// field's quants, Z2 = a pair of scale bytes widened to words (then the mins), Z3, Z4 = the
// pair's scales as dwords, Z6, Z8 scratch.

#define Q2_MASKS \
	MOVL         $0x03030303, AX; \
	VPBROADCASTD AX, Z31; \
	MOVL         $0x0f, AX; \
	VPBROADCASTD AX, Z29

// Quant vector k of quarter q = 2h+n: its four fields, each handed to its dot (d0..d3).
#define Q2_GROUP(h, n, k, d0, d1, d2, d3) \
	VMOVDQU64 320*(2*h+n)+64*k(SI), Z1; \
	PK16_W0; \
	d0(128*n+16*h+4*k); \
	PK16_WK($2); \
	d1(128*n+16*h+4*k+32); \
	PK16_WK($4); \
	d2(128*n+16*h+4*k+64); \
	PK16_WK($6); \
	d3(128*n+16*h+4*k+96)

// Scale-byte pair p of quarter q = 2h+n (sub-blocks of fields 2p and 2p+1): Z3, Z4 = their
// scales, Z2 = the pair widened to words.
#define Q2_PAIR(h, n, p) \
	VPMOVZXBW 320*(2*h+n)+256+32*p(SI), Z2; \
	VPANDD    Z29, Z2, Z3; \
	VPSRLD    $16, Z2, Z4; \
	VPANDD    Z29, Z4, Z4

// A field's sum acc scaled by sc, into tot.
#define Q2_SC(sc, acc, tot) \
	VPMULLD sc, acc, acc; \
	VPADDD  acc, tot, tot

// One column: quarter (h, n) into the scaled sum Z14 and the mins sum Z15.
#define Q2_QUARTER1(h, n) \
	ZERO_Z4(Z10, Z11, Z12, Z13); \
	Q2_GROUP(h, n, 0, PK16_D1_0, PK16_D1_1, PK16_D1_2, PK16_D1_3); \
	Q2_GROUP(h, n, 1, PK16_D1_0, PK16_D1_1, PK16_D1_2, PK16_D1_3); \
	Q2_GROUP(h, n, 2, PK16_D1_0, PK16_D1_1, PK16_D1_2, PK16_D1_3); \
	Q2_GROUP(h, n, 3, PK16_D1_0, PK16_D1_1, PK16_D1_2, PK16_D1_3); \
	Q2_PAIR(h, n, 0); \
	Q2_SC(Z3, Z10, Z14); \
	Q2_SC(Z4, Z11, Z14); \
	VPSRLW        $4, Z2, Z2; \
	VPDPWSSD.BCST 260+8*(2*h+n)(DI), Z2, Z15; \
	Q2_PAIR(h, n, 1); \
	Q2_SC(Z3, Z12, Z14); \
	Q2_SC(Z4, Z13, Z14); \
	VPSRLW        $4, Z2, Z2; \
	VPDPWSSD.BCST 260+8*(2*h+n)+4(DI), Z2, Z15

// The super-block's float part for the column at base: acc += float(sumi)·(d·yd) -
// float(mins)·(dmin·yd), the rows' d and dmin at 1280(SI) (sumi and mins are converted in
// place).
#define Q2_FMAS(base, sumi, mins, acc) \
	VCVTPH2PS    1280(SI), Z8; \
	VMULPS.BCST  256 base, Z8, Z8; \
	VCVTDQ2PS    sumi, sumi; \
	VFMADD231PS  Z8, sumi, acc; \
	VCVTPH2PS    1312(SI), Z6; \
	VMULPS.BCST  256 base, Z6, Z6; \
	VCVTDQ2PS    mins, mins; \
	VFNMADD231PS Z6, mins, acc

// Four columns (the fields' dots: PK16_D4_j): quarter (h, n) into the scaled sums Z13, Z18,
// Z23, Z7.
#define Q2_SC4(a0, a1, a2, a3, sc) \
	Q2_SC(sc, a0, Z13); \
	Q2_SC(sc, a1, Z18); \
	Q2_SC(sc, a2, Z23); \
	Q2_SC(sc, a3, Z7)

#define Q2_QUARTER4(h, n) \
	ZERO_Z4(Z9, Z10, Z11, Z12); \
	ZERO_Z4(Z14, Z15, Z16, Z17); \
	ZERO_Z4(Z19, Z20, Z21, Z22); \
	ZERO_Z4(Z24, Z25, Z26, Z27); \
	Q2_GROUP(h, n, 0, PK16_D4_0, PK16_D4_1, PK16_D4_2, PK16_D4_3); \
	Q2_GROUP(h, n, 1, PK16_D4_0, PK16_D4_1, PK16_D4_2, PK16_D4_3); \
	Q2_GROUP(h, n, 2, PK16_D4_0, PK16_D4_1, PK16_D4_2, PK16_D4_3); \
	Q2_GROUP(h, n, 3, PK16_D4_0, PK16_D4_1, PK16_D4_2, PK16_D4_3); \
	Q2_PAIR(h, n, 0); \
	Q2_SC4(Z9, Z14, Z19, Z24, Z3); \
	Q2_SC4(Z10, Z15, Z20, Z25, Z4); \
	Q2_PAIR(h, n, 1); \
	Q2_SC4(Z11, Z16, Z21, Z26, Z3); \
	Q2_SC4(Z12, Z17, Z22, Z27, Z4)

// Four columns: the mins of scale-byte pair p of quarter q against each column's sums, into
// Z9, Z14, Z19, Z24 (free once the quarters are done).
#define Q2_MINS4(q, p) \
	VPMOVZXBW     320*q+256+32*p(SI), Z2; \
	VPSRLW        $4, Z2, Z2; \
	VPDPWSSD.BCST 260+8*q+4*p(DI), Z2, Z9; \
	VPDPWSSD.BCST 260+8*q+4*p(DI)(DX*1), Z2, Z14; \
	VPDPWSSD.BCST 260+8*q+4*p(R14), Z2, Z19; \
	VPDPWSSD.BCST 260+8*q+4*p(R14)(DX*1), Z2, Z24

// Column c's super-block into its float sum in the frame (Z0 holds it meanwhile).
#define Q2_FMAS4(c, base, sumi, mins) \
	VMOVUPS c*64(SP), Z0; \
	Q2_FMAS(base, sumi, mins, Z0); \
	VMOVUPS Z0, c*64(SP)

// One column's super-block.
#define Q2_SB1 \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15; \
	Q2_QUARTER1(0, 0); \
	Q2_QUARTER1(0, 1); \
	Q2_QUARTER1(1, 0); \
	Q2_QUARTER1(1, 1); \
	Q2_FMAS((DI), Z14, Z15, Z0)

// Four columns' super-block.
#define Q2_SB4 \
	ZERO_Z4(Z13, Z18, Z23, Z7); \
	Q2_QUARTER4(0, 0); \
	Q2_QUARTER4(0, 1); \
	Q2_QUARTER4(1, 0); \
	Q2_QUARTER4(1, 1); \
	ZERO_Z4(Z9, Z14, Z19, Z24); \
	Q2_MINS4(0, 0); \
	Q2_MINS4(0, 1); \
	Q2_MINS4(1, 0); \
	Q2_MINS4(1, 1); \
	Q2_MINS4(2, 0); \
	Q2_MINS4(2, 1); \
	Q2_MINS4(3, 0); \
	Q2_MINS4(3, 1); \
	Q2_FMAS4(0, (DI), Z13, Z9); \
	Q2_FMAS4(1, (DI)(DX*1), Z18, Z14); \
	Q2_FMAS4(2, (R14), Z23, Z19); \
	Q2_FMAS4(3, (R14)(DX*1), Z7, Z24)

// func dotPackedQ2KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ2KVNNI(SB), NOSPLIT, $0-48
	PACKED_SB1(Q2_MASKS, Q2_SB1, $1344, $320, q2_panel, q2_block)

// func dotPackedQ2Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// Four prepared activation rows ystride bytes apart; column c's results at out + c·ostride
// bytes, its float sums meanwhile in the frame. Each column's arithmetic is that of
// dotPackedQ2KVNNI.
TEXT ·dotPackedQ2Kx4VNNI(SB), NOSPLIT, $256-64
	PACKED_SB4(Q2_MASKS, Q2_SB4, $1344, $320, q2x4_panel, q2x4_block)
