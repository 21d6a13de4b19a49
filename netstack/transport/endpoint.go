package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/exo-nix/exo/netstack/portbind"
	"github.com/exo-nix/exo/netstack/wire"
	"github.com/quic-go/quic-go"
)

// Config configures an Endpoint. Only the TLS configurations are required.
type Config struct {
	// ServerTLS is used for accepted connections. It must demand and verify client certificates
	// (ClientAuth RequireAndVerifyClientCert, or RequireAnyClientCert with VerifyPeerCertificate):
	// tensor connections are mutual TLS only. NextProtos is replaced by ALPN.
	ServerTLS *tls.Config
	// ClientTLS is used for dialled connections; it must carry a client certificate and verify
	// the server (RootCAs, or VerifyPeerCertificate with InsecureSkipVerify as the cluster PKI
	// does). An empty ServerName becomes the dialled host.
	ClientTLS *tls.Config
	// Mode chooses the transport for Dial (default ModeAuto).
	Mode Mode
	// QUICTimeout is how long ModeAuto waits for a QUIC handshake before trying TCP (default 1s).
	QUICTimeout time.Duration
	// FallbackTTL: after a fallback, the same peer is dialled over TCP directly for this long
	// before QUIC is tried again (default 1 minute).
	FallbackTTL time.Duration
	// HandshakeTimeout bounds TLS handshakes and the version hello (default 5s).
	HandshakeTimeout time.Duration
	// IdleTimeout: a connection that hears nothing from its peer for this long is closed; keep
	// alives go out at a quarter of it, so a dead peer is noticed within it (default 10s).
	IdleTimeout time.Duration
	// StreamWindow is the most a stream buffers unread on the receiving side, the bound of
	// backpressure (default 8 MiB).
	StreamWindow uint64
	// Logger receives refused and failed handshakes and fallbacks (default: discard).
	Logger *slog.Logger

	// version overrides wire.Version in tests of the version check.
	version uint16
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	if c.QUICTimeout <= 0 {
		c.QUICTimeout = time.Second
	}
	if c.FallbackTTL <= 0 {
		c.FallbackTTL = time.Minute
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Second
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = 8 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.version == 0 {
		c.version = wire.Version
	}
	return c
}

// Endpoint listens for and dials tensor connections. One Endpoint serves QUIC on UDP and the TCP
// fallback on the same port number.
type Endpoint struct {
	cfg       Config
	serverTLS *tls.Config
	clientTLS *tls.Config

	udp   *net.UDPConn
	qtr   *quic.Transport
	qln   *quic.Listener
	tcpLn net.Listener

	accepted chan Conn
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	bound   map[netip.Addr]*quic.Transport
	blocked map[string]time.Time // "local>remote" → until when TCP is used directly
	conns   map[Conn]struct{}
}

// Listen starts an endpoint on addr (host:port; port 0 picks one free on both UDP and TCP).
func Listen(addr string, cfg Config) (*Endpoint, error) {
	e, err := newEndpoint(cfg, true)
	if err != nil {
		return nil, err
	}
	if err := e.listen(addr); err != nil {
		e.Close()
		return nil, err
	}
	e.wg.Add(2)
	go e.acceptQUIC()
	go e.acceptTCP()
	return e, nil
}

// NewDialer returns an endpoint that only dials (its QUIC socket is on an ephemeral port).
func NewDialer(cfg Config) (*Endpoint, error) {
	e, err := newEndpoint(cfg, false)
	if err != nil {
		return nil, err
	}
	uc, err := net.ListenUDP("udp", nil)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("transport: open UDP socket for dialling: %w", err)
	}
	e.udp = uc
	e.qtr = &quic.Transport{Conn: uc}
	return e, nil
}

