//go:build amd64 && !purego

package kernels

// The packed Q8_0 kernels of packedq8_amd64.s (installed by packed_amd64.go's init).

//go:noescape
func dotPackedQ8_0VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// dotPackedQ8_0VNNIStream is dotPackedQ8_0VNNI without software prefetches (streamtune.go).
//
//go:noescape
func dotPackedQ8_0VNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ8_0x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ8_0x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)
