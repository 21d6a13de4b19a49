//go:build amd64 && !purego

package kernels

import (
	"encoding/binary"
	"math"
)

// The four-query attention kernels over a Q8_0 cache (attnq8group_amd64.s), bit-identical per
// query to dotQ8_0Row and madQ8_0RowsGo.

//go:noescape
func dotQ8_0Rows4AVX512(tab *byte, k *byte, kstride, groups, pairs int, scale float32, out *float32, ostride int)

//go:noescape
func madQ8_0Rows64x4AVX512(acc *float32, astride int, v *byte, vstride, n, chunks int, ms, vs *float32, fstride int)

// q8PairTab is the bytes of dotQ8_0Rows4AVX512's table per pair of blocks: four queries' 64
// bytes of quants, then sixteen lanes of 128·Σq (int32) and of the query scales (float32).
const q8PairTab = 4*64 + 64 + 64

// maxQ8Pairs bounds the head width the score kernel takes (2·32·maxQ8Pairs values), so that
// its table lives on the stack.
const maxQ8Pairs = 8

// useQ8Group installs the four-query Q8_0 kernels (AVX-512 F, BW, VL and VNNI).
func useQ8Group() {
	dotQ8_0Rows4Impl = func(out []float32, qs, rows []byte, stride int, scale float32) bool {
		nb, n := len(qs)/4/q8Block, len(out)/4
		if n < 4 || nb == 0 || nb%2 != 0 || nb > 2*maxQ8Pairs || len(qs) != 4*nb*q8Block {
			return false
		}
		// Go clears the table on every call: no more of it than the head width needs.
		if nb <= 4 {
			var tab [2 * q8PairTab]byte
			dotQ8x4(tab[:], qs, rows, stride, n, nb, scale, out)
		} else {
			var tab [maxQ8Pairs * q8PairTab]byte
			dotQ8x4(tab[:], qs, rows, stride, n, nb, scale, out)
		}
		return true
	}
	madQ8_0Rows4Impl = func(accs []float32, rows []byte, stride int, ms, vs []float32) bool {
		dim, n := len(accs)/4, len(vs)/4
		if n == 0 || dim == 0 || dim%64 != 0 {
			return false
		}
		madQ8_0Rows64x4AVX512(&accs[0], 4*dim, &rows[0], stride, n, dim/64, &ms[0], &vs[0], 4*n)
		return true
	}
}

// dotQ8x4 lays the four queries of nb blocks each out in tab for the score kernel, which takes
// the rows in fours; the last n%4 rows go to the one-query kernel.
func dotQ8x4(tab, qs, rows []byte, stride, n, nb int, scale float32, out []float32) {
	qb := nb * q8Block
	for p := 0; p < nb/2; p++ {
		t := tab[p*q8PairTab : (p+1)*q8PairTab]
		var corr [4][2]int32
		var d [4][2]float32
		for j := 0; j < 4; j++ {
			for b := 0; b < 2; b++ {
				blk := qs[j*qb+(2*p+b)*q8Block : j*qb+(2*p+b+1)*q8Block]
				copy(t[64*j+32*b:64*j+32*b+32], blk[2:])
				var s int32
				for _, v := range blk[2:] {
					s += int32(int8(v))
				}
				corr[j][b], d[j][b] = 128*s, F16ToF32(binary.LittleEndian.Uint16(blk))
			}
		}
		// Lane 4l+i of the kernel's sums: query 2(i&1)+(l>>1), block l&1.
		for l := 0; l < 4; l++ {
			for i := 0; i < 4; i++ {
				j, b, lane := 2*(i&1)+l>>1, l&1, 4*l+i
				binary.LittleEndian.PutUint32(t[256+4*lane:], uint32(corr[j][b]))
				binary.LittleEndian.PutUint32(t[320+4*lane:], math.Float32bits(d[j][b]))
			}
		}
	}
	n4 := n &^ 3
	if n4 > 0 {
		dotQ8_0Rows4AVX512(&tab[0], &rows[0], stride, n4/4, nb/2, scale, &out[0], 4*n)
	}
	for j := 0; n4 < n && j < 4; j++ {
		dotQ8_0RowsImpl(out[j*n+n4:(j+1)*n], qs[j*qb:(j+1)*qb], rows[n4*stride:], stride, scale)
	}
}
