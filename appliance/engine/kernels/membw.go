package kernels

import (
	"fmt"
	"time"
)

// MemoryBandwidth measures how fast this machine streams memory into the cores: threads workers
// read disjoint parts of a buffer of size bytes (much larger than the caches) with the vector
// dot kernel, reps times, and the best rate in bytes per second is returned. This is the ceiling
// of decoding, which reads every weight once per token.
func MemoryBandwidth(size int64, threads, reps int) (float64, error) {
	if size < 1<<20 || threads < 1 || reps < 1 {
		return 0, fmt.Errorf("kernels: memory bandwidth over %d bytes with %d threads and %d repetitions", size, threads, reps)
	}
	// Several parts per thread: the pool hands them out dynamically, so a thread slowed by
	// another process does not leave the others idle at the end.
	parts := 8 * threads
	n := int(size / 4)
	n -= n % (64 * parts)
	buf := make([]float32, n)
	for i := range buf { // touch every page so the reads hit memory, not the zero page
		buf[i] = float32(i & 1023)
	}
	p := NewPool(threads)
	defer p.Close()
	job := &bwJob{buf: buf, parts: parts, sink: make([]float32, parts)}
	best := 0.0
	for r := 0; r < reps; r++ {
		t0 := time.Now()
		p.For(parts, 1, job)
		if bw := float64(4*n) / time.Since(t0).Seconds(); bw > best {
			best = bw
		}
	}
	return best, nil
}

type bwJob struct {
	buf   []float32
	parts int
	sink  []float32 // results per part, so the reads have a use
}

func (j *bwJob) Range(_, lo, hi int) {
	per := len(j.buf) / j.parts
	for part := lo; part < hi; part++ {
		b := j.buf[part*per : (part+1)*per]
		half := len(b) / 2
		j.sink[part] += DotF32Fast(b[:half], b[half:])
	}
}
