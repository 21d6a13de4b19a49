//go:build (amd64 || arm64) && !purego

package kernels

import (
	"fmt"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// halfKernel is the prepared kernel set of F16 or BF16 weights (set's): MatMul widens each
// activation row to float32 once (exact), so that the inner loops convert only the weights, of
// two rows for four columns at a time. The results are dotF16AVX2's (dotBF16AVX2's, with the Go
// tail) bit for bit. Decode steps (fewer than four activation rows) keep the 16-bit
// activations: the rows stream from memory there, and the widened row's twice the bytes in the
// level-1 cache made them slower (tg 4-5% at one thread, 2-layer F16 model).
//
// On AVX2 alone a step of the two-row kernel on 16-bit activations widened twelve vectors for
// eight FMAs; its passes (halfpairs_amd64.s) widen two. An earlier prepared set of one column
// at a time ran prompts 20% slower than the 16-bit activations did. The sets (halfF32Set) are
// each architecture's: their methods one, four, two and pairs call its kernels.
func halfKernel(set halfF32Set) *preparedKernel {
	t, wide := ggml.F16, F16ToF32
	if set.bf16() {
		t, wide = ggml.BF16, BF16ToF32
	}
	check := func(row, prep []byte, stride, cols, n int) {
		if len(row) < 2*n || stride < 4*n || len(prep) < (cols-1)*stride+4*n {
			panic(fmt.Sprintf("kernels: %s dot of %d elements with a row of %d bytes and prepared activations of %d (%d columns, stride %d)",
				t, n, len(row), len(prep), cols, stride))
		}
	}
	f32s := func(b []byte, n int) []float32 {
		return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), n)
	}
	u16s := func(b []byte, n int) []uint16 { return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), n) }
	tail := func(s float32, row []uint16, act []float32, np int) float32 {
		sum := float64(s)
		for i := np; i < len(row); i++ {
			sum += float64(wide(row[i]) * act[i])
		}
		return float32(sum)
	}
	pk := &preparedKernel{name: set.name(), t: t, minN: 4, unitRows: set.unitRows(),
		size: func(n int) int { return 4 * n },
		prep: func(act []byte, n int, dst []byte) {
			if len(act) < 2*n || len(dst) < 4*n {
				panic(fmt.Sprintf("kernels: %s activations of %d elements from %d bytes into %d", t, n, len(act), len(dst)))
			}
			if n == 0 {
				return
			}
			if t == ggml.BF16 {
				d, a := f32s(dst, n), u16s(act, n)
				for i, v := range a {
					d[i] = BF16ToF32(v)
				}
				return
			}
			FromF16(f32s(dst, n), u16s(act, n))
		},
	}
	pk.dot = func(row, prep []byte, n int) float32 {
		check(row, prep, 4*n, 1, n)
		if n == 0 {
			return 0
		}
		a, b := u16s(row, n), f32s(prep, n)
		np := n &^ 31
		var s float32
		if np > 0 {
			s = set.one(&a[0], &b[0], np)
		}
		return tail(s, a, b, np)
	}
	pk.dot4 = func(row, prep []byte, stride int, n int, out *[4]float32) {
		check(row, prep, stride, 4, n)
		if n == 0 {
			*out = [4]float32{}
			return
		}
		a := u16s(row, n)
		np := n &^ 31
		var s [4]float32
		if np > 0 {
			set.four(&a[0], &f32s(prep, n)[0], stride, np, &s)
		}
		for c := range out {
			out[c] = tail(s[c], a, f32s(prep[c*stride:], n), np)
		}
	}
	pk.dot2x4 = func(w []byte, wstride int, prep []byte, stride int, n int, out *[8]float32) {
		check(w, prep, stride, 4, n)
		if wstride < 2*n || len(w) < wstride+2*n {
			panic(fmt.Sprintf("kernels: %s dot of two rows of %d elements, %d bytes apart, from %d bytes", t, n, wstride, len(w)))
		}
		if n == 0 {
			*out = [8]float32{}
			return
		}
		np := n &^ 31
		var s [8]float32
		if np > 0 {
			set.two(&u16s(w, n)[0], wstride, &f32s(prep, n)[0], stride, np, &s)
		}
		for r := range 2 {
			a := u16s(w[r*wstride:], n)
			for c := range 4 {
				out[4*r+c] = tail(s[4*r+c], a, f32s(prep[c*stride:], n), np)
			}
		}
	}
	pk.pairs = func(w []byte, wstride, pairs int, prep []byte, stride, n int, out []float32, ostride int) {
		if pairs <= 0 {
			return
		}
		check(w, prep, stride, 4, n)
		checkPairs4(w, wstride, pairs, n, out, ostride)
		np := n &^ 31
		if np == 0 {
			for c := range 4 {
				clear(out[c*ostride : c*ostride+2*pairs])
			}
		} else {
			set.pairs(&u16s(w, n)[0], wstride, pairs, &f32s(prep, n)[0], stride, np, &out[0], 4*ostride)
		}
		if np == n {
			return
		}
		// The elements after the last whole step, added in Go as dot adds them.
		for i := range 2 * pairs {
			a := u16s(w[i*wstride:], n)
			for c := range 4 {
				o := &out[c*ostride+i]
				*o = tail(*o, a, f32s(prep[c*stride:], n), np)
			}
		}
	}
	return pk
}

// twoByPairs is two for the sets whose two-row form is a run of one pair: row r, column c at
// o[r+2c] there.
func (s halfF32Set) twoByPairs(x *uint16, xstride int, y *float32, ystride, n int, out *[8]float32) {
	var o [8]float32
	s.pairs(x, xstride, 1, y, ystride, n, &o[0], 8)
	for r := range 2 {
		for c := range 4 {
			out[4*r+c] = o[r+2*c]
		}
	}
}
