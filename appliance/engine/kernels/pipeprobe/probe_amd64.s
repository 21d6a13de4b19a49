//go:build amd64 && !purego

#include "textflag.h"

// Z30 = dword ones, Z31 = float ones; the accumulators Z0-Z9 start at zero.
#define SETUP \
	MOVQ         n+0(FP), CX; \
	MOVL         $1, AX; \
	VPBROADCASTD AX, Z30; \
	MOVL         $0x3f800000, AX; \
	VPBROADCASTD AX, Z31; \
	MOVL         $0x01010101, AX; \
	VPBROADCASTD AX, Z29; \
	VPXORD       Z0, Z0, Z0; \
	VPXORD       Z1, Z1, Z1; \
	VPXORD       Z2, Z2, Z2; \
	VPXORD       Z3, Z3, Z3; \
	VPXORD       Z4, Z4, Z4; \
	VPXORD       Z5, Z5, Z5; \
	VPXORD       Z6, Z6, Z6; \
	VPXORD       Z7, Z7, Z7; \
	VPXORD       Z8, Z8, Z8; \
	VPXORD       Z9, Z9, Z9; \
	TESTQ        CX, CX; \
	JLE          done

// Z0-Z7 summed by op into Z0 (lane 0 is the result).
#define SUM8(op) \
	op Z1, Z0, Z0; \
	op Z3, Z2, Z2; \
	op Z5, Z4, Z4; \
	op Z7, Z6, Z6; \
	op Z2, Z0, Z0; \
	op Z6, Z4, Z4; \
	op Z4, Z0, Z0

// Z0-Z9 summed by op into Z0.
#define SUM10(op) \
	SUM8(op); \
	op Z9, Z8, Z8; \
	op Z8, Z0, Z0

#define SUM_INT8 SUM8(VPADDD)
#define SUM_INT10 SUM10(VPADDD)

// The float sum of Z0-Z9, truncated to an integer (exact: the sums are small whole numbers).
#define SUM_FLOAT10 \
	SUM10(VADDPS); \
	VCVTTPS2DQ Z0, Z0

#define RESULT \
	VMOVD      X0, AX; \
	VZEROUPPER; \
	MOVL       AX, ret+8(FP); \
	RET

// A probe: SETUP, n iterations of body, then sum (which leaves the result in X0).
#define PROBE(body, sum) \
	SETUP; \
loop: \
	body; \
	DECQ CX; \
	JNZ  loop; \
done: \
	sum; \
	RESULT

// Ten op a, a, Zi: independent, into Z0-Z9.
#define TEN(op, a) \
	op a, a, Z0; \
	op a, a, Z1; \
	op a, a, Z2; \
	op a, a, Z3; \
	op a, a, Z4; \
	op a, a, Z5; \
	op a, a, Z6; \
	op a, a, Z7; \
	op a, a, Z8; \
	op a, a, Z9

// Ten dependent additions of ones to Z0.
#define CHAIN10 \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0; \
	VPADDD Z30, Z0, Z0

// Eight independent VPDPBUSD of byte ones into Z0-Z7, with a before the first, b between the
// fourth and the fifth, c after the eighth.
#define DPBUSD8(a, b, c) \
	a; \
	VPDPBUSD Z29, Z29, Z0; \
	VPDPBUSD Z29, Z29, Z1; \
	VPDPBUSD Z29, Z29, Z2; \
	VPDPBUSD Z29, Z29, Z3; \
	b; \
	VPDPBUSD Z29, Z29, Z4; \
	VPDPBUSD Z29, Z29, Z5; \
	VPDPBUSD Z29, Z29, Z6; \
	VPDPBUSD Z29, Z29, Z7; \
	c

// Five VFMADD231PS (Z0, Z2, ... Z8) and five VADDPS (Z1, Z3, ... Z9) of ones, alternating.
#define FMA5ADD5 \
	VFMADD231PS Z31, Z31, Z0; \
	VADDPS      Z31, Z1, Z1; \
	VFMADD231PS Z31, Z31, Z2; \
	VADDPS      Z31, Z3, Z3; \
	VFMADD231PS Z31, Z31, Z4; \
	VADDPS      Z31, Z5, Z5; \
	VFMADD231PS Z31, Z31, Z6; \
	VADDPS      Z31, Z7, Z7; \
	VFMADD231PS Z31, Z31, Z8; \
	VADDPS      Z31, Z9, Z9

// Five independent round trips of ones through F16 (the attention V sum's rounding), into
// Z0-Z4 by Y10-Y14.
#define ROUND5 \
	VCVTPS2PH $0, Z31, Y10; \
	VCVTPH2PS Y10, Z0; \
	VCVTPS2PH $0, Z31, Y11; \
	VCVTPH2PS Y11, Z1; \
	VCVTPS2PH $0, Z31, Y12; \
	VCVTPH2PS Y12, Z2; \
	VCVTPS2PH $0, Z31, Y13; \
	VCVTPH2PS Y13, Z3; \
	VCVTPS2PH $0, Z31, Y14; \
	VCVTPH2PS Y14, Z4

#define NOTHING
#define CLEAR0 VPXORD Z0, Z0, Z0
#define SCALE_PRODUCT VMULPS Z31, Z31, Z10
#define SCALED_ADD VFMADD231PS Z31, Z31, Z8
#define CVT_A VCVTDQ2PS Z30, Z10
#define CVT_B VCVTDQ2PS Z30, Z11

// func addChain(n int) int32
TEXT ·addChain(SB), NOSPLIT, $0-12
	PROBE(CHAIN10, NOTHING)

// func dpbusd10(n int) int32
TEXT ·dpbusd10(SB), NOSPLIT, $0-12
	PROBE(TEN(VPDPBUSD, Z29), SUM_INT10)

// func fma10(n int) int32
TEXT ·fma10(SB), NOSPLIT, $0-12
	PROBE(TEN(VFMADD231PS, Z31), SUM_FLOAT10)

// func mul10(n int) int32: its products (ones) are dropped, the result cleared.
TEXT ·mul10(SB), NOSPLIT, $0-12
	PROBE(TEN(VMULPS, Z31), CLEAR0)

// func dpbusd8mulfma(n int) int32: the Q4_0 column's order, dx·yd first, the FMA last.
TEXT ·dpbusd8mulfma(SB), NOSPLIT, $0-12
	PROBE(DPBUSD8(SCALE_PRODUCT, NOTHING, SCALED_ADD), SUM_INT8)

// func dpbusd8cvt2(n int) int32
TEXT ·dpbusd8cvt2(SB), NOSPLIT, $0-12
	PROBE(DPBUSD8(NOTHING, CVT_A, CVT_B), SUM_INT8)

// func fma5add5(n int) int32
TEXT ·fma5add5(SB), NOSPLIT, $0-12
	PROBE(FMA5ADD5, SUM_FLOAT10)

// func mulld10(n int) int32: ten VPMULLD of dword ones (the K-quants' sub-block scaling).
TEXT ·mulld10(SB), NOSPLIT, $0-12
	PROBE(TEN(VPMULLD, Z30), SUM_INT10)

// func round5(n int) int32
TEXT ·round5(SB), NOSPLIT, $0-12
	PROBE(ROUND5, SUM_FLOAT10)
