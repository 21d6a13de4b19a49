// Macros of the AVX2 kernels in simd_amd64.s.

// Horizontal sum of the eight lanes of yr into the low lane of xr (the same register), using
// xt; every kernel sums its lanes in this one order.
#define HSUM(yr, xr, xt) \
	VEXTRACTF128 $1, yr, xt; \
	VADDPS       xt, xr, xr; \
	VPERMILPS    $0x4e, xr, xt; \
	VADDPS       xt, xr, xr; \
	VPERMILPS    $0xb1, xr, xt; \
	VADDSS       xt, xr, xr

#define HSUM_Y0 HSUM(Y0, X0, X1)

// The eight scales of R8 (bytes) as words in both halves of Y12, so that one VPSHUFB with a
// constant mask (scaleShuf: word k to all eight words of a half) broadcasts any of them.
#define Q4K_SCALES_Y12 \
	VMOVQ        R8, X12; \
	VPMOVZXBW   X12, X12; \
	VINSERTI128 $1, X12, Y12, Y12

// The one-row Q4_K/Q5_K kernels' arguments (SI = x, DI = y, CX = nb), Y0 = 0, and the
// constants: Y14 = 0x0f bytes, Y15 = 1 in every word.
#define Q4K_ARGS \
	MOVQ         x+0(FP), SI; \
	MOVQ         y+8(FP), DI; \
	MOVQ         nb+16(FP), CX; \
	VXORPS       Y0, Y0, Y0; \
	MOVL         $0x0f0f0f0f, AX; \
	VMOVD        AX, X14; \
	VPBROADCASTD X14, Y14; \
	VPCMPEQW     Y15, Y15, Y15; \
	VPSRLW       $15, Y15, Y15

// One Q4_K super-block at SI against Q8_K at DI: acc += d·sums - dmin·(mins·group sums).
// Unpacks the eight 6-bit scales (R8) and mins (R12) with scalar code on the integer pipes,
// which are otherwise idle, rather than with vector shuffles.
#define Q4K_SUPERBLOCK(acc) \
	Q4K_HEAD ; \
	VPXOR Y7, Y7, Y7 ; \
	Q4K_CHUNK(0) ; \
	Q4K_CHUNK(1) ; \
	Q4K_CHUNK(2) ; \
	Q4K_CHUNK(3) ; \
	Q4K_TAIL(acc)

// One Q5_K super-block at SI (d, dmin and scales as Q4_K's, then 32 bytes of high bits and
// the nibbles at 48) against Q8_K at DI: Q4K_SUPERBLOCK with each nibble's fifth bit (bit 2j
// of its qh byte for the low nibbles of chunk j, 2j+1 for the high) put back as 16. Y13 holds
// the high bits, shifted down two bits a chunk; Y8 is 0x10 in every byte.
#define Q5K_SUPERBLOCK(acc) \
	Q4K_HEAD ; \
	VMOVDQU 16(SI), Y13 ; \
	VPXOR   Y7, Y7, Y7 ; \
	Q5K_CHUNK(0) ; \
	Q5K_CHUNK(1) ; \
	Q5K_CHUNK(2) ; \
	Q5K_CHUNK(3) ; \
	Q4K_TAIL(acc)

#define Q5K_CHUNK(j) \
	VMOVDQU 48+32*j(SI), Y1; \
	VPSRLW  $4, Y1, Y2; \
	VPAND   Y14, Y1, Y1; \
	VPAND   Y14, Y2, Y2; \
	VPSLLW  $4, Y13, Y9; \
	VPAND   Y8, Y9, Y9; \
	VPOR    Y9, Y1, Y1; \
	VPSLLW  $3, Y13, Y9; \
	VPAND   Y8, Y9, Y9; \
	VPOR    Y9, Y2, Y2; \
	VPSRLW  $2, Y13, Y13; \
	Q4K_DOT(j)

// A Q4_K or Q5_K super-block's scales and mins: Y3 = d·yd, Y4 = dmin·yd, Y6 = the eight
// products of mins and group sums (float), Y12 the scales (Q4K_SCALES_Y12).
#define Q4K_HEAD \
	MOVL         (SI), AX ; \
	VMOVD        AX, X2 ; \
	VCVTPH2PS    X2, X2 ; \
	VBROADCASTSS (DI), X1 ; \
	VMULPS       X1, X2, X2 ; \
	VBROADCASTSS X2, Y3 ; \
	VMOVSHDUP    X2, X4 ; \
	VBROADCASTSS X4, Y4 ; \
	MOVL  4(SI), R8 ; \
	MOVL  8(SI), R9 ; \
	MOVL  12(SI), R10 ; \
	MOVL  R10, R11 ; \
	SHRL  $4, R11 ; \
	ANDL  $0x0f0f0f0f, R11 ; \
	MOVL  R9, R12 ; \
	SHRL  $6, R12 ; \
	ANDL  $0x03030303, R12 ; \
	SHLL  $4, R12 ; \
	ORL   R12, R11 ; \
	MOVL  R9, R12 ; \
	ANDL  $0x3f3f3f3f, R12 ; \
	ANDL  $0x0f0f0f0f, R10 ; \
	MOVL  R8, R13 ; \
	SHRL  $6, R13 ; \
	ANDL  $0x03030303, R13 ; \
	SHLL  $4, R13 ; \
	ORL   R13, R10 ; \
	ANDL  $0x3f3f3f3f, R8 ; \
	SHLQ  $32, R10 ; \
	ORQ   R10, R8 ; \
	SHLQ  $32, R11 ; \
	ORQ   R11, R12 ; \
	VMOVQ      R12, X5 ; \
	VPMOVZXBD X5, Y5 ; \
	VMOVDQU   260(DI), Y6 ; \
	VPMADDWD  Y15, Y6, Y6 ; \
	VPMULLD   Y5, Y6, Y6 ; \
	VCVTDQ2PS Y6, Y6 ; \
	Q4K_SCALES_Y12

// acc += d·(the integer sums in Y7) - dmin·(the mins' products in Y6).
#define Q4K_TAIL(acc) \
	VCVTDQ2PS    Y7, Y7 ; \
	VFMADD231PS  Y7, Y3, acc ; \
	VFNMADD231PS Y6, Y4, acc

// 64 elements j: nibbles at 16+32j (low: elements 64j.., high: 64j+32..), quants at 4+64j,
// scales 2j and 2j+1 from Y12. Adds into Y7 (int32 lanes).
#define Q4K_CHUNK(j) \
	VMOVDQU      16+32*j(SI), Y1; \
	VPSRLW       $4, Y1, Y2; \
	VPAND        Y14, Y1, Y1; \
	VPAND        Y14, Y2, Y2; \
	Q4K_DOT(j)

// Chunk j's unsigned quants (low elements in Y1, high in Y2) against its activations, scaled
// by scales 2j and 2j+1, into Y7.
#define Q4K_DOT(j) \
	VPMADDUBSW   4+64*j(DI), Y1, Y1; \
	VPMADDUBSW   36+64*j(DI), Y2, Y2; \
	VPSHUFB      scaleShuf<>+64*j(SB), Y12, Y10; \
	VPSHUFB      scaleShuf<>+64*j+32(SB), Y12, Y11; \
	VPMADDWD     Y10, Y1, Y1; \
	VPMADDWD     Y11, Y2, Y2; \
	VPADDD       Y1, Y7, Y7; \
	VPADDD       Y2, Y7, Y7

// One 32-element group held in reg (unsigned 6-bit), quants at yoff, its two scales the words
// at soff and soff+2 of the frame: Y7 += madd(maddubs(q, y), scales).
#define Q6K_GROUP(reg, yoff, soff) \
	VPMADDUBSW   yoff(DI), reg, reg; \
	VPBROADCASTW soff(SP), X11; \
	VPBROADCASTW soff+2(SP), X12; \
	VINSERTI128  $1, X12, Y11, Y11; \
	VPMADDWD     Y11, reg, reg; \
	VPADDD       reg, Y7, Y7

// 128 elements n: ql at 64n, qh at 128+32n, quants at 4+128n, scales 8n..8n+7.
#define Q6K_HALF(n) \
	VMOVDQU   64*n(SI), Y8; \
	VMOVDQU   32+64*n(SI), Y9; \
	VMOVDQU   128+32*n(SI), Y10; \
	VPAND     Y14, Y8, Y1; \
	VPAND     Y13, Y10, Y2; \
	VPSLLW    $4, Y2, Y2; \
	VPOR      Y2, Y1, Y1; \
	VPAND     Y14, Y9, Y2; \
	VPSRLW    $2, Y10, Y6; \
	VPAND     Y13, Y6, Y6; \
	VPSLLW    $4, Y6, Y6; \
	VPOR      Y6, Y2, Y2; \
	VPSRLW    $4, Y8, Y8; \
	VPAND     Y14, Y8, Y8; \
	VPSRLW    $4, Y10, Y6; \
	VPAND     Y13, Y6, Y6; \
	VPSLLW    $4, Y6, Y6; \
	VPOR      Y6, Y8, Y8; \
	VPSRLW    $4, Y9, Y9; \
	VPAND     Y14, Y9, Y9; \
	VPSRLW    $6, Y10, Y6; \
	VPAND     Y13, Y6, Y6; \
	VPSLLW    $4, Y6, Y6; \
	VPOR      Y6, Y9, Y9; \
	Q6K_GROUP(Y1, 4+128*n, 16*n); \
	Q6K_GROUP(Y2, 36+128*n, 16*n+4); \
	Q6K_GROUP(Y8, 68+128*n, 16*n+8); \
	Q6K_GROUP(Y9, 100+128*n, 16*n+12)

// Arguments: x, y *byte, ystride int, nb int, out *float32 (four results).
#define X4_PROLOGUE \
	MOVQ   x+0(FP), SI; \
	MOVQ   y+8(FP), DI; \
	MOVQ   ystride+16(FP), DX; \
	MOVQ   nb+24(FP), CX; \
	LEAQ   (DI)(DX*2), R14; \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3

// Four-column K-quant kernels: on to the next weight block (xbytes on) and the next Q8_K
// activation block of each column, back to label while blocks remain (CX).
#define X4_NEXT(xbytes, label) \
	ADDQ $xbytes, SI; \
	ADDQ $292, DI; \
	ADDQ $292, R14; \
	DECQ CX; \
	JNZ  label

#define X4_STORE \
	MOVQ  out+32(FP), R8; \
	HSUM(Y0, X0, X9); \
	VMOVSS X0, 0(R8); \
	HSUM(Y1, X1, X9); \
	VMOVSS X1, 4(R8); \
	HSUM(Y2, X2, X9); \
	VMOVSS X2, 8(R8); \
	HSUM(Y3, X3, X9); \
	VMOVSS X3, 12(R8); \
	VZEROUPPER

#define Q4K4_COL(base, j, sumi) \
	VPMADDUBSW 4+64*j base, Y8, Y10; \
	VPMADDWD   64*j(SP), Y10, Y10; \
	VPADDD     Y10, sumi, sumi; \
	VPMADDUBSW 36+64*j base, Y9, Y11; \
	VPMADDWD   64*j+32(SP), Y11, Y11; \
	VPADDD     Y11, sumi, sumi

#define Q4K4_CHUNK(j) \
	VMOVDQU 16+32*j(SI), Y8; \
	VPSRLW  $4, Y8, Y9; \
	VPAND   Y14, Y8, Y8; \
	VPAND   Y14, Y9, Y9; \
	Q4K4_COL((DI), j, Y4); \
	Q4K4_COL((DI)(DX*1), j, Y5); \
	Q4K4_COL((R14), j, Y6); \
	Q4K4_COL((R14)(DX*1), j, Y7)

// A Q5_K chunk of the four-column kernel: Q4K4_CHUNK with the fifth bits of the high-bit
// bytes in Y12 (shifted down two bits a chunk), as Q5K_CHUNK does; q5kBit is 0x10 bytes.
#define Q5K4_CHUNK(j) \
	VMOVDQU 48+32*j(SI), Y8; \
	VPSRLW  $4, Y8, Y9; \
	VPAND   Y14, Y8, Y8; \
	VPAND   Y14, Y9, Y9; \
	VPSLLW  $4, Y12, Y10; \
	VPAND   q5kBit<>(SB), Y10, Y10; \
	VPOR    Y10, Y8, Y8; \
	VPSLLW  $3, Y12, Y10; \
	VPAND   q5kBit<>(SB), Y10, Y10; \
	VPOR    Y10, Y9, Y9; \
	VPSRLW  $2, Y12, Y12; \
	Q4K4_COL((DI), j, Y4); \
	Q4K4_COL((DI)(DX*1), j, Y5); \
	Q4K4_COL((R14), j, Y6); \
	Q4K4_COL((R14)(DX*1), j, Y7)

// A Q4_K/Q5_K super-block's head in the four-column kernels: X13 = (d, dmin), the eight
// scales' word vectors at 0..255 of the frame and the mins (int32) at 256, Y4-Y7 = 0.
#define Q4K4_HEAD \
	MOVL      (SI), AX; \
	VMOVD     AX, X13; \
	VCVTPH2PS X13, X13; \
	MOVL  4(SI), R8; \
	MOVL  8(SI), R9; \
	MOVL  12(SI), R10; \
	MOVL  R10, R11; \
	SHRL  $4, R11; \
	ANDL  $0x0f0f0f0f, R11; \
	MOVL  R9, R12; \
	SHRL  $6, R12; \
	ANDL  $0x03030303, R12; \
	SHLL  $4, R12; \
	ORL   R12, R11; \
	MOVL  R9, R12; \
	ANDL  $0x3f3f3f3f, R12; \
	ANDL  $0x0f0f0f0f, R10; \
	MOVL  R8, R13; \
	SHRL  $6, R13; \
	ANDL  $0x03030303, R13; \
	SHLL  $4, R13; \
	ORL   R13, R10; \
	ANDL  $0x3f3f3f3f, R8; \
	SHLQ  $32, R10; \
	ORQ   R10, R8; \
	SHLQ  $32, R11; \
	ORQ   R11, R12; \
	VMOVQ      R12, X10; \
	VPMOVZXBD X10, Y10; \
	VMOVDQU   Y10, 256(SP); \
	Q4K_SCALES_Y12; \
	Q4K4_SCALE(0); \
	Q4K4_SCALE(1); \
	Q4K4_SCALE(2); \
	Q4K4_SCALE(3); \
	Q4K4_SCALE(4); \
	Q4K4_SCALE(5); \
	Q4K4_SCALE(6); \
	Q4K4_SCALE(7); \
	VPXOR Y4, Y4, Y4; \
	VPXOR Y5, Y5, Y5; \
	VPXOR Y6, Y6, Y6; \
	VPXOR Y7, Y7, Y7

#define Q4K4_FINISH4 FINISH4(Q4K4_FINISH)

// The four-column kernels' column totals by the finish macro fin: integer sums Y4-Y7 into the
// float sums Y0-Y3, activations at (DI), (DI)(DX*1), (R14), (R14)(DX*1).
#define FINISH4(fin) \
	fin((DI), Y4, Y0); \
	fin((DI)(DX*1), Y5, Y1); \
	fin((R14), Y6, Y2); \
	fin((R14)(DX*1), Y7, Y3)

// The float dots' arguments (SI = x, DI = y, CX = n) and their four accumulators cleared.
#define FLOAT4_ARGS \
	MOVQ   x+0(FP), SI; \
	MOVQ   y+8(FP), DI; \
	MOVQ   n+16(FP), CX; \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y5, Y5, Y5; \
	VXORPS Y6, Y6, Y6; \
	VXORPS Y7, Y7, Y7

// The float dot kernels (func (x, y, n int) float32, n a positive multiple of 32): per step of
// 32 elements, step(k, acc) adds chunk k (of eight) into acc, the four accumulators Y0, Y5, Y6,
// Y7 in turn; then x and y advance by xstep and ystep bytes. GGML_REDUCE4 sums them.
#define FLOAT4_KERNEL(step, xstep, ystep, loop) \
	FLOAT4_ARGS; \
