package kernels

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The SIMD kernels against their pure-Go twins (the reference Dot and the scalar float helpers).
//
// Integer paths are compared exactly: blocks are built with power-of-two scales and quants small
// enough that every float step of both the reference and the SIMD kernel is exact, so any
// difference can only come from the integer arithmetic (unpacking, products, block sums, scales
// and mins). Float paths, and real-valued blocks where the float sums round, are compared with a
// stated tolerance: |VecDot - Dot| <= 4e-6 · sum|w·x|, a few float32 roundings of the sum.

// simdTypes are the weight types with a SIMD kernel on this machine (none under purego).
func simdTypes() []ggml.Type {
	var ts []ggml.Type
	for _, t := range ggml.All() {
		if Accelerated(t) {
			ts = append(ts, t)
		}
	}
	return ts
}

// Where the CPU has the baseline SIMD (AVX2+FMA+F16C, or NEON with the dot product), every
// weight type a model may hold has a kernel: none falls back to the generic Go dot, which is
// one to two orders of magnitude slower.
func TestEveryWeightTypeAccelerated(t *testing.T) {
	if SIMD() == "generic" {
		t.Skip("no SIMD kernels on this CPU or build (purego)")
	}
	for _, ty := range []ggml.Type{ggml.F32, ggml.F16, ggml.BF16, ggml.Q4_0, ggml.Q4_1, ggml.Q5_0, ggml.Q5_1, ggml.Q8_0,
		ggml.Q2_K, ggml.Q3_K, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K} {
		if !Accelerated(ty) {
			t.Errorf("%s has no %s kernel", ty, SIMD())
		}
	}
}

// The F16 and BF16 weight dots are ggml's AVX2 sums on every architecture (four accumulators of
// eight float32 lanes over 32-element steps, the rest in float64), bit for bit; VDPBF16PS's
// BF16 dot rounds differently and is held to the reference's tolerance only.
func TestHalfDotsMatchGGMLOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 16))
	twins := map[ggml.Type]func(row, act []byte, n int) float32{
		ggml.F16: func(row, act []byte, n int) float32 {
			return dotF16Go(unsafe.Slice((*uint16)(unsafe.Pointer(&row[0])), n), unsafe.Slice((*uint16)(unsafe.Pointer(&act[0])), n))
		},
		ggml.BF16: dotBF16Twin,
	}
	checked := 0
	for _, v := range variants {
		twin := twins[v.t]
		if twin == nil || v.name == "avx512bf16" {
			continue
		}
		checked++
		for _, n := range halfPreparedSizes {
			for trial := range 6 {
				row, act := trialOperands(t, r, v.t, n, trial, [2]int{})
				if got, want := v.dot(row, act, n), twin(row, act, n); math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("%s/%s %d elements trial %d: %v, twin %v", v.t, v.name, n, trial, got, want)
				}
			}
		}
	}
	if SIMD() != "generic" && checked < 2 {
		t.Errorf("%d F16 and BF16 kernels checked", checked)
	}
}

func TestSIMDReport(t *testing.T) {
	t.Logf("SIMD: %s; accelerated weight types: %v; %d kernel variants", SIMD(), simdTypes(), len(variants))
}

// pow2Half returns the F16 bits of 2^e.
func pow2Half(e int) uint16 { return F32ToF16(float32(math.Ldexp(1, e))) }

// randI8 returns a byte holding a signed value in [-lim, lim].
func randI8(r *rand.Rand, lim int) byte { return byte(int8(r.IntN(2*lim+1) - lim)) }

// exactBlocks builds nb blocks of weights of type t and matching activations whose dot product
// every kernel computes without rounding. actLim bounds the activation quants.
func exactBlocks(r *rand.Rand, t ggml.Type, nb int, e int) (row, act []byte) {
	row = make([]byte, nb*t.TypeSize())
	at := VecDotType(t)
	act = make([]byte, nb*at.TypeSize())
	for i := range row {
		row[i] = byte(r.Uint32())
	}
	switch at {
	case ggml.Q8_0:
		for b := 0; b < nb; b++ {
			y := act[b*34:]
			binary.LittleEndian.PutUint16(y, pow2Half(e))
			for j := 0; j < 32; j++ {
				y[2+j] = randI8(r, 15)
			}
		}
	case ggml.Q8_1:
		for b := 0; b < nb; b++ {
			y := act[b*36:]
			sum := 0
			for j := 0; j < 32; j++ {
				y[4+j] = randI8(r, 15)
				sum += int(int8(y[4+j]))
			}
			binary.LittleEndian.PutUint16(y, pow2Half(e))
			binary.LittleEndian.PutUint16(y[2:], F32ToF16(float32(math.Ldexp(float64(sum), e))))
		}
	case ggml.Q8_K:
		for b := 0; b < nb; b++ {
			y := act[b*292:]
			binary.LittleEndian.PutUint32(y, math.Float32bits(float32(math.Ldexp(1, e))))
			for j := 0; j < 256; j++ {
				y[4+j] = randI8(r, 15)
			}
			fillBsums(y)
		}
	}
	bs := t.TypeSize()
	for b := 0; b < nb; b++ {
		x := row[b*bs:]
		switch t {
		case ggml.Q8_0:
			binary.LittleEndian.PutUint16(x, pow2Half(-e))
			for j := 0; j < 32; j++ {
				x[2+j] = randI8(r, 127)
			}
		case ggml.Q4_0:
			binary.LittleEndian.PutUint16(x, pow2Half(1-e))
		case ggml.Q5_0:
			binary.LittleEndian.PutUint16(x, pow2Half(-e))
		case ggml.Q4_1, ggml.Q5_1:
			binary.LittleEndian.PutUint16(x, pow2Half(-e))
			binary.LittleEndian.PutUint16(x[2:], pow2Half(-2-e))
		case ggml.Q4_K, ggml.Q5_K:
			binary.LittleEndian.PutUint16(x, pow2Half(-e))
			binary.LittleEndian.PutUint16(x[2:], pow2Half(-1-e))
		case ggml.Q6_K:
			for j := 0; j < 16; j++ {
				x[192+j] = randI8(r, 31)
			}
			binary.LittleEndian.PutUint16(x[208:], pow2Half(-e))
		case ggml.Q3_K:
			binary.LittleEndian.PutUint16(x[108:], pow2Half(-e))
		case ggml.Q2_K:
			binary.LittleEndian.PutUint16(x[80:], pow2Half(-e))
			binary.LittleEndian.PutUint16(x[82:], pow2Half(-1-e))
		}
	}
	return row, act
}

// fillBsums writes the 16 group sums of a Q8_K block.
func fillBsums(y []byte) {
	for j := 0; j < 16; j++ {
		s := 0
		for i := 0; i < 16; i++ {
			s += int(int8(y[4+16*j+i]))
		}
		binary.LittleEndian.PutUint16(y[260+2*j:], uint16(int16(s)))
	}
}

func TestVecDotExactOnExactBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, v := range variants {
		ty := v.t
		if ty == ggml.F16 || ty == ggml.BF16 || ty == ggml.F32 {
			continue
		}
		for _, nb := range []int{1, 2, 3, 4, 7, 8, 11, 16} {
			for trial := 0; trial < 40; trial++ {
				row, act := exactBlocks(r, ty, nb, trial%5-2)
				n := nb * ty.BlockSize()
				want := Dot(ty, row, act, n)
				if got := v.dot(row, act, n); got != want {
					t.Fatalf("%s/%s %d blocks trial %d: SIMD %v, reference %v", ty, v.name, nb, trial, got, want)
				}
			}
		}
	}
}

// simdTol is the float tolerance of a SIMD dot relative to sum|w·x|.
const simdTol = 4e-6

func checkClose(t *testing.T, what string, got, want float32, scale float64) {
	t.Helper()
	if d := math.Abs(float64(got) - float64(want)); d > simdTol*scale+1e-30 || math.IsNaN(float64(got)) {
		t.Fatalf("%s: SIMD %v, reference %v (diff %g, scale %g)", what, got, want, d, scale)
	}
}

// absScale is sum|w·x| over the dequantized operands.
func absScale(t *testing.T, ty ggml.Type, row, act []byte, n int) float64 {
	t.Helper()
	wd, ad := make([]float32, n), make([]float32, n)
	if err := Dequantize(ty, row, wd); err != nil {
		t.Fatal(err)
	}
	if err := Dequantize(VecDotType(ty), act, ad); err != nil {
		t.Fatal(err)
	}
	return absDot64(wd, ad)
}

func TestVecDotMatchesReferenceOnRealBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, v := range variants {
		ty := v.t
		for _, n := range []int{256, 512, 320, 333, 2048, 8192} { // 333: the float kernels' tails
			for trial := 0; trial < 6; trial++ {
				if n%ty.BlockSize() != 0 {
					continue
				}
				w := randVec(r, n, 0.5)
				x := randVec(r, n, 2)
				if trial == 1 {
					clear(x[:256])
					for i := 256; i < min(512, n); i++ {
						x[i] *= 1000
					}
				}
				row, err := Quantize(ty, w)
				if err != nil {
					t.Fatal(err)
				}
				act := QuantizeActivations(ty, x, nil)
				if got, want := v.dot(row, act, n), Dot(ty, row, act, n); v.exact && got != want {
					t.Fatalf("%s/%s n=%d trial %d: %v, reference %v (the kernel should be exact)", ty, v.name, n, trial, got, want)
				}
				checkClose(t, fmt.Sprintf("%s/%s n=%d trial %d", ty, v.name, n, trial), v.dot(row, act, n), Dot(ty, row, act, n), absScale(t, ty, row, act, n))
			}
		}
	}
}

// Edge-case blocks: extreme quants, scales and mins, all zero, and arbitrary bytes.
func TestVecDotEdgeBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, v := range variants {
		ty := v.t
		if ty == ggml.F16 || ty == ggml.BF16 || ty == ggml.F32 {
			continue
		}
		const nb = 11 // a group of eight and a tail for the eight-block kernels
		n := nb * ty.BlockSize()
		for c := 0; c < 6; c++ {
			row, act := exactBlocks(r, ty, nb, 0)
			switch c {
			case 0: // all zero
				clear(row)
				clear(act)
			case 1, 2: // every weight byte 0xff or 0x00 (largest/smallest nibbles; Q8_0 -1/0)
				v := byte(0xff * (c & 1))
				for i := range row {
					row[i] = v
				}
				fixHalves(ty, row, nb)
			case 3: // arbitrary weight bytes: random scales (finite F16), quants, Q6_K scales
				for i := range row {
					row[i] = byte(r.Uint32())
				}
				fixHalves(ty, row, nb)
			}
			if c >= 4 { // activations at +-127 (the largest a quantizer writes)
				sign := byte(127)
				if c == 5 {
					sign = 0x81 // -127
				}
				fillActQuants(ty, act, sign)
			}
			if ty == ggml.Q8_0 {
				for b := 0; b < nb; b++ { // -128 is not a value a quantizer writes
					for j := 0; j < 32; j++ {
						if row[b*34+2+j] == 0x80 {
							row[b*34+2+j] = 0x81
						}
					}
				}
			}
			checkClose(t, fmt.Sprintf("%s/%s case %d", ty, v.name, c), v.dot(row, act, n), Dot(ty, row, act, n), absScale(t, ty, row, act, n))
		}
	}
}

// fixHalves replaces the F16 scales of random blocks with finite values of moderate size.
func fixHalves(ty ggml.Type, row []byte, nb int) {
	bs := ty.TypeSize()
	for b := 0; b < nb; b++ {
		x := row[b*bs:]
		switch ty {
		case ggml.Q8_0, ggml.Q4_0, ggml.Q5_0:
			binary.LittleEndian.PutUint16(x, F32ToF16(0.01))
		case ggml.Q4_1, ggml.Q5_1:
			binary.LittleEndian.PutUint16(x, F32ToF16(0.01))
			binary.LittleEndian.PutUint16(x[2:], F32ToF16(-0.07))
		case ggml.Q4_K, ggml.Q5_K:
			binary.LittleEndian.PutUint16(x, F32ToF16(0.02))
			binary.LittleEndian.PutUint16(x[2:], F32ToF16(-0.03))
		case ggml.Q3_K:
			binary.LittleEndian.PutUint16(x[108:], F32ToF16(0.005))
		case ggml.Q2_K:
			binary.LittleEndian.PutUint16(x[80:], F32ToF16(0.02))
			binary.LittleEndian.PutUint16(x[82:], F32ToF16(-0.03))
		case ggml.Q6_K:
			binary.LittleEndian.PutUint16(x[208:], F32ToF16(0.004))
		}
	}
}

func fillActQuants(ty ggml.Type, act []byte, v byte) {
	switch VecDotType(ty) {
	case ggml.Q8_0:
		for b := 0; b < len(act)/34; b++ {
			for j := 0; j < 32; j++ {
				act[b*34+2+j] = v
			}
		}
	case ggml.Q8_1:
		for b := 0; b < len(act)/36; b++ {
			for j := 0; j < 32; j++ {
				act[b*36+4+j] = v
			}
			binary.LittleEndian.PutUint16(act[b*36+2:], F32ToF16(getF16(act[b*36:], 0)*32*float32(int8(v))))
		}
	case ggml.Q8_K:
		for b := 0; b < len(act)/292; b++ {
			for j := 0; j < 256; j++ {
				act[b*292+4+j] = v
			}
			fillBsums(act[b*292:])
		}
	}
}

