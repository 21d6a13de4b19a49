package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exo-nix/exo/netstack/iface"
	"github.com/exo-nix/exo/netstack/multipath"
	"github.com/exo-nix/exo/netstack/probe"
	"github.com/exo-nix/exo/netstack/transport"
)

// Peer is a live peer node as membership shows it: the transport addresses it advertises, its
// primary (transport.addr as advertised) first.
type Peer struct {
	Node, Name string
	Addrs      []string
}

// path is one way to a peer: a connection to remote from a local address (invalid for the
// primary, whose local address the kernel chooses).
type path struct {
	id     string
	local  netip.Addr
	remote string
}

// peerState is what the Net knows of a peer.
type peerState struct {
	node, name string
	primary    path
	// multi are the paths of a peer reachable over several local interfaces, one per local
	// address; empty otherwise.
	multi []path
	// probed are the paths measured: the primary, or the paths of a multipath peer (the one to
	// the primary address standing for it; probing both would halve each one's figure).
	probed []path
	// estimate is the probed path whose figures describe the peer.
	estimate string
}

// choosePaths pairs each of a peer's addresses with the local address on the same subnet.
// A peer has several paths when at least two of its addresses sit on subnets of different
// local addresses: each path is then bound to its local address, so that its traffic leaves by
// that interface. Addresses only reachable through a router give no path: which interface
// they leave by is the routing table's choice, not ours.
func choosePaths(local []netip.Prefix, addrs []string) [][2]netip.AddrPort {
	var out [][2]netip.AddrPort
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			continue
		}
		ip := ap.Addr().Unmap()
		for _, p := range local {
			if p.Addr().Is4() != ip.Is4() || !p.Masked().Contains(ip) || p.Addr() == ip {
				continue
			}
			if !slices.ContainsFunc(out, func(x [2]netip.AddrPort) bool { return x[0].Addr() == p.Addr() }) {
				out = append(out, [2]netip.AddrPort{netip.AddrPortFrom(p.Addr(), 0), netip.AddrPortFrom(ip, ap.Port())})
			}
			break
		}
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// SetPeers follows membership: every live peer's paths get probed (in the background; the
// first measurement of a new path runs at once), and peers and paths that went away are
// forgotten.
func (n *Net) SetPeers(ctx context.Context, peers []Peer) {
	if prefixes, err := iface.UsablePrefixes(); err == nil {
		n.mu.Lock()
		n.prefixes = prefixes
		n.mu.Unlock()
	}
	n.mu.Lock()
	keep := map[string]bool{}
	var start []path
	var names []string
	var drop []string
	for _, p := range peers {
		if len(p.Addrs) == 0 || p.Node == n.self {
			continue
		}
		st := &peerState{node: p.Node, name: p.Name, primary: path{id: p.Name + " via " + p.Addrs[0], remote: p.Addrs[0]}}
		for _, pp := range choosePaths(n.prefixes, p.Addrs) {
			local, remote := pp[0].Addr(), pp[1].String()
			st.multi = append(st.multi, path{id: fmt.Sprintf("%s via %s>%s", p.Name, local, remote), local: local, remote: remote})
		}
		st.probed, st.estimate = []path{st.primary}, st.primary.id
		if len(st.multi) > 0 {
			st.probed, st.estimate = st.multi, st.multi[0].id
			for _, pa := range st.multi {
				if pa.remote == st.primary.remote {
					st.estimate = pa.id
				}
			}
		}
		n.peers[p.Node] = st
		for _, pa := range st.probed {
			keep[pa.id] = true
			if _, live := n.prober.Estimate(pa.id); !live && !n.probing[pa.id] {
				n.probing[pa.id] = true
				start = append(start, pa)
				names = append(names, p.Name)
			}
		}
	}
	live := map[string]bool{}
	for _, p := range peers {
		live[p.Node] = true
	}
	for node, st := range n.peers {
		if !live[node] {
			delete(n.peers, node)
			for _, pa := range st.probed {
				drop = append(drop, pa.id)
			}
		}
	}
	n.mu.Unlock()
	for _, e := range n.prober.Estimates() {
		if !keep[e.Path] && !slices.Contains(drop, e.Path) {
			drop = append(drop, e.Path)
		}
	}
	for _, id := range drop {
		n.prober.Remove(id)
	}
	for i, pa := range start {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.probe(ctx, names[i], pa)
			n.mu.Lock()
			delete(n.probing, pa.id)
			n.mu.Unlock()
		}()
	}
}