loop: \
	step(0, Y0); \
	step(1, Y5); \
	step(2, Y6); \
	step(3, Y7); \
	ADDQ xstep, SI; \
	ADDQ ystep, DI; \
	SUBQ $32, CX; \
	JNZ  loop; \
	GGML_REDUCE4; \
	VZEROUPPER; \
	VMOVSS X0, ret+24(FP); \
	RET

// F16 against F16, F16 against float32 (activations widened once), float32 against float32.
#define F16_STEP(k, acc) \
	VCVTPH2PS   16*k(SI), Y1; \
	VCVTPH2PS   16*k(DI), Y2; \
	VFMADD231PS Y2, Y1, acc

#define F16F32_STEP(k, acc) \
	VCVTPH2PS   16*k(SI), Y1; \
	VFMADD231PS 32*k(DI), Y1, acc

#define BF16F32_STEP(k, acc) \
	VPMOVZXWD   16*k(SI), Y1; \
	VPSLLD      $16, Y1, Y1; \
	VFMADD231PS 32*k(DI), Y1, acc

#define F32_STEP(k, acc) \
	VMOVUPS     32*k(SI), Y1; \
	VFMADD231PS 32*k(DI), Y1, acc

// Column totals: acc += d*sumi, then acc -= dmin*(mins·bsums), as in dotQ4KAVX2.
#define Q4K4_FINISH(base, sumi, acc) \
	VBROADCASTSS 0 base, X12; \
	VMULPS       X12, X13, X12; \
	VBROADCASTSS X12, Y11; \
	VCVTDQ2PS    sumi, sumi; \
	VFMADD231PS  sumi, Y11, acc; \
	VMOVSHDUP    X12, X12; \
	VBROADCASTSS X12, Y12; \
	VPMADDWD     260 base, Y15, Y10; \
	VPMULLD      256(SP), Y10, Y10; \
	VCVTDQ2PS    Y10, Y10; \
	VFNMADD231PS Y10, Y12, acc

#define Q4K4_SCALE(k) \
	VPSHUFB scaleShuf<>+32*k(SB), Y12, Y10; \
	VMOVDQU Y10, 32*k(SP)

#define Q6K4_GVEC(g) \
	VPBROADCASTW 256+4*g(SP), X12; \
	VPBROADCASTW 258+4*g(SP), X15; \
	VINSERTI128  $1, X15, Y12, Y12; \
	VMOVDQU      Y12, 32*g(SP)

#define Q6K4_COL(base, n, sumi) \
	VPMADDUBSW 4+128*n base, Y8, Y12; \
	VPMADDWD   128*n(SP), Y12, Y12; \
	VPADDD     Y12, sumi, sumi; \
	VPMADDUBSW 36+128*n base, Y9, Y12; \
	VPMADDWD   128*n+32(SP), Y12, Y12; \
	VPADDD     Y12, sumi, sumi; \
	VPMADDUBSW 68+128*n base, Y10, Y12; \
	VPMADDWD   128*n+64(SP), Y12, Y12; \
	VPADDD     Y12, sumi, sumi; \
	VPMADDUBSW 100+128*n base, Y11, Y12; \
	VPMADDWD   128*n+96(SP), Y12, Y12; \
	VPADDD     Y12, sumi, sumi

#define Q6K4_HALF(n) \
	VMOVDQU 64*n(SI), Y8; \
	VMOVDQU 32+64*n(SI), Y9; \
	VMOVDQU 128+32*n(SI), Y15; \
	VPSRLW  $4, Y8, Y10; \
	VPAND   Y14, Y10, Y10; \
	VPSRLW  $4, Y9, Y11; \
	VPAND   Y14, Y11, Y11; \
	VPAND   Y14, Y8, Y8; \
	VPAND   Y14, Y9, Y9; \
	VPAND   Y13, Y15, Y12; \
	VPSLLW  $4, Y12, Y12; \
	VPOR    Y12, Y8, Y8; \
	VPSRLW  $2, Y15, Y12; \
	VPAND   Y13, Y12, Y12; \
	VPSLLW  $4, Y12, Y12; \
	VPOR    Y12, Y9, Y9; \
	VPSRLW  $4, Y15, Y12; \
	VPAND   Y13, Y12, Y12; \
	VPSLLW  $4, Y12, Y12; \
	VPOR    Y12, Y10, Y10; \
	VPSRLW  $6, Y15, Y12; \
	VPAND   Y13, Y12, Y12; \
	VPSLLW  $4, Y12, Y12; \
	VPOR    Y12, Y11, Y11; \
	Q6K4_COL((DI), n, Y4); \
	Q6K4_COL((DI)(DX*1), n, Y5); \
	Q6K4_COL((R14), n, Y6); \
	Q6K4_COL((R14)(DX*1), n, Y7)

// Column total: sumi -= 32*(scales·bsums); acc += (x.d*y.d)*sumi, as in dotQ6KAVX2.
#define Q6K4_FINISH(base, sumi, acc) \
	VMOVDQU      256(SP), Y12; \
	VPMADDWD     260 base, Y12, Y12; \
	VPSLLD       $5, Y12, Y12; \
	VPSUBD       Y12, sumi, sumi; \
	VCVTDQ2PS    sumi, sumi; \
	VBROADCASTSS 0 base, Y12; \
	VMULPS       288(SP), Y12, Y12; \
	VFMADD231PS  sumi, Y12, acc

// Reduce the eight rows' int32 lane vectors Y1..Y8 to one vector of row sums in Y1 (lane i =
// row i); clobbers Y2, Y3.
#define R8_REDUCE \
	VPHADDD    Y2, Y1, Y1; \
	VPHADDD    Y4, Y3, Y3; \
	VPHADDD    Y6, Y5, Y5; \
	VPHADDD    Y8, Y7, Y7; \
	VPHADDD    Y3, Y1, Y1; \
	VPHADDD    Y7, Y5, Y5; \
	VPERM2I128 $0x20, Y5, Y1, Y2; \
	VPERM2I128 $0x31, Y5, Y1, Y3; \
	VPADDD     Y3, Y2, Y1

// GGML_F32x8_REDUCE of the accumulators Y0, Y5, Y6, Y7 (ggml's sum[0..3]) into X0: sum[0] +=
// sum[2], sum[1] += sum[3], sum[0] += sum[1], then the halves, then two horizontal adds.
// F16Q32_FOLD is one key row of dotF16RowsQ32AVX2's groups: q (R8, dim R11 floats) against
// the F16 row at DI, in GGML_REDUCE4's four accumulators (Y0-Y3, for Y0, Y5, Y6, Y7) and its
// first three adds, into dst; DI moves on to the next row (R9 bytes). Uses Y0-Y4, SI, BX, CX.
#define F16Q32_FOLD(dst, loop) \
	MOVQ        R8, SI; \
	MOVQ        DI, BX; \
	MOVQ        R11, CX; \
	VXORPS      Y0, Y0, Y0; \
	VXORPS      Y1, Y1, Y1; \
	VXORPS      Y2, Y2, Y2; \
	VXORPS      Y3, Y3, Y3; \
loop: \
	VCVTPH2PS   (BX), Y4; \
	VFMADD231PS (SI), Y4, Y0; \
	VCVTPH2PS   16(BX), Y4; \
	VFMADD231PS 32(SI), Y4, Y1; \
	VCVTPH2PS   32(BX), Y4; \
	VFMADD231PS 64(SI), Y4, Y2; \
	VCVTPH2PS   48(BX), Y4; \
	VFMADD231PS 96(SI), Y4, Y3; \
	ADDQ        $128, SI; \
	ADDQ        $64, BX; \
	SUBQ        $32, CX; \
	JNZ         loop; \
	VADDPS      Y2, Y0, Y0; \
	VADDPS      Y3, Y1, Y1; \
	VADDPS      Y1, Y0, dst; \
	ADDQ        R9, DI

#define GGML_REDUCE4 \
	VADDPS Y6, Y0, Y0; \
	VADDPS Y7, Y5, Y5; \
	VADDPS Y5, Y0, Y0; \
	GGML_REDUCE8(Y0, X0, X1)

// The eight lanes of y summed into x's first (GGML_REDUCE4's last steps): the halves, then
// two horizontal adds; xt scratch.
#define GGML_REDUCE8(y, x, xt) \
	VEXTRACTF128 $1, y, xt; \
	VADDPS       xt, x, x; \
	VHADDPS      x, x, x; \
	VHADDPS      x, x, x

// Two-row forms of dotF16AVX2 and dotBF16AVX2 (func (x, y *uint16, ystride int, n int, out
// *float32)): x one row, y and y+ystride two more; out[r] is what the one-row kernel returns
// for x and row r, as the products are symmetric. Decode passes the activation row as x
// (halfRows), so that it is widened once for two weight rows. Row 0 sums in Y0, Y5, Y6, Y7
// (GGML_REDUCE4's), row 1 in Y8-Y11; widen(mem, y) widens eight values.
#define HALFR2_STEP(widen, k, a0, a1) \
	widen(16*k(SI), Y1); \
	widen(16*k(DI), Y2); \
	VFMADD231PS Y2, Y1, a0; \
	widen(16*k(DI)(DX*1), Y3); \
	VFMADD231PS Y3, Y1, a1

// One pass of the two-row kernel: SI = x, DI = y, DX = ystride, CX = n; row 0's result to
// (R8), row 1's to o1.
#define HALFR2_PASS(widen, loop, o1) \
	ZERO_Y4(Y0, Y5, Y6, Y7); \
	ZERO_Y4(Y8, Y9, Y10, Y11); \
loop: \
	HALFR2_STEP(widen, 0, Y0, Y8); \
	HALFR2_STEP(widen, 1, Y5, Y9); \
	HALFR2_STEP(widen, 2, Y6, Y10); \
	HALFR2_STEP(widen, 3, Y7, Y11); \
	ADDQ $64, SI; \
	ADDQ $64, DI; \
	SUBQ $32, CX; \
	JNZ  loop; \
	GGML_REDUCE4; \
	VMOVSS  X0, (R8); \
	VMOVAPS Y8, Y0; \
	VMOVAPS Y9, Y5; \
	VMOVAPS Y10, Y6; \
	VMOVAPS Y11, Y7; \
	GGML_REDUCE4; \
	VMOVSS X0, o1

#define HALFR2_KERNEL(widen, loop) \
	MOVQ x+0(FP), SI; \
	MOVQ y+8(FP), DI; \
	MOVQ ystride+16(FP), DX; \
	MOVQ n+24(FP), CX; \
	MOVQ out+32(FP), R8; \
	HALFR2_PASS(widen, loop, 4(R8)); \
	VZEROUPPER; \
	RET

// Decode's four runs of rows (func (x, y *uint16, ystride, count, stride, n int, out *float32,
// ostride int)): rows y + i·stride + k·ystride for i < count and k < 4, each against x, row
// (k, i)'s result to out + k·ostride + 4i; per i, rows 0 and 1 in one pass and rows 2 and 3
// in another, as two calls of the two-row kernel. The runs in one call spare decode a Go call
// and its checks every four rows.
#define HALFR2_RUNS(widen, l0, l1, lrun) \
	RUNS_ARGS(R10, BX); \
lrun: \
	MOVQ x+0(FP), SI; \
	MOVQ R9, DI; \
	MOVQ n+40(FP), CX; \
	MOVQ R10, R8; \
	HALFR2_PASS(widen, l0, (R8)(BX*1)); \
	MOVQ x+0(FP), SI; \
	LEAQ (R9)(DX*2), DI; \
	MOVQ n+40(FP), CX; \
	LEAQ (R10)(BX*2), R8; \
	HALFR2_PASS(widen, l1, (R8)(BX*1)); \
	RUNS_NEXT(R10, lrun)

// The arguments of a kernel of decode's four runs (halfRunsFn): R9 = y, DX = ystride, R11 =
// count, o = out, os = ostride.
#define RUNS_ARGS(o, os) \
	MOVQ y+8(FP), R9; \
	MOVQ ystride+16(FP), DX; \
	MOVQ count+24(FP), R11; \
	MOVQ out+48(FP), o; \
	MOVQ ostride+56(FP), os

// On to the runs' next rows (o: the first run's next result), back to label while any are
// left, else return.
#define RUNS_NEXT(o, label) \
	ADDQ stride+32(FP), R9; \
	ADDQ $4, o; \
	DECQ R11; \
	JNZ  label; \
	VZEROUPPER; \
	RET

#define F16_WIDEN8(mem, y) VCVTPH2PS mem, y

#define BF16_WIDEN8(mem, y) \
	VPMOVZXWD mem, y; \
	VPSLLD    $16, y, y

// Prompt-batch variants of the eight-row kernels: the eight rows are first unpacked once per
// group (unpack*R8: per block, eight rows of 32 unsigned bytes, then their eight scales as
// float32), and every activation row then runs against the unpacked copy, which stays in the
// level-1 cache. The arithmetic is that of the eight-row kernels, so results are identical.

// Arguments of the unpacked kernels: w *byte (unpacked quants), sc *float32 (scales), y *byte,
// yd *float32, ys *int32, nb int, out *float32, pf *byte, pfn int. The kernels compute from
// cache; meanwhile they prefetch pfn bytes from pf, a share of the next eight weight rows, so
// that memory streams while they compute instead of only while rows are unpacked.
#define U8_PROLOGUE \
	MOVQ   w+0(FP), SI; \
	MOVQ   sc+8(FP), R13; \
	MOVQ   y+16(FP), DI; \
	MOVQ   yd+24(FP), R10; \
	MOVQ   ys+32(FP), R11; \
	MOVQ   nb+40(FP), CX; \
	MOVQ   pf+56(FP), R12; \
	MOVQ   pfn+64(FP), R14; \
	VXORPS Y0, Y0, Y0

#define U8_PREFETCH(label) \
	CMPQ       R14, $0; \
	JLE        label; \
	PREFETCHT0 (R12); \
	ADDQ       $64, R12; \
	SUBQ       $64, R14; \
label:

#define U8_ROW_VNNI(i, dst) \
	VMOVDQU  32*i(SI), Y10; \
	VPXOR    dst, dst, dst; \
	VPDPBUSD Y9, Y10, dst

#define U8_ROWS(rowmacro) \
	rowmacro(0, Y1); \
	rowmacro(1, Y2); \
	rowmacro(2, Y3); \
	rowmacro(3, Y4); \
	rowmacro(4, Y5); \
	rowmacro(5, Y6); \
	rowmacro(6, Y7); \
	rowmacro(7, Y8)

#define U8_ADVANCE \
	ADDQ $256, SI; \
	ADDQ $32, R13; \
	ADDQ $34, DI; \
	ADDQ $4, R10; \
	ADDQ $4, R11

// B8: arguments and registers. SI = x, DI = y, R10 = yd, R11 = ys, CX = blocks left; X0 holds
// the running sum (lane 0 of Y0).
#define B8_PROLOGUE \
	MOVQ   x+0(FP), SI; \
	MOVQ   y+8(FP), DI; \
	MOVQ   yd+16(FP), R10; \
	MOVQ   ys+24(FP), R11; \
	MOVQ   nb+32(FP), CX; \
	VXORPS Y0, Y0, Y0

// Block k of the eight: dst = int32 sums of four products each.
#define B8_Q8_0_VNNI(k, dst) \
	VMOVDQU  2+34*k(SI), Y10; \
	VPXOR    Y15, Y10, Y10; \
	VPXOR    dst, dst, dst; \
	VPDPBUSD 2+34*k(DI), Y10, dst

#define B8_Q8_0(k, dst) \
	VMOVDQU    2+34*k(SI), Y10; \
	VMOVDQU    2+34*k(DI), Y14; \
	VPSIGNB    Y10, Y14, Y14; \
	VPABSB     Y10, Y10; \
	VPMADDUBSW Y14, Y10, dst; \
	VPMADDWD   Y12, dst, dst

