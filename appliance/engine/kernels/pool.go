package kernels

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// Ranger is a piece of data-parallel work: Range(worker, lo, hi) processes the items [lo, hi).
// worker is in [0, Threads) and lets an implementation keep scratch per worker; calls with the
// same worker never run at the same time.
type Ranger interface {
	Range(worker, lo, hi int)
}

// Pool runs Rangers on a fixed set of goroutines that live as long as the pool, so a steady
// stream of calls allocates nothing and pays no goroutine start-up. The caller of For works too,
// as worker 0. Items are handed out in chunks from a shared counter, so a core that is slowed
// down by another process simply takes fewer chunks.
//
// One For runs at a time; a second caller that finds the pool busy does its work alone on its
// own goroutine instead of waiting (a process with several independent callers then uses their
// goroutines in parallel rather than queueing them).
type Pool struct {
	threads int
	busy    sync.Mutex
	wake    []chan struct{}
	done    chan struct{}

	// The job in progress; written by For before the workers are woken.
	body    Ranger
	n       int
	chunk   int
	next    atomic.Int64
	pending atomic.Int32
	closed  bool
}

// NewPool starts a pool of threads workers (threads-1 goroutines plus the caller of For);
// threads <= 0 means DefaultThreads().
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = DefaultThreads()
	}
	p := &Pool{threads: threads, done: make(chan struct{}, 1)}
	for w := 1; w < threads; w++ {
		ch := make(chan struct{}, 1)
		p.wake = append(p.wake, ch)
		go p.worker(w, ch)
	}
	return p
}

// Threads is the number of workers For uses, the caller included.
func (p *Pool) Threads() int { return p.threads }

// Close stops the worker goroutines once the current For (if any) has returned. The pool must
// not be used afterwards.
func (p *Pool) Close() {
	p.busy.Lock()
	defer p.busy.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, ch := range p.wake {
		close(ch)
	}
}

func (p *Pool) worker(w int, wake chan struct{}) {
	for range wake {
		p.drain(w)
		if p.pending.Add(-1) == 0 {
			p.done <- struct{}{}
		}
	}
}

func (p *Pool) drain(w int) {
	for {
		lo := int(p.next.Add(int64(p.chunk))) - p.chunk
		if lo >= p.n {
			return
		}
		p.body.Range(w, lo, min(lo+p.chunk, p.n))
	}
}

// For calls body.Range over [0, n) in chunks of chunk items (chunk <= 0 picks one), on all the
// pool's workers, and returns when every item is done. body must not call For on the same pool.
func (p *Pool) For(n, chunk int, body Ranger) {
	if n <= 0 {
		return
	}
	if chunk <= 0 {
		chunk = max(1, n/(4*p.threads))
	}
	if p.threads == 1 || n <= chunk || !p.busy.TryLock() {
		for lo := 0; lo < n; lo += chunk {
			body.Range(0, lo, min(lo+chunk, n))
		}
		return
	}
	if p.closed {
		p.busy.Unlock()
		panic("kernels: For on a closed Pool")
	}
	// Wake only as many workers as there are chunks beyond the caller's first.
	helpers := min(len(p.wake), (n+chunk-1)/chunk-1)
	p.body, p.n, p.chunk = body, n, chunk
	p.next.Store(0)
	p.pending.Store(int32(helpers))
	for _, ch := range p.wake[:helpers] {
		ch <- struct{}{}
	}
	p.drain(0)
	if helpers > 0 {
		<-p.done
	}
	p.body = nil
	p.busy.Unlock()
}

var (
	sharedMu    sync.Mutex
	sharedPools = map[int]*Pool{}
)

// SharedPool returns the process-wide pool of the given size (threads <= 0: DefaultThreads()),
// starting it on first use. Stages of one process share it instead of oversubscribing cores.
func SharedPool(threads int) *Pool {
	if threads <= 0 {
		threads = DefaultThreads()
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	p, ok := sharedPools[threads]
	if !ok {
		p = NewPool(threads)
		sharedPools[threads] = p
	}
	return p
}

// DefaultThreads is the number of physical cores (hyper-threads share a core's vector units and
// its memory bandwidth, so decoding gains nothing from them), at most GOMAXPROCS.
func DefaultThreads() int {
	n := PhysicalCores()
	return max(1, min(n, runtime.GOMAXPROCS(0)))
}

var physOnce = sync.OnceValue(func() int { return physicalCores("/sys/devices/system/cpu") })

// PhysicalCores counts distinct (package, core) pairs in sysfs, falling back to the logical CPU
// count where the topology cannot be read.
func PhysicalCores() int { return physOnce() }

func physicalCores(sysCPU string) int {
	dirs, _ := filepath.Glob(filepath.Join(sysCPU, "cpu[0-9]*"))
	seen := map[string]bool{}
	for _, d := range dirs {
		core, err1 := os.ReadFile(filepath.Join(d, "topology", "core_id"))
		pkg, err2 := os.ReadFile(filepath.Join(d, "topology", "physical_package_id"))
		if err1 != nil || err2 != nil {
			continue // an offline CPU has no topology
		}
		seen[fmt.Sprintf("%s/%s", strings.TrimSpace(string(pkg)), strings.TrimSpace(string(core)))] = true
	}
	if len(seen) == 0 {
		return runtime.NumCPU()
	}
	return len(seen)
}