func newEndpoint(cfg Config, server bool) (*Endpoint, error) {
	cfg = cfg.withDefaults()
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return nil, err
	}
	e := &Endpoint{
		cfg:      cfg,
		accepted: make(chan Conn, 64),
		bound:    map[netip.Addr]*quic.Transport{},
		blocked:  map[string]time.Time{},
		conns:    map[Conn]struct{}{},
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	var err error
	if server {
		if e.serverTLS, err = prepareServerTLS(cfg.ServerTLS); err != nil {
			return nil, err
		}
	}
	if cfg.ClientTLS != nil || !server {
		if e.clientTLS, err = prepareClientTLS(cfg.ClientTLS); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Endpoint) listen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("transport: listen address %q: %w", addr, err)
	}
	// With port 0 the TCP port is picked first and UDP must get the same number; another
	// program may hold that UDP port, so pick again a few times. A fixed port is retried by
	// portbind while a passing socket may hold it.
	bind := func() (struct{}, error) {
		for attempt := 0; ; attempt++ {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return struct{}{}, fmt.Errorf("transport: listen on TCP %s: %w", addr, err)
			}
			p := ln.Addr().(*net.TCPAddr).Port
			ua, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(p)))
			if err != nil {
				ln.Close()
				return struct{}{}, fmt.Errorf("transport: listen address %q: %w", addr, err)
			}
			uc, err := net.ListenUDP("udp", ua)
			if err != nil {
				ln.Close()
				if port == "0" && errors.Is(err, syscall.EADDRINUSE) && attempt < 8 {
					continue
				}
				return struct{}{}, fmt.Errorf("transport: listen on UDP %s: %w", ua, err)
			}
			e.tcpLn, e.udp = ln, uc
			return struct{}{}, nil
		}
	}
	if _, err := portbind.Bind(addr, bind); err != nil {
		return err
	}
	e.qtr = &quic.Transport{Conn: e.udp}
	e.qln, err = e.qtr.Listen(e.serverTLS, e.quicConfig(e.cfg.HandshakeTimeout))
	if err != nil {
		return fmt.Errorf("transport: start QUIC listener on %s: %w", e.udp.LocalAddr(), err)
	}
	return nil
}

func (e *Endpoint) quicConfig(handshake time.Duration) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           handshake,
		MaxIdleTimeout:                 e.cfg.IdleTimeout,
		KeepAlivePeriod:                e.cfg.IdleTimeout / 4,
		MaxIncomingStreams:             4096,
		MaxIncomingUniStreams:          -1,
		InitialStreamReceiveWindow:     min(512<<10, e.cfg.StreamWindow),
		MaxStreamReceiveWindow:         e.cfg.StreamWindow,
		InitialConnectionReceiveWindow: min(1<<20, 4*e.cfg.StreamWindow),
		MaxConnectionReceiveWindow:     4 * e.cfg.StreamWindow,
	}
}

// Addr is the listening address (TCP; QUIC listens on the same port over UDP).
func (e *Endpoint) Addr() net.Addr {
	if e.tcpLn == nil {
		return nil
	}
	return e.tcpLn.Addr()
}

// Accept returns the next connection that passed TLS and the version hello.
func (e *Endpoint) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-e.accepted:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-e.ctx.Done():
		return nil, ErrClosed
	}
}

// Dial connects to a peer's endpoint at addr (host:port) from any local address.
func (e *Endpoint) Dial(ctx context.Context, addr string) (Conn, error) {
	return e.DialFrom(ctx, netip.Addr{}, addr)
}

// DialFrom connects to addr from the local address local (one connection per path for
// multipath); an invalid local lets the kernel choose.
func (e *Endpoint) DialFrom(ctx context.Context, local netip.Addr, addr string) (Conn, error) {
	if e.clientTLS == nil {
		return nil, errors.New("transport: endpoint has no ClientTLS and cannot dial")
	}
	if e.ctx.Err() != nil {
		return nil, ErrClosed
	}
	switch e.cfg.Mode {
	case ModeQUIC:
		return e.dialQUIC(ctx, local, addr, e.cfg.HandshakeTimeout)
	case ModeTCP:
		return e.dialTCP(ctx, local, addr)
	}
	key := local.String() + ">" + addr
	e.mu.Lock()
	until, blocked := e.blocked[key]
	e.mu.Unlock()
	if blocked && time.Now().Before(until) {
		return e.dialTCP(ctx, local, addr)
	}
	qctx, cancel := context.WithTimeout(ctx, e.cfg.QUICTimeout)
	c, qerr := e.dialQUIC(qctx, local, addr, e.cfg.QUICTimeout)
	cancel()
	if qerr == nil {
		e.mu.Lock()
		delete(e.blocked, key)
		e.mu.Unlock()
		return c, nil
	}
	var ve *wire.VersionError
	if ctx.Err() != nil || errors.As(qerr, &ve) || !quicFallbackWorthy(qerr) {
		return nil, qerr
	}
	e.cfg.Logger.Info("QUIC got no answer, falling back to TCP", "peer", addr, "local", local, "timeout", e.cfg.QUICTimeout, "err", qerr)
	c, terr := e.dialTCP(ctx, local, addr)
	if terr != nil {
		return nil, fmt.Errorf("transport: dial %s: QUIC failed (%v), then TCP failed: %w", addr, qerr, terr)
	}
	e.mu.Lock()
	e.blocked[key] = time.Now().Add(e.cfg.FallbackTTL)
	e.mu.Unlock()
	return c, nil
}

