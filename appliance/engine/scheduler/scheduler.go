// Package scheduler runs many generation requests on one model stage with continuous batching:
// every step is one ForwardBatch over all live sequences, new requests join the running batch
// at the next step (their prompts fed in chunks alongside the others' decode tokens, so a long
// prompt never stalls the sequences already generating), and finished or cancelled sequences
// leave it at once. A finished request's sequence stays, with its cache, for the next request
// whose prompt begins with the same tokens: that part of the prompt is not evaluated again
// (a chat's earlier turns, a shared system prompt), and the results are the same bit for bit,
// as every position's keys and values depend only on the tokens up to it.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/kernels"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
)

// Finish reasons, as in the OpenAI API (and model.FinishStop/FinishLength).
const (
	FinishStop   = model.FinishStop   // end-of-generation token, or OnToken returned ErrStop
	FinishLength = model.FinishLength // MaxTokens or the context length reached
)

// ErrStop, returned by OnToken, ends the sequence normally with FinishStop (a stop sequence
// matched by the caller, for instance). The token it was called with counts as generated.
var ErrStop = errors.New("scheduler: stop")

// ErrClosed is returned for requests submitted to, or still running in, a closed Scheduler.
var ErrClosed = errors.New("scheduler: closed")

// Request is one generation.
type Request struct {
	Prompt    []int32
	Sampler   sampler.Params
	MaxTokens int  // <= 0: until end of generation or a full context
	IgnoreEOS bool // keep generating past end-of-generation tokens
	// CtxLen is the KV cache size; 0 means prompt + MaxTokens, capped by the model's context.
	CtxLen int
	// CacheScope: a request reuses the cached prompt start of another only where both have the
	// same scope (model.GenerateRequest.CacheScope).
	CacheScope string
	// OnToken receives each generated token in order, on a goroutine of the scheduler's (so
	// it must return quickly and never block; calls for different requests may run at the same
	// time; the stopping end-of-generation token is not passed). An error ends the sequence:
	// ErrStop as a normal stop, anything else as that error.
	OnToken func(tok int32, res sampler.Result) error
}

// Result is the outcome of a request.
type Result struct {
	PromptTokens int
	CachedTokens int    // leading prompt tokens whose keys and values an earlier request left
	Tokens       int    // generated tokens passed to OnToken
	FinishReason string // FinishStop or FinishLength when Err is nil
	Queued       time.Duration
	Prompt       time.Duration // admission to the first generated token's logits
	Gen          time.Duration // from there to the end
}

// Config configures a Scheduler.
type Config struct {
	// Stage must hold the whole model (first and last layers).
	Stage *model.Stage
	// IsEOG tells end-of-generation tokens (tokenizer.IsEOG); nil means none.
	IsEOG func(int32) bool
	// MaxSeqs bounds the sequences in the running batch (default 8); more requests wait.
	MaxSeqs int
	// StepTokens bounds the tokens of one step (default 256): decode tokens first, then
	// prompt chunks of the sequences still being admitted.
	StepTokens int
	// Queue bounds the requests waiting for admission (default 64); Submit fails beyond it.
	Queue int
}

// Scheduler owns the running batch. Its methods are safe for concurrent use.
type Scheduler struct {
	cfg    Config
	submit chan *Handle
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once

	pool     *kernels.Pool // the stage's
	sampling sampleJob

	mu    sync.Mutex
	stats Stats
	idle  []idleSeq // sequences of finished requests, oldest first, reused with their caches
}

// idleSeq is a finished request's sequence and the tokens whose keys and values it holds
// (len(toks) == seq.Len()).
type idleSeq struct {
	seq   *model.Seq
	toks  []int32
	scope string // the CacheScope of the request that left it
}

// Stats are counters of a Scheduler's work. A request's sequence has left Active and entered
// Completed by the time its Handle is done.
type Stats struct {
	Active, Waiting int   // sequences in the running batch, requests queued
	Steps           int64 // ForwardBatch calls
	StepTokens      int64 // positions evaluated
	CachedTokens    int64 // prompt positions taken from earlier requests' caches instead
	MaxActive       int   // most sequences in one step
	Completed       int64
}

