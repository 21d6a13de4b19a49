package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Packed Q4_K (see Packed). Per panel of 16 rows, each super-block (256 elements of every row)
// takes packedBlockK bytes: its quants (2048 bytes: for each group g < 32 of four quant bytes,
// row r's bytes 4g..4g+3 at 64g+4r; group g holds elements 4(g mod 8).. of sub-blocks 2(g/8)
// (low nibbles) and 2(g/8)+1 (high nibbles)), then the 6-bit scales and mins unpacked to bytes
// (scale s of row r at 2048+16s+r; mins of sub-blocks 2k, 2k+1 at 2176+32k+2r, +1), then the
// fp16 d and dmin (2304+2r, 2336+2r). Unpacking the scales once here saves the kernels more
// than the 4 bytes a row a super-block more they read.
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

// putBlockQ4K writes a Q4_K super-block (the file's 144 bytes x) as row i of a packed one.
func putBlockQ4K(blk []byte, i int, x []byte) {
	for g := 0; g < 32; g++ {
		le.PutUint32(blk[64*g+4*i:], le.Uint32(x[16+4*g:]))
	}
	putScalesK(blk[2048:], i, x)
}

// unpackBlockQ4K writes row i of a packed super-block back in the file's layout (144 bytes).
func unpackBlockQ4K(blk []byte, i int, x []byte) {
	unpackScalesK(blk[2048:], i, x)
	for g := 0; g < 32; g++ {
		copy(x[16+4*g:20+4*g], blk[64*g+4*i:])
	}
}

// putScalesK writes the scales, mins, d and dmin of a Q4_K or Q5_K super-block x (the file's
// layout, which starts the same for both) as row i of the packed tail at t: scale s at 16s+i,
// the mins of sub-blocks 2k, 2k+1 at 128+32k+2i, +1, then d at 256+2i and dmin at 288+2i.
func putScalesK(t []byte, i int, x []byte) {
	for s := 0; s < 8; s++ {
		sc, m := getScaleMinK4(s, x[4:16])
		t[16*s+i] = sc
		t[128+32*(s/2)+2*i+s%2] = m
	}
	copy(t[256+2*i:], x[0:2])
	copy(t[288+2*i:], x[2:4])
}

// unpackScalesK writes row i of the packed tail at t back to the first 16 bytes of the file's
// layout, the scales and mins packed again to 6 bits the way the quantizer does.
func unpackScalesK(t []byte, i int, x []byte) {
	copy(x[0:2], t[256+2*i:])
	copy(x[2:4], t[288+2*i:])
	var ls, lm [8]uint8
	for s := 0; s < 8; s++ {
		ls[s] = t[16*s+i]
		lm[s] = t[128+32*(s/2)+2*i+s%2]
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
	dotPackedKMins(panel, nb, prep, out, packedBlockK, 2048, func(blk []byte, i, s, e int) int32 {
		v := blk[64*(8*(s/2)+e/4)+4*i+e%4]
		if s%2 == 1 {
			return int32(v >> 4)
		}
		return int32(v & 0x0f)
	})
}

// dotPackedKMins is the arithmetic of the packed K-quants with scales and mins (Q4_K, Q5_K):
// super-blocks of size bytes, their scales tail (putScalesK) at tail, and quant(blk, i, s, e)
// the unsigned quant of element e of sub-block s of row i.
func dotPackedKMins(panel []byte, nb int, prep []byte, out *[panelRows]float32, size, tail int, quant func(blk []byte, i, s, e int) int32) {
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			blk, y := panel[b*size:], prep[packedActK*b:packedActK*(b+1)]
			t := blk[tail:]
			var sumi, msum int32
			for s := 0; s < 8; s++ {
				var dot int32
				for e := 0; e < 32; e++ {
					dot += quant(blk, i, s, e) * int32(int8(y[32*s+e]))
				}
				sumi += int32(t[16*s+i]) * dot
				msum += int32(t[128+32*(s/2)+2*i+s%2]) * int32(int16(binary.LittleEndian.Uint16(y[260+2*s:])))
			}
			yd := math.Float32frombits(binary.LittleEndian.Uint32(y[256:]))
			d := float32(F16ToF32(binary.LittleEndian.Uint16(t[256+2*i:])) * yd)
			dmin := float32(F16ToF32(binary.LittleEndian.Uint16(t[288+2*i:])) * yd)
			acc = fma32x(float32(sumi), d, acc)
			acc = fma32x(-float32(msum), dmin, acc)
		}
		out[i] = acc
	}
}
