//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Q4_1, Q5_0 and Q5_1 blocks (32 weights) on AVX2, one block a step: the nibbles in element
// order in Y1 (low nibbles of the 16 bytes are elements 0-15, high ones 16-31), the fifth bits
// (bit e of qh for element e) expanded to bytes, the exact integer dot of the block in eight
// int32 lanes, converted and added with one FMA by dx·dy into eight float lanes, summed at the
// end; Q4_1 and Q5_1 add m·s (the activation block's d·Σq) per block in a scalar sum.

// Byte e of the broadcast qh word picks byte e/8 (within each 128-bit lane: 0, 1 low; 2, 3 high).
DATA legacyBitShuf<>+0(SB)/8, $0x0000000000000000
DATA legacyBitShuf<>+8(SB)/8, $0x0101010101010101
DATA legacyBitShuf<>+16(SB)/8, $0x0202020202020202
DATA legacyBitShuf<>+24(SB)/8, $0x0303030303030303
GLOBL legacyBitShuf<>(SB), RODATA|NOPTR, $32

// Byte e: every bit but e mod 8, so that the byte is all ones exactly where that bit is set.
DATA legacyBitMask<>+0(SB)/8, $0x7fbfdfeff7fbfdfe
DATA legacyBitMask<>+8(SB)/8, $0x7fbfdfeff7fbfdfe
DATA legacyBitMask<>+16(SB)/8, $0x7fbfdfeff7fbfdfe
DATA legacyBitMask<>+24(SB)/8, $0x7fbfdfeff7fbfdfe
GLOBL legacyBitMask<>(SB), RODATA|NOPTR, $32

// Constants: Y15 = 0x0f bytes, Y14 = 1 in every word, Y13 = legacyBitShuf, Y12 =
// legacyBitMask, Y11 = all ones, Y10 = hi (0x10 or 0xf0 bytes).
#define LEGACY_SETUP(hi) \
	MOVQ         x+0(FP), SI; \
	MOVQ         y+8(FP), DI; \
	MOVQ         nb+16(FP), CX; \
	VXORPS       Y0, Y0, Y0; \
	VXORPS       X9, X9, X9; \
	MOVL         $0x0f0f0f0f, AX; \
	VMOVD        AX, X15; \
	VPBROADCASTD X15, Y15; \
	VPCMPEQW     Y11, Y11, Y11; \
	VPSRLW       $15, Y11, Y14; \
	VMOVDQU      legacyBitShuf<>(SB), Y13; \
	VMOVDQU      legacyBitMask<>(SB), Y12; \
	MOVL         $hi, AX; \
	VMOVD        AX, X10; \
	VPBROADCASTD X10, Y10

// Y1 = the 32 nibbles of the 16 bytes at off(SI), in element order.
#define NIB32(off) \
	VMOVDQU     off(SI), X1; \
	VPSRLW      $4, X1, X2; \
	VPAND       X15, X1, X1; \
	VPAND       X15, X2, X2; \
	VINSERTI128 $1, X2, Y1, Y1

// Y6 = 0xff in byte e where bit e of the 32 bits at off(SI) is set, else 0.
#define BITS32(off) \
	MOVL         off(SI), AX; \
	VMOVD        AX, X6; \
	VPBROADCASTD X6, Y6; \
	VPSHUFB      Y13, Y6, Y6; \
	VPOR         Y12, Y6, Y6; \
	VPCMPEQB     Y11, Y6, Y6

// Unsigned quants in Y1 against the activation quants at yq(DI): Y1 = their dot as float
// lanes.
#define UDOT(yq) \
	VPMADDUBSW yq(DI), Y1, Y1; \
	VPMADDWD   Y14, Y1, Y1; \
	VCVTDQ2PS  Y1, Y1

// Q4_1/Q5_1 block end: Y0 += dx·dy·Y1, X9 += mx·s (both pairs of F16 at (SI) and (DI)).
#define DM_FINISH \
	VMOVD        (SI), X2; \
	VCVTPH2PS    X2, X2; \
	VMOVD        (DI), X3; \
	VCVTPH2PS    X3, X3; \
	VMULPS       X3, X2, X2; \
	VBROADCASTSS X2, Y4; \
	VFMADD231PS  Y1, Y4, Y0; \
	VMOVSHDUP    X2, X5; \
	VADDSS       X5, X9, X9

#define LEGACY_END(bx, by) \
	ADDQ  $bx, SI; \
	ADDQ  $by, DI; \
	DECQ  CX

// X0 = the float lanes' sum plus the scalar sum.
#define LEGACY_SUM \
	HSUM_Y0; \
	VADDSS X9, X0, X0; \
	VZEROUPPER

// func dotQ4_1AVX2(x, y *byte, nb int) float32
// Q4_1 (20 bytes: d, m, 16 bytes of nibbles) against Q8_1 (36 bytes: d, s, 32 quants).
TEXT ·dotQ4_1AVX2(SB), NOSPLIT, $0-28
	LEGACY_SETUP(0)

