package kernels

import (
	"encoding/binary"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Packed Q2_K (see Packed), the smallest K-quant, which Q2_K files hold most of their weight
// in. Per panel of 16 rows, each super-block (256 elements of every row) has its pieces in
// the order the kernels read them. Quant byte l of half n (qs[32n+l]) holds in
// bits 2j..2j+1 element 128n+32j+l, of sub-block s = 8n+2j+l/16; scale byte s holds its scale
// (low nibble) and min (high nibble). Per quarter Q = 2h+n (h < 2; g = 4h..4h+3, sub-blocks
// 8n+2j+h): for k < 4, the quant bytes 4g..4g+3 of half n
// of all rows (64 bytes, row r's at 4r; g = 4h+k), then two pairs of scale bytes, of
// sub-blocks 8n+h, 8n+2+h and of 8n+4+h, 8n+6+h (32 bytes each, row r's two at 2r): 320 bytes
// (q2kWOff, q2kScOff). Then the rows' fp16 d and dmin (row r's d at 1280+2r, its dmin at
// 1312+2r): 1344 bytes, 84 a row as in the file, and a panel streams as one run.
//
// Arithmetic (dotPackedQ2K is its Go twin), per row and super-block: the exact integer sums
// sumi = Σ_s sc_s·Σ_{e∈s} q_e·y_e and msum = Σ_s m_s·bsum_s, then acc = fma(float32(sumi),
// d·yd, acc) and acc = fma(-float32(msum), dmin·yd, acc), the products of scales rounded to
// float32 first (packed Q4_K's). The prepared activations hold the sub-block sums as int16
// in the pairs of the scale bytes (q2kBsumOff), for VPDPWSSD with the mins.

const (
	q2kBlock = 1344 // bytes of a packed Q2_K super-block
	// packedAct2 is the prepared activation super-block of packed Q2_K products: the 256
	// quants, the scale as float32, the sixteen sub-block sums as int16, padding to a cache
	// line's multiple.
	packedAct2 = 320
)

// q2kWOff is the offset of the quant bytes 4g..4g+3 of half n in a packed Q2_K super-block.
func q2kWOff(n, g int) int { return 320*(2*(g/4)+n) + 64*(g%4) }

// q2kScOff is the offset of the scale byte of sub-block s of row 0 (row r's is 2r on).
func q2kScOff(s int) int {
	n, j, h := s/8, s%8/2, s%2
	return 320*(2*h+n) + 256 + 32*(j/2) + j%2
}

// q2kBsumOff is the offset of the sum of sub-block s in a prepared activation super-block.
func q2kBsumOff(s int) int {
	n, j, h := s/8, s%8/2, s%2
	return 260 + 8*(2*h+n) + 2*j
}

// putQ2K writes a Q2_K super-block (the file's 84 bytes x) as row i of block b of a panel.
func putQ2K(panel []byte, nb, i, b int, x []byte) {
	blk := panel[q2kBlock*b:]
	for n := 0; n < 2; n++ {
		for g := 0; g < 8; g++ {
			copy(blk[q2kWOff(n, g)+4*i:q2kWOff(n, g)+4*i+4], x[16+32*n+4*g:])
		}
	}
	for s := 0; s < 16; s++ {
		blk[q2kScOff(s)+2*i] = x[s]
	}
	t := blk[1280:]
	copy(t[2*i:2*i+2], x[80:82])
	copy(t[32+2*i:32+2*i+2], x[82:84])
}

// unpackQ2K returns block b of row i of a Q2_K panel in the file's layout.
func unpackQ2K(panel []byte, nb, i, b int) (x fileBlockBytes) {
	blk := panel[q2kBlock*b:]
	for n := 0; n < 2; n++ {
		for g := 0; g < 8; g++ {
			copy(x[16+32*n+4*g:20+32*n+4*g], blk[q2kWOff(n, g)+4*i:])
		}
	}
	for s := 0; s < 16; s++ {
		x[s] = blk[q2kScOff(s)+2*i]
	}
	t := blk[1280:]
	copy(x[80:82], t[2*i:])
	copy(x[82:84], t[32+2*i:])
	return x
}

// prepPackedAct2 writes the prepared form of nb Q8_K activation super-blocks (packedAct2 bytes
// each) for packed Q2_K weights.
func prepPackedAct2(act []byte, nb int, dst []byte) {
	prepQ8K(ggml.Q2_K, act, nb, dst, packedAct2, func(y, d []byte) {
		for s := 0; s < 16; s++ {
			binary.LittleEndian.PutUint16(d[q2kBsumOff(s):], uint16(int16(q8kBsum(y, s))))
		}
		clear(d[292:])
	})
}

// dotPackedQ2K is the packed Q2_K kernels' arithmetic in Go, for one panel (nb super-blocks)
// and one prepared activation row.
func dotPackedQ2K(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			x := unpackQ2K(panel, nb, i, b)
			y := prep[packedAct2*b : packedAct2*(b+1)]
			var sumi, msum int32
			for s := 0; s < 16; s++ {
				var sum int32
				for e := 16 * s; e < 16*s+16; e++ {
					n, j, l := e/128, e%128/32, e%32
					sum += int32(x[16+32*n+l]>>(2*j)&3) * int32(int8(y[e]))
				}
				sumi += int32(x[s]&0x0f) * sum
				msum += int32(x[s]>>4) * int32(int16(binary.LittleEndian.Uint16(y[q2kBsumOff(s):])))
			}
			yd := math.Float32frombits(binary.LittleEndian.Uint32(y[256:]))
			d := float32(F16ToF32(binary.LittleEndian.Uint16(x[80:])) * yd)
			dmin := float32(F16ToF32(binary.LittleEndian.Uint16(x[82:])) * yd)
			acc = fma32x(float32(sumi), d, acc)
			acc = fma32x(-float32(msum), dmin, acc)
		}
		out[i] = acc
	}
}