func TestVecDotRejectsShortInputs(t *testing.T) {
	for _, v := range variants {
		ty := v.t
		n := 2 * ty.BlockSize()
		row := make([]byte, 2*ty.TypeSize()-1)
		act := make([]byte, 2*VecDotType(ty).TypeSize())
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s/%s: short row accepted", ty, v.name)
				}
			}()
			v.dot(row, act, n)
		}()
	}
}

func TestFloatHelpersMatchTwins(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 64, 100, 1000, 1024} {
		a, b := randVec(r, n, 1), randVec(r, n, 1)
		ha, hb := make([]uint16, n), make([]uint16, n)
		toF16Go(ha, a)
		toF16Go(hb, b)

		got := make([]uint16, n)
		ToF16(got, a)
		for i := range got {
			if got[i] != ha[i] {
				t.Fatalf("ToF16 n=%d [%d]: %#x, F32ToF16 %#x", n, i, got[i], ha[i])
			}
		}
		wide := make([]float32, n)
		FromF16(wide, ha)
		for i := range wide {
			if wide[i] != F16ToF32(ha[i]) {
				t.Fatalf("FromF16 n=%d [%d]: %v, want %v", n, i, wide[i], F16ToF32(ha[i]))
			}
		}

		var scale float64
		for i := range ha {
			scale += math.Abs(float64(F16ToF32(ha[i]) * F16ToF32(hb[i])))
		}
		if got, want := DotF16(ha, hb), dotF16Go(ha, hb); got != want {
			t.Fatalf("DotF16 n=%d: %v, twin %v", n, got, want)
		}
		checkClose(t, fmt.Sprintf("DotF16 n=%d", n), DotF16(ha, hb), float32(dot64(wideF16(ha), wideF16(hb))), scale)
		checkClose(t, fmt.Sprintf("DotF32Fast n=%d", n), DotF32Fast(a, b), DotF32(a, b), absDot64(a, b))

		s := float32(r.NormFloat64())
		acc1, acc2 := append([]uint16(nil), ha...), append([]uint16(nil), ha...)
		MadF16(acc1, hb, s)
		madF16Go(acc2, hb, s)
		ScaleF16(acc1, 0.75)
		scaleF16Go(acc2, 0.75)
		for i := range acc1 {
			if acc1[i] != acc2[i] {
				t.Fatalf("MadF16/ScaleF16 n=%d [%d]: %#x, twin %#x", n, i, acc1[i], acc2[i])
			}
		}
	}
	// Conversion edge cases: ties, subnormals, overflow, infinities, signed zero.
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65520, 1e6, -1e6, 6e-8, 3e-8, 1e-10,
		float32(math.Inf(1)), float32(math.Inf(-1)), 1 + 1.0/2048, 1 + 3.0/2048, 2049, 2051}
	for len(special)%8 != 0 {
		special = append(special, 0.1)
	}
	got := make([]uint16, len(special))
	ToF16(got, special)
	for i, v := range special {
		if got[i] != F32ToF16(v) {
			t.Errorf("ToF16(%v) = %#x, F32ToF16 %#x", v, got[i], F32ToF16(v))
		}
	}
}

func wideF16(h []uint16) []float32 {
	w := make([]float32, len(h))
	fromF16Go(w, h)
	return w
}

func TestPoolCoversEveryItemOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8, 16} {
		p := NewPool(threads)
		for _, n := range []int{1, 2, 7, 100, 1001} {
			for _, chunk := range []int{0, 1, 3, 64} {
				c := &countRanger{hits: make([]atomic.Int32, n), workers: threads}
				p.For(n, chunk, c)
				for i := range c.hits {
					if h := c.hits[i].Load(); h != 1 {
						t.Fatalf("threads %d n %d chunk %d: item %d done %d times", threads, n, chunk, i, h)
					}
				}
				if c.badWorker.Load() {
					t.Fatalf("threads %d: worker index out of range", threads)
				}
			}
		}
		p.Close()
	}
}

type countRanger struct {
	hits      []atomic.Int32
	workers   int
	badWorker atomic.Bool
}

func (c *countRanger) Range(w, lo, hi int) {
	if w < 0 || w >= c.workers {
		c.badWorker.Store(true)
	}
	for i := lo; i < hi; i++ {
		c.hits[i].Add(1)
	}
}

