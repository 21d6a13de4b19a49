//go:build amd64 && !purego

#include "textflag.h"
#include "simd_amd64.h"

// The four-column BF16 and F16 kernels on 512-bit registers. dotBF16AVX2 and dotF16AVX2 keep
// four accumulators of eight lanes over 32-element steps (elements 0-7, 8-15, 16-23, 24-31 of
// each step); here each
// column keeps two of sixteen lanes, the first holding that kernel's first and second
// accumulators, the second its third and fourth, so every lane sees the same FMAs in the same
// order. The reduction adds them in GGML_REDUCE4's order: (acc0+acc2) + (acc1+acc3), then the
// two halves of that, then the two pairs. The weights are widened once for the four columns.

// Sixteen BF16 values at mem widened to float32 (exact) in z.
#define BF16_WIDEN16(mem, z) \
	VPMOVZXWD mem, z; \
	VPSLLD    $16, z, z

// Sixteen F16 values at mem widened to float32 (exact) in z.
#define F16_WIDEN16(mem, z) VCVTPH2PS mem, z

// One column of a 32-element step: activations at base (widened by widen), accumulators lo
// and hi, Z10 scratch; the weights are in Z8 (elements 0-15) and Z9 (16-31).
#define HALFX4_COL(widen, base, lo, hi) \
	widen(0 base, Z10); \
	VFMADD231PS Z10, Z8, lo; \
	widen(32 base, Z10); \
	VFMADD231PS Z10, Z9, hi

// HALFX4_COL for activations already widened to float32.
#define F32X4_COL(widen, base, lo, hi) \
	VFMADD231PS 0 base, Z8, lo; \
	VFMADD231PS 64 base, Z9, hi

// The column's sum, reduced as GGML_REDUCE4 reduces dotBF16AVX2's, to off(R8).
#define BF16X4_REDUCE(zlo, zhi, ylo, xlo, yt, xt, off) BF16X4_REDUCE_TO(zlo, zhi, ylo, xlo, yt, xt, off(R8))

// BF16X4_REDUCE, stored at mem.
#define BF16X4_REDUCE_TO(zlo, zhi, ylo, xlo, yt, xt, mem) \
	VADDPS        zhi, zlo, zlo; \
	VEXTRACTF64X4 $1, zlo, yt; \
	VADDPS        yt, ylo, ylo; \
	GGML_REDUCE8(ylo, xlo, xt); \
	VMOVSS        xlo, mem

// The kernel body for 16-bit float weights that widen reads (func (x, y, ystride int, n int,
// out *float32)): four activation rows ystride bytes apart (col: 16-bit floats widened the same
// way, astep bytes a step, or float32) against one weight row; n a positive multiple of 32;
// out[c] is what the AVX2 one-column kernel returns for column c.
#define HALFX4_KERNEL(widen, col, astep, loop) \
	MOVQ   x+0(FP), SI; \
	MOVQ   y+8(FP), DI; \
	MOVQ   ystride+16(FP), DX; \
	MOVQ   n+24(FP), CX; \
	MOVQ   out+32(FP), R8; \
	HALFX4_PASS(widen, col, astep, loop, 0(R8), 4(R8), 8(R8), 12(R8)); \
	VZEROUPPER; \
	RET

// The pass of HALFX4_KERNEL (SI = x, DI = the first column, DX = ystride, CX = n), column c's
// result to mc.
#define HALFX4_PASS(widen, col, astep, loop, m0, m1, m2, m3) \
	LEAQ   (DI)(DX*2), R14; \
	ZERO_Z4(Z0, Z1, Z2, Z3); \
	ZERO_Z4(Z4, Z5, Z6, Z7); \