// probe measures a path and keeps probing it in the background (until its connection ends; the
// next SetPeers measures the new one).
func (n *Net) probe(ctx context.Context, name string, pa path) {
	c, err := n.connFrom(ctx, pa.local, pa.remote)
	if err != nil {
		n.log.Debug("probe: peer unreachable", "peer", name, "path", pa.id, "err", err)
		return
	}
	if _, err := n.prober.Add(ctx, probe.Path{ID: pa.id, Peer: name, Conn: c}); err != nil {
		n.log.Debug("probe: first measurement failed", "peer", name, "path", pa.id, "err", err)
	}
}

// openBundle opens a multipath bundle to a peer with several paths; nil when it has fewer than
// two working ones (the caller opens a plain stream).
func (n *Net) openBundle(ctx context.Context, node string) transport.FrameStream {
	n.mu.Lock()
	st := n.peers[node]
	n.mu.Unlock()
	if st == nil || len(st.multi) < 2 {
		return nil
	}
	var paths []multipath.Path
	for _, pa := range st.multi {
		c, err := n.connFrom(ctx, pa.local, pa.remote)
		if err != nil {
			n.log.Debug("multipath: path unavailable", "peer", st.name, "path", pa.id, "err", err)
			continue
		}
		paths = append(paths, multipath.Path{ID: pa.id, Conn: c})
	}
	if len(paths) < 2 {
		return nil
	}
	mc, err := multipath.New(paths, multipath.Config{Estimator: n.prober, Sent: func(id string, bytes int) { n.countSent(st.name, id, bytes) }})
	if err != nil {
		return nil
	}
	s, err := mc.OpenStream(ctx)
	if err != nil {
		n.log.Debug("multipath: bundle failed, using one path", "peer", st.name, "err", err)
		return nil
	}
	return s
}

func (n *Net) countSent(peer, id string, bytes int) {
	n.mu.Lock()
	n.sent[id] += uint64(bytes)
	n.mu.Unlock()
	n.sentVec.WithLabelValues(peer, id).Add(float64(bytes))
}

// sentCounter registers the per-path byte counter (adopting one a Net of this process already
// registered).
func sentCounter(r prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "exo_netstack_path_sent_bytes_total",
		Help: "Payload bytes this node sent to a peer over each path of multipath bundles (activations between pipeline stages).",
	}, []string{"peer", "path"})
	if r == nil {
		return c, nil
	}
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("pipeline: register path metrics: %w", err)
	}
	return c, nil
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
	// Paths are the peer's paths when it is reachable over several local interfaces: bulk
	// transfers (activations) are striped over them.
	Paths []PathLink `json:"paths,omitempty"`
}

// PathLink is one path of a multipath peer.
type PathLink struct {
	ID        string          `json:"id"`
	Local     string          `json:"local"`
	Remote    string          `json:"remote"`
	Transport transport.Kind  `json:"transport,omitempty"`
	Probe     *probe.Estimate `json:"probe,omitempty"`
	// SentBytes are the payload bytes of bundles this node sent over the path.
	SentBytes uint64 `json:"sent_bytes"`
}

// Bandwidth is what the link carries in bytes per second: the sum over its paths when it has
// several (striping uses them all), else its probe's figure; 0 when not measured.
func (l *Link) Bandwidth() float64 {
	var sum float64
	for _, p := range l.Paths {
		if p.Probe != nil {
			sum += p.Probe.Bandwidth
		}
	}
	if sum > 0 {
		return sum
	}
	if l.Probe != nil {
		return l.Probe.Bandwidth
	}
	return 0
}

// Links lists the peers this node follows, with their transport, estimates and paths.
func (n *Net) Links() []Link {
	n.mu.Lock()
	type entry struct {
		st   peerState
		conn transport.Conn
		sent []uint64
	}
	var list []entry
	for _, st := range n.peers {
		e := entry{st: *st}
		if d := n.conns[st.primary.remote]; d != nil {
			select {
			case <-d.done:
				if d.err == nil && d.conn.Err() == nil {
					e.conn = d.conn
				}
			default:
			}
		}
		for _, pa := range st.multi {
			e.sent = append(e.sent, n.sent[pa.id])
		}
		list = append(list, e)
	}
	n.mu.Unlock()
	out := make([]Link, 0, len(list))
	for _, e := range list {
		l := Link{Node: e.st.node, Name: e.st.name, Addr: e.st.primary.remote}
		if e.conn != nil {
			l.Transport = e.conn.Transport()
		}
		if est, ok := n.prober.Estimate(e.st.estimate); ok {
			l.Probe = &est
			l.Transport = est.Transport
		}
		for i, pa := range e.st.multi {
			pl := PathLink{ID: pa.id, Local: pa.local.String(), Remote: pa.remote, SentBytes: e.sent[i]}
			if est, ok := n.prober.Estimate(pa.id); ok {
				pl.Probe = &est
				pl.Transport = est.Transport
			}
			l.Paths = append(l.Paths, pl)
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Link) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Addr, b.Addr)) })
	return out
}
