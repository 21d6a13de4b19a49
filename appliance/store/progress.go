package store

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pull states, in Progress.State.
const (
	StateQueued      = "queued"
	StateResolving   = "resolving"
	StateDownloading = "downloading"
	StateVerifying   = "verifying"
	StateDone        = "done"
	StateFailed      = "failed"
	StateCancelled   = "cancelled"
)

// EventPull is the event type of pull progress on /api/v1/events.
const EventPull = "model.pull"

// Progress is the state of one pull: what the CLI's progress bar draws and what the dashboard
// receives as EventPull events.
type Progress struct {
	// Key identifies the pull: the canonical reference, plus the layer range of a stage fetch.
	Key string `json:"key"`
	// ID is the model id the pull produces, once known.
	ID     string `json:"id,omitempty"`
	Source string `json:"source"`
	// From says where the bytes come from: "hub", "url", or "peer" (with the peer count).
	From  string `json:"from,omitempty"`
	Peers int    `json:"peers,omitempty"`
	File  string `json:"file,omitempty"`
	Dir   string `json:"dir,omitempty"`
	Stage *Stage `json:"stage,omitempty"`
	State string `json:"state"`
	// Total and Done are bytes of the file being written; Resumed counts bytes an earlier,
	// interrupted attempt had already fetched.
	Total       int64     `json:"total"`
	Done        int64     `json:"done"`
	Resumed     int64     `json:"resumed,omitempty"`
	BytesPerSec float64   `json:"bytes_per_sec"`
	ETASeconds  float64   `json:"eta_seconds"`
	Verified    bool      `json:"verified"`
	Note        string    `json:"note,omitempty"`
	Error       string    `json:"error,omitempty"`
	Started     time.Time `json:"started"`
	Updated     time.Time `json:"updated"`
}

// Finished reports a final state.
func (p Progress) Finished() bool {
	return p.State == StateDone || p.State == StateFailed || p.State == StateCancelled
}

// speedWindow is how far back the transfer rate looks: long enough to smooth bursts of
// parallel ranges, short enough to follow a changing link.
const speedWindow = 5 * time.Second

type sample struct {
	at   time.Time
	done int64
}

// tracker owns one pull's Progress; listeners get a copy at most once per interval while bytes
// flow and at once on every state change. Listeners are called one at a time, never
// concurrently, with snapshots in order; they must not block.
type tracker struct {
	notifyMu  sync.Mutex
	mu        sync.Mutex
	p         Progress
	samples   []sample
	listeners []func(Progress)
	interval  time.Duration
	lastSent  time.Time
	metrics   *Metrics
	remaining int64 // what this pull contributes to the remaining-bytes gauge
}

func newTracker(key, source string, interval time.Duration, m *Metrics) *tracker {
	now := time.Now()
	return &tracker{p: Progress{Key: key, Source: source, State: StateQueued, Started: now, Updated: now}, interval: interval, metrics: m}
}

func (t *tracker) listen(f func(Progress)) {
	if f == nil {
		return
	}
	t.mu.Lock()
	t.listeners = append(t.listeners, f)
	t.mu.Unlock()
}

func (t *tracker) snapshot() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.p
}

// update changes the progress under the lock and notifies listeners at once.
func (t *tracker) update(f func(p *Progress)) {
	t.mu.Lock()
	f(&t.p)
	t.refresh(time.Now())
	t.lastSent = time.Now()
	t.mu.Unlock()
	t.notify()
}

// notify hands the latest snapshot to the listeners, serialised so that a listener never sees
// an older snapshot after a newer one.
func (t *tracker) notify() {
	t.notifyMu.Lock()
	defer t.notifyMu.Unlock()
	t.mu.Lock()
	p, ls := t.p, t.listeners
	t.mu.Unlock()
	for _, l := range ls {
		l(p)
	}
}

// start begins the transfer phase of a file of total bytes of which done are written, resumed
// of them by an earlier attempt.
func (t *tracker) start(total, done, resumed int64) {
	t.mu.Lock()
	t.samples = nil
	t.mu.Unlock()
	t.update(func(p *Progress) {
		p.State, p.Total, p.Done, p.Resumed, p.BytesPerSec = StateDownloading, total, done, resumed, 0
	})
}

// add records n more bytes written to the file.
func (t *tracker) add(n int64) {
	t.mu.Lock()
	t.p.Done += n
	now := time.Now()
	if now.Sub(t.lastSent) < t.interval {
		t.mu.Unlock()
		return
	}
	t.refresh(now)
	t.lastSent = now
	t.mu.Unlock()
	t.notify()
}

// refresh recomputes rate, ETA and the remaining-bytes gauge; called with the lock held.
func (t *tracker) refresh(now time.Time) {
	t.p.Updated = now
	t.samples = append(t.samples, sample{now, t.p.Done})
	for len(t.samples) > 2 && now.Sub(t.samples[1].at) > speedWindow {
		t.samples = t.samples[1:]
	}
	if first := t.samples[0]; now.Sub(first.at) > 0 && t.p.State == StateDownloading {
		t.p.BytesPerSec = float64(t.p.Done-first.done) / now.Sub(first.at).Seconds()
	}
	if t.p.BytesPerSec > 0 && t.p.Total > t.p.Done {
		t.p.ETASeconds = float64(t.p.Total-t.p.Done) / t.p.BytesPerSec
	} else {
		t.p.ETASeconds = 0
	}
	rem := int64(0)
	if !t.p.Finished() && t.p.Total > t.p.Done {
		rem = t.p.Total - t.p.Done
	}
	if t.metrics != nil && rem != t.remaining {
		t.metrics.remaining.Add(float64(rem - t.remaining))
	}
	t.remaining = rem
}

// Metrics are the store's Prometheus series.
type Metrics struct {
	bytes          *prometheus.CounterVec
	pulls          *prometheus.CounterVec
	active         prometheus.Gauge
	remaining      prometheus.Gauge
	verifyFailures prometheus.Counter
	retries        prometheus.Counter
	served         prometheus.Counter
}

// NewMetrics registers the store's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := newMetrics()
	for _, c := range []prometheus.Collector{m.bytes, m.pulls, m.active, m.remaining, m.verifyFailures, m.retries, m.served} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// newMetrics makes the series without registering them (a store without a registry).
func newMetrics() *Metrics {
	return &Metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exo_model_pull_bytes_total", Help: "Model bytes received by pulls, by kind of source (hub, url, peer).",
		}, []string{"source"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exo_model_pulls_total", Help: "Finished model pulls by result (done, failed, cancelled).",
		}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "exo_model_pulls_active", Help: "Model pulls in progress.",
		}),
		remaining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "exo_model_pull_remaining_bytes", Help: "Bytes the pulls in progress still have to fetch.",
		}),
		verifyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exo_model_pull_verify_failures_total", Help: "Downloads or tensors whose SHA-256 did not match and were fetched again.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exo_model_pull_retries_total", Help: "Range requests retried after a transient failure.",
		}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exo_model_peer_served_bytes_total", Help: "Model bytes this node served to cluster peers.",
		}),
	}
}
