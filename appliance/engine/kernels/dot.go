package kernels

import (
	"encoding/binary"
	"math"
)

// Dot products of one weight row with converted activations, following the generic C versions
// of ggml_vec_dot_* in ggml-cpu: integer sums per block, then float scaling in the same order
// of operations. Float sums are accumulated in the same lanes as the generic code so that the
// result does not depend on how this file is written.

func dotQ4_0(row, act []byte, n int) float32 {
	var sumf float32
	for ib := 0; ib < n/qk; ib++ {
		x, y := row[ib*18:(ib+1)*18], act[ib*34:(ib+1)*34]
		sumi := 0
		for j := 0; j < qk/2; j++ {
			v0 := int(x[2+j]&0x0f) - 8
			v1 := int(x[2+j]>>4) - 8
			sumi += v0*int(int8(y[2+j])) + v1*int(int8(y[2+j+qk/2]))
		}
		sumf += float32(float32(float32(sumi)*getF16(x, 0)) * getF16(y, 0))
	}
	return sumf
}

func dotQ4_1(row, act []byte, n int) float32 {
	var sumf float32
	for ib := 0; ib < n/qk; ib++ {
		x, y := row[ib*20:(ib+1)*20], act[ib*36:(ib+1)*36]
		sumi := 0
		for j := 0; j < qk/2; j++ {
			sumi += int(x[4+j]&0x0f)*int(int8(y[4+j])) + int(x[4+j]>>4)*int(int8(y[4+j+qk/2]))
		}
		t := float32(float32(getF16(x, 0)*getF16(y, 0))*float32(sumi)) + float32(getF16(x, 2)*getF16(y, 2))
		sumf += t
	}
	return sumf
}

func dotQ5_0(row, act []byte, n int) float32 {
	var sumf float32
	for ib := 0; ib < n/qk; ib++ {
		x, y := row[ib*22:(ib+1)*22], act[ib*34:(ib+1)*34]
		qh := binary.LittleEndian.Uint32(x[2:])
		sumi := 0
		for j := 0; j < qk/2; j++ {
			h0 := uint8(qh>>j<<4) & 0x10
			h1 := uint8(qh>>(j+12)) & 0x10
			x0 := int(x[6+j]&0x0f|h0) - 16
			x1 := int(x[6+j]>>4|h1) - 16
			sumi += x0*int(int8(y[2+j])) + x1*int(int8(y[2+j+qk/2]))
		}
		sumf += float32(float32(getF16(x, 0)*getF16(y, 0)) * float32(sumi))
	}
	return sumf
}

func dotQ5_1(row, act []byte, n int) float32 {
	var sumf float32
	for ib := 0; ib < n/qk; ib++ {
		x, y := row[ib*24:(ib+1)*24], act[ib*36:(ib+1)*36]
		qh := binary.LittleEndian.Uint32(x[4:])
		sumi := 0
		for j := 0; j < qk/2; j++ {
			h0 := uint8(qh>>j<<4) & 0x10
			h1 := uint8(qh>>(j+12)) & 0x10
			sumi += int(x[8+j]&0x0f|h0)*int(int8(y[4+j])) + int(x[8+j]>>4|h1)*int(int8(y[4+j+qk/2]))
		}
		t := float32(float32(getF16(x, 0)*getF16(y, 0))*float32(sumi)) + float32(getF16(x, 2)*getF16(y, 2))
		sumf += t
	}
	return sumf
}

func dotQ8_0(row, act []byte, n int) float32 {
	var sumf float32
	for ib := 0; ib < n/qk; ib++ {
		x, y := row[ib*34:(ib+1)*34], act[ib*34:(ib+1)*34]
		sumi := 0
		for j := 0; j < qk; j++ {
			sumi += int(int8(x[2+j])) * int(int8(y[2+j]))
		}
		sumf += float32(float32(sumi) * float32(getF16(x, 0)*getF16(y, 0)))
	}
	return sumf
}

