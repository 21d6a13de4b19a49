package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/kernels"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// Resolver finds the file that holds layers [first, last) of a model on this node, fetching it
// (a stage-only file, peers first) when the node holds neither the model nor that stage.
type Resolver func(ctx context.Context, model string, first, last int, progress func(store.Progress)) (string, error)

// HostConfig configures a stage host.
type HostConfig struct {
	NodeID, NodeName string
	Net              *Net
	// Engine options of the stages (compute, KV cache type, threads).
	Engine  model.Options
	Resolve Resolver
	// Addr returns a live node's transport address ("" when unknown): shard 0 of a
	// tensor-parallel stage reaches the other members of its group by it.
	Addr func(node string) string
	// LoadWait bounds how long a request waits for its stage to be fetched and loaded
	// (default 5 minutes).
	LoadWait time.Duration
	// RetryFailed is how long a stage that failed to load stays failed before the next sync
	// tries again (default 30s).
	RetryFailed time.Duration
	// PrefillShare is the most prompt tokens of one request a batch takes while other
	// requests' steps wait in it (default 16; see batcher).
	PrefillShare int
	Logger       *slog.Logger
}

// Host runs the pipeline stages placed on this node.
type Host struct {
	cfg HostConfig
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	slots   map[string]*slot      // by instance id
	synced  chan struct{}         // closed and replaced after every Sync
	returns map[rvKey]*rendezvous // streams waiting for their request at this node
	active  int                   // live sequences (KV caches) over all stages
	// keptTick orders kept sequences by use (prefix.go).
	keptTick uint64
}

// Stage states, in StageStatus.State.
const (
	StageFetching    = "fetching"
	StageLoading     = "loading"
	StageConnecting  = "connecting" // shard 0 of a tensor-parallel stage, reaching the other shards
	StageReady       = "ready"
	StageFailed      = "failed"
	StageUnreachable = "unreachable"
)

// StageStatus is one stage as its host reports it.
type StageStatus struct {
	Instance string `json:"instance"`
	Model    string `json:"model"`
	Node     string `json:"node"`
	Name     string `json:"name,omitempty"`
	Layers   [2]int `json:"layers"`
	State    string `json:"state"`
	Error    string `json:"error,omitempty"`
	// File is the file the stage runs from and FileBytes its size: a stage-only file holds
	// just the stage's layers.
	File      string `json:"file,omitempty"`
	FileBytes int64  `json:"file_bytes,omitempty"`
	// Fetch is the progress of the stage's download while State is fetching.
	Fetch *store.Progress `json:"fetch,omitempty"`
	// Active is the number of requests whose KV cache the stage holds.
	Active int `json:"active"`
	// Batching counts the stage's batched forward passes once it is loaded.
	Batching *BatchStats `json:"batching,omitempty"`
	// RingTokens counts the decode tokens a first stage received round the ring (from the
	// last stage, or from itself as the only stage) rather than from the driver.
	RingTokens uint64 `json:"ring_tokens,omitempty"`
	// Shard and Shards: the node holds shard Shard of Shards of a tensor-parallel stage
	// (Shards 0: the whole stage). OtherShards are the other members' states, on shard 0 as
	// Service.StageStatus reports it.
	Shard       int           `json:"shard,omitempty"`
	Shards      int           `json:"shards,omitempty"`
	OtherShards []StageStatus `json:"other_shards,omitempty"`
	// Kept is the number of finished requests' sequences the stage keeps for later requests,
	// ReusedTokens the prompt positions later requests took from them instead of computing.
	Kept         int    `json:"kept,omitempty"`
	ReusedTokens uint64 `json:"reused_tokens,omitempty"`
	// Swaps are a tensor-parallel shard's exchanges of parts with the other shards.
	Swaps *SwapStats `json:"swaps,omitempty"`
}

// SwapStats count a shard's swaps and the time they took (sending its part until it had the
// others', waiting for the slower shard included): Seconds/Count is the mean swap, and Count
// grows by four a layer per forward pass.
type SwapStats struct {
	Count   uint64  `json:"count"`
	Seconds float64 `json:"seconds"`
}

