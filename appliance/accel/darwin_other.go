//go:build !darwin

package accel

func darwinDetect(*detector, *Report) []Accelerator { return nil }
