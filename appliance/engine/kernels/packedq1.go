package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Packed Q4_1 and Q5_1: the blocks of packed Q4_0 and Q5_0 (the fifth bits rearranged as
// there), each after its line of scales: the rows' fp16 d (32 bytes, row r at 2r), then their
// m (legacyOffsetsH with groups of one block). In groups of eight, as Q4_0, the scales of
// eight blocks were eight lines read beside the quants, and a panel streamed at half Q4_0's
// speed from memory. The prepared activations are packed Q4_0's 40-byte
// blocks with the Q8_1 block's sum term s = yd·Σy (as float32) where Q4_0's have the quant
// offset.
//
// Arithmetic (dotPackedQ4_1, dotPackedQ5_1): per block, the exact integer dot s = Σ q·y of the
// unsigned quants, then acc = fma(float32(s), dx·yd, acc) and acc = fma(mx, sy, acc), dx·yd
// rounded to float32 first.

// putQ4_1 writes a Q4_1 block (d, m, 16 quant bytes) into its panel.
func putQ4_1(panel []byte, nb, i, b int, x []byte) {
	qo, so := legacyOffsetsH(256, 64, 1, nb, b)
	copy(panel[so+2*i:], x[0:2])
	copy(panel[so+32+2*i:], x[2:4])
	for q := 0; q < 4; q++ {
		le.PutUint32(panel[qo+64*q+4*i:], le.Uint32(x[4+4*q:]))
	}
}

// unpackQ4_1 returns block b of row i of a Q4_1 panel in the file's layout.
func unpackQ4_1(panel []byte, nb, i, b int) (x fileBlockBytes) {
	qo, so := legacyOffsetsH(256, 64, 1, nb, b)
	copy(x[0:2], panel[so+2*i:])
	copy(x[2:4], panel[so+32+2*i:])
	for q := 0; q < 4; q++ {
		copy(x[4+4*q:8+4*q], panel[qo+64*q+4*i:])
	}
	return x
}

// putQ5_1 writes a Q5_1 block (d, m, fifth bits, 16 quant bytes) into its panel.
func putQ5_1(panel []byte, nb, i, b int, x []byte) {
	qo, so := legacyOffsetsH(q5Block, 64, 1, nb, b)
	copy(panel[so+2*i:], x[0:2])
	copy(panel[so+32+2*i:], x[2:4])
	for q := 0; q < 4; q++ {
		le.PutUint32(panel[qo+q5Quants+64*q+4*i:], le.Uint32(x[8+4*q:]))
	}
	le.PutUint32(panel[qo+4*i:], spreadQ5Bits(le.Uint32(x[4:])))
}

// unpackQ5_1 returns block b of row i of a Q5_1 panel in the file's layout.
func unpackQ5_1(panel []byte, nb, i, b int) (x fileBlockBytes) {
	qo, so := legacyOffsetsH(q5Block, 64, 1, nb, b)
	copy(x[0:2], panel[so+2*i:])
	copy(x[2:4], panel[so+32+2*i:])
	le.PutUint32(x[4:], gatherQ5Bits(le.Uint32(panel[qo+4*i:])))
	for q := 0; q < 4; q++ {
		copy(x[8+4*q:12+4*q], panel[qo+q5Quants+64*q+4*i:])
	}
	return x
}

// prepPackedAct1 writes the prepared form of nb Q8_1 activation blocks (packedAct bytes each)
// to dst: the 32 quants, the scale and the sum term as float32.
func prepPackedAct1(act []byte, nb int, dst []byte) {
	if len(act) < 36*nb || len(dst) < packedAct*nb {
		panic(fmt.Sprintf("kernels: packed activations of %d Q8_1 blocks from %d bytes into %d", nb, len(act), len(dst)))
	}
	for b := 0; b < nb; b++ {
		y, d := act[36*b:36*b+36], dst[packedAct*b:packedAct*(b+1)]
		copy(d[:32], y[4:])
		binary.LittleEndian.PutUint32(d[32:], math.Float32bits(getF16(y, 0)))
		binary.LittleEndian.PutUint32(d[36:], math.Float32bits(getF16(y, 2)))
	}
}

// dotPackedMins is the arithmetic of packed Q4_1 and Q5_1 in Go, for one panel (nb blocks)
// and one prepared activation row; unpack gives a block back in the file's layout and quant
// its element j (< 32) from that.
func dotPackedMins(panel []byte, nb int, prep []byte, out *[panelRows]float32,
	unpack func(panel []byte, nb, i, b int) fileBlockBytes, quant func(x *fileBlockBytes, j int) int32) {
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			y := prep[packedAct*b : packedAct*(b+1)]
			x := unpack(panel, nb, i, b)
			var s int32
			for j := 0; j < 32; j++ {
				s += quant(&x, j) * int32(int8(y[j]))
			}
			yd := math.Float32frombits(binary.LittleEndian.Uint32(y[32:]))
			sy := math.Float32frombits(binary.LittleEndian.Uint32(y[36:]))
			d := float32(F16ToF32(binary.LittleEndian.Uint16(x[0:])) * yd)
			acc = fma32x(float32(s), d, acc)
			acc = fma32x(F16ToF32(binary.LittleEndian.Uint16(x[2:])), sy, acc)
		}
		out[i] = acc
	}
}

// dotPackedQ4_1 is the packed Q4_1 kernels' arithmetic in Go.
func dotPackedQ4_1(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	dotPackedMins(panel, nb, prep, out, unpackQ4_1, func(x *fileBlockBytes, j int) int32 {
		if j < 16 {
			return int32(x[4+j] & 0x0f)
		}
		return int32(x[4+j-16] >> 4)
	})
}

// dotPackedQ5_1 is the packed Q5_1 kernels' arithmetic in Go.
func dotPackedQ5_1(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	dotPackedMins(panel, nb, prep, out, unpackQ5_1, func(x *fileBlockBytes, j int) int32 {
		h := int32(binary.LittleEndian.Uint32(x[4:])>>j&1) << 4
		if j < 16 {
			return int32(x[8+j]&0x0f) | h
		}
		return int32(x[8+j-16]>>4) | h
	})
}
