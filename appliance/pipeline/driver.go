package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/engine/chat"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/engine/tokenizer"
	"github.com/exo-nix/exo/appliance/serving"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// DriverConfig configures the driver side (the API node).
type DriverConfig struct {
	NodeID string
	Net    *Net
	// Placement returns the placed instances and the transport address of every node.
	Placement func() ([]state.Instance, map[string]string)
	// LocalFile returns a file on this node holding the model's header (the whole model or a
	// stage of it); the driver asks the first stage's host otherwise.
	LocalFile func(model string) (string, bool)
	// DType encodes activations between stages (default F32: exactly what one node computes).
	DType wire.DType
	// PromptChunk is how many prompt tokens go in one frame, so that stages work on a long
	// prompt's chunks at the same time (default 256).
	PromptChunk int
	// MaxInFlight bounds the requests of one instance this driver runs at once, and so the KV
	// caches they hold on every stage; more wait for a slot (default 64).
	MaxInFlight int
	Logger      *slog.Logger
}

// Driver runs requests through the pipelines of placed instances.
type Driver struct {
	cfg DriverConfig
	log *slog.Logger

	mu    sync.Mutex
	metas map[string]*meta         // by model id
	slots map[string]chan struct{} // by instance id
	// prefixes are the sequences the stages keep, by instance placement (prefixKey).
	prefixes map[string][]*prefixEntry
	tick     uint64
}

// prefixEntry is a finished request's sequence the stages keep: the tokens it holds for sure.
type prefixEntry struct {
	key    uint64
	tokens []int32
	used   uint64
}

// prefixPick is a kept sequence a request starts from: its first n positions, and whether
// the request continues all of it (the stages then free it once copied).
type prefixPick struct {
	key     uint64
	n       int
	release bool
}

// prefixKey names an instance's placement: a new placement's stages keep nothing yet.
func prefixKey(in *state.Instance) string { return fmt.Sprintf("%s/%d", in.ID, in.Placements) }

// pickPrefix finds the kept sequence that shares the longest start with prompt (at least
// minReuse tokens; the prompt's last token is always computed, for its logits).
func (d *Driver) pickPrefix(in *state.Instance, prompt []int32) *prefixPick {
	d.mu.Lock()
	defer d.mu.Unlock()
	var best *prefixEntry
	n := 0
	for _, e := range d.prefixes[prefixKey(in)] {
		l := commonPrefix(e.tokens, prompt)
		if l > n {
			best, n = e, l
		}
	}
	n = min(n, len(prompt)-1)
	if best == nil || n < minReuse {
		return nil
	}
	d.tick++
	best.used = d.tick
	return &prefixPick{key: best.key, n: n, release: n == len(best.tokens)}
}

// rememberPrefix records a sequence the stages keep now; forget drops one.
func (d *Driver) rememberPrefix(in *state.Instance, key uint64, tokens []int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := prefixKey(in)
	d.tick++
	list := append(d.prefixes[k], &prefixEntry{key: key, tokens: tokens, used: d.tick})
	if len(list) > maxKept {
		i := 0
		for j, e := range list {
			if e.used < list[i].used {
				i = j
			}
		}
		list = slices.Delete(list, i, i+1)
	}
	d.prefixes[k] = list
}

func (d *Driver) forgetPrefix(in *state.Instance, key uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := prefixKey(in)
	d.prefixes[k] = slices.DeleteFunc(d.prefixes[k], func(e *prefixEntry) bool { return e.key == key })
}

func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// meta is what the driver needs of a model: its tokenizer, chat template and context length.
type meta struct {
	tok     *tokenizer.Tokenizer
	tmpl    *chat.Template
	context int
}