loop: \
	widen((SI), Z8); \
	widen(32(SI), Z9); \
	col(widen, (DI), Z0, Z1); \
	col(widen, (DI)(DX*1), Z2, Z3); \
	col(widen, (R14), Z4, Z5); \
	col(widen, (R14)(DX*1), Z6, Z7); \
	ADDQ $64, SI; \
	ADDQ $astep, DI; \
	ADDQ $astep, R14; \
	SUBQ $32, CX; \
	JNZ  loop; \
	BF16X4_REDUCE_TO(Z0, Z1, Y0, X0, Y8, X8, m0); \
	BF16X4_REDUCE_TO(Z2, Z3, Y2, X2, Y8, X8, m1); \
	BF16X4_REDUCE_TO(Z4, Z5, Y4, X4, Y8, X8, m2); \
	BF16X4_REDUCE_TO(Z6, Z7, Y6, X6, Y8, X8, m3)

// The four runs of decode in one call (halfRunsFn, func (x, y *uint16, ystride, count, stride,
// n int, out *float32, ostride int)): for each i < count, HALFX4_PASS with the activation row
// as x and rows y + i·stride + k·ystride as the columns, row (k, i)'s result to
// out + k·ostride + 4i.
#define HALFX4_RUNS(widen, loop, lrun) \
	RUNS_ARGS(R8, BX); \
	LEAQ (BX)(BX*2), R12; \
lrun: \
	MOVQ x+0(FP), SI; \
	MOVQ R9, DI; \
	MOVQ n+40(FP), CX; \
	HALFX4_PASS(widen, HALFX4_COL, 64, loop, (R8), (R8)(BX*1), (R8)(BX*2), (R8)(R12*1)); \
	RUNS_NEXT(R8, lrun)

// func dotBF16x4AVX512(x, y *uint16, ystride int, n int, out *float32)
TEXT ·dotBF16x4AVX512(SB), NOSPLIT, $0-40
	HALFX4_KERNEL(BF16_WIDEN16, HALFX4_COL, 64, bf16x4_loop32)

// func dotF16x4AVX512(x, y *uint16, ystride int, n int, out *float32)
// dotBF16x4AVX512 for F16: out[c] is what dotF16AVX2 returns for column c. Its products are
// symmetric, so with an activation row as x and four weight rows as the columns it is also
// the decode kernel of four rows at once (halfRows).
TEXT ·dotF16x4AVX512(SB), NOSPLIT, $0-40
	HALFX4_KERNEL(F16_WIDEN16, HALFX4_COL, 64, f16x4_loop32)

// func dotF16x4RunsAVX512(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)
TEXT ·dotF16x4RunsAVX512(SB), NOSPLIT, $0-64
	HALFX4_RUNS(F16_WIDEN16, f16x4r_loop32, f16x4r_row)

// func dotBF16x4RunsAVX512(x, y *uint16, ystride, count, stride, n int, out *float32, ostride int)
TEXT ·dotBF16x4RunsAVX512(SB), NOSPLIT, $0-64
	HALFX4_RUNS(BF16_WIDEN16, bf16x4r_loop32, bf16x4r_row)

// func dotF16F32x4AVX512(x *uint16, y *float32, ystride int, n int, out *float32)
// F16 weights against four rows of activations widened to float32: out[c] is what
// dotF16F32AVX2 (and dotF16AVX2 on the unwidened row) returns for column c.
TEXT ·dotF16F32x4AVX512(SB), NOSPLIT, $0-40
	HALFX4_KERNEL(F16_WIDEN16, F32X4_COL, 128, f16f32x4_loop32)

// One column of dotF16F32R2x4AVX512's step: the column's float32 activations at base (into
// Z12, Z13) against the two rows' widened weights (Z8, Z9 and Z10, Z11), onto their
// accumulators: the FMAs of F32X4_COL for each row.
#define F32R2_COL(base, lo0, hi0, lo1, hi1) \
	VMOVUPS     0 base, Z12; \
	VMOVUPS     64 base, Z13; \
	VFMADD231PS Z12, Z8, lo0; \
	VFMADD231PS Z13, Z9, hi0; \
	VFMADD231PS Z12, Z10, lo1; \
	VFMADD231PS Z13, Z11, hi1

