package kernels

import (
	"encoding/binary"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The K-quants: super-blocks of 256 values split into 16 or 8 sub-blocks whose scales (and mins)
// are themselves quantized. The quantizers mirror ggml-quants.c's quantize_row_qX_K_ref — the
// path llama-quantize takes when no importance matrix is given — including every float32
// rounding step, because a one-ulp difference in a scale search can pick other integers.

const qkK = ggml.QK_K

// groupMaxEps is ggml's GROUP_MAX_EPS: below it a group counts as all zero.
const groupMaxEps = float32(1e-15)

// nearestInt rounds half to even through the float32 mantissa trick of ggml's nearest_int; valid
// for |v| < 2^22, which the callers guarantee. The explicit conversion keeps the product that
// the caller passes from being fused with the addition.
func nearestInt(v float32) int {
	f := float32(v) + 12582912
	return int(math.Float32bits(f)&0x007fffff) - 0x00400000
}

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

// makeQxQuants is make_qx_quants: symmetric quantization of n values to [-nmax, nmax-1] with a
// scale search weighted by x² (rmseType 1) or by qw. L receives the quants offset by nmax.
func makeQxQuants(n, nmax int, x []float32, L []int8, rmseType int, qw []float32) float32 {
	maxv, amax := absMaxSigned(x[:n])
	if amax < groupMaxEps {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0
	}
	iscale := float32(-nmax) / maxv
	if rmseType == 0 {
		for i := 0; i < n; i++ {
			l := nearestInt(iscale * x[i])
			L[i] = int8(nmax + clampInt(l, -nmax, nmax-1))
		}
		return 1 / iscale
	}
	returnEarly := false
	if rmseType < 0 {
		rmseType = -rmseType
		returnEarly = true
	}
	weight := func(i int) float32 {
		switch {
		case qw != nil:
			return qw[i]
		case rmseType == 1:
			return x[i] * x[i]
		case rmseType == 2:
			return 1
		case rmseType == 3:
			return abs32(x[i])
		default:
			return float32(math.Sqrt(float64(abs32(x[i]))))
		}
	}
	var sumlx, suml2 float32
	for i := 0; i < n; i++ {
		l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w := weight(i)
		fl := float32(l)
		sumlx += float32(float32(w*x[i]) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	if returnEarly {
		if suml2 > 0 {
			return 0.5 * (scale + 1/iscale)
		}
		return 1 / iscale
	}
	best := scale * sumlx
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(float32(0.1)*float32(is))) / maxv
		sumlx, suml2 = 0, 0
		for i := 0; i < n; i++ {
			l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
			w := weight(i)
			fl := float32(l)
			sumlx += float32(float32(w*x[i]) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i := 0; i < n; i++ {
				l := nearestInt(iscale * x[i])
				L[i] = int8(nmax + clampInt(l, -nmax, nmax-1))
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// makeQ3Quants is make_q3_quants with do_rmse: start from the max-based rounding, then move single
// quants while that lowers the x²-weighted error, at most five sweeps.
func makeQ3Quants(n, nmax int, x []float32, L []int8, doRmse bool) float32 {
	maxv, amax := absMaxSigned(x[:n])
	if amax < groupMaxEps {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0
	}
	iscale := float32(-nmax) / maxv
	if !doRmse {
		for i := 0; i < n; i++ {
			L[i] = int8(clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1) + nmax)
		}
		return 1 / iscale
	}
	var sumlx, suml2 float32
	for i := 0; i < n; i++ {
		l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
		L[i] = int8(l)
		w := x[i] * x[i]
		fl := float32(l)
		sumlx += float32(float32(w*x[i]) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i := 0; i < n; i++ {
			w := x[i] * x[i]
			li := float32(L[i])
			slx := sumlx - float32(float32(w*x[i])*li)
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*li)*li)
				newL := clampInt(nearestInt(float32(x[i]*sl2)/slx), -nmax, nmax-1)
				if newL != int(L[i]) {
					fn := float32(newL)
					slx += float32(float32(w*x[i]) * fn)
					sl2 += float32(float32(w*fn) * fn)
					if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = int8(newL)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := 0; i < n; i++ {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// makeQkx2Quants is make_qkx2_quants: asymmetric quantization to [0, nmax] with a minimum,
// searching nstep+1 candidate scales and keeping the one with the least weighted error (squared,
// or absolute with useMad). It returns the scale and the (positive) minimum to subtract.
func makeQkx2Quants(n, nmax int, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int, useMad bool) (scale, theMin float32) {
	minv, maxv := x[0], x[0]
	sumW := weights[0]
	sumX := sumW * x[0]
	for i := 1; i < n; i++ {
		if x[i] < minv {
			minv = x[i]
		}
		if x[i] > maxv {
			maxv = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if minv > 0 {
		minv = 0
	}
	if maxv == minv {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0, -minv
	}
	errOf := func(diff float32) float32 {
		if useMad {
			return abs32(diff)
		}
		return float32(diff * diff)
	}
	iscale := float32(nmax) / (maxv - minv)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := nearestInt(iscale * (x[i] - minv))
		L[i] = uint8(clampInt(l, 0, nmax))
		diff := float32(float32(scale*float32(L[i]))+minv) - x[i]
		bestError += float32(weights[i] * errOf(diff))
	}
	if nstep < 1 {
		return scale, -minv
	}
	for is := 0; is <= nstep; is++ {
		num := float32(rmin+float32(rdelta*float32(is))) + float32(nmax)
		iscale = num / (maxv - minv)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := clampInt(nearestInt(iscale*(x[i]-minv)), 0, nmax)
			Laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			wl := float32(w * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(float32(thisScale*float32(Laux[i]))+thisMin) - x[i]
				curError += float32(weights[i] * errOf(diff))
			}
			if curError < bestError {
				copy(L[:n], Laux[:n])
				bestError = curError
				scale = thisScale
				minv = thisMin
			}
		}
	}
	return scale, -minv
}

// getScaleMinK4 unpacks the j-th 6-bit scale and min of a Q4_K/Q5_K super-block.
func getScaleMinK4(j int, q []byte) (d, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0x0f | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// Q2_K: scales[16] | qs[64] | d | dmin (84 bytes).
func quantizeQ2K(x []float32, y []byte) {
	var L, Laux [qkK]uint8
	var weights [16]float32
	var mins, scales [qkK / 16]float32
	const q4scale = float32(15)
	for i := 0; i < len(x)/qkK; i++ {
		xb, yb := x[i*qkK:(i+1)*qkK], y[i*84:(i+1)*84]
		sc, qs := yb[0:16], yb[16:80]
		var maxScale, maxMin float32
		for j := 0; j < qkK/16; j++ {
			for l := 0; l < 16; l++ {
				weights[l] = abs32(xb[16*j+l])
			}
			scales[j], mins[j] = makeQkx2Quants(16, 3, xb[16*j:], weights[:], L[16*j:], Laux[:], -0.5, 0.1, 15, true)
			maxScale = max(maxScale, scales[j])
			maxMin = max(maxMin, mins[j])
		}
		if maxScale > 0 {
			iscale := q4scale / maxScale
			for j := range sc {
				sc[j] = uint8(nearestInt(iscale * scales[j]))
			}
			putF16(yb, 80, maxScale/q4scale)
		} else {
			clear(sc)
			putF16(yb, 80, 0)
		}
		if maxMin > 0 {
			iscale := q4scale / maxMin
			for j := range sc {
				sc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
			}
			putF16(yb, 82, maxMin/q4scale)
		} else {
			putF16(yb, 82, 0)
		}
		for j := 0; j < qkK/16; j++ {
			d := getF16(yb, 80) * float32(sc[j]&0x0f)
			if d == 0 {
				continue
			}
			dm := float32(getF16(yb, 82) * float32(sc[j]>>4))
			for ii := 0; ii < 16; ii++ {
				l := nearestInt((xb[16*j+ii] + dm) / d)
				L[16*j+ii] = uint8(clampInt(l, 0, 3))
			}
		}
		for j := 0; j < qkK; j += 128 {
			for l := 0; l < 32; l++ {
				qs[j/4+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
			}
		}
	}
}

func dequantizeQ2K(b []byte, y []float32) {
	for i := 0; i < len(y)/qkK; i++ {
		bb, yb := b[i*84:(i+1)*84], y[i*qkK:(i+1)*qkK]
		d, dmin := getF16(bb, 80), getF16(bb, 82)
		sc := bb[0:16]
		o, is := 0, 0
		for n := 0; n < qkK; n += 128 {
			q := bb[16+n/4 : 16+n/4+32]
			for shift := uint(0); shift < 8; shift += 2 {
				for half := 0; half < 2; half++ {
					dl := d * float32(sc[is]&0x0f)
					ml := float32(dmin * float32(sc[is]>>4))
					is++
					for l := 0; l < 16; l++ {
						yb[o] = float32(dl*float32((q[16*half+l]>>shift)&3)) - ml
						o++
					}
				}
			}
		}
	}
}

// Q3_K: hmask[32] | qs[64] | scales[12] | d (110 bytes).
func quantizeQ3K(x []float32, y []byte) {
	var L [qkK]int8
	var scales [qkK / 16]float32
	for i := 0; i < len(x)/qkK; i++ {
		xb, yb := x[i*qkK:(i+1)*qkK], y[i*110:(i+1)*110]
		hmask, qs, sc := yb[0:32], yb[32:96], yb[96:108]
		var maxScale, amax float32
		for j := 0; j < qkK/16; j++ {
			scales[j] = makeQ3Quants(16, 4, xb[16*j:], L[16*j:], true)
			if s := abs32(scales[j]); s > amax {
				amax, maxScale = s, scales[j]
			}
		}
		clear(sc)
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := 0; j < qkK/16; j++ {
				l := int8(nearestInt(iscale * scales[j]))
				q3SetScale(sc, j, clampInt(int(l), -32, 31))
			}
			putF16(yb, 108, 1/iscale)
		} else {
			putF16(yb, 108, 0)
		}
		for j := 0; j < qkK/16; j++ {
			d := getF16(yb, 108) * float32(q3Scale(sc, j))
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				l := nearestInt(xb[16*j+ii] / d)
				L[16*j+ii] = int8(clampInt(l, -4, 3) + 4)
			}
		}
		clear(hmask)
		m, hm := 0, uint8(1)
		for j := 0; j < qkK; j++ {
			if L[j] > 3 {
				hmask[m] |= hm
				L[j] -= 4
			}
			if m++; m == qkK/8 {
				m, hm = 0, hm<<1
			}
		}
		for j := 0; j < qkK; j += 128 {
			for l := 0; l < 32; l++ {
				qs[j/4+l] = uint8(L[j+l]) | uint8(L[j+l+32])<<2 | uint8(L[j+l+64])<<4 | uint8(L[j+l+96])<<6
			}
		}
	}
}

// q3Scale unpacks the j-th signed 6-bit scale of a Q3_K super-block (already minus 32).
func q3Scale(sc []byte, j int) int {
	var lo uint8
	if j < 8 {
		lo = sc[j] & 0x0f
	} else {
		lo = sc[j-8] >> 4
	}
	hi := (sc[8+j%4] >> (2 * (j / 4))) & 3
	return int(lo|hi<<4) - 32
}

func dequantizeQ3K(b []byte, y []float32) {
	for i := 0; i < len(y)/qkK; i++ {
		bb, yb := b[i*110:(i+1)*110], y[i*qkK:(i+1)*qkK]
		hm, sc := bb[0:32], bb[96:108]
		dAll := getF16(bb, 108)
		o, is := 0, 0
		m := uint8(1)
		for n := 0; n < qkK; n += 128 {
			q := bb[32+n/4 : 32+n/4+32]
			for shift := uint(0); shift < 8; shift += 2 {
				for half := 0; half < 2; half++ {
					dl := dAll * float32(q3Scale(sc, is))
					is++
					for l := 16 * half; l < 16*half+16; l++ {
						v := int((q[l] >> shift) & 3)
						if hm[l]&m == 0 {
							v -= 4
						}
						yb[o] = dl * float32(v)
						o++
					}
				}
				m <<= 1
			}
		}
	}
}

// packScalesK4 stores eight 6-bit scales and mins the way Q4_K and Q5_K keep them in 12 bytes.
func packScalesK4(sc []byte, ls, lm *[8]uint8) {
	for j := 0; j < 8; j++ {
		if j < 4 {
			sc[j] = ls[j]
			sc[j+4] = lm[j]
		} else {
			sc[j+4] = ls[j]&0x0f | (lm[j]&0x0f)<<4
			sc[j-4] |= (ls[j] >> 4) << 6
			sc[j] |= (lm[j] >> 4) << 6
		}
	}
}

// quantizeScalesK4 is the shared middle of quantize_row_q4_K_ref and _q5_K_ref: quantize the
// sub-block scales and mins to 6 bits, write d, dmin and the packed scales, then re-quantize every
// value against the rounded scales into L (0..nmax).
func quantizeScalesK4(xb []float32, yb []byte, scales, mins *[8]float32, L []uint8, nmax int) {
	var maxScale, maxMin float32
	for j := 0; j < 8; j++ {
		maxScale = max(maxScale, scales[j])
		maxMin = max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	var ls, lm [8]uint8
	for j := 0; j < 8; j++ {
		ls[j] = min(63, uint8(nearestInt(invScale*scales[j])))
		lm[j] = min(63, uint8(nearestInt(invMin*mins[j])))
	}
	sc := yb[4:16]
	packScalesK4(sc, &ls, &lm)
	putF16(yb, 0, maxScale/63)
	putF16(yb, 2, maxMin/63)
	for j := 0; j < 8; j++ {
		s, m := getScaleMinK4(j, sc)
		d := getF16(yb, 0) * float32(s)
		if d == 0 {
			continue
		}
		dm := float32(getF16(yb, 2) * float32(m))
		for ii := 0; ii < 32; ii++ {
			l := nearestInt((xb[32*j+ii] + dm) / d)
			L[32*j+ii] = uint8(clampInt(l, 0, nmax))
		}
	}
}

// subBlockWeights fills the Q4_K/Q5_K reference weights: rms of the sub-block plus |x|.
func subBlockWeights(x []float32, w *[32]float32) {
	var sumX2 float32
	for l := 0; l < 32; l++ {
		sumX2 += float32(x[l] * x[l])
	}
	avX := float32(math.Sqrt(float64(sumX2 / 32)))
	for l := 0; l < 32; l++ {
		w[l] = avX + abs32(x[l])
	}
}

// Q4_K: d | dmin | scales[12] | qs[128] (144 bytes).
func quantizeQ4K(x []float32, y []byte) {
	var L [qkK]uint8
	var Laux [32]uint8
	var weights [32]float32
	var scales, mins [8]float32
	for i := 0; i < len(x)/qkK; i++ {
		xb, yb := x[i*qkK:(i+1)*qkK], y[i*144:(i+1)*144]
		for j := 0; j < 8; j++ {
			subBlockWeights(xb[32*j:], &weights)
			scales[j], mins[j] = makeQkx2Quants(32, 15, xb[32*j:], weights[:], L[32*j:], Laux[:], -1, 0.1, 20, false)
		}
		quantizeScalesK4(xb, yb, &scales, &mins, L[:], 15)
		q := yb[16:144]
		for j := 0; j < qkK; j += 64 {
			for l := 0; l < 32; l++ {
				q[j/2+l] = L[j+l] | L[j+l+32]<<4
			}
		}
	}
}

func dequantizeQ4K(b []byte, y []float32) {
	for i := 0; i < len(y)/qkK; i++ {
		bb, yb := b[i*144:(i+1)*144], y[i*qkK:(i+1)*qkK]
		d, dmin := getF16(bb, 0), getF16(bb, 2)
		sc := bb[4:16]
		for j := 0; j < qkK; j += 64 {
			q := bb[16+j/2 : 16+j/2+32]
			s1, m1 := getScaleMinK4(j/32, sc)
			s2, m2 := getScaleMinK4(j/32+1, sc)
			d1, mm1 := d*float32(s1), float32(dmin*float32(m1))
			d2, mm2 := d*float32(s2), float32(dmin*float32(m2))
			for l := 0; l < 32; l++ {
				yb[j+l] = float32(d1*float32(q[l]&0x0f)) - mm1
				yb[j+32+l] = float32(d2*float32(q[l]>>4)) - mm2
			}
		}
	}
}

// Q5_K: d | dmin | scales[12] | qh[32] | qs[128] (176 bytes).
func quantizeQ5K(x []float32, y []byte) {
	var L [qkK]uint8
	var Laux [32]uint8
	var weights [32]float32
	var scales, mins [8]float32
	for i := 0; i < len(x)/qkK; i++ {
		xb, yb := x[i*qkK:(i+1)*qkK], y[i*176:(i+1)*176]
		for j := 0; j < 8; j++ {
			subBlockWeights(xb[32*j:], &weights)
			scales[j], mins[j] = makeQkx2Quants(32, 31, xb[32*j:], weights[:], L[32*j:], Laux[:], -0.5, 0.1, 15, false)
		}
		quantizeScalesK4(xb, yb, &scales, &mins, L[:], 31)
		qh, ql := yb[16:48], yb[48:176]
		clear(qh)
		m1, m2 := uint8(1), uint8(2)
		for n := 0; n < qkK; n += 64 {
			for j := 0; j < 32; j++ {
				l1, l2 := L[n+j], L[n+j+32]
				if l1 > 15 {
					l1 -= 16
					qh[j] |= m1
				}
				if l2 > 15 {
					l2 -= 16
					qh[j] |= m2
				}
				ql[n/2+j] = l1 | l2<<4
			}
			m1 <<= 2
			m2 <<= 2
		}
	}
}

func dequantizeQ5K(b []byte, y []float32) {
	for i := 0; i < len(y)/qkK; i++ {
		bb, yb := b[i*176:(i+1)*176], y[i*qkK:(i+1)*qkK]
		d, dmin := getF16(bb, 0), getF16(bb, 2)
		sc, qh := bb[4:16], bb[16:48]
		u1, u2 := uint8(1), uint8(2)
		for j := 0; j < qkK; j += 64 {
			ql := bb[48+j/2 : 48+j/2+32]
			s1, m1 := getScaleMinK4(j/32, sc)
			s2, m2 := getScaleMinK4(j/32+1, sc)
			d1, mm1 := d*float32(s1), float32(dmin*float32(m1))
			d2, mm2 := d*float32(s2), float32(dmin*float32(m2))
			for l := 0; l < 32; l++ {
				v1, v2 := ql[l]&0x0f, ql[l]>>4
				if qh[l]&u1 != 0 {
					v1 += 16
				}
				if qh[l]&u2 != 0 {
					v2 += 16
				}
				yb[j+l] = float32(d1*float32(v1)) - mm1
				yb[j+32+l] = float32(d2*float32(v2)) - mm2
			}
			u1 <<= 2
			u2 <<= 2
		}
	}
}

// Q6_K: ql[128] | qh[64] | scales[16] (int8) | d (210 bytes).
func quantizeQ6K(x []float32, y []byte) {
	var L [qkK]int8
	var scales [qkK / 16]float32
	for i := 0; i < len(x)/qkK; i++ {
		xb, yb := x[i*qkK:(i+1)*qkK], y[i*210:(i+1)*210]
		var maxScale, maxAbsScale float32
		for ib := 0; ib < qkK/16; ib++ {
			s := makeQxQuants(16, 32, xb[16*ib:], L[16*ib:], 1, nil)
			scales[ib] = s
			if a := abs32(s); a > maxAbsScale {
				maxAbsScale, maxScale = a, s
			}
		}
		if maxAbsScale < groupMaxEps {
			clear(yb)
			continue
		}
		iscale := -128 / maxScale
		putF16(yb, 208, 1/iscale)
		sc := yb[192:208]
		for ib := range sc {
			sc[ib] = uint8(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		for j := 0; j < qkK/16; j++ {
			d := getF16(yb, 208) * float32(int8(sc[j]))
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				l := nearestInt(xb[16*j+ii] / d)
				L[16*j+ii] = int8(clampInt(l, -32, 31) + 32)
			}
		}
		ql, qh := yb[0:128], yb[128:192]
		for j := 0; j < qkK; j += 128 {
			for l := 0; l < 32; l++ {
				q1 := uint8(L[j+l]) & 0x0f
				q2 := uint8(L[j+l+32]) & 0x0f
				q3 := uint8(L[j+l+64]) & 0x0f
				q4 := uint8(L[j+l+96]) & 0x0f
				ql[j/2+l] = q1 | q3<<4
				ql[j/2+l+32] = q2 | q4<<4
				qh[j/4+l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
			}
		}
	}
}

// q6Quants unpacks the 256 signed 6-bit quants of one Q6_K super-block.
func q6Quants(bb []byte, a *[qkK]int8) {
	for n := 0; n < qkK; n += 128 {
		ql, qh := bb[n/2:n/2+64], bb[128+n/4:128+n/4+32]
		for l := 0; l < 32; l++ {
			a[n+l] = int8(ql[l]&0x0f|((qh[l]>>0)&3)<<4) - 32
			a[n+l+32] = int8(ql[l+32]&0x0f|((qh[l]>>2)&3)<<4) - 32
			a[n+l+64] = int8(ql[l]>>4|((qh[l]>>4)&3)<<4) - 32
			a[n+l+96] = int8(ql[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
		}
	}
}

func dequantizeQ6K(b []byte, y []float32) {
	var a [qkK]int8
	for i := 0; i < len(y)/qkK; i++ {
		bb, yb := b[i*210:(i+1)*210], y[i*qkK:(i+1)*qkK]
		d := getF16(bb, 208)
		sc := bb[192:208]
		q6Quants(bb, &a)
		for j := 0; j < qkK; j++ {
			yb[j] = float32(d*float32(int8(sc[j/16]))) * float32(a[j])
		}
	}
}

// Q8_K: d (float32) | qs[256] | bsums[16] (int16) (292 bytes). Only used for activations; bsums
// hold the sums of each 16 quants so that the K-quant dots can apply the weights' mins cheaply.
func quantizeQ8K(x []float32, y []byte) { quantQ8KImpl(x, y) }

func quantizeQ8KGo(x []float32, y []byte) {
	for i := 0; i < len(x)/qkK; i++ {
		xb, yb := x[i*qkK:(i+1)*qkK], y[i*292:(i+1)*292]
		if maxMagnitudeBits(xb) >= 0x7f800000 {
			// absMaxSigned's comparisons skip a NaN, and an infinity's quant would be ∞·0: the
			// scale is NaN instead, and the quants and their sums zero (as QuantizeActivations
			// says).
			binary.LittleEndian.PutUint32(yb[0:], f32NaN)
			clear(yb[4:])
			continue
		}
		maxv, amax := absMaxSigned(xb)
		if amax == 0 {
			clear(yb) // d and the quants are zero, and so are the sums of zero quants
			continue
		}
		iscale := -127 / maxv
		// Below 127/MaxFloat32 the scale overflows; d = 1/iscale is then a zero and the quants
		// are zeros (as quantizeQ8_0ActGo's), not the conversions' undefined cases of infinite
		// products.
		mult := iscale
		if math.IsInf(float64(mult), 0) {
			mult = 0
		}
		for j, v := range xb {
			yb[4+j] = uint8(int8(min(127, nearestInt(mult*v))))
		}
		for j := 0; j < qkK/16; j++ {
			sum := 0
			for ii := 0; ii < 16; ii++ {
				sum += int(int8(yb[4+16*j+ii]))
			}
			binary.LittleEndian.PutUint16(yb[260+2*j:], uint16(int16(sum)))
		}
		binary.LittleEndian.PutUint32(yb[0:], math.Float32bits(1/iscale))
	}
}

// maxMagnitudeBits is the largest of x's magnitudes as float32 bits (the sign cleared), where
// an infinity is 0x7f800000 and a NaN above it: one branch-free pass, as the AVX2 quantizers
// take it.
func maxMagnitudeBits(x []float32) uint32 {
	var m uint32
	for _, v := range x {
		m = max(m, math.Float32bits(v)&0x7fffffff)
	}
	return m
}

func dequantizeQ8K(b []byte, y []float32) {
	for i := 0; i < len(y)/qkK; i++ {
		bb, yb := b[i*292:(i+1)*292], y[i*qkK:(i+1)*qkK]
		d := math.Float32frombits(binary.LittleEndian.Uint32(bb))
		for j := range yb {
			yb[j] = d * float32(int8(bb[4+j]))
		}
	}
}
