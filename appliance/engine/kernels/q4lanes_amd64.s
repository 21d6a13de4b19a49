//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Q4_0 × prepared Q8_0 activations (prepQ4_0Act), with the arithmetic of dotQ4_0Lanes: per
// group of eight blocks (144 bytes of weights, 320 bytes of prepared activations), the block
// sums in int32 lanes, one FMA per block into float lanes, the nibble offset through the
// activation quant sums. Arguments: x *byte (the row), y *byte (prepared activations), ng int
// (groups, at least 1), xtail *byte (nil, or a zero-padded copy of the last group when the row
// does not fill it: the kernels never read past the row).

// VNNI (AVX-512): the eight blocks' weights come in as three 64-byte loads; byte permutations
// (VPERMT2B) pick out the eight scales and the four blocks' quant bytes of each half group,
// which then meet their activations in 64-byte VPDPBUSDs.
//
// Registers: Z0, Z1 accumulate the two halves, Y4 the correction; Z26 = scale indices, Z27 and
// Z28 = quant indices of the halves, Z29 = 0x0f bytes, Z30 and Z31 = the lane expansion of the
// eight D (four lanes per block) for each half.

// One half group: its quant bytes in n, D expanded in d, accumulator acc; activations at off.
#define Q40V_HALF(n, off, d, acc) \
	VPSRLW      $4, n, Z14; \
	VPANDD      Z29, n, n; \
	VPANDD      Z29, Z14, Z14; \
	VPXORD      Z15, Z15, Z15; \
	VPDPBUSD    off(DI), n, Z15; \
	VPDPBUSD    off+64(DI), Z14, Z15; \
	VCVTDQ2PS   Z15, Z15; \
	VFMADD231PS d, Z15, acc

// The weight group at SI: X11 = its eight fp16 scales, Z8 and Z9 = the quant bytes of its
// halves.
#define Q40V_LOAD \
	VMOVDQU64 (SI), Z8; \
	VMOVDQU64 64(SI), Z9; \
	VMOVDQU64 80(SI), Z10; \
	VMOVDQA64 Z26, Z11; \
	VPERMI2B  Z9, Z8, Z11; \
	VPERMT2B  Z9, Z27, Z8; \
	VPERMT2B  Z10, Z28, Z9; \
	VCVTPH2PS X11, Y11

#define Q40V_CONSTS \
	VMOVDQU64    q40ScaleIdx<>(SB), Z26; \
	VMOVDQU64    q40QuantIdx<>(SB), Z27; \
	VMOVDQU64    q40QuantIdx<>+64(SB), Z28; \
	MOVL         $0x0f0f0f0f, AX; \
	VPBROADCASTD AX, Z29; \
	VMOVDQU64    q40Expand<>(SB), Z30; \
	VMOVDQU64    q40Expand<>+64(SB), Z31

// Loop control shared by the kernels: CX groups, of which the last comes from R12 when it is
// not nil (the padded copy). label is the loop head; next advances the pointers.
#define Q40_COUNT \
	MOVQ  ng+16(FP), CX; \
	MOVQ  xtail+24(FP), R12; \
	TESTQ R12, R12; \
	JZ    2(PC); \
	DECQ  CX

#define Q40_LOOP_END(label, done) \
	DECQ  CX; \
	JNZ   label; \
	TESTQ R12, R12; \
	JZ    done; \
	MOVQ  R12, SI; \
	XORQ  R12, R12; \
	MOVQ  $1, CX; \
	JMP   label

// X0 = s - 8c: s the sum of the eight float lanes in Y0, c that of the correction lanes in Y4.
#define Q40_END \
	HSUM(Y0, X0, X1); \
	HSUM(Y4, X4, X1); \
	VMULSS q40Eight<>(SB), X4, X4; \
	VSUBSS X4, X0, X0

// The next group's source: R12 (the padded copy) instead of SI when it is the last (CX == 1).
#define Q40_TAILSRC \
	CMPQ  CX, $1; \
	JNE   4(PC); \
	TESTQ R12, R12; \
	JZ    2(PC); \
	MOVQ  R12, SI

// The software pipeline's steps (dotQ4_0VNNI, dotQ4_0RowsVNNI): Q40V_KEEP sets the loaded
// group aside (Z16-Z18) so that the next one can load; Q40V_GROUP computes the kept group
// against the activations at DI (scale, correction sum, the two halves' products) and moves DI
// to the next group; Q40V_FINISH adds the halves' lanes and leaves the result in X0.
#define Q40V_KEEP \
	VMOVDQA64 Z8, Z16; \
	VMOVDQA64 Z9, Z17; \
	VMOVAPS   Y11, Y18

