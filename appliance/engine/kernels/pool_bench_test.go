package kernels

import (
	"fmt"
	"runtime"
	"testing"
)

// spinRanger does a fixed amount of work per item, so that a For's cost beyond the work shows.
type spinRanger struct {
	per int
	out []float32
}

func (r *spinRanger) Range(worker, lo, hi int) {
	s := r.out[worker*16]
	for i := lo; i < hi; i++ {
		for k := 0; k < r.per; k++ {
			s = s*0.999 + 1
		}
	}
	r.out[worker*16] = s
}

// BenchmarkPoolFor measures one For of the shape a decode step issues about 80 times a token
// (a few dozen items, some microseconds of work in all), and a larger one, at each thread count
// this machine has up to 16: what is above the work is the pool's hand-out and join, the part
// of a decode step that does not shrink with more cores.
func BenchmarkPoolFor(b *testing.B) {
	for _, threads := range []int{1, 2, 4, 8, 16} {
		if threads > runtime.NumCPU() {
			break
		}
		for _, items := range []int{32, 256} {
			b.Run(fmt.Sprintf("threads=%d/items=%d", threads, items), func(b *testing.B) {
				p := NewPool(threads)
				defer p.Close()
				r := &spinRanger{per: 64, out: make([]float32, 16*threads)}
				for i := 0; i < b.N; i++ {
					p.For(items, 0, r)
				}
			})
		}
	}
}
