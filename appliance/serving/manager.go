// Package serving keeps models loaded on this node and admits generation requests to them:
// a model loads on its first request, requests beyond the model's parallel slots wait in a
// bounded queue, and a model nobody used for a while is unloaded. The requests holding a
// model's slots decode together: one scheduler per loaded model runs them as one continuous
// batch (every step is one pass over the weights for all of them).
package serving

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/chat"
	"github.com/exo-nix/exo/appliance/engine/kernels"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/scheduler"
	"github.com/exo-nix/exo/appliance/engine/tokenizer"
	"github.com/exo-nix/exo/appliance/store"
)

// Errors callers map to HTTP statuses.
var (
	ErrQueueFull  = errors.New("request queue full")
	ErrNoMemory   = errors.New("not enough memory")
	ErrNotFound   = store.ErrNotFound
	ErrLoadFailed = errors.New("model failed to load")
	// ErrUnavailable: the model's instance cannot serve right now (a node of its pipeline is
	// gone, its stages are not reachable).
	ErrUnavailable = errors.New("model instance unavailable")
)

// Options configure a Manager.
type Options struct {
	Catalog *store.Catalog
	// Slots is how many generations of one model run at once, decoding in one batch
	// (default DefaultSlots).
	Slots int
	// MaxQueue is how many requests may wait for a slot per model.
	MaxQueue int
	// IdleUnload frees a model after this long without requests; 0 keeps models loaded.
	IdleUnload time.Duration
	// Compute and KV cache type of loaded models.
	Engine model.Options
	// MemAvailable reports available memory in bytes; nil reads /proc/meminfo.
	MemAvailable func() (int64, error)
	// Publish receives model state changes (for /api/v1/events).
	Publish func(typ string, data any)
	Logger  *slog.Logger
	Metrics *Metrics
}

// DefaultSlots is the default batch size. A CPU reads the weights once per step whatever the
// batch, so up to here more sequences cost little more per step; beyond it steps turn
// compute-bound and every stream slows down.
const DefaultSlots = 16

// State of a model on this node.
type State struct {
	ID       string    `json:"id"`
	Status   string    `json:"status"` // loading, loaded, unloaded, failed
	Active   int       `json:"active"`
	Waiting  int       `json:"waiting"`
	LastUsed time.Time `json:"last_used"`
	Error    string    `json:"error,omitempty"`
}

// Manager owns the loaded models.
type Manager struct {
	opt Options

	mu     sync.Mutex
	models map[string]*entry
	closed bool
	done   chan struct{}
}

type entry struct {
	id       string
	ready    chan struct{} // closed when loading ends
	model    *model.Model
	sched    *scheduler.Scheduler // runs the leases' generations as one batch
	err      error
	slots    chan struct{}
	waiting  int
	active   int
	lastUsed time.Time
}