// The two-row kernel's pass over CX elements (SI: the first row, BX on the second; activation
// rows at DI, DI+DX, R14, R14+DX): the first row's sums in Z0-Z7, the second's in Z16-Z23.
#define F16R2_PASS(loop) \
	ZERO_Z4(Z0, Z1, Z2, Z3); \
	ZERO_Z4(Z4, Z5, Z6, Z7); \
	ZERO_Z4(Z16, Z17, Z18, Z19); \
	ZERO_Z4(Z20, Z21, Z22, Z23); \
	F16R2_STEPS(loop)

// F16R2_PASS onto the sums already in Z0-Z7, Z16-Z23.
#define F16R2_STEPS(loop) \
loop: \
	VCVTPH2PS (SI), Z8; \
	VCVTPH2PS 32(SI), Z9; \
	VCVTPH2PS (SI)(BX*1), Z10; \
	VCVTPH2PS 32(SI)(BX*1), Z11; \
	F32R2_COL((DI), Z0, Z1, Z16, Z17); \
	F32R2_COL((DI)(DX*1), Z2, Z3, Z18, Z19); \
	F32R2_COL((R14), Z4, Z5, Z20, Z21); \
	F32R2_COL((R14)(DX*1), Z6, Z7, Z22, Z23); \
	ADDQ      $64, SI; \
	ADDQ      $128, DI; \
	ADDQ      $128, R14; \
	SUBQ      $32, CX; \
	JNZ       loop

// The second row's sums (Z16-Z23) to Z0-Z7, once the first row's are stored (VEX forms reach
// only the low sixteen).
#define F16R2_SECOND_ROW \
	VMOVAPS Z16, Z0; \
	VMOVAPS Z17, Z1; \
	VMOVAPS Z18, Z2; \
	VMOVAPS Z19, Z3; \
	VMOVAPS Z20, Z4; \
	VMOVAPS Z21, Z5; \
	VMOVAPS Z22, Z6; \
	VMOVAPS Z23, Z7

// func dotF16F32R2x4AVX512(x *uint16, xstride int, y *float32, ystride int, n int, out *float32)
// Two F16 weight rows xstride bytes apart against four activation rows ystride bytes apart,
// widened to float32; n a positive multiple of 32. out[4r+c] is what dotF16F32x4AVX512 returns
// for row r and column c: each activation load serves both rows.
TEXT ·dotF16F32R2x4AVX512(SB), NOSPLIT, $0-48
	R2X4_ARGS
	F16R2_PASS(f16r2x4_loop32)

	BF16X4_REDUCE(Z0, Z1, Y0, X0, Y8, X8, 0)
	BF16X4_REDUCE(Z2, Z3, Y2, X2, Y8, X8, 4)
	BF16X4_REDUCE(Z4, Z5, Y4, X4, Y8, X8, 8)
	BF16X4_REDUCE(Z6, Z7, Y6, X6, Y8, X8, 12)
	F16R2_SECOND_ROW
	BF16X4_REDUCE(Z0, Z1, Y0, X0, Y8, X8, 16)
	BF16X4_REDUCE(Z2, Z3, Y2, X2, Y8, X8, 20)
	BF16X4_REDUCE(Z4, Z5, Y4, X4, Y8, X8, 24)
	BF16X4_REDUCE(Z6, Z7, Y6, X6, Y8, X8, 28)
	VZEROUPPER
	RET

// A row's four column sums (Z0-Z7: column c in Z(2c), Z(2c+1)) reduced (BF16X4_REDUCE) to column
// c's result for the row at off(R8)(R9·c), R10 = R8+3·R9 for the last column; Z8 scratch.
#define F16R_REDUCE_COLS(off) \
	BF16X4_REDUCE_TO(Z0, Z1, Y0, X0, Y8, X8, off(R8)); \
	BF16X4_REDUCE_TO(Z2, Z3, Y2, X2, Y8, X8, off(R8)(R9*1)); \
	BF16X4_REDUCE_TO(Z4, Z5, Y4, X4, Y8, X8, off(R8)(R9*2)); \
	BF16X4_REDUCE_TO(Z6, Z7, Y6, X6, Y8, X8, off(R10))

