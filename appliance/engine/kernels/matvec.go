package kernels

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Matrix-vector products over row-major weights (GGUF layout: ne[0] = cols is the row length).
// Large products are split by rows over a fixed set of worker goroutines that live for the
// process, so a steady stream of calls allocates nothing.

// parallelMin is the work (rows*cols) below which splitting costs more than it saves.
const parallelMin = 1 << 15

type mvKind uint8

const (
	mvQuant mvKind = iota // Dot with converted activations
	mvF32                 // dequantize each row, fp32 dot
)

type mvJob struct {
	kind     mvKind
	t        ggml.Type
	w        []byte
	act      []byte
	x        []float32
	out      []float32
	rowBytes int
	cols     int
	r0, r1   int
	wg       *sync.WaitGroup
}

var (
	workersOnce sync.Once
	jobs        chan mvJob
	wgPool      = sync.Pool{New: func() any { return new(sync.WaitGroup) }}
	actPool     = sync.Pool{New: func() any { return new([]byte) }}
	scratchPool = sync.Pool{New: func() any { return new([]float32) }}
)

func startWorkers() {
	n := runtime.GOMAXPROCS(0)
	jobs = make(chan mvJob, 4*n)
	for i := 0; i < n; i++ {
		go func() {
			var scratch []float32
			for j := range jobs {
				scratch = runJob(j, scratch)
				j.wg.Done()
			}
		}()
	}
}

func runJob(j mvJob, scratch []float32) []float32 {
	switch j.kind {
	case mvQuant:
		for r := j.r0; r < j.r1; r++ {
			j.out[r] = Dot(j.t, j.w[r*j.rowBytes:(r+1)*j.rowBytes], j.act, j.cols)
		}
	case mvF32:
		if j.t == ggml.F32 || j.t == ggml.F16 || j.t == ggml.BF16 {
			for r := j.r0; r < j.r1; r++ {
				j.out[r] = DotDequant(j.t, j.w[r*j.rowBytes:(r+1)*j.rowBytes], j.x, nil)
			}
			return scratch
		}
		if cap(scratch) < j.cols {
			scratch = make([]float32, j.cols)
		}
		scratch = scratch[:j.cols]
		for r := j.r0; r < j.r1; r++ {
			j.out[r] = DotDequant(j.t, j.w[r*j.rowBytes:(r+1)*j.rowBytes], j.x, scratch)
		}
	}
	return scratch
}

// run executes the job over its rows, in parallel when it is large enough.
func run(j mvJob) {
	rows := j.r1 - j.r0
	parts := runtime.GOMAXPROCS(0)
	if rows*j.cols < parallelMin || parts < 2 || rows < 2 {
		sp := scratchPool.Get().(*[]float32)
		*sp = runJob(j, *sp)
		scratchPool.Put(sp)
		return
	}
	workersOnce.Do(startWorkers)
	parts = min(parts, rows, cap(jobs))
	wg := wgPool.Get().(*sync.WaitGroup)
	j.wg = wg
	per := (rows + parts - 1) / parts
	wg.Add(parts - 1)
	start := j.r0
	for p := 0; p < parts-1; p++ {
		part := j
		part.r0, part.r1 = start, min(start+per, j.r1)
		start = part.r1
		jobs <- part
	}
	// The caller does the last share itself, so progress never waits on a busy pool.
	own := j
	own.r0 = start
	sp := scratchPool.Get().(*[]float32)
	*sp = runJob(own, *sp)
	scratchPool.Put(sp)
	wg.Wait()
	wgPool.Put(wg)
}

func checkMatVec(t ggml.Type, w []byte, rows, cols int, xLen, outLen int) int {
	rb, err := t.RowSize(int64(cols))
	if err != nil {
		panic(fmt.Sprintf("kernels: matvec: %v", err))
	}
	if int64(len(w)) < rb*int64(rows) {
		panic(fmt.Sprintf("kernels: matvec %s %dx%d needs %d weight bytes, have %d", t, rows, cols, rb*int64(rows), len(w)))
	}
	if xLen != cols || outLen < rows {
		panic(fmt.Sprintf("kernels: matvec %s %dx%d with input of %d and output of %d", t, rows, cols, xLen, outLen))
	}
	return int(rb)
}

// MatVec computes out[r] = row r of w · x for a rows×cols weight matrix of type t, the way
// llama.cpp's CPU backend does: x is converted once to VecDotType(t), then every row uses Dot.
func MatVec(t ggml.Type, w []byte, rows, cols int, x []float32, out []float32) {
	checkMatVec(t, w, rows, cols, len(x), len(out))
	bp := actPool.Get().(*[]byte)
	*bp = QuantizeActivations(t, x, *bp)
	MatVecAct(t, w, rows, cols, *bp, out)
	actPool.Put(bp)
}

// MatVecAct is MatVec with activations already converted by QuantizeActivations(t, ...), for
// callers that multiply one input with several matrices of the same type.
func MatVecAct(t ggml.Type, w []byte, rows, cols int, act []byte, out []float32) {
	rb := checkMatVec(t, w, rows, cols, cols, len(out))
	at := VecDotType(t)
	if need, _ := at.RowSize(int64(cols)); int64(len(act)) < need {
		panic(fmt.Sprintf("kernels: matvec %s: activations of %d bytes, %s row of %d needs %d", t, len(act), at, cols, need))
	}
	if at == ggml.F32 || at == ggml.F16 || at == ggml.BF16 {
		// Widening the activations once is exact, and the fp32 row dots then compute the same
		// products and sums as Dot would, without decoding the activations again for every row.
		xp := scratchPool.Get().(*[]float32)
		if cap(*xp) < cols {
			*xp = make([]float32, cols)
		}
		x := (*xp)[:cols]
		decodeAct(at, act, x)
		run(mvJob{kind: mvF32, t: t, w: w, x: x, out: out, rowBytes: rb, cols: cols, r0: 0, r1: rows})
		scratchPool.Put(xp)
		return
	}
	run(mvJob{kind: mvQuant, t: t, w: w, act: act, out: out, rowBytes: rb, cols: cols, r0: 0, r1: rows})
}

// MatVecF32 computes out = w · x in fp32: each weight row is dequantized exactly and multiplied
// with DotF32, with no activation rounding (the fixtures' f32ref/dequant_f32ref arithmetic).
func MatVecF32(t ggml.Type, w []byte, rows, cols int, x []float32, out []float32) {
	rb := checkMatVec(t, w, rows, cols, len(x), len(out))
	run(mvJob{kind: mvF32, t: t, w: w, x: x, out: out, rowBytes: rb, cols: cols, r0: 0, r1: rows})
}
