//go:build amd64 && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// TestQ6KAVX512MatchesAVX2: the 512-bit Q6_K kernel gives the AVX2 kernel's bits, on quantized
// random rows and on arbitrary weight bytes (every scale and quant value).
func TestQ6KAVX512MatchesAVX2(t *testing.T) {
	if !cpu.X86.HasAVX512F || !cpu.X86.HasAVX512BW || !cpu.X86.HasAVX512VL || !cpu.X86.HasAVX2 || !cpu.X86.HasFMA || !cpu.X86.HasF16C {
		t.Skip("no AVX-512 BW here")
	}
	r := rand.New(rand.NewPCG(6, 512))
	for trial := 0; trial < 200; trial++ {
		nb := 1 + trial%9
		n := 256 * nb
		row, err := Quantize(ggml.Q6_K, randVec(r, n, 0.3))
		if err != nil {
			t.Fatal(err)
		}
		if trial%2 == 1 {
			for i := range row {
				row[i] = byte(r.Uint32())
			}
			fixHalves(ggml.Q6_K, row, nb)
		}
		act := QuantizeActivations(ggml.Q6_K, randVec(r, n, 1+float64(trial%5)), nil)
		want, got := vecDotQ6K(row, act, n), vecDotQ6K512(row, act, n)
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("trial %d (%d super-blocks): AVX-512 %v, AVX2 %v", trial, nb, got, want)
		}
	}
}