// dotQ8_1 pairs Q8_1 weights with Q8_1 activations; llama.cpp has no such kernel (Q8_1 is an
// activation type), so this is the plain blockwise integer dot.
func dotQ8_1(row, act []byte, n int) float32 {
	var sumf float32
	for ib := 0; ib < n/qk; ib++ {
		x, y := row[ib*36:(ib+1)*36], act[ib*36:(ib+1)*36]
		sumi := 0
		for j := 0; j < qk; j++ {
			sumi += int(int8(x[4+j])) * int(int8(y[4+j]))
		}
		sumf += float32(float32(sumi) * float32(getF16(x, 0)*getF16(y, 0)))
	}
	return sumf
}

func q8kD(y []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(y)) }

func q8kBsum(y []byte, j int) int { return int(int16(binary.LittleEndian.Uint16(y[260+2*j:]))) }

// dotQ8K pairs Q8_K with Q8_K; like dotQ8_1 it has no llama.cpp counterpart.
func dotQ8K(row, act []byte, n int) float32 {
	var sumf float32
	for i := 0; i < n/qkK; i++ {
		x, y := row[i*292:(i+1)*292], act[i*292:(i+1)*292]
		sumi := 0
		for j := 0; j < qkK; j++ {
			sumi += int(int8(x[4+j])) * int(int8(y[4+j]))
		}
		sumf += float32(float32(sumi) * float32(q8kD(x)*q8kD(y)))
	}
	return sumf
}

func dotQ2K(row, act []byte, n int) float32 {
	var sumf float32
	for i := 0; i < n/qkK; i++ {
		x, y := row[i*84:(i+1)*84], act[i*292:(i+1)*292]
		sc := x[0:16]
		q8 := y[4:260]
		summs := 0
		for j := 0; j < 16; j++ {
			summs += q8kBsum(y, j) * int(sc[j]>>4)
		}
		yd := q8kD(y)
		dall := yd * getF16(x, 80)
		dmin := yd * getF16(x, 82)
		isum, is, o := 0, 0, 0
		for k := 0; k < qkK/128; k++ {
			q2 := x[16+32*k : 16+32*k+32]
			for shift := uint(0); shift < 8; shift += 2 {
				for half := 0; half < 2; half++ {
					d := int(sc[is] & 0x0f)
					is++
					isuml := 0
					for l := 16 * half; l < 16*half+16; l++ {
						isuml += int(int8(q8[o+l])) * int((q2[l]>>shift)&3)
					}
					isum += d * isuml
				}
				o += 32
			}
		}
		sumf += float32(dall*float32(isum)) - float32(dmin*float32(summs))
	}
	return sumf
}

// The Q3_K..Q6_K generic dots accumulate 8 integer lanes (element index mod 8) per super-block
// and add d*lane into 8 float lanes, summing the lanes at the end.

func dotQ3K(row, act []byte, n int) float32 {
	var sums [8]float32
	var a [qkK]int8
	for i := 0; i < n/qkK; i++ {
		x, y := row[i*110:(i+1)*110], act[i*292:(i+1)*292]
		hm, sc := x[0:32], x[96:108]
		m := uint8(1)
		for j := 0; j < qkK; j += 128 {
			q3 := x[32+j/4 : 32+j/4+32]
			for shift := uint(0); shift < 8; shift += 2 {
				base := j + int(shift)/2*32
				for l := 0; l < 32; l++ {
					v := int8((q3[l] >> shift) & 3)
					if hm[l]&m == 0 {
						v -= 4
					}
					a[base+l] = v
				}
				m <<= 1
			}
		}
		var aux32 [8]int32
		for j := 0; j < qkK/16; j++ {
			laneDots(&aux32, int32(q3Scale(sc, j)), (*[16]byte)(y[4+16*j:]), (*[16]int8)(a[16*j:]))
		}
		d := getF16(x, 108) * q8kD(y)
		for l := range sums {
			sums[l] += float32(d * float32(aux32[l]))
		}
	}
	return sumLanes(&sums, 0)
}

