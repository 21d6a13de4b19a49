//go:build amd64 && !purego

package pipeprobe

import (
	"testing"
	"time"
)

type probe struct {
	name string
	run  func(int) int32
	want func(n int) int32 // the loop's result for n iterations
}

var probes = []probe{
	{"dpbusd10", dpbusd10, func(n int) int32 { return int32(40 * n) }},
	{"fma10", fma10, func(n int) int32 { return int32(10 * n) }},
	{"mulps10", mul10, func(int) int32 { return 0 }},
	{"q4_0-column", dpbusd8mulfma, func(n int) int32 { return int32(32 * n) }},
	{"dpbusd8-cvt2", dpbusd8cvt2, func(n int) int32 { return int32(32 * n) }},
	{"fma5-addps5", fma5add5, func(n int) int32 { return int32(10 * n) }},
	{"mulld10", mulld10, func(n int) int32 { return int32(10 * min(n, 1)) }},
	{"f16-round5", round5, func(n int) int32 { return int32(5 * min(n, 1)) }},
}

func need(tb testing.TB) {
	if !supported() {
		tb.Skip("the probes need AVX-512 F and VNNI, which this CPU lacks")
	}
}

// The loops run the instructions their names say: each accumulator moves by its instruction's
// result once an iteration.
func TestProbesCompute(t *testing.T) {
	need(t)
	for _, n := range []int{0, 1, 7, 1000} {
		if got := addChain(n); got != int32(10*n) {
			t.Errorf("addChain(%d) = %d, want %d", n, got, 10*n)
		}
		for _, p := range probes {
			if got, want := p.run(n), p.want(n); got != want {
				t.Errorf("%s(%d) = %d, want %d", p.name, n, got, want)
			}
		}
	}
}

// BenchmarkMultiplyPipes reports cycles per iteration of ten instructions for each mix,
// calibrated by the dependent-addition chain (ten cycles an iteration) timed in the same run,
// and ghz, the clock that implies. Zen 4 (this project's CI host): dpbusd10, fma10, mulps10
// and q4_0-column (eight VPDPBUSD, a VMULPS, a VFMADD231PS) all take ten cycles: one
// multiply-class instruction a cycle, whatever the mix. dpbusd8-cvt2 takes eight and
// fma5-addps5 about six: conversions and additions run beside them on other pipes. mulld10
// takes ten too (VPMULLD, the K-quants' sub-block scaling, is one of them); f16-round5, five
// round trips through F16, fourteen to sixteen, on the conversion pipe.
func BenchmarkMultiplyPipes(b *testing.B) {
	need(b)
	const iters = 20_000_000
	clock := func() time.Duration {
		t0 := time.Now()
		addChain(iters)
		return time.Since(t0)
	}
	for _, p := range probes {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				p.run(iters)
			}
			per := b.Elapsed().Seconds() / float64(b.N) / iters // b.Loop stopped the timer
			cycle := clock().Seconds() / iters / 10
			b.ReportMetric(per/cycle, "cycles/iter")
			b.ReportMetric(1e-9/cycle, "ghz")
		})
	}
}