// New starts a scheduler's loop.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Stage == nil || !cfg.Stage.IsFirst() || !cfg.Stage.IsLast() {
		return nil, fmt.Errorf("scheduler: needs a stage holding the whole model")
	}
	if cfg.MaxSeqs <= 0 {
		cfg.MaxSeqs = 8
	}
	if cfg.StepTokens <= 0 {
		cfg.StepTokens = 256
	}
	if cfg.StepTokens < cfg.MaxSeqs {
		return nil, fmt.Errorf("scheduler: %d step tokens cannot serve %d sequences", cfg.StepTokens, cfg.MaxSeqs)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 64
	}
	if cfg.IsEOG == nil {
		cfg.IsEOG = func(int32) bool { return false }
	}
	s := &Scheduler{cfg: cfg, submit: make(chan *Handle, cfg.Queue), quit: make(chan struct{}), done: make(chan struct{}),
		pool: kernels.SharedPool(cfg.Stage.Options().Threads)}
	s.sampling.s = s
	go s.loop()
	return s, nil
}

// Handle follows a submitted request.
type Handle struct {
	ctx  context.Context
	req  Request
	smp  *sampler.Sampler
	ctxN int

	submitted time.Time
	done      chan struct{}
	res       Result
	err       error

	// Loop state.
	seq      *model.Seq
	toks     []int32   // the tokens whose keys and values seq holds once the step runs
	fed      int       // prompt positions evaluated (or found in the cache)
	next     int32     // token to feed at the next decode step
	logits   []float32 // to sample from, during a step
	admitted time.Time
	firstAt  time.Time
}

// Done is closed when the request has finished.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Wait blocks until the request finishes and returns its result.
func (h *Handle) Wait() (Result, error) {
	<-h.done
	return h.res, h.err
}

// Submit queues req; ctx cancels it (the sequence leaves the batch at the next step and Wait
// returns ctx's error). It fails at once on an invalid request or a full queue.
func (s *Scheduler) Submit(ctx context.Context, req Request) (*Handle, error) {
	c := s.cfg.Stage.Config
	if len(req.Prompt) == 0 {
		return nil, errors.New("scheduler: empty prompt")
	}
	for i, t := range req.Prompt {
		if t < 0 || int(t) >= c.NVocab {
			return nil, fmt.Errorf("scheduler: prompt token %d at index %d is outside the vocabulary of %d", t, i, c.NVocab)
		}
	}
	smp, err := sampler.New(req.Sampler)
	if err != nil {
		return nil, err
	}
	n := req.CtxLen
	if n <= 0 {
		n = c.ContextLength
		if req.MaxTokens > 0 {
			n = min(n, len(req.Prompt)+req.MaxTokens)
		}
	}
	if len(req.Prompt) >= n {
		return nil, fmt.Errorf("scheduler: prompt of %d tokens does not fit the context of %d", len(req.Prompt), n)
	}
	smp.AcceptPrompt(req.Prompt)
	h := &Handle{ctx: ctx, req: req, smp: smp, ctxN: n, submitted: time.Now(), done: make(chan struct{})}
	h.res.PromptTokens = len(req.Prompt)
	select {
	case <-s.quit:
		return nil, ErrClosed
	default:
	}
	select {
	case s.submit <- h:
		s.mu.Lock()
		s.stats.Waiting++
		s.mu.Unlock()
		return h, nil
	default:
		return nil, fmt.Errorf("scheduler: queue of %d requests is full", s.cfg.Queue)
	}
}

// Generate is Submit followed by Wait.
func (s *Scheduler) Generate(ctx context.Context, req Request) (Result, error) {
	h, err := s.Submit(ctx, req)
	if err != nil {
		return Result{}, err
	}
	return h.Wait()
}

// Stats returns a snapshot of the counters.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close stops the loop; requests still queued or running finish with ErrClosed.
func (s *Scheduler) Close() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