// laneDots adds scale * q8[l] * a[l] for 16 consecutive elements into the lanes l mod 8. The
// integer sums are exact in any order, so only the lane assignment matters.
func laneDots(aux *[8]int32, scale int32, q8 *[16]byte, a *[16]int8) {
	for l := 0; l < 8; l++ {
		aux[l] += scale * (int32(int8(q8[l]))*int32(a[l]) + int32(int8(q8[l+8]))*int32(a[l+8]))
	}
}

func sumLanes(sums *[8]float32, sumf float32) float32 {
	for _, s := range sums {
		sumf += s
	}
	return sumf
}

// unpackScalesK4 returns the eight 6-bit scales and mins of a Q4_K/Q5_K super-block.
func unpackScalesK4(sc []byte) (scales, mins [8]uint8) {
	for j := 0; j < 8; j++ {
		scales[j], mins[j] = getScaleMinK4(j, sc)
	}
	return
}

// dotK4Lanes is the part shared by the Q4_K and Q5_K dots once the quants are unpacked.
func dotK4Lanes(x, y []byte, a *[qkK]int8, sums *[8]float32, sumf float32) float32 {
	scales, mins := unpackScalesK4(x[4:16])
	sumi := 0
	for j := 0; j < qkK/16; j++ {
		sumi += q8kBsum(y, j) * int(mins[j/2])
	}
	var aux32 [8]int32
	for j := 0; j < qkK/16; j++ {
		laneDots(&aux32, int32(scales[j/2]), (*[16]byte)(y[4+16*j:]), (*[16]int8)(a[16*j:]))
	}
	yd := q8kD(y)
	d := getF16(x, 0) * yd
	for l := range sums {
		sums[l] += float32(d * float32(aux32[l]))
	}
	dmin := getF16(x, 2) * yd
	return sumf - float32(dmin*float32(sumi))
}

func dotQ4K(row, act []byte, n int) float32 {
	var sums [8]float32
	var a [qkK]int8
	var sumf float32
	for i := 0; i < n/qkK; i++ {
		x, y := row[i*144:(i+1)*144], act[i*292:(i+1)*292]
		for j := 0; j < qkK; j += 64 {
			q4 := x[16+j/2 : 16+j/2+32]
			for l := 0; l < 32; l++ {
				a[j+l] = int8(q4[l] & 0x0f)
				a[j+32+l] = int8(q4[l] >> 4)
			}
		}
		sumf = dotK4Lanes(x, y, &a, &sums, sumf)
	}
	return sumLanes(&sums, sumf)
}

func dotQ5K(row, act []byte, n int) float32 {
	var sums [8]float32
	var a [qkK]int8
	var sumf float32
	for i := 0; i < n/qkK; i++ {
		x, y := row[i*176:(i+1)*176], act[i*292:(i+1)*292]
		hm := x[16:48]
		m := uint8(1)
		for j := 0; j < qkK; j += 64 {
			q4 := x[48+j/2 : 48+j/2+32]
			for l := 0; l < 32; l++ {
				lo, hi := int8(q4[l]&0x0f), int8(q4[l]>>4)
				if hm[l]&m != 0 {
					lo += 16
				}
				if hm[l]&(m<<1) != 0 {
					hi += 16
				}
				a[j+l], a[j+32+l] = lo, hi
			}
			m <<= 2
		}
		sumf = dotK4Lanes(x, y, &a, &sums, sumf)
	}
	return sumLanes(&sums, sumf)
}

func dotQ6K(row, act []byte, n int) float32 {
	var sums [8]float32
	var a [qkK]int8
	for i := 0; i < n/qkK; i++ {
		x, y := row[i*210:(i+1)*210], act[i*292:(i+1)*292]
		q6Quants(x, &a)
		sc := x[192:208]
		var aux32 [8]int32
		for j := 0; j < qkK/16; j++ {
			laneDots(&aux32, int32(int8(sc[j])), (*[16]byte)(y[4+16*j:]), (*[16]int8)(a[16*j:]))
		}
		d := getF16(x, 208) * q8kD(y)
		for l := range sums {
			sums[l] += float32(d * float32(aux32[l]))
		}
	}
	return sumLanes(&sums, 0)
}
