// Package multipath uses several connections to one peer together, one per local interface
// (path). A bundle is one logical stream: its primary stream runs on the lowest-latency path and
// carries every frame header in order; a frame whose payload is large is striped, its bytes split
// over the paths in proportion to their measured bandwidth, each path's share going as raw bytes
// on that path's secondary stream. Small frames (decode steps) go whole on the primary.
//
// The receiving side hands ServiceBundle and ServiceStripe streams of every connection to one
// Acceptor, which pairs them by bundle id and peer certificate.
package multipath

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/exo-nix/exo/netstack/probe"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// Path is one connection to the peer.
type Path struct {
	// ID names the path for the Estimator (probe.Path.ID).
	ID   string
	Conn transport.Conn
}

// Estimator supplies measured RTT and bandwidth per path; *probe.Prober is one.
type Estimator interface {
	Estimate(pathID string) (probe.Estimate, bool)
}

// Config tunes striping.
type Config struct {
	// Estimator weighs the paths; without one (or without a bandwidth for every path) payloads
	// are split evenly and the primary is the path with the lowest transport RTT.
	Estimator Estimator
	// StripeThreshold: payloads of at least this many bytes are striped (default 256 KiB).
	StripeThreshold int
	// MinPart: a path's share smaller than this goes to the fastest path instead, because the
	// extra stream costs more than it saves (default 64 KiB).
	MinPart int
	// Sent, when set, is told the payload bytes each frame put on each path (sender side), for
	// per-path counters.
	Sent func(pathID string, bytes int)
}

func (c Config) withDefaults() Config {
	if c.StripeThreshold <= 0 {
		c.StripeThreshold = 256 << 10
	}
	if c.MinPart <= 0 {
		c.MinPart = 64 << 10
	}
	return c
}

// Conn is a set of paths to one peer.
type Conn struct {
	paths []Path
	cfg   Config
}

// New bundles connections to the same peer.
func New(paths []Path, cfg Config) (*Conn, error) {
	if len(paths) == 0 {
		return nil, errors.New("multipath: no paths")
	}
	if len(paths) > wire.MaxParts {
		return nil, fmt.Errorf("multipath: %d paths, at most %d", len(paths), wire.MaxParts)
	}
	return &Conn{paths: slices.Clone(paths), cfg: cfg.withDefaults()}, nil
}

// Spec says how to reach the peer over one path.
type Spec struct {
	ID     string
	Local  netip.Addr // the local interface's address the connection is bound to
	Remote string     // the peer's endpoint address reachable over that interface
}

// Dial opens one connection per path from ep; it fails (closing what it opened) when any path
// fails, so the caller can decide which paths to retry or leave out.
func Dial(ctx context.Context, ep *transport.Endpoint, specs []Spec, cfg Config) (*Conn, error) {
	var paths []Path
	for _, s := range specs {
		c, err := ep.DialFrom(ctx, s.Local, s.Remote)
		if err != nil {
			for _, p := range paths {
				_ = p.Conn.Close()
			}
			return nil, fmt.Errorf("multipath: path %s (%s → %s): %w", s.ID, s.Local, s.Remote, err)
		}
		paths = append(paths, Path{ID: s.ID, Conn: c})
	}
	return New(paths, cfg)
}

// Paths returns the bundled paths.
func (c *Conn) Paths() []Path { return slices.Clone(c.paths) }

// Close closes every path's connection.
func (c *Conn) Close() error {
	var errs []error
	for _, p := range c.paths {
		errs = append(errs, p.Conn.Close())
	}
	return errors.Join(errs...)
}

// live returns the paths whose connection is open, the primary (lowest RTT) first, with their
// striping weights.
func (c *Conn) live() ([]Path, []float64) {
	type cand struct {
		p   Path
		rtt time.Duration
		bw  float64
	}
	var cs []cand
	for _, p := range c.paths {
		select {
		case <-p.Conn.Done():
			continue
		default:
		}
		cd := cand{p: p, rtt: p.Conn.RTT()}
		if c.cfg.Estimator != nil {
			if e, ok := c.cfg.Estimator.Estimate(p.ID); ok {
				if e.RTT > 0 {
					cd.rtt = e.RTT
				}
				cd.bw = e.Bandwidth
			}
		}
		cs = append(cs, cd)
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return cmp.Compare(a.rtt, b.rtt) })
	paths := make([]Path, len(cs))
	weights := make([]float64, len(cs))
	known := true
	for i, cd := range cs {
		paths[i], weights[i] = cd.p, cd.bw
		known = known && cd.bw > 0
	}
	if !known {
		for i := range weights {
			weights[i] = 1
		}
	}
	return paths, weights
}