type slot struct {
	inst   state.Instance
	index  int
	shard  int      // of a tensor-parallel stage; 0 also for a stage of one node
	nodes  []string // the stage's nodes, shard 0 first
	layers [2]int
	ready  chan struct{}
	cancel context.CancelFunc

	// Guarded by Host.mu.
	status   StageStatus
	err      error
	failedAt time.Time
	file     *gguf.File
	stage    *model.Stage
	batch    *batcher
	refs     int
	retired  bool
	group    *shardGroup // shard 0 of a tensor-parallel stage: its links to the other shards
	// The group session another shard is serving, and closed when it is over.
	session     transport.FrameStream
	sessionDone chan struct{}
	sessionSeqs atomic.Int64 // the sequences the session holds, as Active

	// Finished requests' sequences kept for later ones (prefix.go), guarded by Host.mu:
	// their capacity in positions, and a channel closed and replaced whenever one is kept.
	kept        map[uint64]*keptSeq
	keptCap     int
	keptChanged chan struct{}
	reused      atomic.Uint64 // StageStatus.ReusedTokens
	swaps       swapStats     // a tensor-parallel shard's swaps

	ring atomic.Uint64 // StageStatus.RingTokens
}

// NewHost returns a host; set it as the Net's handler with cfg.Net.Handle(h.Handle).
func NewHost(cfg HostConfig) *Host {
	if cfg.LoadWait <= 0 {
		cfg.LoadWait = 5 * time.Minute
	}
	if cfg.RetryFailed <= 0 {
		cfg.RetryFailed = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Host{cfg: cfg, log: cfg.Logger, slots: map[string]*slot{}, synced: make(chan struct{}), returns: map[rvKey]*rendezvous{}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

// Sync brings the hosted stages in line with the placed instances: stages placed here are
// fetched and loaded, stages no longer placed here are unloaded once their requests end.
func (h *Host) Sync(instances []state.Instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx.Err() != nil {
		return
	}
	want := map[string]bool{}
	for _, in := range instances {
		for i, st := range in.Stages {
			shard := slices.Index(st.Nodes(), h.cfg.NodeID)
			if shard < 0 {
				continue
			}
			want[in.ID] = true
			cur := h.slots[in.ID]
			if cur != nil && cur.layers == st.Layers && cur.inst.Model == in.Model && cur.index == i && len(cur.inst.Stages) == len(in.Stages) &&
				cur.shard == shard && slices.Equal(cur.nodes, st.Nodes()) {
				if cur.err == nil || time.Since(cur.failedAt) < h.cfg.RetryFailed {
					cur.inst = in
					break
				}
			}
			if cur != nil {
				h.retire(cur)
			}
			h.startLoad(in, i, shard)
			break // placement never puts two stages (or shards) of one instance on a node
		}
	}
	for id, sl := range h.slots {
		if !want[id] {
			delete(h.slots, id)
			h.retire(sl)
		}
	}
	close(h.synced)
	h.synced = make(chan struct{})
}

// retire unloads a slot once no request uses it (h.mu held).
func (h *Host) retire(sl *slot) {
	sl.retired = true
	sl.cancel()
	if sl.session != nil {
		sl.session.Cancel(fmt.Sprintf("pipeline: node %s unloaded shard %d of stage [%d,%d): the placement changed", h.cfg.NodeName, sl.shard, sl.layers[0], sl.layers[1]))
	}
	if sl.refs == 0 && sl.session == nil {
		h.unload(sl)
	}
}

func (h *Host) unload(sl *slot) {
	for key := range sl.kept {
		h.dropKept(sl, key)
	}
	if sl.group != nil {
		sl.group.close()
		sl.group = nil
	}
	if sl.file != nil {
		h.log.Info("pipeline stage unloaded", "instance", sl.inst.ID, "model", sl.inst.Model, "layers", sl.layers)
		_ = sl.file.Close()
		sl.file, sl.stage = nil, nil
	}
}

func (h *Host) startLoad(in state.Instance, index, shard int) {
	ctx, cancel := context.WithCancel(h.ctx)
	st := in.Stages[index]
	sl := &slot{inst: in, index: index, shard: shard, nodes: st.Nodes(), layers: st.Layers, ready: make(chan struct{}), cancel: cancel,
		kept: map[uint64]*keptSeq{}, keptChanged: make(chan struct{}),
		status: StageStatus{Instance: in.ID, Model: in.Model, Node: h.cfg.NodeID, Name: h.cfg.NodeName, Layers: st.Layers, State: StageFetching}}
	if len(st.Shards) > 0 {
		sl.status.Shard, sl.status.Shards = shard, len(st.Shards)+1
	}
	h.slots[in.ID] = sl
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.load(ctx, sl)
	}()
}

func (h *Host) load(ctx context.Context, sl *slot) {
	defer close(sl.ready)
	start := time.Now()
	first, last := sl.layers[0], sl.layers[1]
	path, err := h.cfg.Resolve(ctx, sl.inst.Model, first, last, func(p store.Progress) {
		h.mu.Lock()
		sl.status.Fetch = &p
		h.mu.Unlock()
	})
	var f *gguf.File
	var stage *model.Stage
	if err == nil {
		h.mu.Lock()
		sl.status.State, sl.status.Fetch = StageLoading, nil
		h.mu.Unlock()
		f, err = gguf.Open(path)
		if err == nil {
			opts := h.cfg.Engine
			if len(sl.nodes) > 1 {
				opts.Shard, opts.Shards = sl.shard, len(sl.nodes)
			}
			if stage, err = model.LoadStage(f, first, last, opts); err != nil {
				f.Close()
				f = nil
			}
		}
	}
	var group *shardGroup
	if err == nil && len(sl.nodes) > 1 && sl.shard == 0 {
		h.mu.Lock()
		sl.status.State = StageConnecting
		sl.stage = stage
		h.mu.Unlock()
		if group, err = h.connectGroup(ctx, sl); err != nil {
			f.Close()
			f = nil
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		sl.stage = nil
		sl.err = fmt.Errorf("stage [%d,%d) of %s on %s: %w", first, last, sl.inst.Model, h.cfg.NodeName, err)
		sl.failedAt = time.Now()
		sl.status.State, sl.status.Error = StageFailed, sl.err.Error()
		if ctx.Err() == nil {
			h.log.Error("pipeline stage failed to load", "instance", sl.inst.ID, "model", sl.inst.Model, "layers", sl.layers, "err", err)
		}
		return
	}
	sl.file, sl.stage, sl.group = f, stage, group
	if group != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.watchGroup(sl, group)
		}()
	}
	if sl.shard == 0 {
		// The other shards run what shard 0's batcher ran, told by its group session.
		sl.batch = newBatcher(stage, len(sl.inst.Stages), h.cfg.PrefillShare)
	}
	sl.status.State, sl.status.File = StageReady, path
	if st, err := os.Stat(path); err == nil {
		sl.status.FileBytes = st.Size()
	}
	if sl.retired {
		h.unload(sl)
		return
	}
	h.log.Info("pipeline stage loaded", "instance", sl.inst.ID, "model", sl.inst.Model, "layers", sl.layers,
		"stage", fmt.Sprintf("%d/%d", sl.index+1, len(sl.inst.Stages)), "file", path, "weights_bytes", stage.WeightBytes(),
		"took", time.Since(start).Round(time.Millisecond), "decode_kernels", kernels.StreamSummary(), "batch_padding", kernels.PadSummary())
}

// Status reports the stages this node hosts.
func (h *Host) Status() []StageStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]StageStatus, 0, len(h.slots))
	for _, sl := range h.slots {
		st := sl.status
		st.Active = sl.refs
		if sl.shard > 0 {
			st.Active = int(sl.sessionSeqs.Load())
		}
		st.Kept, st.ReusedTokens = len(sl.kept), sl.reused.Load()
		if n := sl.swaps.n.Load(); n > 0 {
			st.Swaps = &SwapStats{Count: n, Seconds: time.Duration(sl.swaps.ns.Load()).Seconds()}
		}
		if sl.batch != nil {
			bs := sl.batch.stats()
			st.Batching = &bs
		}
		st.RingTokens = sl.ring.Load()
		out = append(out, st)
	}
	return out
}