func (e *Endpoint) dialQUIC(ctx context.Context, local netip.Addr, addr string, handshake time.Duration) (Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial QUIC %s: %w", addr, err)
	}
	tr, err := e.quicTransport(local)
	if err != nil {
		return nil, err
	}
	qc, err := tr.Dial(ctx, ua, e.clientTLSFor(addr), e.quicConfig(handshake))
	if err != nil {
		return nil, fmt.Errorf("transport: dial QUIC %s: %w", addr, err)
	}
	c := newQUICConn(qc)
	if err := e.clientHello(ctx, c); err != nil {
		var ve *wire.VersionError
		if errors.As(err, &ve) {
			c.closeWith(quicCodeVersion, err.Error())
		} else {
			c.closeWith(quicCodeRefused, err.Error())
		}
		return nil, err
	}
	e.track(c)
	return c, nil
}

func (e *Endpoint) dialTCP(ctx context.Context, local netip.Addr, addr string) (Conn, error) {
	d := net.Dialer{KeepAlive: e.cfg.IdleTimeout / 4}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice(), Zone: local.Zone()}
	}
	hctx, cancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
	defer cancel()
	nc, err := d.DialContext(hctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial TCP %s: %w", addr, err)
	}
	tc := tls.Client(nc, e.clientTLSFor(addr))
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("transport: TLS handshake with %s: %w", addr, err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != ALPN {
		nc.Close()
		return nil, fmt.Errorf("transport: %s did not agree on ALPN %q (got %q)", addr, ALPN, p)
	}
	// The hello runs on the TLS connection before the multiplexer starts, so that a TLS alert
	// the server sends after checking our certificate reaches this caller.
	if d, ok := hctx.Deadline(); ok {
		_ = tc.SetDeadline(d)
	}
	if err := e.clientHelloRW(tc, addr); err != nil {
		nc.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	c, err := newTCPConn(tc, true, &e.cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	e.track(c)
	return c, nil
}

func (e *Endpoint) quicTransport(local netip.Addr) (*quic.Transport, error) {
	if !local.IsValid() {
		return e.qtr, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if tr, ok := e.bound[local]; ok {
		return tr, nil
	}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.AsSlice(), Zone: local.Zone()})
	if err != nil {
		return nil, fmt.Errorf("transport: bind UDP socket to local address %s: %w", local, err)
	}
	tr := &quic.Transport{Conn: uc}
	e.bound[local] = tr
	return tr, nil
}

func (e *Endpoint) clientTLSFor(addr string) *tls.Config {
	c := e.clientTLS
	if c.ServerName == "" && !c.InsecureSkipVerify {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c = c.Clone()
			c.ServerName = host
		}
	}
	return c
}

func (e *Endpoint) acceptQUIC() {
	defer e.wg.Done()
	for {
		qc, err := e.qln.Accept(e.ctx)
		if err != nil {
			return
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			c := newQUICConn(qc)
			ctx, cancel := context.WithTimeout(e.ctx, e.cfg.HandshakeTimeout)
			defer cancel()
			if err := e.serverHello(ctx, c); err != nil {
				e.refuse(c, err, func(reason string, version bool) {
					code := quicCodeRefused
					if version {
						code = quicCodeVersion
					}
					c.closeWith(code, reason)
				})
				return
			}
			e.deliver(c)
		}()
	}
}

