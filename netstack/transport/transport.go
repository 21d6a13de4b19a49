// Package transport carries byte streams and wire frames between two nodes over mutually
// authenticated connections. QUIC (quic-go) is the default; TCP+TLS with a stream multiplexer
// (yamux) is used when UDP does not get through, or when configured. Both implement Conn, which
// is all a pipeline, a probe or a multipath bundle sees, so an RDMA transport can be added behind
// the same interface.
//
// Every connection starts with a hello on its first stream that carries the wire format version,
// so nodes of different versions refuse each other at dial time with a *wire.VersionError. Every
// stream starts with one byte naming its Service, so probes, multipath stripes and pipeline data
// share one connection.
package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/exo-nix/exo/netstack/wire"
)

// ALPN is the TLS application protocol of tensor connections, on QUIC and TCP alike.
const ALPN = "exo-tensor/1"

// Kind names a transport; it is what a connection reports and what /api/v1/cluster shows.
type Kind string

// Transport kinds.
const (
	KindQUIC Kind = "quic"
	KindTCP  Kind = "tcp"
	// KindRDMA is reserved for a verbs transport (not implemented yet).
	KindRDMA Kind = "rdma"
)

// Mode chooses how Dial reaches a peer.
type Mode string

// Dial modes.
const (
	// ModeAuto tries QUIC for Config.QUICTimeout and falls back to TCP when no QUIC answer came.
	ModeAuto Mode = "auto"
	ModeQUIC Mode = "quic"
	ModeTCP  Mode = "tcp"
)

// ParseMode accepts "auto" (or empty), "quic" and "tcp".
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeQUIC, ModeTCP:
		return Mode(s), nil
	}
	return "", fmt.Errorf("transport: unknown mode %q (want auto, quic or tcp)", s)
}

// Service is the first byte of every stream: it tells the accepting side what the stream is for.
type Service uint8

// Services of netstack. Values from 16 up are free for the layers above.
const (
	serviceHello Service = 0
	// ServiceData: pipeline frames (activations, tokens, control).
	ServiceData Service = 1
	// ServiceProbe: RTT and bandwidth probes (package probe answers them).
	ServiceProbe Service = 2
	// ServiceBundle: the primary stream of a multipath bundle.
	ServiceBundle Service = 3
	// ServiceStripe: a secondary stream of a multipath bundle.
	ServiceStripe Service = 4
)

func (s Service) String() string {
	switch s {
	case serviceHello:
		return "hello"
	case ServiceData:
		return "data"
	case ServiceProbe:
		return "probe"
	case ServiceBundle:
		return "bundle"
	case ServiceStripe:
		return "stripe"
	}
	return fmt.Sprintf("service(%d)", uint8(s))
}

// FrameStream is what a pipeline stage needs from a stream: frames in, frames out. Both a
// transport Stream and a multipath Stream implement it.
type FrameStream interface {
	// WriteFrame sends one frame; it blocks while the peer's receive window is full (backpressure).
	// Calls are serialised per stream.
	WriteFrame(h *wire.Header, payload []byte) error
	// ReadFrame reads the next frame into h and buf (grown when short; the result aliases it).
	// It returns io.EOF after the peer's CloseWrite, a *CancelledError after its Cancel, and a
	// *wire.VersionError for a frame of another wire version.
	ReadFrame(h *wire.Header, buf []byte) ([]byte, error)
	// CloseWrite says no more frames will follow; the peer's ReadFrame then returns io.EOF.
	CloseWrite() error
	// Cancel abandons the stream in both directions; the peer's ReadFrame fails with a
	// *CancelledError carrying reason, and blocked calls here return.
	Cancel(reason string)
}

// Stream is one bidirectional stream of a Conn: raw bytes (Read/Write) or frames, not both
// interleaved in one direction.
type Stream interface {
	FrameStream
	io.Reader
	io.Writer
	Service() Service
	SetDeadline(t time.Time) error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// Conn is an authenticated connection to one peer.
//
// The side that opens a stream must write first: the peer's AcceptStream returns it once its
// service byte arrived, which OpenStream sends at once.
type Conn interface {
	OpenStream(ctx context.Context, svc Service) (Stream, error)
	AcceptStream(ctx context.Context) (Stream, error)
	// Transport says which transport carries the connection.
	Transport() Kind
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// PeerCertificates is the peer's verified certificate chain, leaf first.
	PeerCertificates() []*x509.Certificate
	// RTT is the transport's own smoothed round-trip estimate, 0 when it has none yet.
	RTT() time.Duration
	// Done is closed when the connection is gone (closed here, by the peer, or timed out).
	Done() <-chan struct{}
	// Err says why the connection is gone; nil while it is open.
	Err() error
	Close() error
}

// CancelledError is what reads return after the peer cancelled the stream.
type CancelledError struct {
	Reason string
	// Unexplained: the peer dropped the stream without its reason reaching this call (a reset,
	// or a write meeting the peer's stop of reading). A peer's Cancel sends its reason before it
	// stops reading, so the stream's reader may still receive it.
	Unexplained bool
}

// IsUnexplained reports whether err is a cancellation whose reason did not arrive with it.
func IsUnexplained(err error) bool {
	var ce *CancelledError
	return errors.As(err, &ce) && ce.Unexplained
}

func (e *CancelledError) Error() string {
	return "transport: stream cancelled by peer: " + e.Reason
}

// ConnLostError is returned by stream operations whose connection went away.
type ConnLostError struct {
	Peer  string
	Cause error
}

func (e *ConnLostError) Error() string {
	if e.Cause == nil {
		return fmt.Sprintf("transport: connection to %s lost", e.Peer)
	}
	return fmt.Sprintf("transport: connection to %s lost: %v", e.Peer, e.Cause)
}

func (e *ConnLostError) Unwrap() error { return e.Cause }

// ErrClosed is returned by an Endpoint after Close.
var ErrClosed = errors.New("transport: endpoint closed")
