package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/quic-go/quic-go"
)

// QUIC application error codes (connection close) and stream error codes (reset).
const (
	quicCodeClosed  quic.ApplicationErrorCode = 0
	quicCodeVersion quic.ApplicationErrorCode = 0x10
	quicCodeRefused quic.ApplicationErrorCode = 0x11
	quicCodeCancel  quic.StreamErrorCode      = 1
)

type quicConn struct {
	qc   *quic.Conn
	peer string
}

func newQUICConn(qc *quic.Conn) *quicConn {
	return &quicConn{qc: qc, peer: qc.RemoteAddr().String()}
}

func (c *quicConn) OpenStream(ctx context.Context, svc Service) (Stream, error) {
	s, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("transport: open %s stream to %s: %w", svc, c.peer, c.mapConnErr(err))
	}
	raw := &quicStream{s: s, c: c}
	if err := writePreamble(ctx, raw, svc); err != nil {
		return nil, err
	}
	return newStream(raw, svc), nil
}

func (c *quicConn) AcceptStream(ctx context.Context) (Stream, error) {
	for {
		s, err := c.qc.AcceptStream(ctx)
		if err != nil {
			return nil, fmt.Errorf("transport: accept stream from %s: %w", c.peer, c.mapConnErr(err))
		}
		raw := &quicStream{s: s, c: c}
		svc, err := readPreamble(raw)
		if err != nil {
			if c.qc.Context().Err() != nil {
				return nil, err
			}
			continue // one broken stream does not end the connection
		}
		return newStream(raw, svc), nil
	}
}

func (c *quicConn) Transport() Kind       { return KindQUIC }
func (c *quicConn) LocalAddr() net.Addr   { return c.qc.LocalAddr() }
func (c *quicConn) RemoteAddr() net.Addr  { return c.qc.RemoteAddr() }
func (c *quicConn) Done() <-chan struct{} { return c.qc.Context().Done() }
func (c *quicConn) RTT() time.Duration    { return c.qc.ConnectionStats().SmoothedRTT }

func (c *quicConn) PeerCertificates() []*x509.Certificate {
	return c.qc.ConnectionState().TLS.PeerCertificates
}

func (c *quicConn) Err() error {
	if c.qc.Context().Err() == nil {
		return nil
	}
	return context.Cause(c.qc.Context())
}

func (c *quicConn) Close() error {
	return c.qc.CloseWithError(quicCodeClosed, "closed")
}

func (c *quicConn) closeWith(code quic.ApplicationErrorCode, reason string) {
	_ = c.qc.CloseWithError(code, reason)
}

func (c *quicConn) mapConnErr(err error) error {
	// Streams may report the connection's end before its context is cancelled, so the error
	// types that only a connection's end produces count as well.
	var (
		ae *quic.ApplicationError
		te *quic.TransportError
		it *quic.IdleTimeoutError
		ht *quic.HandshakeTimeoutError
		sr *quic.StatelessResetError
	)
	if c.qc.Context().Err() != nil || errors.As(err, &ae) || errors.As(err, &te) || errors.As(err, &it) ||
		errors.As(err, &ht) || errors.As(err, &sr) {
		return &ConnLostError{Peer: c.peer, Cause: err}
	}
	return err
}

type quicStream struct {
	s *quic.Stream
	c *quicConn
}

func (s *quicStream) Read(p []byte) (int, error)         { return s.s.Read(p) }
func (s *quicStream) Write(p []byte) (int, error)        { return s.s.Write(p) }
func (s *quicStream) SetDeadline(t time.Time) error      { return s.s.SetDeadline(t) }
func (s *quicStream) SetReadDeadline(t time.Time) error  { return s.s.SetReadDeadline(t) }
func (s *quicStream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }
func (s *quicStream) closeWrite() error                  { return s.s.Close() }
func (s *quicStream) cancelRead()                        { s.s.CancelRead(quicCodeCancel) }

func (s *quicStream) abort() {
	s.s.CancelWrite(quicCodeCancel)
	s.s.CancelRead(quicCodeCancel)
}

func (s *quicStream) mapErr(err error) error {
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return &CancelledError{Reason: fmt.Sprintf("peer %s reset the stream (code %d)", s.c.peer, se.ErrorCode), Unexplained: true}
	}
	return s.c.mapConnErr(err)
}

// quicFallbackWorthy says whether a failed QUIC dial may mean "UDP does not get through": no
// answer at all. An answer that refused us (TLS alert, version, explicit close) would be the same
// over TCP, so it is returned instead of hidden behind a fallback.
func quicFallbackWorthy(err error) bool {
	var te *quic.TransportError
	var ae *quic.ApplicationError
	switch {
	case errors.As(err, &ae):
		return false
	case errors.As(err, &te):
		return !te.ErrorCode.IsCryptoError() && !te.Remote
	}
	var vn *quic.VersionNegotiationError
	return !errors.As(err, &vn)
}