func (e *Endpoint) acceptTCP() {
	defer e.wg.Done()
	for {
		nc, err := e.tcpLn.Accept()
		if err != nil {
			if e.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			e.cfg.Logger.Warn("TCP accept failed", "addr", e.tcpLn.Addr(), "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			ctx, cancel := context.WithTimeout(e.ctx, e.cfg.HandshakeTimeout)
			defer cancel()
			tc := tls.Server(nc, e.serverTLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				e.cfg.Logger.Warn("refused TCP tensor connection: TLS handshake failed", "peer", nc.RemoteAddr(), "err", err)
				nc.Close()
				return
			}
			if p := tc.ConnectionState().NegotiatedProtocol; p != ALPN {
				e.cfg.Logger.Warn("refused TCP tensor connection: wrong ALPN", "peer", nc.RemoteAddr(), "alpn", p)
				nc.Close()
				return
			}
			d, _ := ctx.Deadline()
			_ = tc.SetDeadline(d)
			if err := e.serverHelloRW(tc, nc.RemoteAddr().String()); err != nil {
				e.cfg.Logger.Warn("refused tensor connection", "peer", nc.RemoteAddr(), "transport", KindTCP, "err", err)
				nc.Close()
				return
			}
			_ = tc.SetDeadline(time.Time{})
			c, err := newTCPConn(tc, false, &e.cfg)
			if err != nil {
				nc.Close()
				return
			}
			e.deliver(c)
		}()
	}
}

// refuse logs why a connection is turned away. After a version mismatch the client must read our
// hello before the connection goes, so it is given a moment to close first.
func (e *Endpoint) refuse(c Conn, err error, closeFn func(reason string, version bool)) {
	var ve *wire.VersionError
	version := errors.As(err, &ve)
	e.cfg.Logger.Warn("refused tensor connection", "peer", c.RemoteAddr(), "transport", c.Transport(), "err", err)
	if version {
		select {
		case <-c.Done():
		case <-time.After(2 * time.Second):
		case <-e.ctx.Done():
		}
	}
	closeFn(err.Error(), version)
}

func (e *Endpoint) deliver(c Conn) {
	e.track(c)
	select {
	case e.accepted <- c:
	case <-e.ctx.Done():
		_ = c.Close()
	}
}

func (e *Endpoint) track(c Conn) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = c.Close()
		return
	}
	e.conns[c] = struct{}{}
	e.mu.Unlock()
	go func() {
		<-c.Done()
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
	}()
}

// Close stops listening and closes every connection of the endpoint.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	conns := make([]Conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	bound := e.bound
	e.mu.Unlock()
	e.cancel()
	for _, c := range conns {
		_ = c.Close()
	}
	if e.qln != nil {
		_ = e.qln.Close()
	}
	if e.tcpLn != nil {
		_ = e.tcpLn.Close()
	}
	for _, tr := range bound {
		_ = tr.Close()
		_ = tr.Conn.Close()
	}
	if e.qtr != nil {
		_ = e.qtr.Close()
	}
	if e.udp != nil {
		_ = e.udp.Close()
	}
	e.wg.Wait()
	for {
		select {
		case c := <-e.accepted:
			_ = c.Close()
		default:
			return nil
		}
	}
}

// The hello: magic "EXOH", wire version, two reserved bytes. Each side sends its own and reads
// the other's, so both learn the peer's version and the error names both.
var helloMagic = [4]byte{'E', 'X', 'O', 'H'}

const helloSize = 8

func helloMsg(version uint16) []byte {
	b := make([]byte, helloSize)
	copy(b, helloMagic[:])
	binary.LittleEndian.PutUint16(b[4:], version)
	return b
}

func parseHello(b []byte, peer string) (uint16, error) {
	if [4]byte(b[:4]) != helloMagic {
		return 0, fmt.Errorf("transport: %s sent % x instead of an exo tensor hello", peer, b[:4])
	}
	return binary.LittleEndian.Uint16(b[4:]), nil
}