#define B8_BLOCKS(blk) \
	blk(0, Y1); \
	blk(1, Y2); \
	blk(2, Y3); \
	blk(3, Y4); \
	blk(4, Y5); \
	blk(5, Y6); \
	blk(6, Y7); \
	blk(7, Y8)

// Y1 -= (the eight blocks' activation quant sums) << shift.
#define B8_CORRECT(shift) \
	VMOVDQU (R11), Y2; \
	VPSLLD  $shift, Y2, Y2; \
	VPSUBD  Y2, Y1, Y1

// The eight blocks' fp16 scales (blocks xb bytes apart) widened into Y11.
#define B8_XSCALES(xb) \
	VPINSRW   $0, (SI), X11, X11; \
	VPINSRW   $1, xb(SI), X11, X11; \
	VPINSRW   $2, 2*xb(SI), X11, X11; \
	VPINSRW   $3, 3*xb(SI), X11, X11; \
	VPINSRW   $4, 4*xb(SI), X11, X11; \
	VPINSRW   $5, 5*xb(SI), X11, X11; \
	VPINSRW   $6, 6*xb(SI), X11, X11; \
	VPINSRW   $7, 7*xb(SI), X11, X11; \
	VCVTPH2PS X11, Y11

// ggml: t = sumi*(dx*dy) for Q8_0, each product rounded.
#define B8_Q8_0_FLOAT \
	VMULPS    (R10), Y11, Y2; \
	VCVTDQ2PS Y1, Y1; \
	VMULPS    Y2, Y1, Y1

// X0 += t0; X0 += t1; ... X0 += t7, in order (ggml's sumf += ... per block).
#define B8_SEQSUM \
	VADDSS       X1, X0, X0; \
	VMOVSHDUP    X1, X2; \
	VADDSS       X2, X0, X0; \
	VMOVHLPS     X1, X1, X2; \
	VADDSS       X2, X0, X0; \
	VMOVSHDUP    X2, X2; \
	VADDSS       X2, X0, X0; \
	VEXTRACTF128 $1, Y1, X1; \
	VADDSS       X1, X0, X0; \
	VMOVSHDUP    X1, X2; \
	VADDSS       X2, X0, X0; \
	VMOVHLPS     X1, X1, X2; \
	VADDSS       X2, X0, X0; \
	VMOVSHDUP    X2, X2; \
	VADDSS       X2, X0, X0

#define B8_ADVANCE(xbytes) \
	ADDQ $xbytes, SI; \
	ADDQ $272, DI; \
	ADDQ $32, R10; \
	ADDQ $32, R11

// Unpack: SI = row, DX = xstride, CX = blocks, DI = dst (advances 32 per row), R10 = halves
// (advance 2 per row), BX = rows left.
#define UNPACK_PROLOGUE \
	MOVQ x+0(FP), SI; \
	MOVQ xstride+8(FP), DX; \
	MOVQ nb+16(FP), CX; \
	MOVQ dst+24(FP), DI; \
	MOVQ sc+32(FP), R10; \
	MOVQ $8, BX

#define UNPACK_NEXT_ROW(label) \
	ADDQ DX, SI; \
	ADDQ $32, DI; \
	ADDQ $2, R10; \
	DECQ BX; \
	JNZ  label

// Widen the eight halves of each block to float32 in place, last block first.
#define UNPACK_WIDEN \
	MOVQ      sc+32(FP), R10; \
	MOVQ      CX, AX; \
	DECQ      AX; \
	SHLQ      $4, AX; \
	LEAQ      (R10)(AX*1), R8; \
	LEAQ      (R10)(AX*2), R9; \
widen_loop: \
	VCVTPH2PS (R8), Y10; \
	VMOVUPS   Y10, (R9); \
	SUBQ      $16, R8; \
	SUBQ      $32, R9; \
	DECQ      CX; \
	JNZ       widen_loop; \
	VZEROUPPER

// U8: Y1 -= (the block's activation quant sum at (R11)) << shift, for all eight rows.
#define R8_CORRECT(shift) \
	VPBROADCASTD (R11), Y2; \
	VPSLLD       $shift, Y2, Y2; \
	VPSUBD       Y2, Y1, Y1

// U8: the eight results (one per row) to out.
#define R8_STORE \
	MOVQ    out+48(FP), AX; \
	VMOVUPS Y0, (AX); \
	VZEROUPPER

// The packed kernels' arguments: R9 = w (the first panel), R10 = panels, R8 = out; the
// many-column kernels' also DX = ystride, BX = ostride.
#define PACKED_ARGS1 \
	MOVQ w+0(FP), R9; \
	MOVQ panels+16(FP), R10; \
	MOVQ out+40(FP), R8

#define PACKED_ARGS4 \
	MOVQ w+0(FP), R9; \
	MOVQ panels+16(FP), R10; \
	MOVQ out+48(FP), R8; \
	MOVQ ystride+40(FP), DX; \
	MOVQ ostride+56(FP), BX

// The start of a panel's loop over its super-blocks: SI = the panel, CX = its super-blocks,
// DI = the (first) prepared activation row.
#define PACKED_SB_START \
	MOVQ R9, SI; \
	MOVQ nb+24(FP), CX; \
	MOVQ y+32(FP), DI

// Packed kernels (packed*_amd64.s): the 0x0f and 0xf0 byte masks in Z30, Z31.
#define PACKED_NIBBLE_MASKS \
	MOVL         $0x0f0f0f0f, AX; \
	VPBROADCASTD AX, Z30; \
	MOVL         $0xf0f0f0f0, AX; \
	VPBROADCASTD AX, Z31

// Zeroes four 512-bit registers.
#define ZERO_Z4(a, b, c, d) \
	VPXORD a, a, a; \
	VPXORD b, b, b; \
	VPXORD c, c, c; \
	VPXORD d, d, d

// Zeroes four 256-bit registers.
// The eight groups of a block or chunk a of half h: the first by first (which starts the
// sums), the others by group.
#define GROUPS8(first, group, a, h) \
	first(a, 0, h); \
	group(a, 1, h); \
	group(a, 2, h); \
	group(a, 3, h); \
	group(a, 4, h); \
	group(a, 5, h); \
	group(a, 6, h); \
	group(a, 7, h)

#define ZERO_Y4(a, b, c, d) \
	VPXOR a, a, a; \
	VPXOR b, b, b; \
	VPXOR c, c, c; \
	VPXOR d, d, d

// Packed kernels: the 64 bytes at off(ptr) split, via tmp, into lo = their low nibbles and
// hi = their high nibbles times 16 (masks in Z30, Z31).
#define PACKED_SPLIT(off, ptr, tmp, lo, hi) \
	VMOVDQU64 off(ptr), tmp; \
	VPANDD    Z30, tmp, lo; \
	VPANDD    Z31, tmp, hi

// Packed kernels of many columns (w *byte, stride int, panels int, nb int, y *byte, ystride
// int, out *float32, ostride int): R9 = w, R10 = panels, R8 = out, DX = ystride, BX = ostride,
// and the nibble masks.
#define PACKED_COLS_ARGS \
	PACKED_ARGS4; \
	PACKED_NIBBLE_MASKS

// Packed kernels of eight columns: DI = the first activation row, r3 = the fourth, r6 = the
// seventh (rows DX bytes apart).
#define PACKED_COLS8_ROWS(r3, r6) \
	MOVQ y+32(FP), DI; \
	LEAQ (DI)(DX*2), r3; \
	ADDQ DX, r3; \
	LEAQ (r3)(DX*2), r6; \
	ADDQ DX, r6

// Packed kernels: on to the next panel (R9 by stride) and its 16 results (R8), back to label
// while panels remain (R10).
#define PACKED_NEXT_PANEL(label) \
	ADDQ $64, R8; \
	ADDQ stride+8(FP), R9; \
	DECQ R10; \
	JNZ  label

// Packed kernels: the 16 results of four columns (a0-a3) to R8 + c·BX for column c (R12
// scratch).
#define PACKED_STORE4(a0, a1, a2, a3) \
	LEAQ    (R8)(BX*2), R12; \
	VMOVUPS a0, (R8); \
	VMOVUPS a1, (R8)(BX*1); \
	VMOVUPS a2, (R12); \
	VMOVUPS a3, (R12)(BX*1)

// Packed kernels: the 16 results of eight columns (a0-a7) to R8 + c·BX for column c (R12
// scratch).
#define PACKED_STORE8(a0, a1, a2, a3, a4, a5, a6, a7) \
	LEAQ    (R8)(BX*2), R12; \
	ADDQ    BX, R12; \
	VMOVUPS a0, (R8); \
	VMOVUPS a1, (R8)(BX*1); \
	VMOVUPS a2, (R8)(BX*2); \
	VMOVUPS a3, (R12); \
	VMOVUPS a4, (R12)(BX*1); \
	VMOVUPS a5, (R12)(BX*2); \
	LEAQ    (R12)(BX*2), R12; \
	ADDQ    BX, R12; \
	VMOVUPS a6, (R12); \
	VMOVUPS a7, (R12)(BX*1)

// Packed kernels: software prefetches of the eight cache lines at off(ptr). The kernels that
// serve several activation rows consume a panel slower than memory delivers it, and then the
// hardware prefetcher falls behind (on the AMD EPYC (Zen 4) measured, eight columns streaming
// from memory ran at half the speed their compute allows without these, Q4_0's at a fifth).
#define PACKED_PREFETCH8(off, ptr) PREFETCH8_WITH(PREFETCHT0, off, ptr)

// PACKED_PREFETCH8 into the level-2 cache only.
#define PACKED_PREFETCH8_L2(off, ptr) PREFETCH8_WITH(PREFETCHT1, off, ptr)

// Four lines at d(r), with the prefetch instruction pf.
#define PF4_LINES(pf, d, r) \
	pf d(r); \
	pf d+64(r); \
	pf d+128(r); \
	pf d+192(r)

#define PREFETCH8_WITH(pf, off, ptr) \
	pf off(ptr); \
	pf off+64(ptr); \
	pf off+128(ptr); \
	pf off+192(ptr); \
	pf off+256(ptr); \
	pf off+320(ptr); \
	pf off+384(ptr); \
	pf off+448(ptr)

// The value-sum block kernels (madF16RowsAVX2, madQ8_0RowsAVX2): MADROWS_ARGS loads R8 = acc,
// DI = the first row, R9 = the row stride, R10 = rows, R11 = the width argument, R12 = ms,
// R13 = vs and 1.0 into X5; MADROWS_RESCALE jumps to label unless the row's ms is exactly 1;
// MADROWS_NEXT moves to the next row and back to label while rows remain.
#define MADROWS_ARGS(width) \
	MOVQ acc+0(FP), R8; \
	MOVQ v+8(FP), DI; \
	MOVQ vstride+16(FP), R9; \
	MOVQ n+24(FP), R10; \
	MOVQ width+32(FP), R11; \
	MOVQ ms+40(FP), R12; \
	MOVQ vs+48(FP), R13; \
	MOVL $0x3f800000, AX; \
	VMOVD AX, X5

#define MADROWS_RESCALE(label) \
	VMOVSS   (R12), X4; \
	VUCOMISS X5, X4; \
	JNE      label; \
	JP       label

#define MADROWS_NEXT(label) \
	ADDQ $4, R12; \
	ADDQ $4, R13; \
	ADDQ R9, DI; \
	DECQ R10; \
	JNZ  label

// Packed K-quants with scales and mins (Q4_K, Q5_K; packedq4k.go, packedq5k.go): the mins, d
// and dmin of their super-blocks lie alike from tail+128 on (kScales). PK_MINS: the mins term of the
// super-block at SI for the column at base, into mins (zeroed here), with Z28 scratch.
#define PK_MINS(tail, base, mins) \
	VPXORD          mins, mins, mins; \
	VPMOVZXBW       tail+128(SI), Z28; \
	VPDPWSSD.BCST   260 base, Z28, mins; \
	VPMOVZXBW       tail+160(SI), Z28; \
	VPDPWSSD.BCST   264 base, Z28, mins; \
	VPMOVZXBW       tail+192(SI), Z28; \
	VPDPWSSD.BCST   268 base, Z28, mins; \
	VPMOVZXBW       tail+224(SI), Z28; \
	VPDPWSSD.BCST   272 base, Z28, mins

// The super-block total of the column at base: acc += float(sumi)·(d·yd) - float(mins)·(dmin·yd),
// with Z28, Z29 scratch (sumi and mins are converted in place).
#define PK_FMAS(tail, base, sumi, mins, acc) \
	VCVTPH2PS    tail+256(SI), Z28; \
	VMULPS.BCST  256 base, Z28, Z28; \
	VCVTPH2PS    tail+288(SI), Z29; \
	VMULPS.BCST  256 base, Z29, Z29; \
	VCVTDQ2PS    sumi, sumi; \
	VFMADD231PS  Z28, sumi, acc; \
	VCVTDQ2PS    mins, mins; \
	VFNMADD231PS Z29, mins, acc

// The column's super-block total into acc (Z24 and Z28, Z29 scratch).
#define PKN_FINISH(tail, base, sumi, acc) \
	PK_MINS(tail, base, Z24); \
	PK_FMAS(tail, base, sumi, Z24, acc)

// Many columns: chunk j's products for the column with activations at base, from the quants
// of its low sub-block in Z8-Z15 and of its high one in Z16-Z23, into Z24 (low) and Z25
// (high).
#define PKN_DOTS(j, base) \
	VPXORD        Z24, Z24, Z24; \
	VPXORD        Z25, Z25, Z25; \
	VPDPBUSD.BCST 64*j base, Z8, Z24; \
	VPDPBUSD.BCST 64*j+32 base, Z16, Z25; \
	VPDPBUSD.BCST 64*j+4 base, Z9, Z24; \
	VPDPBUSD.BCST 64*j+36 base, Z17, Z25; \
	VPDPBUSD.BCST 64*j+8 base, Z10, Z24; \
	VPDPBUSD.BCST 64*j+40 base, Z18, Z25; \
	VPDPBUSD.BCST 64*j+12 base, Z11, Z24; \
	VPDPBUSD.BCST 64*j+44 base, Z19, Z25; \
	VPDPBUSD.BCST 64*j+16 base, Z12, Z24; \
	VPDPBUSD.BCST 64*j+48 base, Z20, Z25; \
	VPDPBUSD.BCST 64*j+20 base, Z13, Z24; \
	VPDPBUSD.BCST 64*j+52 base, Z21, Z25; \
	VPDPBUSD.BCST 64*j+24 base, Z14, Z24; \
	VPDPBUSD.BCST 64*j+56 base, Z22, Z25; \
	VPDPBUSD.BCST 64*j+28 base, Z15, Z24; \
	VPDPBUSD.BCST 64*j+60 base, Z23, Z25

// One column of Q4_K or Q5_K: a chunk's integer sums lo (low sub-block) and hi (high one)
// scaled by the rows' scales at sc(SI) and sc+16(SI), added to dlo and dhi; Z14, Z15 scratch.
#define PK1_SCALE(sc, lo, hi, dlo, dhi) \
	VPMOVZXBD  sc(SI), Z14; \
	VPMOVZXBD  sc+16(SI), Z15; \
	VPMULLD    Z14, lo, lo; \
	VPADDD     lo, dlo, dlo; \
	VPMULLD    Z15, hi, hi; \
	VPADDD     hi, dhi, dhi

// The chunk's two sums (Z24, Z25) scaled by its sub-blocks' scales (Z26, Z27) and added to
// sumi.
#define PKN_SCALE(sumi) \
	VPMULLD Z26, Z24, Z24; \
	VPADDD  Z24, sumi, sumi; \
	VPMULLD Z27, Z25, Z25; \
	VPADDD  Z25, sumi, sumi

