//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// Prompt batches of F16 and BF16 weights on AVX2 alone: groups of three (or two) weight rows
// against four activation rows widened to float32 (exactly, once per matrix product), each
// result dotF16AVX2's (dotBF16AVX2's) bits. Those keep four accumulators of eight lanes over
// 32-element steps (elements 0-7, 8-15, 16-23, 24-31 of each step), which for twelve dots would
// take 48 registers of sixteen. But the four are independent sums, so the kernel makes four
// passes over a chunk of the rows, pass a adding only elements 8a..8a+7 of each step into the
// dots' accumulator a: every lane sees the same FMAs in the same order. The accumulators wait
// in the frame between passes (dot i = 4·row + column at pass·P + 32i, P = 384 or 256 bytes),
// and a chunk of at most 512 elements (16 steps: 3 KiB of weights, 8 KiB of activations) stays
// in the level-1 cache for its four passes. A step widens 8 weights of each row for 4 FMAs a
// row, where the two-row kernel on 16-bit activations widened 12 vectors for 8 FMAs.
//
// Three rows keep twelve chains of FMAs going to two rows' eight: 1.2x on cached rows
// (BenchmarkPreparedKernels/F16/avx2/2048/run12). There the three-row form issues about 0.7 of
// the core's peak of FMAs (Zen 4): 0.95 with the activation loads replaced by register copies,
// unchanged with the conversions replaced by plain loads, so the four loads a step hold it.

// Four accumulators to or from the frame at off, off+32, off+64, off+96.
#define HP_LOAD4(off, a, b, c, d) \
	VMOVUPS off+0(SP), a; \
	VMOVUPS off+32(SP), b; \
	VMOVUPS off+64(SP), c; \
	VMOVUPS off+96(SP), d

#define HP_STORE4(off, a, b, c, d) \
	VMOVUPS a, off+0(SP); \
	VMOVUPS b, off+32(SP); \
	VMOVUPS c, off+64(SP); \
	VMOVUPS d, off+96(SP)

// The accumulators of pass a (dot i = 4·row + column in Y(i)), for two rows and for three.
#define HP2_LOAD(a) \
	HP_LOAD4(a*256, Y0, Y1, Y2, Y3); \
	HP_LOAD4(a*256+128, Y4, Y5, Y6, Y7)

#define HP2_STORE(a) \
	HP_STORE4(a*256, Y0, Y1, Y2, Y3); \
	HP_STORE4(a*256+128, Y4, Y5, Y6, Y7)

#define HP3_LOAD(a) \
	HP_LOAD4(a*384, Y0, Y1, Y2, Y3); \
	HP_LOAD4(a*384+128, Y4, Y5, Y6, Y7); \
	HP_LOAD4(a*384+256, Y8, Y9, Y10, Y11)

#define HP3_STORE(a) \
	HP_STORE4(a*384, Y0, Y1, Y2, Y3); \
	HP_STORE4(a*384+128, Y4, Y5, Y6, Y7); \
	HP_STORE4(a*384+256, Y8, Y9, Y10, Y11)

// One column of a step: its eight activations at mem (into t) against the rows' widened
// weights (Y12, Y13, Y14), onto the column's accumulator of each row.
#define HP2_COL(mem, t, acc0, acc1) \
	VMOVUPS     mem, t; \
	VFMADD231PS t, Y12, acc0; \
	VFMADD231PS t, Y13, acc1

#define HP3_COL(mem, acc0, acc1, acc2) \
	VMOVUPS     mem, Y15; \
	VFMADD231PS Y15, Y12, acc0; \
	VFMADD231PS Y15, Y13, acc1; \
	VFMADD231PS Y15, Y14, acc2