// split divides total bytes in proportion to weights; shares under minPart go to the heaviest
// path. The result adds up to total.
func split(total int, weights []float64, minPart int) []uint64 {
	parts := make([]uint64, len(weights))
	var sum float64
	heaviest := 0
	for i, w := range weights {
		sum += w
		if w > weights[heaviest] {
			heaviest = i
		}
	}
	if sum <= 0 {
		parts[0] = uint64(total)
		return parts
	}
	var assigned uint64
	for i, w := range weights {
		share := uint64(math.Floor(float64(total) * w / sum))
		if i != heaviest && share < uint64(minPart) {
			share = 0
		}
		parts[i] = share
		assigned += share
	}
	parts[heaviest] += uint64(total) - assigned
	return parts
}

type bundleID [16]byte

// Stream is one bundle; it implements transport.FrameStream.
type Stream struct {
	cfg   Config
	id    bundleID
	paths []Path // sender side: [0] is the primary's path
	// weights of the paths at open time.
	weights []float64

	wmu  sync.Mutex
	subs []transport.Stream // [0] primary; nil where not opened (sender) or not arrived (receiver)

	// receiver side
	recv   *bundleState
	rmu    sync.Mutex
	forget func()
	once   sync.Once
}

// OpenStream opens a bundle whose primary is the lowest-latency live path.
func (c *Conn) OpenStream(ctx context.Context) (*Stream, error) {
	paths, weights := c.live()
	if len(paths) == 0 {
		return nil, errors.New("multipath: every path to the peer is down")
	}
	s := &Stream{cfg: c.cfg, paths: paths, weights: weights, subs: make([]transport.Stream, len(paths))}
	if _, err := rand.Read(s.id[:]); err != nil {
		return nil, fmt.Errorf("multipath: bundle id: %w", err)
	}
	ps, err := paths[0].Conn.OpenStream(ctx, transport.ServiceBundle)
	if err != nil {
		return nil, fmt.Errorf("multipath: open primary on path %s: %w", paths[0].ID, err)
	}
	pre := append(s.id[:], byte(len(paths)))
	if _, err := ps.Write(pre); err != nil {
		ps.Cancel("bundle setup failed")
		return nil, fmt.Errorf("multipath: open primary on path %s: %w", paths[0].ID, err)
	}
	s.subs[0] = ps
	return s, nil
}

// PrimaryPath is the id of the path that carries headers and small frames.
func (s *Stream) PrimaryPath() string {
	if len(s.paths) == 0 {
		return ""
	}
	return s.paths[0].ID
}

func (s *Stream) openSub(ctx context.Context, i int) (transport.Stream, error) {
	if s.subs[i] != nil {
		return s.subs[i], nil
	}
	ss, err := s.paths[i].Conn.OpenStream(ctx, transport.ServiceStripe)
	if err != nil {
		return nil, fmt.Errorf("multipath: open stripe on path %s: %w", s.paths[i].ID, err)
	}
	pre := append(s.id[:], byte(i))
	if _, err := ss.Write(pre); err != nil {
		ss.Cancel("bundle setup failed")
		return nil, fmt.Errorf("multipath: open stripe on path %s: %w", s.paths[i].ID, err)
	}
	s.subs[i] = ss
	return ss, nil
}

// WriteFrame sends a frame, striping its payload over the paths when it is large. On the
// receiving side of a bundle it sends on the primary only.
func (s *Stream) WriteFrame(h *wire.Header, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	h.Parts = nil
	if s.recv != nil || len(s.subs) == 1 || len(payload) < s.cfg.StripeThreshold {
		return s.whole(h, payload)
	}
	// A secondary path that died since the bundle opened gets nothing; the frame still goes.
	weights := slices.Clone(s.weights)
	for i := 1; i < len(weights); i++ {
		select {
		case <-s.paths[i].Conn.Done():
			weights[i] = 0
		default:
		}
	}
	parts := split(len(payload), weights, s.cfg.MinPart)
	if parts[0] == uint64(len(payload)) {
		return s.whole(h, payload)
	}
	for i, n := range parts {
		if n > 0 {
			if _, err := s.openSub(context.Background(), i); err != nil {
				return err
			}
		}
	}
	h.Parts = parts
	defer func() { h.Parts = nil }()
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	off := parts[0]
	for i := 1; i < len(parts); i++ {
		if parts[i] == 0 {
			continue
		}
		chunk := payload[off : off+parts[i]]
		off += parts[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.subs[i].Write(chunk); err != nil {
				errs[i] = fmt.Errorf("multipath: %d bytes on path %s: %w", len(chunk), s.paths[i].ID, err)
			}
		}()
	}
	errs[0] = s.subs[0].WriteFrame(h, payload)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.cancelAll("multipath: striped write failed")
		return err
	}
	if s.cfg.Sent != nil {
		for i, n := range parts {
			if n > 0 {
				s.cfg.Sent(s.paths[i].ID, int(n))
			}
		}
	}
	return nil
}