// NewDriver returns a driver.
func NewDriver(cfg DriverConfig) *Driver {
	if cfg.DType == 0 {
		cfg.DType = wire.F32
	}
	if cfg.PromptChunk <= 0 {
		cfg.PromptChunk = 256
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Driver{cfg: cfg, log: cfg.Logger, metas: map[string]*meta{}, slots: map[string]chan struct{}{}, prefixes: map[string][]*prefixEntry{}}
}

// route finds the instance of model to drive: placed, with an address for every stage. A
// model whose only instance is one stage on this node is served by the node itself.
func (d *Driver) route(model string) (*state.Instance, []StageRef, error) {
	instances, addrs := d.cfg.Placement()
	var degraded *state.Instance
	for i := range instances {
		in := &instances[i]
		if in.Model != model || len(in.Stages) == 0 {
			continue
		}
		if in.Status != state.StatusPlaced {
			degraded = in
			continue
		}
		// A whole model on this node is served locally; a tensor-parallel stage needs its group.
		if len(in.Stages) == 1 && in.Stages[0].Node == d.cfg.NodeID && len(in.Stages[0].Shards) == 0 {
			return nil, nil, nil
		}
		refs := make([]StageRef, len(in.Stages))
		ok := true
		for j, st := range in.Stages {
			refs[j] = StageRef{Node: st.Node, Name: st.NodeName, Addr: addrs[st.Node], Layers: st.Layers}
			ok = ok && refs[j].Addr != ""
		}
		if !ok {
			degraded = in
			continue
		}
		return in, refs, nil
	}
	if degraded != nil {
		return nil, nil, fmt.Errorf("%w: instance %s of %s is %s: %s", serving.ErrUnavailable, degraded.ID, model, degraded.Status, degraded.Reason)
	}
	return nil, nil, nil
}

// Acquire returns a generator for model when an instance of it is placed across nodes (or on
// another node), and (nil, nil) when there is none.
func (d *Driver) Acquire(ctx context.Context, model string) (serving.Generator, error) {
	in, refs, err := d.route(model)
	if in == nil || err != nil {
		return nil, err
	}
	m, err := d.meta(ctx, model, refs[0].Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: model %s: %v", serving.ErrUnavailable, model, err)
	}
	ctxLen := m.context
	if in.Context > 0 && in.Context < ctxLen {
		ctxLen = in.Context // the placement reserved KV cache memory for this much
	}
	d.mu.Lock()
	slots := d.slots[in.ID]
	if slots == nil {
		slots = make(chan struct{}, d.cfg.MaxInFlight)
		d.slots[in.ID] = slots
	}
	d.mu.Unlock()
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &generator{d: d, inst: *in, stages: refs, meta: m, ctxLen: ctxLen, slots: slots}, nil
}

// meta loads the model's tokenizer and template once: from a local file, or from the header
// the first stage's host sends.
func (d *Driver) meta(ctx context.Context, model, addr string) (*meta, error) {
	d.mu.Lock()
	m := d.metas[model]
	d.mu.Unlock()
	if m != nil {
		return m, nil
	}
	var f *gguf.File
	if path, ok := d.cfg.LocalFile(model); ok {
		var err error
		if f, err = gguf.Open(path); err != nil {
			return nil, err
		}
		defer f.Close()
	} else {
		var err error
		if f, err = d.fetchHeader(ctx, model, addr); err != nil {
			return nil, err
		}
	}
	cfg, err := modelConfig(f)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("tokenizer of %s: %w", model, err)
	}
	m = &meta{tok: tok, context: cfg}
	m.tmpl, _ = chat.FromGGUF(f)
	d.mu.Lock()
	d.metas[model] = m
	d.mu.Unlock()
	return m, nil
}

// modelConfig reads the context length from a header (a stage file describes the whole model).
func modelConfig(f *gguf.File) (int, error) {
	cfg, err := model.ConfigFromGGUF(f)
	if err != nil {
		return 0, err
	}
	return cfg.ContextLength, nil
}