#define Q40V_GROUP \
	VMULPS      256(DI), Y18, Y18; \
	VCVTDQ2PS   288(DI), Y12; \
	VFMADD231PS Y12, Y18, Y4; \
	VPERMPS     Z18, Z30, Z12; \
	VPERMPS     Z18, Z31, Z13; \
	Q40V_HALF(Z16, 0, Z12, Z0); \
	Q40V_HALF(Z17, 128, Z13, Z1); \
	ADDQ        $320, DI

#define Q40V_FINISH \
	VADDPS        Z1, Z0, Z0; \
	VEXTRACTF64X4 $1, Z0, Y1; \
	VADDPS        Y1, Y0, Y0; \
	Q40_END

// func dotQ4_0VNNI(x, y *byte, ng int, xtail *byte) float32
//
// Software-pipelined: the loads and byte permutations of the next group are issued before the
// products of the current one (kept in Z16-Z18 meanwhile), so that they overlap.
TEXT ·dotQ4_0VNNI(SB), NOSPLIT, $0-36
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   ng+16(FP), CX
	MOVQ   xtail+24(FP), R12
	Q40V_CONSTS
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VXORPS Y4, Y4, Y4
	Q40_TAILSRC
	Q40V_LOAD

q40v_loop:
	Q40V_KEEP
	DECQ      CX
	JZ        q40v_compute
	ADDQ      $144, SI
	Q40_TAILSRC
	Q40V_LOAD

q40v_compute:
	Q40V_GROUP
	TESTQ       CX, CX
	JNZ         q40v_loop

	Q40V_FINISH
	VZEROUPPER
	VMOVSS        X0, ret+32(FP)
	RET

// func dotQ4_0RowsVNNI(x *byte, xstride int, rows int, y *byte, ng int, out *float32)
//
// dotQ4_0VNNI for rows weight rows xstride bytes apart, each of ng whole groups (no padded
// copy), against one prepared activation row: out[r] gets row r's result. One call serves a
// run of rows, so the constants, the call and the check are paid once per run, not per row.
TEXT ·dotQ4_0RowsVNNI(SB), NOSPLIT, $0-48
	MOVQ   x+0(FP), R9
	MOVQ   rows+16(FP), R10
	MOVQ   out+40(FP), R8
	XORQ   R12, R12
	Q40V_CONSTS

