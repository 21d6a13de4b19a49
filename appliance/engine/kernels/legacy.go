package kernels

import (
	"encoding/binary"
	"math"
)

// The 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1). Byte layouts are those of
// ggml-common.h; every half is little endian. The quantizers follow ggml's quantize_row_*_ref step
// by step (including the order of float operations), so that they write the same bytes as
// llama-quantize.

const qk = 32

func getF16(b []byte, off int) float32 { return F16ToF32(binary.LittleEndian.Uint16(b[off:])) }

func putF16(b []byte, off int, v float32) { binary.LittleEndian.PutUint16(b[off:], F32ToF16(v)) }

// absMaxSigned returns the element of largest magnitude (the first one on ties) and its magnitude.
func absMaxSigned(x []float32) (maxv, amax float32) {
	for _, v := range x {
		if a := abs32(v); amax < a {
			amax, maxv = a, v
		}
	}
	return maxv, amax
}

func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// inv returns 1/d, or 0 for d == 0, as the reference quantizers do.
func inv(d float32) float32 {
	if d != 0 {
		return 1 / d
	}
	return 0
}

// truncInt converts like a C float-to-integer cast (toward zero) for the small values used here.
func truncInt(v float32) int { return int(v) }

func quantizeQ4_0(x []float32, y []byte) {
	for i := 0; i < len(x)/qk; i++ {
		xb, yb := x[i*qk:(i+1)*qk], y[i*18:(i+1)*18]
		maxv, _ := absMaxSigned(xb)
		d := maxv / -8
		id := inv(d)
		putF16(yb, 0, d)
		for j := 0; j < qk/2; j++ {
			x0 := float32(xb[j] * id)
			x1 := float32(xb[qk/2+j] * id)
			xi0 := min(15, truncInt(x0+8.5))
			xi1 := min(15, truncInt(x1+8.5))
			yb[2+j] = uint8(xi0) | uint8(xi1)<<4
		}
	}
}

func dequantizeQ4_0(b []byte, y []float32) {
	for i := 0; i < len(y)/qk; i++ {
		bb, yb := b[i*18:(i+1)*18], y[i*qk:(i+1)*qk]
		d := getF16(bb, 0)
		for j := 0; j < qk/2; j++ {
			yb[j] = float32(int(bb[2+j]&0x0f)-8) * d
			yb[j+qk/2] = float32(int(bb[2+j]>>4)-8) * d
		}
	}
}

func quantizeQ4_1(x []float32, y []byte) {
	for i := 0; i < len(x)/qk; i++ {
		xb, yb := x[i*qk:(i+1)*qk], y[i*20:(i+1)*20]
		lo, hi := minMax(xb)
		d := (hi - lo) / 15
		id := inv(d)
		putF16(yb, 0, d)
		putF16(yb, 2, lo)
		for j := 0; j < qk/2; j++ {
			x0 := float32((xb[j] - lo) * id)
			x1 := float32((xb[qk/2+j] - lo) * id)
			xi0 := min(15, truncInt(x0+0.5))
			xi1 := min(15, truncInt(x1+0.5))
			yb[4+j] = uint8(xi0) | uint8(xi1)<<4
		}
	}
}

func dequantizeQ4_1(b []byte, y []float32) {
	for i := 0; i < len(y)/qk; i++ {
		bb, yb := b[i*20:(i+1)*20], y[i*qk:(i+1)*qk]
		d, m := getF16(bb, 0), getF16(bb, 2)
		for j := 0; j < qk/2; j++ {
			yb[j] = float32(float32(bb[4+j]&0x0f)*d) + m
			yb[j+qk/2] = float32(float32(bb[4+j]>>4)*d) + m
		}
	}
}

func quantizeQ5_0(x []float32, y []byte) {
	for i := 0; i < len(x)/qk; i++ {
		xb, yb := x[i*qk:(i+1)*qk], y[i*22:(i+1)*22]
		maxv, _ := absMaxSigned(xb)
		d := maxv / -16
		id := inv(d)
		putF16(yb, 0, d)
		var qh uint32
		for j := 0; j < qk/2; j++ {
			x0 := float32(xb[j] * id)
			x1 := float32(xb[qk/2+j] * id)
			xi0 := uint8(min(31, truncInt(x0+16.5)))
			xi1 := uint8(min(31, truncInt(x1+16.5)))
			yb[6+j] = xi0&0x0f | (xi1&0x0f)<<4
			qh |= uint32(xi0&0x10) >> 4 << j
			qh |= uint32(xi1&0x10) >> 4 << (j + qk/2)
		}
		binary.LittleEndian.PutUint32(yb[2:], qh)
	}
}