// Eight columns: column c's super-block total into its float sum in the frame (c*64(SP); Z25
// holds it meanwhile): PKN_FINISH's arithmetic, with the rows' mins (as words, Z8-Z11), d
// (Z12) and dmin (Z13) made once for all columns by PK8_FINISH_ALL; Z24, Z28, Z29 scratch.
#define PK8_FINISH(c, base, sumi) \
	VPXORD        Z24, Z24, Z24; \
	VPDPWSSD.BCST 260 base, Z8, Z24; \
	VPDPWSSD.BCST 264 base, Z9, Z24; \
	VPDPWSSD.BCST 268 base, Z10, Z24; \
	VPDPWSSD.BCST 272 base, Z11, Z24; \
	VMOVUPS       c*64(SP), Z25; \
	VMULPS.BCST   256 base, Z12, Z28; \
	VMULPS.BCST   256 base, Z13, Z29; \
	VCVTDQ2PS     sumi, sumi; \
	VFMADD231PS   Z28, sumi, Z25; \
	VCVTDQ2PS     Z24, Z24; \
	VFNMADD231PS  Z29, Z24, Z25; \
	VMOVUPS       Z25, c*64(SP)

// The zero register z to the eight columns' float sums in the frame, w bytes a column.
#define FRAME_ZERO8(z, w) \
	VMOVUPS z, 0(SP); \
	VMOVUPS z, w(SP); \
	VMOVUPS z, 2*w(SP); \
	VMOVUPS z, 3*w(SP); \
	VMOVUPS z, 4*w(SP); \
	VMOVUPS z, 5*w(SP); \
	VMOVUPS z, 6*w(SP); \
	VMOVUPS z, 7*w(SP)

// Eight columns: the float sums in the frame (64 bytes a column) zeroed, and loaded into Z0-Z7.
#define PK8_FRAME_ZERO \
	VPXORD  Z0, Z0, Z0; \
	FRAME_ZERO8(Z0, 64)

#define PK8_FRAME_LOAD \
	VMOVUPS 0(SP), Z0; \
	VMOVUPS 64(SP), Z1; \
	VMOVUPS 128(SP), Z2; \
	VMOVUPS 192(SP), Z3; \
	VMOVUPS 256(SP), Z4; \
	VMOVUPS 320(SP), Z5; \
	VMOVUPS 384(SP), Z6; \
	VMOVUPS 448(SP), Z7

// Eight columns (activations at DI, DI+DX, DI+2DX, R11, R11+DX, R11+2DX, R13, R13+DX; integer
// sums Z0-Z7): every column's super-block total into its float sum in the frame.
#define PK8_FINISH_ALL(tail) PK8_FINISH_WITH(tail, PK8_FINISH)

// PK8_FINISH_ALL with fin as each column's finish (PK8_FINISH, or a form of it).
#define PK8_FINISH_WITH(tail, fin) \
	VPMOVZXBW tail+128(SI), Z8; \
	VPMOVZXBW tail+160(SI), Z9; \
	VPMOVZXBW tail+192(SI), Z10; \
	VPMOVZXBW tail+224(SI), Z11; \
	VCVTPH2PS tail+256(SI), Z12; \
	VCVTPH2PS tail+288(SI), Z13; \
	PK8_FMA_ALL(fin)

// Packed kernels of four columns (activations at (DI), (DI)(DX*1), (R14), (R14)(DX*1)) and of
// eight (as PK8_FINISH_ALL): col(j, base, sum) for every column, its integer sum in Z4-Z7 or
// Z0-Z7.
// The four columns of the 256-bit four-column kernels (activations at (DI), (DI)(DX*1),
// (R14), (R14)(DX*1)): col(a, b, base, s, t) for each, with that column's two sums s0..s3 and
// t0..t3 (registers or register numbers, as col takes them).
#define COLS4_WITH(col, a, b, s0, s1, s2, s3, t0, t1, t2, t3) \
	col(a, b, (DI), s0, t0); \
	col(a, b, (DI)(DX*1), s1, t1); \
	col(a, b, (R14), s2, t2); \
	col(a, b, (R14)(DX*1), s3, t3)

#define PKN_COLS4(col, j) \
	col(j, (DI), Z4); \
	col(j, (DI)(DX*1), Z5); \
	col(j, (R14), Z6); \
	col(j, (R14)(DX*1), Z7)

#define PKN_COLS8(col, j) \
	col(j, (DI), Z0); \
	col(j, (DI)(DX*1), Z1); \
	col(j, (DI)(DX*2), Z2); \
	col(j, (R11), Z3); \
	col(j, (R11)(DX*1), Z4); \
	col(j, (R11)(DX*2), Z5); \
	col(j, (R13), Z6); \
	col(j, (R13)(DX*1), Z7)

// Packed K-quant kernels of four columns: a panel's start (SI, CX = nb, DI and R14 = DI +
// 2·DX the activation rows, float sums Z0-Z3 zeroed), and the step to the next super-block of
// size bytes (back to label while CX lasts).
#define PK4_PANEL \
	PACKED_SB_START; \
	LEAQ (DI)(DX*2), R14; \
	ZERO_Z4(Z0, Z1, Z2, Z3)

#define PK4_NEXT(size, label) \
	ADDQ $size, SI; \
	ADDQ $288, DI; \
	ADDQ $288, R14; \
	DECQ CX; \
	JNZ  label

// The same for eight columns (rows at DI, R11 = DI + 3·DX, R13 = DI + 6·DX) and activations
// of asize bytes a super-block.
#define PK8_NEXT_ACT(size, asize, label) \
	ADDQ $size, SI; \
	ADDQ $asize, DI; \
	ADDQ $asize, R11; \
	ADDQ $asize, R13; \
	DECQ CX; \
	JNZ  label

// The loop of the eight-column K-quant kernels (Q3_K, Q4_K, Q5_K, Q6_K), as PACKED_SB4's:
// body adds a super-block (bsize bytes of weights, asize of prepared activations a column) to
// the integer totals Z0-Z7, zeroed before it, and those to the float sums in the frame.
#define PACKED_SB8(masks, body, bsize, asize, plab, blab) \
	PACKED_ARGS4; \
	masks; \
plab: \
	MOVQ R9, SI; \
	MOVQ nb+24(FP), CX; \
	PACKED_COLS8_ROWS(R11, R13); \
	PK8_FRAME_ZERO; \
