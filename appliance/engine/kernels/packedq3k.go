package kernels

import (
	"encoding/binary"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Packed Q3_K (see Packed): the mainstay of the Q3_K_* files and part of Q2_K's, for models
// cut down to fit machines that could not hold them otherwise. Per panel of 16 rows, each
// super-block holds 256 elements of every row.
// Quant byte l of half n (qs[32n+l]) holds in bits 2j..2j+1 element 128n+32j+l, whose high
// bit is bit 4n+j of high-bit byte l (hmask[l]); element e is in sub-block e/16. Per group
// g < 8 of four bytes (l = 4g..4g+3), 64 bytes hold those bytes of all rows (row r's at 4r):
// H(g) of the high-bit bytes, W(n, g) of the quant bytes of half n. The 16 scales, unpacked from
// their 6 bits to int8 (minus 32 applied), take 16 bytes a sub-block (row r's at r). For
// h < 2 (g = 4h..4h+3), in the order the kernels read them, so that a panel streams as one run:
// H(g) and W(0, g) for each g, the scales of sub-blocks 2j+h (j < 4), W(1, g) for each g, the
// scales of sub-blocks 8+2j+h: 896 bytes (q3kHOff, q3kWOff, q3kScOff). Then the rows' fp16 d
// (row r's at 1792+2r) and 32 bytes of zeros, which keep super-blocks on cache lines: 1856
// bytes, 116 a row.
//
// Arithmetic (dotPackedQ3K is its Go twin), per row and super-block: the exact integer
// sumi = Σ_s sc_s·(Σ_{e∈s} u_e·y_e - 4·bsum_s) over the 16 sub-blocks s of 16 elements, with u
// the unsigned 3-bit quants (quant bits | high bit·4: the file's value plus 4), then
// acc = fma(float32(sumi), d·yd, acc), d·yd rounded to float32 first.

// q3kBlock is the size of a packed Q3_K super-block.
const q3kBlock = 1856

// q3kHOff is the offset of H(g) in a packed Q3_K super-block.
func q3kHOff(g int) int { return 896*(g/4) + 128*(g%4) }

// q3kWOff is the offset of W(n, g).
func q3kWOff(n, g int) int {
	if n == 0 {
		return q3kHOff(g) + 64
	}
	return 896*(g/4) + 576 + 64*(g%4)
}

// q3kScOff is the offset of the scales of sub-block s.
func q3kScOff(s int) int { return 896*(s%2) + 512 + 320*(s/8) + 16*(s%8/2) }

// q3SetScale stores the signed 6-bit scale v (-32..31) as scale j of a Q3_K super-block's 12
// scale bytes sc, which must hold zeros where it goes (q3Scale reads it back).
func q3SetScale(sc []byte, j, v int) {
	u := uint8(v + 32)
	if j < 8 {
		sc[j] |= u & 0x0f
	} else {
		sc[j-8] |= (u & 0x0f) << 4
	}
	sc[8+j%4] |= (u >> 4) << (2 * (j / 4))
}

// putQ3K writes a Q3_K super-block (the file's 110 bytes x) as row i of block b of a panel.
func putQ3K(panel []byte, nb, i, b int, x []byte) {
	blk := panel[q3kBlock*b:]
	for g := 0; g < 8; g++ {
		copy(blk[q3kHOff(g)+4*i:q3kHOff(g)+4*i+4], x[4*g:])
		copy(blk[q3kWOff(0, g)+4*i:q3kWOff(0, g)+4*i+4], x[32+4*g:])
		copy(blk[q3kWOff(1, g)+4*i:q3kWOff(1, g)+4*i+4], x[64+4*g:])
	}
	for s := 0; s < 16; s++ {
		blk[q3kScOff(s)+i] = byte(int8(q3Scale(x[96:108], s)))
	}
	copy(blk[1792+2*i:], x[108:110])
}

// unpackQ3K returns block b of row i of a Q3_K panel in the file's layout.
func unpackQ3K(panel []byte, nb, i, b int) (x fileBlockBytes) {
	blk := panel[q3kBlock*b:]
	for g := 0; g < 8; g++ {
		copy(x[4*g:4*g+4], blk[q3kHOff(g)+4*i:])
		copy(x[32+4*g:36+4*g], blk[q3kWOff(0, g)+4*i:])
		copy(x[64+4*g:68+4*g], blk[q3kWOff(1, g)+4*i:])
	}
	for s := 0; s < 16; s++ {
		q3SetScale(x[96:108], s, int(int8(blk[q3kScOff(s)+i])))
	}
	copy(x[108:110], blk[1792+2*i:])
	return x
}

// prepPackedAct3 writes the prepared form of nb Q8_K activation super-blocks (packedAct6 bytes
// each, as Q6_K's) for packed Q3_K weights: the offset term of sub-block j is -4·bsum_j
// (negative, as Q6_K's, so that the eight-column kernel starts each sum from it); the AVX2
// kernels' int16 bsum_j follow in sub-block order from byte 324.
func prepPackedAct3(act []byte, nb int, dst []byte) {
	prepQ8K(ggml.Q3_K, act, nb, dst, packedAct6, func(y, d []byte) {
		for j := 0; j < 16; j++ {
			binary.LittleEndian.PutUint32(d[260+4*j:], uint32(int32(-4*q8kBsum(y, j))))
			binary.LittleEndian.PutUint16(d[324+2*j:], uint16(int16(q8kBsum(y, j))))
		}
		clear(d[356:])
	})
}

// dotPackedQ3K is the packed Q3_K kernels' arithmetic in Go, for one panel (nb super-blocks)
// and one prepared activation row.
func dotPackedQ3K(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			x := unpackQ3K(panel, nb, i, b)
			y := prep[packedAct6*b : packedAct6*(b+1)]
			var sumi int32
			for s := 0; s < 16; s++ {
				var sum int32
				for e := 16 * s; e < 16*s+16; e++ {
					n, j, l := e/128, e%128/32, e%32
					u := x[32+32*n+l]>>(2*j)&3 | (x[l]>>(4*n+j)&1)<<2
					sum += int32(u) * int32(int8(y[e]))
				}
				c := int32(binary.LittleEndian.Uint32(y[260+4*s:]))
				sumi += int32(q3Scale(x[96:108], s)) * (sum + c)
			}
			yd := math.Float32frombits(binary.LittleEndian.Uint32(y[256:]))
			d := float32(F16ToF32(binary.LittleEndian.Uint16(x[108:])) * yd)
			acc = fma32x(float32(sumi), d, acc)
		}
		out[i] = acc
	}
}
