//go:build arm64 && !purego

package kernels

import (
	"golang.org/x/sys/cpu"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The NEON kernels of simd_arm64.s. The integer block sums use SDOT (the dot-product extension,
// ARMv8.2 and later: every arm64 server core and Apple's); the float steps run per block in
// the reference order, so each kernel equals the reference Dot bit for bit.

//go:noescape
func dotQ8_0SDOT(x, y *byte, nb int) float32

//go:noescape
func dotQ4_0SDOT(x, y *byte, nb int) float32

// The K-quant dots (kquants_arm64.s), within the float tolerance of the Go twins.

//go:noescape
func dotQ4KSDOT(x, y *byte, nb int) float32

//go:noescape
func dotQ6KSDOT(x, y *byte, nb int) float32

var geomQ4_0 = blockGeom{ggml.Q4_0, 32, 18, 34}

func init() {
	if !cpu.ARM64.HasASIMD || !cpu.ARM64.HasASIMDDP {
		return
	}
	simdName = "neon dotprod"
	useExact("sdot", ggml.Q8_0, func(row, act []byte, n int) float32 {
		nb := geomQ8_0.blocks(row, act, n)
		if nb == 0 {
			return 0
		}
		return dotQ8_0SDOT(&row[0], &act[0], nb)
	})
	use("sdot", ggml.Q4_K, kDot(&geomQ4K, dotQ4KSDOT))
	use("sdot", ggml.Q6_K, kDot(&geomQ6K, dotQ6KSDOT))
	useExact("sdot", ggml.Q4_0, func(row, act []byte, n int) float32 {
		nb := geomQ4_0.blocks(row, act, n)
		if nb == 0 {
			return 0
		}
		return dotQ4_0SDOT(&row[0], &act[0], nb)
	})
}
