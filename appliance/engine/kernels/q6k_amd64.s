//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Q6_K x Q8_K on 512-bit registers (AVX-512 BW): dotQ6KAVX2's arithmetic, 64 elements a step.
// Its 8-lane integer sums are ggml's: lane k of a 64-element chunk holds elements 4k..4k+3 of
// the chunk's first 32 (lanes 0-7) and of its second 32 (lanes 8-15), and folding the upper
// eight lanes onto the lower before the conversion to float adds, exactly, what the AVX2 kernel
// adds one 32-element group after the other. So the result is the AVX2 kernel's bit for bit.
//
// Per super-block: chunk A of half n is elements 128n..128n+63 (low nibbles of ql[64n..],
// high bits qh[32n..] bits 0-1 then 2-3), chunk B elements 128n+64.. (high nibbles, qh bits 4-5
// then 6-7); h = [qh | qh>>2] lines both chunks' high bits up with their elements. Chunk c uses
// scales 4c..4c+3, one per 16 elements: VPERMW spreads them from the 16 scale words.

DATA q6kScaleIdx<>+0(SB)/8, $0x0000000000000000
DATA q6kScaleIdx<>+8(SB)/8, $0x0000000000000000
DATA q6kScaleIdx<>+16(SB)/8, $0x0001000100010001
DATA q6kScaleIdx<>+24(SB)/8, $0x0001000100010001
DATA q6kScaleIdx<>+32(SB)/8, $0x0002000200020002
DATA q6kScaleIdx<>+40(SB)/8, $0x0002000200020002
DATA q6kScaleIdx<>+48(SB)/8, $0x0003000300030003
DATA q6kScaleIdx<>+56(SB)/8, $0x0003000300030003
DATA q6kScaleIdx<>+64(SB)/8, $0x0004000400040004
DATA q6kScaleIdx<>+72(SB)/8, $0x0004000400040004
DATA q6kScaleIdx<>+80(SB)/8, $0x0005000500050005
DATA q6kScaleIdx<>+88(SB)/8, $0x0005000500050005
DATA q6kScaleIdx<>+96(SB)/8, $0x0006000600060006
DATA q6kScaleIdx<>+104(SB)/8, $0x0006000600060006
DATA q6kScaleIdx<>+112(SB)/8, $0x0007000700070007
DATA q6kScaleIdx<>+120(SB)/8, $0x0007000700070007
DATA q6kScaleIdx<>+128(SB)/8, $0x0008000800080008
DATA q6kScaleIdx<>+136(SB)/8, $0x0008000800080008
DATA q6kScaleIdx<>+144(SB)/8, $0x0009000900090009
DATA q6kScaleIdx<>+152(SB)/8, $0x0009000900090009
DATA q6kScaleIdx<>+160(SB)/8, $0x000a000a000a000a
DATA q6kScaleIdx<>+168(SB)/8, $0x000a000a000a000a
DATA q6kScaleIdx<>+176(SB)/8, $0x000b000b000b000b
DATA q6kScaleIdx<>+184(SB)/8, $0x000b000b000b000b
DATA q6kScaleIdx<>+192(SB)/8, $0x000c000c000c000c
DATA q6kScaleIdx<>+200(SB)/8, $0x000c000c000c000c
DATA q6kScaleIdx<>+208(SB)/8, $0x000d000d000d000d
DATA q6kScaleIdx<>+216(SB)/8, $0x000d000d000d000d
DATA q6kScaleIdx<>+224(SB)/8, $0x000e000e000e000e
DATA q6kScaleIdx<>+232(SB)/8, $0x000e000e000e000e
DATA q6kScaleIdx<>+240(SB)/8, $0x000f000f000f000f
DATA q6kScaleIdx<>+248(SB)/8, $0x000f000f000f000f
GLOBL q6kScaleIdx<>(SB), RODATA|NOPTR, $256

// The four scale vectors of a super-block (Z4: its 16 scale words) into Z24-Z27: chunk c's
// words are its four scales, each repeated over its 16 elements (eight words of pair sums).
#define Q6K512_SCALES \
	VPERMW Z4, Z16, Z24; \
	VPERMW Z4, Z17, Z25; \
	VPERMW Z4, Z18, Z26; \
	VPERMW Z4, Z19, Z27

// Half n of the super-block at SI: load its quants (Z8: ql, Z10: h) and assemble chunk A's 64
// unsigned 6-bit quants in Z9 (Z28, Y11 scratch).
#define Q6K512_CHUNK_A(n) \
	VMOVDQU64    64*n(SI), Z8; \
	VMOVDQU      128+32*n(SI), Y10; \
	VPSRLW       $2, Y10, Y11; \
	VINSERTI64X4 $1, Y11, Z10, Z10; \
	VPANDD       Z14, Z8, Z9; \
	VPSLLW       $4, Z10, Z28; \
	VPTERNLOGD   $0xF8, Z13, Z28, Z9

// Chunk B of the half loaded by Q6K512_CHUNK_A, in Z9.
#define Q6K512_CHUNK_B \
	VPSRLW     $4, Z8, Z9; \
	VPANDD     Z14, Z9, Z9; \
	VPTERNLOGD $0xF8, Z13, Z10, Z9

