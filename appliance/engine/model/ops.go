package model

// axpy adds a·x to y (the attention-weighted sum of values).
func axpy(y []float32, a float32, x []float32) {
	for i, v := range x {
		y[i] += a * v
	}
}