// Several goroutines sharing one pool all get complete results (the ones that find it busy run
// their work alone).
func TestPoolConcurrentCallers(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 50; k++ {
				c := &countRanger{hits: make([]atomic.Int32, 257), workers: 2}
				p.For(257, 5, c)
				for i := range c.hits {
					if c.hits[i].Load() != 1 {
						t.Errorf("item %d done %d times", i, c.hits[i].Load())
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// No worker touches a job after For has returned: For may reuse the pool for the next job at
// once, and a worker that joined late must have finished, and one that did not must stay out.
func TestPoolNoWorkAfterReturn(t *testing.T) {
	// Jobs of fewer chunks than workers also check that workers the job has no room for stay
	// out of it (they add themselves to its state all the same).
	for _, threads := range []int{3, 8} {
		p := NewPool(threads)
		jobs := make([]*lateRanger, 3000)
		for i := range jobs {
			jobs[i] = &lateRanger{}
			p.For(1+i%5, 1, jobs[i])
			jobs[i].returned.Store(true)
		}
		for i, j := range jobs {
			if j.late.Load() {
				t.Fatalf("threads %d job %d: Range ran after For returned", threads, i)
			}
			if got, want := j.items.Load(), int32(1+i%5); got != want {
				t.Fatalf("threads %d job %d: %d items done, want %d", threads, i, got, want)
			}
		}
		p.Close()
	}
}

type lateRanger struct {
	returned, late atomic.Bool
	items          atomic.Int32
}

func (l *lateRanger) Range(_, lo, hi int) {
	// Long enough for the other workers to wake and try to join while the job is still open.
	for start := time.Now(); time.Since(start) < 20*time.Microsecond; {
	}
	if l.returned.Load() {
		l.late.Store(true)
	}
	l.items.Add(int32(hi - lo))
}

// An idle pool parks its workers after spinning briefly, so a node with nothing to do burns no
// CPU.
func TestPoolParksWhenIdle(t *testing.T) {
	p := NewPool(3)
	defer p.Close()
	p.For(100, 1, &countRanger{hits: make([]atomic.Int32, 100), workers: 3})
	waitParked(t, p, "the last job")
	// Parked workers are woken for the next job and take part in it.
	c := &workerSet{}
	for k := 0; k < 50 && c.count() < 3; k++ {
		p.For(64, 1, c)
	}
	if c.count() < 2 {
		t.Errorf("after parking, jobs ran on %d workers only", c.count())
	}
}

// A held pool's workers keep watching for jobs however long the gap; after the release they
// park as usual.
func TestPoolHoldKeepsWorkersAwake(t *testing.T) {
	p := NewPool(3)
	defer p.Close()
	p.Hold()
	p.For(100, 1, &countRanger{hits: make([]atomic.Int32, 100), workers: 3})
	time.Sleep(100 * spinFor)
	for w := 1; w < 3; w++ {
		if p.parked[w].Load() {
			t.Fatalf("worker %d parked while the pool was held", w)
		}
	}
	p.Release()
	waitParked(t, p, "the release")
	defer func() {
		if recover() == nil {
			t.Error("Release without Hold did not panic")
		}
	}()
	p.Release()
}

// waitParked fails the test unless all of p's workers park within 5 s of event.
func waitParked(t *testing.T, p *Pool, event string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for w := 1; w < p.Threads(); w++ {
		for !p.parked[w].Load() {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d still not parked 5 s after %s", w, event)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

type workerSet struct{ seen [3]atomic.Bool }

func (c *workerSet) Range(w, _, _ int) {
	c.seen[w].Store(true)
	time.Sleep(50 * time.Microsecond)
}

func (c *workerSet) count() int {
	n := 0
	for i := range c.seen {
		if c.seen[i].Load() {
			n++
		}
	}
	return n
}

func TestPhysicalCores(t *testing.T) {
	if n := PhysicalCores(); n < 1 {
		t.Fatalf("PhysicalCores() = %d", n)
	}
	if n := DefaultThreads(); n < 1 {
		t.Fatalf("DefaultThreads() = %d", n)
	}
	if n := physicalCores(t.TempDir()); n < 1 {
		t.Fatalf("fallback without sysfs: %d", n)
	}
}

// MatMul gives every output as the single VecDot (or DotDequant) of its row and activation
// row, for any batch size, thread count and mix of ops.
func TestMatMulMatchesRowDots(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, threads := range []int{1, 2, 3} {
		p := NewPool(threads)
		var mm MatMul
		for _, ty := range []ggml.Type{ggml.F32, ggml.F16, ggml.BF16, ggml.Q8_0, ggml.Q4_0, ggml.Q4_K, ggml.Q6_K, ggml.Q5_K} {
			for _, shape := range [][3]int{{3, 256, 1}, {130, 512, 1}, {70, 256, 5}, {300, 256, 1}, {260, 256, 3}, {90, 256, 2}, {50, 512, 6}, {45, 256, 7}, {40, 256, 37}} {
				rows, cols, nb := shape[0], shape[1], shape[2]
				w := randMatrix(t, r, ty, rows, cols)
				w2 := randMatrix(t, r, ggml.Q8_0, rows+3, cols)
				// A fourth op over the first one's activations reads the activations it prepared.
				w3 := randMatrix(t, r, ty, rows+5, cols)
				x := randVec(r, nb*cols, 1)
				x2 := randVec(r, nb*cols, 1) // the second op's own activations
				at := VecDotType(ty)
				ab, _ := at.RowSize(int64(cols))
				act := make([]byte, 0, nb*int(ab))
				act2 := make([]byte, 0, nb*(cols/32*34))
				for j := 0; j < nb; j++ {
					act = append(act, QuantizeActivations(ty, x[j*cols:(j+1)*cols], nil)...)
					act2 = append(act2, QuantizeActivations(ggml.Q8_0, x2[j*cols:(j+1)*cols], nil)...)
				}
				out := make([]float32, nb*(rows+1))
				out2 := make([]float32, nb*(rows+3))
				outF := make([]float32, nb*rows)
				out3 := make([]float32, nb*(rows+5))
				mm.Ops = append(mm.Ops[:0],
					MatMulOp{Type: ty, W: w, Rows: rows, Cols: cols, N: nb, Act: act, ActStride: int(ab), Out: out, OutStride: rows + 1},
					MatMulOp{Type: ggml.Q8_0, W: w2, Rows: rows + 3, Cols: cols, N: nb, Act: act2, ActStride: cols / 32 * 34, Out: out2, OutStride: rows + 3},
					MatMulOp{Type: ty, W: w, Rows: rows, Cols: cols, N: nb, X: x, XStride: cols, Out: outF, OutStride: rows},
					MatMulOp{Type: ty, W: w3, Rows: rows + 5, Cols: cols, N: nb, Act: act, ActStride: int(ab), Out: out3, OutStride: rows + 5},
				)
				mm.Run(p)
				rb, _ := ty.RowSize(int64(cols))
				scratch := make([]float32, cols)
				for j := 0; j < nb; j++ {
					for i := 0; i < rows; i++ {
						row := w[int64(i)*rb : int64(i+1)*rb]
						if want := rowKernel(ty)(row, act[j*int(ab):], cols); out[j*(rows+1)+i] != want {
							t.Fatalf("threads %d %s %v: out[%d][%d] %v, VecDot %v", threads, ty, shape, j, i, out[j*(rows+1)+i], want)
						}
						if want := DotDequant(ty, row, x[j*cols:(j+1)*cols], scratch); outF[j*rows+i] != want {
							t.Fatalf("threads %d %s %v: f32 out[%d][%d] %v, DotDequant %v", threads, ty, shape, j, i, outF[j*rows+i], want)
						}
					}
					for i := 0; i < rows+3; i++ {
						if want := rowKernel(ggml.Q8_0)(w2[i*cols/32*34:], act2[j*cols/32*34:], cols); out2[j*(rows+3)+i] != want {
							t.Fatalf("second op out[%d][%d] %v, want %v", j, i, out2[j*(rows+3)+i], want)
						}
					}
					for i := 0; i < rows+5; i++ {
						row := w3[int64(i)*rb : int64(i+1)*rb]
						if want := rowKernel(ty)(row, act[j*int(ab):], cols); out3[j*(rows+5)+i] != want {
							t.Fatalf("threads %d %s %v: fourth op out[%d][%d] %v, VecDot %v", threads, ty, shape, j, i, out3[j*(rows+5)+i], want)
						}
					}
				}
			}
		}
		p.Close()
	}
}

// A prompt batch's units of rows are whole multiples of what a run kernel takes whole
// (pairsUnitRows), so that no unit leaves rows to a slower kernel but at the matrix's end.
func TestMatMulPromptUnitsTakeWholeRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	tested := 0
	for ty := range ggml.Type(len(fastPairs4)) {
		u := pairsRows(ty)
		if u <= 2 {
			continue
		}
		tested++
		p := NewPool(1)
		for _, cols := range []int{2048, 8192} {
			const rows, nb = 200, 8
			w := randMatrix(t, r, ty, rows, cols)
			ab, _ := VecDotType(ty).RowSize(int64(cols))
			var act []byte
			for range nb {
				act = append(act, QuantizeActivations(ty, randVec(r, cols, 1), nil)...)
			}
			mm := MatMul{Ops: []MatMulOp{{Type: ty, W: w, Rows: rows, Cols: cols, N: nb, Act: act, ActStride: int(ab), Out: make([]float32, nb*rows), OutStride: rows}}}
			mm.Run(p)
			if mm.per[0]%u != 0 {
				t.Errorf("%s, rows of %d: units of %d rows, not a multiple of the run kernel's %d", ty, cols, mm.per[0], u)
			}
		}
		p.Close()
	}
	if tested == 0 {
		t.Skipf("no run kernel here takes rows in groups of more than two (%s)", SIMD())
	}
}

func TestMatMulRejectsBadShapes(t *testing.T) {
	p := NewPool(1)
	defer p.Close()
	w := make([]byte, 34*4)
	act := make([]byte, 34)
	for name, op := range map[string]MatMulOp{
		"short weights": {Type: ggml.Q8_0, W: w, Rows: 5, Cols: 32, N: 1, Act: act, ActStride: 34, Out: make([]float32, 5), OutStride: 5},
		"short output":  {Type: ggml.Q8_0, W: w, Rows: 4, Cols: 32, N: 1, Act: act, ActStride: 34, Out: make([]float32, 3), OutStride: 4},
		"short acts":    {Type: ggml.Q8_0, W: w, Rows: 4, Cols: 32, N: 2, Act: act, ActStride: 34, Out: make([]float32, 8), OutStride: 4},
		"no input":      {Type: ggml.Q8_0, W: w, Rows: 4, Cols: 32, N: 1, Out: make([]float32, 4), OutStride: 4},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			(&MatMul{Ops: []MatMulOp{op}}).Run(p)
		}()
	}
}

// Decode steps and batches (every kernel form: one column, four, runs of rows) allocate
// nothing once running.
func TestMatMulSteadyStateAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	p := NewPool(2)
	defer p.Close()
	const rows = 512
	cases := []struct {
		ty   ggml.Type
		cols int
	}{{ggml.Q4_K, 512}, {ggml.Q4_0, 512}, {ggml.Q8_0, 512}, {ggml.F32, 512}, {ggml.F16, 512}, {ggml.BF16, 512},
		// Rows that end inside a 32-element step: the kernels' Go tails.
		{ggml.F16, 520}, {ggml.BF16, 520}}
	for _, c := range cases {
		ty, cols := c.ty, c.cols
		w := randMatrix(t, r, ty, rows, cols)
		for _, n := range []int{1, 8} {
			var act []byte
			for range n {
				act = append(act, QuantizeActivations(ty, randVec(r, cols, 1), nil)...)
			}
			out := make([]float32, n*rows)
			mm := &MatMul{Ops: []MatMulOp{{Type: ty, W: w, Rows: rows, Cols: cols, N: n, Act: act, ActStride: len(act) / n, Out: out, OutStride: rows}}}
			mm.Run(p)
			if a := testing.AllocsPerRun(20, func() { mm.Run(p) }); a > 0 {
				t.Errorf("MatMul.Run %s, %d activation rows: %.1f allocations per call", ty, n, a)
			}
		}
	}
}

// Benchmarks of each kernel on one row of Llama-3.2-1B's FFN width (2048) and of its
// down projection's input (8192), SIMD against the reference.
func BenchmarkVecDot(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, ty := range ggml.All() {
		if !Accelerated(ty) {
			continue
		}
		for _, n := range []int{2048, 8192} {
			row, err := Quantize(ty, randVec(r, n, 0.5))
			if err != nil {
				b.Fatal(err)
			}
			act := QuantizeActivations(ty, randVec(r, n, 1), nil)
			b.Run(fmt.Sprintf("%s/%d/simd", ty, n), func(b *testing.B) {
				b.SetBytes(int64(len(row)))
				for b.Loop() {
					VecDot(ty, row, act, n)
				}
			})
			b.Run(fmt.Sprintf("%s/%d/go", ty, n), func(b *testing.B) {
				b.SetBytes(int64(len(row)))
				for b.Loop() {
					Dot(ty, row, act, n)
				}
			})
		}
	}
}

// BenchmarkMatMul is Llama-3.2-1B's FFN up projection (8192×2048): one decode token (N=1,
// weight bandwidth) and a prompt batch (N=64), on the file's layout and, for the types Pack
// handles on this CPU, packed.
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 3))
	const rows, cols = 8192, 2048
	p := SharedPool(0)
	for _, ty := range []ggml.Type{ggml.Q8_0, ggml.Q4_0, ggml.Q4_K, ggml.Q6_K, ggml.F16, ggml.BF16} {
		w, err := Quantize(ty, randVec(r, rows*cols, 0.3))
		if err != nil {
			b.Fatal(err)
		}
		packed := Pack(ty, w, rows, cols)
		for _, nb := range []int{1, 8, 64} {
			ab, _ := VecDotType(ty).RowSize(cols)
			var act []byte
			for j := 0; j < nb; j++ {
				act = append(act, QuantizeActivations(ty, randVec(r, cols, 1), nil)...)
			}
			out := make([]float32, nb*rows)
			for _, layout := range []string{"file", "packed"} {
				op := MatMulOp{Type: ty, W: w, Rows: rows, Cols: cols, N: nb, Act: act, ActStride: int(ab), Out: out, OutStride: rows}
				if layout == "packed" {
					if packed == nil {
						continue
					}
					op.W, op.Packed = nil, packed
				}
				mm := &MatMul{Ops: []MatMulOp{op}}
				b.Run(fmt.Sprintf("%s/%s/N=%d/threads=%d", ty, layout, nb, p.Threads()), func(b *testing.B) {
					b.SetBytes(int64(len(w)))
					b.ReportAllocs()
					for b.Loop() {
						mm.Run(p)
					}
					b.ReportMetric(float64(nb)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				})
			}
		}
	}
}

// The four-column kernels equal the one-column kernel of their type that was dispatched when
// they were installed, bit for bit (so a batched product does not depend on the batch), and so
// the reference within the float tolerance.
func TestVecDot4MatchesSingleColumn(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	if (runtime.GOARCH == "amd64" || strings.Contains(SIMD(), "dotprod")) && len(variants) > 0 && len(variants4) == 0 {
		t.Fatalf("%s dots without four-column kernels", SIMD())
	}
	for i, v4 := range variants4 {
		if v4.one < 0 {
			t.Fatalf("%s/%s: no one-column kernel", v4.t, v4.name)
		}
		single := variants[v4.one]
		// Batches and single steps must compute alike: the dispatched four-column kernel (the
		// last installed for its type) pairs with the dispatched one-column dot.
		if !slices.ContainsFunc(variants4[i+1:], func(w variant4) bool { return w.t == v4.t }) &&
			slices.ContainsFunc(variants[v4.one+1:], func(w variant) bool { return w.t == v4.t }) {
			t.Fatalf("%s/%s: a one-column kernel installed after it replaces the one it equals (%s)", v4.t, v4.name, single.name)
		}
		at := VecDotType(v4.t)
		if v4.pairs != nil {
			checkPairRunsEmpty(t, fmt.Sprintf("%s/%s", v4.t, v4.name), func(w []byte, wstride, pairs int, o []float32, ostride int) {
				v4.pairs(w, wstride, pairs, nil, 0, 0, o, ostride)
			})
		}
		sizes := []int{256, 512, 2048}
		if v4.t.BlockSize() == 1 {
			sizes = append(sizes, 2077, 29) // float rows end in a tail the kernels leave to Go
		}
		for _, n := range sizes {
			for trial := 0; trial < 4; trial++ {
				row, err := Quantize(v4.t, randVec(r, n, 0.5))
				if err != nil {
					t.Fatal(err)
				}
				ab, _ := at.RowSize(int64(n))
				stride := int(ab) + 8*trial // rows need not be packed
				act := make([]byte, 3*stride+int(ab))
				for c := 0; c < 4; c++ {
					x := randVec(r, n, 1+float64(c))
					if trial == 1 && c == 2 {
						clear(x)
					}
					QuantizeActivations(v4.t, x, act[c*stride:c*stride+int(ab):c*stride+int(ab)])
				}
				var out [4]float32
				v4.dot(row, act, stride, n, &out)
				for c := 0; c < 4; c++ {
					a := act[c*stride : c*stride+int(ab)]
					if want := single.dot(row, a, n); out[c] != want {
						t.Fatalf("%s/%s n=%d trial %d column %d: four-column %v, one-column (%s) %v", v4.t, v4.name, n, trial, c, out[c], single.name, want)
					}
					checkClose(t, fmt.Sprintf("%s/%s column %d", v4.t, v4.name, c), out[c], Dot(v4.t, row, a, n), absScale(t, v4.t, row, a, n))
				}
				if v4.two == nil {
					continue
				}
				// The two-row form: this row and another some bytes apart, in either order.
				other, err := Quantize(v4.t, randVec(r, n, 0.5))
				if err != nil {
					t.Fatal(err)
				}
				checkTwoRows(t, fmt.Sprintf("%s/%s n=%d", v4.t, v4.name, n), row, other, trial,
					func(w []byte, wstride int, o *[8]float32) { v4.two(w, wstride, act, stride, n, o) },
					func(w []byte, o *[4]float32) { v4.dot(w, act, stride, n, o) })
				if v4.pairs == nil {
					continue
				}
				// Seven distinct rows, so that a kernel taking rows in groups (of up to seven)
				// cannot swap two of them unseen.
				rows := [][]byte{row, other}
				for len(rows) < 7 {
					more, err := Quantize(v4.t, randVec(r, n, 0.5))
					if err != nil {
						t.Fatal(err)
					}
					rows = append(rows, more)
				}
				checkPairRuns(t, fmt.Sprintf("%s/%s n=%d", v4.t, v4.name, n), rows, trial,
					func(w []byte, wstride, pairs int, o []float32, ostride int) {
						v4.pairs(w, wstride, pairs, act, stride, n, o, ostride)
					},
					func(w []byte, o *[4]float32) { v4.dot(w, act, stride, n, o) })
			}
		}
	}
}

// The unpacked (prompt-batch) forms equal the eight-row kernels, and so the reference Dot.
func TestUnpacked8MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	if strings.Contains(SIMD(), "avx512vnni") && len(variantsU8) == 0 {
		t.Fatal("VNNI dots without unpacked eight-row kernels")
	}
	for _, v := range variantsU8 {
		for _, n := range []int{32, 2048} {
			rb, _ := v.t.RowSize(int64(n))
			stride := int(rb) + 6
			w := make([]byte, 7*stride+int(rb))
			for i := 0; i < 8; i++ {
				row, err := Quantize(v.t, randVec(r, n, float64(i+1)))
				if err != nil {
					t.Fatal(err)
				}
				copy(w[i*stride:], row)
			}
			nb := n / 32
			buf, sc := make([]byte, 256*nb), make([]float32, 8*nb)
			v.k.unpack(w, stride, n, buf, sc)
			for trial := 0; trial < 3; trial++ {
				act := QuantizeActivations(v.t, randVec(r, n, float64(1+trial)), nil)
				yd, ys := make([]float32, nb), make([]int32, nb)
				actTables(act, nb, yd, ys)
				out := make([]float32, 8)
				v.k.dot(buf, sc, act, yd, ys, n, out, w[:min(len(w), 64*trial)])
				for i := 0; i < 8; i++ {
					if want := Dot(v.t, w[i*stride:i*stride+int(rb)], act, n); out[i] != want {
						t.Fatalf("%s/%s n=%d trial %d row %d: unpacked %v, reference %v", v.t, v.name, n, trial, i, out[i], want)
					}
				}
			}
		}
	}
}

// SiLUFast's kernel equals its Go twin bit for bit (NaN for NaN) and the reference SiLU within
// 4e-7 relative (the polynomial exp), on ordinary, tiny, huge, infinite and NaN inputs.
func TestSiLUFast(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	x := randVec(r, 4099, 4)
	x[5], x[6] = float32(math.NaN()), math.Float32frombits(0xffc00000)
	x = append(x, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 20, -20, 87, -87, 88.5, -88.5, 100, -100, 1e30, -1e30,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	got, twin, ref := make([]float32, len(x)), make([]float32, len(x)), make([]float32, len(x))
	SiLUFast(got, x)
	siluGo(twin, x)
	SiLU(ref, x)
	for i := range x {
		if !sameFloatOrNaN(got[i], twin[i]) {
			t.Fatalf("x=%v: SiLUFast %v, twin %v", x[i], got[i], twin[i])
		}
		d := math.Abs(float64(got[i]) - float64(ref[i]))
		if got[i] == ref[i] {
			continue
		}
		if !(d <= 4e-7*math.Abs(float64(ref[i]))+1e-36) && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(ref[i]))) {
			t.Errorf("x=%v: SiLUFast %v, reference %v", x[i], got[i], ref[i])
		}
	}
}

