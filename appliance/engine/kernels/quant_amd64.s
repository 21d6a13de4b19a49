//go:build amd64 && !purego

#include "textflag.h"

// Activation quantization (quantizeQ8_0ActGo and quantizeQ8KGo's arithmetic, bit for bit): the
// products are rounded to the nearest integer, ties to even, by VCVTPS2DQ under the default
// rounding mode, as the Go twins round; no product reaches ±127.5, so packing with signed
// saturation equals their conversion to int8.

// VPERMD order that puts the bytes of VPACKSSDW + VPACKSSWB (which pack within 128-bit lanes)
// back in element order.
DATA quantPackPerm<>+0(SB)/8, $0x0000000400000000
DATA quantPackPerm<>+8(SB)/8, $0x0000000500000001
DATA quantPackPerm<>+16(SB)/8, $0x0000000600000002
DATA quantPackPerm<>+24(SB)/8, $0x0000000700000003
GLOBL quantPackPerm<>(SB), RODATA|NOPTR, $32

// x (an X register) = the largest of y's eight lanes as int32, broadcast to all of y (t
// scratch). On magnitudes (float32 bits with the sign cleared) that is the largest magnitude,
// and a NaN's bits are larger than any number's: the scale search takes them as integers so
// that a NaN always wins, where VMAXPS keeps or drops it by operand order.
#define HMAXI_BCAST(y, x, t) \
	VEXTRACTI128 $1, y, t; \
	VPMAXSD      t, x, x; \
	VPSHUFD      $0x4e, x, t; \
	VPMAXSD      t, x, x; \
	VPSHUFD      $0xb1, x, t; \
	VPMAXSD      t, x, x; \
	VPBROADCASTD x, y

// Y0 = the 32 int32 in Y0-Y3 as bytes, in order (Y2 clobbered; Y13 = quantPackPerm).
#define PACK32 \
	VPACKSSDW Y1, Y0, Y0; \
	VPACKSSDW Y3, Y2, Y2; \
	VPACKSSWB Y2, Y0, Y0; \
	VPERMD    Y0, Y13, Y0

// func quantizeQ8_0AVX2(x *float32, y *byte, nb int)
// nb > 0 blocks of 32: y gets d = amax/127 as float16 and the 32 quants round(x·127/amax),
// zeros where 127/amax is infinite (amax zero or below 127/MaxFloat32), as quantizeQ8_0ActGo;
// a block holding a NaN or an infinity gets a NaN d and zero quants.
TEXT ·quantizeQ8_0AVX2(SB), NOSPLIT, $0-24
	MOVQ         x+0(FP), SI
	MOVQ         y+8(FP), DI
	MOVQ         nb+16(FP), CX
	MOVL         $0x7fffffff, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $0x42fe0000, AX // 127
	VMOVD        AX, X14
	VBROADCASTSS X14, Y14
	VMOVDQU      quantPackPerm<>(SB), Y13

q80_block:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VPAND   Y15, Y0, Y4
	VPAND   Y15, Y1, Y5
	VPMAXSD Y5, Y4, Y4
	VPAND   Y15, Y2, Y5
	VPMAXSD Y5, Y4, Y4
	VPAND   Y15, Y3, Y5
	VPMAXSD Y5, Y4, Y4
	HMAXI_BCAST(Y4, X4, X5)
	VMOVD   X4, AX
	CMPL    AX, $0x7f800000
	JAE     q80_nan // an infinity or a NaN
	VDIVSS    X14, X4, X6
	VCVTPS2PH $0, X6, X7
	VMOVD     X7, AX
	MOVW      AX, (DI)
	VDIVPS    Y4, Y14, Y8
	VMOVD     X8, AX
	CMPL      AX, $0x7f800000
	JNE       q80_scaled
	VXORPS    Y8, Y8, Y8 // amax 0, or too small for 127/amax: the multiplier is 0

q80_scaled:
	VMULPS    Y8, Y0, Y0
	VMULPS    Y8, Y1, Y1
	VMULPS    Y8, Y2, Y2
	VMULPS    Y8, Y3, Y3
	VCVTPS2DQ Y0, Y0
	VCVTPS2DQ Y1, Y1
	VCVTPS2DQ Y2, Y2
	VCVTPS2DQ Y3, Y3
	PACK32
	VMOVDQU   Y0, 2(DI)

q80_next:
	ADDQ      $128, SI
	ADDQ      $34, DI
	DECQ      CX
	JNZ       q80_block
	VZEROUPPER
	RET

q80_nan:
	MOVW    $0x7e00, (DI)
	VPXOR   Y0, Y0, Y0
	VMOVDQU Y0, 2(DI)
	JMP     q80_next

// func quantizeQ8KAVX2(x *float32, y *byte, nb int)
// nb > 0 super-blocks of 256: maxv = the first element of largest magnitude, iscale =
// -127/maxv; y gets 1/iscale (float32), the quants min(127, round(iscale·x)), and the sixteen
// int16 sums of 16 quants. A super-block of zeros is all zeros; one holding a NaN or an infinity
// gets a NaN d and zero quants and sums.
TEXT ·quantizeQ8KAVX2(SB), NOSPLIT, $0-24
	MOVQ         x+0(FP), SI
	MOVQ         y+8(FP), DI
	MOVQ         nb+16(FP), CX
	MOVL         $0x7fffffff, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $127, AX
	VMOVD        AX, X12
	VPBROADCASTD X12, Y12
	VMOVDQU      quantPackPerm<>(SB), Y13

