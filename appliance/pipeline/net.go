package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exo-nix/exo/netstack/multipath"
	"github.com/exo-nix/exo/netstack/probe"
	"github.com/exo-nix/exo/netstack/transport"
)

// NetConfig configures a node's tensor network.
type NetConfig struct {
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
	ep     *transport.Endpoint
	acc    *multipath.Acceptor
	prober *probe.Prober
	log    *slog.Logger
	models *streamListener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	handler func(transport.Conn, transport.FrameStream)
	conns   map[string]*dial
	peers   map[string]peerPath // by address: the probed path to that peer
}

type dial struct {
	done chan struct{}
	conn transport.Conn
	err  error
}

type peerPath struct {
	id, node, name string
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
	n := &Net{acc: multipath.NewAcceptor(), log: cfg.Logger, conns: map[string]*dial{}, peers: map[string]peerPath{}}
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
	n.models = newStreamListener(n.ep.Addr())
	if cfg.Listen != "" {
		n.wg.Add(1)
		go n.acceptLoop()
	}
	return n, nil
}

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
	for {
		n.mu.Lock()
		if n.ctx.Err() != nil {
			n.mu.Unlock()
			return nil, transport.ErrClosed
		}
		d := n.conns[addr]
		if d != nil {
			select {
			case <-d.done:
				if d.err == nil && d.conn.Err() == nil {
					n.mu.Unlock()
					return d.conn, nil
				}
				delete(n.conns, addr)
				d = nil
			default:
			}
		}
		if d == nil {
			d = &dial{done: make(chan struct{})}
			n.conns[addr] = d
			go n.dial(addr, d)
		}
		n.mu.Unlock()
		select {
		case <-d.done:
			if d.err != nil {
				n.mu.Lock()
				if n.conns[addr] == d {
					delete(n.conns, addr)
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

func (n *Net) dial(addr string, d *dial) {
	defer close(d.done)
	ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
	defer cancel()
	d.conn, d.err = n.ep.Dial(ctx, addr)
	if d.err != nil {
		d.err = fmt.Errorf("connect to %s: %w", addr, d.err)
		return
	}
	n.log.Debug("tensor connection up", "peer", addr, "transport", d.conn.Transport())
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

// Probe starts measuring the path to a peer (once per address; the prober drops it when the
// connection ends, and a later call measures the new one).
func (n *Net) Probe(ctx context.Context, node, name, addr string) {
	id := name + " via " + addr
	n.mu.Lock()
	p, ok := n.peers[addr]
	n.mu.Unlock()
	if ok {
		if _, live := n.prober.Estimate(p.id); live {
			return
		}
	}
	c, err := n.Conn(ctx, addr)
	if err != nil {
		n.log.Debug("probe: peer unreachable", "peer", name, "addr", addr, "err", err)
		return
	}
	n.mu.Lock()
	n.peers[addr] = peerPath{id: id, node: node, name: name}
	n.mu.Unlock()
	if _, err := n.prober.Add(ctx, probe.Path{ID: id, Peer: name, Conn: c}); err != nil {
		n.log.Debug("probe: first measurement failed", "peer", name, "addr", addr, "err", err)
	}
}

// Forget stops probing peers whose addresses are not in keep.
func (n *Net) Forget(keep []string) {
	n.mu.Lock()
	var drop []string
	for addr, p := range n.peers {
		if !slices.Contains(keep, addr) {
			drop = append(drop, p.id)
			delete(n.peers, addr)
		}
	}
	n.mu.Unlock()
	for _, id := range drop {
		n.prober.Remove(id)
	}
}

// Link is this node's tensor connection to one peer.
type Link struct {
	Node string `json:"node"`
	Name string `json:"name"`
	Addr string `json:"addr"`
	// Transport is what carries the connection now: quic, or tcp when UDP did not get through.
	Transport transport.Kind `json:"transport"`
	// Probe is the last measurement of the path (RTT, bandwidth), when there was one.
	Probe *probe.Estimate `json:"probe,omitempty"`
}

// Links lists the peers this node probes, with their transport and estimates.
func (n *Net) Links() []Link {
	n.mu.Lock()
	type entry struct {
		addr string
		p    peerPath
		conn transport.Conn
	}
	var list []entry
	for addr, p := range n.peers {
		e := entry{addr: addr, p: p}
		if d := n.conns[addr]; d != nil {
			select {
			case <-d.done:
				if d.err == nil && d.conn.Err() == nil {
					e.conn = d.conn
				}
			default:
			}
		}
		list = append(list, e)
	}
	n.mu.Unlock()
	out := make([]Link, 0, len(list))
	for _, e := range list {
		l := Link{Node: e.p.node, Name: e.p.name, Addr: e.addr}
		if e.conn != nil {
			l.Transport = e.conn.Transport()
		}
		if est, ok := n.prober.Estimate(e.p.id); ok {
			l.Probe = &est
			l.Transport = est.Transport
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Link) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		if a.Addr < b.Addr {
			return -1
		}
		return 0
	})
	return out
}

// Close stops accepting, ends the probes and closes every connection.
func (n *Net) Close() error {
	n.cancel()
	n.prober.Close()
	n.models.Close()
	err := n.ep.Close()
	n.wg.Wait()
	return err
}