// New starts a manager (and its idle reaper when IdleUnload > 0).
func New(opt Options) *Manager {
	if opt.Slots <= 0 {
		opt.Slots = DefaultSlots
	}
	if opt.MaxQueue <= 0 {
		opt.MaxQueue = 256
	}
	if opt.MemAvailable == nil {
		opt.MemAvailable = memAvailable
	}
	if opt.Publish == nil {
		opt.Publish = func(string, any) {}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Metrics == nil {
		opt.Metrics = NewMetrics(nil)
	}
	m := &Manager{opt: opt, models: map[string]*entry{}, done: make(chan struct{})}
	if opt.IdleUnload > 0 {
		go m.reap()
	}
	return m
}

// Catalog is the model catalog the manager loads from.
func (m *Manager) Catalog() *store.Catalog { return m.opt.Catalog }

// Generator is one admitted request's hold on a model that can generate: a model loaded on
// this node (*Lease) or a pipeline whose stages run on other nodes. The API answers both the
// same way. Release it when done.
type Generator interface {
	Tokenizer() *tokenizer.Tokenizer
	// Template is the model's chat template, nil when it has none.
	Template() *chat.Template
	// ContextLength is the longest sequence (prompt and completion) a request may use.
	ContextLength() int
	Generate(ctx context.Context, req model.GenerateRequest) (*model.Generation, error)
	Release()
}

var _ Generator = (*Lease)(nil)

// Lease is one admitted request's hold on a loaded model. Release it when done.
type Lease struct {
	Model *model.Model
	ID    string
	m     *Manager
	e     *entry
	once  sync.Once
}

// Tokenizer is the model's tokenizer.
func (l *Lease) Tokenizer() *tokenizer.Tokenizer { return l.Model.Tokenizer }

// Template is the model's chat template (nil when the file has none).
func (l *Lease) Template() *chat.Template { return l.Model.Template }

// ContextLength is the model's training context.
func (l *Lease) ContextLength() int { return l.Model.Config.ContextLength }

// Generate runs the request in the model's batch. Its callbacks run on the caller's goroutine,
// never on the batch's, so a slow consumer delays only itself; an error from a callback or the
// end of ctx takes the sequence out of the batch at the next step.
func (l *Lease) Generate(ctx context.Context, req model.GenerateRequest) (*model.Generation, error) {
	return generate(ctx, l.e.sched, l.Model.Tokenizer, req)
}

// Release frees the slot.
func (l *Lease) Release() {
	l.once.Do(func() {
		<-l.e.slots
		l.m.mu.Lock()
		l.e.active--
		l.e.lastUsed = time.Now()
		l.m.mu.Unlock()
		l.m.opt.Metrics.active.WithLabelValues(l.ID).Dec()
	})
}

// Acquire loads the model if needed and waits for a free slot. It fails at once with
// ErrQueueFull when MaxQueue requests already wait, and with ctx's error when the caller gives up.
func (m *Manager) Acquire(ctx context.Context, id string) (*Lease, error) {
	info, err := m.opt.Catalog.Get(id)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errors.New("serving: shutting down")
	}
	e := m.models[id]
	if e == nil || (e.err != nil && isDone(e.ready)) {
		e = &entry{id: id, ready: make(chan struct{}), slots: make(chan struct{}, m.opt.Slots)}
		m.models[id] = e
		go m.load(e, info)
	}
	if e.waiting >= m.opt.MaxQueue {
		m.mu.Unlock()
		m.opt.Metrics.rejected.WithLabelValues(id).Inc()
		return nil, fmt.Errorf("%w: %d requests already wait for %s", ErrQueueFull, m.opt.MaxQueue, id)
	}
	e.waiting++
	m.mu.Unlock()
	m.opt.Metrics.waiting.WithLabelValues(id).Inc()
	defer func() {
		m.mu.Lock()
		e.waiting--
		m.mu.Unlock()
		m.opt.Metrics.waiting.WithLabelValues(id).Dec()
	}()

	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	m.mu.Lock()
	e.active++
	e.lastUsed = time.Now()
	m.mu.Unlock()
	m.opt.Metrics.active.WithLabelValues(id).Inc()
	return &Lease{Model: e.model, ID: id, m: m, e: e}, nil
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// load maps the model after checking that it fits in memory. Its weights are memory-mapped,
// so "fits" means the file can stay resident next to what the machine already uses.
func (m *Manager) load(e *entry, info store.Model) {
	start := time.Now()
	m.opt.Publish("model", State{ID: e.id, Status: "loading"})
	defer close(e.ready)
	if avail, err := m.opt.MemAvailable(); err == nil && info.Size > avail {
		e.err = fmt.Errorf("%w to load %s: it needs %d bytes, %d bytes are available", ErrNoMemory, e.id, info.Size, avail)
	} else {
		mdl, err := model.Open(info.Path, m.opt.Engine)
		if err == nil {
			// Leases hold the slots, so at most Slots requests are ever submitted at once.
			e.sched, err = scheduler.New(scheduler.Config{
				Stage: mdl.Stage, IsEOG: mdl.Tokenizer.IsEOG,
				MaxSeqs: m.opt.Slots, StepTokens: max(256, m.opt.Slots), Queue: m.opt.Slots,
			})
			if err != nil {
				_ = mdl.Close()
			}
		}
		if err != nil {
			e.err = fmt.Errorf("%w: %s: %v", ErrLoadFailed, e.id, err)
		} else {
			e.model = mdl
		}
	}
	if e.err != nil {
		m.opt.Logger.Error("model load failed", "model", e.id, "err", e.err)
		m.opt.Publish("model", State{ID: e.id, Status: "failed", Error: e.err.Error()})
		return
	}
	m.mu.Lock()
	e.lastUsed = time.Now()
	m.mu.Unlock()
	m.opt.Metrics.loaded.WithLabelValues(e.id).Set(1)
	m.opt.Logger.Info("model loaded", "model", e.id, "took", time.Since(start).Round(time.Millisecond), "weights_bytes", e.model.Stage.WeightBytes(),
		"decode_kernels", kernels.StreamSummary(), "batch_padding", kernels.PadSummary())
	m.opt.Publish("model", State{ID: e.id, Status: "loaded"})
}

// States reports every model the manager knows.
func (m *Manager) States() []State {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]State, 0, len(m.models))
	for _, e := range m.models {
		s := State{ID: e.id, Active: e.active, Waiting: e.waiting, LastUsed: e.lastUsed, Status: "loading"}
		if isDone(e.ready) {
			s.Status = "loaded"
			if e.err != nil {
				s.Status, s.Error = "failed", e.err.Error()
			}
		}
		out = append(out, s)
	}
	return out
}

func (m *Manager) reap() {
	t := time.NewTicker(min(m.opt.IdleUnload/4, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			m.unloadIdle(time.Now().Add(-m.opt.IdleUnload))
		}
	}
}

// unloadIdle frees models with no active or waiting request since before cutoff.
func (m *Manager) unloadIdle(cutoff time.Time) {
	m.mu.Lock()
	var victims []*entry
	for id, e := range m.models {
		if isDone(e.ready) && e.active == 0 && e.waiting == 0 && e.lastUsed.Before(cutoff) {
			delete(m.models, id)
			victims = append(victims, e)
		}
	}
	m.mu.Unlock()
	for _, e := range victims {
		if e.model != nil {
			e.sched.Close()
			_ = e.model.Close()
			m.opt.Metrics.loaded.WithLabelValues(e.id).Set(0)
			m.opt.Logger.Info("model unloaded after idle time", "model", e.id)
		}
		m.opt.Publish("model", State{ID: e.id, Status: "unloaded"})
	}
}

// Close unloads everything; active leases must have been released.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.done)
	m.mu.Unlock()
	m.unloadIdle(time.Now().Add(time.Hour))
}

// memAvailable reads MemAvailable from /proc/meminfo.
func memAvailable() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo MemAvailable: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("/proc/meminfo has no MemAvailable")
}