// A step of pass a over the weights at R9 (rows BX bytes apart) and the activation rows at
// R10, R10+DX, R14, R14+DX; then on to the next step.
#define HP2_STEP(widen) \
	widen((R9), Y12); \
	widen((R9)(BX*1), Y13); \
	HP2_COL((R10), Y8, Y0, Y4); \
	HP2_COL((R10)(DX*1), Y9, Y1, Y5); \
	HP2_COL((R14), Y10, Y2, Y6); \
	HP2_COL((R14)(DX*1), Y11, Y3, Y7); \
	HP_NEXT_STEP

#define HP3_STEP(widen) \
	widen((R9), Y12); \
	widen((R9)(BX*1), Y13); \
	widen((R9)(BX*2), Y14); \
	HP3_COL((R10), Y0, Y4, Y8); \
	HP3_COL((R10)(DX*1), Y1, Y5, Y9); \
	HP3_COL((R14), Y2, Y6, Y10); \
	HP3_COL((R14)(DX*1), Y3, Y7, Y11); \
	HP_NEXT_STEP

#define HP_NEXT_STEP \
	ADDQ $64, R9; \
	ADDQ $128, R10; \
	ADDQ $128, R14

// Pass a over the chunk's R13 steps: weights at SI, activation rows at DI, DI+DX, DI+2·DX,
// DI+3·DX; load, step and store are the row count's. Uses AX, R9, R10, R14.
#define HP_PASS(load, step, store, widen, a, loop) \
	load(a); \
	LEAQ 16*a(SI), R9; \
	LEAQ 32*a(DI), R10; \
	LEAQ (R10)(DX*2), R14; \
	MOVQ R13, AX; \
loop: \
	step(widen); \
	DECQ AX; \
	JNZ  loop; \
	store(a)

// The dot whose pass-0 accumulator is at slot(SP), its four accumulators (pass bytes apart)
// reduced in GGML_REDUCE4's order ((acc0+acc2) + (acc1+acc3), the halves, the pairs), stored
// at mem.
#define HP_REDUCE(pass, slot, mem) \
	VMOVUPS      slot(SP), Y0; \
	VADDPS       2*pass+slot(SP), Y0, Y0; \
	VMOVUPS      pass+slot(SP), Y5; \
	VADDPS       3*pass+slot(SP), Y5, Y5; \
	VADDPS       Y5, Y0, Y0; \
	GGML_REDUCE8(Y0, X0, X1); \
	VMOVSS       X0, mem

// A row's four results (dots at slots s0..s3) to off(R8) + c·R9 for column c, R10 = R8 + 3·R9.
#define HP_REDUCE_ROW(pass, s0, s1, s2, s3, off) \
	HP_REDUCE(pass, s0, off(R8)); \
	HP_REDUCE(pass, s1, off(R8)(R9*1)); \
	HP_REDUCE(pass, s2, off(R8)(R9*2)); \
	HP_REDUCE(pass, s3, off(R10))

#define HP_ROW3(pass) HP_REDUCE_ROW(pass, 256, 288, 320, 352, 8)
#define HP_NO_ROW3(pass)

// The group's accumulators cleared in the frame (pass bytes a pass).
#define HP_CLEAR(bytes, loop) \
	VXORPS Y0, Y0, Y0; \
	XORQ   AX, AX; \
loop: \
	VMOVUPS Y0, (SP)(AX*1); \
	ADDQ    $32, AX; \
	CMPQ    AX, bytes; \
	JLT     loop

// The kernels (func (x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32,
// ostride int)): groups of two (three) weight rows, the rows xstride bytes apart, against the
// four activation rows at y (ystride bytes apart); n a positive multiple of 32. Row ρ's result
// for column c goes to out + 4ρ + c·ostride bytes, as the matrix product lays its results out.
// rows is the group's row count, pass its bytes of accumulators a pass; the load, step and
// store macros its, third the third row's results (HP_ROW3) or nothing.
#define HALF_ROWS(rows, pass, load, step, store, third, widen, l0, l1, l2, l3, lchunk, lgroup, lclear) \
	MOVQ x+0(FP), R12; \
	MOVQ xstride+8(FP), BX; \
	MOVQ groups+16(FP), R11; \
	MOVQ ystride+32(FP), DX; \
	MOVQ out+48(FP), R8; \
