package kernels

// Packed Q5_K (see Packed): packed Q4_K's layout with the fifth bits added in front. Per panel
// of 16 rows, each super-block takes packedBlock5 bytes (180 a row against the file's 176), in
// the order the one-column kernel reads them, so that a panel streams from memory as one run
// (with the fifth bits after all the quants, which chunk 0 read line by line beside its own,
// and the scales after them, that kernel streamed at 68-72% of a plain read of the same
// memory; in order at 93-96%):
//   - the fifth bits, 512 bytes: for g' < 8, row r's qh bytes 4g'..4g'+3 at 64g'+4r, as in the
//     file. Bit 2j of qh byte l is the fifth bit of element l of sub-block 2j (a low nibble
//     of group 8j+l/4), bit 2j+1 that of sub-block 2j+1 (its high nibble), so one 64-byte
//     vector serves group g' of all four chunks: a shift by a constant brings the chunk's bit
//     to bit 4 of every byte;
//   - the low four bits as packed Q4_K's quants, 512 bytes on (group g < 32 of four bytes, row
//     r's qs bytes 4g..4g+3 at q5kGroup(g)+4r): groups 0-15, the scales of sub-blocks 0-3,
//     groups 16-31, the scales of sub-blocks 4-7;
//   - the 6-bit scales and mins unpacked to bytes and the fp16 d and dmin (q5kScales): scale s
//     of row r at 1536+16s+r (s < 4) and 2560+16s+r (s >= 4), the mins of sub-blocks 2k,
//     2k+1 at 2688+32k+2r, +1, d at 2816+2r, dmin at 2848+2r.
//
// Arithmetic (dotPackedQ5K is its Go twin): packed Q4_K's, with 5-bit quants q: the exact
// sumi = Σ_s sc_s·Σ q·y and msum = Σ_s m_s·(bsum of sub-block s), then acc = fma(float32(sumi),
// d·yd, acc) and acc = fma(-float32(msum), dmin·yd, acc). The prepared activations are
// Q4_K's (prepPackedActK).

const packedBlock5 = 2880

// q5kScales places packed Q5_K's scales: sub-blocks 0-3 after quant group 15, 4-7 after 31.
var q5kScales = kScales{lo: [2]int{1536, 2624}, tail: 2560}

// q5kGroup is the offset of quant group g (its low four bits) in a packed Q5_K super-block.
func q5kGroup(g int) int { return 512 + q4kGroup(g) }

// putBlockQ5K writes a Q5_K super-block (the file's 176 bytes x) as row i of a packed one.
func putBlockQ5K(blk []byte, i int, x []byte) {
	for g := 0; g < 32; g++ {
		copy(blk[q5kGroup(g)+4*i:q5kGroup(g)+4*i+4], x[48+4*g:])
	}
	for g := 0; g < 8; g++ {
		copy(blk[64*g+4*i:64*g+4*i+4], x[16+4*g:])
	}
	putScalesK(blk, q5kScales, i, x)
}

// unpackBlockQ5K writes row i of a packed super-block back in the file's layout (176 bytes).
func unpackBlockQ5K(blk []byte, i int, x []byte) {
	unpackScalesK(blk, q5kScales, i, x)
	for g := 0; g < 8; g++ {
		copy(x[16+4*g:20+4*g], blk[64*g+4*i:])
	}
	for g := 0; g < 32; g++ {
		copy(x[48+4*g:52+4*g], blk[q5kGroup(g)+4*i:])
	}
}

// dotPackedQ5K is the packed Q5_K kernels' arithmetic in Go, for one panel (nb super-blocks)
// and one prepared activation row.
func dotPackedQ5K(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	dotPackedKMins(panel, nb, prep, out, packedBlock5, q5kScales, func(blk []byte, i, s, e int) int32 {
		v := blk[q5kGroup(8*(s/2)+e/4)+4*i+e%4]
		q := v & 0x0f
		if s%2 == 1 {
			q = v >> 4
		}
		return int32(q | (blk[64*(e/4)+4*i+e%4]>>s&1)<<4)
	})
}
