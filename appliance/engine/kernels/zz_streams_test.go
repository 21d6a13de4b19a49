package kernels

import (
	"fmt"
	"testing"
	"unsafe"
)

func BenchmarkZZStreams(b *testing.B) {
	const size = 256 << 20
	buf := WeightBytes(size)
	x := unsafe.Slice((*float32)(unsafe.Pointer(&buf[0])), size/4)
	for i := range x {
		x[i] = float32(i & 1023)
	}
	var sink float32
	b.Run("one", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for i := 0; i < len(x); i += 4096 {
				sink += DotF32Fast(x[i:i+4096], x[i:i+4096])
			}
		}
	})
	b.Run("two-lockstep", func(b *testing.B) {
		b.SetBytes(size)
		h := len(x) / 2
		for b.Loop() {
			for i := 0; i < h; i += 4096 {
				sink += DotF32Fast(x[i:i+4096], x[h+i:h+i+4096])
			}
		}
	})
	for _, s := range []int{2, 4} {
		for _, chunk := range []int{64, 256, 1024, 4096} {
			b.Run(fmt.Sprintf("%d-alternate-%dB", s, chunk*4), func(b *testing.B) {
				b.SetBytes(size)
				h := len(x) / s
				for b.Loop() {
					for i := 0; i < h; i += chunk {
						for k := 0; k < s; k++ {
							o := k*h + i
							sink += DotF32Fast(x[o:o+chunk], x[o:o+chunk])
						}
					}
				}
			})
		}
	}
	_ = sink
}
