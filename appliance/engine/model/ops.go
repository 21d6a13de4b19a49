package model

import (
	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// axpy adds a·x to y (the attention-weighted sum of values).
func axpy(y []float32, a float32, x []float32) {
	for i, v := range x {
		y[i] += a * v
	}
}

func f32ToF16(dst []uint16, src []float32) {
	for i, v := range src {
		dst[i] = kernels.F32ToF16(v)
	}
}

func f16ToF32(dst []float32, src []uint16) {
	for i, v := range src {
		dst[i] = kernels.F16ToF32(v)
	}
}