func (d *Driver) fetchHeader(ctx context.Context, model, addr string) (*gguf.File, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := d.cfg.Net.OpenStream(ctx, addr, transport.ServiceData)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { s.Cancel("timed out") })
	defer stop()
	if err := writeJSON(s, 0, openMsg{Op: opHeader, Proto: protoVersion, Model: model}); err != nil {
		return nil, err
	}
	var hm headerMsg
	if err := readJSON(s, &hm); err != nil {
		return nil, fmt.Errorf("header of %s from %s: %s", model, addr, reason(err))
	}
	var h wire.Header
	p, err := s.ReadFrame(&h, nil)
	if err != nil {
		return nil, fmt.Errorf("header of %s from %s: %s", model, addr, reason(err))
	}
	f, err := gguf.ParseHeader(p, hm.Size)
	if err != nil {
		return nil, fmt.Errorf("header of %s from %s: %w", model, addr, err)
	}
	f.Path = addr + ":" + hm.File
	return f, nil
}

// generator is one request's hold on a pipeline; it implements serving.Generator.
type generator struct {
	d      *Driver
	inst   state.Instance
	stages []StageRef
	meta   *meta
	ctxLen int
	slots  chan struct{}
	once   sync.Once
}

func (g *generator) Tokenizer() *tokenizer.Tokenizer { return g.meta.tok }
func (g *generator) Template() *chat.Template        { return g.meta.tmpl }
func (g *generator) ContextLength() int              { return g.ctxLen }
func (g *generator) Release()                        { g.once.Do(func() { <-g.slots }) }

// Error is a failed pipeline request.
type Error struct {
	Instance, Model string
	Reason          string
}

func (e *Error) Error() string {
	return fmt.Sprintf("pipeline of %s (instance %s) failed: %s", e.Model, e.Instance, e.Reason)
}

func newRequestID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1 // never 0
}

// Generate runs one completion through the pipeline: the prompt goes to the first stage, and
// each sampled token comes back from the last, which also sends it straight to the first stage
// unless it ends the completion. Stop sequences, end-of-generation tokens and the token limit
// are applied here, exactly as model.Generate does on one node.
func (g *generator) Generate(ctx context.Context, req model.GenerateRequest) (*model.Generation, error) {
	if len(req.Prompt) == 0 {
		return nil, errors.New("pipeline: empty prompt")
	}
	if err := req.Sampler.Validate(); err != nil {
		return nil, err
	}
	ctxLen := req.CtxLen
	if ctxLen <= 0 {
		ctxLen = g.ctxLen
		if req.MaxTokens > 0 {
			ctxLen = min(ctxLen, len(req.Prompt)+req.MaxTokens)
		}
	}
	if len(req.Prompt) >= ctxLen {
		return nil, fmt.Errorf("pipeline: prompt of %d tokens does not fit the context of %d", len(req.Prompt), ctxLen)
	}
	pick := g.d.pickPrefix(&g.inst, req.Prompt)
	gen, started, err := g.attempt(ctx, req, ctxLen, pick)
	var pe *Error
	if pick != nil && !started && errors.As(err, &pe) && strings.Contains(pe.Reason, prefixMiss) {
		// A stage no longer holds the sequence: forget it and compute the whole prompt.
		g.d.log.Info("pipeline: a stage no longer keeps the reused sequence; running the whole prompt", "instance", g.inst.ID, "reason", pe.Reason)
		g.d.forgetPrefix(&g.inst, pick.key)
		gen, _, err = g.attempt(ctx, req, ctxLen, nil)
	}
	return gen, err
}