func (s *Scheduler) loop() {
	defer close(s.done)
	var (
		active []*Handle
		items  []model.SeqBatch
		outs   []model.Out
		owner  []*Handle
		toks   []int32 // decode tokens of a step, one per sequence
	)
	finish := func(h *Handle, err error) {
		h.err = err
		if !h.firstAt.IsZero() {
			h.res.Gen = time.Since(h.firstAt)
		}
		admitted := h.seq != nil
		if admitted {
			s.release(h.seq, h.toks, h.req.CacheScope)
			h.seq, h.toks = nil, nil
		}
		s.mu.Lock()
		if admitted {
			s.stats.Active--
		}
		s.stats.Completed++
		s.mu.Unlock()
		close(h.done)
	}
	for {
		// Admit waiting requests while there is room; block only when nothing runs.
		for len(active) < s.cfg.MaxSeqs {
			var h *Handle
			if len(active) == 0 {
				select {
				case h = <-s.submit:
				case <-s.quit:
				}
			} else {
				select {
				case h = <-s.submit:
				case <-s.quit:
				default:
				}
			}
			if h == nil {
				break
			}
			s.mu.Lock()
			s.stats.Waiting--
			s.mu.Unlock()
			if err := h.ctx.Err(); err != nil {
				finish(h, err)
				continue
			}
			h.admitted = time.Now()
			h.res.Queued = h.admitted.Sub(h.submitted)
			h.seq, h.toks, h.fed = s.acquire(h.ctxN, h.req.Prompt, h.req.CacheScope, active)
			h.res.CachedTokens = h.fed
			active = append(active, h)
			s.mu.Lock()
			s.stats.CachedTokens += int64(h.fed)
			s.stats.Active++
			s.stats.MaxActive = max(s.stats.MaxActive, s.stats.Active)
			s.mu.Unlock()
		}
		select {
		case <-s.quit:
			for _, h := range active {
				finish(h, ErrClosed)
			}
			for {
				select {
				case h := <-s.submit:
					s.mu.Lock()
					s.stats.Waiting--
					s.mu.Unlock()
					finish(h, ErrClosed)
				default:
					s.mu.Lock()
					for _, e := range s.idle {
						e.seq.Free()
					}
					s.idle = nil
					s.mu.Unlock()
					return
				}
			}
		default:
		}

		// Cancelled sequences leave before the step.
		live := active[:0]
		for _, h := range active {
			if err := h.ctx.Err(); err != nil {
				finish(h, err)
				continue
			}
			live = append(live, h)
		}
		active = live
		if len(active) == 0 {
			continue
		}

		// Build the step: a decode token for every generating sequence, then prompt chunks
		// in admission order within the remaining budget.
		items, owner, toks = items[:0], owner[:0], toks[:0]
		budget := s.cfg.StepTokens
		for _, h := range active {
			if h.fed == len(h.req.Prompt) {
				toks = append(toks, h.next)
				h.toks = append(h.toks, h.next)
			}
		}
		ti := 0
		for _, h := range active {
			if h.fed == len(h.req.Prompt) {
				items = append(items, model.SeqBatch{Seq: h.seq, Batch: model.Batch{Pos: h.seq.Len(), Tokens: toks[ti : ti+1]}})
				owner = append(owner, h)
				ti++
				budget--
			}
		}
		for _, h := range active {
			if h.fed < len(h.req.Prompt) && budget > 0 {
				k := min(len(h.req.Prompt)-h.fed, budget)
				items = append(items, model.SeqBatch{Seq: h.seq, Batch: model.Batch{Pos: h.fed, Tokens: h.req.Prompt[h.fed : h.fed+k]}})
				h.toks = append(h.toks, h.req.Prompt[h.fed:h.fed+k]...)
				owner = append(owner, h)
				budget -= k
			}
		}
		for len(outs) < len(items) {
			outs = append(outs, model.Out{})
		}
		err := s.forward(items, outs, s.cfg.StepTokens-budget)
		s.mu.Lock()
		s.stats.Steps++
		s.stats.StepTokens += int64(s.cfg.StepTokens - budget)
		s.mu.Unlock()
		if err != nil {
			// Inputs were validated on submission; a failure here fails the whole step, and
			// leaves no cache worth keeping.
			for _, h := range active {
				h.toks = nil
				finish(h, fmt.Errorf("scheduler: step: %w", err))
			}
			active = active[:0]
			continue
		}

		// Sample where a sequence reached its next token.
		s.sampling.hs = s.sampling.hs[:0]
		for i, h := range owner {
			if h.fed < len(h.req.Prompt) {
				h.fed += len(items[i].Tokens)
				if h.fed < len(h.req.Prompt) {
					continue // more prompt to feed
				}
				h.firstAt = time.Now()
				h.res.Prompt = h.firstAt.Sub(h.admitted)
			}
			h.logits = outs[i].Logits
			s.sampling.hs = append(s.sampling.hs, h)
		}
		// Each sequence has its own sampler and callback, so they run on the stage's pool;
		// on one goroutine they would leave the other cores idle between steps.
		s.pool.For(len(s.sampling.hs), 1, &s.sampling)
		live = active[:0]
		for _, h := range active {
			if h.err != nil || h.res.FinishReason != "" {
				err := h.err
				if errors.Is(err, ErrStop) {
					err, h.res.FinishReason = nil, FinishStop
				}
				finish(h, err)
				continue
			}
			live = append(live, h)
		}
		active = live
	}
}

