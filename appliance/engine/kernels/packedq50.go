package kernels

import (
	"encoding/binary"
	"math"
)

// Packed Q5_0 (Qwen-family Q4_K_M files hold much of their weight in it: llama-quantize falls
// back to Q5_0 for rows that are not a multiple of 256). Per panel of 16 rows: for each block,
// the rows' fifth bits (64 bytes, row r's 32 at 4r) and then its quants as in packed Q4_0 (256
// bytes: for group q < 4, row r's quant bytes 4q..4q+3 at 64+64q+4r), 320 bytes a block; the
// fp16 scales (32 bytes a block, row r at 2r) after each group of eight blocks, as Q4_0's.
// The kernels take the fifth bits first, so this order streams a panel in one run (with the
// bits after the quants, which made each block's read go back four lines, the one-column
// kernel read 22-26 GB/s where Q4_0's read 31-32 from the same memory; 30-31 in order).
//
// The fifth bits are stored rearranged (spreadQ5Bits) so that the kernels find every one of
// them with a shift common to all bytes: byte k of a row's word holds, in bit 2q, the fifth
// bit of element 4q+k (the low nibble of quant byte 4q+k) and in bit 2q+1 that of element
// 16+4q+k (its high nibble). The kernels put each quant's five bits together: the low
// elements' values as they are, the high elements' times 8 (up to 248, still a byte).
//
// Arithmetic (dotPackedQ5_0): per block, the exact integer dot s = Σ (q-16)·y of its 32
// quants, then acc = fma(float32(s), dx·yd, acc) in block order, dx·yd rounded to float32.

const (
	q5Quants = 64  // offset of a packed Q5_0 block's quants, after its fifth bits
	q5Block  = 320 // bytes of a packed Q5_0 block with its fifth bits (the scales come after all blocks)
)

// spreadQ5Bits rearranges a Q5_0 block's fifth bits (bit j: element j) into the packed order.
func spreadQ5Bits(h uint32) uint32 {
	var v uint32
	for q := 0; q < 4; q++ {
		for k := 0; k < 4; k++ {
			v |= (h >> (4*q + k) & 1) << (8*k + 2*q)
			v |= (h >> (16 + 4*q + k) & 1) << (8*k + 2*q + 1)
		}
	}
	return v
}

// gatherQ5Bits undoes spreadQ5Bits.
func gatherQ5Bits(v uint32) uint32 {
	var h uint32
	for q := 0; q < 4; q++ {
		for k := 0; k < 4; k++ {
			h |= (v >> (8*k + 2*q) & 1) << (4*q + k)
			h |= (v >> (8*k + 2*q + 1) & 1) << (16 + 4*q + k)
		}
	}
	return h
}

// putQ5_0 writes a Q5_0 block (scale, fifth bits, quants) into its panel.
func putQ5_0(panel []byte, nb, i, b int, x []byte) {
	qo, so := legacyOffsets(q5Block, nb, b)
	le.PutUint16(panel[so+2*i:], le.Uint16(x))
	for q := 0; q < 4; q++ {
		le.PutUint32(panel[qo+q5Quants+64*q+4*i:], le.Uint32(x[6+4*q:]))
	}
	le.PutUint32(panel[qo+4*i:], spreadQ5Bits(le.Uint32(x[2:])))
}

// unpackQ5_0 returns block b of row i of a Q5_0 panel in the file's layout.
func unpackQ5_0(panel []byte, nb, i, b int) (x fileBlockBytes) {
	qo, so := legacyOffsets(q5Block, nb, b)
	copy(x[:2], panel[so+2*i:])
	le.PutUint32(x[2:], gatherQ5Bits(le.Uint32(panel[qo+4*i:])))
	for q := 0; q < 4; q++ {
		copy(x[6+4*q:10+4*q], panel[qo+q5Quants+64*q+4*i:])
	}
	return x
}

// prepPackedAct5 prepares activations for packed Q5_0, whose quants carry an offset of 16.
func prepPackedAct5(act []byte, nb int, dst []byte) { prepPackedActBias(act, nb, dst, 16) }

// dotPackedQ5_0 is the packed Q5_0 kernels' arithmetic in Go, for one panel (nb blocks) and one
// prepared activation row.
func dotPackedQ5_0(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			y := prep[packedAct*b : packedAct*(b+1)]
			s := int32(binary.LittleEndian.Uint32(y[36:]))
			qo, so := legacyOffsets(q5Block, nb, b)
			h := gatherQ5Bits(binary.LittleEndian.Uint32(panel[qo+4*i:]))
			for j := 0; j < 16; j++ {
				v := panel[qo+q5Quants+64*(j/4)+4*i+j%4]
				lo := int32(v&0x0f) | int32(h>>j&1)<<4
				hi := int32(v>>4) | int32(h>>(16+j)&1)<<4
				s += lo*int32(int8(y[j])) + hi*int32(int8(y[16+j]))
			}
			dx := F16ToF32(binary.LittleEndian.Uint16(panel[so+2*i:]))
			d := float32(dx * math.Float32frombits(binary.LittleEndian.Uint32(y[32:])))
			acc = fma32x(float32(s), d, acc)
		}
		out[i] = acc
	}
}