q40r_row:
	MOVQ   R9, SI
	MOVQ   y+24(FP), DI
	MOVQ   ng+32(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VXORPS Y4, Y4, Y4
	Q40V_LOAD

q40r_loop:
	Q40V_KEEP
	DECQ      CX
	JZ        q40r_compute
	ADDQ      $144, SI
	Q40V_LOAD

q40r_compute:
	Q40V_GROUP
	TESTQ       CX, CX
	JNZ         q40r_loop

	Q40V_FINISH
	VMOVSS        X0, (R8)
	ADDQ          $4, R8
	ADDQ          xstride+8(FP), R9
	DECQ          R10
	JNZ           q40r_row
	VZEROUPPER
	RET

// One group of the weight row at ptr against the prepared activations at DI, into the
// accumulators a0, a1 and the correction lanes c (dotQ4_0VNNI's steps).
#define Q40R4_STREAM(ptr, a0, a1, c) \
	VMOVDQU64   (ptr), Z8; \
	VMOVDQU64   64(ptr), Z9; \
	VMOVDQU64   80(ptr), Z10; \
	VMOVDQA64   Z26, Z11; \
	VPERMI2B    Z9, Z8, Z11; \
	VPERMT2B    Z9, Z27, Z8; \
	VPERMT2B    Z10, Z28, Z9; \
	VCVTPH2PS   X11, Y11; \
	VMULPS      256(DI), Y11, Y11; \
	VCVTDQ2PS   288(DI), Y12; \
	VFMADD231PS Y12, Y11, c; \
	VPERMPS     Z11, Z30, Z12; \
	VPERMPS     Z11, Z31, Z13; \
	Q40V_HALF(Z8, 0, Z12, a0); \
	Q40V_HALF(Z9, 128, Z13, a1)

// A stream's or column's result, as at q40v_done, to (dst).
#define Q40_STORE(a0, a1, c, dst) \
	VADDPS        a1, a0, Z8; \
	VEXTRACTF64X4 $1, Z8, Y9; \
	VADDPS        Y9, Y8, Y8; \
	HSUM(Y8, X8, X10); \
	VMOVAPS       c, Y9; \
	HSUM(Y9, X9, X10); \
	VMULSS        q40Eight<>(SB), X9, X9; \
	VSUBSS        X9, X8, X8; \
	VMOVSS        X8, dst

// func dotQ4_0Rows4VNNI(x *byte, xstride int, count int, dist int, y *byte, ng int, out *float32)
//
// dotQ4_0RowsVNNI for four runs of count rows, dist rows apart (rows k·dist + i for k < 4,
// i < count; results at out[k·dist + i]), walked as four streams in step. A core keeps more
// memory reads in flight for four sequential streams than for one (about 25 GB/s against 18
// here), as long as each is long: MatMul gives every unit of work the same stretch of four
// quarters of the matrix. Each row's arithmetic is that of dotQ4_0VNNI.
TEXT ·dotQ4_0Rows4VNNI(SB), NOSPLIT, $0-56
	MOVQ  x+0(FP), R9
	MOVQ  count+16(FP), R10
	MOVQ  dist+24(FP), R13
	MOVQ  R13, DX
	SHLQ  $2, DX
	IMULQ xstride+8(FP), R13
	MOVQ  out+48(FP), R8
	Q40V_CONSTS

q40r4_row:
	MOVQ   R9, SI
	LEAQ   (SI)(R13*1), BX
	LEAQ   (BX)(R13*1), R11
	LEAQ   (R11)(R13*1), R12
	MOVQ   y+32(FP), DI
	MOVQ   ng+40(FP), CX
	ZERO_Z4(Z0, Z1, Z2, Z3)
	ZERO_Z4(Z4, Z5, Z6, Z7)
	ZERO_Z4(Z16, Z17, Z18, Z19)

q40r4_group:
	Q40R4_STREAM(SI, Z0, Z1, Y2)
	Q40R4_STREAM(BX, Z3, Z4, Y5)
	Q40R4_STREAM(R11, Z6, Z7, Y16)
	Q40R4_STREAM(R12, Z17, Z18, Y19)
	ADDQ $144, SI
	ADDQ $144, BX
	ADDQ $144, R11
	ADDQ $144, R12
	ADDQ $320, DI
	DECQ CX
	JNZ  q40r4_group

	LEAQ (R8)(DX*2), AX
	Q40_STORE(Z0, Z1, Y2, (R8))
	Q40_STORE(Z3, Z4, Y5, (R8)(DX*1))
	Q40_STORE(Z6, Z7, Y16, (AX))
	Q40_STORE(Z17, Z18, Y19, (AX)(DX*1))
	ADDQ $4, R8
	ADDQ xstride+8(FP), R9
	DECQ R10
	JNZ  q40r4_row
	VZEROUPPER
	RET

// Four columns: out[c] = row · (y + c*ystride), each with the arithmetic of dotQ4_0VNNI.
// Column c's accumulators: Z(2c), Z(2c+1) and Y(16+c).
#define Q40V_COL(base, a0, a1, c) \
	VMULPS      256 base, Y11, Y20; \
	VCVTDQ2PS   288 base, Y21; \
	VFMADD231PS Y21, Y20, c; \
	VPERMPS     Z20, Z30, Z21; \
	VPERMPS     Z20, Z31, Z22; \
	VPXORD      Z23, Z23, Z23; \
	VPDPBUSD    0 base, Z8, Z23; \
	VPDPBUSD    64 base, Z12, Z23; \
	VCVTDQ2PS   Z23, Z23; \
	VFMADD231PS Z21, Z23, a0; \
	VPXORD      Z24, Z24, Z24; \
	VPDPBUSD    128 base, Z9, Z24; \
	VPDPBUSD    192 base, Z13, Z24; \
	VCVTDQ2PS   Z24, Z24; \
	VFMADD231PS Z22, Z24, a1

// func dotQ4_0x4VNNI(x, y *byte, ng int, xtail *byte, ystride int, out *float32)
TEXT ·dotQ4_0x4VNNI(SB), NOSPLIT, $0-48
	MOVQ    x+0(FP), SI
	MOVQ    y+8(FP), DI
	MOVQ    ystride+32(FP), DX
	LEAQ    (DI)(DX*2), R14
	Q40V_CONSTS
	ZERO_Z4(Z0, Z1, Z2, Z3)
	ZERO_Z4(Z4, Z5, Z6, Z7)
	ZERO_Z4(Z16, Z17, Z18, Z19)
	Q40_COUNT
	TESTQ   CX, CX
	JZ      q40x4_last

q40x4_loop:
	Q40V_LOAD
	VPSRLW  $4, Z8, Z12
	VPANDD  Z29, Z8, Z8
	VPANDD  Z29, Z12, Z12
	VPSRLW  $4, Z9, Z13
	VPANDD  Z29, Z9, Z9
	VPANDD  Z29, Z13, Z13
	Q40V_COL((DI), Z0, Z1, Y16)
	Q40V_COL((DI)(DX*1), Z2, Z3, Y17)
	Q40V_COL((R14), Z4, Z5, Y18)
	Q40V_COL((R14)(DX*1), Z6, Z7, Y19)
	ADDQ    $144, SI
	ADDQ    $320, DI
	ADDQ    $320, R14
	Q40_LOOP_END(q40x4_loop, q40x4_done)

q40x4_last:
	MOVQ R12, SI
	XORQ R12, R12
	MOVQ $1, CX
	JMP  q40x4_loop

q40x4_done:
	MOVQ out+40(FP), R8
	Q40_STORE(Z0, Z1, Y16, (R8))
	Q40_STORE(Z2, Z3, Y17, 4(R8))
	Q40_STORE(Z4, Z5, Y18, 8(R8))
	Q40_STORE(Z6, Z7, Y19, 12(R8))
	VZEROUPPER
	RET

// AVX2: two blocks per register (VINSERTI128), the sums through VPMADDUBSW and VPMADDWD, which
// give the same int32 lanes as VPDPBUSD; the accumulators are Y0, Y1 (blocks 0-1, 2-3) and
// Y2, Y3 (4-5, 6-7): lane for lane the two halves of the VNNI kernel.
//
// Registers: Y5 = D, Y6-Y9 = the lane expansion of D for each pair, Y10 = 0x0f bytes,
// Y11 = words of 1.
#define Q40A_PAIR(k, off, idx, acc) \
	VMOVDQU     2+18*k(SI), X12; \
	VINSERTI128 $1, 20+18*k(SI), Y12, Y12; \
	VPSRLW      $4, Y12, Y13; \
	VPAND       Y10, Y12, Y12; \
	VPAND       Y10, Y13, Y13; \
	VPMADDUBSW  off(DI), Y12, Y12; \
	VPMADDUBSW  off+64(DI), Y13, Y13; \
	VPADDW      Y13, Y12, Y12; \
	VPMADDWD    Y11, Y12, Y12; \
	VCVTDQ2PS   Y12, Y12; \
	VPERMPS     Y5, idx, Y13; \
	VFMADD231PS Y13, Y12, acc

// func dotQ4_0AVX2(x, y *byte, ng int, xtail *byte) float32
TEXT ·dotQ4_0AVX2(SB), NOSPLIT, $0-36
	MOVQ         x+0(FP), SI
	MOVQ         y+8(FP), DI
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y2, Y2, Y2
	VXORPS       Y3, Y3, Y3
	VXORPS       Y4, Y4, Y4
	VMOVDQU      q40Expand<>(SB), Y6
	VMOVDQU      q40Expand<>+32(SB), Y7
	VMOVDQU      q40Expand<>+64(SB), Y8
	VMOVDQU      q40Expand<>+96(SB), Y9
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X10
	VPBROADCASTD X10, Y10
	VPCMPEQW     Y11, Y11, Y11
	VPSRLW       $15, Y11, Y11
	Q40_COUNT
	TESTQ        CX, CX
	JZ           q40a_last

q40a_loop:
	VPINSRW     $0, (SI), X12, X12
	VPINSRW     $1, 18(SI), X12, X12
	VPINSRW     $2, 36(SI), X12, X12
	VPINSRW     $3, 54(SI), X12, X12
	VPINSRW     $4, 72(SI), X12, X12
	VPINSRW     $5, 90(SI), X12, X12
	VPINSRW     $6, 108(SI), X12, X12
	VPINSRW     $7, 126(SI), X12, X12
	VCVTPH2PS   X12, Y12
	VMULPS      256(DI), Y12, Y5
	VCVTDQ2PS   288(DI), Y12
	VFMADD231PS Y12, Y5, Y4
	Q40A_PAIR(0, 0, Y6, Y0)
	Q40A_PAIR(2, 32, Y7, Y1)
	Q40A_PAIR(4, 128, Y8, Y2)
	Q40A_PAIR(6, 160, Y9, Y3)
	ADDQ        $144, SI
	ADDQ        $320, DI
	Q40_LOOP_END(q40a_loop, q40a_done)

q40a_last:
	MOVQ R12, SI
	XORQ R12, R12
	MOVQ $1, CX
	JMP  q40a_loop

q40a_done:
	VADDPS Y2, Y0, Y0
	VADDPS Y3, Y1, Y1
	VADDPS Y1, Y0, Y0
	Q40_END
	VZEROUPPER
	VMOVSS X0, ret+32(FP)
	RET

// VPERMT2B indices into 128 bytes: bytes 18k, 18k+1 (the eight blocks' fp16 scales) to bytes
// 2k, 2k+1.
DATA q40ScaleIdx<>+0(SB)/8, $0x3736252413120100
DATA q40ScaleIdx<>+8(SB)/8, $0x7f7e6d6c5b5a4948
DATA q40ScaleIdx<>+16(SB)/8, $0
DATA q40ScaleIdx<>+24(SB)/8, $0
DATA q40ScaleIdx<>+32(SB)/8, $0
DATA q40ScaleIdx<>+40(SB)/8, $0
DATA q40ScaleIdx<>+48(SB)/8, $0
DATA q40ScaleIdx<>+56(SB)/8, $0
GLOBL q40ScaleIdx<>(SB), RODATA|NOPTR, $64

// VPERMT2B indices of the quant bytes: for blocks 0-3 from bytes 0..127 of the group, for
// blocks 4-7 from bytes 64..127 and 80..143 (the second and third loads); block k's 16 bytes
// to bytes 16(k mod 4).
DATA q40QuantIdx<>+0(SB)/8, $0x0908070605040302
DATA q40QuantIdx<>+8(SB)/8, $0x11100f0e0d0c0b0a
DATA q40QuantIdx<>+16(SB)/8, $0x1b1a191817161514
DATA q40QuantIdx<>+24(SB)/8, $0x232221201f1e1d1c
DATA q40QuantIdx<>+32(SB)/8, $0x2d2c2b2a29282726
DATA q40QuantIdx<>+40(SB)/8, $0x3534333231302f2e
DATA q40QuantIdx<>+48(SB)/8, $0x3f3e3d3c3b3a3938
DATA q40QuantIdx<>+56(SB)/8, $0x4746454443424140
DATA q40QuantIdx<>+64(SB)/8, $0x11100f0e0d0c0b0a
DATA q40QuantIdx<>+72(SB)/8, $0x1918171615141312
DATA q40QuantIdx<>+80(SB)/8, $0x232221201f1e1d1c
DATA q40QuantIdx<>+88(SB)/8, $0x2b2a292827262524
DATA q40QuantIdx<>+96(SB)/8, $0x3534333231302f2e
DATA q40QuantIdx<>+104(SB)/8, $0x3d3c3b3a39383736
DATA q40QuantIdx<>+112(SB)/8, $0x7776757473727170
DATA q40QuantIdx<>+120(SB)/8, $0x7f7e7d7c7b7a7978
GLOBL q40QuantIdx<>(SB), RODATA|NOPTR, $128

// VPERMPS indices: lane l of a half gets D of block l/4 (of 0-3, then of 4-7).
DATA q40Expand<>+0(SB)/8, $0x0000000000000000
DATA q40Expand<>+8(SB)/8, $0x0000000000000000
DATA q40Expand<>+16(SB)/8, $0x0000000100000001
DATA q40Expand<>+24(SB)/8, $0x0000000100000001
DATA q40Expand<>+32(SB)/8, $0x0000000200000002
DATA q40Expand<>+40(SB)/8, $0x0000000200000002
DATA q40Expand<>+48(SB)/8, $0x0000000300000003
DATA q40Expand<>+56(SB)/8, $0x0000000300000003
DATA q40Expand<>+64(SB)/8, $0x0000000400000004
DATA q40Expand<>+72(SB)/8, $0x0000000400000004
DATA q40Expand<>+80(SB)/8, $0x0000000500000005
DATA q40Expand<>+88(SB)/8, $0x0000000500000005
DATA q40Expand<>+96(SB)/8, $0x0000000600000006
DATA q40Expand<>+104(SB)/8, $0x0000000600000006
DATA q40Expand<>+112(SB)/8, $0x0000000700000007
DATA q40Expand<>+120(SB)/8, $0x0000000700000007
GLOBL q40Expand<>(SB), RODATA|NOPTR, $128

DATA q40Eight<>+0(SB)/4, $0x41000000
GLOBL q40Eight<>(SB), RODATA|NOPTR, $4
