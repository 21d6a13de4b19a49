// The frame of the arm64 four-column kernels, func(x, y *byte, ystride, nb int, out *float32):
// R0 = x; R19-R22 = the four activation rows, ystride bytes apart; R2 = nb; R23 = out; the
// four float totals F24-F27 = 0 (R5 scratch).
#define X4_ARGS \
	MOVD  x+0(FP), R0; \
	MOVD  y+8(FP), R19; \
	MOVD  ystride+16(FP), R5; \
	MOVD  nb+24(FP), R2; \
	MOVD  out+32(FP), R23; \
	ADD   R5, R19, R20; \
	ADD   R5, R20, R21; \
	ADD   R5, R21, R22; \
	FMOVS $(0.0), F24; \
	FMOVS $(0.0), F25; \
	FMOVS $(0.0), F26; \
	FMOVS $(0.0), F27

// On to the next block: wb weight bytes, ab bytes of each activation row; the flags count nb.
#define X4_NEXT(wb, ab) \
	ADD  $(wb), R0; \
	ADD  $(ab), R19; \
	ADD  $(ab), R20; \
	ADD  $(ab), R21; \
	ADD  $(ab), R22; \
	SUBS $1, R2

#define X4_STORE \
	FMOVS F24, (R23); \
	FMOVS F25, 4(R23); \
	FMOVS F26, 8(R23); \
	FMOVS F27, 12(R23)

// The frame of the arm64 four-row kernels, func(x *byte, stride int, y *byte, nb int, out
// *float32): R0-R3 = the four rows, R4 = y, R5 = nb, R6 = out; V20 = the four sums (zero).
#define R4_ARGS \
	MOVD x+0(FP), R0; \
	MOVD stride+8(FP), R9; \
	MOVD y+16(FP), R4; \
	MOVD nb+24(FP), R5; \
	MOVD out+32(FP), R6; \
	ADD  R9, R0, R1; \
	ADD  R9, R1, R2; \
	ADD  R9, R2, R3; \
	VEOR V20.B16, V20.B16, V20.B16

// On to the next block: wb bytes of each weight row, ab of the activations; the flags count nb.
#define R4_NEXT(wb, ab) \
	ADD  $(wb), R0; \
	ADD  $(wb), R1; \
	ADD  $(wb), R2; \
	ADD  $(wb), R3; \
	ADD  $(ab), R4; \
	SUBS $1, R5