func dequantizeQ5_0(b []byte, y []float32) {
	for i := 0; i < len(y)/qk; i++ {
		bb, yb := b[i*22:(i+1)*22], y[i*qk:(i+1)*qk]
		d := getF16(bb, 0)
		qh := binary.LittleEndian.Uint32(bb[2:])
		for j := 0; j < qk/2; j++ {
			h0 := uint8(qh>>j<<4) & 0x10
			h1 := uint8(qh>>(j+12)) & 0x10
			yb[j] = float32(int(bb[6+j]&0x0f|h0)-16) * d
			yb[j+qk/2] = float32(int(bb[6+j]>>4|h1)-16) * d
		}
	}
}

func quantizeQ5_1(x []float32, y []byte) {
	for i := 0; i < len(x)/qk; i++ {
		xb, yb := x[i*qk:(i+1)*qk], y[i*24:(i+1)*24]
		lo, hi := minMax(xb)
		d := (hi - lo) / 31
		id := inv(d)
		putF16(yb, 0, d)
		putF16(yb, 2, lo)
		var qh uint32
		for j := 0; j < qk/2; j++ {
			x0 := float32((xb[j] - lo) * id)
			x1 := float32((xb[qk/2+j] - lo) * id)
			xi0 := uint8(truncInt(x0 + 0.5))
			xi1 := uint8(truncInt(x1 + 0.5))
			yb[8+j] = xi0&0x0f | (xi1&0x0f)<<4
			qh |= uint32(xi0&0x10) >> 4 << j
			qh |= uint32(xi1&0x10) >> 4 << (j + qk/2)
		}
		binary.LittleEndian.PutUint32(yb[4:], qh)
	}
}

func dequantizeQ5_1(b []byte, y []float32) {
	for i := 0; i < len(y)/qk; i++ {
		bb, yb := b[i*24:(i+1)*24], y[i*qk:(i+1)*qk]
		d, m := getF16(bb, 0), getF16(bb, 2)
		qh := binary.LittleEndian.Uint32(bb[4:])
		for j := 0; j < qk/2; j++ {
			h0 := uint8(qh>>j<<4) & 0x10
			h1 := uint8(qh>>(j+12)) & 0x10
			yb[j] = float32(float32(bb[8+j]&0x0f|h0)*d) + m
			yb[j+qk/2] = float32(float32(bb[8+j]>>4|h1)*d) + m
		}
	}
}

func quantizeQ8_0(x []float32, y []byte) {
	for i := 0; i < len(x)/qk; i++ {
		xb, yb := x[i*qk:(i+1)*qk], y[i*34:(i+1)*34]
		var amax float32
		for _, v := range xb {
			amax = max(amax, abs32(v))
		}
		d := amax / 127
		id := inv(d)
		putF16(yb, 0, d)
		for j, v := range xb {
			yb[2+j] = uint8(int8(roundAway(v * id)))
		}
	}
}

func dequantizeQ8_0(b []byte, y []float32) {
	for i := 0; i < len(y)/qk; i++ {
		bb, yb := b[i*34:(i+1)*34], y[i*qk:(i+1)*qk]
		d := getF16(bb, 0)
		for j := range yb {
			yb[j] = float32(int8(bb[2+j])) * d
		}
	}
}

// quantizeQ8_1 is quantize_row_q8_1_ref: the block also stores s = d * sum(q), which lets the
// Q4_1/Q5_1 dot products add the weights' minimum without touching the quants again.
func quantizeQ8_1(x []float32, y []byte) {
	for i := 0; i < len(x)/qk; i++ {
		xb, yb := x[i*qk:(i+1)*qk], y[i*36:(i+1)*36]
		var amax float32
		for _, v := range xb {
			amax = max(amax, abs32(v))
		}
		d := amax / 127
		id := inv(d)
		putF16(yb, 0, d)
		sum := 0
		for j, v := range xb {
			q := int8(roundAway(v * id))
			yb[4+j] = uint8(q)
			sum += int(q)
		}
		putF16(yb, 2, float32(sum)*d)
	}
}

func dequantizeQ8_1(b []byte, y []float32) {
	for i := 0; i < len(y)/qk; i++ {
		bb, yb := b[i*36:(i+1)*36], y[i*qk:(i+1)*qk]
		d := getF16(bb, 0)
		for j := range yb {
			yb[j] = float32(int8(bb[4+j])) * d
		}
	}
}

// roundAway is C's roundf: halves away from zero.
func roundAway(v float32) float32 { return float32(math.Round(float64(v))) }