// attempt runs the request once, starting from pick's positions when it is not nil; started
// says whether any token reached the client.
func (g *generator) attempt(ctx context.Context, req model.GenerateRequest, ctxLen int, pick *prefixPick) (*model.Generation, bool, error) {
	d := g.d
	id := newRequestID()
	started := false // a token reached the client
	fail := func(why string) error { return &Error{Instance: g.inst.ID, Model: g.inst.Model, Reason: why} }
	first, last := g.stages[0], g.stages[len(g.stages)-1]

	// The return stream first, so it waits at the last stage when the activations arrive.
	ret, err := d.cfg.Net.OpenData(ctx, last.Node, last.Addr, false)
	if err != nil {
		return nil, false, fail(fmt.Sprintf("last stage (%s) is unreachable: %v", last, err))
	}
	params := req.Sampler
	rmsg := openMsg{Op: opReturn, Proto: protoVersion, Instance: g.inst.ID, Model: g.inst.Model, Request: id, Sampler: &params, MaxTokens: max(0, req.MaxTokens)}
	if !req.IgnoreEOS {
		rmsg.EndTokens = g.meta.tok.EOG()
	}
	if err := writeJSON(ret, id, &rmsg); err != nil {
		ret.Cancel("open failed")
		return nil, false, fail(fmt.Sprintf("last stage (%s): %v", last, reason(err)))
	}
	ph := wire.Header{Kind: wire.KindTokens, DType: wire.I32, Request: id, Shape: []uint32{uint32(len(req.Prompt))}}
	if err := ret.WriteFrame(&ph, wire.I32Bytes(req.Prompt)); err != nil {
		ret.Cancel("open failed")
		return nil, false, fail(fmt.Sprintf("last stage (%s): %v", last, reason(err)))
	}
	fwd, err := d.cfg.Net.OpenData(ctx, first.Node, first.Addr, false)
	if err != nil {
		ret.Cancel("the first stage is unreachable")
		return nil, false, fail(fmt.Sprintf("first stage (%s) is unreachable: %v", first, err))
	}
	open := openMsg{Op: opForward, Proto: protoVersion, Instance: g.inst.ID, Model: g.inst.Model, Request: id, Stage: 0, Stages: g.stages,
		CtxLen: ctxLen, Prompt: len(req.Prompt), DType: d.cfg.DType.String(), Keep: id}
	start := 0
	if pick != nil {
		open.Reuse, open.ReuseLen, start = pick.key, pick.n, pick.n
		if pick.release {
			open.Release = pick.key
		}
	}

	// Whatever ends the request (the client leaving, an error, a stage failing) cancels both
	// streams; every stage frees its cache when its streams end.
	var (
		failMu      sync.Mutex
		failWhy     string
		unexplained bool // failWhy is a bare reset; a stage's own reason replaces it
	)
	abortWith := func(why string, bare bool) {
		failMu.Lock()
		if failWhy == "" || (unexplained && !bare) {
			failWhy, unexplained = why, bare
		}
		failMu.Unlock()
		fwd.Cancel(why)
		ret.Cancel(why)
	}
	abort := func(why string) { abortWith(why, false) }
	stopCtx := context.AfterFunc(ctx, func() { abort("the client went away") })
	defer stopCtx()
	clean := false
	defer func() {
		if clean {
			_ = fwd.CloseWrite()
			_ = ret.CloseWrite()
			go drainTokens(ret)
		} else {
			abort("request ended")
		}
	}()
	// The forward stream carries nothing back but its end; a cancellation names the stage
	// that failed.
	fwdDone, over := make(chan struct{}), make(chan struct{})
	defer close(over)
	go func() {
		defer close(fwdDone)
		var h wire.Header
		for {
			if _, err := fwd.ReadFrame(&h, nil); err != nil {
				var ce *transport.CancelledError
				switch {
				case errors.Is(err, io.EOF):
				case errors.As(err, &ce) && ce.Unexplained:
					// The stage cancels the return stream too, and its reason may arrive
					// there: give it a moment before cancelling that stream as well.
					select {
					case <-over:
					case <-time.After(reasonWait):
					}
					abortWith(ce.Reason, true)
				case errors.As(err, &ce):
					abort(ce.Reason)
				default:
					abort(fmt.Sprintf("stage 1/%d (%s) lost: %v", len(g.stages), first, err))
				}
				return
			}
		}
	}()
	why := func(err error) error {
		if transport.IsUnexplained(err) {
			// A stage that fails a request sends its reason on the forward stream before
			// it stops reading; a write (or read) can meet the stop first.
			select {
			case <-fwdDone:
			case <-time.After(reasonWait):
			}
		}
		failMu.Lock()
		w, bare := failWhy, unexplained
		failMu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if w == "" || w == "request ended" || (bare && explained(err)) {
			w = reason(err)
		}
		return fail(w)
	}

	if err := writeJSON(fwd, id, &open); err != nil {
		return nil, started, why(err)
	}
	t0 := time.Now()
	chunk := d.cfg.PromptChunk
	for pos := start; pos < len(req.Prompt); pos += chunk {
		end := min(pos+chunk, len(req.Prompt))
		h := wire.Header{Kind: wire.KindTokens, DType: wire.I32, Instance: g.inst.ID, Request: id, Positions: positions(pos, end-pos), Shape: []uint32{uint32(end - pos)}}
		if err := fwd.WriteFrame(&h, wire.I32Bytes(req.Prompt[pos:end])); err != nil {
			return nil, started, why(err)
		}
	}

	col := model.NewCollector(g.meta.tok, &req)
	var (
		h       wire.Header
		buf     []byte
		t1      time.Time
		sampled []int32
	)
	seqLen := len(req.Prompt)
	for step := uint32(1); ; step++ {
		res, err := readToken(ret, &h, &buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the last stage ended the request early")
			}
			return nil, started, why(fmt.Errorf("stage %d/%d (%s) lost: %w", len(g.stages), len(g.stages), last, err))
		}
		if step == 1 {
			t1 = time.Now()
			col.Generation().Timings.Prompt = t1.Sub(t0)
		}
		tok := res.Token
		sampled = append(sampled, tok)
		if tok < 0 || int(tok) >= g.meta.tok.VocabSize() {
			return nil, started, fail(fmt.Sprintf("the last stage sampled token %d, outside the vocabulary of %d", tok, g.meta.tok.VocabSize()))
		}
		// The last stage has sent the token round the ring already, unless it ends the
		// completion by the same rules as here. A stop sequence is the one end it cannot see:
		// then the step it started is wasted, and ending the request stops the ring.
		ends := seqLen >= ctxLen || (!req.IgnoreEOS && g.meta.tok.IsEOG(tok)) || (req.MaxTokens > 0 && col.Tokens()+1 >= req.MaxTokens)
		seqLen++
		started = true
		done, err := col.Accept(res)
		if err != nil {
			return nil, true, err
		}
		if done || ends {
			break
		}
	}
	clean = true
	// Every stage keeps the sequence: the prompt and each sampled token but the last went
	// through all of them.
	d.rememberPrefix(&g.inst, id, append(slices.Clip(req.Prompt), sampled[:len(sampled)-1]...))
	if pick != nil && pick.release {
		d.forgetPrefix(&g.inst, pick.key)
	}
	gen, err := col.Finish(t1)
	return gen, true, err
}

