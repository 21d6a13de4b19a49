package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// errSessionClosed stands in for yamux's bare io.EOF on streams of a session that went away, so
// that a lost peer never looks like a clean end of stream.
var errSessionClosed = errors.New("TCP session closed")

// tcpConn multiplexes streams over one TLS-over-TCP connection with yamux, whose per-stream
// windows give the same backpressure as QUIC's flow control.
type tcpConn struct {
	sess *yamux.Session
	tc   *tls.Conn
	peer string

	mu       sync.Mutex
	closeErr error
}

func yamuxConfig(cfg *Config) *yamux.Config {
	yc := yamux.DefaultConfig()
	yc.AcceptBacklog = 1024
	yc.EnableKeepAlive = true
	yc.KeepAliveInterval = cfg.IdleTimeout / 4
	// yamux writes a stream's data in chunks of up to one window and counts the whole chunk
	// against this timeout, so it must cover a full window on a slow link.
	yc.ConnectionWriteTimeout = max(10*time.Second, cfg.IdleTimeout)
	yc.MaxStreamWindowSize = uint32(min(cfg.StreamWindow, 1<<31))
	yc.StreamCloseTimeout = 30 * time.Second
	// yamux closes the whole session when a stream's SYN is not acknowledged in time, and it
	// acknowledges only when the peer's application accepts; a busy peer must not cost the
	// connection, and dead peers are found by the keepalive.
	yc.StreamOpenTimeout = 0
	yc.LogOutput = nil
	yc.Logger = yamuxLogger{cfg.Logger}
	return yc
}

func newTCPConn(tc *tls.Conn, client bool, cfg *Config) (*tcpConn, error) {
	var sess *yamux.Session
	var err error
	if client {
		sess, err = yamux.Client(tc, yamuxConfig(cfg))
	} else {
		sess, err = yamux.Server(tc, yamuxConfig(cfg))
	}
	if err != nil {
		return nil, fmt.Errorf("transport: start stream multiplexer with %s: %w", tc.RemoteAddr(), err)
	}
	return &tcpConn{sess: sess, tc: tc, peer: tc.RemoteAddr().String()}, nil
}

func (c *tcpConn) OpenStream(ctx context.Context, svc Service) (Stream, error) {
	type result struct {
		s   *yamux.Stream
		err error
	}
	// yamux's OpenStream takes no context; it can block while the peer's accept backlog is full.
	ch := make(chan result, 1)
	go func() {
		s, err := c.sess.OpenStream()
		ch <- result{s, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				_ = r.s.Close()
			}
		}()
		return nil, fmt.Errorf("transport: open %s stream to %s: %w", svc, c.peer, ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("transport: open %s stream to %s: %w", svc, c.peer, c.mapConnErr(r.err))
	}
	raw := &tcpStream{s: r.s, c: c}
	if err := writePreamble(ctx, raw, svc); err != nil {
		return nil, err
	}
	return newStream(raw, svc), nil
}

func (c *tcpConn) AcceptStream(ctx context.Context) (Stream, error) {
	for {
		s, err := c.sess.AcceptStreamWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("transport: accept stream from %s: %w", c.peer, c.mapConnErr(err))
		}
		raw := &tcpStream{s: s, c: c}
		svc, err := readPreamble(raw)
		if err != nil {
			if c.sess.IsClosed() {
				return nil, err
			}
			continue
		}
		return newStream(raw, svc), nil
	}
}

func (c *tcpConn) Transport() Kind       { return KindTCP }
func (c *tcpConn) LocalAddr() net.Addr   { return c.tc.LocalAddr() }
func (c *tcpConn) RemoteAddr() net.Addr  { return c.tc.RemoteAddr() }
func (c *tcpConn) Done() <-chan struct{} { return c.sess.CloseChan() }
func (c *tcpConn) RTT() time.Duration    { return tcpRTT(c.tc.NetConn()) }

func (c *tcpConn) PeerCertificates() []*x509.Certificate {
	return c.tc.ConnectionState().PeerCertificates
}

func (c *tcpConn) Err() error {
	if !c.sess.IsClosed() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeErr != nil {
		return c.closeErr
	}
	return errSessionClosed
}

func (c *tcpConn) Close() error {
	c.closeWith("closed locally")
	return nil
}

func (c *tcpConn) closeWith(reason string) {
	c.mu.Lock()
	if c.closeErr == nil {
		c.closeErr = errors.New(reason)
	}
	c.mu.Unlock()
	_ = c.sess.Close()
}

func (c *tcpConn) mapConnErr(err error) error {
	if c.sess.IsClosed() || errors.Is(err, yamux.ErrSessionShutdown) {
		cause := err
		if err == io.EOF {
			cause = errSessionClosed
		}
		return &ConnLostError{Peer: c.peer, Cause: cause}
	}
	return err
}

type tcpStream struct {
	s *yamux.Stream
	c *tcpConn
}

func (s *tcpStream) Read(p []byte) (int, error)         { return s.s.Read(p) }
func (s *tcpStream) Write(p []byte) (int, error)        { return s.s.Write(p) }
func (s *tcpStream) SetDeadline(t time.Time) error      { return s.s.SetDeadline(t) }
func (s *tcpStream) SetReadDeadline(t time.Time) error  { return s.s.SetReadDeadline(t) }
func (s *tcpStream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }
func (s *tcpStream) closeWrite() error                  { return s.s.Close() }

// cancelRead has no yamux equivalent; the peer stops on the abort frame it reads first.
func (s *tcpStream) cancelRead() {}

// abort ends the stream with a FIN after waking blocked calls; a frame cut short by it reads as
// truncated on the other side (yamux has no public stream reset).
func (s *tcpStream) abort() {
	_ = s.s.SetDeadline(time.Now())
	_ = s.s.Close()
}

func (s *tcpStream) mapErr(err error) error {
	if errors.Is(err, yamux.ErrConnectionReset) {
		return &CancelledError{Reason: fmt.Sprintf("peer %s reset the stream", s.c.peer), Unexplained: true}
	}
	return s.c.mapConnErr(err)
}

type yamuxLogger struct{ l *slog.Logger }

func (y yamuxLogger) Print(v ...any) { y.l.Debug(fmt.Sprint(v...), "component", "yamux") }
func (y yamuxLogger) Printf(format string, v ...any) {
	y.l.Debug(fmt.Sprintf(format, v...), "component", "yamux")
}
func (y yamuxLogger) Println(v ...any) { y.l.Debug(fmt.Sprint(v...), "component", "yamux") }