// cacheResident bounds the weights of a model whose batch a step splits across cores. Below it
// the weights stay in the CPU caches, so a shared pass saves no memory traffic, while each
// product is too small to spread over the pool's workers without their hand-offs costing more
// than the arithmetic: independent sub-batches on separate cores go faster. Every token's
// result is the same either way.
const cacheResident = 32 << 20

// forward runs one step of tokens positions. A step of a large model is one ForwardBatch;
// a cache-resident model's step is cut into one part per core, of about equal tokens.
func (s *Scheduler) forward(items []model.SeqBatch, outs []model.Out, tokens int) error {
	parts := min(s.pool.Threads(), len(items))
	if parts < 2 || s.cfg.Stage.WeightBytes() > cacheResident {
		return s.cfg.Stage.ForwardBatch(items, outs[:len(items)])
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	lo, done := 0, 0
	for p := 0; p < parts; p++ {
		hi := lo
		for goal := tokens * (p + 1) / parts; hi < len(items) && (done < goal || hi == lo); hi++ {
			done += len(items[hi].Tokens)
		}
		if p == parts-1 {
			hi = len(items)
		}
		if hi == lo {
			break
		}
		wg.Add(1)
		go func(p, lo, hi int) {
			defer wg.Done()
			errs[p] = s.cfg.Stage.ForwardBatch(items[lo:hi], outs[lo:hi])
		}(p, lo, hi)
		lo = hi
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sampleJob samples the sequences of one step.
type sampleJob struct {
	s  *Scheduler
	hs []*Handle
}

func (j *sampleJob) Range(_, lo, hi int) {
	for _, h := range j.hs[lo:hi] {
		if done, err := j.s.sample(h, h.logits); done {
			h.err = err
		}
		h.logits = nil
	}
}

// sample picks h's next token and decides whether h is done (setting FinishReason or
// returning the callback's error).
func (s *Scheduler) sample(h *Handle, logits []float32) (bool, error) {
	res, err := h.smp.Sample(logits)
	if err != nil {
		return true, err
	}
	tok := res.Token
	if !h.req.IgnoreEOS && s.cfg.IsEOG(tok) {
		h.res.FinishReason = FinishStop
		return true, nil
	}
	h.res.Tokens++
	if h.req.OnToken != nil {
		if err := h.req.OnToken(tok, res); err != nil {
			return true, err
		}
	}
	if (h.req.MaxTokens > 0 && h.res.Tokens >= h.req.MaxTokens) || h.seq.Len() >= h.ctxN {
		h.res.FinishReason = FinishLength
		return true, nil
	}
	h.next = tok
	return false, nil
}

// acquire returns a sequence with room for n positions for prompt, the tokens its cache holds
// and how many they are. Only sequences of requests with the same scope share their starts,
// and only up to all but the prompt's last token, whose logits the request needs.
//
// The scheduler holds at most MaxSeqs sequences in all, running and idle, as it did before
// idle ones kept their caches: within that bound a request may get a new sequence, beyond it
// it takes an idle one's place. The idle sequence sharing the longest start is taken as it
// is, cut back to that start, where it has room, unless that throws away more cached tokens
// than it saves while a new sequence may be made (so that one conversation's first request
// does not wipe out another's cache for the BOS token they share). Otherwise the longest
// shared start, from an idle sequence or a running request's (several requests with one
// system prompt; admission runs between steps, so no cache is being written meanwhile), is
// copied into a new sequence, the other left as it is. Beyond the bound, the oldest other idle
// sequence makes way (reused as it is where nothing is copied and it has room).
func (s *Scheduler) acquire(n int, prompt []int32, scope string, active []*Handle) (*model.Seq, []int32, int) {
	want := prompt[:len(prompt)-1]
	s.mu.Lock()
	in, keep := -1, 0
	for i, e := range s.idle {
		if e.scope == scope {
			if p := commonPrefix(e.toks, want); p > keep {
				in, keep = i, p
			}
		}
	}
	var src *model.Seq
	for _, h := range active {
		if h.req.CacheScope == scope {
			if p := commonPrefix(h.toks, want); p > keep {
				src, keep = h.seq, p
			}
		}
	}
	room := len(active)+len(s.idle) < s.cfg.MaxSeqs
	if src == nil && in >= 0 {
		e := s.idle[in]
		if e.seq.Cap() >= n && (2*keep >= len(e.toks) || !room) {
			s.idle = append(s.idle[:in], s.idle[in+1:]...)
			s.mu.Unlock()
			_ = e.seq.Truncate(keep) // keep <= e.seq.Len()
			return e.seq, e.toks[:keep], keep
		}
		src = e.seq
	}
	var reuse, drop *model.Seq
	if !room && len(s.idle) > 0 {
		// At admission fewer than MaxSeqs run, so an idle sequence exists (the length check
		// only keeps a broken count from panicking): the oldest other than src, else src
		// itself (copied from, then dropped).
		out := 0
		for i, e := range s.idle {
			if e.seq != src {
				out = i
				break
			}
		}
		if s.idle[out].seq != src {
			reuse = s.idle[out].seq
		} else {
			drop = src
		}
		s.idle = append(s.idle[:out], s.idle[out+1:]...)
	}
	s.mu.Unlock()
	// A sequence dropped is freed: the other shards of a tensor-parallel stage keep theirs
	// until told (model.Seq.Free).
	if drop != nil {
		defer drop.Free()
	}
	if src != nil {
		if q, err := src.Extend(n, keep); err == nil { // keep <= src.Len(), < len(prompt) < n
			if reuse != nil {
				reuse.Free()
			}
			return q, append(make([]int32, 0, n), prompt[:keep]...), keep
		}
	}
	if reuse != nil && reuse.Cap() >= n {
		_ = reuse.Truncate(0)
		return reuse, nil, 0
	}
	if reuse != nil {
		reuse.Free()
	}
	return s.cfg.Stage.NewSequence(n), nil, 0
}

func commonPrefix(a, b []int32) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// release keeps up to MaxSeqs idle sequences, the most recent ones: KV caches are the largest
// allocations of a request, a busy server would otherwise make a new one per request, and a
// recent request's tokens are the likeliest start of the next prompt. toks are the tokens whose
// keys and values q holds (nil after a failed step: only the memory is kept), scope the
// CacheScope of the request that leaves it.
func (s *Scheduler) release(q *model.Seq, toks []int32, scope string) {
	if len(toks) != q.Len() {
		_ = q.Truncate(0)
		toks = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.idle) >= s.cfg.MaxSeqs {
		s.idle[0].seq.Free()
		s.idle = append(s.idle[:0], s.idle[1:]...)
	}
	s.idle = append(s.idle, idleSeq{seq: q, toks: toks, scope: scope})
}
