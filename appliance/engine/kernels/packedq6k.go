package kernels

import (
	"encoding/binary"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Packed Q6_K (see Packed). Per panel of 16 rows, each super-block (256 elements of every row)
// takes packedBlock6 bytes, no more than the file's 210 a row but for 2 bytes of padding that
// keep every super-block on a cache line. The pieces lie in the order the kernels read them, so
// that a panel streams from memory as one run:
//   - ql group g < 32 (64 bytes: row r's ql bytes 4g..4g+3 at 4r). Group g = 16n+g' (half n of
//     the super-block) holds in its low nibbles the low bits of elements 128n+4g'.., in its
//     high nibbles those of elements 128n+64+4g'..
//   - the high bits h = 8n+g' (g' < 8) of the pair of ql groups A = 16n+g' and B = A+8 (64
//     bytes: row r's four bytes at 4r), the file's qh[32n+4g'..] with each byte's bit pairs
//     reordered to (B low, B high, A low, A high) from bit 0: so that A's low elements take
//     their pair in place (bits 4-5: value·16) and its high elements in place too (bits 6-7)
//     once their nibble is shifted to bits 2-5, which makes 4·q; B's the same after one shift
//     of the pairs by 4.
//   - the scales j (16 bytes: row r's int8 scale at r) and the fp16 d (row r at 2r).
// Quad Q = 2n+q (q < 2) is the pairs g' = 4q..4q+3 of half n, each as A, B, their high bits
// (192 bytes), then the scales of its four sub-blocks 8n+q, 8n+2+q, 8n+4+q, 8n+6+q: 832 bytes
// (q6kQLOff, q6kQHOff, q6kScOff). The four quads, then d, then 32 bytes of zeros.
//
// Arithmetic (dotPackedQ6K is its Go twin), per row and super-block: the exact integer
// sumi = Σ_j sc_j·(Σ_{e∈j} q_e·y_e - 32·bsum_j) over the 16 sub-blocks j of 16 elements (q the
// unsigned 6-bit quants), then acc = fma(float32(sumi), d·yd, acc), d·yd rounded to float32
// first. The kernels form the sums of the upper half of each 128 (high nibbles) as 4·q·y and
// shift each scaled sub-block sum down by 2, exactly (the eight-column kernel scales the other
// sums by 4·sc_j instead and shifts the super-block's total once).

const (
	packedBlock6 = 3392
	// packedAct6 is the prepared activation super-block of packed Q6_K products: the 256
	// quants, the scale as float32, per sub-block j the int32 offset term c_j (-32·bsum_j, or
	// -128·bsum_j for the sub-blocks summed as 4·q·y: negative, so that the eight-column kernel
	// starts each sum from it), then for the AVX2 kernels the int16 bsum_j of each quad's
	// sub-blocks in the quad's order (q6kQuadSubs, from byte 324), padding to a cache line's
	// multiple.
	packedAct6 = 384
)

// q6kQLOff is the offset of ql group g in a packed Q6_K super-block.
func q6kQLOff(g int) int {
	n, gp := g/16, g%16
	off := 0
	if gp >= 8 {
		gp, off = gp-8, 64
	}
	return 832*(2*n+gp/4) + 192*(gp%4) + off
}

// q6kQHOff is the offset of the high bits of ql group pair h = 8n+g'.
func q6kQHOff(h int) int {
	n, gp := h/8, h%8
	return 832*(2*n+gp/4) + 192*(gp%4) + 128
}

// q6kScOff is the offset of the scales of sub-block j.
func q6kScOff(j int) int {
	n, r := j/8, j%8
	return 832*(2*n+r%2) + 768 + 16*(r/2)
}

// q6kQuadSubs are the sub-blocks of each quad, in the order of its scales (A low, B low, A
// high, B high).
var q6kQuadSubs = [4][4]int{{0, 2, 4, 6}, {1, 3, 5, 7}, {8, 10, 12, 14}, {9, 11, 13, 15}}

// q6kSubHigh reports whether sub-block j of a Q6_K super-block holds high-nibble elements
// (summed as 4·q·y by the kernels).
func q6kSubHigh(j int) bool { return j%8 >= 4 }

// q6kReorderHigh reorders the bit pairs of a file qh byte (A low, B low, A high, B high from
// bit 0, for the elements of ql groups A and B = A+8) to the packed order (B low, B high, A low,
// A high); q6kRestoreHigh undoes it.
func q6kReorderHigh(x byte) byte {
	return (x>>2)&3 | ((x>>6)&3)<<2 | (x&3)<<4 | ((x>>4)&3)<<6
}

func q6kRestoreHigh(x byte) byte {
	return (x>>4)&3 | (x&3)<<2 | ((x>>6)&3)<<4 | ((x>>2)&3)<<6
}

// putBlockQ6K writes a Q6_K super-block (the file's 210 bytes x) as row i of a packed one.
func putBlockQ6K(blk []byte, i int, x []byte) {
	for g := 0; g < 32; g++ {
		copy(blk[q6kQLOff(g)+4*i:q6kQLOff(g)+4*i+4], x[4*g:4*g+4])
	}
	for h := 0; h < 16; h++ {
		for e := 0; e < 4; e++ {
			blk[q6kQHOff(h)+4*i+e] = q6kReorderHigh(x[128+4*h+e])
		}
	}
	for j := 0; j < 16; j++ {
		blk[q6kScOff(j)+i] = x[192+j]
	}
	copy(blk[3328+2*i:3328+2*i+2], x[208:210])
}

// unpackBlockQ6K writes row i of a packed super-block back in the file's layout (210 bytes).
func unpackBlockQ6K(blk []byte, i int, x []byte) {
	for g := 0; g < 32; g++ {
		copy(x[4*g:4*g+4], blk[q6kQLOff(g)+4*i:])
	}
	for h := 0; h < 16; h++ {
		for e := 0; e < 4; e++ {
			x[128+4*h+e] = q6kRestoreHigh(blk[q6kQHOff(h)+4*i+e])
		}
	}
	for j := 0; j < 16; j++ {
		x[192+j] = blk[q6kScOff(j)+i]
	}
	copy(x[208:210], blk[3328+2*i:])
}

// prepPackedAct6 writes the prepared form of nb Q8_K activation super-blocks (packedAct6 bytes
// each) to dst.
func prepPackedAct6(act []byte, nb int, dst []byte) {
	prepQ8K(ggml.Q6_K, act, nb, dst, packedAct6, func(y, d []byte) {
		for j := 0; j < 16; j++ {
			c := -32 * q8kBsum(y, j)
			if q6kSubHigh(j) {
				c *= 4
			}
			binary.LittleEndian.PutUint32(d[260+4*j:], uint32(int32(c)))
		}
		for quad, subs := range q6kQuadSubs {
			for k, j := range subs {
				binary.LittleEndian.PutUint16(d[324+8*quad+2*k:], uint16(int16(q8kBsum(y, j))))
			}
		}
		clear(d[356:])
	})
}

// dotPackedQ6K is the packed Q6_K kernels' arithmetic in Go, for one panel (nb super-blocks)
// and one prepared activation row.
func dotPackedQ6K(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	var x [210]byte
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			blk, y := panel[b*packedBlock6:], prep[packedAct6*b:packedAct6*(b+1)]
			unpackBlockQ6K(blk, i, x[:])
			var sumi int32
			for j := 0; j < 16; j++ {
				var s int32
				for k := 0; k < 16; k++ {
					s += int32(q6kQuant(x[:], 16*j+k)) * int32(int8(y[16*j+k]))
				}
				c := int32(binary.LittleEndian.Uint32(y[260+4*j:]))
				if q6kSubHigh(j) {
					sumi += (4*s + c) * int32(int8(x[192+j])) >> 2
				} else {
					sumi += (s + c) * int32(int8(x[192+j]))
				}
			}
			yd := math.Float32frombits(binary.LittleEndian.Uint32(y[256:]))
			d := float32(F16ToF32(binary.LittleEndian.Uint16(x[208:])) * yd)
			acc = fma32x(float32(sumi), d, acc)
		}
		out[i] = acc
	}
}

// q6kQuant is the unsigned 6-bit quant of element e of a Q6_K block in the file's layout.
func q6kQuant(x []byte, e int) byte {
	n, k, l := e/128, e%128/32, e%32
	ql, qh := x[64*n:], x[128+32*n:]
	var lo byte
	switch k {
	case 0:
		lo = ql[l] & 0x0f
	case 1:
		lo = ql[l+32] & 0x0f
	case 2:
		lo = ql[l] >> 4
	case 3:
		lo = ql[l+32] >> 4
	}
	return lo | (qh[l]>>(2*k)&3)<<4
}
