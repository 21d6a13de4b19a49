package kernels

import (
	"encoding/binary"
	"math"
)

// Packed Q8_0 (see Packed). VPDPBUSD multiplies unsigned bytes by signed ones, and both Q8_0
// operands are signed, so the weights are stored biased: each quant byte w as w+128 (w XOR
// 0x80), an unsigned byte. Per block, Σ (w+128)·y − 128·Σy = Σ w·y exactly in int32 (|Σ| <
// 32·255·128), and −128·Σy depends on the activation block alone: it is computed once per
// activation row when the activations are prepared (the same 40-byte block as Q4_0's, with
// −128·Σy where Q4_0 has −8·Σy), and starts the block's integer sum.
//
// Layout, per panel of 16 rows (the last padded with zero bytes: quants of -128 with zero
// scales, whose products are zero and never read), in groups of eight blocks as packed Q4_0
// (legacyOffsets): the fp16 scales of the group's blocks (32 bytes each, row r at 2r), then
// their biased quants (512 bytes each: for each group q < 8 of four quant bytes, row r's bytes
// 4q..4q+3 at 64q+4r); the panel is padded to a multiple of 64 bytes. A panel holds exactly the bytes of its 16 file rows
// (34 a block), so packing costs no memory once the file's pages are dropped.
//
// Arithmetic (dotPackedQ8_0 is its Go twin): per row, in block order, the exact integer dot
// s = Σ w·y of the block, d = float32(dx·yd), acc = float32(acc + float32(float32(s)·d)) — a
// rounded product, then a rounded sum, no FMA: the reference Dot's arithmetic, so the packed
// Q8_0 products equal the reference (and the file layout's exact kernels) bit for bit.

const packedBlock8 = 544 // bytes of one block of a panel: 512 of quants, 32 of scales

// putQ8_0 writes a Q8_0 block into its panel: its biased quants among the panel's quants, its
// scale after them.
func putQ8_0(panel []byte, nb, i, b int, x []byte) {
	qo, so := legacyOffsets(512, nb, b)
	copy(panel[so+2*i:], x[:2])
	for q := 0; q < 8; q++ {
		le.PutUint32(panel[qo+64*q+4*i:], le.Uint32(x[2+4*q:])^0x80808080)
	}
}

// unpackQ8_0 returns block b of row i of a Q8_0 panel (nb blocks a row) in the file's layout.
func unpackQ8_0(panel []byte, nb, i, b int) (x fileBlockBytes) {
	qo, so := legacyOffsets(512, nb, b)
	copy(x[:2], panel[so+2*i:])
	for q := 0; q < 8; q++ {
		le.PutUint32(x[2+4*q:], le.Uint32(panel[qo+64*q+4*i:])^0x80808080)
	}
	return x
}

// prepPackedAct8 writes the prepared form of nb Q8_0 activation blocks for packed Q8_0 weights
// (stored with an offset of 128) to dst.
func prepPackedAct8(act []byte, nb int, dst []byte) { prepPackedActBias(act, nb, dst, 128) }

// dotPackedQ8_0 is the packed Q8_0 kernels' arithmetic in Go, for one panel (nb blocks) and
// one prepared activation row.
func dotPackedQ8_0(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			y := prep[packedAct*b : packedAct*(b+1)]
			s := int32(binary.LittleEndian.Uint32(y[36:]))
			qo, so := legacyOffsets(512, nb, b)
			for q := 0; q < 8; q++ {
				for k := 0; k < 4; k++ {
					s += int32(panel[qo+64*q+4*i+k]) * int32(int8(y[4*q+k]))
				}
			}
			dx := F16ToF32(binary.LittleEndian.Uint16(panel[so+2*i:]))
			d := float32(dx * math.Float32frombits(binary.LittleEndian.Uint32(y[32:])))
			acc = float32(acc + float32(float32(s)*d))
		}
		out[i] = acc
	}
}
