package kernels

// Packed Q5_K (see Packed): packed Q4_K's layout with the fifth bits added. Per panel of 16
// rows, each super-block takes packedBlock5 bytes (180 a row against the file's 176):
//   - the low four bits, 2048 bytes, as packed Q4_K's quants but all together (group g < 32 of
//     four bytes, row r's qs bytes 4g..4g+3 at 64g+4r);
//   - the fifth bits, 512 bytes: for g' < 8, row r's qh bytes 4g'..4g'+3 at 2048+64g'+4r, as in
//     the file. Bit 2j of qh byte l is the fifth bit of element l of sub-block 2j (a low
//     nibble of group 8j+l/4), bit 2j+1 that of sub-block 2j+1 (its high nibble), so one
//     64-byte vector serves group g' of all four chunks: a shift by a constant brings the
//     chunk's bit to bit 4 of every byte;
//   - the 6-bit scales and mins unpacked to bytes and the fp16 d and dmin (q5kScales): scale s
//     of row r at 2560+16s+r, the mins of sub-blocks 2k, 2k+1 at 2688+32k+2r, +1, d at
//     2816+2r, dmin at 2848+2r.
//
// Arithmetic (dotPackedQ5K is its Go twin): packed Q4_K's, with 5-bit quants q: the exact
// sumi = Σ_s sc_s·Σ q·y and msum = Σ_s m_s·(bsum of sub-block s), then acc = fma(float32(sumi),
// d·yd, acc) and acc = fma(-float32(msum), dmin·yd, acc). The prepared activations are
// Q4_K's (prepPackedActK).

const packedBlock5 = 2880

// q5kScales places packed Q5_K's scales, mins, d and dmin after the fifth bits, in that order.
var q5kScales = kScales{lo: [2]int{2560, 2624}, tail: 2560}

// putBlockQ5K writes a Q5_K super-block (the file's 176 bytes x) as row i of a packed one.
func putBlockQ5K(blk []byte, i int, x []byte) {
	for g := 0; g < 32; g++ {
		copy(blk[64*g+4*i:64*g+4*i+4], x[48+4*g:])
	}
	for g := 0; g < 8; g++ {
		copy(blk[2048+64*g+4*i:2048+64*g+4*i+4], x[16+4*g:])
	}
	putScalesK(blk, q5kScales, i, x)
}

// unpackBlockQ5K writes row i of a packed super-block back in the file's layout (176 bytes).
func unpackBlockQ5K(blk []byte, i int, x []byte) {
	unpackScalesK(blk, q5kScales, i, x)
	for g := 0; g < 8; g++ {
		copy(x[16+4*g:20+4*g], blk[2048+64*g+4*i:])
	}
	for g := 0; g < 32; g++ {
		copy(x[48+4*g:52+4*g], blk[64*g+4*i:])
	}
}

// dotPackedQ5K is the packed Q5_K kernels' arithmetic in Go, for one panel (nb super-blocks)
// and one prepared activation row.
func dotPackedQ5K(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	dotPackedKMins(panel, nb, prep, out, packedBlock5, q5kScales, func(blk []byte, i, s, e int) int32 {
		v := blk[64*(8*(s/2)+e/4)+4*i+e%4]
		q := v & 0x0f
		if s%2 == 1 {
			q = v >> 4
		}
		return int32(q | (blk[2048+64*(e/4)+4*i+e%4]>>s&1)<<4)
	})
}