// explained reports whether err is a peer's cancellation that carries the peer's reason.
func explained(err error) bool {
	var ce *transport.CancelledError
	return errors.As(err, &ce) && !ce.Unexplained
}

// drainTokens reads what the last stage still sends after a completion ended (the result of a
// step sent before a stop sequence, then the end of the stream) and drops it, so that the
// stream is released on both sides.
func drainTokens(s transport.FrameStream) {
	if ds, ok := s.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = ds.SetReadDeadline(time.Now().Add(drainTimeout))
	}
	var h wire.Header
	var buf []byte
	for {
		p, err := s.ReadFrame(&h, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.Cancel("request ended")
			}
			return
		}
		buf = p
	}
}

// readToken reads the next sampled token (and its log-probabilities when they were asked for).
func readToken(s transport.FrameStream, h *wire.Header, buf *[]byte) (sampler.Result, error) {
	var res sampler.Result
	for {
		p, err := s.ReadFrame(h, *buf)
		if err != nil {
			return res, err
		}
		*buf = p
		switch {
		case h.Kind == wire.KindControl:
			var lp logprobMsg
			if err := json.Unmarshal(p, &lp); err != nil {
				return res, fmt.Errorf("pipeline: malformed logprobs: %w", err)
			}
			res.Logprob, res.Top = lp.Logprob, lp.Top
		case h.Kind == wire.KindTokens && h.DType == wire.I32 && len(p) == 4:
			res.Token = int32(binary.LittleEndian.Uint32(p))
			return res, nil
		default:
			return res, fmt.Errorf("pipeline: unexpected %s frame on the return stream", h.Kind)
		}
	}
}
