//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Q4_K × Q8_K, four activation columns per weight row (prompt batches), with AVX-512 (VNNI,
// BW, VL) on 512-bit registers: the integer sums and the float steps of dotQ4KAVX2, so every
// column equals the one-column kernel bit for bit. (A one-column form of this kernel is no
// faster than dotQ4KAVX2: without columns to share them over, the vector scale unpacking and
// the scale permutations cost more than the scalar unpacking on the integer pipes.) A 64-element chunk (32 bytes of nibbles)
// goes into one register, low nibbles (sub-block 2k) in the low half and high nibbles
// (2k+1) in the high half, against the 64 activation quants of the two sub-blocks, which Q8_K
// stores in that order; VPDPWSSD adds the scaled pair sums into int32 lanes, whose two halves
// then fold onto the eight lanes of the AVX2 kernel. The 6-bit scales and mins are unpacked
// with a few byte shuffles, shifts and masks instead of scalar code.

// X6 = the super-block's eight scales then eight mins (bytes), from its 12 packed bytes at
// 4(SI): scales 0-3 and mins 0-3 are the low 6 bits of bytes 0-3 and 4-7; scales and mins 4-7
// take their low 4 bits from bytes 8-11 and their high 2 from the top bits of bytes 0-3 and
// 4-7.
#define Q4KV_SCALES \
	VMOVDQU  4(SI), X5; \
	VPSHUFB  X27, X5, X6; \
	VPSHUFB  X28, X5, X7; \
	VPSRLVD  X29, X6, X6; \
	VPANDD   X30, X6, X6; \
	VPSRLD   $2, X7, X7; \
	VPANDD   X31, X7, X7; \
	VPORD    X7, X6, X6; \
	VPMOVZXBW X6, Y6

// Z10-Z13 = the scale words of chunks 0-3 (VPDPWSSD operands), Y7 = the mins, each twice.
#define Q4KV_SCALEVECS \
	VPERMW Z6, Z22, Z10; \
	VPERMW Z6, Z23, Z11; \
	VPERMW Z6, Z24, Z12; \
	VPERMW Z6, Z25, Z13; \
	VPERMW Z6, Z26, Z7

// Chunk k's quants (unsigned 0..15) into zk.
#define Q4KV_NIBBLES(k, zk) \
	VBROADCASTI64X4 16+32*k(SI), zk; \
	VPSRLVW         Z20, zk, zk; \
	VPANDD          Z21, zk, zk

#define Q4KV_CONSTS \
	VMOVDQU64    q4kNibShift<>(SB), Z20; \
	MOVL         $0x0f0f0f0f, AX; \
	VPBROADCASTD AX, Z21; \
	VMOVDQU64    q4kScaleIdx<>(SB), Z22; \
	VMOVDQU64    q4kScaleIdx<>+64(SB), Z23; \
	VMOVDQU64    q4kScaleIdx<>+128(SB), Z24; \
	VMOVDQU64    q4kScaleIdx<>+192(SB), Z25; \
	VMOVDQU64    q4kMinIdx<>(SB), Z26; \
	VMOVDQU32    q4kUnpack<>(SB), X27; \
	VMOVDQU32    q4kUnpack<>+16(SB), X28; \
	VMOVDQU32    q4kUnpack<>+32(SB), X29; \
	VMOVDQU32    q4kUnpack<>+48(SB), X30; \
	VMOVDQU32    q4kUnpack<>+64(SB), X31

// Y8 = the column's integer sums (eight lanes), from the chunks in Z14-Z17 and activations at
// base.
#define Q4KV_SUMS(base) \
	VPXORD          Z8, Z8, Z8; \
	VPXORD          Z9, Z9, Z9; \
	VPMADDUBSW      4 base, Z14, Z18; \
	VPDPWSSD        Z10, Z18, Z8; \
	VPMADDUBSW      68 base, Z15, Z19; \
	VPDPWSSD        Z11, Z19, Z9; \
	VPMADDUBSW      132 base, Z16, Z18; \
	VPDPWSSD        Z12, Z18, Z8; \
	VPMADDUBSW      196 base, Z17, Z19; \
	VPDPWSSD        Z13, Z19, Z9; \
	VPADDD          Z9, Z8, Z8; \
	VEXTRACTI64X4   $1, Z8, Y9; \
	VPADDD          Y9, Y8, Y8