// The chunk in Z9 against the column's activation quants at yoff base, with scale vector sc:
// sumi += madd(maddubs(q, y), sc) (Z12 scratch).
#define Q6K512_COL(yoff, base, sc, sumi) \
	VPMADDUBSW yoff base, Z9, Z12; \
	VPMADDWD   sc, Z12, Z12; \
	VPADDD     Z12, sumi, sumi

// Masks and scale permutations: Z14 = 0x0f bytes, Z13 = 0x30 bytes, Z16-Z19 the VPERMW indices.
#define Q6K512_CONSTS \
	MOVL         $0x0f0f0f0f, AX; \
	VPBROADCASTD AX, Z14; \
	MOVL         $0x30303030, AX; \
	VPBROADCASTD AX, Z13; \
	VMOVDQU64    q6kScaleIdx<>+0(SB), Z16; \
	VMOVDQU64    q6kScaleIdx<>+64(SB), Z17; \
	VMOVDQU64    q6kScaleIdx<>+128(SB), Z18; \
	VMOVDQU64    q6kScaleIdx<>+192(SB), Z19

// func dotQ6KAVX512(x, y *byte, nb int) float32
TEXT ·dotQ6KAVX512(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   nb+16(FP), CX
	VXORPS Y0, Y0, Y0
	Q6K512_CONSTS

q6k512_loop:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X3
	VCVTPH2PS    X3, X3
	VMULSS       (DI), X3, X3
	VBROADCASTSS X3, Y3

	VPMOVSXBW 192(SI), Y4     // 16 scales as words (the upper half of Z4 zeroed)
	VPMADDWD  260(DI), Y4, Y5 // sum sc*bsum in 8 lanes
	VPSLLD    $5, Y5, Y5
	Q6K512_SCALES

	VPXORD          Z7, Z7, Z7
	Q6K512_CHUNK_A(0)
	Q6K512_COL(4, (DI), Z24, Z7)
	Q6K512_CHUNK_B
	Q6K512_COL(68, (DI), Z25, Z7)
	Q6K512_CHUNK_A(1)
	Q6K512_COL(132, (DI), Z26, Z7)
	Q6K512_CHUNK_B
	Q6K512_COL(196, (DI), Z27, Z7)
	VEXTRACTI64X4   $1, Z7, Y6
	VPADDD          Y6, Y7, Y7
	VPSUBD          Y5, Y7, Y7
	VCVTDQ2PS       Y7, Y7
	VFMADD231PS     Y7, Y3, Y0

	ADDQ $210, SI
	ADDQ $292, DI
	DECQ CX
	JNZ  q6k512_loop

	HSUM_Y0
	VZEROUPPER
	VMOVSS X0, ret+24(FP)
	RET

// Four columns: chunk yoff of every column's activations.
#define Q6K512X4_COLS(yoff, sc) \
	Q6K512_COL(yoff, (DI), sc, Z20); \
	Q6K512_COL(yoff, (DI)(DX*1), sc, Z21); \
	Q6K512_COL(yoff, (R14), sc, Z22); \
	Q6K512_COL(yoff, (R14)(DX*1), sc, Z23)

// Four columns: the super-block total of the column at base (its integer lanes in zs, folded
// to eight) into acc, as dotQ6Kx4AVX2 adds it (Y15 = d; Y11, Y12 scratch).
#define Q6K512X4_FINISH(base, zs, acc) \
	VEXTRACTI64X4 $1, zs, Y12; \
	VPADDD        zs, Z12, Z12; \
	VPMADDWD      260 base, Y4, Y11; \
	VPSLLD        $5, Y11, Y11; \
	VPSUBD        Y11, Y12, Y12; \
	VCVTDQ2PS     Y12, Y12; \
	VBROADCASTSS  0 base, Y11; \
	VMULPS        Y15, Y11, Y11; \
	VFMADD231PS   Y12, Y11, acc

// func dotQ6Kx4AVX512(x, y *byte, ystride int, nb int, out *float32)
// dotQ6KAVX512 for four activation rows ystride bytes apart, each column's result that of
// dotQ6Kx4AVX2 (and so of dotQ6KAVX2) bit for bit; the weights are assembled once for all four.
TEXT ·dotQ6Kx4AVX512(SB), NOSPLIT, $0-40
	X4_PROLOGUE
	Q6K512_CONSTS

q6k512x4_loop:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X15
	VCVTPH2PS    X15, X15
	VBROADCASTSS X15, Y15
	VPMOVSXBW    192(SI), Y4
	Q6K512_SCALES

	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	Q6K512_CHUNK_A(0)
	Q6K512X4_COLS(4, Z24)
	Q6K512_CHUNK_B
	Q6K512X4_COLS(68, Z25)
	Q6K512_CHUNK_A(1)
	Q6K512X4_COLS(132, Z26)
	Q6K512_CHUNK_B
	Q6K512X4_COLS(196, Z27)
	Q6K512X4_FINISH((DI), Z20, Y0)
	Q6K512X4_FINISH((DI)(DX*1), Z21, Y1)
	Q6K512X4_FINISH((R14), Z22, Y2)
	Q6K512X4_FINISH((R14)(DX*1), Z23, Y3)

	X4_NEXT(210, q6k512x4_loop)
	X4_STORE
	RET