q8k_block:
	// The largest magnitude, in four chains.
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ   SI, R9
	MOVQ   $8, R8

q8k_amax:
	VPAND   (R9), Y15, Y0
	VPMAXSD Y0, Y4, Y4
	VPAND   32(R9), Y15, Y1
	VPMAXSD Y1, Y5, Y5
	VPAND   64(R9), Y15, Y2
	VPMAXSD Y2, Y6, Y6
	VPAND   96(R9), Y15, Y3
	VPMAXSD Y3, Y7, Y7
	ADDQ    $128, R9
	DECQ    R8
	JNZ     q8k_amax
	VPMAXSD Y5, Y4, Y4
	VPMAXSD Y7, Y6, Y6
	VPMAXSD Y6, Y4, Y4
	HMAXI_BCAST(Y4, X4, X5)
	VMOVD   X4, AX
	TESTL   AX, AX
	JZ      q8k_zero
	CMPL    AX, $0x7f800000
	JAE     q8k_nan // an infinity or a NaN (which the search below would never find)

	// The first element of that magnitude: its sign is maxv's.
	MOVQ SI, R9

q8k_find:
	VANDPS    (R9), Y15, Y0
	VCMPPS    $0, Y4, Y0, Y0
	VMOVMSKPS Y0, AX
	TESTL     AX, AX
	JNZ       q8k_found
	ADDQ      $32, R9
	JMP       q8k_find

q8k_found:
	BSFL         AX, AX
	VMOVSS       (R9)(AX*4), X5
	MOVL         $0xc2fe0000, AX // -127
	VMOVD        AX, X6
	VDIVSS       X5, X6, X6      // iscale
	MOVL         $0x3f800000, AX // 1
	VMOVD        AX, X7
	VDIVSS       X6, X7, X7
	VMOVSS       X7, (DI)
	VMOVD        X6, AX
	ANDL         $0x7fffffff, AX
	CMPL         AX, $0x7f800000
	JNE          q8k_mult
	VXORPS       X6, X6, X6 // iscale overflowed (d is a zero): zero quants

q8k_mult:
	VBROADCASTSS X6, Y6
	MOVQ         SI, R9
	LEAQ         4(DI), R10
	LEAQ         260(DI), R11
	MOVQ         $8, R8

q8k_quants:
	VMULPS     (R9), Y6, Y0
	VMULPS     32(R9), Y6, Y1
	VMULPS     64(R9), Y6, Y2
	VMULPS     96(R9), Y6, Y3
	VCVTPS2DQ  Y0, Y0
	VCVTPS2DQ  Y1, Y1
	VCVTPS2DQ  Y2, Y2
	VCVTPS2DQ  Y3, Y3
	VPMINSD    Y12, Y0, Y0
	VPMINSD    Y12, Y1, Y1
	VPMINSD    Y12, Y2, Y2
	VPMINSD    Y12, Y3, Y3
	// The sums of the two sub-blocks (Y0+Y1, Y2+Y3) into X8's lanes 0 and 1.
	VPADDD       Y1, Y0, Y8
	VPADDD       Y3, Y2, Y9
	VPHADDD      Y9, Y8, Y8
	VPHADDD      Y8, Y8, Y8
	VEXTRACTI128 $1, Y8, X9
	VPADDD       X9, X8, X8
	VMOVD        X8, AX
	MOVW         AX, (R11)
	VPEXTRD      $1, X8, AX
	MOVW         AX, 2(R11)
	PACK32
	VMOVDQU      Y0, (R10)
	ADDQ         $128, R9
	ADDQ         $32, R10
	ADDQ         $4, R11
	DECQ         R8
	JNZ          q8k_quants
	JMP          q8k_next

q8k_zero:
	VPXOR   Y0, Y0, Y0
	VMOVDQU Y0, (DI)
	VMOVDQU Y0, 32(DI)
	VMOVDQU Y0, 64(DI)
	VMOVDQU Y0, 96(DI)
	VMOVDQU Y0, 128(DI)
	VMOVDQU Y0, 160(DI)
	VMOVDQU Y0, 192(DI)
	VMOVDQU Y0, 224(DI)
	VMOVDQU Y0, 256(DI)
	MOVL    $0, 288(DI)
	JMP     q8k_next

q8k_nan:
	VPXOR   Y0, Y0, Y0
	VMOVDQU Y0, 4(DI)
	VMOVDQU Y0, 36(DI)
	VMOVDQU Y0, 68(DI)
	VMOVDQU Y0, 100(DI)
	VMOVDQU Y0, 132(DI)
	VMOVDQU Y0, 164(DI)
	VMOVDQU Y0, 196(DI)
	VMOVDQU Y0, 228(DI)
	VMOVDQU Y0, 260(DI)
	MOVL    $0x7fc00000, (DI)

q8k_next:
	ADDQ $1024, SI
	ADDQ $292, DI
	DECQ CX
	JNZ  q8k_block
	VZEROUPPER
	RET
