// Package pipeprobe measures how many vector instructions of a kind this CPU retires a cycle,
// alone and mixed, with loops of independent 512-bit instructions timed against a chain of
// dependent additions (one a cycle on every x86 core with AVX-512, which calibrates the clock).
//
// It exists to back a claim about the engine's kernels with a measurement anyone can repeat:
// the eight-sequence Q4_0 decode kernel (kernels.dotPackedQ4_0x8VNNI) spends eight VPDPBUSD,
// one VMULPS and one VFMADD231PS per 16 rows, block and sequence, and on a core whose integer
// dot products and float multiplies share two 256-bit multiply pipes (AMD Zen 4) those ten
// retire one a cycle between them, a floor no reordering lowers. The benchmarks print
// cycles/iter for each mix; the tests check that each loop computes what its name says.
package pipeprobe
