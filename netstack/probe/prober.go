package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/exo-nix/exo/netstack/transport"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Prober.
type Config struct {
	// Interval between background RTT probes of a path (default 5s).
	Interval time.Duration
	// BandwidthInterval between background bandwidth probes, which load the link for a moment
	// (default 10 minutes; negative: only when the path is added).
	BandwidthInterval time.Duration
	// Pings per RTT probe; the median counts (default 5).
	Pings     int
	Bandwidth BandwidthOptions
	// Registerer receives the path metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Path is one connection to a peer, over one local interface.
type Path struct {
	// ID names the path uniquely, e.g. "node-b via eth1".
	ID string
	// Peer is the peer's node name (a metric label).
	Peer string
	Conn transport.Conn
}

// Estimate is what is known about a path.
type Estimate struct {
	Path      string         `json:"path"`
	Peer      string         `json:"peer"`
	Transport transport.Kind `json:"transport"`
	// RTT is the median of the last ping probe.
	RTT time.Duration `json:"rtt_ns"`
	// Bandwidth in bytes per second from this node to the peer; 0 when not measured yet.
	Bandwidth   float64   `json:"bandwidth_bytes_per_second"`
	RTTAt       time.Time `json:"rtt_at"`
	BandwidthAt time.Time `json:"bandwidth_at"`
	// Err is the last probe's failure, empty after a success.
	Err string `json:"error,omitempty"`
}

// Prober keeps estimates for a set of paths.
type Prober struct {
	cfg     Config
	rtt     *prometheus.GaugeVec
	bw      *prometheus.GaugeVec
	errs    *prometheus.CounterVec
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	paths   map[string]*pathState
	metrics bool
}

type pathState struct {
	// probing serialises measurements: two on one session would interleave their messages.
	probing sync.Mutex
	path    Path
	est     Estimate
	sess    *Session
	cancel  context.CancelFunc
}

// New returns a Prober; its metrics go to cfg.Registerer.
func New(cfg Config) (*Prober, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.BandwidthInterval == 0 {
		cfg.BandwidthInterval = 10 * time.Minute
	}
	if cfg.Pings <= 0 {
		cfg.Pings = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	labels := []string{"peer", "path", "transport"}
	p := &Prober{
		cfg: cfg,
		rtt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exo_netstack_path_rtt_seconds", Help: "Median round-trip time of the last probe of a path to a peer.",
		}, labels),
		bw: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exo_netstack_path_bandwidth_bytes_per_second", Help: "Measured bandwidth from this node to a peer over a path.",
		}, labels),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exo_netstack_probe_errors_total", Help: "Failed probes of a path.",
		}, []string{"peer", "path"}),
		paths: map[string]*pathState{},
	}
	if cfg.Registerer != nil {
		var err error
		if p.rtt, err = register(cfg.Registerer, p.rtt); err != nil {
			return nil, err
		}
		if p.bw, err = register(cfg.Registerer, p.bw); err != nil {
			return nil, err
		}
		if p.errs, err = register(cfg.Registerer, p.errs); err != nil {
			return nil, err
		}
		p.metrics = true
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// register adopts an identical collector already registered (a second Prober on one registry).
func register[C prometheus.Collector](r prometheus.Registerer, c C) (C, error) {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("probe: register metrics: %w", err)
	}
	return c, nil
}

// Add measures the path's RTT and bandwidth now, then keeps probing it in the background until
// Remove, Close or the connection ends. An existing path of that id is replaced.
func (p *Prober) Add(ctx context.Context, path Path) (Estimate, error) {
	if path.ID == "" || path.Conn == nil {
		return Estimate{}, errors.New("probe: a path needs an ID and a connection")
	}
	p.Remove(path.ID)
	sess, err := Open(ctx, path.Conn)
	if err != nil {
		return Estimate{}, err
	}
	st := &pathState{path: path, sess: sess,
		est: Estimate{Path: path.ID, Peer: path.Peer, Transport: path.Conn.Transport()}}
	if err := p.measure(ctx, st, true); err != nil {
		sess.Close()
		return Estimate{}, fmt.Errorf("probe: first measurement of path %s: %w", path.ID, err)
	}
	pctx, cancel := context.WithCancel(p.ctx)
	st.cancel = cancel
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		cancel()
		sess.Close()
		return Estimate{}, errors.New("probe: prober closed")
	}
	p.paths[path.ID] = st
	est := st.est
	p.mu.Unlock()
	p.wg.Add(1)
	go p.loop(pctx, st)
	return est, nil
}