blab: \
	ZERO_Z4(Z0, Z1, Z2, Z3); \
	ZERO_Z4(Z4, Z5, Z6, Z7); \
	body; \
	PK8_NEXT_ACT(bsize, asize, blab); \
	PK8_FRAME_LOAD; \
	PACKED_STORE8(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// Packed eight-column kernels of the 16-sub-block K-quants (Q3_K, Q6_K): the quants in q
// against the broadcast activation quants at off of the eight columns (as PK8_NEXT_ACT's rows)
// into a0..a7.
#define PK8_DP(off, q, a0, a1, a2, a3, a4, a5, a6, a7) \
	VPDPBUSD.BCST off(DI), q, a0; \
	VPDPBUSD.BCST off(DI)(DX*1), q, a1; \
	VPDPBUSD.BCST off(DI)(DX*2), q, a2; \
	VPDPBUSD.BCST off(R11), q, a3; \
	VPDPBUSD.BCST off(R11)(DX*1), q, a4; \
	VPDPBUSD.BCST off(R11)(DX*2), q, a5; \
	VPDPBUSD.BCST off(R13), q, a6; \
	VPDPBUSD.BCST off(R13)(DX*1), q, a7

// Their two sums a column (Z16-Z23 and Z24-Z31) set to the offset terms of sub-blocks ja and jb
// (PACKED_SC's c_j).
#define PK8_START1(j, a0, a1, a2, a3, a4, a5, a6, a7) \
	VPBROADCASTD 260+4*(j)(DI), a0; \
	VPBROADCASTD 260+4*(j)(DI)(DX*1), a1; \
	VPBROADCASTD 260+4*(j)(DI)(DX*2), a2; \
	VPBROADCASTD 260+4*(j)(R11), a3; \
	VPBROADCASTD 260+4*(j)(R11)(DX*1), a4; \
	VPBROADCASTD 260+4*(j)(R11)(DX*2), a5; \
	VPBROADCASTD 260+4*(j)(R13), a6; \
	VPBROADCASTD 260+4*(j)(R13)(DX*1), a7

#define PK8_START(ja, jb) \
	PK8_START1(ja, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23); \
	PK8_START1(jb, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31)

// Those sums zeroed instead (the types without offset terms).
#define PK8_ZERO_SUMS \
	ZERO_Z4(Z16, Z17, Z18, Z19); \
	ZERO_Z4(Z20, Z21, Z22, Z23); \
	ZERO_Z4(Z24, Z25, Z26, Z27); \
	ZERO_Z4(Z28, Z29, Z30, Z31)

// Those sums times their rows' scales (Z8 and Z9), added to the columns' totals Z0-Z7.
#define PK8_SCALE1(a, b, tot) \
	VPMULLD Z8, a, a; \
	VPADDD  a, tot, tot; \
	VPMULLD Z9, b, b; \
	VPADDD  b, tot, tot

#define PK8_SCALE_SUMS \
	PK8_SCALE1(Z16, Z24, Z0); \
	PK8_SCALE1(Z17, Z25, Z1); \
	PK8_SCALE1(Z18, Z26, Z2); \
	PK8_SCALE1(Z19, Z27, Z3); \
	PK8_SCALE1(Z20, Z28, Z4); \
	PK8_SCALE1(Z21, Z29, Z5); \
	PK8_SCALE1(Z22, Z30, Z6); \
	PK8_SCALE1(Z23, Z31, Z7)

// Column c's super-block total tot into its float sum in the frame: PACKED_FMA, with Z8 = the
// rows' d and Z9, Z10 scratch.
#define PK8_FMA_FRAME(c, base, tot) \
	VCVTDQ2PS   tot, tot; \
	VMULPS.BCST 256 base, Z8, Z9; \
	VMOVUPS     c*64(SP), Z10; \
	VFMADD231PS Z9, tot, Z10; \
	VMOVUPS     Z10, c*64(SP)

// Packed Q6_K's eight-column kernel (packedq6k_amd64.s): its totals are 4·sumi.
#define P6X8_FMA(c, base, tot) \
	VPSRAD $2, tot, tot; \
	PK8_FMA_FRAME(c, base, tot)

// Every column's total into its float sum (PK8_FMA_FRAME's fma), Z0-Z7.
#define PK8_FMA_ALL(fma) \
	fma(0, (DI), Z0); \
	fma(1, (DI)(DX*1), Z1); \
	fma(2, (DI)(DX*2), Z2); \
	fma(3, (R11), Z3); \
	fma(4, (R11)(DX*1), Z4); \
	fma(5, (R11)(DX*2), Z5); \
	fma(6, (R13), Z6); \
	fma(7, (R13)(DX*1), Z7)

// Arguments of the two-row four-column kernels (x *uint16, xstride int, y, ystride int, n int,
// out *float32): SI = x, BX = xstride, DI = y, DX = ystride, R14 = y + 2·ystride, CX = n,
// R8 = out.
// Arguments of the kernels over runs of weight-row pairs (func(x, xstride, pairs, y, ystride, n,
// out, ostride)): R12 the pair's first row, BX the row stride, R11 the pairs left, R13 the
// activation rows (DX apart), R8 the pair's first result, R9 the column stride of the results,
// R10 = R8+3·R9.
#define PAIRS_ARGS \
	MOVQ x+0(FP), R12; \
	MOVQ xstride+8(FP), BX; \
	MOVQ pairs+16(FP), R11; \
	MOVQ y+24(FP), R13; \
	MOVQ ystride+32(FP), DX; \
	MOVQ out+48(FP), R8; \
	MOVQ ostride+56(FP), R9; \
	LEAQ (R8)(R9*2), R10; \
	ADDQ R9, R10

// A pair's pass starts as R2X4_ARGS leaves the registers.
#define PAIRS_START \
	MOVQ R12, SI; \
	MOVQ R13, DI; \
	LEAQ (DI)(DX*2), R14; \
	MOVQ n+40(FP), CX

// On to the next pair, back to label while any are left.
#define PAIRS_NEXT(label) \
	LEAQ (R12)(BX*2), R12; \
	ADDQ $8, R8; \
	ADDQ $8, R10; \
	DECQ R11; \
	JNZ  label

#define R2X4_ARGS \
	MOVQ x+0(FP), SI; \
	MOVQ xstride+8(FP), BX; \
	MOVQ y+16(FP), DI; \
	MOVQ ystride+24(FP), DX; \
	MOVQ n+32(FP), CX; \
	MOVQ out+40(FP), R8; \
	LEAQ (DI)(DX*2), R14

// Packed Q3_K and Q6_K (16 sub-blocks of 16), against prepared activations whose offset terms
// c_j (int32, negated) are at 260+4j and scale (float32) at 256: sub-block j's sum acc of the
// column at base, plus c_j, times Z8 (the 16 rows' scales j), added to tot.
#define PACKED_SC(j, base, acc, tot) \
	VPADDD.BCST 260+4*(j) base, acc, acc; \
	VPMULLD     Z8, acc, acc; \
	VPADDD      acc, tot, tot

// The super-block total tot of the column at base into its float sum acc: acc += float(tot) ·
// (d·yd), with Z8 = the rows' d (VCVTPH2PS'd) and Z6 scratch.
#define PACKED_FMA(base, tot, acc) \
	VCVTDQ2PS   tot, tot; \
	VMULPS.BCST 256 base, Z8, Z6; \
	VFMADD231PS Z6, tot, acc

// PACKED_FMA for column c of a four-column kernel whose float sums are in its frame (64 bytes
// a column; Z0 holds the sum meanwhile). In the header because vet would check the frame
// offsets of a macro against the function above it in a file.
#define PACKED_FMA4(c, base, tot) \
	VMOVUPS c*64(SP), Z0; \
	PACKED_FMA(base, tot, Z0); \
	VMOVUPS Z0, c*64(SP)

// The float sums of such a four-column kernel: zeroed (Z0 too), and stored as its results.
#define PACKED_FRAME4_ZERO \
	VPXORD  Z0, Z0, Z0; \
	VMOVUPS Z0, 0(SP); \
	VMOVUPS Z0, 64(SP); \
	VMOVUPS Z0, 128(SP); \
	VMOVUPS Z0, 192(SP)

#define PACKED_FRAME4_STORE \
	VMOVUPS 0(SP), Z1; \
	VMOVUPS 64(SP), Z2; \
	VMOVUPS 128(SP), Z3; \
	VMOVUPS 192(SP), Z4; \
	PACKED_STORE4(Z1, Z2, Z3, Z4)

// Packed Q2_K and Q3_K, one column: the dot of field j (quants in Z5) with the activations at
// yoff(DI), into Z10+j.
#define PK16_D1_0(yoff) VPDPBUSD.BCST yoff(DI), Z5, Z10
#define PK16_D1_1(yoff) VPDPBUSD.BCST yoff(DI), Z5, Z11
#define PK16_D1_2(yoff) VPDPBUSD.BCST yoff(DI), Z5, Z12
#define PK16_D1_3(yoff) VPDPBUSD.BCST yoff(DI), Z5, Z13

// The same for four columns, activations at (DI), (DI)(DX*1), (R14), (R14)(DX*1): field j's
// dots into column c's Z9+5c+j (their super-block totals in Z13, Z18, Z23, Z7, as the Q6_K
// kernels').
#define PK16_D4(yoff, a0, a1, a2, a3) \
	VPDPBUSD.BCST yoff(DI), Z5, a0; \
	VPDPBUSD.BCST yoff(DI)(DX*1), Z5, a1; \
	VPDPBUSD.BCST yoff(R14), Z5, a2; \
	VPDPBUSD.BCST yoff(R14)(DX*1), Z5, a3
#define PK16_D4_0(yoff) PK16_D4(yoff, Z9, Z14, Z19, Z24)
#define PK16_D4_1(yoff) PK16_D4(yoff, Z10, Z15, Z20, Z25)
#define PK16_D4_2(yoff) PK16_D4(yoff, Z11, Z16, Z21, Z26)
#define PK16_D4_3(yoff) PK16_D4(yoff, Z12, Z17, Z22, Z27)

// Packed Q2_K and Q3_K: field 0 of the quant bytes in Z1 (bits 0-1 of each byte) into Z5, and
// field k/2 (k = 2, 4, 6); Z31 = 0x03 in every byte.
#define PK16_W0 VPANDD Z31, Z1, Z5
#define PK16_WK(k) \
	VPSRLW k, Z1, Z5; \
	VPANDD Z31, Z5, Z5

// The packed kernels of the 32-element types (Q4_0, Q5_0, Q8_0) share their loops; a type
// brings its constants (masks, beside the nibble masks), its groups' shape (hdr),
// block unpacking (block), column (col), block advance (next), and, for the many-column
// kernels, prefetches per block (pf) and per group (pfg).
// An empty argument of the macros below.
#define EMPTY

// Panels hold their blocks in groups of eight (legacyOffsets): each group's scales, then its
// blocks' quants, so that a panel streams as one run in the order it is read. Panel start in
// R9: SI = its first group, CX = nb.
#define LEGACY_PANEL \
	MOVQ R9, SI; \
	MOVQ nb+24(FP), CX

// A group of blocks at SI: shape sets AX = its blocks, takes them off CX, sets R11 = its scales
// (at SI) and R12 = their size; then SI = its first block's quants.
#define LEGACY_GROUP(shape) \
	shape; \
	ADDQ R12, SI

// Eight blocks (or the panel's last ones) with 32 bytes of scales each, rounded up to a cache
// line (Q4_0, Q5_0, Q8_0).
#define LEGACY_GROUP8 \
	MOVQ    $8, AX; \
	CMPQ    CX, $8; \
	CMOVQLT CX, AX; \
	SUBQ    AX, CX; \
	MOVQ    SI, R11; \
	LEAQ    1(AX), R12; \
	SHRQ    $1, R12; \
	SHLQ    $6, R12

// One block with its 64 bytes of scales (Q4_1, Q5_1: d's and m's, a cache line).
#define LEGACY_GROUP1 \
	MOVQ $1, AX; \
	DECQ CX; \
	MOVQ SI, R11; \
	MOVQ $64, R12

// The block loop of a group: its start (the group's prefetches pfg, then per block the
// prefetches pf and the block's unpacking), and its end (on to the next block, then the next
// group while blocks remain; SI is past the group's blocks).
#define LEGACY_BLOCKS_START(hdr, pfg, pf, block, glab, blab) \
glab: \
	LEGACY_GROUP(hdr); \
	pfg; \
blab: \
	pf; \
	block

#define LEGACY_BLOCKS_END(glab, blab) \
	DECQ  AX; \
	JNZ   blab; \
	TESTQ CX, CX; \
	JNZ   glab

// func dotPacked…VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)
// pf and pfg prefetch as in PACKED_DOT4: one core streaming from memory with only the hardware
// prefetcher reads well below what it reads from its caches (packed Q4_0, 256 MiB, one thread
// on Zen 4: 21-25 GB/s without, 28-36 GB/s with).
#define PACKED_DOT1(masks, hdr, pf, pfg, block, col, next, plab, glab, blab) \
	PACKED_ARGS1; \
	PACKED_NIBBLE_MASKS; \
	masks; \
plab: \
	LEGACY_PANEL; \
	MOVQ   y+32(FP), DI; \
	VPXORD Z0, Z0, Z0; \
	LEGACY_BLOCKS_START(hdr, pfg, pf, block, glab, blab); \
	col((DI), Z0); \
	next; \
	ADDQ $40, DI; \
	LEGACY_BLOCKS_END(glab, blab); \
	VMOVUPS Z0, (R8); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// func dotPacked…VNNIRuns2(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)
// PACKED_DOT1 over two runs of panels in step (packedDot1Runs2): each block of a panel into
// Z0, then the same block of the panel dist (R13) bytes on into Z23, which no one-column
// kernel's block or col uses; pf and pfg prefetch for both runs.
#define PACKED_RUNS2(masks, hdr, pf, pfg, block, col, next, plab, glab, blab) \
	RUNS2_ARGS(EMPTY); \
	PACKED_NIBBLE_MASKS; \
	masks; \
plab: \
	LEGACY_PANEL; \
	MOVQ   y+32(FP), DI; \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z23, Z23, Z23; \
	LEGACY_BLOCKS_START(hdr, pfg; RUNS2_TWIN(pfg), pf; RUNS2_TWIN(pf), block, glab, blab); \
	col((DI), Z0); \
	RUNS2_TWIN(block; col((DI), Z23)); \
	next; \
	ADDQ $40, DI; \
	LEGACY_BLOCKS_END(glab, blab); \
	VMOVUPS Z0, (R8); \
	VMOVUPS Z23, (R14); \
	RUNS2_NEXT_PANEL(plab)

// func dotPacked…x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// Four prepared activation rows ystride bytes apart; column c's results at out + c·ostride
// bytes. Each column's arithmetic is that of the one-column kernel.
#define PACKED_DOT4(masks, hdr, pf, pfg, block, col, next, plab, glab, blab) \
	PACKED_COLS_ARGS; \
	masks; \
plab: \
	LEGACY_PANEL; \
	MOVQ   y+32(FP), DI; \
	LEAQ   (DI)(DX*2), R14; \
	ZERO_Z4(Z0, Z5, Z6, Z7); \
	LEGACY_BLOCKS_START(hdr, pfg, pf, block, glab, blab); \
	col((DI), Z0); \
	col((DI)(DX*1), Z5); \
	col((R14), Z6); \
	col((R14)(DX*1), Z7); \
	next; \
	ADDQ $40, DI; \
	ADDQ $40, R14; \
	LEGACY_BLOCKS_END(glab, blab); \
	PACKED_STORE4(Z0, Z5, Z6, Z7); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// func dotPacked…x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// PACKED_DOT4 for eight prepared activation rows: at (DI), (DI)(DX*1), (DI)(DX*2), (R13),
// (R13)(DX*1), (R13)(DX*2), (R14), (R14)(DX*1) (R13 = DI + 3·DX, R14 = DI + 6·DX).
#define PACKED_DOT8(masks, hdr, pf, pfg, block, col, next, plab, glab, blab) \
	PACKED_COLS_ARGS; \
	masks; \
plab: \
	LEGACY_PANEL; \
	PACKED_COLS8_ROWS(R13, R14); \
	ZERO_Z4(Z0, Z5, Z6, Z7); \
	ZERO_Z4(Z16, Z17, Z18, Z19); \
	LEGACY_BLOCKS_START(hdr, pfg, pf, block, glab, blab); \
	col((DI), Z0); \
	col((DI)(DX*1), Z5); \
	col((DI)(DX*2), Z6); \
	col((R13), Z7); \
	col((R13)(DX*1), Z16); \
	col((R13)(DX*2), Z17); \
	col((R14), Z18); \
	col((R14)(DX*1), Z19); \
	next; \
	ADDQ $40, DI; \
	ADDQ $40, R13; \
	ADDQ $40, R14; \
	LEGACY_BLOCKS_END(glab, blab); \
	PACKED_STORE8(Z0, Z5, Z6, Z7, Z16, Z17, Z18, Z19); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// AVX2 kernels of the packed types, for CPUs without AVX-512 (packed*_amd64.s): the same
// panels, eight rows to a 256-bit register (rows 0-7 in the first half of each 64-byte line,
// rows 8-15 in the second). VPMADDUBSW and VPMADDWD take VPDPBUSD's place: the first multiplies
// the unsigned weight bytes by the signed activation bytes and adds pairs into int16 lanes, the
// second (by words of 1, or by the rows' scales) adds those pairs into the int32 lanes VPDPBUSD
// fills. The int16 sums saturate above 32767, so the weights go in as values too small to reach
// it before they are widened: nibbles, 16 products of at most 15·128 = 30720 a lane (Q8_0's
// bytes as two nibble sums), 5-bit quants four groups at a time, 6-bit ones one product vector
// at a time. The integer sums are exact, so every result equals the VNNI kernels' and the Go
// twin's. The kernels of the 32-element types (PACKEDA_*) walk the panels' groups of blocks;
// the K-quants' (PAK_*, PA_SB_*) their super-blocks.
//
// PA_CONSTS: Y15 = 0x0f bytes, Y14 = words of 1.
#define PA_CONSTS \
	MOVL         $0x0f0f0f0f, AX; \
	VMOVD        AX, X15; \
	VPBROADCASTD X15, Y15; \
	VPCMPEQW     Y14, Y14, Y14; \
	VPSRLW       $15, Y14, Y14

// One column: the 32 weight bytes at off(SI) (eight rows' group of four quant bytes), their
// low nibbles times the broadcast activation quants ylo and their high nibbles times yhi,
// added to the int16 sums lsum and hsum (Y1, Y2 scratch; Y15 = 0x0f bytes).
#define PA_NIBBLES_DOT(off, ylo, yhi, lsum, hsum) \
	VMOVDQU    off(SI), Y1; \
	VPAND      Y15, Y1, Y2; \
	VPSRLW     $4, Y1, Y1; \
	VPAND      Y15, Y1, Y1; \
	VPMADDUBSW ylo, Y2, Y2; \
	VPMADDUBSW yhi, Y1, Y1; \
	VPADDW     Y2, lsum, lsum; \
	VPADDW     Y1, hsum, hsum

// The 5-bit types (Q5_0, Q5_K): the fifth bit at bit b of each byte of the vector m, brought
// to bit 4 of r, alone (mask: 0x10 bytes): the callers name the shift from b to 4. The word
// shifts carry bits across bytes only where the mask drops them.
#define PB5_SHL4(m, r, mask) VPSLLW $4, m, r; VPAND mask, r, r
#define PB5_SHL3(m, r, mask) VPSLLW $3, m, r; VPAND mask, r, r
#define PB5_SHL2(m, r, mask) VPSLLW $2, m, r; VPAND mask, r, r
#define PB5_SHL1(m, r, mask) VPSLLW $1, m, r; VPAND mask, r, r
#define PB5_AS_IS(m, r, mask) VPAND mask, m, r
#define PB5_SHR1(m, r, mask) VPSRLW $1, m, r; VPAND mask, r, r
#define PB5_SHR2(m, r, mask) VPSRLW $2, m, r; VPAND mask, r, r
#define PB5_SHR3(m, r, mask) VPSRLW $3, m, r; VPAND mask, r, r

// Y15 = 0x0f bytes, Y14 = 0x10 bytes.
#define PA5_CONSTS \
	MOVL         $0x0f0f0f0f, AX; \
	VMOVD        AX, X15; \
	VPBROADCASTD X15, Y15; \
	MOVL         $0x10101010, AX; \
	VMOVD        AX, X14; \
	VPBROADCASTD X14, Y14

// One column: the 32 quant bytes at quants and their fifth bits at bits (lb and hb bring a
// low and a high element's to bit 4): the 5-bit quants of the low elements times ylo and of
// the high ones times yhi, added to the int16 sums lsum and hsum (Y1, Y2, Y4, Y5 scratch;
// Y15 = 0x0f bytes, Y14 = 0x10 bytes).
#define PA5_NIBBLES_DOT(quants, bits, lb, hb, ylo, yhi, lsum, hsum) \
	VMOVDQU    quants, Y1; \
	VMOVDQU    bits, Y5; \
	VPAND      Y15, Y1, Y2; \
	lb(Y5, Y4, Y14); \
	VPOR       Y4, Y2, Y2; \
	VPSRLW     $4, Y1, Y1; \
	VPAND      Y15, Y1, Y1; \
	hb(Y5, Y4, Y14); \
	VPOR       Y4, Y1, Y1; \
	VPMADDUBSW ylo, Y2, Y2; \
	VPMADDUBSW yhi, Y1, Y1; \
	VPADDW     Y2, lsum, lsum; \
	VPADDW     Y1, hsum, hsum

// Four columns: the 5-bit quants of a group (quant bytes at qoff(SI), fifth bits at bits)
// into Y12 (low elements) and Y13 (high), Y14 and Y15 scratch, the masks from memory; lb runs
// before hb.
#define PA5_QUANTS4(qoff, bits, lb, hb) \
	VMOVDQU qoff(SI), Y13; \
	VMOVDQU bits, Y14; \
	VPAND   ·paNibbles(SB), Y13, Y12; \
	lb(Y14, Y15, ·paFifth(SB)); \
	VPOR    Y15, Y12, Y12; \
	VPSRLW  $4, Y13, Y13; \
	VPAND   ·paNibbles(SB), Y13, Y13; \
	hb(Y14, Y15, ·paFifth(SB)); \
	VPOR    Y15, Y13, Y13

// func dotPacked…AVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)
// One column: block adds a block of both halves of the panel to Y0 (rows 0-7) and Y3 (rows
// 8-15), DI = its prepared activations.
#define PACKEDA_DOT1(consts, hdr, pf, pfg, block, next, plab, glab, blab) \
	PACKED_ARGS1; \
	consts; \
plab: \
	LEGACY_PANEL; \
	MOVQ   y+32(FP), DI; \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y3, Y3, Y3; \
	LEGACY_BLOCKS_START(hdr, pfg, pf, block, glab, blab); \
	next; \
	ADDQ $40, DI; \
	LEGACY_BLOCKS_END(glab, blab); \
	VMOVUPS Y0, (R8); \
	VMOVUPS Y3, 32(R8); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// One column over two runs of panels in step (func (w *byte, stride int, panels int, nb int,
// y *byte, out *float32, dist int, out2 *float32)): panel p at w + p·stride and its twin dist
// bytes on, block by block, the twin's results at out2. Each block of the twin is the same
// block macro run with SI and R11 moved on by dist (R13) into the sums b0 and b1, so every
// result is the one-run kernel's bits. A core that streams one run of memory slower than
// two (hardware prefetchers per stream) reads both at once; no software prefetches.
#define PACKEDA_RUNS2(consts, hdr, blockA, blockB, b0, b1, next, plab, glab, blab) \
	RUNS2_ARGS(consts); \
plab: \
	LEGACY_PANEL; \
	MOVQ   y+32(FP), DI; \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y3, Y3, Y3; \
	VXORPS b0, b0, b0; \
	VXORPS b1, b1, b1; \
	LEGACY_BLOCKS_START(hdr, EMPTY, EMPTY, blockA, glab, blab); \
	RUNS2_TWIN(blockB); \
	next; \
	ADDQ $40, DI; \
	LEGACY_BLOCKS_END(glab, blab); \
	VMOVUPS Y0, (R8); \
	VMOVUPS Y3, 32(R8); \
	VMOVUPS b0, (R14); \
	VMOVUPS b1, 32(R14); \
	RUNS2_NEXT_PANEL(plab)

// The two-run kernels' arguments beside PACKED_ARGS1's: R13 = dist, R14 = out2.
#define RUNS2_ARGS(consts) \
	PACKED_ARGS1; \
	consts; \
	MOVQ dist+48(FP), R13; \
	MOVQ out2+56(FP), R14

// On to the next panel of both runs (back to plab), or return.
#define RUNS2_NEXT_PANEL(plab) \
	ADDQ $64, R14; \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// block on the twin panel: the block's quants (SI) and scales (R11) dist (R13) on.
#define RUNS2_TWIN(block) \
	ADDQ R13, SI; \
	ADDQ R13, R11; \
	block; \
	SUBQ R13, SI; \
	SUBQ R13, R11

// One half h of the panel at a time (the registers hold the columns' sums for eight rows, not
// sixteen; the second pass reads the panel from the cache): start sets up the columns'
// activation pointers and zeroes their float sums, block adds a block of half h to those,
// advance moves the activation pointers on by a block, store(h) writes the sums.
#define PACKEDA_HALF_WITH(start, advance, store, hdr, pf, pfg, block, next, h, glab, blab) \
	LEGACY_PANEL; \
	MOVQ   y+32(FP), DI; \
	start; \
	LEGACY_BLOCKS_START(hdr, pfg, pf, block, glab, blab); \
	next; \
	advance; \
	LEGACY_BLOCKS_END(glab, blab); \
	store(h)

// Four columns: block adds to Y0-Y3, the columns' activations at (DI), (DI)(DX*1), (R14),
// (R14)(DX*1).
#define PA4_START \
	LEAQ   (DI)(DX*2), R14; \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3

#define PA4_ADVANCE \
	ADDQ $40, DI; \
	ADDQ $40, R14

#define PA4_STORE(h) \
	LEAQ    (R8)(BX*2), R12; \
	VMOVUPS Y0, 32*h(R8); \
	VMOVUPS Y1, 32*h(R8)(BX*1); \
	VMOVUPS Y2, 32*h(R12); \
	VMOVUPS Y3, 32*h(R12)(BX*1)

#define PACKEDA_HALF4(hdr, pf, pfg, block, next, h, glab, blab) PACKEDA_HALF_WITH(PA4_START, PA4_ADVANCE, PA4_STORE, hdr, pf, pfg, block, next, h, glab, blab)

// Eight columns: column c's activations at DI + c·DX, as EACH8 names them (R14 = DI + 3·DX,
// R15 = DI + 6·DX); block adds to the float sums in the frame, column c's at 32c(SP).
#define PA8C_START \
	LEAQ    (DX)(DX*2), R15; \
	LEAQ    (DI)(R15*1), R14; \
	LEAQ    (R14)(R15*1), R15; \
	VXORPS  Y0, Y0, Y0; \
	FRAME_ZERO8(Y0, 32)

#define PA8C_ADVANCE \
	ADDQ $40, DI; \
	ADDQ $40, R14; \
	ADDQ $40, R15

// The frame's sum of column c to its results of half h (R8 + c·BX + 32h), through Y0.
#define PA8C_STORE1(c, dst) \
	VMOVUPS c*32(SP), Y0; \
	VMOVUPS Y0, dst

#define PA8C_STORE(h) \
	LEAQ        (R8)(BX*2), R12; \
	PA8C_STORE1(0, 32*h(R8)); \
	PA8C_STORE1(1, 32*h(R8)(BX*1)); \
	PA8C_STORE1(2, 32*h(R12)); \
	PA8C_STORE1(3, 32*h(R12)(BX*1)); \
	PA8C_STORE1(4, 32*h(R8)(BX*4)); \
	LEAQ        (R12)(BX*2), R12; \
	PA8C_STORE1(5, 32*h(R12)(BX*1)); \
	PA8C_STORE1(6, 32*h(R12)(BX*2)); \
	LEAQ        (R12)(BX*2), R12; \
	PA8C_STORE1(7, 32*h(R12)(BX*1))

#define PACKEDA_HALF8(hdr, pf, pfg, block, next, h, glab, blab) PACKEDA_HALF_WITH(PA8C_START, PA8C_ADVANCE, PA8C_STORE, hdr, pf, pfg, block, next, h, glab, blab)

// m(x, base, c, acc) for each of the eight columns: its activations at base, its frame slot
// c, its register acc (Y0-Y7).
#define EACH8(m, x) \
	m(x, (DI), 0, Y0); \
	m(x, (DI)(DX*1), 1, Y1); \
	m(x, (DI)(DX*2), 2, Y2); \
	m(x, (R14), 3, Y3); \
	m(x, (R14)(DX*1), 4, Y4); \
	m(x, (R14)(DX*2), 5, Y5); \
	m(x, (R15), 6, Y6); \
	m(x, (R15)(DX*1), 7, Y7)

// The next panel's copy of the n lines at (ptr), into the level-2 cache (PACKEDA_DOT4's pf1,
// pfg1).
#define PA_PF_NEXT4(ptr) \
	PREFETCHT1 (ptr)(R13*1); \
	PREFETCHT1 64(ptr)(R13*1); \
	PREFETCHT1 128(ptr)(R13*1); \
	PREFETCHT1 192(ptr)(R13*1)

#define PA_PF_NEXT8(ptr) \
	PA_PF_NEXT4(ptr); \
	PREFETCHT1 256(ptr)(R13*1); \
	PREFETCHT1 320(ptr)(R13*1); \
	PREFETCHT1 384(ptr)(R13*1); \
	PREFETCHT1 448(ptr)(R13*1)

// The four columns' finish m(base, ...) of a block, with each column's sums of low (Y4-Y7)
// and high (Y8-Y11) elements and its float sum (Y0-Y3).
#define PA_EACH4_LH(m) \
	m((DI), Y4, Y8, Y0); \
	m((DI)(DX*1), Y5, Y9, Y1); \
	m((R14), Y6, Y10, Y2); \
	m((R14)(DX*1), Y7, Y11, Y3)

// func dotPacked…x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// consts sets up what the blocks keep in registers (PA_CONSTS, or nothing where the blocks need
// all sixteen); block(h) is a block of half h.
// pf1 and pfg1 are the second half's prefetches: that half reads the panel from the caches,
// so they may fetch the next one (R13 = the panel stride; PA_PF8_NEXT) to keep memory
// streaming through it, or repeat pf and pfg.
#define PACKEDA_DOT4(consts, hdr, pf, pfg, pf1, pfg1, block, next, plab, g0, b0, g1, b1) PACKEDA_DOT_HALVES(PACKEDA_HALF4, consts, hdr, pf, pfg, pf1, pfg1, block, next, plab, g0, b0, g1, b1)

// PACKEDA_DOT4 for eight columns (PACKEDA_HALF8): func dotPacked…x8AVX2, the same arguments.
#define PACKEDA_DOT8(consts, hdr, pf, pfg, pf1, pfg1, block, next, plab, g0, b0, g1, b1) PACKEDA_DOT_HALVES(PACKEDA_HALF8, consts, hdr, pf, pfg, pf1, pfg1, block, next, plab, g0, b0, g1, b1)

#define PACKEDA_DOT_HALVES(half, consts, hdr, pf, pfg, pf1, pfg1, block, next, plab, g0, b0, g1, b1) \
	PACKED_ARGS4; \
	consts; \
	MOVQ stride+8(FP), R13; \
plab: \
	half(hdr, pf, pfg, block(0), next, 0, g0, b0); \
	half(hdr, pf1, pfg1, block(1), next, 1, g1, b1); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// AVX-VNNI kernels of packed weights, four columns (packed_amd64.s, packedq2k_amd64.s to
// packedq8_amd64.s), for CPUs that have VPDPBUSD and VPDPWSSD on 256-bit registers without
// AVX-512 (Intel since Alder Lake, including the Alder Lake-N parts of small servers, and its
// E-core Xeons): the AVX2 kernels' panels and drivers, with one VPDPBUSD where those take
// VPMADDUBSW, VPADDW and, once a block, VPMADDWD by words of 1 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q4_K, Q5_K), or one VPDPWSSD for VPMADDWD by the scales and VPADDD (Q2_K, Q3_K, Q6_K:
// PV_COLS4). The Go assembler encodes these only as AVX-512 (EVEX), which such CPUs cannot
// run, so the VEX forms are written out in bytes (VNNI_VEX). The integer sums are exact and the
// float steps those of the AVX2 kernels, so every result is theirs and the Go twin's bit for
// bit.
//
// Q4_0, Q4_1 and Q8_0 take both halves of the panel at once (PV_DOT4), where the AVX2 kernels
// take one half a pass: each broadcast activation word then serves two VPDPBUSD (rows 0-7 and
// 8-15) rather than one, as the loads bound them otherwise (the broadcasts and the weights are
// loads; Zen 5 does two VPDPBUSD a cycle; Q4_0 on one half a pass ran 0.9x of this from the
// level-2 cache). Each column's integer sums of half 0 in Y0-Y3 and of half 1 in Y4-Y7; the
// float sums in the frame (half 0's four columns at 0-96(SP), half 1's at 128-224(SP)).

// An AVX-VNNI instruction (opcode op of map 0F38, prefix 66, 256 bits) on ymm(rm), ymm(v) and
// ymm(d) in its VEX form; the arguments are register numbers.
#define VNNI_VEX(op, rm, v, d) \
	BYTE $0xC4; \
	BYTE $(0xE2 ^ (((d)>>3)<<7) ^ (((rm)>>3)<<5)); \
	BYTE $(((15-(v))<<3) | 0x05); \
	BYTE $op; \
	BYTE $(0xC0 | (((d)&7)<<3) | ((rm)&7))

// VPDPBUSD ymm(rm), ymm(v), ymm(d): d += the products of the unsigned bytes of v with the signed
// bytes of rm, four to each int32 lane.
#define VPDPBUSD_VEX(rm, v, d) VNNI_VEX(0x50, rm, v, d)

// VPDPWSSD ymm(rm), ymm(v), ymm(d): d += the products of the signed words of v and rm, two to
// each int32 lane (VPMADDWD and VPADDD in one).
#define VPDPWSSD_VEX(rm, v, d) VNNI_VEX(0x52, rm, v, d)

// Both halves' weights in Y8, Y9 (rows 0-7) and Y10, Y11 (rows 8-15): the column at base,
// four activation quants at a meeting Y8 and Y10 and four at b meeting Y9 and Y11, into its
// sums s0 (rows 0-7) and s1 (rows 8-15), register numbers; Y12, Y13 scratch.
#define PV_COL2(a, b, base, s0, s1) \
	VPBROADCASTD a base, Y12; \
	VPDPBUSD_VEX(12, 8, s0); \
	VPDPBUSD_VEX(12, 10, s1); \
	VPBROADCASTD b base, Y13; \
	VPDPBUSD_VEX(13, 9, s0); \
	VPDPBUSD_VEX(13, 11, s1)

#define PV_COLS2(a, b) COLS4_WITH(PV_COL2, a, b, 0, 1, 2, 3, 4, 5, 6, 7)

// Every column's sums (both halves) start at the block's offset term (at 36).
#define PV_START4 \
	VPBROADCASTD 36(DI), Y0; \
	VPBROADCASTD 36(DI)(DX*1), Y1; \
	VPBROADCASTD 36(R14), Y2; \
	VPBROADCASTD 36(R14)(DX*1), Y3; \
	VMOVDQU      Y0, Y4; \
	VMOVDQU      Y1, Y5; \
	VMOVDQU      Y2, Y6; \
	VMOVDQU      Y3, Y7

// The column at base (frame slot c, integer sums s0 and s1 of the halves): each half's sum
// converted and added to its float sum in the frame by fin(s, d, acc), d = the half's rows' dx
// (Y8, Y9) times yd, then mterm(base, m, acc) with the half's rows' m (Y10, Y11; Q4_1's);
// Y12-Y14 scratch.
#define PV_COL_FINISH(fin, mterm, base, c, s0, s1) \
	VBROADCASTSS 32 base, Y12; \
	VMULPS       Y12, Y8, Y13; \
	VCVTDQ2PS    s0, s0; \
	VMOVUPS      c*32(SP), Y14; \
	fin(s0, Y13, Y14); \
	mterm(base, Y10, Y14); \
	VMOVUPS      Y14, c*32(SP); \
	VMULPS       Y12, Y9, Y13; \
	VCVTDQ2PS    s1, s1; \
	VMOVUPS      128+c*32(SP), Y14; \
	fin(s1, Y13, Y14); \
	mterm(base, Y11, Y14); \
	VMOVUPS      Y14, 128+c*32(SP)

// A block's end: the rows' dx (fp16 at R11) and every column's finish.
#define PV_FINISH4(fin, mterm) \
	VCVTPH2PS (R11), Y8; \
	VCVTPH2PS 16(R11), Y9; \
	PV_COL_FINISH(fin, mterm, (DI), 0, Y0, Y4); \
	PV_COL_FINISH(fin, mterm, (DI)(DX*1), 1, Y1, Y5); \
	PV_COL_FINISH(fin, mterm, (R14), 2, Y2, Y6); \
	PV_COL_FINISH(fin, mterm, (R14)(DX*1), 3, Y3, Y7)

// The finishes: acc += s·d as one FMA (Q4_0, Q4_1) or as a product and a sum (Q8_0); Q4_1's
// acc += m·sy (its activation sum term, float32 at 36), the others' nothing.
#define PV_FMA(s, d, acc) VFMADD231PS d, s, acc
#define PV_MULADD(s, d, acc) \
	VMULPS d, s, s; \
	VADDPS s, acc, acc
#define PV_M_SY(base, m, acc) \
	VBROADCASTSS 36 base, Y13; \
	VFMADD231PS  Y13, m, acc
#define PV_NO_M(base, m, acc)

// The frame zeroed: half 0's slots as the AVX2 K-quant kernels' (PA_FRAME4_ZERO), then half 1's.
#define PV_FRAME_ZERO \
	PA_FRAME4_ZERO; \
	VMOVUPS Y12, 128(SP); \
	VMOVUPS Y12, 160(SP); \
	VMOVUPS Y12, 192(SP); \
	VMOVUPS Y12, 224(SP)

// The frame's sums to the panel's results (column c's at R8 + c·BX, half h at 32h).
#define PV_FRAME_STORE \
	LEAQ    (R8)(BX*2), R12; \
	VMOVUPS 0(SP), Y12; \
	VMOVUPS Y12, (R8); \
	VMOVUPS 128(SP), Y12; \
	VMOVUPS Y12, 32(R8); \
	VMOVUPS 32(SP), Y12; \
	VMOVUPS Y12, (R8)(BX*1); \
	VMOVUPS 160(SP), Y12; \
	VMOVUPS Y12, 32(R8)(BX*1); \
	VMOVUPS 64(SP), Y12; \
	VMOVUPS Y12, (R12); \
	VMOVUPS 192(SP), Y12; \
	VMOVUPS Y12, 32(R12); \
	VMOVUPS 96(SP), Y12; \
	VMOVUPS Y12, (R12)(BX*1); \
	VMOVUPS 224(SP), Y12; \
	VMOVUPS Y12, 32(R12)(BX*1)

// func dotPacked…x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// with a 256-byte frame; block: a block of both halves into the frame.
#define PV_DOT4(consts, hdr, pf, pfg, block, next, plab, glab, blab) \
	PACKED_ARGS4; \
	consts; \
plab: \
	LEGACY_PANEL; \
	MOVQ y+32(FP), DI; \
	LEAQ (DI)(DX*2), R14; \
	PV_FRAME_ZERO; \
	LEGACY_BLOCKS_START(hdr, pfg, pf, block, glab, blab); \
	next; \
	ADDQ $40, DI; \
	ADDQ $40, R14; \
	LEGACY_BLOCKS_END(glab, blab); \
	PV_FRAME_STORE; \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// Y15 = 0x0f bytes.
#define PV_NIBBLES VMOVDQU ·paNibbles(SB), Y15

// AVX2 four-column kernels of the packed K-quants, whose registers all hold integer sums: the
// float sums of the four columns in the frame (32 bytes a column). In the header because vet
// would check the frame offsets of a macro against the function above it in a file.
#define PA_FRAME4_ZERO \
	VXORPS  Y12, Y12, Y12; \
	VMOVUPS Y12, 0(SP); \
	VMOVUPS Y12, 32(SP); \
	VMOVUPS Y12, 64(SP); \
	VMOVUPS Y12, 96(SP)

// The frame's sums to the results of half h (column c's at R8 + c·BX).
#define PA_FRAME4_STORE(h) \
	LEAQ    (R8)(BX*2), R12; \
	VMOVUPS 0(SP), Y12; \
	VMOVUPS Y12, 32*h(R8); \
	VMOVUPS 32(SP), Y12; \
	VMOVUPS Y12, 32*h(R8)(BX*1); \
	VMOVUPS 64(SP), Y12; \
	VMOVUPS Y12, 32*h(R12); \
	VMOVUPS 96(SP), Y12; \
	VMOVUPS Y12, 32*h(R12)(BX*1)

// Column c's half-h super-block total (integer sums sumi, activations at base) into its
// float sum in the frame, through a type's finish macro (PA4K_FINISH's arguments; Y15 holds
// the float sum meanwhile, Y14 = yd, Y8, Y12, Y13 scratch).
#define PA_FRAME4_FINISH(finish, h, c, base, sumi) \
	VMOVUPS      c*32(SP), Y15; \
	VBROADCASTSS 256 base, Y14; \
	finish(h, base, sumi, Y15, Y14, Y8, Y12, Y13); \
	VMOVUPS      Y15, c*32(SP)

// PA_FRAME4_FMA for the K-quants with mins: acc += float(sumi)·(d·yd) - float(mins)·(dmin·yd),
// d and dmin (fp16, eight rows) at doff(SI) and moff(SI); Y13-Y15 scratch.
#define PA_FRAME4_FMA2(c, base, sumi, mins, doff, moff) \
	VMOVUPS      c*32(SP), Y15; \
	VBROADCASTSS 256 base, Y14; \
	VCVTPH2PS    doff(SI), Y13; \
	VMULPS       Y14, Y13, Y13; \
	VCVTDQ2PS    sumi, sumi; \
	VFMADD231PS  Y13, sumi, Y15; \
	VCVTPH2PS    moff(SI), Y13; \
	VMULPS       Y14, Y13, Y13; \
	VCVTDQ2PS    mins, mins; \
	VFNMADD231PS Y13, mins, Y15; \
	VMOVUPS      Y15, c*32(SP)

// Column c's half-block total sumi (integer) into its float sum in the frame: one FMA by the
// rows' d (converted, in d) times yd (at 256 base); Y14, Y15 scratch.
#define PA_FRAME4_FMA(c, base, sumi, d) \
	VMOVUPS      c*32(SP), Y15; \
	VBROADCASTSS 256 base, Y14; \
	VMULPS       Y14, d, Y14; \
	VCVTDQ2PS    sumi, sumi; \
	VFMADD231PS  Y14, sumi, Y15; \
	VMOVUPS      Y15, c*32(SP)

// AVX2 kernels of the packed K-quants with 6-bit scales and mins (Q4_K, Q5_K; see PA_CONSTS),
// their scales of chunk j at tail+32j, mins, d and dmin from tail+128 on (kScales): eight rows
// to a register, each half of the panel's rows (h: rows 8h..8h+7, the second 32 bytes of each
// line of quants, the second eight bytes of each run of scales, the second 16 of mins, d and
// dmin). A sub-block's int16 sums are widened and scaled at once by one VPMADDWD with the rows'
// scales, each set in both words of its row's lane (PAK_SCALES_AT); the mins term is VPMADDWD of
// the rows' mins (as words) with the sub-block sums, as PK_MINS; the super-block ends in
// PK_FMAS's two FMAs.

// The eight scale bytes at off(base), each in both words of its row's lane.
#define PAK_SCALES_AT(off, base, reg) \
	VPBROADCASTQ off base, reg; \
	VPSHUFB      ·pakScaleWords(SB), reg, reg

// One column: the int16 sums sum of a sub-block whose eight scale bytes (a half's rows) are at
// off(base), scaled and widened, added to sumi (Y4 scratch).
#define PAK_ADD_AT(off, base, sum, sumi) \
	PAK_SCALES_AT(off, base, Y4); \
	VPMADDWD Y4, sum, sum; \
	VPADDD   sum, sumi, sumi

// One column: chunk j's int16 sums (Y8, Y9: the low and high sub-block of rows 0-7; Y10, Y11:
// of rows 8-15) into Y12 and Y13.
// PAK_DOT1's super-block: sb, then its two halves' totals by finish into Y0 and Y3.
#define PAK_SB1(sb, finish) \
	VPXOR        Y12, Y12, Y12; \
	VPXOR        Y13, Y13, Y13; \
	sb; \
	VBROADCASTSS 256(DI), Y6; \
	finish(0, (DI), Y12, Y0, Y6, Y8, Y4, Y5); \
	finish(1, (DI), Y13, Y3, Y6, Y8, Y4, Y5)

// The end of a one-column super-block loop: on to the next super-block (back to blab) while
// any remain, then the run's sums (Y0, Y3) to the panel's results.
#define PAK_SB_NEXT(bsize, blab) \
	ADDQ    bsize, SI; \
	ADDQ    $288, DI; \
	DECQ    CX; \
	JNZ     blab; \
	VMOVUPS Y0, (R8); \
	VMOVUPS Y3, 32(R8)

// The registers r0, r1 and the frame's off, off+32 trade places (t0, t1 scratch).
#define PAK_SWAP(off, r0, r1, t0, t1) \
	VMOVUPS off(SP), t0; \
	VMOVUPS off+32(SP), t1; \
	VMOVUPS r0, off(SP); \
	VMOVUPS r1, off+32(SP); \
	VMOVAPS t0, r0; \
	VMOVAPS t1, r1

// PAK_DOT1 over two runs of panels in step (PACKEDA_RUNS2's arguments and reasons): pair
// adds a super-block of each run to its sums, the run's in Y0 and Y3, the twin's in the frame
// at 0 and 32 (every register is in use by a super-block).
#define PAK_RUNS2(consts, pair, bsize, plab, blab) \
	RUNS2_ARGS(consts); \
plab: \
	PACKED_SB_START; \
	VXORPS  Y0, Y0, Y0; \
	VXORPS  Y3, Y3, Y3; \
	VMOVUPS Y0, 0(SP); \
	VMOVUPS Y0, 32(SP); \
blab: \
	pair; \
	PAK_SB_NEXT(bsize, blab); \
	VMOVUPS 0(SP), Y12; \
	VMOVUPS Y12, (R14); \
	VMOVUPS 32(SP), Y12; \
	VMOVUPS Y12, 32(R14); \
	RUNS2_NEXT_PANEL(plab)

#define PAK_ADD1(tail, j) PAK_ADD1_AT(tail+32*j, (SI))

// PAK_ADD1 with the chunk's scales at off(base) (in a chunk loop: 0, (R13); PAK_SB4_LOOP):
// sub-block 2j's rows 0-7 at off, 2j+1's at off+16, rows 8-15 eight bytes on.
#define PAK_ADD1_AT(off, base) \
	PAK_ADD_AT(off, base, Y8, Y12); \
	PAK_ADD_AT(off+16, base, Y9, Y12); \
	PAK_ADD_AT(off+8, base, Y10, Y13); \
	PAK_ADD_AT(off+24, base, Y11, Y13)

// The mins of sub-blocks 2k and 2k+1 of half h (words) times the column's sums of those
// sub-blocks (at base), added to mins; w and t scratch.
#define PAK_MINS(tail, k, h, base, mins, w, t) \
	VPMOVZXBW    tail+128+32*k+16*h(SI), w; \
	VPBROADCASTD 260+4*k base, t; \
	VPMADDWD     t, w, w; \
	VPADDD       w, mins, mins

// Half h's super-block total of the column at base: acc += float(sumi)·(d·yd) -
// float(mins)·(dmin·yd), yd broadcast in yd; mins, d, m scratch.
#define PAK_FINISH(tail, h, base, sumi, acc, yd, mins, d, m) \
	VPXOR        mins, mins, mins; \
	PAK_MINS(tail, 0, h, base, mins, d, m); \
	PAK_MINS(tail, 1, h, base, mins, d, m); \
	PAK_MINS(tail, 2, h, base, mins, d, m); \
	PAK_MINS(tail, 3, h, base, mins, d, m); \
	VCVTPH2PS    tail+256+16*h(SI), d; \
	VMULPS       yd, d, d; \
	VCVTPH2PS    tail+288+16*h(SI), m; \
	VMULPS       yd, m, m; \
	VCVTDQ2PS    sumi, sumi; \
	VFMADD231PS  d, sumi, acc; \
	VCVTDQ2PS    mins, mins; \
	VFNMADD231PS m, mins, acc

// func dotPacked…AVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)
// One column, both halves at once: sb adds a super-block's integer sums to Y12 (rows 0-7) and
// Y13 (rows 8-15); finish (PAK_FINISH's arguments from h) adds them to Y0 and Y3. bsize is
// the super-block's size.
#define PAK_DOT1(consts, sb, finish, bsize, plab, blab) \
	PACKED_ARGS1; \
	consts; \
plab: \
	PACKED_SB_START; \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y3, Y3, Y3; \
blab: \
	PAK_SB1(sb, finish); \
	PAK_SB_NEXT(bsize, blab); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// Four columns, one half at a time (PACKEDA_HALF4's reason): integer sums Y0-Y3, int16 sums
// Y4-Y7 (low sub-block) and Y8-Y11 (high), the float sums in the frame (32 bytes a column),
// every constant from memory. A group's quants in Y12 (low elements) and Y13 (high), their
// activations at lo and hi: the column at base into lsum and hsum (Y14, Y15 scratch).
#define PAK_COL4(lo, hi, base, lsum, hsum) \
	VPBROADCASTD lo base, Y14; \
	VPMADDUBSW   Y14, Y12, Y15; \
	VPADDW       Y15, lsum, lsum; \
	VPBROADCASTD hi base, Y14; \
	VPMADDUBSW   Y14, Y13, Y15; \
	VPADDW       Y15, hsum, hsum

#define PAK_COLS4(lo, hi) COLS4_WITH(PAK_COL4, lo, hi, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11)

// PAK_COL4 of the first group of the sums: they start at its products rather than at zero
// (one group's VPADDW in eight fewer for Q4_K, in four for Q5_K).
#define PAK_COL4_FIRST(lo, hi, base, lsum, hsum) \
	VPBROADCASTD lo base, Y14; \
	VPMADDUBSW   Y14, Y12, lsum; \
	VPBROADCASTD hi base, Y14; \
	VPMADDUBSW   Y14, Y13, hsum

#define PAK_COLS4_FIRST(lo, hi) COLS4_WITH(PAK_COL4_FIRST, lo, hi, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11)

// AVX-VNNI kernels of the K-quants with 6-bit scales and mins (Q4_K, Q5_K; the columns also
// serve Q5_0's and Q5_1's), four columns, one half at a time as the AVX2 ones: each sub-block's
// products summed in int32 by VPDPBUSD and scaled by VPMULLD (as the AVX-512 kernels do), where
// AVX2 sums them in int16 and scales them by VPMADDWD. A group's quants in Y12 (low sub-block)
// and Y13 (high), their activations at lo and hi: the column at base into its sums lsum and
// hsum (register numbers), Y14 scratch.
#define PVK_COL(lo, hi, base, lsum, hsum) \
	VPBROADCASTD lo base, Y14; \
	VPDPBUSD_VEX(14, 12, lsum); \
	VPBROADCASTD hi base, Y14; \
	VPDPBUSD_VEX(14, 13, hsum)

#define PVK_COLS4(lo, hi) COLS4_WITH(PVK_COL, lo, hi, 4, 5, 6, 7, 8, 9, 10, 11)

// The columns' sums of a chunk, each scaled by mul with the rows' scales (Y12, Y13: dwords for
// VPMULLD on the AVX-VNNI kernels' int32 sums, words for VPMADDWD on AVX2's int16 ones) and
// added to its sumi.
#define PK_COLS_ADD4(mul) \
	PK_COL_ADD(mul, Y4, Y8, Y0); \
	PK_COL_ADD(mul, Y5, Y9, Y1); \
	PK_COL_ADD(mul, Y6, Y10, Y2); \
	PK_COL_ADD(mul, Y7, Y11, Y3)

#define PK_COL_ADD(mul, lsum, hsum, sumi) \
	mul    Y12, lsum, lsum; \
	VPADDD lsum, sumi, sumi; \
	mul    Y13, hsum, hsum; \
	VPADDD hsum, sumi, sumi

// Every column's sums of chunk j of half h, scaled, into its sumi (the scales at tail).
#define PVK_ADD4(tail, j, h) \
	VPMOVZXBD tail+32*j+8*h(SI), Y12; \
	VPMOVZXBD tail+16+32*j+8*h(SI), Y13; \
	PK_COLS_ADD4(VPMULLD)

// The four columns' half-h super-block totals (integer sums Y0-Y3) into their float sums in
// the frame, through a type's finish macro (PA_FRAME4_FINISH).
#define PAK_FINISH4(finish, h) \
	PA_FRAME4_FINISH(finish, h, 0, (DI), Y0); \
	PA_FRAME4_FINISH(finish, h, 1, (DI)(DX*1), Y1); \
	PA_FRAME4_FINISH(finish, h, 2, (R14), Y2); \
	PA_FRAME4_FINISH(finish, h, 3, (R14)(DX*1), Y3)

// Half h of a panel in four columns (blab: its super-block loop): body(h) adds a
// super-block's products to the float sums in the frame, starting from the integer sums Y0-Y3
// at zero; bsize and asize are the sizes of a super-block and of its prepared activations.
#define PA_SB_HALF4(body, bsize, asize, h, blab) \
	PACKED_SB_START; \
	LEAQ (DI)(DX*2), R14; \
	PA_FRAME4_ZERO; \
blab: \
	ZERO_Y4(Y0, Y1, Y2, Y3); \
	body(h); \
	ADDQ bsize, SI; \
	ADDQ asize, DI; \
	ADDQ asize, R14; \
	DECQ CX; \
	JNZ  blab; \
	PA_FRAME4_STORE(h)

// The base of the prefetches of half h of such a kernel, whose prefetches reach dist bytes
// past it: R12 = SI in the first half; in the second, which reads its lines again from the
// caches, SI plus the panel stride less dist, so that they fetch the next panel's lines.
// Four columns run each half over the whole panel, and so memory streams through both halves
// rather than the first alone (AVX2, 256 MiB from memory, one thread, Zen 4: four columns
// within 3% either way; one column, when it also ran a half at a time, Q6_K 148-168 against
// 171-190 ns a super-block). One column runs both halves of each super-block in turn
// (PA_SB_DOT1; Q6_K both halves of each quad), and its second half's prefetches reach a panel
// ahead. Past the last panel they fetch nothing a kernel reads, and a prefetch never faults.
#define PA_PF_BASE(dist, h) \
	MOVQ stride+8(FP), R12; \
	SUBQ $(dist), R12; \
	ANDQ $(-h), R12; \
	ADDQ SI, R12

// func dotPacked…x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
// One half of the panel at a time.
#define PA_SB_DOT4(body, bsize, asize, plab, b0, b1) PA_SB_DOT4_2(body, body, bsize, asize, plab, b0, b1)

// unit four times, as two runs of two (labels nlab, qlab; AX and R11 count them): after each,
// SI and the prefetch base R12 move on by step and the activations (DI, and R14 for four
// columns) by din, after each run of two the activations by dout more; then SI and the
// activations go back to where they were (R12 does not: PA_PF_BASE sets it afresh). The
// kernels whose super-blocks are four quads or quarters of one layout take one's code so
// (PA6_QUADS_LOOP, PA2_QUARTERS_LOOP).
#define PA_LOOP2X2(unit, step, din, dout, nlab, qlab) \
	MOVQ $2, AX; \
nlab: \
	MOVQ $2, R11; \
qlab: \
	unit; \
	ADDQ $(step), SI; \
	ADDQ $(step), R12; \
	ADDQ $(din), DI; \
	ADDQ $(din), R14; \
	DECQ R11; \
	JNZ  qlab; \
	ADDQ $(dout), DI; \
	ADDQ $(dout), R14; \
	DECQ AX; \
	JNZ  nlab; \
	SUBQ $(4*(step)), SI; \
	SUBQ $(4*(din)+2*(dout)), DI; \
	SUBQ $(4*(din)+2*(dout)), R14

// Half h of a Q4_K or Q5_K super-block in four columns (or Q5_K's whole super-block in one),
// one chunk's code in a loop (labels nlab, qlab; AX and R11 count): chunk(h) sums a chunk's
// groups in int16 against the activations at DI and R14 and adds them to Y0-Y3 with its
// scales at R13 (PAK_ADD4_AT; one column: to Y12 and Y13 by PAK_ADD1_AT, R14 unused); SI
// starts at chunk 0's quants and moves 512 bytes on within a pair of chunks and 576 to the
// next, R13 starts at sct(SI) and moves 32 on, then 1056, the activations 64 on a chunk (the
// packed layout of packedq4k.go and packedq5k.go). SI and the activations end where they
// started.
#define PAK_SB4_LOOP(chunk, sct, h, nlab, qlab) \
	LEAQ sct(SI), R13; \
	MOVQ $2, AX; \
nlab: \
	MOVQ $2, R11; \
qlab: \
	chunk(h); \
	ADDQ $512, SI; \
	ADDQ $32, R13; \
	ADDQ $64, DI; \
	ADDQ $64, R14; \
	DECQ R11; \
	JNZ  qlab; \
	ADDQ $64, SI; \
	ADDQ $1024, R13; \
	DECQ AX; \
	JNZ  nlab; \
	SUBQ $2176, SI; \
	SUBQ $256, DI; \
	SUBQ $256, R14

// Every column's int16 sums of a chunk's low (Y4-Y7) and high (Y8-Y11) sub-block of half h,
// scaled by the rows' scales at R13 (PAK_SB4_LOOP), into its sumi.
#define PAK_ADD4_AT(h) \
	PAK_SCALES_AT(8*h, (R13), Y12); \
	PAK_SCALES_AT(16+8*h, (R13), Y13); \
	PK_COLS_ADD4(VPMADDWD)

// PA_SB_DOT4 with a body of its own for each half (body0, body1: bodies with loops, whose
// labels must differ).
#define PA_SB_DOT4_2(body0, body1, bsize, asize, plab, b0, b1) \
	PACKED_ARGS4; \
plab: \
	PA_SB_HALF4(body0, bsize, asize, 0, b0); \
	PA_SB_HALF4(body1, bsize, asize, 1, b1); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// AVX2 kernels of the packed K-quants with signed 8-bit scales and sub-blocks of 16 (Q3_K,
// Q6_K), one half of a panel's rows at a time (h: rows 8h..8h+7, the second 32 bytes of each
// 64-byte run, the second 8 of each run of scales, the second 16 of d). Each product vector
// of 4-element groups is widened and scaled at once by VPMADDWD with its sub-block's scales
// (PA_SCW) and added to the row's integer sum; the offsets c·bsum_j of the sub-blocks (c a
// power of two) come once a super-block, as VPMADDWD of the rows' scale pairs with the
// prepared bsum pairs (int16 from byte 324 of the activations), shifted by log2(c) and
// subtracted: sumi = Σ_j sc_j·(Σ q·y - c·bsum_j); then one FMA by d·yd.
//
// Registers: Y0-Y3 the columns' integer sums, Y4-Y11 the type's, Y12-Y15 scratch; the float
// sums in the frame (32 bytes a column).

// The rows' signed scales at off(SI) (eight bytes), each in both words of its row's lane.
#define PA_SCW(off, reg) \
	VPBROADCASTQ off(SI), reg; \
	VPSHUFB      ·paSignedScaleWords(SB), reg, reg; \
	VPSRAW       $8, reg, reg

// The column's four activation quants at off(base), broadcast, times the quants q, scaled by
// scw, added to sumi.
#define PA_DOT(off, q, scw, base, sumi) \
	VPBROADCASTD off base, Y12; \
	VPMADDUBSW   Y12, q, Y13; \
	VPMADDWD     scw, Y13, Y13; \
	VPADDD       Y13, sumi, sumi

#define PA_COLS1(off, q, scw) PA_DOT(off, q, scw, (DI), Y0)

// The types whose quants fit three bits (Q2_K, Q3_K) call their columns with a fourth
// argument, the one-column kernel's int16 sum of the field: there the products of a quad's
// four groups, which share their sub-blocks' scales, add up in int16 (at most 4·2·7·128) and
// are widened and scaled once a quad (PA_SUMS16_FLUSH) rather than once a group. The integer
// sums are exact, so the results are as before.
#define PA_COLS1X(off, q, scw, a) \
	VPBROADCASTD off(DI), Y12; \
	VPMADDUBSW   Y12, q, Y13; \
	VPADDW       Y13, a, a

#define PA_COLS4X(off, q, scw, a) PA_COLS4(off, q, scw)
#define PV_COLS4X(off, q, scw, a) PV_COLS4(off, q, scw)

// The int16 sums of the four fields (Y1, Y2, Y3, Y14), zeroed before a quad, and after it
// scaled by the fields' scale words (Y4-Y7) and added to Y0.
#define PA_SUMS16_ZERO ZERO_Y4(Y1, Y2, Y3, Y14)

#define PA_SUMS16_FLUSH \
	VPMADDWD Y4, Y1, Y1; \
	VPADDD   Y1, Y0, Y0; \
	VPMADDWD Y5, Y2, Y2; \
	VPADDD   Y2, Y0, Y0; \
	VPMADDWD Y6, Y3, Y3; \
	VPADDD   Y3, Y0, Y0; \
	VPMADDWD Y7, Y14, Y14; \
	VPADDD   Y14, Y0, Y0

#define PA_COLS4(off, q, scw) \
	PA_DOT(off, q, scw, (DI), Y0); \
	PA_DOT(off, q, scw, (DI)(DX*1), Y1); \
	PA_DOT(off, q, scw, (R14), Y2); \
	PA_DOT(off, q, scw, (R14)(DX*1), Y3)

// AVX-VNNI, four columns: PA_DOT with the scaling and the sum in one VPDPWSSD, the scale words
// copied to Y15 once for the columns (s: the sum's register number). Not for one column: there
// every product would wait for the previous one's VPDPWSSD (Q6_K read 0.75-0.85x of AVX2's
// from the level-2 cache), where VPMADDWD leaves only a VPADDD on the chain.
#define PV_DOT(off, q, base, s) \
	VPBROADCASTD off base, Y12; \
	VPMADDUBSW   Y12, q, Y13; \
	VPDPWSSD_VEX(15, 13, s)

#define PV_COLS4(off, q, scw) \
	VMOVDQU scw, Y15; \
	PV_DOT(off, q, (DI), 0); \
	PV_DOT(off, q, (DI)(DX*1), 1); \
	PV_DOT(off, q, (R14), 2); \
	PV_DOT(off, q, (R14)(DX*1), 3)

// The scales of two sub-blocks (eight rows' at sa(SI) and sb(SI)) as words, row r's lane
// holding the pair: the words that meet a prepared bsum pair.
#define PA_PAIRW(sa, sb, xr, yr) \
	VMOVQ      sa(SI), xr; \
	VMOVQ      sb(SI), X12; \
	VPUNPCKLBW X12, xr, xr; \
	VPMOVSXBW  xr, yr

// Y12 += the words w (a pair per row) times the column's int16 pair at off(base).
#define PA_PAIRDOT(off, base, w) \
	VPBROADCASTD off base, Y13; \
	VPMADDWD     Y13, w, Y13; \
	VPADDD       Y13, Y12, Y12

// Y12 = Σ of the eight pairs of words in Y4-Y11 times the column's eight int16 pairs from
// off(base) on.
#define PA_PAIRDOTS(off, base) \
	VPXOR      Y12, Y12, Y12; \
	PA_PAIRDOT(off, base, Y4); \
	PA_PAIRDOT(off+4, base, Y5); \
	PA_PAIRDOT(off+8, base, Y6); \
	PA_PAIRDOT(off+12, base, Y7); \
	PA_PAIRDOT(off+16, base, Y8); \
	PA_PAIRDOT(off+20, base, Y9); \
	PA_PAIRDOT(off+24, base, Y10); \
	PA_PAIRDOT(off+28, base, Y11)

// sumi -= Σ_j sc_j·bsum_j << sh for the column at base, the scale pairs in Y4-Y11.
#define PA_OFFSET(base, sumi, sh) \
	PA_PAIRDOTS(324, base); \
	VPSLLD sh, Y12, Y12; \
	VPSUBD Y12, sumi, sumi

// The end of a super-block's half h: pairws(h) sets the scale pairs, the offsets come off,
// and one FMA by the rows' d (at doff) times yd adds each column's sum to the frame's (one
// column: to slot h, PA_SB_DOT1's; four: to slot c for column c).
#define PA_END1(pairws, sh, doff, h) PA_END1_SUM(pairws, sh, doff, h, Y0)

// PA_END1 of the integer sum sumi.
#define PA_END1_SUM(pairws, sh, doff, h, sumi) \
	pairws(h); \
	PA_OFFSET((DI), sumi, sh); \
	VCVTPH2PS doff+16*h(SI), Y12; \
	PA_FRAME4_FMA(h, (DI), sumi, Y12)

#define PA_END4(pairws, sh, doff, h) \
	pairws(h); \
	PA_OFFSET((DI), Y0, sh); \
	PA_OFFSET((DI)(DX*1), Y1, sh); \
	PA_OFFSET((R14), Y2, sh); \
	PA_OFFSET((R14)(DX*1), Y3, sh); \
	VCVTPH2PS doff+16*h(SI), Y12; \
	PA_FRAME4_FMA(0, (DI), Y0, Y12); \
	PA_FRAME4_FMA(1, (DI)(DX*1), Y1, Y12); \
	PA_FRAME4_FMA(2, (R14), Y2, Y12); \
	PA_FRAME4_FMA(3, (R14)(DX*1), Y3, Y12)

// func dotPacked…AVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)
// One column: both halves of each super-block in turn, body(h) adding half h's rows to frame
// slot h (32h(SP)) from the integer sum Y0 at zero; the second half reads the super-block's
// lines from the level-1 cache. Running each half over the whole panel instead (the
// four-column kernels' way) computed half of the panel with nothing to read from memory:
// 256 MiB from memory at one thread, Zen 4, as an AVX2-only CPU (BenchmarkPackedStreamRead),
// Q6_K 26.2-27.6 GB/s against 19.7-21.8, Q2_K 15.1-16.0 against 13.2-14.6, Q3_K 15.1-15.7
// against 13.3-14.7 (a plain read 27-31); the same on weights in the level-2 cache.
#define PA_SB_DOT1(body, bsize, asize, plab, blab) PA_SB_DOT1_2(body, body, bsize, asize, plab, blab)

// PA_SB_DOT1 with the super-block's work in one body (Q6_K's both halves at once, which adds
// rows 0-7 to Y0 and rows 8-15 to Y1 and ends each half in its frame slot by PA_END1_SUM);
// args sets up the body's registers once, and the body zeroes its sums.
#define PA_SB_DOT1_WITH(args, body, bsize, asize, plab, blab) \
	PACKED_ARGS1; \
	args; \
plab: \
	PACKED_SB_START; \
	VXORPS  Y12, Y12, Y12; \
	VMOVUPS Y12, 0(SP); \
	VMOVUPS Y12, 32(SP); \
blab: \
	body; \
	ADDQ  bsize, SI; \
	ADDQ  asize, DI; \
	DECQ  CX; \
	JNZ   blab; \
	VMOVUPS 0(SP), Y12; \
	VMOVUPS Y12, (R8); \
	VMOVUPS 32(SP), Y12; \
	VMOVUPS Y12, 32(R8); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// PA_SB_DOT1 with a body of its own for each half (PA_SB_DOT4_2's reason).
#define PA_SB_DOT1_2(body0, body1, bsize, asize, plab, blab) \
	PA_SB_DOT1_WITH(EMPTY, PA_HALVES1(body0, body1), bsize, asize, plab, blab)

#define PA_HALVES1(body0, body1) \
	VPXOR Y0, Y0, Y0; \
	body0(0); \
	VPXOR Y0, Y0, Y0; \
	body1(1)

// The loops of the packed super-block kernels (Q2_K, Q3_K, Q6_K), around a type's constants
// (masks) and its super-block (body; bsize bytes of weights, asize of prepared activations).
// One column: body adds the super-block to Z0 (SI = the super-block, DI = its activations).
#define PACKED_SB1(masks, body, bsize, asize, plab, blab) \
	PACKED_ARGS1; \
	masks; \
plab: \
	PACKED_SB_START; \
	VPXORD Z0, Z0, Z0; \
blab: \
	body; \
	ADDQ bsize, SI; \
	ADDQ asize, DI; \
	DECQ CX; \
	JNZ  blab; \
	VMOVUPS Z0, (R8); \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// PACKED_SB1 over two runs of panels in step (packedDot1Runs2): body(acc) adds the super-block
// at SI to acc, first a panel's into Z0, then the same one of the panel dist (R13) bytes on
// into Z23, which no one-column body uses.
#define PACKED_SB_RUNS2(masks, body, bsize, asize, plab, blab) \
	RUNS2_ARGS(EMPTY); \
	masks; \
plab: \
	PACKED_SB_START; \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z23, Z23, Z23; \
blab: \
	body(Z0); \
	ADDQ R13, SI; \
	body(Z23); \
	SUBQ R13, SI; \
	ADDQ bsize, SI; \
	ADDQ asize, DI; \
	DECQ CX; \
	JNZ  blab; \
	VMOVUPS Z0, (R8); \
	VMOVUPS Z23, (R14); \
	RUNS2_NEXT_PANEL(plab)

// Four columns (activations at (DI), (DI)(DX*1), (R14), (R14)(DX*1)): body adds the
// super-block to the float sums in the frame (PACKED_FMA4).
#define PACKED_SB4(masks, body, bsize, asize, plab, blab) \
	PACKED_ARGS4; \
	masks; \
plab: \
	PACKED_SB_START; \
	LEAQ (DI)(DX*2), R14; \
	PACKED_FRAME4_ZERO; \
blab: \
	body; \
	ADDQ bsize, SI; \
	ADDQ asize, DI; \
	ADDQ asize, R14; \
	DECQ CX; \
	JNZ  blab; \
	PACKED_FRAME4_STORE; \
	PACKED_NEXT_PANEL(plab); \
	VZEROUPPER; \
	RET

// Element-wise float32 steps (mulGo, addGo, normScaleGo): 32 elements a step, then 8 at a time.
#define ELEM2_KERNEL(op, l32, l8, done) \
	MOVQ out+0(FP), DI; \
	MOVQ a+8(FP), SI; \
	MOVQ b+16(FP), DX; \
	MOVQ n+24(FP), CX; \
	CMPQ CX, $32; \
	JLT  l8; \
l32: \
	VMOVUPS (SI), Y0; \
	VMOVUPS 32(SI), Y1; \
	VMOVUPS 64(SI), Y2; \
	VMOVUPS 96(SI), Y3; \
	op      (DX), Y0, Y0; \
	op      32(DX), Y1, Y1; \
	op      64(DX), Y2, Y2; \
	op      96(DX), Y3, Y3; \
	VMOVUPS Y0, (DI); \
	VMOVUPS Y1, 32(DI); \
	VMOVUPS Y2, 64(DI); \
	VMOVUPS Y3, 96(DI); \
	ADDQ    $128, SI; \
	ADDQ    $128, DX; \
	ADDQ    $128, DI; \
	SUBQ    $32, CX; \
	CMPQ    CX, $32; \
	JGE     l32; \
l8: \
	TESTQ   CX, CX; \
	JZ      done; \
	VMOVUPS (SI), Y0; \
	op      (DX), Y0, Y0; \
	VMOVUPS Y0, (DI); \
	ADDQ    $32, SI; \
	ADDQ    $32, DX; \
	ADDQ    $32, DI; \
	SUBQ    $8, CX; \
	JMP     l8; \
done: \
	VZEROUPPER; \
	RET