q41_loop:
	NIB32(4)
	UDOT(4)
	DM_FINISH
	LEGACY_END(20, 36)
	JNZ q41_loop
	LEGACY_SUM
	VMOVSS X0, ret+24(FP)
	RET

// func dotQ5_1AVX2(x, y *byte, nb int) float32
// Q5_1 (24 bytes: d, m, qh, 16 bytes of nibbles) against Q8_1: the quant is nibble | 16·bit.
TEXT ·dotQ5_1AVX2(SB), NOSPLIT, $0-28
	LEGACY_SETUP(0x10101010)

q51_loop:
	NIB32(8)
	BITS32(4)
	VPAND Y10, Y6, Y6
	VPOR  Y6, Y1, Y1
	UDOT(4)
	DM_FINISH
	LEGACY_END(24, 36)
	JNZ q51_loop
	LEGACY_SUM
	VMOVSS X0, ret+24(FP)
	RET

// func dotQ5_0AVX2(x, y *byte, nb int) float32
// Q5_0 (22 bytes: d, qh, 16 bytes of nibbles) against Q8_0: the quant is (nibble | 16·bit) - 16,
// as a signed byte nibble | 0xf0 where the bit is clear; signed by signed through
// |x|·(y·sign x) in VPMADDUBSW.
TEXT ·dotQ5_0AVX2(SB), NOSPLIT, $0-28
	LEGACY_SETUP(0xf0f0f0f0)

q50_loop:
	NIB32(6)
	BITS32(2)
	VPANDN       Y10, Y6, Y6
	VPOR         Y6, Y1, Y1
	VPSIGNB      Y1, Y1, Y2
	VMOVDQU      2(DI), Y3
	VPSIGNB      Y1, Y3, Y3
	VPMADDUBSW   Y3, Y2, Y2
	VPMADDWD     Y14, Y2, Y2
	VCVTDQ2PS    Y2, Y2
	MOVWLZX      (SI), AX
	VMOVD        AX, X4
	VCVTPH2PS    X4, X4
	MOVWLZX      (DI), AX
	VMOVD        AX, X5
	VCVTPH2PS    X5, X5
	VMULSS       X5, X4, X4
	VBROADCASTSS X4, Y4
	VFMADD231PS  Y2, Y4, Y0
	LEGACY_END(22, 34)
	JNZ q50_loop
	LEGACY_SUM
	VMOVSS X0, ret+24(FP)
	RET

// Q5_0, four columns (activations at (DI), (DI)(DX*1), (R14), (R14)(DX*1); sums in Y0-Y3):
// the block's signed quants (Y4) and their magnitudes (Y5) are made once; each column's
// arithmetic is dotQ5_0AVX2's, so the results are the same bit for bit.
#define Q50X4_COL(base, acc) \
	VMOVDQU      2 base, Y6; \
	VPSIGNB      Y4, Y6, Y6; \
	VPMADDUBSW   Y6, Y5, Y6; \
	VPMADDWD     Y14, Y6, Y6; \
	VCVTDQ2PS    Y6, Y6; \
	MOVWLZX      0 base, AX; \
	VMOVD        AX, X7; \
	VCVTPH2PS    X7, X7; \
	VMULSS       X7, X8, X7; \
	VBROADCASTSS X7, Y7; \
	VFMADD231PS  Y6, Y7, acc

// func dotQ5_0x4AVX2(x, y *byte, ystride int, nb int, out *float32)
TEXT ·dotQ5_0x4AVX2(SB), NOSPLIT, $0-40
	X4_PROLOGUE
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	VPCMPEQW     Y11, Y11, Y11
	VPSRLW       $15, Y11, Y14
	VMOVDQU      legacyBitShuf<>(SB), Y13
	VMOVDQU      legacyBitMask<>(SB), Y12
	MOVL         $0xf0f0f0f0, AX
	VMOVD        AX, X10
	VPBROADCASTD X10, Y10

q50x4_loop:
	VMOVDQU      6(SI), X4
	VPSRLW       $4, X4, X9
	VPAND        X15, X4, X4
	VPAND        X15, X9, X9
	VINSERTI128  $1, X9, Y4, Y4
	MOVL         2(SI), AX
	VMOVD        AX, X6
	VPBROADCASTD X6, Y6
	VPSHUFB      Y13, Y6, Y6
	VPOR         Y12, Y6, Y6
	VPCMPEQB     Y11, Y6, Y6
	VPANDN       Y10, Y6, Y6
	VPOR         Y6, Y4, Y4
	VPSIGNB      Y4, Y4, Y5
	MOVWLZX      (SI), AX
	VMOVD        AX, X8
	VCVTPH2PS    X8, X8
	Q50X4_COL((DI), Y0)
	Q50X4_COL((DI)(DX*1), Y1)
	Q50X4_COL((R14), Y2)
	Q50X4_COL((R14)(DX*1), Y3)
	ADDQ         $22, SI
	ADDQ         $34, DI
	ADDQ         $34, R14
	DECQ         CX
	JNZ          q50x4_loop
	X4_STORE
	RET

