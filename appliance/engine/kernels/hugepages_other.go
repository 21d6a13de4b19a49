//go:build !linux

package kernels

// adviseHuge is a no-op where transparent huge pages cannot be asked for.
func adviseHuge([]byte) error { return nil }
