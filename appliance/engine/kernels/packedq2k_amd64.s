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

// AVX2 (PA_SB_DOT1, PA_SB_DOT4): packed Q2_K, each 2-bit field of a quant vector shifted down
// and masked, its products widened and scaled by its sub-block's scales (the low nibbles of
// the scale bytes, in both words of their row's lane) as PA_DOT does. The mins term
// Σ_s m_s·bsum_s comes once a super-block: the rows' scale-byte pairs as words shifted down to
// their mins (high nibbles), VPMADDWD with the prepared bsum pairs, which lie in the same
// order (q2kBsumOff). Registers as PA_DOT's callers have them: Y4-Y7 the quarter's scale
// words (fields 0-3), Y8 the group's quant bytes, Y9 a field's quants.

// The scales of one sub-block of a pair (pick: its bytes, the pair's first or second) at
// off(SI), each in the low byte of both words of its row's lane.
#define PA2_SCW(off, pick, reg) \
	VBROADCASTI128 off(SI), reg; \
	VPSHUFB        pick, reg, reg; \
	VPAND          ·paNibbles(SB), reg, reg

// The group of quant bytes at woff (half h of the rows), its activations from yoff: each
// field's products for the columns cols.
#define PA2_GROUP(cols, woff, yoff, h) \
	VMOVDQU woff+32*h(SI), Y8; \
	VPAND   pa2Field<>(SB), Y8, Y9; \
	cols(yoff, Y9, Y4, Y1); \
	VPSRLW  $2, Y8, Y9; \
	VPAND   pa2Field<>(SB), Y9, Y9; \
	cols(yoff+32, Y9, Y5, Y2); \
	VPSRLW  $4, Y8, Y9; \
	VPAND   pa2Field<>(SB), Y9, Y9; \
	cols(yoff+64, Y9, Y6, Y3); \
	VPSRLW  $6, Y8, Y9; \
	VPAND   pa2Field<>(SB), Y9, Y9; \
	cols(yoff+96, Y9, Y7, Y14)

// Quarter Q = 2q+n at base q4 (320·Q): g = 4q..4q+3 of half n, sub-blocks 8n+2j+q.
#define PA2_QUARTER(cols, zero, flush, q4, q, n, h) \
	PA2_SCW(q4+256+16*h, pa2PickA<>(SB), Y4); \
	PA2_SCW(q4+256+16*h, pa2PickB<>(SB), Y5); \
	PA2_SCW(q4+288+16*h, pa2PickA<>(SB), Y6); \
	PA2_SCW(q4+288+16*h, pa2PickB<>(SB), Y7); \
	zero; \
	PA2_GROUP(cols, q4, 128*n+16*q, h); \
	PA2_GROUP(cols, q4+64, 128*n+16*q+4, h); \
	PA2_GROUP(cols, q4+128, 128*n+16*q+8, h); \
	PA2_GROUP(cols, q4+192, 128*n+16*q+12, h); \
	flush

// How far ahead the AVX2 kernels prefetch: the super-block after next, from the next one's
// last line; each quarter fetches its five lines, the super-block its line of d and dmin.
#define PF2_DIST 2*1344-64

#define PA2_PF_QUARTER(q4) \
	PREFETCHT0 PF2_DIST+q4(R12); \
	PREFETCHT0 PF2_DIST+q4+64(R12); \
	PREFETCHT0 PF2_DIST+q4+128(R12); \
	PREFETCHT0 PF2_DIST+q4+192(R12); \
	PREFETCHT0 PF2_DIST+q4+256(R12)

// The quarters of half h, prefetching from R12 (PA_PF_BASE).
#define PA2_QUARTERS(cols, zero, flush, h) \
	PA_PF_BASE(PF2_DIST, h); \
	PREFETCHT0 PF2_DIST+1280(R12); \
	PA2_PF_QUARTER(0); \
	PA2_QUARTER(cols, zero, flush, 0, 0, 0, h); \
	PA2_PF_QUARTER(320); \
	PA2_QUARTER(cols, zero, flush, 320, 0, 1, h); \
	PA2_PF_QUARTER(640); \
	PA2_QUARTER(cols, zero, flush, 640, 1, 0, h); \
	PA2_PF_QUARTER(960); \
	PA2_QUARTER(cols, zero, flush, 960, 1, 1, h)

// A pair of scale bytes per row (eight rows at off(SI)) as words, shifted down to the mins.
#define PA2_MINW(off, reg) \
	VPMOVZXBW off(SI), reg; \
	VPSRLW    $4, reg, reg

// Every quarter's two pairs of mins into Y4-Y11, in the order of the bsum pairs from 260.
#define PA2_MINWS(h) \
	PA2_MINW(256+16*h, Y4); \
	PA2_MINW(288+16*h, Y5); \
	PA2_MINW(576+16*h, Y6); \
	PA2_MINW(608+16*h, Y7); \
	PA2_MINW(896+16*h, Y8); \
	PA2_MINW(928+16*h, Y9); \
	PA2_MINW(1216+16*h, Y10); \
	PA2_MINW(1248+16*h, Y11)

// Column c's half-h super-block (integer sums sumi, activations at base) into its float sum.
#define PA2_END(c, base, sumi, h) \
	PA_PAIRDOTS(260, base); \
	PA_FRAME4_FMA2(c, base, sumi, Y12, 1280+16*h, 1312+16*h)