// clientHello runs the hello on a fresh stream of a QUIC connection.
func (e *Endpoint) clientHello(ctx context.Context, c Conn) error {
	peer := c.RemoteAddr().String()
	s, err := c.OpenStream(ctx, serviceHello)
	if err != nil {
		return fmt.Errorf("transport: hello to %s: %w", peer, err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(d)
	} else {
		_ = s.SetDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	}
	defer s.CloseWrite()
	return e.clientHelloRW(s, peer)
}

// serverHello answers the hello on the first stream of an accepted QUIC connection.
func (e *Endpoint) serverHello(ctx context.Context, c Conn) error {
	peer := c.RemoteAddr().String()
	s, err := c.AcceptStream(ctx)
	if err != nil {
		return fmt.Errorf("transport: waiting for hello from %s: %w", peer, err)
	}
	if s.Service() != serviceHello {
		s.Cancel("hello expected")
		return fmt.Errorf("transport: %s opened a %s stream before its hello", peer, s.Service())
	}
	d, _ := ctx.Deadline()
	_ = s.SetDeadline(d)
	defer s.CloseWrite()
	return e.serverHelloRW(s, peer)
}

func (e *Endpoint) clientHelloRW(rw io.ReadWriter, peer string) error {
	if _, err := rw.Write(helloMsg(e.cfg.version)); err != nil {
		return fmt.Errorf("transport: hello to %s: %w", peer, err)
	}
	buf := make([]byte, helloSize)
	if _, err := io.ReadFull(rw, buf); err != nil {
		return fmt.Errorf("transport: hello from %s: %w", peer, err)
	}
	v, err := parseHello(buf, peer)
	if err != nil {
		return err
	}
	if v != e.cfg.version {
		return &wire.VersionError{Local: e.cfg.version, Remote: v, Peer: peer}
	}
	return nil
}

func (e *Endpoint) serverHelloRW(rw io.ReadWriter, peer string) error {
	buf := make([]byte, helloSize)
	if _, err := io.ReadFull(rw, buf); err != nil {
		return fmt.Errorf("transport: hello from %s: %w", peer, err)
	}
	v, err := parseHello(buf, peer)
	if err != nil {
		return err
	}
	// Answer even a mismatch, so that the client's error names our version.
	if _, err := rw.Write(helloMsg(e.cfg.version)); err != nil {
		return fmt.Errorf("transport: hello to %s: %w", peer, err)
	}
	if v != e.cfg.version {
		return &wire.VersionError{Local: e.cfg.version, Remote: v, Peer: peer}
	}
	return nil
}

func prepareServerTLS(c *tls.Config) (*tls.Config, error) {
	if c == nil {
		return nil, errors.New("transport: Config.ServerTLS is required to listen (mutual TLS with the cluster certificates)")
	}
	if len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		return nil, errors.New("transport: Config.ServerTLS has no certificate")
	}
	mutual := c.ClientAuth == tls.RequireAndVerifyClientCert ||
		(c.ClientAuth == tls.RequireAnyClientCert && c.VerifyPeerCertificate != nil)
	if !mutual {
		return nil, fmt.Errorf("transport: Config.ServerTLS.ClientAuth is %v; tensor connections are mutual TLS only (RequireAndVerifyClientCert, or RequireAnyClientCert with VerifyPeerCertificate)", c.ClientAuth)
	}
	s := c.Clone()
	s.NextProtos = []string{ALPN}
	s.MinVersion = tls.VersionTLS13
	return s, nil
}

func prepareClientTLS(c *tls.Config) (*tls.Config, error) {
	if c == nil {
		return nil, errors.New("transport: Config.ClientTLS is required to dial (mutual TLS with the cluster certificates)")
	}
	if len(c.Certificates) == 0 && c.GetClientCertificate == nil {
		return nil, errors.New("transport: Config.ClientTLS has no client certificate; tensor connections are mutual TLS only")
	}
	if c.InsecureSkipVerify && c.VerifyPeerCertificate == nil && c.VerifyConnection == nil {
		return nil, errors.New("transport: Config.ClientTLS skips server verification without a VerifyPeerCertificate or VerifyConnection of its own")
	}
	s := c.Clone()
	s.NextProtos = []string{ALPN}
	s.MinVersion = tls.VersionTLS13
	return s, nil
}