// whole sends a frame unstriped on the primary.
func (s *Stream) whole(h *wire.Header, payload []byte) error {
	if err := s.subs[0].WriteFrame(h, payload); err != nil {
		return err
	}
	if s.cfg.Sent != nil && s.recv == nil {
		s.cfg.Sent(s.paths[0].ID, len(payload))
	}
	return nil
}

// ReadFrame reads the next frame, gathering a striped payload from all paths into buf.
func (s *Stream) ReadFrame(h *wire.Header, buf []byte) ([]byte, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	p, err := s.subs[0].ReadFrame(h, buf)
	if !errors.Is(err, wire.ErrStriped) {
		switch {
		case err == io.EOF:
			s.finish()
		case err != nil:
			s.cancelAll(err.Error())
		}
		return p, err
	}
	if s.recv == nil {
		return nil, errors.New("multipath: the receiving side of a bundle sent a striped frame")
	}
	payload := wire.Grow(buf, int(h.PayloadLen))
	errs := make([]error, len(h.Parts))
	var wg sync.WaitGroup
	var off uint64
	for i, n := range h.Parts {
		dst := payload[off : off+n]
		off += n
		if n == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub, err := s.recv.stripe(i)
			if err != nil {
				errs[i] = err
				return
			}
			if _, err := io.ReadFull(sub, dst); err != nil {
				errs[i] = fmt.Errorf("multipath: read %d bytes of part %d: %w", n, i, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.cancelAll("multipath: striped read failed")
		return nil, err
	}
	return payload, nil
}

// CloseWrite ends the bundle's frames on every stream it opened.
func (s *Stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var errs []error
	for i, sub := range s.subs {
		if sub == nil {
			continue
		}
		errs = append(errs, sub.CloseWrite())
		if i > 0 && s.recv == nil {
			// Nothing comes back on a stripe but the receiver's end of stream; reading it lets
			// the transport free the stream.
			go func() { _, _ = io.Copy(io.Discard, sub) }()
		}
	}
	return errors.Join(errs...)
}

// Cancel abandons the bundle on every path.
func (s *Stream) Cancel(reason string) { s.cancelAll(reason) }

func (s *Stream) cancelAll(reason string) {
	if s.recv != nil {
		s.recv.cancel(reason)
	} else {
		for _, sub := range s.subs {
			if sub != nil {
				sub.Cancel(reason)
			}
		}
	}
	s.unregister()
}

// finish runs on the receiving side when the sender closed the bundle: the stripes are done in
// both directions, the primary stays open for frames going back.
func (s *Stream) finish() {
	if s.recv != nil {
		s.recv.mu.Lock()
		for i, sub := range s.recv.subs {
			if i > 0 && sub != nil {
				_ = sub.CloseWrite()
			}
		}
		s.recv.mu.Unlock()
	}
	s.unregister()
}

func (s *Stream) unregister() {
	s.once.Do(func() {
		if s.forget != nil {
			s.forget()
		}
	})
}

var _ transport.FrameStream = (*Stream)(nil)

// StripeWait bounds how long a reader waits for a path's stripe stream to arrive.
const StripeWait = 10 * time.Second

// Acceptor pairs the streams of incoming bundles.
type Acceptor struct {
	mu      sync.Mutex
	bundles map[bundleID]*bundleState
}

// NewAcceptor returns an empty Acceptor; one serves all connections of an endpoint.
func NewAcceptor() *Acceptor { return &Acceptor{bundles: map[bundleID]*bundleState{}} }

type bundleState struct {
	peer    [32]byte
	mu      sync.Mutex
	subs    []transport.Stream
	arrived []chan struct{}
	done    chan struct{}
	err     error
	timer   *time.Timer
}

func peerKey(c transport.Conn) ([32]byte, error) {
	certs := c.PeerCertificates()
	if len(certs) == 0 {
		return [32]byte{}, errors.New("multipath: connection has no peer certificate")
	}
	return sha256.Sum256(certs[0].Raw), nil
}

func (a *Acceptor) state(id bundleID, peer [32]byte, n int) (*bundleState, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.bundles[id]
	if !ok {
		b = &bundleState{peer: peer, done: make(chan struct{})}
		a.bundles[id] = b
		// A bundle whose primary never shows (or whose reader never finishes) is dropped.
		b.timer = time.AfterFunc(StripeWait, func() {
			b.mu.Lock()
			primary := len(b.subs) > 0 && b.subs[0] != nil
			b.mu.Unlock()
			if !primary {
				a.drop(id, errors.New("multipath: primary stream never arrived"))
			}
		})
	}
	if b.peer != peer {
		return nil, errors.New("multipath: stream claims a bundle of another peer")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > len(b.subs) {
		b.subs = append(b.subs, make([]transport.Stream, n-len(b.subs))...)
		for len(b.arrived) < n {
			b.arrived = append(b.arrived, make(chan struct{}))
		}
	}
	return b, nil
}

func (a *Acceptor) drop(id bundleID, err error) {
	a.mu.Lock()
	b, ok := a.bundles[id]
	delete(a.bundles, id)
	a.mu.Unlock()
	if ok {
		b.cancel(err.Error())
	}
}

func (a *Acceptor) forget(id bundleID) {
	a.mu.Lock()
	b, ok := a.bundles[id]
	delete(a.bundles, id)
	a.mu.Unlock()
	if ok && b.timer != nil {
		b.timer.Stop()
	}
}

func readPreamble(s transport.Stream) (bundleID, byte, error) {
	var pre [17]byte
	_ = s.SetReadDeadline(time.Now().Add(StripeWait))
	_, err := io.ReadFull(s, pre[:])
	_ = s.SetReadDeadline(time.Time{})
	return bundleID(pre[:16]), pre[16], err
}

// Bundle takes a ServiceBundle stream and returns the bundle's receiving end.
func (a *Acceptor) Bundle(conn transport.Conn, s transport.Stream) (*Stream, error) {
	id, n, err := readPreamble(s)
	if err != nil {
		s.Cancel("multipath: bad bundle preamble")
		return nil, fmt.Errorf("multipath: bundle preamble from %s: %w", conn.RemoteAddr(), err)
	}
	if n == 0 || int(n) > wire.MaxParts {
		s.Cancel("multipath: bad path count")
		return nil, fmt.Errorf("multipath: bundle from %s claims %d paths", conn.RemoteAddr(), n)
	}
	peer, err := peerKey(conn)
	if err != nil {
		s.Cancel(err.Error())
		return nil, err
	}
	b, err := a.state(id, peer, int(n))
	if err != nil {
		s.Cancel(err.Error())
		return nil, err
	}
	if err := b.attach(0, s); err != nil {
		return nil, err
	}
	st := &Stream{recv: b, subs: []transport.Stream{s}, forget: func() { a.forget(id) }}
	return st, nil
}

// Stripe takes a ServiceStripe stream and attaches it to its bundle.
func (a *Acceptor) Stripe(conn transport.Conn, s transport.Stream) error {
	id, idx, err := readPreamble(s)
	if err != nil {
		s.Cancel("multipath: bad stripe preamble")
		return fmt.Errorf("multipath: stripe preamble from %s: %w", conn.RemoteAddr(), err)
	}
	if idx == 0 || int(idx) >= wire.MaxParts {
		s.Cancel("multipath: bad stripe index")
		return fmt.Errorf("multipath: stripe from %s has index %d", conn.RemoteAddr(), idx)
	}
	peer, err := peerKey(conn)
	if err != nil {
		s.Cancel(err.Error())
		return err
	}
	b, err := a.state(id, peer, int(idx)+1)
	if err != nil {
		s.Cancel(err.Error())
		return err
	}
	return b.attach(int(idx), s)
}

func (b *bundleState) attach(i int, s transport.Stream) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		s.Cancel(b.err.Error())
		return b.err
	}
	if b.subs[i] != nil {
		s.Cancel("multipath: duplicate stripe")
		return fmt.Errorf("multipath: second stream for part %d of a bundle", i)
	}
	b.subs[i] = s
	close(b.arrived[i])
	return nil
}

func (b *bundleState) stripe(i int) (transport.Stream, error) {
	b.mu.Lock()
	if i >= len(b.arrived) {
		b.mu.Unlock()
		return nil, fmt.Errorf("multipath: frame names part %d, the bundle has %d paths", i, len(b.arrived))
	}
	ch := b.arrived[i]
	b.mu.Unlock()
	select {
	case <-ch:
	case <-b.done:
		return nil, b.err
	case <-time.After(StripeWait):
		return nil, fmt.Errorf("multipath: stripe stream %d did not arrive within %v", i, StripeWait)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subs[i], nil
}

func (b *bundleState) cancel(reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timer != nil {
		b.timer.Stop()
	}
	if b.err == nil {
		b.err = errors.New(reason)
		close(b.done)
	}
	for _, s := range b.subs {
		if s != nil {
			s.Cancel(reason)
		}
	}
}