// acc += d·sums; acc -= dmin·(mins·group sums), d and dmin from X5 = [fp16 d, fp16 dmin] of
// the weights times the column's y.d, as in dotQ4KAVX2.
#define Q4KV_FINISH(base, acc) \
	VBROADCASTSS 0 base, X9; \
	VMULPS       X9, X5, X9; \
	VBROADCASTSS X9, Y18; \
	VCVTDQ2PS    Y8, Y8; \
	VFMADD231PS  Y8, Y18, acc; \
	VMOVSHDUP    X9, X9; \
	VBROADCASTSS X9, Y19; \
	VPMADDWD     260 base, Y7, Y9; \
	VCVTDQ2PS    Y9, Y9; \
	VFNMADD231PS Y9, Y19, acc

#define Q4KV_BLOCK \
	Q4KV_SCALES; \
	Q4KV_SCALEVECS; \
	Q4KV_NIBBLES(0, Z14); \
	Q4KV_NIBBLES(1, Z15); \
	Q4KV_NIBBLES(2, Z16); \
	Q4KV_NIBBLES(3, Z17); \
	MOVL      (SI), AX; \
	VMOVD     AX, X5; \
	VCVTPH2PS X5, X5

// func dotQ4Kx4VNNI(x, y *byte, ystride int, nb int, out *float32)
TEXT ·dotQ4Kx4VNNI(SB), NOSPLIT, $0-40
	X4_PROLOGUE
	Q4KV_CONSTS

q4kx4v_loop:
	Q4KV_BLOCK
	Q4KV_SUMS((DI))
	Q4KV_FINISH((DI), Y0)
	Q4KV_SUMS((DI)(DX*1))
	Q4KV_FINISH((DI)(DX*1), Y1)
	Q4KV_SUMS((R14))
	Q4KV_FINISH((R14), Y2)
	Q4KV_SUMS((R14)(DX*1))
	Q4KV_FINISH((R14)(DX*1), Y3)
	X4_NEXT(144, q4kx4v_loop)
	X4_STORE
	RET

// Q4_K scale unpacking (q4kUnpack: VPSHUFB indices P and Q, VPSRLVD counts, AND masks), see Q4KV_SCALES.
DATA q4kUnpack<>+0(SB)/8, $0x0b0a090803020100
DATA q4kUnpack<>+8(SB)/8, $0x0b0a090807060504
DATA q4kUnpack<>+16(SB)/8, $0x0302010080808080
DATA q4kUnpack<>+24(SB)/8, $0x0706050480808080
DATA q4kUnpack<>+32(SB)/8, $0x0000000000000000
DATA q4kUnpack<>+40(SB)/8, $0x0000000400000000
DATA q4kUnpack<>+48(SB)/8, $0x0f0f0f0f3f3f3f3f
DATA q4kUnpack<>+56(SB)/8, $0x0f0f0f0f3f3f3f3f
DATA q4kUnpack<>+64(SB)/8, $0x3030303000000000
DATA q4kUnpack<>+72(SB)/8, $0x3030303000000000
GLOBL q4kUnpack<>(SB), RODATA|NOPTR, $80