// Active is the number of live request sequences (KV caches) on this node's stages.
func (h *Host) Active() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.active
}

// Close cancels loads and waits for them; requests in flight fail as their streams close.
func (h *Host) Close() {
	h.mu.Lock()
	h.cancel()
	for id, sl := range h.slots {
		delete(h.slots, id)
		h.retire(sl)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// slotWait is how long a request for an instance this node does not know yet waits for the
// next sync: the driver may have seen a new placement a moment before this node did.
const slotWait = 10 * time.Second

// waitFor calls look with h.mu held until it finds what it looks for, wait has passed or ctx
// ends (its error); look also returns the channel closed when its answer may change.
func (h *Host) waitFor(ctx context.Context, wait time.Duration, look func() (bool, <-chan struct{})) error {
	deadline := time.Now().Add(wait)
	for {
		h.mu.Lock()
		found, changed := look()
		h.mu.Unlock()
		if found || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// acquire finds the ready stage of a request, waiting for a sync and for the load. With a
// session (the control stream of a tensor-parallel group) the slot is held for that session
// instead of a request.
func (h *Host) acquire(ctx context.Context, o *openMsg, session transport.FrameStream) (*slot, error) {
	var sl *slot
	err := h.waitFor(ctx, slotWait, func() (bool, <-chan struct{}) {
		sl = h.slots[o.Instance]
		return sl != nil, h.synced
	})
	if err != nil {
		return nil, err
	}
	if sl == nil {
		return nil, fmt.Errorf("node %s runs no stage of instance %s (%s)", h.cfg.NodeName, o.Instance, o.Model)
	}
	want := o.Stages[o.Stage].Layers
	if sl.layers != want || sl.index != o.Stage {
		return nil, fmt.Errorf("node %s runs stage %d [%d,%d) of instance %s, the request expects stage %d [%d,%d): the placement changed",
			h.cfg.NodeName, sl.index+1, sl.layers[0], sl.layers[1], o.Instance, o.Stage+1, want[0], want[1])
	}
	if sl.shard != o.Shard {
		return nil, fmt.Errorf("node %s holds shard %d of stage %d [%d,%d) of instance %s, the stream is for shard %d: the placement changed",
			h.cfg.NodeName, sl.shard, sl.index+1, want[0], want[1], o.Instance, o.Shard)
	}
	t := time.NewTimer(h.cfg.LoadWait)
	defer t.Stop()
	select {
	case <-sl.ready:
	case <-t.C:
		return nil, fmt.Errorf("node %s: stage [%d,%d) of %s is not loaded after %s", h.cfg.NodeName, want[0], want[1], o.Model, h.cfg.LoadWait)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if sl.err != nil {
		return nil, sl.err
	}
	if sl.retired || sl.stage == nil {
		return nil, fmt.Errorf("node %s: stage [%d,%d) of instance %s was unloaded: the placement changed", h.cfg.NodeName, want[0], want[1], o.Instance)
	}
	if session != nil {
		if sl.session != nil {
			return nil, fmt.Errorf("node %s: shard %d of instance %s serves another group session", h.cfg.NodeName, sl.shard, o.Instance)
		}
		sl.session, sl.sessionDone = session, make(chan struct{})
		return sl, nil
	}
	sl.refs++
	h.active++
	return sl, nil
}

func (h *Host) release(sl *slot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sl.refs--
	h.active--
	if sl.retired && sl.refs == 0 && sl.session == nil {
		h.unload(sl)
	}
}

// openTimeout bounds the wait for a stream's open message.
const openTimeout = 10 * time.Second

// Handle serves one data stream from a peer (set with Net.Handle).
func (h *Host) Handle(_ transport.Conn, s transport.FrameStream) {
	var o openMsg
	if ds, ok := s.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = ds.SetReadDeadline(time.Now().Add(openTimeout))
		err := readJSON(s, &o)
		_ = ds.SetReadDeadline(time.Time{})
		if err != nil {
			s.Cancel("pipeline: " + err.Error())
			return
		}
	} else if err := readJSON(s, &o); err != nil {
		s.Cancel("pipeline: " + err.Error())
		return
	}
	if o.Proto != protoVersion {
		s.Cancel(fmt.Sprintf("pipeline: node %s speaks pipeline protocol %d, the peer %d: run the same exo version on every node", h.cfg.NodeName, protoVersion, o.Proto))
		return
	}
	switch o.Op {
	case opForward:
		h.forward(s, &o)
	case opReturn:
		h.attachReturn(s, &o)
	case opLoop:
		h.attachLoop(s, &o)
	case opShard:
		h.serveShard(s, &o)
	case opShardExchange:
		h.attachExchange(s, &o)
	case opHeader:
		h.serveHeader(s, &o)
	case opStatus:
		if err := writeJSON(s, 0, h.Status()); err == nil {
			_ = s.CloseWrite()
		}
	default:
		s.Cancel(fmt.Sprintf("pipeline: unknown op %q", o.Op))
	}
}

// sideStream is a stream that joins a request at a stage other than through its input: the
// driver's return stream at the last stage, the last stage's loop stream at the first. Its
// handler hands it to the request's own through a rendezvous.
type sideStream struct {
	s    transport.FrameStream
	open *openMsg
	// The return stream's prompt, which the sampler's repetition penalties start from.
	prompt []int32
}

type rvKey struct {
	req uint64
	op  string
}

type rendezvous struct {
	ch chan sideStream
}

// returnWait bounds how long the streams of a request wait for each other at a stage.
const returnWait = 10 * time.Second

func (h *Host) rendezvous(req uint64, op string) *rendezvous {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := rvKey{req, op}
	r := h.returns[k]
	if r == nil {
		r = &rendezvous{ch: make(chan sideStream, 1)}
		h.returns[k] = r
		time.AfterFunc(returnWait+time.Second, func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.returns[k] != r {
				return
			}
			delete(h.returns, k)
			select {
			case rs := <-r.ch:
				rs.s.Cancel(fmt.Sprintf("pipeline: request %d never reached this node's stage", req))
			default:
			}
		})
	}
	return r
}

// claim waits up to returnWait for the side stream op of request req, or until stop closes.
func (h *Host) claim(req uint64, op string, stop <-chan struct{}) (sideStream, bool) {
	rv := h.rendezvous(req, op)
	t := time.NewTimer(returnWait)
	defer t.Stop()
	select {
	case rs := <-rv.ch:
		h.mu.Lock()
		delete(h.returns, rvKey{req, op})
		h.mu.Unlock()
		return rs, true
	case <-t.C:
	case <-stop:
	}
	return sideStream{}, false
}

func (h *Host) attachReturn(s transport.FrameStream, o *openMsg) {
	if o.Sampler == nil || o.Request == 0 {
		s.Cancel("pipeline: return stream without request or sampling parameters")
		return
	}
	var hd wire.Header
	p, err := s.ReadFrame(&hd, nil)
	if err != nil || hd.Kind != wire.KindTokens || hd.DType != wire.I32 {
		s.Cancel("pipeline: return stream must send the prompt tokens first")
		return
	}
	prompt, err := wire.DecodeI32(p, nil)
	if err != nil {
		s.Cancel("pipeline: " + err.Error())
		return
	}
	h.attach(sideStream{s: s, open: o, prompt: prompt})
}

func (h *Host) attachLoop(s transport.FrameStream, o *openMsg) {
	if o.Request == 0 {
		s.Cancel("pipeline: loop stream without a request")
		return
	}
	h.attach(sideStream{s: s, open: o})
}

func (h *Host) attach(ss sideStream) {
	select {
	case h.rendezvous(ss.open.Request, ss.open.Op).ch <- ss:
	default:
		ss.s.Cancel(fmt.Sprintf("pipeline: a second %s stream for request %d", ss.open.Op, ss.open.Request))
	}
}

// stageName describes this stage in errors.
func stageName(o *openMsg) string {
	return fmt.Sprintf("stage %d/%d (%s)", o.Stage+1, len(o.Stages), o.Stages[o.Stage])
}

// reason turns a stream error into the cause to pass on: a peer's cancellation already names
// where it started.
func reason(err error) string {
	var ce *transport.CancelledError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return err.Error()
}

// request is one request's state at one stage.
type request struct {
	o        *openMsg
	me       string                // this stage, for errors
	closing  func() bool           // whether this node's transport is shutting down
	up       transport.FrameStream // from the previous stage or the driver
	down     transport.FrameStream // to the next stage; nil on the last
	ret      transport.FrameStream // to the driver; last stage only
	failOnce sync.Once

	// Last stage: when a sampled token ends the completion (see openMsg.EndTokens).
	endTokens map[int32]bool
	maxTokens int
	ring      *atomic.Uint64 // the stage's count of tokens received round the ring

	mu         sync.Mutex
	loop       transport.FrameStream // the ring's token stream: last stage to first; nil for one stage
	finished   chan struct{}
	finishOnce sync.Once
	failed     atomic.Bool // set before finished closes when the request fails
}

// fail cancels the request's streams in both directions with why. When this node's own
// transport is closing, its connections fail first and look like lost peers; the reason then
// names this stage instead.
func (r *request) fail(why string) {
	if r.closing != nil && r.closing() {
		why = r.me + ": its node is shutting down"
	}
	r.failOnce.Do(func() {
		r.failed.Store(true)
		r.finish()
		r.up.Cancel(why)
		if r.down != nil {
			r.down.Cancel(why)
		}
		if r.ret != nil {
			r.ret.Cancel(why)
		}
		if l := r.loopStream(); l != nil {
			l.Cancel(why)
		}
	})
}

// reasonWait bounds how long a failed write or read that met a peer's bare reset waits for the
// peer's reason: a peer that cancels a stream sends it before it stops reading, and the
// stream's reader may not have taken it yet.
const reasonWait = time.Second

// failWrite ends the request after a write to one of its streams failed with err; each stream
// it writes has a watcher that fails the request with the peer's own reason, which then wins.
func (r *request) failWrite(err error, why string) {
	if transport.IsUnexplained(err) {
		select {
		case <-r.finished:
		case <-time.After(reasonWait):
		}
	}
	r.fail(why)
}

func (r *request) loopStream() transport.FrameStream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loop
}

// setLoop attaches the loop stream, unless the request has ended already (then the stream is
// cancelled).
func (r *request) setLoop(s transport.FrameStream) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done() {
		s.Cancel("request ended")
		return false
	}
	r.loop = s
	return true
}

// ends reports whether token, sampled when the sequence holds seqLen positions and after
// sampled earlier tokens, ends the completion: by the rules the driver applies, but for stop
// sequences, which only the driver sees.
func (r *request) ends(token int32, seqLen, sampled int) bool {
	return seqLen >= r.o.CtxLen || r.endTokens[token] || (r.maxTokens > 0 && sampled+1 >= r.maxTokens)
}

func (r *request) finish() { r.finishOnce.Do(func() { close(r.finished) }) }

func (r *request) done() bool {
	select {
	case <-r.finished:
		return true
	default:
		return false
	}
}

// watch reads a stream that is not expected to carry frames (the next stage's return
// direction, the driver's return stream) and fails the request when it breaks.
func (r *request) watch(s transport.FrameStream, what func(error) string) {
	var hd wire.Header
	for {
		_, err := s.ReadFrame(&hd, nil)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || r.done() {
			return
		}
		r.fail(what(err))
		return
	}
}

func (h *Host) forward(up transport.FrameStream, o *openMsg) {
	if o.Stage < 0 || o.Stage >= len(o.Stages) || o.Request == 0 {
		up.Cancel("pipeline: malformed open message")
		return
	}
	dt, err := wire.ParseDType(o.DType)
	if err != nil || (dt != wire.F32 && dt != wire.F16 && dt != wire.Q8_0) {
		up.Cancel(fmt.Sprintf("pipeline: activation dtype %q is not supported (F32, F16, Q8_0 are)", o.DType))
		return
	}
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	me := stageName(o)
	sl, err := h.acquire(ctx, o, nil)
	if err != nil {
		up.Cancel(me + ": " + err.Error())
		return
	}
	defer h.release(sl)
	st := sl.stage
	if o.CtxLen <= 0 || o.CtxLen > st.Config.ContextLength {
		up.Cancel(fmt.Sprintf("%s: context of %d tokens is outside the model's 1..%d", me, o.CtxLen, st.Config.ContextLength))
		return
	}
	if dt == wire.Q8_0 && st.Config.NEmbd%wire.Q8Block != 0 {
		up.Cancel(fmt.Sprintf("%s: Q8_0 activations need n_embd %d to be a multiple of %d", me, st.Config.NEmbd, wire.Q8Block))
		return
	}
	r := &request{o: o, me: me, closing: h.cfg.Net.closing, up: up, finished: make(chan struct{}), ring: &sl.ring}
	last := o.Stage == len(o.Stages)-1
	var smp *sampler.Sampler
	if last {
		rs, ok := h.claim(o.Request, opReturn, nil)
		if !ok {
			up.Cancel(me + ": the driver's return stream did not arrive")
			return
		}
		r.ret = rs.s
		if rs.open.Sampler == nil {
			r.fail(me + ": the return stream carries no sampling parameters")
			return
		}
		if smp, err = sampler.New(*rs.open.Sampler); err != nil {
			r.fail(me + ": " + err.Error())
			return
		}
		smp.AcceptPrompt(rs.prompt)
		r.maxTokens = rs.open.MaxTokens
		r.endTokens = make(map[int32]bool, len(rs.open.EndTokens))
		for _, t := range rs.open.EndTokens {
			r.endTokens[t] = true
		}
		go r.watch(r.ret, func(err error) string { return "the driver gave up on the request: " + reason(err) })
		if o.Stage > 0 {
			// The ring's last hop: each token that continues the completion goes straight
			// back to the first stage.
			first := o.Stages[0]
			octx, ocancel := context.WithTimeout(ctx, dialTimeout)
			loop, err := h.cfg.Net.OpenData(octx, first.Node, first.Addr, false)
			if err == nil {
				if err = writeJSON(loop, o.Request, &openMsg{Op: opLoop, Proto: protoVersion, Instance: o.Instance, Model: o.Model, Request: o.Request}); err != nil {
					loop.Cancel("pipeline: open failed")
				}
			}
			ocancel()
			if err != nil {
				r.fail(fmt.Sprintf("stage 1/%d (%s) is unreachable from %s: %v", len(o.Stages), first, h.cfg.NodeName, err))
				return
			}
			if !r.setLoop(loop) {
				return
			}
			go r.watch(loop, func(err error) string {
				var ce *transport.CancelledError
				if errors.As(err, &ce) {
					return ce.Reason
				}
				return fmt.Sprintf("stage 1/%d (%s) lost: %v", len(o.Stages), first, err)
			})
		}
	} else {
		next := o.Stages[o.Stage+1]
		octx, ocancel := context.WithTimeout(ctx, dialTimeout)
		down, err := h.cfg.Net.OpenData(octx, next.Node, next.Addr, true)
		if err == nil {
			nxt := *o
			nxt.Stage++
			if err = writeJSON(down, o.Request, &nxt); err != nil {
				down.Cancel("pipeline: open failed")
			}
		}
		ocancel()
		if err != nil {
			up.Cancel(fmt.Sprintf("stage %d/%d (%s) is unreachable from %s: %v", o.Stage+2, len(o.Stages), next, h.cfg.NodeName, err))
			return
		}
		r.down = down
		go r.watch(down, func(err error) string {
			var ce *transport.CancelledError
			if errors.As(err, &ce) {
				return ce.Reason
			}
			return fmt.Sprintf("stage %d/%d (%s) lost: %v", o.Stage+2, len(o.Stages), next, err)
		})
	}
	h.run(r, newStageInput(h, r), sl, dt, smp)
}

// run is the request's loop at one stage: read a frame, run the layers, pass the result on.
func (h *Host) run(r *request, src *stageInput, sl *slot, dt wire.DType, smp *sampler.Sampler) {
	o := r.o
	me := stageName(o)
	st, bt, inst := sl.stage, sl.batch, sl.inst.ID
	seq, err := h.startSequence(sl, o)
	if err != nil {
		r.fail(me + ": " + err.Error())
		return
	}
	// Kept, or freed (after the batcher let go of it) rather than left to the garbage
	// collector: on a tensor-parallel stage that also frees the other shards' copies.
	kept := false
	defer func() {
		if !kept {
			seq.Free()
		}
	}()
	stp := bt.open(seq)
	defer bt.close(stp)
	nEmbd := st.Config.NEmbd
	var (
		hd      wire.Header
		hidden  []float32
		encoded []byte
		tokens  []int32
		sampled int
	)
	for {
		bt.sent(stp)
		p, fromRing, err := src.next(&hd)
		if err != nil {
			if errors.Is(err, errEnded) {
				return
			}
			if errors.Is(err, io.EOF) {
				// The driver is done: pass the end on, which frees the next stage's cache.
				r.finish()
				if r.down != nil {
					_ = r.down.CloseWrite()
				}
				if r.ret != nil {
					_ = r.ret.CloseWrite()
				}
				if l := r.loopStream(); l != nil {
					_ = l.CloseWrite()
				}
				// Nothing was written upstream: ending it lets the previous stage's watcher
				// (or the driver's) return, and the stream close on both sides.
				_ = r.up.CloseWrite()
				if o.Keep != 0 {
					seq, kept = h.keepSequence(sl, o.Keep, seq)
				}
				return
			}
			if o.Stage == 0 && fromRing {
				var ce *transport.CancelledError
				if errors.As(err, &ce) {
					r.fail(ce.Reason)
				} else {
					r.fail(fmt.Sprintf("stage %d/%d (%s) lost: %v", len(o.Stages), len(o.Stages), o.Stages[len(o.Stages)-1], err))
				}
			} else if o.Stage == 0 {
				r.fail("the driver gave up on the request: " + reason(err))
			} else {
				var ce *transport.CancelledError
				if errors.As(err, &ce) {
					r.fail(ce.Reason)
				} else {
					r.fail(fmt.Sprintf("stage %d/%d (%s) lost: %v", o.Stage, len(o.Stages), o.Stages[o.Stage-1], err))
				}
			}
			return
		}
		if fromRing {
			if len(hd.Positions) > 0 && int(hd.Positions[0]) < o.Prompt {
				r.fail(fmt.Sprintf("%s: a token came round the ring at position %d, inside the prompt of %d", me, hd.Positions[0], o.Prompt))
				return
			}
			r.ring.Add(1)
		}
		var in model.Batch
		var n int
		switch {
		case st.IsFirst() && hd.Kind == wire.KindTokens && hd.DType == wire.I32:
			if tokens, err = wire.DecodeI32(p, tokens[:0]); err != nil {
				r.fail(me + ": " + err.Error())
				return
			}
			n = len(tokens)
			in.Tokens = tokens
		case !st.IsFirst() && hd.Kind == wire.KindActivations && len(hd.Shape) == 2 && int(hd.Shape[1]) == nEmbd && hd.DType == dt:
			n = int(hd.Shape[0])
			if dt == wire.F32 {
				var ok bool
				if hidden, ok = wire.F32View(p); !ok {
					hidden, err = wire.Decode(dt, p, hidden[:0])
				}
			} else {
				hidden, err = wire.Decode(dt, p, hidden[:0])
			}
			if err != nil {
				r.fail(me + ": " + err.Error())
				return
			}
			in.Hidden = hidden
		default:
			r.fail(fmt.Sprintf("%s: unexpected %s frame (dtype %s, shape %v)", me, hd.Kind, hd.DType, hd.Shape))
			return
		}
		pos, err := contiguous(&hd, n)
		if err == nil && pos != seq.Len() {
			err = fmt.Errorf("frame starts at position %d but the sequence holds %d", pos, seq.Len())
		}
		if err != nil {
			r.fail(me + ": " + err.Error())
			return
		}
		in.Pos = pos
		out, err := bt.forward(stp, in)
		if err != nil {
			r.fail(me + ": " + err.Error())
			return
		}
		if r.down != nil {
			payload := wire.F32Bytes(out.Hidden)
			if dt != wire.F32 {
				if encoded, err = wire.Encode(dt, out.Hidden, encoded[:0]); err != nil {
					r.fail(me + ": " + err.Error())
					return
				}
				payload = encoded
			}
			oh := wire.Header{Kind: wire.KindActivations, DType: dt, Instance: inst, Request: o.Request, Step: hd.Step,
				Positions: hd.Positions, Shape: []uint32{uint32(n), uint32(nEmbd)}}
			if err := r.down.WriteFrame(&oh, payload); err != nil {
				if !r.done() {
					r.failWrite(err, fmt.Sprintf("stage %d/%d (%s) lost: %v", o.Stage+2, len(o.Stages), o.Stages[o.Stage+1], reason(err)))
				}
				return
			}
			continue
		}
		if pos+n < o.Prompt {
			continue // a prompt chunk before the last: nothing to sample yet
		}
		res, err := smp.Sample(out.Logits)
		if err != nil {
			r.fail(me + ": " + err.Error())
			return
		}
		if smp.Params().Logprobs {
			if err := writeJSON(r.ret, o.Request, logprobMsg{Logprob: res.Logprob, Top: res.Top}); err != nil {
				r.failWrite(err, "the driver's return stream broke: "+reason(err))
				return
			}
		}
		// The token goes round the ring first, then to the driver: the next step then overlaps
		// the driver's decoding and streaming of this one.
		tok := []int32{res.Token}
		if !r.ends(res.Token, pos+n, sampled) {
			if loop := r.loopStream(); loop != nil {
				lh := wire.Header{Kind: wire.KindTokens, DType: wire.I32, Instance: inst, Request: o.Request, Step: hd.Step + 1,
					Positions: []int32{int32(pos + n)}, Shape: []uint32{1}}
				if err := loop.WriteFrame(&lh, wire.I32Bytes(tok)); err != nil {
					if !r.done() {
						r.failWrite(err, fmt.Sprintf("stage 1/%d (%s) lost: %v", len(o.Stages), o.Stages[0], reason(err)))
					}
					return
				}
			} else {
				src.feedSelf(inst, o.Request, hd.Step+1, res.Token, pos+n)
			}
		}
		sampled++
		th := wire.Header{Kind: wire.KindTokens, DType: wire.I32, Instance: inst, Request: o.Request, Step: hd.Step,
			Positions: []int32{int32(pos + n)}, Shape: []uint32{1}}
		if err := r.ret.WriteFrame(&th, wire.I32Bytes(tok)); err != nil {
			r.failWrite(err, "the driver's return stream broke: "+reason(err))
			return
		}
	}
}

// serveHeader sends the GGUF header of a model this node holds (a full file or a stage file:
// both carry the tokenizer, the chat template and the hyperparameters).
func (h *Host) serveHeader(s transport.FrameStream, o *openMsg) {
	var sl *slot
	h.mu.Lock()
	for _, c := range h.slots {
		if c.inst.Model == o.Model {
			sl = c
			break
		}
	}
	h.mu.Unlock()
	path := ""
	if sl != nil {
		select {
		case <-sl.ready:
		case <-time.After(h.cfg.LoadWait):
		}
		h.mu.Lock()
		path = sl.status.File
		h.mu.Unlock()
	}
	if path == "" {
		s.Cancel(fmt.Sprintf("pipeline: node %s holds no file of model %s", h.cfg.NodeName, o.Model))
		return
	}
	f, err := gguf.Open(path)
	if err != nil {
		s.Cancel("pipeline: " + err.Error())
		return
	}
	defer f.Close()
	st, err := os.Stat(path)
	if err != nil {
		s.Cancel("pipeline: " + err.Error())
		return
	}
	hdr := make([]byte, f.DataOffset)
	fh, err := os.Open(path)
	if err == nil {
		_, err = io.ReadFull(fh, hdr)
		fh.Close()
	}
	if err != nil {
		s.Cancel("pipeline: read header of " + path + ": " + err.Error())
		return
	}
	if err := writeJSON(s, 0, headerMsg{File: path, Size: st.Size()}); err != nil {
		return
	}
	bh := wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{uint32(len(hdr))}}
	if err := s.WriteFrame(&bh, hdr); err == nil {
		_ = s.CloseWrite()
	}
}