// func dotF16F32R2x4Rows(x *uint16, xstride int, pairs int, y *float32, ystride int, n int, out *float32, ostride int)
// dotF16F32R2x4AVX512 for pairs of weight rows in one call: rows 2p and 2p+1 (xstride bytes
// apart) for p < pairs, each row's four results stored at out + 4·row + c·ostride bytes for
// column c, as the matrix product lays them out: a prompt batch's run of weight rows without a
// call (and its checks) a pair.
TEXT ·dotF16F32R2x4Rows(SB), NOSPLIT, $0-64
	PAIRS_ARGS

f16rr_pair:
	PAIRS_START
	F16R2_PASS(f16rr_loop32)
	F16R_REDUCE_COLS(0)
	F16R2_SECOND_ROW
	F16R_REDUCE_COLS(4)
	PAIRS_NEXT(f16rr_pair)
	VZEROUPPER
	RET

// One column of the three-row kernel's step: the column's float32 activations at base (into
// Z14, Z15) against the rows' widened weights (Z8-Z13, two a row), onto their accumulators.
#define F32R3_COL(base, lo0, hi0, lo1, hi1, lo2, hi2) \
	VMOVUPS     0 base, Z14; \
	VMOVUPS     64 base, Z15; \
	VFMADD231PS Z14, Z8, lo0; \
	VFMADD231PS Z15, Z9, hi0; \
	VFMADD231PS Z14, Z10, lo1; \
	VFMADD231PS Z15, Z11, hi1; \
	VFMADD231PS Z14, Z12, lo2; \
	VFMADD231PS Z15, Z13, hi2

// func dotF16F32R3x4Rows(x *uint16, xstride int, triples int, y *float32, ystride int, n int, out *float32, ostride int)
// dotF16F32R2x4Rows for triples of weight rows: rows 3t, 3t+1 and 3t+2 for t < triples, each
// row's four results at out + 4·row + c·ostride bytes, each dotF16F32x4AVX512's bits. The
// three rows' sums take Z0-Z7, Z16-Z23 and Z24-Z31, and each activation load serves three
// FMAs where the two-row kernel's serves two.
TEXT ·dotF16F32R3x4Rows(SB), NOSPLIT, $0-64
	PAIRS_ARGS

f16r3_triple:
	PAIRS_START
	ZERO_Z4(Z0, Z1, Z2, Z3)
	ZERO_Z4(Z4, Z5, Z6, Z7)
	ZERO_Z4(Z16, Z17, Z18, Z19)
	ZERO_Z4(Z20, Z21, Z22, Z23)
	ZERO_Z4(Z24, Z25, Z26, Z27)
	ZERO_Z4(Z28, Z29, Z30, Z31)

f16r3_loop:
	VCVTPH2PS (SI), Z8
	VCVTPH2PS 32(SI), Z9
	VCVTPH2PS (SI)(BX*1), Z10
	VCVTPH2PS 32(SI)(BX*1), Z11
	VCVTPH2PS (SI)(BX*2), Z12
	VCVTPH2PS 32(SI)(BX*2), Z13
	F32R3_COL((DI), Z0, Z1, Z16, Z17, Z24, Z25)
	F32R3_COL((DI)(DX*1), Z2, Z3, Z18, Z19, Z26, Z27)
	F32R3_COL((R14), Z4, Z5, Z20, Z21, Z28, Z29)
	F32R3_COL((R14)(DX*1), Z6, Z7, Z22, Z23, Z30, Z31)
	ADDQ $64, SI
	ADDQ $128, DI
	ADDQ $128, R14
	SUBQ $32, CX
	JNZ  f16r3_loop

	F16R_REDUCE_COLS(0)
	F16R2_SECOND_ROW
	F16R_REDUCE_COLS(4)
	VMOVAPS Z24, Z0
	VMOVAPS Z25, Z1
	VMOVAPS Z26, Z2
	VMOVAPS Z27, Z3
	VMOVAPS Z28, Z4
	VMOVAPS Z29, Z5
	VMOVAPS Z30, Z6
	VMOVAPS Z31, Z7
	F16R_REDUCE_COLS(8)
	LEAQ (R12)(BX*2), R12
	ADDQ BX, R12
	ADDQ $12, R8
	ADDQ $12, R10
	DECQ R11
	JNZ  f16r3_triple
	VZEROUPPER
	RET