// VPERMW indices: for chunk k, scale 2k in the low half and 2k+1 in the high half.
DATA q4kScaleIdx<>+0(SB)/8, $0x0000000000000000
DATA q4kScaleIdx<>+8(SB)/8, $0x0000000000000000
DATA q4kScaleIdx<>+16(SB)/8, $0x0000000000000000
DATA q4kScaleIdx<>+24(SB)/8, $0x0000000000000000
DATA q4kScaleIdx<>+32(SB)/8, $0x0001000100010001
DATA q4kScaleIdx<>+40(SB)/8, $0x0001000100010001
DATA q4kScaleIdx<>+48(SB)/8, $0x0001000100010001
DATA q4kScaleIdx<>+56(SB)/8, $0x0001000100010001
DATA q4kScaleIdx<>+64(SB)/8, $0x0002000200020002
DATA q4kScaleIdx<>+72(SB)/8, $0x0002000200020002
DATA q4kScaleIdx<>+80(SB)/8, $0x0002000200020002
DATA q4kScaleIdx<>+88(SB)/8, $0x0002000200020002
DATA q4kScaleIdx<>+96(SB)/8, $0x0003000300030003
DATA q4kScaleIdx<>+104(SB)/8, $0x0003000300030003
DATA q4kScaleIdx<>+112(SB)/8, $0x0003000300030003
DATA q4kScaleIdx<>+120(SB)/8, $0x0003000300030003
DATA q4kScaleIdx<>+128(SB)/8, $0x0004000400040004
DATA q4kScaleIdx<>+136(SB)/8, $0x0004000400040004
DATA q4kScaleIdx<>+144(SB)/8, $0x0004000400040004
DATA q4kScaleIdx<>+152(SB)/8, $0x0004000400040004
DATA q4kScaleIdx<>+160(SB)/8, $0x0005000500050005
DATA q4kScaleIdx<>+168(SB)/8, $0x0005000500050005
DATA q4kScaleIdx<>+176(SB)/8, $0x0005000500050005
DATA q4kScaleIdx<>+184(SB)/8, $0x0005000500050005
DATA q4kScaleIdx<>+192(SB)/8, $0x0006000600060006
DATA q4kScaleIdx<>+200(SB)/8, $0x0006000600060006
DATA q4kScaleIdx<>+208(SB)/8, $0x0006000600060006
DATA q4kScaleIdx<>+216(SB)/8, $0x0006000600060006
DATA q4kScaleIdx<>+224(SB)/8, $0x0007000700070007
DATA q4kScaleIdx<>+232(SB)/8, $0x0007000700070007
DATA q4kScaleIdx<>+240(SB)/8, $0x0007000700070007
DATA q4kScaleIdx<>+248(SB)/8, $0x0007000700070007
GLOBL q4kScaleIdx<>(SB), RODATA|NOPTR, $256

// VPERMW indices: mins 0..7 (words 8..15), each twice, for the sixteen group sums.
DATA q4kMinIdx<>+0(SB)/8, $0x0009000900080008
DATA q4kMinIdx<>+8(SB)/8, $0x000b000b000a000a
DATA q4kMinIdx<>+16(SB)/8, $0x000d000d000c000c
DATA q4kMinIdx<>+24(SB)/8, $0x000f000f000e000e
DATA q4kMinIdx<>+32(SB)/8, $0x0000000000000000
DATA q4kMinIdx<>+40(SB)/8, $0x0000000000000000
DATA q4kMinIdx<>+48(SB)/8, $0x0000000000000000
DATA q4kMinIdx<>+56(SB)/8, $0x0000000000000000
GLOBL q4kMinIdx<>(SB), RODATA|NOPTR, $64

// VPSRLVW counts: low nibbles in the low half, high nibbles in the high half.
DATA q4kNibShift<>+0(SB)/8, $0x0000000000000000
DATA q4kNibShift<>+8(SB)/8, $0x0000000000000000
DATA q4kNibShift<>+16(SB)/8, $0x0000000000000000
DATA q4kNibShift<>+24(SB)/8, $0x0000000000000000
DATA q4kNibShift<>+32(SB)/8, $0x0004000400040004
DATA q4kNibShift<>+40(SB)/8, $0x0004000400040004
DATA q4kNibShift<>+48(SB)/8, $0x0004000400040004
DATA q4kNibShift<>+56(SB)/8, $0x0004000400040004
GLOBL q4kNibShift<>(SB), RODATA|NOPTR, $64
