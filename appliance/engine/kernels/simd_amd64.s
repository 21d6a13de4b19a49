//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// AVX2 + FMA + F16C kernels (and AVX-512 VNNI variants). The K-quant dots compute each block's
// integer sum exactly, convert it to float32 and add scale*sum into eight float lanes with FMA;
// the lanes are summed at the end; so do the Q4_0 dots (q4lanes_amd64.s), per 32-element block.
// The Q8_0 dots reproduce ggml's generic C code exactly (block sums in order, scalar float
// steps); see dotQ8_0B8VNNI.
//
// Signed-by-signed byte products use the identity x*y = |x| * (y*sign(x)) so that VPMADDUBSW
// (unsigned by signed) applies, or x*y = (x+128)*y - 128*y with VPDPBUSD.

// Q4_K super-block (144 bytes: d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of
// nibbles) against Q8_K (292 bytes: float32 d, 256 quants, 16 int16 sums of 16 quants).

// func dotQ4KAVX2(x, y *byte, nb int) float32
TEXT ·dotQ4KAVX2(SB), NOSPLIT, $0-28
	Q4K_ARGS

q4k_loop:
	Q4K_SUPERBLOCK(Y0)
	ADDQ $144, SI
	ADDQ $292, DI
	DECQ CX
	JNZ  q4k_loop

	HSUM_Y0
	VZEROUPPER
	VMOVSS X0, ret+24(FP)
	RET

DATA q5kBit<>+0(SB)/8, $0x1010101010101010
DATA q5kBit<>+8(SB)/8, $0x1010101010101010
DATA q5kBit<>+16(SB)/8, $0x1010101010101010
DATA q5kBit<>+24(SB)/8, $0x1010101010101010
GLOBL q5kBit<>(SB), RODATA|NOPTR, $32

// func dotQ5KAVX2(x, y *byte, nb int) float32
// Q5_K super-blocks (176 bytes) against Q8_K: dotQ4KAVX2 with the fifth bits (Q5K_SUPERBLOCK).
TEXT ·dotQ5KAVX2(SB), NOSPLIT, $0-28
	Q4K_ARGS
	MOVL         $0x10101010, AX
	VMOVD        AX, X8
	VPBROADCASTD X8, Y8

q5k_loop:
	Q5K_SUPERBLOCK(Y0)
	ADDQ $176, SI
	ADDQ $292, DI
	DECQ CX
	JNZ  q5k_loop

	HSUM_Y0
	VZEROUPPER
	VMOVSS X0, ret+24(FP)
	RET

// func dotQ4KRowsAVX2(x *byte, xstride int, rows int, y *byte, nb int, out *float32)
// dotQ4KAVX2 for rows weight rows xstride bytes apart against one activation row, one call for
// the lot.
TEXT ·dotQ4KRowsAVX2(SB), NOSPLIT, $0-48
	MOVQ         x+0(FP), R14
	MOVQ         rows+16(FP), DX
	MOVQ         out+40(FP), BX
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	VPCMPEQW     Y15, Y15, Y15
	VPSRLW       $15, Y15, Y15

q4kr_row:
	MOVQ   R14, SI
	MOVQ   y+24(FP), DI
	MOVQ   nb+32(FP), CX
	VXORPS Y0, Y0, Y0

q4kr_loop:
	Q4K_SUPERBLOCK(Y0)
	ADDQ $144, SI
	ADDQ $292, DI
	DECQ CX
	JNZ  q4kr_loop

	HSUM_Y0
	VMOVSS X0, (BX)
	ADDQ  $4, BX
	ADDQ  xstride+8(FP), R14
	DECQ  DX
	JNZ   q4kr_row
	VZEROUPPER
	RET

// func dotQ4KRows4AVX2(x *byte, xstride int, count int, dist int, y *byte, nb int, out *float32)
// dotQ4KRowsAVX2 for four runs of count rows, dist rows apart (results at out[k·dist + i]),
// walked as four streams in step, which keeps more memory reads in flight than one stream;
// each row's arithmetic is dotQ4KAVX2's. Frame: the four row pointers, the rows left, the
// stream distance in bytes of results.
TEXT ·dotQ4KRows4AVX2(SB), NOSPLIT, $48-56
	MOVQ         count+16(FP), CX
	MOVQ         CX, 32(SP)
	MOVQ         dist+24(FP), CX
	SHLQ         $2, CX
	MOVQ         CX, 40(SP)
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	VPCMPEQW     Y15, Y15, Y15
	VPSRLW       $15, Y15, Y15
	MOVQ         x+0(FP), R14

