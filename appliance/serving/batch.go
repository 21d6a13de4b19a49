package serving

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/engine/scheduler"
	"github.com/exo-nix/exo/appliance/engine/tokenizer"
)

// relay carries one request's tokens and text from the batch goroutine to the request's own.
// It never blocks the sender: the queue grows instead, and it is bounded by the request's
// tokens (max_tokens or the context), so a stalled client costs memory for its own text only.
type relay struct {
	mu    sync.Mutex
	queue []event
	wake  chan struct{} // holds one pending wake-up
}

// event is one callback of the generation: a sampled token (OnToken) or text (OnText).
type event struct {
	res    sampler.Result
	text   string
	isText bool
}

func newRelay() *relay { return &relay{wake: make(chan struct{}, 1)} }

func (r *relay) push(e event) {
	r.mu.Lock()
	r.queue = append(r.queue, e)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take swaps the queue with spare (emptied) and returns what was queued.
func (r *relay) take(spare []event) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queue
	r.queue = spare[:0]
	return q
}

// generate runs req on s. The request's collector (end of generation, stop sequences, streamed
// text) runs on the batch goroutine, so a stop sequence ends the sequence at the very token a
// solo run stops at; its callbacks only queue events, which this goroutine hands to req's
// callbacks in order. The result equals model.Generate's for the same request: the batch
// computes each sequence's logits bit-identically to a solo pass.
func generate(ctx context.Context, s *scheduler.Scheduler, tok *tokenizer.Tokenizer, req model.GenerateRequest) (*model.Generation, error) {
	if len(req.Prompt) == 0 {
		return nil, errors.New("serving: empty prompt")
	}
	r := newRelay()
	inner := req
	inner.OnText = func(text string) error {
		r.push(event{text: text, isText: true})
		return nil
	}
	inner.OnToken = nil
	if req.OnToken != nil {
		inner.OnToken = func(res sampler.Result) error {
			r.push(event{res: res})
			return nil
		}
	}
	col := model.NewCollector(tok, &inner)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	submitted := time.Now()
	h, err := s.Submit(sctx, scheduler.Request{
		Prompt: req.Prompt, Sampler: req.Sampler, MaxTokens: req.MaxTokens, IgnoreEOS: req.IgnoreEOS, CtxLen: req.CtxLen,
		CacheScope: req.CacheScope,
		OnToken: func(_ int32, res sampler.Result) error {
			done, err := col.Accept(res)
			if err != nil {
				return err
			}
			// The token limit ends the sequence in the scheduler as "length" by itself; only
			// a stop sequence needs telling.
			if done && col.Generation().FinishReason == model.FinishStop {
				return scheduler.ErrStop
			}
			return nil
		},
	})
	if err != nil {
		if errors.Is(err, scheduler.ErrClosed) {
			return nil, fmt.Errorf("%w: model unloaded", ErrUnavailable)
		}
		return nil, err
	}

	var spare []event
	deliver := func() error {
		batch := r.take(spare)
		defer func() { clear(batch); spare = batch }()
		for _, e := range batch {
			var err error
			if e.isText {
				if req.OnText != nil {
					err = req.OnText(e.text)
				}
			} else {
				err = req.OnToken(e.res)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	for finished := false; !finished; {
		select {
		case <-r.wake:
		case <-h.Done():
			finished = true
		}
		err := deliver()
		if err == nil {
			// The batch may have run ahead to the end; a caller that gave up meanwhile still
			// gets its error, as from a solo run.
			err = ctx.Err()
		}
		if err != nil {
			// The client is gone or refused the text: the sequence leaves the batch at the next
			// step, which frees its KV cache before the lease's slot is given back.
			cancel()
			<-h.Done()
			return nil, err
		}
	}
	res, err := h.Wait()
	if err != nil {
		return nil, err
	}
	// The scheduler is done with the collector; what it still holds back (a partial character,
	// the start of a possible stop sequence) goes straight to the caller.
	inner.OnText, inner.OnToken = req.OnText, req.OnToken
	g := col.Generation()
	if res.FinishReason == model.FinishStop {
		g.FinishReason = model.FinishStop // an end-of-generation token, which the collector never saw
	}
	g.Timings.Prompt = res.Queued + res.Prompt
	g.CachedTokens = res.CachedTokens
	return col.Finish(submitted.Add(g.Timings.Prompt))
}