// ExpFast's kernel equals its Go twin bit for bit, and the correctly rounded exp within 4e-7
// relative (2 ulp) over its range, with exp(-87) below it, +Inf above 88, and NaN for NaN
// (attention's weights: a NaN score must not pass as a weight of exp(-87)).
func TestExpFast(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 17))
	x := randVec(r, 4099, 20)
	x[5], x[6] = float32(math.NaN()), math.Float32frombits(0xffc00000)
	x = append(x, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 87, -87, 88, 88.5, -88.5, -100, 100, -1e30,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	got, twin := make([]float32, len(x)), make([]float32, len(x))
	ExpFast(got, x)
	expGo(twin, x)
	for i, v := range x {
		if !sameFloatOrNaN(got[i], twin[i]) {
			t.Fatalf("x=%v: ExpFast %v, twin %v", v, got[i], twin[i])
		}
		want := math.Exp(float64(min(max(v, -87), 88)))
		if v > 88 {
			want = math.Inf(1)
		}
		if d := math.Abs(float64(got[i]) - want); !(d <= 4e-7*want) && !(math.IsInf(want, 1) && math.IsInf(float64(got[i]), 1)) &&
			!(math.IsNaN(want) && got[i] != got[i]) {
			t.Errorf("x=%v: ExpFast %v, exp %v", v, got[i], want)
		}
	}
	// In place, as attention calls it.
	ExpFast(x, x)
	for i := range x {
		if !sameFloatOrNaN(x[i], got[i]) {
			t.Fatalf("in place: element %d is %v, want %v", i, x[i], got[i])
		}
	}
}