q4kr4_row:
	MOVQ   dist+24(FP), AX
	IMULQ  xstride+8(FP), AX
	MOVQ   R14, 0(SP)
	LEAQ   (R14)(AX*1), BX
	MOVQ   BX, 8(SP)
	ADDQ   AX, BX
	MOVQ   BX, 16(SP)
	ADDQ   AX, BX
	MOVQ   BX, 24(SP)
	MOVQ   y+32(FP), DI
	MOVQ   nb+40(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y13, Y13, Y13

q4kr4_loop:
	MOVQ 0(SP), SI
	Q4K_SUPERBLOCK(Y0)
	MOVQ 8(SP), SI
	Q4K_SUPERBLOCK(Y8)
	MOVQ 16(SP), SI
	Q4K_SUPERBLOCK(Y9)
	MOVQ 24(SP), SI
	Q4K_SUPERBLOCK(Y13)
	ADDQ $144, 0(SP)
	ADDQ $144, 8(SP)
	ADDQ $144, 16(SP)
	ADDQ $144, 24(SP)
	ADDQ $292, DI
	DECQ CX
	JNZ  q4kr4_loop

	MOVQ  out+48(FP), BX
	MOVQ  40(SP), DX
	HSUM_Y0
	VMOVSS X0, (BX)
	HSUM(Y8, X8, X1)
	VMOVSS X8, (BX)(DX*1)
	HSUM(Y9, X9, X1)
	VMOVSS X9, (BX)(DX*2)
	LEAQ  (BX)(DX*2), AX
	HSUM(Y13, X13, X1)
	VMOVSS X13, (AX)(DX*1)
	ADDQ  $4, out+48(FP)
	ADDQ  xstride+8(FP), R14
	DECQ  32(SP)
	JNZ   q4kr4_row
	VZEROUPPER
	RET

// Q6_K super-block (210 bytes: ql[128] low nibbles, qh[64] high 2 bits, 16 int8 scales, fp16 d)
// against Q8_K. The 6-bit values q are used unsigned and the offset of 32 is removed through
// the Q8_K group sums: sum sc*(q-32)*y = sum sc*q*y - 32 * sum sc*bsum.

// func dotQ6KAVX2(x, y *byte, nb int) float32
TEXT ·dotQ6KAVX2(SB), NOSPLIT, $32-28
	MOVQ         x+0(FP), SI
	MOVQ         y+8(FP), DI
	MOVQ         nb+16(FP), CX
	VXORPS       Y0, Y0, Y0
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $0x03030303, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13

q6k_loop:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X3
	VCVTPH2PS    X3, X3
	VMULSS       (DI), X3, X3
	VBROADCASTSS X3, Y3

	VPMOVSXBW 192(SI), Y4               // 16 scales as words
	VMOVDQU   Y4, 0(SP)
	VPMADDWD  260(DI), Y4, Y5           // sum sc*bsum in 8 lanes
	VPSLLD    $5, Y5, Y5

	VPXOR Y7, Y7, Y7
	Q6K_HALF(0)
	Q6K_HALF(1)
	VPSUBD      Y5, Y7, Y7
	VCVTDQ2PS   Y7, Y7
	VFMADD231PS Y7, Y3, Y0

	ADDQ $210, SI
	ADDQ $292, DI
	DECQ CX
	JNZ  q6k_loop

	HSUM_Y0
	VZEROUPPER
	VMOVSS X0, ret+24(FP)
	RET

// The float dots mirror ggml_vec_dot_f16/f32 on AVX2: four accumulators over steps of 32
// elements, reduced as ggml reduces them; the caller adds the leftovers (n % 32).

// func dotF16AVX2(x, y *uint16, n int) float32
TEXT ·dotF16AVX2(SB), NOSPLIT, $0-28
	FLOAT4_KERNEL(F16_STEP, $64, $64, f16_loop32)

// func dotF16F32AVX2(x *uint16, y *float32, n int) float32
// dotF16AVX2 against activations already widened to float32 (exactly, so the products and
// sums are the same).
TEXT ·dotF16F32AVX2(SB), NOSPLIT, $0-28
	FLOAT4_KERNEL(F16F32_STEP, $64, $128, f16f32_loop32)

// func dotBF16AVX2(x, y *uint16, n int) float32
// dotF16AVX2 for BF16: each value widened to float32 by a 16-bit shift (exact).
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	FLOAT4_ARGS

bf16_loop32:
	VPMOVZXWD   (SI), Y1
	VPMOVZXWD   (DI), Y2
	VPSLLD      $16, Y1, Y1
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y1, Y0
	VPMOVZXWD   16(SI), Y1
	VPMOVZXWD   16(DI), Y2
	VPSLLD      $16, Y1, Y1
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y1, Y5
	VPMOVZXWD   32(SI), Y1
	VPMOVZXWD   32(DI), Y2
	VPSLLD      $16, Y1, Y1
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y1, Y6
	VPMOVZXWD   48(SI), Y1
	VPMOVZXWD   48(DI), Y2
	VPSLLD      $16, Y1, Y1
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y1, Y7
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $32, CX
	JNZ         bf16_loop32
	GGML_REDUCE4
	VZEROUPPER
	VMOVSS X0, ret+24(FP)
	RET

// The two-row forms of dotF16AVX2 and dotBF16AVX2 (HALFR2_KERNEL).

// func dotF16R2AVX2(x, y *uint16, ystride int, n int, out *float32)
TEXT ·dotF16R2AVX2(SB), NOSPLIT, $0-40
	HALFR2_KERNEL(F16_WIDEN8, f16r2_loop32)

// func dotBF16R2AVX2(x, y *uint16, ystride int, n int, out *float32)
TEXT ·dotBF16R2AVX2(SB), NOSPLIT, $0-40
	HALFR2_KERNEL(BF16_WIDEN8, bf16r2_loop32)

// func dotF16R2RunsAVX2(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)
TEXT ·dotF16R2RunsAVX2(SB), NOSPLIT, $0-64
	HALFR2_RUNS(F16_WIDEN8, f16runs_p0, f16runs_p1, f16runs_row)

// func dotBF16R2RunsAVX2(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)
TEXT ·dotBF16R2RunsAVX2(SB), NOSPLIT, $0-64
	HALFR2_RUNS(BF16_WIDEN8, bf16runs_p0, bf16runs_p1, bf16runs_row)

// func dotF32AVX2(x, y *float32, n int) float32
TEXT ·dotF32AVX2(SB), NOSPLIT, $0-28
	FLOAT4_KERNEL(F32_STEP, $128, $128, f32_loop32)

// func madF16AVX2(acc, v *uint16, s float32, n int)
TEXT ·madF16AVX2(SB), NOSPLIT, $0-32
	MOVQ         acc+0(FP), SI
	MOVQ         v+8(FP), DI
	VBROADCASTSS s+16(FP), Y3
	MOVQ         n+24(FP), CX

mad_loop:
	VCVTPH2PS   (DI), Y1
	VCVTPH2PS   (SI), Y2
	VFMADD231PS Y3, Y1, Y2
	VCVTPS2PH   $0, Y2, (SI)
	ADDQ        $16, SI
	ADDQ        $16, DI
	SUBQ        $8, CX
	JNZ         mad_loop
	VZEROUPPER
	RET

// func dotF16RowsQ32AVX2(q *float32, k *uint16, kstride, n, dim int, scale float32, out *float32)
// For each of n key rows kstride bytes apart: out[i] = scale · (q · k_i), q already converted
// to float32 (the values VCVTPH2PS gives its halves), k_i converted here, summed like dotF16AVX2
// (four accumulators over 32-element steps, GGML_REDUCE4): the bits of one DotF16 a row. dim
// is a positive multiple of 32.
//
// Rows go eight at a time: each row's four accumulators fold into one register (the first
// three adds of GGML_REDUCE4), and the eight are then reduced together, halves and pairs in
// GGML_REDUCE4's order, into one register of eight scores. A row's sum then no longer waits
// for the serial horizontal adds of the row before it.
TEXT ·dotF16RowsQ32AVX2(SB), NOSPLIT, $0-56
	MOVQ         q+0(FP), R8
	MOVQ         k+8(FP), DI
	MOVQ         kstride+16(FP), R9
	MOVQ         n+24(FP), R10
	MOVQ         dim+32(FP), R11
	VBROADCASTSS scale+40(FP), Y13
	MOVQ         out+48(FP), R12

f16q32_group:
	CMPQ R10, $8
	JLT  f16q32_tail
	F16Q32_FOLD(Y5, f16q32_r0)
	F16Q32_FOLD(Y6, f16q32_r1)
	F16Q32_FOLD(Y7, f16q32_r2)
	F16Q32_FOLD(Y8, f16q32_r3)
	F16Q32_FOLD(Y9, f16q32_r4)
	F16Q32_FOLD(Y10, f16q32_r5)
	F16Q32_FOLD(Y11, f16q32_r6)
	F16Q32_FOLD(Y12, f16q32_r7)

	// Rows r and r+4 share a register: the low and high halves of each row added.
	VPERM2F128 $0x20, Y9, Y5, Y0
	VPERM2F128 $0x31, Y9, Y5, Y1
	VADDPS     Y1, Y0, Y0
	VPERM2F128 $0x20, Y10, Y6, Y1
	VPERM2F128 $0x31, Y10, Y6, Y2
	VADDPS     Y2, Y1, Y1
	VPERM2F128 $0x20, Y11, Y7, Y2
	VPERM2F128 $0x31, Y11, Y7, Y3
	VADDPS     Y3, Y2, Y2
	VPERM2F128 $0x20, Y12, Y8, Y3
	VPERM2F128 $0x31, Y12, Y8, Y4
	VADDPS     Y4, Y3, Y3

	// Pairs, then pairs of pairs: rows 0-3 in the low half, 4-7 in the high.
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VMULPS  Y13, Y0, Y0
	VMOVUPS Y0, (R12)
	ADDQ    $32, R12
	SUBQ    $8, R10
	JMP     f16q32_group

f16q32_tail:
	TESTQ R10, R10
	JZ    f16q32_done

f16q32_row:
	MOVQ   R8, SI
	MOVQ   DI, BX
	MOVQ   R11, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

f16q32_loop32:
	VCVTPH2PS   (BX), Y2
	VFMADD231PS (SI), Y2, Y0
	VCVTPH2PS   16(BX), Y2
	VFMADD231PS 32(SI), Y2, Y5
	VCVTPH2PS   32(BX), Y2
	VFMADD231PS 64(SI), Y2, Y6
	VCVTPH2PS   48(BX), Y2
	VFMADD231PS 96(SI), Y2, Y7
	ADDQ        $128, SI
	ADDQ        $64, BX
	SUBQ        $32, CX
	JNZ         f16q32_loop32
	GGML_REDUCE4
	VMULSS      X13, X0, X0
	VMOVSS      X0, (R12)
	ADDQ        $4, R12
	ADDQ        R9, DI
	DECQ        R10
	JNZ         f16q32_row

f16q32_done:
	VZEROUPPER
	RET

// func madF16RowsAVX2(acc, v *uint16, vstride, n, dim int, ms, vs *float32)
// For each of n rows: acc = f16(acc·ms[i]) unless ms[i] is 1, then acc = f16(v_i·vs[i] + acc)
// (the loops of scaleF16AVX2 and madF16AVX2), dim a positive multiple of 8.
TEXT ·madF16RowsAVX2(SB), NOSPLIT, $0-56
	MADROWS_ARGS(dim)

madrows_row:
	MADROWS_RESCALE(madrows_scale)

madrows_mad:
	VBROADCASTSS (R13), Y3
	MOVQ         R8, SI
	MOVQ         DI, BX
	MOVQ         R11, CX

madrows_loop:
	VCVTPH2PS   (BX), Y1
	VCVTPH2PS   (SI), Y2
	VFMADD231PS Y3, Y1, Y2
	VCVTPS2PH   $0, Y2, (SI)
	ADDQ        $16, SI
	ADDQ        $16, BX
	SUBQ        $8, CX
	JNZ         madrows_loop
	MADROWS_NEXT(madrows_row)
	VZEROUPPER
	RET

madrows_scale:
	VBROADCASTSS X4, Y4
	MOVQ         R8, SI
	MOVQ         R11, CX

madrows_scale_loop:
	VCVTPH2PS (SI), Y2
	VMULPS    Y4, Y2, Y2
	VCVTPS2PH $0, Y2, (SI)
	ADDQ      $16, SI
	SUBQ      $8, CX
	JNZ       madrows_scale_loop
	JMP       madrows_mad

// func madF16Rows64AVX2(acc, v *uint16, vstride, n, chunks int, ms, vs *float32)
// madF16RowsAVX2 for widths of chunks·64: each 64-wide slice of acc stays in eight registers
// over all n rows, as float32 values that are exactly its F16 halves (every update is rounded
// through VCVTPS2PH and back), and goes to memory once. The arithmetic of each element is that
// of madF16RowsAVX2, so are the bits; half the instructions, and no store-to-load chain.
TEXT ·madF16Rows64AVX2(SB), NOSPLIT, $0-56
	MOVQ acc+0(FP), R8
	MOVQ v+8(FP), DI
	MOVQ vstride+16(FP), R9
	MOVQ chunks+32(FP), R11
	MOVL $0x3f800000, AX
	VMOVD AX, X5

mad64_chunk:
	VCVTPH2PS 0(R8), Y8
	VCVTPH2PS 16(R8), Y9
	VCVTPH2PS 32(R8), Y10
	VCVTPH2PS 48(R8), Y11
	VCVTPH2PS 64(R8), Y12
	VCVTPH2PS 80(R8), Y13
	VCVTPH2PS 96(R8), Y14
	VCVTPH2PS 112(R8), Y15
	MOVQ DI, BX
	MOVQ ms+40(FP), SI
	MOVQ vs+48(FP), DX
	MOVQ n+24(FP), CX

mad64_row:
	VMOVSS   (SI), X4
	VUCOMISS X5, X4
	JNE      mad64_scale
	JP       mad64_scale

mad64_mad:
	VBROADCASTSS (DX), Y3
	VCVTPH2PS   0(BX), Y1
	VFMADD231PS Y3, Y1, Y8
	VCVTPS2PH   $0, Y8, X2
	VCVTPH2PS   X2, Y8
	VCVTPH2PS   16(BX), Y1
	VFMADD231PS Y3, Y1, Y9
	VCVTPS2PH   $0, Y9, X2
	VCVTPH2PS   X2, Y9
	VCVTPH2PS   32(BX), Y1
	VFMADD231PS Y3, Y1, Y10
	VCVTPS2PH   $0, Y10, X2
	VCVTPH2PS   X2, Y10
	VCVTPH2PS   48(BX), Y1
	VFMADD231PS Y3, Y1, Y11
	VCVTPS2PH   $0, Y11, X2
	VCVTPH2PS   X2, Y11
	VCVTPH2PS   64(BX), Y1
	VFMADD231PS Y3, Y1, Y12
	VCVTPS2PH   $0, Y12, X2
	VCVTPH2PS   X2, Y12
	VCVTPH2PS   80(BX), Y1
	VFMADD231PS Y3, Y1, Y13
	VCVTPS2PH   $0, Y13, X2
	VCVTPH2PS   X2, Y13
	VCVTPH2PS   96(BX), Y1
	VFMADD231PS Y3, Y1, Y14
	VCVTPS2PH   $0, Y14, X2
	VCVTPH2PS   X2, Y14
	VCVTPH2PS   112(BX), Y1
	VFMADD231PS Y3, Y1, Y15
	VCVTPS2PH   $0, Y15, X2
	VCVTPH2PS   X2, Y15
	ADDQ R9, BX
	ADDQ $4, SI
	ADDQ $4, DX
	DECQ CX
	JNZ  mad64_row
	VCVTPS2PH $0, Y8, 0(R8)
	VCVTPS2PH $0, Y9, 16(R8)
	VCVTPS2PH $0, Y10, 32(R8)
	VCVTPS2PH $0, Y11, 48(R8)
	VCVTPS2PH $0, Y12, 64(R8)
	VCVTPS2PH $0, Y13, 80(R8)
	VCVTPS2PH $0, Y14, 96(R8)
	VCVTPS2PH $0, Y15, 112(R8)
	ADDQ $128, R8
	ADDQ $128, DI
	DECQ R11
	JNZ  mad64_chunk
	VZEROUPPER
	RET

mad64_scale:
	VBROADCASTSS X4, Y4
	VMULPS    Y4, Y8, Y8
	VCVTPS2PH $0, Y8, X2
	VCVTPH2PS X2, Y8
	VMULPS    Y4, Y9, Y9
	VCVTPS2PH $0, Y9, X2
	VCVTPH2PS X2, Y9
	VMULPS    Y4, Y10, Y10
	VCVTPS2PH $0, Y10, X2
	VCVTPH2PS X2, Y10
	VMULPS    Y4, Y11, Y11
	VCVTPS2PH $0, Y11, X2
	VCVTPH2PS X2, Y11
	VMULPS    Y4, Y12, Y12
	VCVTPS2PH $0, Y12, X2
	VCVTPH2PS X2, Y12
	VMULPS    Y4, Y13, Y13
	VCVTPS2PH $0, Y13, X2
	VCVTPH2PS X2, Y13
	VMULPS    Y4, Y14, Y14
	VCVTPS2PH $0, Y14, X2
	VCVTPH2PS X2, Y14
	VMULPS    Y4, Y15, Y15
	VCVTPS2PH $0, Y15, X2
	VCVTPH2PS X2, Y15
	JMP mad64_mad

// Q8MAD_8 adds eight values of a Q8_0 block at BX (quants from byte qoff) to the float32
// sums at SI+aoff: acc += (d·q)·s with d in Y6 and s in Y3, each product rounded on its own.
#define Q8MAD_8(qoff, aoff) \
	VPMOVSXBD qoff(BX), Y1; \
	VCVTDQ2PS Y1, Y1; \
	VMULPS    Y6, Y1, Y1; \
	VMULPS    Y3, Y1, Y1; \
	VADDPS    aoff(SI), Y1, Y1; \
	VMOVUPS   Y1, aoff(SI)

// func dotQ8_0RowsAVX2(q, k *byte, kstride, n, nb int, scale float32, out *float32)
// out[i] = the nb-block Q8_0 dot of q with the row at k + i·kstride, times scale, with
// dotQ8_0Row's arithmetic: exact integer block dots (|k| times q·sign(k), as unsigned times
// signed bytes; the pair sums stay below 2^15), each scaled by dk·dq and added in block order.
TEXT ·dotQ8_0RowsAVX2(SB), NOSPLIT, $0-56
	MOVQ         q+0(FP), R8
	MOVQ         k+8(FP), DI
	MOVQ         kstride+16(FP), R9
	MOVQ         n+24(FP), R10
	MOVQ         nb+32(FP), R11
	VMOVSS       scale+40(FP), X8
	MOVQ         out+48(FP), R12
	MOVL         $0x00010001, AX
	VMOVD        AX, X9
	VPBROADCASTD X9, Y9

q8rows_row:
	MOVQ   R8, SI
	MOVQ   DI, BX
	MOVQ   R11, CX
	VXORPS X0, X0, X0

q8rows_block:
	VMOVDQU      2(BX), Y1
	VMOVDQU      2(SI), Y2
	VPSIGNB      Y1, Y1, Y3
	VPSIGNB      Y1, Y2, Y4
	VPMADDUBSW   Y4, Y3, Y5
	VPMADDWD     Y9, Y5, Y5
	VEXTRACTI128 $1, Y5, X6
	VPADDD       X6, X5, X5
	VPSHUFD      $0x4e, X5, X6
	VPADDD       X6, X5, X5
	VPSHUFD      $0xb1, X5, X6
	VPADDD       X6, X5, X5
	VCVTDQ2PS    X5, X5
	MOVWLZX      (BX), AX
	VMOVD        AX, X6
	VCVTPH2PS    X6, X6
	MOVWLZX      (SI), AX
	VMOVD        AX, X7
	VCVTPH2PS    X7, X7
	VMULSS       X7, X6, X6
	VMULSS       X6, X5, X5
	VADDSS       X5, X0, X0
	ADDQ         $34, BX
	ADDQ         $34, SI
	DECQ         CX
	JNZ          q8rows_block
	VMULSS       X8, X0, X0
	VMOVSS       X0, (R12)
	ADDQ         $4, R12
	ADDQ         R9, DI
	DECQ         R10
	JNZ          q8rows_row
	VZEROUPPER
	RET

// func madQ8_0RowsAVX2(acc *float32, v *byte, vstride, n, nb int, ms, vs *float32)
// For each of n rows: acc *= ms[i] unless ms[i] is 1, then acc += (d·q)·vs[i] over the row's
// nb whole Q8_0 blocks (madQ8_0RowsGo's arithmetic: no fused operations).
TEXT ·madQ8_0RowsAVX2(SB), NOSPLIT, $0-56
	MADROWS_ARGS(nb)

q8mad_row:
	MADROWS_RESCALE(q8mad_scale)

q8mad_mad:
	VBROADCASTSS (R13), Y3
	MOVQ         R8, SI
	MOVQ         DI, BX
	MOVQ         R11, CX

q8mad_block:
	MOVWLZX      (BX), AX
	VMOVD        AX, X6
	VCVTPH2PS    X6, X6
	VBROADCASTSS X6, Y6
	Q8MAD_8(2, 0)
	Q8MAD_8(10, 32)
	Q8MAD_8(18, 64)
	Q8MAD_8(26, 96)
	ADDQ         $34, BX
	ADDQ         $128, SI
	DECQ         CX
	JNZ          q8mad_block
	MADROWS_NEXT(q8mad_row)
	VZEROUPPER
	RET

q8mad_scale:
	VBROADCASTSS X4, Y4
	MOVQ         R8, SI
	MOVQ         R11, CX

q8mad_scale_block:
	VMULPS  (SI), Y4, Y1
	VMOVUPS Y1, (SI)
	VMULPS  32(SI), Y4, Y1
	VMOVUPS Y1, 32(SI)
	VMULPS  64(SI), Y4, Y1
	VMOVUPS Y1, 64(SI)
	VMULPS  96(SI), Y4, Y1
	VMOVUPS Y1, 96(SI)
	ADDQ    $128, SI
	DECQ    CX
	JNZ     q8mad_scale_block
	JMP     q8mad_mad

// func scaleF16AVX2(acc *uint16, s float32, n int)
TEXT ·scaleF16AVX2(SB), NOSPLIT, $0-24
	MOVQ         acc+0(FP), SI
	VBROADCASTSS s+8(FP), Y3
	MOVQ         n+16(FP), CX

scale_loop:
	VCVTPH2PS (SI), Y2
	VMULPS    Y3, Y2, Y2
	VCVTPS2PH $0, Y2, (SI)
	ADDQ      $16, SI
	SUBQ      $8, CX
	JNZ       scale_loop
	VZEROUPPER
	RET

// func toF16AVX2(dst *uint16, src *float32, n int)
TEXT ·toF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

tof16_loop:
	VMOVUPS   (SI), Y1
	VCVTPS2PH $0, Y1, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	SUBQ      $8, CX
	JNZ       tof16_loop
	VZEROUPPER
	RET

// func fromF16AVX2(dst *float32, src *uint16, n int)
TEXT ·fromF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

fromf16_loop:
	VCVTPH2PS (SI), Y1
	VMOVUPS   Y1, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       fromf16_loop
	VZEROUPPER
	RET

// Four-column kernels: one weight row against four activation rows (ystride bytes apart), for
// batched products. The weight block is loaded and unpacked once for the four columns. Each
// column's arithmetic is exactly that of the one-column kernel above (same products, same
// accumulation order, same final sum), so a batched product equals its single dots bit for bit.

// Q4_K, four columns. Frame: 8 scale vectors (words, 32 bytes each) at 0..255, the 8 mins as
// int32 at 256. Y0-Y3 accumulate the columns, Y4-Y7 their integer sums, Y13 = [x.d, x.dmin].

// func dotQ4Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)
TEXT ·dotQ4Kx4AVX2(SB), NOSPLIT, $288-40
	X4_PROLOGUE
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	VPCMPEQW     Y15, Y15, Y15
	VPSRLW       $15, Y15, Y15

q4kx4_loop:
	Q4K4_HEAD
	Q4K4_CHUNK(0)
	Q4K4_CHUNK(1)
	Q4K4_CHUNK(2)
	Q4K4_CHUNK(3)
	Q4K4_FINISH4
	X4_NEXT(144, q4kx4_loop)
	X4_STORE
	RET

// func dotQ5Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)
// dotQ4Kx4AVX2 for Q5_K (Q5K4_CHUNK), each column bit-identical to dotQ5KAVX2.
TEXT ·dotQ5Kx4AVX2(SB), NOSPLIT, $288-40
	X4_PROLOGUE
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	VPCMPEQW     Y15, Y15, Y15
	VPSRLW       $15, Y15, Y15

q5kx4_loop:
	Q4K4_HEAD
	VMOVDQU 16(SI), Y12
	Q5K4_CHUNK(0)
	Q5K4_CHUNK(1)
	Q5K4_CHUNK(2)
	Q5K4_CHUNK(3)
	Q4K4_FINISH4
	X4_NEXT(176, q5kx4_loop)
	X4_STORE
	RET

// Q6_K, four columns. Frame: 8 group scale vectors at 0..255 (words: the group's two scales,
// eight times each), the 16 scales as words at 256, x.d broadcast at 288.

// func dotQ6Kx4AVX2(x, y *byte, ystride int, nb int, out *float32)
TEXT ·dotQ6Kx4AVX2(SB), NOSPLIT, $320-40
	X4_PROLOGUE
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $0x03030303, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13

q6kx4_loop:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X12
	VCVTPH2PS    X12, X12
	VBROADCASTSS X12, Y12
	VMOVDQU      Y12, 288(SP)
	VPMOVSXBW    192(SI), Y12
	VMOVDQU      Y12, 256(SP)
	Q6K4_GVEC(0)
	Q6K4_GVEC(1)
	Q6K4_GVEC(2)
	Q6K4_GVEC(3)
	Q6K4_GVEC(4)
	Q6K4_GVEC(5)
	Q6K4_GVEC(6)
	Q6K4_GVEC(7)

	VPXOR Y4, Y4, Y4
	VPXOR Y5, Y5, Y5
	VPXOR Y6, Y6, Y6
	VPXOR Y7, Y7, Y7
	Q6K4_HALF(0)
	Q6K4_HALF(1)
	Q6K4_FINISH((DI), Y4, Y0)
	Q6K4_FINISH((DI)(DX*1), Y5, Y1)
	Q6K4_FINISH((R14), Y6, Y2)
	Q6K4_FINISH((R14)(DX*1), Y7, Y3)

	X4_NEXT(210, q6kx4_loop)
	X4_STORE
	RET

// func dotF32LanesAVX2(x, y *float32, n int, lanes *[4]float64)
// The reference fp32 dot (dotF32Act): float32 products summed in float64 over four lanes
// (element index mod 4), in element order; n is a positive multiple of 4 and the lanes are
// returned for the caller to finish, so the result equals the reference bit for bit.
TEXT ·dotF32LanesAVX2(SB), NOSPLIT, $0-32
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPD Y0, Y0, Y0

f32l_loop8:
	CMPQ      CX, $8
	JLT       f32l_tail
	VMOVUPS   (SI), Y1
	VMULPS    (DI), Y1, Y1
	VCVTPS2PD X1, Y2
	VADDPD    Y2, Y0, Y0
	VEXTRACTF128 $1, Y1, X1
	VCVTPS2PD X1, Y2
	VADDPD    Y2, Y0, Y0
	ADDQ      $32, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JMP       f32l_loop8

f32l_tail:
	TESTQ     CX, CX
	JZ        f32l_done
	VMOVUPS   (SI), X1
	VMULPS    (DI), X1, X1
	VCVTPS2PD X1, Y2
	VADDPD    Y2, Y0, Y0

f32l_done:
	MOVQ    lanes+24(FP), AX
	VMOVUPD Y0, (AX)
	VZEROUPPER
	RET

// func dotQ8_0U8VNNI(w *byte, sc *float32, y *byte, yd *float32, ys *int32, nb int, out *float32, pf *byte, pfn int)
TEXT ·dotQ8_0U8VNNI(SB), NOSPLIT, $0-72
	U8_PROLOGUE

q80u8_loop:
	U8_PREFETCH(q80u8_nopf)
	VMOVDQU 2(DI), Y9
	U8_ROWS(U8_ROW_VNNI)
	R8_REDUCE
	R8_CORRECT(7)
	VCVTDQ2PS    Y1, Y1
	VBROADCASTSS (R10), Y2
	VMULPS       (R13), Y2, Y2
	VMULPS       Y2, Y1, Y1
	VADDPS       Y1, Y0, Y0
	U8_ADVANCE
	DECQ CX
	JNZ  q80u8_loop
	R8_STORE
	RET

// SiLU constants: the exp argument range, log2(e), ln2 split in a high part exact in products
// with small integers and the rest, and the Taylor coefficients 1/k! of exp on [-ln2/2, ln2/2].
DATA siluK<>+0(SB)/4, $0xc2ae0000  // -87
DATA siluK<>+4(SB)/4, $0x42b00000  // 88
DATA siluK<>+8(SB)/4, $0x3fb8aa3b  // log2(e)
DATA siluK<>+12(SB)/4, $0x3f318000 // ln2 high (0.693359375)
DATA siluK<>+16(SB)/4, $0xb95e8083 // ln2 low (-2.12194440e-4)
DATA siluK<>+20(SB)/4, $0x3ab60b61 // 1/720
DATA siluK<>+24(SB)/4, $0x3c088889 // 1/120
DATA siluK<>+28(SB)/4, $0x3d2aaaab // 1/24
DATA siluK<>+32(SB)/4, $0x3e2aaaab // 1/6
DATA siluK<>+36(SB)/4, $0x3f000000 // 1/2
DATA siluK<>+40(SB)/4, $0x3f800000 // 1
DATA siluK<>+44(SB)/4, $0x80000000 // sign bit
DATA siluK<>+48(SB)/4, $127
GLOBL siluK<>(SB), RODATA|NOPTR, $52

// EXPF sets Y4 = exp(Y1) for Y1 in [-87, 88] with expPoly's arithmetic (no fused operations,
// so kernel and twin agree bit for bit), using Y2, Y3, Y5 and the constants of EXPF_CONSTS.
#define EXPF \
	VMULPS    Y8, Y1, Y2; \
	VROUNDPS  $0, Y2, Y2; \
	VMULPS    Y9, Y2, Y3; \
	VSUBPS    Y3, Y1, Y3; \
	VMULPS    Y10, Y2, Y4; \
	VSUBPS    Y4, Y3, Y3; \
	VBROADCASTSS siluK<>+20(SB), Y4; \
	VMULPS    Y3, Y4, Y4; \
	VADDPS    siluK24<>(SB), Y4, Y4; \
	VMULPS    Y3, Y4, Y4; \
	VADDPS    siluK28<>(SB), Y4, Y4; \
	VMULPS    Y3, Y4, Y4; \
	VADDPS    siluK32<>(SB), Y4, Y4; \
	VMULPS    Y3, Y4, Y4; \
	VADDPS    siluK36<>(SB), Y4, Y4; \
	VMULPS    Y3, Y4, Y4; \
	VADDPS    Y11, Y4, Y4; \
	VMULPS    Y3, Y4, Y4; \
	VADDPS    Y11, Y4, Y4; \
	VCVTPS2DQ Y2, Y5; \
	VPADDD    Y13, Y5, Y5; \
	VPSLLD    $23, Y5, Y5; \
	VMULPS    Y5, Y4, Y4

// EXPF_CONSTS loads the argument range (Y6, Y7), log2(e) (Y8), ln2 high and low (Y9, Y10),
// 1 (Y11) and the exponent bias (Y13).
#define EXPF_CONSTS \
	VBROADCASTSS siluK<>+0(SB), Y6; \
	VBROADCASTSS siluK<>+4(SB), Y7; \
	VBROADCASTSS siluK<>+8(SB), Y8; \
	VBROADCASTSS siluK<>+12(SB), Y9; \
	VBROADCASTSS siluK<>+16(SB), Y10; \
	VBROADCASTSS siluK<>+40(SB), Y11; \
	VPBROADCASTD siluK<>+48(SB), Y13

// func subBelowAVX2(dst, src *float32, n int, m float32) bool
// dst = src - m over n (a positive multiple of 8) elements; true where no src > m (an ordered
// compare, as Go's: a NaN never exceeds m).
TEXT ·subBelowAVX2(SB), NOSPLIT, $0-33
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS m+24(FP), Y1
	VXORPS       Y2, Y2, Y2

subbelow_loop:
	VMOVUPS (SI), Y0
	VCMPPS  $0x1e, Y1, Y0, Y3
	VORPS   Y3, Y2, Y2
	VSUBPS  Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     subbelow_loop
	VPTEST  Y2, Y2
	SETEQ   ret+32(FP)
	VZEROUPPER
	RET

// The argument's clamp to [-87, 88] (Y6, Y7) from x into r. VMAXPS and VMINPS give their
// second source (the first Go operand) where either is a NaN: x, so that a NaN stays one, as
// Go's max and min keep it in the twins (a NaN clamped to -87 would pass as a weight of
// exp(-87) in attention's softmax).
#define EXPF_CLAMP(x, r) \
	VMAXPS x, Y6, r; \
	VMINPS r, Y7, r

// func expAVX2(dst, src *float32, n int)
// dst = exp(src) for a positive multiple of 8 elements, with the arithmetic of expGo.
TEXT ·expAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	EXPF_CONSTS

exp_loop:
	VMOVUPS   (SI), Y0
	EXPF_CLAMP(Y0, Y1)
	EXPF
	VCMPPS    $0x1e, Y7, Y0, Y15
	VBLENDVPS Y15, siluInf<>(SB), Y4, Y4
	VMOVUPS   Y4, (DI)
	ADDQ      $32, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       exp_loop
	VZEROUPPER
	RET

// func siluAVX2(dst, src *float32, n int)
// dst = x / (1 + exp(-x)) for a positive multiple of 8 elements, with the arithmetic of
// siluGo (no fused operations, so the two agree bit for bit).
TEXT ·siluAVX2(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	EXPF_CONSTS
	VBROADCASTSS siluK<>+44(SB), Y12

silu_loop:
	VMOVUPS   (SI), Y0
	VXORPS    Y12, Y0, Y14
	EXPF_CLAMP(Y14, Y1)
	EXPF
	VCMPPS    $0x1e, Y7, Y14, Y15
	VBLENDVPS Y15, siluInf<>(SB), Y4, Y4
	VADDPS    Y11, Y4, Y4
	VDIVPS    Y4, Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $32, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       silu_loop
	VZEROUPPER
	RET

// Broadcast copies of the middle coefficients, for memory operands of VADDPS.
DATA siluK24<>+0(SB)/4, $0x3c088889
DATA siluK24<>+4(SB)/4, $0x3c088889
DATA siluK24<>+8(SB)/4, $0x3c088889
DATA siluK24<>+12(SB)/4, $0x3c088889
DATA siluK24<>+16(SB)/4, $0x3c088889
DATA siluK24<>+20(SB)/4, $0x3c088889
DATA siluK24<>+24(SB)/4, $0x3c088889
DATA siluK24<>+28(SB)/4, $0x3c088889
GLOBL siluK24<>(SB), RODATA|NOPTR, $32
DATA siluK28<>+0(SB)/4, $0x3d2aaaab
DATA siluK28<>+4(SB)/4, $0x3d2aaaab
DATA siluK28<>+8(SB)/4, $0x3d2aaaab
DATA siluK28<>+12(SB)/4, $0x3d2aaaab
DATA siluK28<>+16(SB)/4, $0x3d2aaaab
DATA siluK28<>+20(SB)/4, $0x3d2aaaab
DATA siluK28<>+24(SB)/4, $0x3d2aaaab
DATA siluK28<>+28(SB)/4, $0x3d2aaaab
GLOBL siluK28<>(SB), RODATA|NOPTR, $32
DATA siluK32<>+0(SB)/4, $0x3e2aaaab
DATA siluK32<>+4(SB)/4, $0x3e2aaaab
DATA siluK32<>+8(SB)/4, $0x3e2aaaab
DATA siluK32<>+12(SB)/4, $0x3e2aaaab
DATA siluK32<>+16(SB)/4, $0x3e2aaaab
DATA siluK32<>+20(SB)/4, $0x3e2aaaab
DATA siluK32<>+24(SB)/4, $0x3e2aaaab
DATA siluK32<>+28(SB)/4, $0x3e2aaaab
GLOBL siluK32<>(SB), RODATA|NOPTR, $32
DATA siluK36<>+0(SB)/4, $0x3f000000
DATA siluK36<>+4(SB)/4, $0x3f000000
DATA siluK36<>+8(SB)/4, $0x3f000000
DATA siluK36<>+12(SB)/4, $0x3f000000
DATA siluK36<>+16(SB)/4, $0x3f000000
DATA siluK36<>+20(SB)/4, $0x3f000000
DATA siluK36<>+24(SB)/4, $0x3f000000
DATA siluK36<>+28(SB)/4, $0x3f000000
GLOBL siluK36<>(SB), RODATA|NOPTR, $32
DATA siluInf<>+0(SB)/4, $0x7f800000
DATA siluInf<>+4(SB)/4, $0x7f800000
DATA siluInf<>+8(SB)/4, $0x7f800000
DATA siluInf<>+12(SB)/4, $0x7f800000
DATA siluInf<>+16(SB)/4, $0x7f800000
DATA siluInf<>+20(SB)/4, $0x7f800000
DATA siluInf<>+24(SB)/4, $0x7f800000
DATA siluInf<>+28(SB)/4, $0x7f800000
GLOBL siluInf<>(SB), RODATA|NOPTR, $32

// VPSHUFB masks: mask k copies word k of each 128-bit half to all eight words of the half.
DATA scaleShuf<>+0(SB)/4, $0x01000100
DATA scaleShuf<>+4(SB)/4, $0x01000100
DATA scaleShuf<>+8(SB)/4, $0x01000100
DATA scaleShuf<>+12(SB)/4, $0x01000100
DATA scaleShuf<>+16(SB)/4, $0x01000100
DATA scaleShuf<>+20(SB)/4, $0x01000100
DATA scaleShuf<>+24(SB)/4, $0x01000100
DATA scaleShuf<>+28(SB)/4, $0x01000100
DATA scaleShuf<>+32(SB)/4, $0x03020302
DATA scaleShuf<>+36(SB)/4, $0x03020302
DATA scaleShuf<>+40(SB)/4, $0x03020302
DATA scaleShuf<>+44(SB)/4, $0x03020302
DATA scaleShuf<>+48(SB)/4, $0x03020302
DATA scaleShuf<>+52(SB)/4, $0x03020302
DATA scaleShuf<>+56(SB)/4, $0x03020302
DATA scaleShuf<>+60(SB)/4, $0x03020302
DATA scaleShuf<>+64(SB)/4, $0x05040504
DATA scaleShuf<>+68(SB)/4, $0x05040504
DATA scaleShuf<>+72(SB)/4, $0x05040504
DATA scaleShuf<>+76(SB)/4, $0x05040504
DATA scaleShuf<>+80(SB)/4, $0x05040504
DATA scaleShuf<>+84(SB)/4, $0x05040504
DATA scaleShuf<>+88(SB)/4, $0x05040504
DATA scaleShuf<>+92(SB)/4, $0x05040504
DATA scaleShuf<>+96(SB)/4, $0x07060706
DATA scaleShuf<>+100(SB)/4, $0x07060706
DATA scaleShuf<>+104(SB)/4, $0x07060706
DATA scaleShuf<>+108(SB)/4, $0x07060706
DATA scaleShuf<>+112(SB)/4, $0x07060706
DATA scaleShuf<>+116(SB)/4, $0x07060706
DATA scaleShuf<>+120(SB)/4, $0x07060706
DATA scaleShuf<>+124(SB)/4, $0x07060706
DATA scaleShuf<>+128(SB)/4, $0x09080908
DATA scaleShuf<>+132(SB)/4, $0x09080908
DATA scaleShuf<>+136(SB)/4, $0x09080908
DATA scaleShuf<>+140(SB)/4, $0x09080908
DATA scaleShuf<>+144(SB)/4, $0x09080908
DATA scaleShuf<>+148(SB)/4, $0x09080908
DATA scaleShuf<>+152(SB)/4, $0x09080908
DATA scaleShuf<>+156(SB)/4, $0x09080908
DATA scaleShuf<>+160(SB)/4, $0x0b0a0b0a
DATA scaleShuf<>+164(SB)/4, $0x0b0a0b0a
DATA scaleShuf<>+168(SB)/4, $0x0b0a0b0a
DATA scaleShuf<>+172(SB)/4, $0x0b0a0b0a
DATA scaleShuf<>+176(SB)/4, $0x0b0a0b0a
DATA scaleShuf<>+180(SB)/4, $0x0b0a0b0a
DATA scaleShuf<>+184(SB)/4, $0x0b0a0b0a
DATA scaleShuf<>+188(SB)/4, $0x0b0a0b0a
DATA scaleShuf<>+192(SB)/4, $0x0d0c0d0c
DATA scaleShuf<>+196(SB)/4, $0x0d0c0d0c
DATA scaleShuf<>+200(SB)/4, $0x0d0c0d0c
DATA scaleShuf<>+204(SB)/4, $0x0d0c0d0c
DATA scaleShuf<>+208(SB)/4, $0x0d0c0d0c
DATA scaleShuf<>+212(SB)/4, $0x0d0c0d0c
DATA scaleShuf<>+216(SB)/4, $0x0d0c0d0c
DATA scaleShuf<>+220(SB)/4, $0x0d0c0d0c
DATA scaleShuf<>+224(SB)/4, $0x0f0e0f0e
DATA scaleShuf<>+228(SB)/4, $0x0f0e0f0e
DATA scaleShuf<>+232(SB)/4, $0x0f0e0f0e
DATA scaleShuf<>+236(SB)/4, $0x0f0e0f0e
DATA scaleShuf<>+240(SB)/4, $0x0f0e0f0e
DATA scaleShuf<>+244(SB)/4, $0x0f0e0f0e
DATA scaleShuf<>+248(SB)/4, $0x0f0e0f0e
DATA scaleShuf<>+252(SB)/4, $0x0f0e0f0e
GLOBL scaleShuf<>(SB), RODATA|NOPTR, $256

// The exact Q8_0 row dots: eight consecutive blocks of one row per iteration (the row is
// read as one sequential stream, which the hardware prefetchers follow at full speed). The
// eight block sums are reduced into one vector (lane k = block k), scaled in one step with the
// row's and the activation's block scales, and added to the running float32 sum one lane at a
// time in block order: ggml's generic arithmetic, bit for bit. Arguments: x, y *byte, yd
// *float32 (activation scales per block), ys *int32 (activation quant sums per block), nb int
// (a positive multiple of 8); result: the sum.

// func dotQ8_0B8VNNI(x, y *byte, yd *float32, ys *int32, nb int) float32
TEXT ·dotQ8_0B8VNNI(SB), NOSPLIT, $0-44
	B8_PROLOGUE
	MOVL         $0x80808080, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

q80b8v_loop:
	B8_BLOCKS(B8_Q8_0_VNNI)
	R8_REDUCE
	B8_CORRECT(7)
	B8_XSCALES(34)
	B8_Q8_0_FLOAT
	B8_SEQSUM
	B8_ADVANCE(272)
	SUBQ $8, CX
	JNZ  q80b8v_loop
	VZEROUPPER
	VMOVSS X0, ret+40(FP)
	RET

// func dotQ8_0B8(x, y *byte, yd *float32, ys *int32, nb int) float32
TEXT ·dotQ8_0B8(SB), NOSPLIT, $0-44
	B8_PROLOGUE
	VPCMPEQW Y12, Y12, Y12
	VPSRLW   $15, Y12, Y12

q80b8_loop:
	B8_BLOCKS(B8_Q8_0)
	R8_REDUCE
	B8_XSCALES(34)
	B8_Q8_0_FLOAT
	B8_SEQSUM
	B8_ADVANCE(272)
	SUBQ $8, CX
	JNZ  q80b8_loop
	VZEROUPPER
	VMOVSS X0, ret+40(FP)
	RET

// Unpacking for the prompt-batch kernels, one row after the other (sequential streams): row i's
// block b goes to dst + 256b + 32i, its scale (fp16) to the halves at sc + 16b + 2i; at the end
// the halves are widened in place to float32 (sc + 32b + 4i), from the last block down so that
// no half is overwritten before it is read.

// func unpackQ8_0R8(x *byte, xstride int, nb int, dst *byte, sc *float32)
// Quants are stored as x+128 (unsigned), for VPDPBUSD.
TEXT ·unpackQ8_0R8(SB), NOSPLIT, $0-40
	UNPACK_PROLOGUE
	MOVL         $0x80808080, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

uq80_row:
	MOVQ SI, R8
	MOVQ DI, R9
	MOVQ R10, R11
	MOVQ CX, R12

uq80_block:
	VMOVDQU 2(R8), Y10
	VPXOR   Y15, Y10, Y10
	VMOVDQU Y10, (R9)
	MOVWLZX (R8), AX
	MOVW    AX, (R11)
	ADDQ    $34, R8
	ADDQ    $256, R9
	ADDQ    $16, R11
	DECQ    R12
	JNZ     uq80_block
	UNPACK_NEXT_ROW(uq80_row)
	UNPACK_WIDEN
	RET

// func mulF32AVX2(out, a, b *float32, n int)
TEXT ·mulF32AVX2(SB), NOSPLIT, $0-32
	ELEM2_KERNEL(VMULPS, mul_l32, mul_l8, mul_done)

// func addF32AVX2(out, a, b *float32, n int)
TEXT ·addF32AVX2(SB), NOSPLIT, $0-32
	ELEM2_KERNEL(VADDPS, add_l32, add_l8, add_done)

// func normScaleAVX2(out, x, w *float32, scale float32, n int)
// out = (x·scale)·w, rounded after each product as normScaleGo.
TEXT ·normScaleAVX2(SB), NOSPLIT, $0-40
	MOVQ         out+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), DX
	VBROADCASTSS scale+24(FP), Y4
	MOVQ         n+32(FP), CX

normscale_loop:
	VMULPS  (SI), Y4, Y0
	VMULPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     normscale_loop
	VZEROUPPER
	RET

// func ropeNormAVX2(x, cache *float32, dims, heads, hstride int)
// Four pairs at a time: x·(c, c) and x swapped within pairs ·(s, s), then VADDSUBPS: the even
// lanes x0·c - x1·s, the odd ones x1·c + x0·s (ropeGo's x0·s + x1·c: a sum of the same two
// products).
TEXT ·ropeNormAVX2(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), DI
	MOVQ heads+24(FP), R8

ropen_head:
	MOVQ cache+8(FP), SI
	MOVQ DI, R9
	MOVQ dims+16(FP), CX

ropen_loop:
	VMOVUPS   (SI), Y1
	VMOVSLDUP Y1, Y2
	VMOVSHDUP Y1, Y3
	VMOVUPS   (R9), Y0
	VPERMILPS $0xb1, Y0, Y4
	VMULPS    Y2, Y0, Y0
	VMULPS    Y3, Y4, Y4
	VADDSUBPS Y4, Y0, Y0
	VMOVUPS   Y0, (R9)
	ADDQ      $32, SI
	ADDQ      $32, R9
	SUBQ      $8, CX
	JNZ       ropen_loop
	ADDQ      hstride+32(FP), DI
	DECQ      R8
	JNZ       ropen_head
	VZEROUPPER
	RET

// func ropeNeoxAVX2(x, cache *float32, half, heads, hstride int)
// Eight pairs at a time: the cache's cos and sin de-interleaved (VSHUFPS within each 128-bit
// lane, VPERMPD across), then x0·c - x1·s and x0·s + x1·c as ropeGo.
TEXT ·ropeNeoxAVX2(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), DI
	MOVQ heads+24(FP), R8
	MOVQ half+16(FP), DX
	SHLQ $2, DX

ropex_head:
	MOVQ cache+8(FP), SI
	MOVQ DI, R9
	MOVQ half+16(FP), CX

ropex_loop:
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VSHUFPS $0x88, Y5, Y4, Y2
	VSHUFPS $0xdd, Y5, Y4, Y3
	VPERMPD $0xd8, Y2, Y2
	VPERMPD $0xd8, Y3, Y3
	VMOVUPS (R9), Y0
	VMOVUPS (R9)(DX*1), Y1
	VMULPS  Y2, Y0, Y6
	VMULPS  Y3, Y1, Y7
	VSUBPS  Y7, Y6, Y6
	VMULPS  Y3, Y0, Y0
	VMULPS  Y2, Y1, Y1
	VADDPS  Y1, Y0, Y0
	VMOVUPS Y6, (R9)
	VMOVUPS Y0, (R9)(DX*1)
	ADDQ    $64, SI
	ADDQ    $32, R9
	SUBQ    $8, CX
	JNZ     ropex_loop
	ADDQ    hstride+32(FP), DI
	DECQ    R8
	JNZ     ropex_head
	VZEROUPPER
	RET