func (p *Prober) loop(ctx context.Context, st *pathState) {
	defer p.wg.Done()
	defer st.sess.Close()
	rttTick := time.NewTicker(p.cfg.Interval)
	defer rttTick.Stop()
	var bwTick <-chan time.Time
	if p.cfg.BandwidthInterval > 0 {
		t := time.NewTicker(p.cfg.BandwidthInterval)
		defer t.Stop()
		bwTick = t.C
	}
	for {
		bandwidth := false
		select {
		case <-ctx.Done():
			return
		case <-st.path.Conn.Done():
			p.Remove(st.path.ID)
			return
		case <-rttTick.C:
		case <-bwTick:
			bandwidth = true
		}
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := p.measure(mctx, st, bandwidth)
		cancel()
		if err != nil && ctx.Err() == nil {
			p.cfg.Logger.Debug("path probe failed", "path", st.path.ID, "err", err)
		}
	}
}

// measure probes RTT (and bandwidth) and publishes the result.
func (p *Prober) measure(ctx context.Context, st *pathState, bandwidth bool) error {
	st.probing.Lock()
	rtt, err := st.sess.RTT(ctx, p.cfg.Pings)
	var bw float64
	if err == nil && bandwidth {
		bw, err = st.sess.Bandwidth(ctx, p.cfg.Bandwidth)
	}
	st.probing.Unlock()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	// A path removed while this probe ran must not have its metrics recreated.
	published := p.metrics && p.paths[st.path.ID] == st
	e := &st.est
	e.Transport = st.path.Conn.Transport()
	if err != nil {
		e.Err = err.Error()
		if published {
			p.errs.WithLabelValues(e.Peer, e.Path).Inc()
		}
		return err
	}
	e.Err = ""
	e.RTT, e.RTTAt = rtt, now
	if bandwidth {
		e.Bandwidth, e.BandwidthAt = bw, now
	}
	if published {
		p.rtt.WithLabelValues(e.Peer, e.Path, string(e.Transport)).Set(rtt.Seconds())
		if e.Bandwidth > 0 {
			p.bw.WithLabelValues(e.Peer, e.Path, string(e.Transport)).Set(e.Bandwidth)
		}
	}
	return nil
}

// Measure probes a path now, bandwidth included, outside its schedule.
func (p *Prober) Measure(ctx context.Context, id string) (Estimate, error) {
	p.mu.Lock()
	st, ok := p.paths[id]
	p.mu.Unlock()
	if !ok {
		return Estimate{}, fmt.Errorf("%w %q", ErrUnknownPath, id)
	}
	err := p.measure(ctx, st, true)
	est, _ := p.Estimate(id)
	return est, err
}

// Estimate returns what is known about a path.
func (p *Prober) Estimate(id string) (Estimate, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.paths[id]
	if !ok {
		return Estimate{}, false
	}
	return st.est, true
}

// Estimates lists every path, ordered by peer and path id.
func (p *Prober) Estimates() []Estimate {
	p.mu.Lock()
	out := make([]Estimate, 0, len(p.paths))
	for _, st := range p.paths {
		out = append(out, st.est)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Estimate) int {
		if c := strings.Compare(a.Peer, b.Peer); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out
}

// Remove stops probing a path and drops its metrics.
func (p *Prober) Remove(id string) {
	p.mu.Lock()
	st, ok := p.paths[id]
	delete(p.paths, id)
	if ok && p.metrics {
		p.rtt.DeleteLabelValues(st.est.Peer, st.est.Path, string(st.est.Transport))
		p.bw.DeleteLabelValues(st.est.Peer, st.est.Path, string(st.est.Transport))
		p.errs.DeleteLabelValues(st.est.Peer, st.est.Path)
	}
	p.mu.Unlock()
	if ok && st.cancel != nil {
		st.cancel()
	}
}

// Close stops all background probing.
func (p *Prober) Close() {
	p.mu.Lock()
	ids := make([]string, 0, len(p.paths))
	for id := range p.paths {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	p.cancel()
	for _, id := range ids {
		p.Remove(id)
	}
	p.wg.Wait()
}