// sameFloatOrNaN reports whether a and b have the same bits, or are both NaN (whose payloads
// the kernels and their twins need not agree on).
func sameFloatOrNaN(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// SubBelow equals its Go twin: true with dst = src - m bit for bit where no element exceeds m
// (NaN and -Inf among them, m = +Inf or a NaN-free value), false where one does, whatever its
// place (in the vector part or the tail), in place too.
func TestSubBelow(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 23))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for n := 0; n <= 40; n++ {
		for _, m := range []float32{0.5, -3, inf, -inf} {
			for raise := -1; raise < n; raise++ {
				src := randVec(r, n, 2)
				for i := range src {
					src[i] = min(src[i], m) // none above m
				}
				if n > 2 {
					src[n/2], src[n-1] = nan, -inf
				}
				if raise >= 0 {
					if m == inf {
						continue
					}
					src[raise] = m + 1
					if m == -inf {
						src[raise] = -1e30
					}
				}
				got, want := make([]float32, n), make([]float32, n)
				okGot, okWant := SubBelow(got, src, m), subBelowGo(want, src, m)
				if okGot != okWant || okGot != (raise < 0) {
					t.Fatalf("n %d m %v raise %d: SubBelow %v, twin %v", n, m, raise, okGot, okWant)
				}
				if !okGot {
					continue
				}
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("n %d m %v: element %d is %v, twin %v", n, m, i, got[i], want[i])
					}
				}
				if !SubBelow(src, src, m) || !slices.EqualFunc(src, want, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
					t.Fatalf("n %d m %v: in place differs", n, m)
				}
			}
		}
	}
}