// Four columns (cols: PA_COLS4 or PV_COLS4).
#define PA2_BODY4C(cols, h) \
	PA2_QUARTERS(cols, EMPTY, EMPTY, h); \
	PA2_MINWS(h); \
	PA2_END(0, (DI), Y0, h); \
	PA2_END(1, (DI)(DX*1), Y1, h); \
	PA2_END(2, (R14), Y2, h); \
	PA2_END(3, (R14)(DX*1), Y3, h)

#define PV2_BODY4(h) PA2_BODY4C(PV_COLS4X, h)

// The first quarter after its prefetches.
#define PA2_QUARTER_PF(cols, zero, flush, h) \
	PA2_PF_QUARTER(0); \
	PA2_QUARTER(cols, zero, flush, 0, 0, 0, h)

// The quarters of half h as PA2_QUARTERS, but one quarter's code in a loop (labels nlab,
// qlab), as PA6_QUADS_LOOP does for Q6_K (the op cache): SI and the prefetch base R12 320 bytes
// on a quarter, the activations (DI, and R14 for four columns) 128 on to the second half of
// the super-block's elements and 16 on from the first to the second pair. Alternating passes,
// median of 15 (Zen 3, one thread): four columns 1.03x in the level-3 cache and 1.11x from
// memory, one column 1.13-1.23x and 1.01-1.03x.
#define PA2_QUARTERS_LOOP(cols, zero, flush, h, nlab, qlab) \
	PA_PF_BASE(PF2_DIST, h); \
	PREFETCHT0 PF2_DIST+1280(R12); \
	PA_LOOP2X2(PA2_QUARTER_PF(cols, zero, flush, h), 320, 128, -240, nlab, qlab)

#define PA2_BODY4_LOOP(h, nlab, qlab) \
	PA2_QUARTERS_LOOP(PA_COLS4X, EMPTY, EMPTY, h, nlab, qlab); \
	PA2_MINWS(h); \
	PA2_END(0, (DI), Y0, h); \
	PA2_END(1, (DI)(DX*1), Y1, h); \
	PA2_END(2, (R14), Y2, h); \
	PA2_END(3, (R14)(DX*1), Y3, h)

#define PA2_BODY4_H0(h) PA2_BODY4_LOOP(h, pa2x4_n0, pa2x4_q0)
#define PA2_BODY4_H1(h) PA2_BODY4_LOOP(h, pa2x4_n1, pa2x4_q1)

#define PA2_BODY1_LOOP(h, nlab, qlab) \
	PA2_QUARTERS_LOOP(PA_COLS1X, PA_SUMS16_ZERO, PA_SUMS16_FLUSH, h, nlab, qlab); \
	PA2_MINWS(h); \
	PA2_END(h, (DI), Y0, h)

#define PA2_BODY1_H0(h) PA2_BODY1_LOOP(h, pa2_n0, pa2_q0)
#define PA2_BODY1_H1(h) PA2_BODY1_LOOP(h, pa2_n1, pa2_q1)

// func dotPackedQ2KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)
TEXT ·dotPackedQ2KAVX2(SB), NOSPLIT, $64-48
	PA_SB_DOT1_2(PA2_BODY1_H0, PA2_BODY1_H1, $1344, $320, pa2_panel, pa2_b0)

// func dotPackedQ2Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ2Kx4AVX2(SB), NOSPLIT, $128-64
	PA_SB_DOT4_2(PA2_BODY4_H0, PA2_BODY4_H1, $1344, $320, pa2x4_panel, pa2x4_b0, pa2x4_b1)

// func dotPackedQ2Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
TEXT ·dotPackedQ2Kx4AVXVNNI(SB), NOSPLIT, $128-64
	PA_SB_DOT4(PV2_BODY4, $1344, $320, pv2x4_panel, pv2x4_b0, pv2x4_b1)

DATA pa2Field<>+0(SB)/8, $0x0303030303030303
DATA pa2Field<>+8(SB)/8, $0x0303030303030303
DATA pa2Field<>+16(SB)/8, $0x0303030303030303
DATA pa2Field<>+24(SB)/8, $0x0303030303030303
GLOBL pa2Field<>(SB), RODATA|NOPTR, $32

// VPSHUFB indices: in each 128-bit lane of the eight rows' broadcast byte pairs, the first
// (pa2PickA) or second (pa2PickB) byte of row r's pair (rows 0-3, then 4-7) to the low byte of
// both words of its 32-bit lane, the high bytes zero.
DATA pa2PickA<>+0(SB)/8, $0x8002800280008000
DATA pa2PickA<>+8(SB)/8, $0x8006800680048004
DATA pa2PickA<>+16(SB)/8, $0x800a800a80088008
DATA pa2PickA<>+24(SB)/8, $0x800e800e800c800c
GLOBL pa2PickA<>(SB), RODATA|NOPTR, $32

DATA pa2PickB<>+0(SB)/8, $0x8003800380018001
DATA pa2PickB<>+8(SB)/8, $0x8007800780058005
DATA pa2PickB<>+16(SB)/8, $0x800b800b80098009
DATA pa2PickB<>+24(SB)/8, $0x800f800f800d800d
GLOBL pa2PickB<>(SB), RODATA|NOPTR, $32
