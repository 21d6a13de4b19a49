package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Packed Q4_K (see Packed). Per panel of 16 rows, each super-block (256 elements of every row)
// takes packedBlockK bytes, in the order the one-column kernel reads them, so that a panel
// streams from memory as one run (with every chunk's scales after all the quants, that kernel
// streamed at 91% of Q4_0's speed from the same memory; in order as fast as Q4_0's):
//   - quant group g < 32 (64 bytes: row r's bytes 4g..4g+3 at 4r) at q4kGroup(g): groups 0-15,
//     the scales of sub-blocks 0-3, groups 16-31, the scales of sub-blocks 4-7. Group g holds
//     elements 4(g mod 8).. of sub-blocks 2(g/8) (low nibbles) and 2(g/8)+1 (high nibbles);
//   - the 6-bit scales and mins unpacked to bytes (q4kScales): scale s of row r at 1024+16s+r
//     (s < 4) and 2048+16s+r (s >= 4); the mins of sub-blocks 2k, 2k+1 at 2176+32k+2r, +1;
//   - then the fp16 d and dmin (2304+2r, 2336+2r).
// Unpacking the scales once here saves the kernels more than the 4 bytes a row a super-block
// more they read.
//
// Arithmetic (dotPackedQ4K is its Go twin), per row and super-block: the exact integer sums
// sumi = Σ_s sc_s·Σ q·y and msum = Σ_s m_s·(bsum_2s + bsum_2s+1) over the sub-blocks s, then
// acc = fma(float32(sumi), d·yd, acc) and acc = fma(-float32(msum), dmin·yd, acc), both
// products of scales rounded to float32 first.

const (
	packedBlockK = 2368
	// packedActK is the prepared activation super-block of packed Q4_K products: the 256
	// quants, the scale as float32, the sums of the eight sub-blocks' quants as int16 (from
	// the sixteen group sums), padding to a cache line's multiple.
	packedActK = 288
)

// q4kScales places packed Q4_K's scales: sub-blocks 0-3 after quant group 15, 4-7 after 31.
var q4kScales = kScales{lo: [2]int{1024, 2112}, tail: 2048}

// q4kGroup is the offset of quant group g in a packed Q4_K super-block.
func q4kGroup(g int) int { return 64*g + 64*(g/16) }

// putBlockQ4K writes a Q4_K super-block (the file's 144 bytes x) as row i of a packed one.
func putBlockQ4K(blk []byte, i int, x []byte) {
	for g := 0; g < 32; g++ {
		le.PutUint32(blk[q4kGroup(g)+4*i:], le.Uint32(x[16+4*g:]))
	}
	putScalesK(blk, q4kScales, i, x)
}

// unpackBlockQ4K writes row i of a packed super-block back in the file's layout (144 bytes).
func unpackBlockQ4K(blk []byte, i int, x []byte) {
	unpackScalesK(blk, q4kScales, i, x)
	for g := 0; g < 32; g++ {
		copy(x[16+4*g:20+4*g], blk[q4kGroup(g)+4*i:])
	}
}

// kScales says where a packed K-quant super-block with scales and mins (Q4_K, Q5_K) keeps
// them, unpacked to bytes: the scales of sub-blocks 4h..4h+3 at lo[h] (16 bytes a sub-block,
// row r's at r); the mins of sub-blocks 2k, 2k+1 at tail+128+32k (row r's at 2r, 2r+1), d at
// tail+256 and dmin at tail+288 (row r's at 2r). The kernels' finishing macros take tail.
type kScales struct {
	lo   [2]int
	tail int
}

// scale is the offset of row i's scale of sub-block s.
func (l kScales) scale(s, i int) int { return l.lo[s/4] + 16*(s%4) + i }

// min is the offset of row i's min of sub-block s.
func (l kScales) min(s, i int) int { return l.tail + 128 + 32*(s/2) + 2*i + s%2 }

// putScalesK writes the scales, mins, d and dmin of a Q4_K or Q5_K super-block x (the file's
// layout, which starts the same for both) as row i of the packed super-block blk, placed by l.
func putScalesK(blk []byte, l kScales, i int, x []byte) {
	for s := 0; s < 8; s++ {
		sc, m := getScaleMinK4(s, x[4:16])
		blk[l.scale(s, i)] = sc
		blk[l.min(s, i)] = m
	}
	copy(blk[l.tail+256+2*i:], x[0:2])
	copy(blk[l.tail+288+2*i:], x[2:4])
}