// BenchmarkRowKernels compares, per weight row of 2048 elements held in cache, the exact
// Q8_0/Q4_0 row kernels (eight-block groups).
func BenchmarkRowKernels(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 5))
	const n = 2048
	for _, ty := range []ggml.Type{ggml.Q8_0, ggml.Q4_0} {
		rb, _ := ty.RowSize(n)
		w, err := Quantize(ty, randVec(r, 2*n, 0.5))
		if err != nil {
			b.Fatal(err)
		}
		act := QuantizeActivations(ty, randVec(r, n, 1), nil)
		yd, ys := make([]float32, n/32), make([]int32, n/32)
		actTables(act, n/32, yd, ys)
		if f := fastRowTab[ty]; f != nil {
			b.Run(ty.String()+"/row", func(b *testing.B) {
				b.SetBytes(2 * rb)
				for b.Loop() {
					f(w[:rb], act, yd, ys, n)
					f(w[rb:], act, yd, ys, n)
				}
			})
		}
	}
}

// The many-row kernels (fastRows: one call for a run of rows; fastRows4: four runs in step)
// equal the one-row kernels bit for bit, for runs of any length and rows not packed.
func TestRowsKernelsMatchSingle(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 14))
	for _, ty := range ggml.All() {
		fr := fastRows[ty]
		if fr == nil {
			continue
		}
		for _, n := range []int{256, 2048} {
			rb, _ := ty.RowSize(int64(n))
			for _, rows := range []int{1, 3, 4, 7, 9, 17} {
				stride := int(rb) + 16
				w := make([]byte, rows*stride)
				for i := 0; i < rows; i++ {
					row, err := Quantize(ty, randVec(r, n, 0.5))
					if err != nil {
						t.Fatal(err)
					}
					copy(w[i*stride:], row)
				}
				act := QuantizeActivations(ty, randVec(r, n, 1), nil)
				out := make([]float32, rows+1)
				out[rows] = 42
				fr(w, stride, rows, act, n, out[:rows])
				for i := 0; i < rows; i++ {
					if want := VecDot(ty, w[i*stride:i*stride+int(rb)], act, n); math.Float32bits(out[i]) != math.Float32bits(want) {
						t.Fatalf("%s n=%d, %d rows: row %d %v, one-row kernel %v", ty, n, rows, i, out[i], want)
					}
				}
				if out[rows] != 42 {
					t.Fatalf("%s n=%d, %d rows: wrote past the results", ty, n, rows)
				}
				// Four runs of count rows, dist apart: rows k·dist + i.
				if f4 := fastRows4[ty]; f4 != nil && rows >= 4 {
					count, dist := rows/4, rows/4+(rows%4)/3
					out4 := make([]float32, rows+1)
					out4[3*dist+count] = 42
					f4(w, stride, count, dist, act, n, out4)
					for k := 0; k < 4; k++ {
						for i := 0; i < count; i++ {
							if got := out4[k*dist+i]; math.Float32bits(got) != math.Float32bits(out[k*dist+i]) {
								t.Fatalf("%s n=%d four runs of %d (%d apart): row %d %v, one-row kernel %v", ty, n, count, dist, k*dist+i, got, out[k*dist+i])
							}
						}
					}
					if out4[3*dist+count] != 42 {
						t.Fatalf("%s n=%d four runs: wrote past the results", ty, n)
					}
				}
			}
		}
	}
}

