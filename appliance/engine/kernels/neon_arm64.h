// Advanced SIMD instructions on four float32 (or int32) lanes that the Go assembler does not
// know, encoded by hand (Arm ARM, "Advanced SIMD three same", "two-register miscellaneous",
// "across lanes" and "shift by immediate"). Operands are register numbers: d is the
// destination, n the first source and m the second, so FSUB4S(m, n, d) is Vd = Vn - Vm.

#define FADD4S(m, n, d) WORD $(0x4E20D400 | ((m)<<16) | ((n)<<5) | (d))
#define FSUB4S(m, n, d) WORD $(0x4EA0D400 | ((m)<<16) | ((n)<<5) | (d))
#define FMUL4S(m, n, d) WORD $(0x6E20DC00 | ((m)<<16) | ((n)<<5) | (d))
#define FDIV4S(m, n, d) WORD $(0x6E20FC00 | ((m)<<16) | ((n)<<5) | (d))

// FMAX and FMIN return a NaN where either lane is one (Go's max and min); FMAXNM returns the
// number (a comparison that a NaN never wins).
#define FMAX4S(m, n, d) WORD $(0x4E20F400 | ((m)<<16) | ((n)<<5) | (d))
#define FMIN4S(m, n, d) WORD $(0x4EA0F400 | ((m)<<16) | ((n)<<5) | (d))

// All ones in the lanes where Vn > Vm (ordered: false with a NaN), Vn == Vm.
#define FCMGT4S(m, n, d) WORD $(0x6EA0E400 | ((m)<<16) | ((n)<<5) | (d))
#define FCMEQ4S(m, n, d) WORD $(0x4E20E400 | ((m)<<16) | ((n)<<5) | (d))

// Vd = Vn's lanes where Vm's bits are set, Vd's own elsewhere (bitwise).
#define VBIT16B(m, n, d) WORD $(0x6EA01C00 | ((m)<<16) | ((n)<<5) | (d))

// The signed int32 minimum of the lanes.
#define SMIN4S(m, n, d) WORD $(0x4EA06C00 | ((m)<<16) | ((n)<<5) | (d))

#define FABS4S(n, d) WORD $(0x4EA0F800 | ((n)<<5) | (d))
#define FNEG4S(n, d) WORD $(0x6EA0F800 | ((n)<<5) | (d))

// Round to an integral float, ties to even (FRINTN); to int32, ties to even (FCVTNS) and
// toward zero (FCVTZS).
#define FRINTN4S(n, d) WORD $(0x4E218800 | ((n)<<5) | (d))
#define FCVTNS4S(n, d) WORD $(0x4E21A800 | ((n)<<5) | (d))
#define FCVTZS4S(n, d) WORD $(0x4EA1B800 | ((n)<<5) | (d))

// Vd.4S = Vn.4S << sh (0-31).
#define SHL4S(sh, n, d) WORD $(0x4F005400 | ((32+(sh))<<16) | ((n)<<5) | (d))

// Narrow: the low halves of Vn's int32 lanes into Vd.4H (XTN) or Vd's upper 4H (XTN2); the low
// bytes of Vn's int16 lanes into Vd.8B (XTN) or Vd's upper 8B (XTN2).
#define XTN4H(n, d) WORD $(0x0E612800 | ((n)<<5) | (d))
#define XTN2_8H(n, d) WORD $(0x4E612800 | ((n)<<5) | (d))
#define XTN8B(n, d) WORD $(0x0E212800 | ((n)<<5) | (d))
#define XTN2_16B(n, d) WORD $(0x4E212800 | ((n)<<5) | (d))

// Sd = the largest of Vn's four lanes (a NaN wins, as FMAX).
#define FMAXV4S(n, d) WORD $(0x6E30F800 | ((n)<<5) | (d))

// SDOT Vd.4S, Vn.16B, Vm.16B: signed 8-bit dot products of four bytes into each int32 lane
// (the dot-product extension, ARMv8.2).
#define SDOT(m, n, d) WORD $(0x4E809400 | ((m)<<16) | ((n)<<5) | (d))

// Pairwise adds: Vd = (n0+n1, n2+n3, m0+m1, m2+m3); Sd = n0+n1 of Vn's low two lanes.
#define FADDP4S(m, n, d) WORD $(0x6E20D400 | ((m)<<16) | ((n)<<5) | (d))
#define FADDP_S(n, d) WORD $(0x7E30D800 | ((n)<<5) | (d))

// Two float64 lanes: Vd.2D = Vn.2D + Vm.2D.
#define FADD2D(m, n, d) WORD $(0x4E60D400 | ((m)<<16) | ((n)<<5) | (d))

