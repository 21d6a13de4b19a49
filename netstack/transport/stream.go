package transport

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/exo-nix/exo/netstack/wire"
)

// rawStream is what each transport provides; stream adds services, frames and cancellation.
type rawStream interface {
	io.Reader
	io.Writer
	SetDeadline(t time.Time) error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	// closeWrite sends a clean end of the write direction.
	closeWrite() error
	// abort drops both directions at once, discarding unsent data; blocked calls return.
	abort()
	// cancelRead stops receiving after a clean closeWrite, keeping what was sent deliverable.
	cancelRead()
	// mapErr turns a transport error into CancelledError or ConnLostError where it is one.
	mapErr(err error) error
}

// abortWriteTimeout bounds how long Cancel waits to deliver its reason before dropping the stream.
const abortWriteTimeout = time.Second

type stream struct {
	raw rawStream
	svc Service

	wmu sync.Mutex
	w   wire.Writer
	rmu sync.Mutex
	r   wire.Reader

	cancelOnce sync.Once
}

func newStream(raw rawStream, svc Service) *stream {
	s := &stream{raw: raw, svc: svc}
	s.w.W = raw
	s.r.R = errReader{raw}
	return s
}

// errReader maps transport errors on every read, so frame errors carry the cause.
type errReader struct{ raw rawStream }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.raw.Read(p)
	if err != nil {
		err = e.raw.mapErr(err)
	}
	return n, err
}

func (s *stream) Service() Service { return s.svc }

func (s *stream) Read(p []byte) (int, error) { return errReader{s.raw}.Read(p) }

func (s *stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n, err := s.raw.Write(p)
	if err != nil {
		err = s.raw.mapErr(err)
	}
	return n, err
}

func (s *stream) WriteFrame(h *wire.Header, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.w.WriteFrame(h, payload); err != nil {
		return s.raw.mapErr(err)
	}
	return nil
}

func (s *stream) ReadFrame(h *wire.Header, buf []byte) ([]byte, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	p, err := s.r.ReadFrame(h, buf)
	if err != nil {
		return nil, err
	}
	if h.Kind == wire.KindAbort {
		return nil, &CancelledError{Reason: string(p)}
	}
	return p, nil
}

func (s *stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.raw.closeWrite()
}

// Cancel sends the reason as an abort frame when no frame is half written (so the peer learns
// why), then drops the stream; a writer blocked mid-frame is released by dropping it at once.
func (s *stream) Cancel(reason string) {
	s.cancelOnce.Do(func() {
		if !s.wmu.TryLock() {
			s.raw.abort()
			return
		}
		defer s.wmu.Unlock()
		_ = s.raw.SetWriteDeadline(time.Now().Add(abortWriteTimeout))
		h := wire.Header{Kind: wire.KindAbort, DType: wire.Bytes, Shape: []uint32{uint32(len(reason))}}
		if s.w.WriteFrame(&h, []byte(reason)) != nil || s.raw.closeWrite() != nil {
			s.raw.abort()
			return
		}
		// The abort frame is queued; stop reading so the peer's writes fail instead of filling a
		// window nobody drains.
		s.raw.cancelRead()
	})
}

func (s *stream) SetDeadline(t time.Time) error      { return s.raw.SetDeadline(t) }
func (s *stream) SetReadDeadline(t time.Time) error  { return s.raw.SetReadDeadline(t) }
func (s *stream) SetWriteDeadline(t time.Time) error { return s.raw.SetWriteDeadline(t) }

// preambleTimeout bounds the wait for the service byte of an accepted stream.
const preambleTimeout = 10 * time.Second

func writePreamble(ctx context.Context, raw rawStream, svc Service) error {
	if d, ok := ctx.Deadline(); ok {
		_ = raw.SetWriteDeadline(d)
		defer raw.SetWriteDeadline(time.Time{})
	}
	if _, err := raw.Write([]byte{byte(svc)}); err != nil {
		raw.abort()
		return fmt.Errorf("transport: open %s stream: %w", svc, raw.mapErr(err))
	}
	return nil
}

func readPreamble(raw rawStream) (Service, error) {
	_ = raw.SetReadDeadline(time.Now().Add(preambleTimeout))
	var b [1]byte
	_, err := io.ReadFull(raw, b[:])
	_ = raw.SetReadDeadline(time.Time{})
	if err != nil {
		raw.abort()
		return 0, fmt.Errorf("transport: read service byte of an accepted stream: %w", raw.mapErr(err))
	}
	return Service(b[0]), nil
}