// unpackScalesK writes row i's scales, mins, d and dmin of the packed super-block blk, placed
// by l, back to the first 16 bytes of the file's layout, the scales and mins packed again to 6
// bits the way the quantizer does.
func unpackScalesK(blk []byte, l kScales, i int, x []byte) {
	copy(x[0:2], blk[l.tail+256+2*i:])
	copy(x[2:4], blk[l.tail+288+2*i:])
	var ls, lm [8]uint8
	for s := 0; s < 8; s++ {
		ls[s] = blk[l.scale(s, i)]
		lm[s] = blk[l.min(s, i)]
	}
	clear(x[4:16])
	packScalesK4(x[4:16], &ls, &lm)
}

// prepPackedActK writes the prepared form of nb Q8_K activation super-blocks (packedActK
// bytes each) to dst.
func prepPackedActK(act []byte, nb int, dst []byte) {
	prepQ8K(ggml.Q4_K, act, nb, dst, packedActK, func(y, d []byte) {
		for s := 0; s < 8; s++ {
			binary.LittleEndian.PutUint16(d[260+2*s:], uint16(int16(q8kBsum(y, 2*s)+q8kBsum(y, 2*s+1))))
		}
		clear(d[276:])
	})
}

// prepQ8K writes the prepared form of nb Q8_K activation super-blocks for packed t weights,
// size bytes each, to dst: the 256 quants, the scale as float32, then what rest writes from
// byte 260 on (the type's sums), given the super-block y and its prepared form d.
func prepQ8K(t ggml.Type, act []byte, nb int, dst []byte, size int, rest func(y, d []byte)) {
	if len(act) < 292*nb || len(dst) < size*nb {
		panic(fmt.Sprintf("kernels: packed %s activations of %d super-blocks from %d bytes into %d", t, nb, len(act), len(dst)))
	}
	for b := 0; b < nb; b++ {
		y, d := act[292*b:292*b+292], dst[size*b:size*(b+1)]
		copy(d[:256], y[4:260])
		copy(d[256:260], y[0:4])
		rest(y, d)
	}
}

// dotPackedQ4K is the packed Q4_K kernels' arithmetic in Go, for one panel (nb super-blocks)
// and one prepared activation row.
func dotPackedQ4K(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	dotPackedKMins(panel, nb, prep, out, packedBlockK, q4kScales, func(blk []byte, i, s, e int) int32 {
		v := blk[q4kGroup(8*(s/2)+e/4)+4*i+e%4]
		if s%2 == 1 {
			return int32(v >> 4)
		}
		return int32(v & 0x0f)
	})
}

// dotPackedKMins is the arithmetic of the packed K-quants with scales and mins (Q4_K, Q5_K):
// super-blocks of size bytes, their scales placed by l, and quant(blk, i, s, e) the unsigned
// quant of element e of sub-block s of row i.
func dotPackedKMins(panel []byte, nb int, prep []byte, out *[panelRows]float32, size int, l kScales, quant func(blk []byte, i, s, e int) int32) {
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			blk, y := panel[b*size:], prep[packedActK*b:packedActK*(b+1)]
			var sumi, msum int32
			for s := 0; s < 8; s++ {
				var dot int32
				for e := 0; e < 32; e++ {
					dot += quant(blk, i, s, e) * int32(int8(y[32*s+e]))
				}
				sumi += int32(blk[l.scale(s, i)]) * dot
				msum += int32(blk[l.min(s, i)]) * int32(int16(binary.LittleEndian.Uint16(y[260+2*s:])))
			}
			yd := math.Float32frombits(binary.LittleEndian.Uint32(y[256:]))
			d := float32(F16ToF32(binary.LittleEndian.Uint16(blk[l.tail+256+2*i:])) * yd)
			dmin := float32(F16ToF32(binary.LittleEndian.Uint16(blk[l.tail+288+2*i:])) * yd)
			acc = fma32x(float32(sumi), d, acc)
			acc = fma32x(-float32(msum), dmin, acc)
		}
		out[i] = acc
	}
}
