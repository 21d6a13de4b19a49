package kernels

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
// A decode step calls For a hundred times or more with a few microseconds of serial work in
// between, so an idle worker spins for a short while (spinFor) watching for the next job before
// it parks on its channel: waking a parked goroutine costs tens of microseconds, which summed
// over a token is several percent of it. While a caller holds the pool (Hold) its workers do
// not park at all: a gap inside a model's pass can outlast spinFor (the tail of an attention
// job whose heads each take longer at a deep context), and workers woken one by one through
// the Go scheduler then arrive after the caller has done most of the next jobs alone.
//
// One For runs at a time; a second caller that finds the pool busy does its work alone on its
// own goroutine instead of waiting (a process with several independent callers then uses their
// goroutines in parallel rather than queueing them).
type Pool struct {
	threads int
	busy    sync.Mutex
	wake    []chan struct{}
	parked  []atomic.Bool

	// The words that workers write while a job runs each have a cache line pair of their own
	// (Intel fetches lines in pairs): with all of them and the job's fields on one line, as
	// before, every join, chunk and finish pulled that line away from the fifteen other cores
	// of a sixteen-thread pool: on a 16-core Xeon a For of 32 small items took 8-9 µs against
	// 4.5 µs with the lines apart (BenchmarkPoolFor).
	_ [128]byte

	// state publishes the job: the job's generation in the high 32 bits, jobClosed once For
	// stops admitting workers, the most workers the job admits (one fewer than its chunks) in
	// capShift's bits, and the number of workers that tried to join in the low bits. A worker
	// joins with one atomic add, which tells it whether it got in (job open and its place
	// within the cap), so after For sets jobClosed no one else reads the job fields below, and
	// once left equals the admitted count no one still does.
	state atomic.Uint64
	_     [120]byte
	next  atomic.Int64 // the first item not yet handed out
	_     [120]byte
	left  atomic.Int32 // admitted workers that finished
	_     [124]byte

	// The job in progress; written by For only while no worker has joined it.
	body   Ranger
	n      int
	chunk  int
	closed atomic.Bool
	holds  atomic.Int32 // callers between Hold and Release
}

const (
	jobClosed  = 1 << 31
	capShift   = 16
	joinedMask = 1<<capShift - 1
	maxThreads = 1<<(31-capShift) - 1
	// spinFor is how long an idle worker watches for the next job before parking.
	spinFor = 50 * time.Microsecond
)

// NewPool starts a pool of threads workers (threads-1 goroutines plus the caller of For);
// threads <= 0 means DefaultThreads().
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = DefaultThreads()
	}
	threads = min(threads, maxThreads)
	p := &Pool{threads: threads, parked: make([]atomic.Bool, threads)}
	p.state.Store(jobClosed) // generation 0, admitting no one
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
	if p.closed.Swap(true) {
		return
	}
	for _, ch := range p.wake {
		close(ch)
	}
}

func (p *Pool) worker(w int, wake chan struct{}) {
	seen := uint64(0) // the last generation this worker looked at
	for {
		if p.join(&seen) {
			p.drain(w)
			p.left.Add(1)
			continue
		}
		if p.spin(seen) {
			continue
		}
		// Park. Announce it first and look once more, so that For either sees the flag and
		// wakes this worker or published its job before that second look. A wake-up that
		// finds no job (the worker took it while spinning) just goes round again.
		p.parked[w].Store(true)
		if p.state.Load()>>32 != seen {
			p.parked[w].Store(false)
			continue
		}
		if _, ok := <-wake; !ok {
			return
		}
	}
}

// join admits the worker to a job newer than *seen, if For still admits workers to it. A worker
// that looks while the job is open adds itself whether or not there is room; the add's result
// says whether it got in, so joining costs one atomic operation however many workers race.
func (p *Pool) join(seen *uint64) bool {
	s := p.state.Load()
	if s>>32 == *seen {
		return false
	}
	if s&jobClosed != 0 {
		*seen = s >> 32
		return false
	}
	s = p.state.Add(1) - 1 // the state this worker's add applied to; maybe a later job's
	*seen = s >> 32
	return s&jobClosed == 0 && s&joinedMask < s>>capShift&maxThreads
}

// spin watches for a generation after seen, for up to spinFor after the pool was last held, and
// reports whether one came.
func (p *Pool) spin(seen uint64) bool {
	deadline := time.Now().Add(spinFor)
	for {
		for range 64 {
			if p.state.Load()>>32 != seen {
				return true
			}
		}
		now := time.Now()
		if p.holds.Load() > 0 {
			deadline = now.Add(spinFor)
		}
		if p.closed.Load() || now.After(deadline) {
			return false
		}
	}
}

// Hold keeps the pool's workers from parking until the matching Release, for a burst of For
// calls with gaps between them (a model's pass). Holds from several callers nest. Workers that
// are parked already wake with the next For as usual.
func (p *Pool) Hold() { p.holds.Add(1) }

// Release ends a Hold; the workers park spinFor after the last release if no job comes.
func (p *Pool) Release() {
	if p.holds.Add(-1) < 0 {
		panic("kernels: Pool.Release without Hold")
	}
}

func (p *Pool) drain(w int) {
	body, n, chunk := p.body, p.n, int64(p.chunk)
	for {
		lo := int(p.next.Add(chunk) - chunk)
		if lo >= n {
			return
		}
		body.Range(w, lo, min(lo+int(chunk), n))
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
	if p.closed.Load() {
		p.busy.Unlock()
		panic("kernels: For on a closed Pool")
	}
	p.body, p.n, p.chunk = body, n, chunk
	p.next.Store(0)
	p.left.Store(0)
	// Workers beyond the chunks after the caller's first would only find nothing left.
	admit := min((n+chunk-1)/chunk-1, p.threads-1)
	gen := p.state.Load()>>32 + 1
	p.state.Store(gen<<32 | uint64(admit)<<capShift) // publishes the fields above to whoever joins
	// Wake parked workers, only as many as may join.
	want := admit
	for w := 1; w < p.threads && want > 0; w++ {
		if p.parked[w].Load() && p.parked[w].Swap(false) {
			select {
			case p.wake[w-1] <- struct{}{}:
			default: // a wake-up is already pending
			}
			want--
		}
	}
	p.drain(0)
	joined := min(int32(p.state.Or(jobClosed)&joinedMask), int32(admit))
	for spins := 0; p.left.Load() != joined; spins++ {
		// The joined workers are finishing their last chunks.
		if spins >= 64 {
			runtime.Gosched()
		}
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