// 0x10 in every byte: the fifth bit of a Q5_1 quant, for the four-column kernel, which has no
// register left to hold it.
DATA legacyHi10<>+0(SB)/8, $0x1010101010101010
DATA legacyHi10<>+8(SB)/8, $0x1010101010101010
DATA legacyHi10<>+16(SB)/8, $0x1010101010101010
DATA legacyHi10<>+24(SB)/8, $0x1010101010101010
GLOBL legacyHi10<>(SB), RODATA|NOPTR, $32

// Q4_1 and Q5_1, four columns (activations as in dotQ5_0x4AVX2; float sums in Y0-Y3, m·s sums
// in X9-X12): the block's unsigned quants (Y4) and its (d, m) as floats (X8) are made once; each
// column's arithmetic is DM_FINISH's, so the results are dotQ4_1AVX2's and dotQ5_1AVX2's bit for
// bit. Constants: Y13 = all ones, Y14 = 1 in every word, Y15 = 0x0f bytes.
#define DMX4_SETUP \
	X4_PROLOGUE; \
	VXORPS       X9, X9, X9; \
	VXORPS       X10, X10, X10; \
	VXORPS       X11, X11, X11; \
	VXORPS       X12, X12, X12; \
	MOVL         $0x0f0f0f0f, AX; \
	VMOVD        AX, X15; \
	VPBROADCASTD X15, Y15; \
	VPCMPEQW     Y13, Y13, Y13; \
	VPSRLW       $15, Y13, Y14

// Y4 = the 32 nibbles of the 16 bytes at off(SI), in element order; X8 = the block's d and m.
#define DMX4_BLOCK(off) \
	VMOVDQU     off(SI), X4; \
	VPSRLW      $4, X4, X5; \
	VPAND       X15, X4, X4; \
	VPAND       X15, X5, X5; \
	VINSERTI128 $1, X5, Y4, Y4; \
	VMOVD       (SI), X8; \
	VCVTPH2PS   X8, X8

#define DMX4_COL(base, acc, macc) \
	VPMADDUBSW   4 base, Y4, Y6; \
	VPMADDWD     Y14, Y6, Y6; \
	VCVTDQ2PS    Y6, Y6; \
	VMOVD        0 base, X7; \
	VCVTPH2PS    X7, X7; \
	VMULPS       X7, X8, X7; \
	VBROADCASTSS X7, Y5; \
	VFMADD231PS  Y6, Y5, acc; \
	VMOVSHDUP    X7, X5; \
	VADDSS       X5, macc, macc

#define DMX4_COLS \
	DMX4_COL((DI), Y0, X9); \
	DMX4_COL((DI)(DX*1), Y1, X10); \
	DMX4_COL((R14), Y2, X11); \
	DMX4_COL((R14)(DX*1), Y3, X12)

#define DMX4_NEXT(xbytes, label) \
	ADDQ $xbytes, SI; \
	ADDQ $36, DI; \
	ADDQ $36, R14; \
	DECQ CX; \
	JNZ  label

// out[c] = column c's lanes summed, plus its m·s sum, as LEGACY_SUM adds them.
#define DMX4_STORE \
	MOVQ   out+32(FP), R8; \
	HSUM(Y0, X0, X13); \
	VADDSS X9, X0, X0; \
	VMOVSS X0, 0(R8); \
	HSUM(Y1, X1, X13); \
	VADDSS X10, X1, X1; \
	VMOVSS X1, 4(R8); \
	HSUM(Y2, X2, X13); \
	VADDSS X11, X2, X2; \
	VMOVSS X2, 8(R8); \
	HSUM(Y3, X3, X13); \
	VADDSS X12, X3, X3; \
	VMOVSS X3, 12(R8); \
	VZEROUPPER

// func dotQ4_1x4AVX2(x, y *byte, ystride int, nb int, out *float32)
TEXT ·dotQ4_1x4AVX2(SB), NOSPLIT, $0-40
	DMX4_SETUP

q41x4_loop:
	DMX4_BLOCK(4)
	DMX4_COLS
	DMX4_NEXT(20, q41x4_loop)
	DMX4_STORE
	RET

// func dotQ5_1x4AVX2(x, y *byte, ystride int, nb int, out *float32)
// The fifth bits as BITS32 makes them, with its constants read from memory.
TEXT ·dotQ5_1x4AVX2(SB), NOSPLIT, $0-40
	DMX4_SETUP

q51x4_loop:
	DMX4_BLOCK(8)
	MOVL         4(SI), AX
	VMOVD        AX, X6
	VPBROADCASTD X6, Y6
	VPSHUFB      legacyBitShuf<>(SB), Y6, Y6
	VPOR         legacyBitMask<>(SB), Y6, Y6
	VPCMPEQB     Y13, Y6, Y6
	VPAND        legacyHi10<>(SB), Y6, Y6
	VPOR         Y6, Y4, Y4
	DMX4_COLS
	DMX4_NEXT(24, q51x4_loop)
	DMX4_STORE
	RET