// Exact widenings: FCVTL Vd.2D, Vn.2S and FCVTL2 Vd.2D, Vn.4S (the upper two lanes); FCVTL
// Vd.4S, Vn.4H and FCVTL2 Vd.4S, Vn.8H (halves to float32); SHLL Vd.4S, Vn.4H, #16 (BF16 to
// float32: USHLL's shift stops at 15).
#define FCVTL_D(n, d) WORD $(0x0E617800 | ((n)<<5) | (d))
#define FCVTL2_D(n, d) WORD $(0x4E617800 | ((n)<<5) | (d))
#define FCVTL_S(n, d) WORD $(0x0E217800 | ((n)<<5) | (d))
#define FCVTL2_S(n, d) WORD $(0x4E217800 | ((n)<<5) | (d))
#define SHLL16(n, d) WORD $(0x2E613800 | ((n)<<5) | (d))
#define SHLL2_16(n, d) WORD $(0x6E613800 | ((n)<<5) | (d))

// Float32 to halves, ties to even under the default rounding mode: FCVTN Vd.4H, Vn.4S and
// FCVTN2 Vd.8H, Vn.4S (the upper four).
#define FCVTN_H(n, d) WORD $(0x0E216800 | ((n)<<5) | (d))
#define FCVTN2_H(n, d) WORD $(0x4E216800 | ((n)<<5) | (d))

// Vd.4S += Vn.4S · Vm.4S (int32, wrapping).
#define MLA4S(m, n, d) WORD $(0x4EA09400 | ((m)<<16) | ((n)<<5) | (d))

// Widening int16 products into int32 lanes: SMULL Vd.4S = Vn.4H · Vm.4H (the low halves),
// SMLAL adds them, SMLAL2 adds those of the upper halves (Vn.8H, Vm.8H).
#define SMULL4S(m, n, d) WORD $(0x0E60C000 | ((m)<<16) | ((n)<<5) | (d))
#define SMLAL4S(m, n, d) WORD $(0x0E608000 | ((m)<<16) | ((n)<<5) | (d))
#define SMLAL2_4S(m, n, d) WORD $(0x4E608000 | ((m)<<16) | ((n)<<5) | (d))

// Zero-extend bytes to int16: Vd.8H = Vn's low (UXTL) or high (UXTL2) eight bytes.
#define UXTL8H(n, d) WORD $(0x2F08A400 | ((n)<<5) | (d))
#define UXTL2_8H(n, d) WORD $(0x6F08A400 | ((n)<<5) | (d))

// Widen int16 lanes to int32 (UXTL zero-, SXTL sign-extending; *2 the upper four), and bytes
// to int16 signed.
#define UXTL4S(n, d) WORD $(0x2F10A400 | ((n)<<5) | (d))
#define UXTL2_4S(n, d) WORD $(0x6F10A400 | ((n)<<5) | (d))
#define SXTL8H(n, d) WORD $(0x0F08A400 | ((n)<<5) | (d))
#define SXTL2_8H(n, d) WORD $(0x4F08A400 | ((n)<<5) | (d))
#define SXTL4S(n, d) WORD $(0x0F10A400 | ((n)<<5) | (d))
#define SXTL2_4S(n, d) WORD $(0x4F10A400 | ((n)<<5) | (d))

// MLA Vd.4S, Vn.4S, Vm.S[i]: Vd += Vn times lane i of Vm (int32).
#define MLA4S_LANE(m, i, n, d) WORD $(0x6F800000 | (((i)&1)<<21) | (((m)>>4)<<20) | (((m)&15)<<16) | (((i)>>1)<<11) | ((n)<<5) | (d))

// dst = the lane sums of a, b, c and d (int32, one to a lane, in that order) by three pairwise
// adds; a and t are overwritten (t may be c).
#define LANES4(a, b, c, d, t, dst) \
	VADDP b.S4, a.S4, a.S4; \
	VADDP d.S4, c.S4, t.S4; \
	VADDP t.S4, a.S4, dst.S4

// SCVTF Vd.4S, Vn.4S: int32 lanes to float32.
#define SCVTF4S(n, d) WORD $(0x4E21D800 | ((n)<<5) | (d))

// The four accumulators of eight float32 lanes of dotF16Go and dotF32Go (accumulator j's
// lanes 0-3 in V(16+2j), 4-7 in V(17+2j)) set to zero (ACC8_ZERO), and reduced in reduce4's
// order into the float32 result F0 (REDUCE4_F0): x = (acc0 + acc2) + (acc1 + acc3), lanes 0-3
// in V24 and 4-7 in V26; t = x_lo + x_hi; (t0 + t1) + (t2 + t3).
#define ACC8_ZERO \
	VEOR V16.B16, V16.B16, V16.B16; \
	VEOR V17.B16, V17.B16, V17.B16; \
	VEOR V18.B16, V18.B16, V18.B16; \
	VEOR V19.B16, V19.B16, V19.B16; \
	VEOR V20.B16, V20.B16, V20.B16; \
	VEOR V21.B16, V21.B16, V21.B16; \
	VEOR V22.B16, V22.B16, V22.B16; \
	VEOR V23.B16, V23.B16, V23.B16

#define REDUCE4_F0 \
	FADD4S(20, 16, 24); \
	FADD4S(22, 18, 25); \
	FADD4S(25, 24, 24); \
	FADD4S(21, 17, 26); \
	FADD4S(23, 19, 27); \
	FADD4S(27, 26, 26); \
	FADD4S(26, 24, 24); \
	FADDP4S(24, 24, 24); \
	FADDP_S(24, 0)
