package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exo-nix/exo/netstack/multipath"
	"github.com/exo-nix/exo/netstack/probe"
	"github.com/exo-nix/exo/netstack/transport"
)

// NetConfig configures a node's tensor network.
type NetConfig struct {
	// NodeID is this node's cluster id: a data stream to it stays in the process (OpenData).
	NodeID string
	// Listen is transport.addr; empty makes a node that only dials (no worker role).
	Listen string
	// ServerTLS and ClientTLS carry the cluster's certificates (pki.ServerTLS / ClientTLS).
	ServerTLS, ClientTLS *tls.Config
	// Mode is auto (QUIC, TCP when UDP does not get through), quic or tcp.
	Mode transport.Mode
	// Transport tunes the endpoint beyond TLS and Mode (timeouts, windows); zero for defaults.
	Transport transport.Config
	// Probe tunes the per-peer RTT and bandwidth probes; zero for defaults.
	Probe      probe.Config
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Net is a node's tensor endpoint: it accepts connections from peers (data streams to the stage
// host, model sharing, probes, multipath stripes) and keeps one connection per peer address for
// everything this node opens.
type Net struct {
	self   string
	ep     *transport.Endpoint
	acc    *multipath.Acceptor
	prober *probe.Prober
	log    *slog.Logger
	models *streamListener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	handler  func(transport.Conn, transport.FrameStream)
	locals   map[transport.Stream]struct{} // handler ends of in-process streams
	conns    map[string]*dial              // by connKey
	peers    map[string]*peerState         // by node id
	prefixes []netip.Prefix                // this node's usable addresses
	probing  map[string]bool               // path ids whose first measurement runs
	sent     map[string]uint64             // payload bytes of bundles, by path id
	sentVec  *prometheus.CounterVec
}

type dial struct {
	done chan struct{}
	conn transport.Conn
	err  error
}

// dialTimeout bounds one connection attempt (QUIC, then TCP after a fallback).
const dialTimeout = 10 * time.Second

// NewNet starts the endpoint (listening when cfg.Listen is set).
func NewNet(cfg NetConfig) (*Net, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tc := cfg.Transport
	tc.ServerTLS, tc.ClientTLS, tc.Mode, tc.Logger = cfg.ServerTLS, cfg.ClientTLS, cfg.Mode, cfg.Logger
	n := &Net{self: cfg.NodeID, acc: multipath.NewAcceptor(), log: cfg.Logger, conns: map[string]*dial{}, peers: map[string]*peerState{},
		probing: map[string]bool{}, sent: map[string]uint64{}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	var err error
	if cfg.Listen != "" {
		n.ep, err = transport.Listen(cfg.Listen, tc)
		if err != nil {
			return nil, fmt.Errorf("transport.addr %s: %w", cfg.Listen, err)
		}
	} else if n.ep, err = transport.NewDialer(tc); err != nil {
		return nil, err
	}
	pc := cfg.Probe
	pc.Registerer, pc.Logger = cfg.Registerer, cfg.Logger
	if pc.Bandwidth.Max == 0 {
		// The first measurement of every peer runs at start, when nodes are also loading
		// models: bound what it sends (a fast link is measured less precisely, not wrongly).
		pc.Bandwidth.Max = 16 << 20
	}
	if n.prober, err = probe.New(pc); err != nil {
		n.ep.Close()
		return nil, err
	}
	if n.sentVec, err = sentCounter(cfg.Registerer); err != nil {
		n.prober.Close()
		n.ep.Close()
		return nil, err
	}
	n.models = newStreamListener(n.ep.Addr())
	if cfg.Listen != "" {
		n.wg.Add(1)
		go n.acceptLoop()
	}
	return n, nil
}

// closing reports whether Close has begun.
func (n *Net) closing() bool { return n.ctx.Err() != nil }

// Addr is the address the endpoint listens on (or dials from).
func (n *Net) Addr() net.Addr { return n.ep.Addr() }

// Handle sets the function that receives data streams (and multipath bundles).
func (n *Net) Handle(h func(transport.Conn, transport.FrameStream)) {
	n.mu.Lock()
	n.handler = h
	n.mu.Unlock()
}

func (n *Net) acceptLoop() {
	defer n.wg.Done()
	for {
		c, err := n.ep.Accept(n.ctx)
		if err != nil {
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.serveConn(c)
		}()
	}
}

// serveConn dispatches the streams a peer opens on one connection.
func (n *Net) serveConn(c transport.Conn) {
	for {
		s, err := c.AcceptStream(n.ctx)
		if err != nil {
			return
		}
		switch s.Service() {
		case transport.ServiceProbe:
			go probe.Serve(s)
		case transport.ServiceStripe:
			go func() { _ = n.acc.Stripe(c, s) }()
		case transport.ServiceBundle:
			go func() {
				if b, err := n.acc.Bundle(c, s); err == nil {
					n.dispatch(c, b)
				}
			}()
		case transport.ServiceData:
			go n.dispatch(c, s)
		case ServiceModels:
			n.models.deliver(c, s)
		default:
			s.Cancel("unknown service " + s.Service().String())
		}
	}
}

func (n *Net) dispatch(c transport.Conn, s transport.FrameStream) {
	n.mu.Lock()
	h := n.handler
	n.mu.Unlock()
	if h == nil {
		s.Cancel("this node hosts no pipeline stages (no worker role)")
		return
	}
	h(c, s)
}

// Conn returns the connection to the endpoint at addr, dialling it on first use and again
// after it was lost. Concurrent callers share one dial.
func (n *Net) Conn(ctx context.Context, addr string) (transport.Conn, error) {
	return n.connFrom(ctx, netip.Addr{}, addr)
}

// connKey names a connection in Net.conns: the address alone for the kernel's choice of local
// address, local>addr for one bound to a local address (a path of a multipath peer).
func connKey(local netip.Addr, addr string) string {
	if !local.IsValid() {
		return addr
	}
	return local.String() + ">" + addr
}

// connFrom is Conn from a given local address (invalid: any).
func (n *Net) connFrom(ctx context.Context, local netip.Addr, addr string) (transport.Conn, error) {
	key := connKey(local, addr)
	for {
		n.mu.Lock()
		if n.ctx.Err() != nil {
			n.mu.Unlock()
			return nil, transport.ErrClosed
		}
		d := n.conns[key]
		if d != nil {
			select {
			case <-d.done:
				if d.err == nil && d.conn.Err() == nil {
					n.mu.Unlock()
					return d.conn, nil
				}
				delete(n.conns, key)
				d = nil
			default:
			}
		}
		if d == nil {
			d = &dial{done: make(chan struct{})}
			n.conns[key] = d
			go n.dial(local, addr, d)
		}
		n.mu.Unlock()
		select {
		case <-d.done:
			if d.err != nil {
				n.mu.Lock()
				if n.conns[key] == d {
					delete(n.conns, key)
				}
				n.mu.Unlock()
				return nil, d.err
			}
			if d.conn.Err() == nil {
				return d.conn, nil
			}
			// Lost between the dial and now: dial again.
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (n *Net) dial(local netip.Addr, addr string, d *dial) {
	defer close(d.done)
	ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
	defer cancel()
	d.conn, d.err = n.ep.DialFrom(ctx, local, addr)
	if d.err != nil {
		if local.IsValid() {
			d.err = fmt.Errorf("connect to %s from %s: %w", addr, local, d.err)
		} else {
			d.err = fmt.Errorf("connect to %s: %w", addr, d.err)
		}
		return
	}
	n.log.Debug("tensor connection up", "peer", addr, "local", local, "transport", d.conn.Transport())
}

// OpenStream opens a stream of svc to the peer at addr.
func (n *Net) OpenStream(ctx context.Context, addr string, svc transport.Service) (transport.Stream, error) {
	c, err := n.Conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	s, err := c.OpenStream(ctx, svc)
	if err != nil {
		var lost *transport.ConnLostError
		if errors.As(err, &lost) {
			// A connection that died idle is noticed here: dial once more.
			if c, err = n.Conn(ctx, addr); err == nil {
				return c.OpenStream(ctx, svc)
			}
		}
		return nil, err
	}
	return s, nil
}

// OpenData opens a data stream to the stage host of node at addr. A stream to this node itself
// (the API node driving its own stage) is an in-process pipe handed straight to the local
// handler: no encryption, no loopback packets. A bulk stream (activations) to a peer reachable
// over several paths is a multipath bundle: large frames are striped over the paths by their
// measured bandwidth, small ones go on the lowest-latency path.
func (n *Net) OpenData(ctx context.Context, node, addr string, bulk bool) (transport.FrameStream, error) {
	if node == "" || node != n.self {
		if bulk {
			if s := n.openBundle(ctx, node); s != nil {
				return s, nil
			}
		}
		return n.OpenStream(ctx, addr, transport.ServiceData)
	}
	mine, theirs := transport.Pipe(transport.ServiceData, 0)
	n.mu.Lock()
	h := n.handler
	if h == nil || n.ctx.Err() != nil {
		n.mu.Unlock()
		return n.OpenStream(ctx, addr, transport.ServiceData)
	}
	if n.locals == nil {
		n.locals = map[transport.Stream]struct{}{}
	}
	n.locals[theirs] = struct{}{}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		h(nil, theirs)
		n.mu.Lock()
		delete(n.locals, theirs)
		n.mu.Unlock()
	}()
	return mine, nil
}

// Close stops accepting, ends the probes and closes every connection.
func (n *Net) Close() error {
	n.mu.Lock()
	n.cancel()
	locals := make([]transport.Stream, 0, len(n.locals))
	for s := range n.locals {
		locals = append(locals, s)
	}
	n.mu.Unlock()
	// In-process streams have no connection to lose: end them as a closed connection would.
	for _, s := range locals {
		s.Cancel("the node's tensor transport closed")
	}
	n.prober.Close()
	n.models.Close()
	err := n.ep.Close()
	n.wg.Wait()
	return err
}