lgroup: \
	HP_CLEAR($4*pass, lclear); \
	MOVQ R12, SI; \
	MOVQ y+24(FP), DI; \
	MOVQ n+40(FP), CX; \
lchunk: \
	MOVQ    CX, R13; \
	SHRQ    $5, R13; \
	MOVQ    $16, AX; \
	CMPQ    R13, AX; \
	CMOVQGT AX, R13; \
	HP_PASS(load, step, store, widen, 0, l0); \
	HP_PASS(load, step, store, widen, 1, l1); \
	HP_PASS(load, step, store, widen, 2, l2); \
	HP_PASS(load, step, store, widen, 3, l3); \
	MOVQ R13, AX; \
	SHLQ $6, AX; \
	ADDQ AX, SI; \
	ADDQ AX, DI; \
	ADDQ AX, DI; \
	SHRQ $1, AX; \
	SUBQ AX, CX; \
	JNZ  lchunk; \
	MOVQ ostride+56(FP), R9; \
	LEAQ (R8)(R9*2), R10; \
	ADDQ R9, R10; \
	HP_REDUCE_ROW(pass, 0, 32, 64, 96, 0); \
	HP_REDUCE_ROW(pass, 128, 160, 192, 224, 4); \
	third(pass); \
	MOVQ  $rows, AX; \
	IMULQ BX, AX; \
	ADDQ  AX, R12; \
	ADDQ  $4*rows, R8; \
	DECQ  R11; \
	JNZ   lgroup; \
	VZEROUPPER; \
	RET

// The frame is larger than a NOSPLIT function may take, so these check the stack.

// func dotF16F32PairsAVX2(x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32, ostride int)
TEXT ·dotF16F32PairsAVX2(SB), 0, $1024-64
	HALF_ROWS(2, 256, HP2_LOAD, HP2_STEP, HP2_STORE, HP_NO_ROW3, F16_WIDEN8, f16p_a0, f16p_a1, f16p_a2, f16p_a3, f16p_chunk, f16p_group, f16p_clear)

// func dotBF16F32PairsAVX2(x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32, ostride int)
TEXT ·dotBF16F32PairsAVX2(SB), 0, $1024-64
	HALF_ROWS(2, 256, HP2_LOAD, HP2_STEP, HP2_STORE, HP_NO_ROW3, BF16_WIDEN8, bf16p_a0, bf16p_a1, bf16p_a2, bf16p_a3, bf16p_chunk, bf16p_group, bf16p_clear)

// func dotF16F32TriplesAVX2(x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32, ostride int)
TEXT ·dotF16F32TriplesAVX2(SB), 0, $1536-64
	HALF_ROWS(3, 384, HP3_LOAD, HP3_STEP, HP3_STORE, HP_ROW3, F16_WIDEN8, f16t_a0, f16t_a1, f16t_a2, f16t_a3, f16t_chunk, f16t_group, f16t_clear)

// func dotBF16F32TriplesAVX2(x *uint16, xstride, groups int, y *float32, ystride, n int, out *float32, ostride int)
TEXT ·dotBF16F32TriplesAVX2(SB), 0, $1536-64
	HALF_ROWS(3, 384, HP3_LOAD, HP3_STEP, HP3_STORE, HP_ROW3, BF16_WIDEN8, bf16t_a0, bf16t_a1, bf16t_a2, bf16t_a3, bf16t_chunk, bf16t_group, bf16t_clear)

// func dotBF16F32AVX2(x *uint16, y *float32, n int) float32
// dotBF16AVX2 against activations already widened to float32 (the same products and sums).
TEXT ·dotBF16F32AVX2(SB), NOSPLIT, $0-28
	FLOAT4_KERNEL(BF16F32_STEP, $64, $128, bf16f32_loop32)