// actQuantCases builds super-blocks of 256 values that probe the activation quantizers: random
// blocks from tiny (float16-subnormal scales, and below 127/MaxFloat32, float32 subnormals
// among them, where the multiplier overflows) to huge, zeros, negative zeros, one lone value,
// ties (x·127/amax exactly k+0.5, rounded to even), the largest magnitude with both signs in
// either order (the first one sets Q8_K's sign), infinities, and NaNs (quiet and signalling,
// either sign, alone, beside an infinity, or filling a block) in some 32-blocks only.
func actQuantCases(r *rand.Rand) []float32 {
	var x []float32
	for _, s := range []float64{1e-42, 1e-38, 1e-7, 1e-4, 0.02, 1, 30, 1e4, 1e30} {
		x = append(x, randVec(r, 256, s)...)
	}
	x = append(x, make([]float32, 256)...)
	negz := make([]float32, 256)
	for i := range negz {
		negz[i] = float32(math.Copysign(0, -1))
	}
	x = append(x, negz...)
	lone := make([]float32, 256)
	lone[77] = -3.25
	x = append(x, lone...)
	ties := make([]float32, 256)
	for i := range ties {
		ties[i] = float32(i%254-127) + 0.5
	}
	for b := 0; b < 256; b += 32 {
		ties[b+31] = 127 // every 32-block's amax is 127, so the multiplier is exactly 1
	}
	ties[5] = -127 // and Q8_K's maxv is -127, so iscale is 1
	x = append(x, ties...)
	for _, first := range []float32{-1, 1} {
		b := randVec(r, 256, 1)
		for j := 0; j < 256; j += 32 {
			b[j+3], b[j+20] = 5*first, -5*first
		}
		x = append(x, b...)
	}
	nan, snan := float32(math.NaN()), math.Float32frombits(0x7f800001)
	negNaN, inf := math.Float32frombits(0xffc00000), float32(math.Inf(1))
	odd := randVec(r, 256, 1)
	odd[0], odd[63], odd[70], odd[100], odd[101] = nan, negNaN, snan, -inf, nan
	odd[200] = inf
	x = append(x, odd...)
	all := make([]float32, 256)
	for i := range all {
		all[i] = nan
	}
	x = append(x, all...)
	one := randVec(r, 256, 1)
	one[255] = negNaN // the last value of the last block
	return append(x, one...)
}

// The activation quantizers of the CPU equal their Go twins byte for byte, and write nothing
// past the whole blocks of x.
func TestActivationQuantizersMatchTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 5))
	x := actQuantCases(r)
	for _, c := range []struct {
		name       string
		block, out int
		impl, twin func([]float32, []byte)
	}{
		{"Q8_0", 32, 34, quantizeQ8_0Act, quantizeQ8_0ActGo},
		{"Q8_K", 256, 292, quantizeQ8K, quantizeQ8KGo},
	} {
		for _, n := range []int{len(x), c.block, len(x) - 256 + c.block + 7} {
			nb := n / c.block
			got, want := make([]byte, nb*c.out+16), make([]byte, nb*c.out+16)
			for i := range got {
				got[i], want[i] = 0xa5, 0xa5
			}
			c.impl(x[:n], got)
			c.twin(x[:n], want)
			for b := 0; b < nb; b++ {
				g, w := got[b*c.out:(b+1)*c.out], want[b*c.out:(b+1)*c.out]
				if !bytes.Equal(g, w) {
					t.Fatalf("%s, %d values: block %d (values %v...) differs from the Go twin:\n got %x\nwant %x",
						c.name, n, b, x[b*c.block:b*c.block+4], g, w)
				}
			}
			for i := nb * c.out; i < len(got); i++ {
				if got[i] != 0xa5 {
					t.Fatalf("%s, %d values: byte %d past the %d blocks written", c.name, n, i, nb)
				}
			}
		}
	}
}

// A NaN or an infinity among a column's activations makes that column's every output NaN, for
// every quantized weight type, packed or not, alone or among other columns (one-, four- and
// eight-column kernels): the quantizers give its block a NaN scale rather than dropping it, so
// the fault reaches the logits, where the sampler names it. The other columns stay finite.
func TestNaNActivationReachesOutputs(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 7))
	p := NewPool(2)
	defer p.Close()
	var mm MatMul
	const rows, cols = 45, 512
	faults := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}
	for _, ty := range []ggml.Type{ggml.Q4_0, ggml.Q4_1, ggml.Q5_0, ggml.Q5_1, ggml.Q8_0, ggml.Q2_K, ggml.Q3_K, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K} {
		w := q4Matrix(t, r, ty, rows, cols)
		ab64, _ := VecDotType(ty).RowSize(cols)
		ab := int(ab64)
		for _, n := range []int{1, 4, 8, 9} {
			for _, packed := range []bool{false, true} {
				bad, at := r.IntN(n), r.IntN(cols)
				x := randVec(r, n*cols, 1)
				fault := faults[r.IntN(len(faults))]
				x[bad*cols+at] = fault
				act := make([]byte, 0, n*ab)
				for j := 0; j < n; j++ {
					act = append(act, QuantizeActivations(ty, x[j*cols:(j+1)*cols], nil)...)
				}
				op := MatMulOp{Type: ty, W: w, Rows: rows, Cols: cols, N: n, Act: act, ActStride: ab, Out: make([]float32, n*rows), OutStride: rows}
				if packed {
					if packedFormats[ty] == nil {
						continue
					}
					op.W, op.Packed = nil, packAny(ty, w, rows, cols)
				}
				mm.Ops = append(mm.Ops[:0], op)
				mm.Run(p)
				for j := 0; j < n; j++ {
					for i, v := range op.Out[j*rows : (j+1)*rows] {
						if isNaN := v != v; isNaN != (j == bad) {
							t.Fatalf("%s N=%d packed %v, %v at value %d of column %d: column %d row %d is %v", ty, n, packed, fault, at, bad, j, i, v)
						}
					}
				}
			}
		}
	}
}

// The Q8_0 activation quantizers write quants in -127..127 only, on every probe of
// actQuantCases (finite values of every magnitude, down to blocks whose multiplier overflows,
// ties, zero blocks): the packed Q8_0 kernel of eight columns (dotPackedQ8_0x8AVX2) relies on
// it, as llama.cpp's AVX2 Q8_0 dot does.
func TestQ8_0ActivationsNeverMinus128(t *testing.T) {
	x := actQuantCases(rand.New(rand.NewPCG(23, 6)))
	for _, q := range []struct {
		name string
		f    func([]float32, []byte)
	}{{"cpu", quantizeQ8_0Act}, {"go", quantizeQ8_0ActGo}} {
		y := make([]byte, len(x)/32*34)
		q.f(x, y)
		for b := 0; b < len(x)/32; b++ {
			if i := bytes.IndexByte(y[b*34+2:(b+1)*34], 0x80); i >= 0 {
				t.Fatalf("%s: block %d (values %v...) has a quant of -128 at %d", q.name, b, x[b*32:b*32+4], i)
			}
		}
	}
}

// BenchmarkQuantizeActivations times the activation quantizers against their Go twins on a
// row of 8192 (a feed-forward down projection's input).
func BenchmarkQuantizeActivations(b *testing.B) {
	x := randVec(rand.New(rand.NewPCG(5, 23)), 8192, 1)
	y := make([]byte, 8192/256*292)
	for _, c := range []struct {
		name string
		f    func([]float32, []byte)
	}{{"Q8_0", quantizeQ8_0Act}, {"Q8_0/go", quantizeQ8_0ActGo}, {"Q8_K", quantizeQ8K}, {"Q8_K/go", quantizeQ8KGo}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(4 * int64(len(x)))
			for b.Loop() {
				c.f(x, y)
			}
		})
	}
}
