//go:build amd64 && !purego

package pipeprobe

import "golang.org/x/sys/cpu"

// Each loop runs n iterations of ten instructions and returns lane 0 of its integer
// accumulators' sum (the float loops: of their float sums, truncated), which the tests check.

// addChain: ten dependent VPADDD of ones; returns 10n.
func addChain(n int) int32

// dpbusd10: ten independent VPDPBUSD of byte ones (4 a lane each); returns 40n.
func dpbusd10(n int) int32

// fma10: ten independent VFMADD231PS of 1·1; returns 10n (exact below 2^24).
func fma10(n int) int32

// mul10: ten independent VMULPS (no sum); returns 0.
func mul10(n int) int32

// dpbusd8mulfma: a Q4_0 column of the eight-sequence kernel: eight VPDPBUSD, one VMULPS, one
// VFMADD231PS; returns the integer part, 32n.
func dpbusd8mulfma(n int) int32

// dpbusd8cvt2: eight VPDPBUSD and two VCVTDQ2PS; returns 32n.
func dpbusd8cvt2(n int) int32

// fma5add5: five VFMADD231PS and five VADDPS of ones; returns 10n.
func fma5add5(n int) int32

// mulld10: ten independent VPMULLD of dword ones; returns 10 (for n > 0).
func mulld10(n int) int32

// round5: five independent round trips of 1.0 through F16 (VCVTPS2PH, VCVTPH2PS); returns 5
// (for n > 0).
func round5(n int) int32

// supported reports whether the CPU runs the probes (AVX-512 F with VNNI).
func supported() bool { return cpu.X86.HasAVX512F && cpu.X86.HasAVX512VNNI }
