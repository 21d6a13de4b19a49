//go:build amd64 && !purego

package kernels

import (
	"fmt"

	"golang.org/x/sys/cpu"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The packed kernels of packed_amd64.s, packedq2k_amd64.s, packedq3k_amd64.s, packedq4k_amd64.s, packedq5k_amd64.s, packedq6k_amd64.s
// and packedq8_amd64.s.

//go:noescape
func dotPackedQ4_0VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// dotPackedQ4_0VNNIStream is dotPackedQ4_0VNNI without software prefetches (streamtune.go).
//
//go:noescape
func dotPackedQ4_0VNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ5_0VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// dotPackedQ5_0VNNIStream is dotPackedQ5_0VNNI without software prefetches (streamtune.go).
//
//go:noescape
func dotPackedQ5_0VNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ5_0x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5_0x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4_1VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ4_1x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4_1x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5_1VNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ5_1x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5_1x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ2KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ2Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ3KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ3Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ3Kx8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// dotPackedQ4KVNNIStream is dotPackedQ4KVNNI without software prefetches (streamtune.go).
//
//go:noescape
func dotPackedQ4KVNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// dotPackedQ6KVNNIStream is dotPackedQ6KVNNI without software prefetches (streamtune.go).
//
//go:noescape
func dotPackedQ6KVNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ4Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4_0x4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4_0x8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ6KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ6Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ6Kx8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5KVNNI(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// dotPackedQ5KVNNIStream is dotPackedQ5KVNNI without software prefetches (streamtune.go).
//
//go:noescape
func dotPackedQ5KVNNIStream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ5Kx4VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5Kx8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4Kx8VNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4_0AVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// dotPackedQ4_0AVX2Stream, dotPackedQ8_0AVX2Stream and dotPackedQ5_0AVX2Stream are the AVX2
// one-column kernels without software prefetches (streamtune.go).
//
//go:noescape
func dotPackedQ4_0AVX2Stream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ8_0AVX2Stream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ5_0AVX2Stream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// The AVX-512 VNNI one-column kernels over two runs of panels in step, with their software
// prefetches (packedDot1Runs2, streamtune.go).
//
//go:noescape
func dotPackedQ4_0VNNIRuns2(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)

//go:noescape
func dotPackedQ8_0VNNIRuns2(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)

//go:noescape
func dotPackedQ4KVNNIRuns2(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)

//go:noescape
func dotPackedQ6KVNNIRuns2(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)

// The AVX2 one-column kernels over two runs of panels in step (packedDot1Runs2,
// streamtune.go).
//
//go:noescape
func dotPackedQ4_0AVX2Runs2(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)

//go:noescape
func dotPackedQ8_0AVX2Runs2(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)

//go:noescape
func dotPackedQ4KAVX2Runs2(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)

//go:noescape
func dotPackedQ4_0x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4_0x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ2Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ3Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ6Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5Kx4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4_1x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5_0x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5_1x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ8_0x4AVXVNNI(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ8_0AVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ8_0x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ8_0x8AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5_0AVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ5_0x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4_1AVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ4_1x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5_1AVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ5_1x4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ4KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// dotPackedQ4KAVX2Stream is dotPackedQ4KAVX2 without software prefetches (streamtune.go).
//
//go:noescape
func dotPackedQ4KAVX2Stream(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ4Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ2KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ2Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ3KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ3Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ5KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ5Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ6KAVX2(w *byte, stride int, panels int, nb int, y *byte, out *float32)

//go:noescape
func dotPackedQ6Kx4AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

//go:noescape
func dotPackedQ6Kx8AVX2(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)

// prepPackedActBiasAVX2 is prepPackedActBias's loop over nb blocks (no bounds checks: the
// caller's).
//
//go:noescape
func prepPackedActBiasAVX2(act *byte, nb int, dst *byte, bias int32)

func init() {
	if cpu.X86.HasAVX2 {
		prepActBias = func(act []byte, nb int, dst []byte, bias int32) {
			prepPackedActBiasAVX2(&act[0], nb, &dst[0], bias)
		}
	}
	// AVX2 (with FMA and F16C: x/sys/cpu reports AVX2 only where the OS saves the YMM
	// registers), for CPUs without AVX-512. The VNNI kernels below replace them where there
	// are both.
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C {
		usePacked(packedSet(ggml.Q4_0, "avx2", dotPackedQ4_0AVX2, dotPackedQ4_0x4AVX2, nil).withStream(dotPackedQ4_0AVX2Stream).withRuns2(dotPackedQ4_0AVX2Runs2, dotPackedQ4_0AVX2Stream))
		// Q8_0 and Q6_K have eight-column AVX2 kernels: Q8_0's sign-trick products and
		// Q6_K's scaled ones, each widened to int32 at once, need one register a column
		// (packedq8_amd64.s, packedq6k_amd64.s); the other types' int16 sums need two. One
		// half of the rows a pass, Q4_0's fit one (as Q8_0's kernel takes them), but each
		// broadcast activation word then feeds one VPMADDUBSW instead of the four-column
		// kernel's two: on the Zen 3 VM such a kernel took 7.2-8.6 ns a block and column
		// against 6.9-8.9 (in the caches and from memory) and decoded eight sequences of a
		// Q4_0 model 0.89-0.94x as fast as two passes of four, and was not kept.
		usePacked(packedSet(ggml.Q8_0, "avx2", dotPackedQ8_0AVX2, dotPackedQ8_0x4AVX2, dotPackedQ8_0x8AVX2).withStream(dotPackedQ8_0AVX2Stream).withRuns2(dotPackedQ8_0AVX2Runs2, dotPackedQ8_0AVX2Stream))
		usePacked(packedSet(ggml.Q5_0, "avx2", dotPackedQ5_0AVX2, dotPackedQ5_0x4AVX2, nil).withStream(dotPackedQ5_0AVX2Stream))
		usePacked(packedSet(ggml.Q4_1, "avx2", dotPackedQ4_1AVX2, dotPackedQ4_1x4AVX2, nil))
		usePacked(packedSet(ggml.Q5_1, "avx2", dotPackedQ5_1AVX2, dotPackedQ5_1x4AVX2, nil))
		usePacked(packedSet(ggml.Q4_K, "avx2", dotPackedQ4KAVX2, dotPackedQ4Kx4AVX2, nil).withStream(dotPackedQ4KAVX2Stream).withRuns2(dotPackedQ4KAVX2Runs2, dotPackedQ4KAVX2Stream))
		usePacked(packedSet(ggml.Q2_K, "avx2", dotPackedQ2KAVX2, dotPackedQ2Kx4AVX2, nil))
		usePacked(packedSet(ggml.Q3_K, "avx2", dotPackedQ3KAVX2, dotPackedQ3Kx4AVX2, nil))
		usePacked(packedSet(ggml.Q5_K, "avx2", dotPackedQ5KAVX2, dotPackedQ5Kx4AVX2, nil))
		// Q6_K has no two-run form: its prefetching kernel already reads two runs (each
		// super-block's second half prefetches the next panel's), and on the Zen 3 VM a
		// two-run kernel (quads alternating, one quad's code in a loop) read 256 MiB at
		// 8.5-9.2 GB/s without prefetches or with them two or four super-blocks on, 9.8-10.1
		// with the next panel's too, against 10.1-10.2 (best of seven, alternating); over a
		// decode step's matrices 7.8 against 9.4.
		usePacked(packedSet(ggml.Q6_K, "avx2", dotPackedQ6KAVX2, dotPackedQ6Kx4AVX2, dotPackedQ6Kx8AVX2))
		// AVX-VNNI (VPDPBUSD on 256-bit registers, without AVX-512): one instruction for the
		// AVX2 kernels' two or three a product vector where the columns' arithmetic bounds
		// them (prompts, batches); decoding reads memory no faster with it.
		if cpu.X86.HasAVXVNNI {
			usePacked(packedSet(ggml.Q4_0, "avxvnni", dotPackedQ4_0AVX2, dotPackedQ4_0x4AVXVNNI, nil).withStream(dotPackedQ4_0AVX2Stream).withRuns2(dotPackedQ4_0AVX2Runs2, dotPackedQ4_0AVX2Stream))
			usePacked(packedSet(ggml.Q8_0, "avxvnni", dotPackedQ8_0AVX2, dotPackedQ8_0x4AVXVNNI, nil).withStream(dotPackedQ8_0AVX2Stream).withRuns2(dotPackedQ8_0AVX2Runs2, dotPackedQ8_0AVX2Stream))
			usePacked(packedSet(ggml.Q4_1, "avxvnni", dotPackedQ4_1AVX2, dotPackedQ4_1x4AVXVNNI, nil))
			usePacked(packedSet(ggml.Q5_0, "avxvnni", dotPackedQ5_0AVX2, dotPackedQ5_0x4AVXVNNI, nil).withStream(dotPackedQ5_0AVX2Stream))
			usePacked(packedSet(ggml.Q5_1, "avxvnni", dotPackedQ5_1AVX2, dotPackedQ5_1x4AVXVNNI, nil))
			usePacked(packedSet(ggml.Q4_K, "avxvnni", dotPackedQ4KAVX2, dotPackedQ4Kx4AVXVNNI, nil).withStream(dotPackedQ4KAVX2Stream).withRuns2(dotPackedQ4KAVX2Runs2, dotPackedQ4KAVX2Stream))
			usePacked(packedSet(ggml.Q5_K, "avxvnni", dotPackedQ5KAVX2, dotPackedQ5Kx4AVXVNNI, nil))
			// The types with 16-element sub-blocks scale every product vector: VPDPWSSD
			// scales and adds in one (four columns only, see PV_DOT).
			usePacked(packedSet(ggml.Q2_K, "avxvnni", dotPackedQ2KAVX2, dotPackedQ2Kx4AVXVNNI, nil))
			usePacked(packedSet(ggml.Q3_K, "avxvnni", dotPackedQ3KAVX2, dotPackedQ3Kx4AVXVNNI, nil))
			usePacked(packedSet(ggml.Q6_K, "avxvnni", dotPackedQ6KAVX2, dotPackedQ6Kx4AVXVNNI, nil))
		}
	}
	if !cpu.X86.HasAVX512F || !cpu.X86.HasAVX512BW || !cpu.X86.HasAVX512VL || !cpu.X86.HasAVX512VNNI {
		return
	}
	// A panel of every type is one run of memory (the 32-element types' blocks in groups of
	// eight, each group's scales first), which the hardware prefetcher streams well alone.
	// Four panels in step were faster while Q4_0's and Q8_0's panels were two runs each (all
	// quants, then all scales), but one grouped panel at a time reads faster still:
	// BenchmarkPackedKernels/Q4_0/262144KiB, 15-20 GB/s four in step against 19-25.
	// stream is the one-column kernel's form without prefetches (streamtune.go), nil where the
	// type has one form.
	// runs2 is dot over two runs of panels in step, nil where the type lacks it. On an Intel
	// Xeon with AVX-512 (a 2-core VM of a Sapphire Rapids-class host, model 207), whose level-2
	// streamer follows one 4 KiB page at a time, one core read two runs of plain floats 1.4x
	// faster than one, and the prefetching kernels over two runs of a decode step's units
	// streamed 1.01-1.5x faster than over one (TuneStreams at load, one thread, Llama-3.2-1B
	// shapes: Q8_0 1.02-1.09x, Q4_0 1.02-1.51x, Q4_K 1.07-1.12x, Q6_K 1.01-1.04x). The same
	// kernels without their prefetches gained nothing there over the prefetching one-run ones.
	vnni := func(t ggml.Type, dot, stream packedDot1, runs2 packedDot1Runs2,
		dot4, dot8 func(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)) {
		k := packedSet(t, "vnni", dot, dot4, dot8)
		if stream != nil {
			k.withStream(stream)
		}
		if runs2 != nil {
			k.withRuns2(runs2, dot)
		}
		usePacked(k)
	}
	vnni(ggml.Q4_0, dotPackedQ4_0VNNI, dotPackedQ4_0VNNIStream, dotPackedQ4_0VNNIRuns2, dotPackedQ4_0x4VNNI, dotPackedQ4_0x8VNNI)
	vnni(ggml.Q5_0, dotPackedQ5_0VNNI, dotPackedQ5_0VNNIStream, nil, dotPackedQ5_0x4VNNI, dotPackedQ5_0x8VNNI)
	vnni(ggml.Q4_1, dotPackedQ4_1VNNI, nil, nil, dotPackedQ4_1x4VNNI, dotPackedQ4_1x8VNNI)
	vnni(ggml.Q5_1, dotPackedQ5_1VNNI, nil, nil, dotPackedQ5_1x4VNNI, dotPackedQ5_1x8VNNI)
	vnni(ggml.Q4_K, dotPackedQ4KVNNI, dotPackedQ4KVNNIStream, dotPackedQ4KVNNIRuns2, dotPackedQ4Kx4VNNI, dotPackedQ4Kx8VNNI)
	vnni(ggml.Q5_K, dotPackedQ5KVNNI, dotPackedQ5KVNNIStream, nil, dotPackedQ5Kx4VNNI, dotPackedQ5Kx8VNNI)
	vnni(ggml.Q8_0, dotPackedQ8_0VNNI, dotPackedQ8_0VNNIStream, dotPackedQ8_0VNNIRuns2, dotPackedQ8_0x4VNNI, dotPackedQ8_0x8VNNI)
	// Q2_K: eight columns run as two passes of four. An eight-column kernel built as Q3_K's
	// (two passes of two fields a quarter) was slower (Zen 4, 256 MiB, one thread: 30.5 ns a
	// super-block and column against 27): with 2-bit fields the unpacking is cheap, and both
	// are held by the multiplies (64 VPDPBUSD, 16 VPMULLD and 8 VPDPWSSD a super-block and
	// column), so reading the quants once gains nothing.
	vnni(ggml.Q2_K, dotPackedQ2KVNNI, nil, nil, dotPackedQ2Kx4VNNI, nil)
	vnni(ggml.Q3_K, dotPackedQ3KVNNI, nil, nil, dotPackedQ3Kx4VNNI, dotPackedQ3Kx8VNNI)
	vnni(ggml.Q6_K, dotPackedQ6KVNNI, dotPackedQ6KVNNIStream, dotPackedQ6KVNNIRuns2, dotPackedQ6Kx4VNNI, dotPackedQ6Kx8VNNI)
}

// packedPad4 is each kernel set's packedKernelSet.pad4 by type where padding paid on a Zen 5
// core: the figure a set starts from, until TunePadding measures the machine it runs on
// (padtune.go), as other cores differ (on a Zen 3 EPYC VM AVX2's Q4_0 and Q6_K gained from two
// rows, Q4_K, Q5_K and Q8_0 from three). BenchmarkPackedPadding there (one thread, 128 MiB from
// memory), the time of two and three activation rows in one padded pass of four against one
// pass each. Two rows from 2
// where all runs gave 0.95x or less for N=2 (AVX-512: 0.71-0.95x; AVX-VNNI Q8_0 0.56-0.60x,
// Q4_0 0.90-0.91x), three from 3 where they did for N=3 only (0.64-0.95x); the types left
// out did not gain at either (AVX-512 Q4_1: N=3 0.79-1.04x; AVX-VNNI Q4_K: N=3 1.02-1.06x; AVX2
// Q8_0, Q2_K, Q4_K, Q5_K: N=3 0.89-1.21x, as the 256-bit four-column kernels of these types
// run below memory speed). AVX2's Q4_0 and Q4_1, measured again once their four-column kernels
// took both halves of a panel at once: N=3 0.86-0.95x and 0.81-0.85x, N=2 1.10-1.27x.
var packedPad4 = map[string]map[ggml.Type]int{
	"vnni": {ggml.Q8_0: 2, ggml.Q4_0: 2, ggml.Q5_0: 2, ggml.Q5_1: 2, ggml.Q5_K: 2, ggml.Q6_K: 2,
		ggml.Q2_K: 3, ggml.Q3_K: 3, ggml.Q4_K: 3},
	"avxvnni": {ggml.Q8_0: 2, ggml.Q4_0: 2, ggml.Q4_1: 3, ggml.Q5_0: 3, ggml.Q5_1: 3, ggml.Q2_K: 3,
		ggml.Q3_K: 3, ggml.Q5_K: 3, ggml.Q6_K: 3},
	"avx2": {ggml.Q4_0: 3, ggml.Q4_1: 3, ggml.Q5_0: 3, ggml.Q5_1: 3, ggml.Q3_K: 3, ggml.Q6_K: 3},
}

// packedSet wraps the packed kernels of type t, of the instruction set name, with the checks
// they rely on; dot8 may be nil (eight columns run as two passes of four).
func packedSet(t ggml.Type, name string, dot packedDot1,
	dot4, dot8 func(w *byte, stride int, panels int, nb int, y *byte, ystride int, out *float32, ostride int)) *packedKernelSet {
	f := packedFormats[t]
	k := &packedKernelSet{
		t:        t,
		name:     name,
		padTable: packedPad4[name][t],
		dot4: func(w []byte, stride, panels, nb int, y []byte, ystride int, out []float32, ostride int) {
			f.check(w, stride, panels, nb, y, ystride, 4, out, ostride)
			dot4(&w[0], stride, panels, nb, &y[0], ystride, &out[0], 4*ostride)
		},
		dot8: func(w []byte, stride, panels, nb int, y []byte, ystride int, out []float32, ostride int) {
			f.check(w, stride, panels, nb, y, ystride, 8, out, ostride)
			dot8(&w[0], stride, panels, nb, &y[0], ystride, &out[0], 4*ostride)
		},
	}
	if dot8 == nil {
		k.dot8 = nil
	}
	k.pad4.Store(int32(k.padTable))
	ahead := f.one(dot)
	k.dot = func(w []byte, stride, panels, nb int, y []byte, out []float32) {
		switch decodeForm(k.form.Load()) {
		case formStream:
			k.dotStream(w, stride, panels, nb, y, out)
		case formRuns2:
			k.dotRuns2(w, stride, panels, nb, y, out)
		default:
			ahead(w, stride, panels, nb, y, out)
		}
	}
	return k
}

// check panics unless the packed kernels may read panels of nb blocks (stride bytes apart)
// from w and cols prepared activation rows (ystride apart) from y, and write their results
// (ostride apart) to out: the bounds the assembly relies on.
func (f *packedFormat) check(w []byte, stride, panels, nb int, y []byte, ystride, cols int, out []float32, ostride int) {
	if panels <= 0 || nb <= 0 || stride < f.block*nb || len(w) < (panels-1)*stride+f.block*nb ||
		ystride < f.act*nb || len(y) < (cols-1)*ystride+f.act*nb ||
		ostride < panelRows*panels || len(out) < (cols-1)*ostride+panelRows*panels {
		panic(fmt.Sprintf("kernels: packed %s dot of %d panels of %d blocks (stride %d) from %d bytes, %d activation rows in %d bytes (stride %d), %d results (stride %d)",
			f.t, panels, nb, stride, len(w), cols, len(y), ystride, len(out), ostride))
	}
}

// one wraps an assembly kernel of one column of f's type with check.
func (f *packedFormat) one(dot packedDot1) func(w []byte, stride, panels, nb int, y []byte, out []float32) {
	return func(w []byte, stride, panels, nb int, y []byte, out []float32) {
		f.check(w, stride, panels, nb, y, f.act*nb, 1, out, panelRows*panels)
		dot(&w[0], stride, panels, nb, &y[0], &out[0])
	}
}

// withStream gives k the form of its one-column kernel without software prefetches.
func (k *packedKernelSet) withStream(dot packedDot1) *packedKernelSet {
	k.dotStream = packedFormats[k.t].one(dot)
	return k
}

// withRuns2 gives k the form of its one-column kernel that reads two runs of panels in step:
// the first half of the panels it is given and the second, the odd one at the end by one.
// The runs are the halves of a MatMul unit (128 KiB at one thread), not of the matrix:
// striping a product over the matrix's halves instead (each unit the same stretch of both,
// so that the runs stay half a matrix apart and go on from unit to unit) read no faster on
// the Zen 3 VM, over one decode step's matrices of Llama-3.2-1B's shapes at one thread, best
// of seven alternating passes: Q4_0 11.64 against 11.56 GB/s, Q4_K 9.65 against 9.36 (with
// prefetches 10.66 and 8.56).
func (k *packedKernelSet) withRuns2(dot packedDot1Runs2, one packedDot1) *packedKernelSet {
	f := packedFormats[k.t]
	last := f.one(one)
	k.dotRuns2 = func(w []byte, stride, panels, nb int, y []byte, out []float32) {
		h := panels / 2
		if h > 0 {
			f.check(w, stride, 2*h, nb, y, f.act*nb, 1, out, 2*h*panelRows)
			dot(&w[0], stride, h, nb, &y[0], &out[0], h*stride, &out[h*panelRows])
		}
		if panels%2 == 1 {
			last(w[2*h*stride:], stride, 1, nb, y, out[2*h*panelRows:])
		}
	}
	return k
}
