package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/exo-nix/exo/netstack/transport"
)

// Model sharing rides on the tensor transport: a ServiceModels stream is one HTTP/1.1
// connection to the store's PeerHandler. The transport has already authenticated both ends
// with the cluster's certificates, so the handler sees the request as a mutual-TLS one
// (r.TLS carries the peer's verified chain), and the client side hands the stream to
// net/http as an established TLS connection.

// streamConn is a transport stream seen as a net.Conn.
type streamConn struct {
	transport.Stream
	conn transport.Conn
	once sync.Once
}

func (c *streamConn) LocalAddr() net.Addr  { return c.conn.LocalAddr() }
func (c *streamConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// drainTimeout bounds how long a closed stream waits for its peer's end before it is dropped.
const drainTimeout = 30 * time.Second

// Close ends our direction cleanly (what was written still arrives) and reads the peer's
// direction to its end in the background, so that the stream is released on both sides.
func (c *streamConn) Close() error {
	c.once.Do(func() {
		_ = c.CloseWrite()
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(drainTimeout))
			if _, err := io.Copy(io.Discard, c.Stream); err != nil {
				c.Cancel("closed")
			}
		}()
	})
	return nil
}

// streamListener hands accepted ServiceModels streams to an http.Server.
type streamListener struct {
	addr   net.Addr
	ch     chan *streamConn
	done   chan struct{}
	closed sync.Once
}

func newStreamListener(addr net.Addr) *streamListener {
	return &streamListener{addr: addr, ch: make(chan *streamConn), done: make(chan struct{})}
}

func (l *streamListener) deliver(c transport.Conn, s transport.Stream) {
	sc := &streamConn{Stream: s, conn: c}
	go func() {
		select {
		case l.ch <- sc:
		case <-l.done:
			s.Cancel("this node does not share models")
		case <-time.After(10 * time.Second):
			s.Cancel("model sharing is busy")
		}
	}()
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return l.addr }

type peerCertsKey struct{}

// ServeModels serves h (the store's PeerHandler) to peers until the Net closes.
func (n *Net) ServeModels(h http.Handler) {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			certs, _ := r.Context().Value(peerCertsKey{}).([]*x509.Certificate)
			if len(certs) == 0 {
				http.Error(w, "no verified peer certificate", http.StatusForbidden)
				return
			}
			r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true,
				PeerCertificates: certs, VerifiedChains: [][]*x509.Certificate{certs}}
			h.ServeHTTP(w, r)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if sc, ok := c.(*streamConn); ok {
				return context.WithValue(ctx, peerCertsKey{}, sc.conn.PeerCertificates())
			}
			return ctx
		},
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		go func() {
			<-n.ctx.Done()
			_ = srv.Close()
		}()
		if err := srv.Serve(n.models); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Warn("model sharing stopped", "err", err)
		}
	}()
}

// DialModels opens a model-sharing stream to the peer at addr (for store.NewPeerClientDialer).
func (n *Net) DialModels(ctx context.Context, addr string) (net.Conn, error) {
	c, err := n.Conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	s, err := c.OpenStream(ctx, ServiceModels)
	if err != nil {
		return nil, err
	}
	return &streamConn{Stream: s, conn: c}, nil
}
