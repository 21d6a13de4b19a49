package transport

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// Pipe returns the two ends of an in-process stream of service svc: what one end writes, the
// other reads, with the same frames, end of stream, cancellation (reasons included) and
// backpressure (window bytes buffered at most; 0 means 8 MiB) as a stream between nodes. A node
// uses it for the streams it would otherwise open to itself, so that a hop between two roles of
// one process costs a copy instead of encryption, a loopback packet and several goroutine
// hand-offs.
func Pipe(svc Service, window int) (Stream, Stream) {
	if window <= 0 {
		window = 8 << 20
	}
	ab, ba := newPipeBuf(window), newPipeBuf(window)
	a := &pipeEnd{in: ba, out: ab}
	b := &pipeEnd{in: ab, out: ba}
	return newStream(a, svc), newStream(b, svc)
}

// errPipeReset is what a pipe end reads after its peer aborted the stream.
var errPipeReset = errors.New("transport: in-process peer reset the stream")

// errPipeStopped is what a pipe end's writes return after its peer stopped reading.
var errPipeStopped = errors.New("transport: in-process peer stopped reading")

// pipeBuf is one direction of a pipe.
type pipeBuf struct {
	window int

	mu      sync.Mutex
	data    []byte
	off     int
	eof     bool          // the writer closed its direction cleanly
	reset   bool          // the writer aborted
	stopped bool          // the reader stopped reading
	changed chan struct{} // closed and replaced on every change
}

func newPipeBuf(window int) *pipeBuf {
	return &pipeBuf{window: window, changed: make(chan struct{})}
}

// signal wakes the waiters (mu held).
func (b *pipeBuf) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// deadlines of one end: a zero time means none.
type pipeDeadlines struct {
	mu     sync.Mutex
	read   time.Time
	write  time.Time
	change chan struct{} // closed and replaced when a deadline is set
}

func (d *pipeDeadlines) get(write bool) (time.Time, chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.change == nil {
		d.change = make(chan struct{})
	}
	if write {
		return d.write, d.change
	}
	return d.read, d.change
}

func (d *pipeDeadlines) set(read, write bool, t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if read {
		d.read = t
	}
	if write {
		d.write = t
	}
	if d.change != nil {
		close(d.change)
	}
	d.change = make(chan struct{})
}

// wait blocks until ch closes or the deadline passes; false means the deadline passed.
func (d *pipeDeadlines) wait(write bool, ch chan struct{}) bool {
	t, change := d.get(write)
	if t.IsZero() {
		select {
		case <-ch:
			return true
		case <-change:
			return true // the deadline moved: the caller looks again
		}
	}
	left := time.Until(t)
	if left <= 0 {
		return false
	}
	timer := time.NewTimer(left)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-change:
		return true
	case <-timer.C:
		return false
	}
}

type pipeEnd struct {
	in, out *pipeBuf
	dl      pipeDeadlines
}

func (p *pipeEnd) Read(dst []byte) (int, error) {
	b := p.in
	for {
		b.mu.Lock()
		switch {
		case b.reset:
			b.mu.Unlock()
			return 0, errPipeReset
		case b.stopped:
			b.mu.Unlock()
			return 0, ErrClosed
		case b.off < len(b.data):
			n := copy(dst, b.data[b.off:])
			b.off += n
			if b.off == len(b.data) {
				b.data, b.off = b.data[:0], 0
			}
			b.signal()
			b.mu.Unlock()
			return n, nil
		case b.eof:
			b.mu.Unlock()
			return 0, io.EOF
		}
		ch := b.changed
		b.mu.Unlock()
		if t, _ := p.dl.get(false); !t.IsZero() && !time.Now().Before(t) {
			return 0, os.ErrDeadlineExceeded
		}
		if !p.dl.wait(false, ch) {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (p *pipeEnd) Write(src []byte) (int, error) {
	b := p.out
	written := 0
	for written < len(src) {
		b.mu.Lock()
		switch {
		case b.stopped:
			b.mu.Unlock()
			return written, errPipeStopped
		case b.eof || b.reset:
			b.mu.Unlock()
			return written, ErrClosed
		}
		if room := b.window - (len(b.data) - b.off); room > 0 {
			if b.off > 0 && len(b.data)+min(room, len(src)-written) > cap(b.data) {
				// Slide the unread bytes down before growing the buffer.
				n := copy(b.data, b.data[b.off:])
				b.data, b.off = b.data[:n], 0
			}
			k := min(room, len(src)-written)
			b.data = append(b.data, src[written:written+k]...)
			written += k
			b.signal()
			b.mu.Unlock()
			continue
		}
		ch := b.changed
		b.mu.Unlock()
		if t, _ := p.dl.get(true); !t.IsZero() && !time.Now().Before(t) {
			return written, os.ErrDeadlineExceeded
		}
		if !p.dl.wait(true, ch) {
			return written, os.ErrDeadlineExceeded
		}
	}
	return written, nil
}

func (p *pipeEnd) SetDeadline(t time.Time) error      { p.dl.set(true, true, t); return nil }
func (p *pipeEnd) SetReadDeadline(t time.Time) error  { p.dl.set(true, false, t); return nil }
func (p *pipeEnd) SetWriteDeadline(t time.Time) error { p.dl.set(false, true, t); return nil }

func (p *pipeEnd) closeWrite() error {
	b := p.out
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reset {
		return ErrClosed
	}
	b.eof = true
	b.signal()
	return nil
}

func (p *pipeEnd) cancelRead() {
	b := p.in
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	b.data, b.off = nil, 0
	b.signal()
}

func (p *pipeEnd) abort() {
	b := p.out
	b.mu.Lock()
	if !b.eof {
		b.reset = true
		b.data, b.off = nil, 0
	}
	b.signal()
	b.mu.Unlock()
	p.cancelRead()
}

func (p *pipeEnd) mapErr(err error) error {
	switch {
	case errors.Is(err, errPipeReset):
		return &CancelledError{Reason: "in-process peer reset the stream", Unexplained: true}
	case errors.Is(err, errPipeStopped):
		return &CancelledError{Reason: "in-process peer stopped reading", Unexplained: true}
	}
	return err
}

var _ rawStream = (*pipeEnd)(nil)