// The two rows' sixteen sums (Z0-Z7, Z16-Z23) and their places in the state at R13 (1 KiB),
// each handed to m: to the state (F16R2_SAVE) or from it (F16R2_RESTORE).
#define F16R2_STATE(m) \
	m(Z0, 0); \
	m(Z1, 64); \
	m(Z2, 128); \
	m(Z3, 192); \
	m(Z4, 256); \
	m(Z5, 320); \
	m(Z6, 384); \
	m(Z7, 448); \
	m(Z16, 512); \
	m(Z17, 576); \
	m(Z18, 640); \
	m(Z19, 704); \
	m(Z20, 768); \
	m(Z21, 832); \
	m(Z22, 896); \
	m(Z23, 960)

#define STATE_STORE(z, off) VMOVUPS z, off(R13)
#define STATE_LOAD(z, off) VMOVUPS off(R13), z
#define F16R2_SAVE F16R2_STATE(STATE_STORE)
#define F16R2_RESTORE F16R2_STATE(STATE_LOAD)

// func dotF16F32R2x4Chunks(x *uint16, xstride int, pairs int, y *float32, ystride int, n int, out *float32, ostride int)
// dotF16F32R2x4Rows for up to 16 pairs, chunks of 1024 elements outermost: each chunk of the
// four activation rows (16 KiB) serves every pair from the level-1 cache, where a whole row of
// activations per pair came from level 2 (rows of 8192: 128 KiB). The pairs' sums wait in the
// frame between chunks (1 KiB a pair); each lane sees the same FMAs in the same order.
TEXT ·dotF16F32R2x4Chunks(SB), 0, $16384-64
	MOVQ   xstride+8(FP), BX
	MOVQ   ystride+32(FP), DX
	MOVQ   pairs+16(FP), R11
	SHLQ   $10, R11
	VPXORD Z0, Z0, Z0
	XORQ   AX, AX

f16c_clear:
	VMOVUPS Z0, (SP)(AX*1)
	ADDQ    $64, AX
	CMPQ    AX, R11
	JLT     f16c_clear
	XORQ    AX, AX

f16c_chunk:
	MOVQ    n+40(FP), R8
	SUBQ    AX, R8
	MOVQ    $1024, R9
	CMPQ    R8, R9
	CMOVQGT R9, R8
	MOVQ    x+0(FP), R12
	MOVQ    SP, R13
	MOVQ    pairs+16(FP), R11

f16c_pair:
	F16R2_RESTORE
	LEAQ    (R12)(AX*2), SI
	MOVQ    y+24(FP), DI
	LEAQ    (DI)(AX*4), DI
	LEAQ    (DI)(DX*2), R14
	MOVQ    R8, CX
	F16R2_STEPS(f16c_loop32)
	F16R2_SAVE
	LEAQ    (R12)(BX*2), R12
	ADDQ    $1024, R13
	DECQ    R11
	JNZ     f16c_pair
	ADDQ    R8, AX
	CMPQ    AX, n+40(FP)
	JLT     f16c_chunk

	MOVQ out+48(FP), R8
	MOVQ ostride+56(FP), R9
	LEAQ (R8)(R9*2), R10
	ADDQ R9, R10
	MOVQ SP, R13
	MOVQ pairs+16(FP), R11

f16c_reduce:
	F16R2_RESTORE
	F16R_REDUCE_COLS(0)
	F16R2_SECOND_ROW
	F16R_REDUCE_COLS(4)
	ADDQ $8, R8
	ADDQ $8, R10
	ADDQ $1024, R13
	DECQ R11
	JNZ  f16c_reduce
	VZEROUPPER
	RET
