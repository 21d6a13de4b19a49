package pipeline

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exo-nix/exo/appliance/engine/model"
)

// batcher is continuous batching at one stage: the requests' goroutines hand their next step
// (a decode token or a prompt chunk, each on its own sequence) to the stage's batcher, and
// whatever steps are waiting run together in one model.Stage.ForwardBatch, so the stage's weights
// stream from memory once per round for all of them. A round starts as soon as the previous one
// ends (or at once when none runs), with what is queued by then; the only wait is the short
// gather below, and only while other requests are live.
//
// There is no batcher goroutine. The first step that finds the stage idle runs the round itself
// (flat combining), so a lone request pays no hand-off between goroutines; when it finishes
// while others are queued, it hands the lead to the oldest of them and returns to send its own
// result.
//
// A round takes at most ceil(live requests / pipeline stages) steps, oldest first, so that the
// requests fall into as many groups as the pipeline has stages and every stage works on one
// group while the others work on theirs. Where a bigger batch costs nothing more (weights
// streamed from memory dominate), fewer and bigger groups would do as well, but no better:
// the groups wait for each other at the stages instead. Where it costs more (compute), the
// groups overlap instead of queueing.
//
// Groups hold together: the steps of requests that shared a round come back to the stage at
// about the same time (their tokens went round the ring together), but one by one, tens of
// microseconds apart. So a round with room left while live requests are not queued waits for
// more, up to 1/20 of a round's time and never more than maxGather, rather than run the group
// as singles, each paying a pass over the weights (on the 2-core benchmark machine this halved
// the rounds of four streams and raised their rate by half). A lone request never waits.
//
// The steps a round finished leave it together, but each request's goroutine still has to
// pass its result on (sample, write the frame), and the transport's goroutines have to put it
// on the wire. On a busy core that is the same core the next round wants, so a lead that
// started the next round at once kept the rest of its group's results in the process until
// the round ended or the runtime preempted it, and the group reached the next stage split
// (on the 2-core benchmark machine a third of the rounds of four streams ran as singles).
// So a new round waits, briefly, until the steps that left the last round have been sent
// (settle).
//
// A prompt chunk that would hold up decode steps is cut: while other steps wait, a step longer
// than prefillShare tokens joins each round with prefillShare of its tokens (chunked prefill),
// so a new request's prompt slows the streams already decoding instead of stalling them for a
// whole chunk. Alone, a chunk runs whole. ForwardBatch is exact per token, so neither batching
// nor cutting changes any result.
type batcher struct {
	st *model.Stage
	// prefillShare is the most tokens of one step a shared round takes.
	prefillShare int
	// stages is the number of stages of the pipeline.
	stages int
	// live counts the requests that hold a sequence at the stage.
	live atomic.Int64

	mu    sync.Mutex
	queue []*step
	// spare is the array of the queue before last, which the next round takes the queue into
	// (the two swap, so that queuing a step allocates nothing).
	spare   []*step
	running bool
	// kick wakes the lead's waits (gather, settle) when a step is queued or a leaving step is
	// sent: a token left there makes the next wait look at its condition once more. One
	// buffered channel and one timer (the lead's, one round at a time) for the batcher's life,
	// where a channel closed and made anew per signal allocated on every step.
	kick  chan struct{}
	timer *time.Timer
	// leaving counts the steps finished by a round whose results were not sent on yet.
	leaving int

	// roundTime is a moving average of the rounds' duration (the lead's).
	roundTime time.Duration
	// gatherMax bounds a round's wait for more steps (maxGather), settleMax its wait for the
	// last round's results to be sent (maxSettle); tests change them.
	gatherMax, settleMax time.Duration

	// Guarded by the lead (one round at a time).
	items []model.SeqBatch
	outs  []model.Out
	taken []int

	rounds, steps atomic.Uint64
	maxBatch      atomic.Int64
	busy          atomic.Int64 // nanoseconds in ForwardBatch
}

// defaultPrefillShare: a 16-token slice of prompt costs a decoding stream about as much as a
// few extra decode steps, and keeps a long prompt's own progress at a useful rate.
const defaultPrefillShare = 16

func newBatcher(st *model.Stage, stages, prefillShare int) *batcher {
	if prefillShare <= 0 {
		prefillShare = defaultPrefillShare
	}
	return &batcher{st: st, stages: max(stages, 1), prefillShare: prefillShare, kick: make(chan struct{}, 1), gatherMax: maxGather, settleMax: maxSettle}
}

// maxGather bounds how long a round waits for more steps.
const maxGather = time.Millisecond

// limit is the most steps one round takes.
func (b *batcher) limit() int {
	return max(1, int((b.live.Load()+int64(b.stages)-1)/int64(b.stages)))
}

// step is one request's pending work at the stage. A request reuses its step from frame to
// frame; the batcher owns it between forward's call and return.
type step struct {
	seq *model.Seq
	in  model.Batch
	n   int // tokens of in

	done int // tokens evaluated so far (a cut step runs over several rounds)
	// acc gathers a cut step's hidden states (non-last stages).
	acc []float32
	out model.Out
	err error
	// leaving: the step was finished by a round and its result is not sent on yet (b.mu).
	leaving bool
	// wake carries the batcher's word to a waiting step: true when it is done, false when it
	// leads the next round.
	wake chan bool
}

// open registers a request's sequence at the stage; close it when the request ends.
func (b *batcher) open(seq *model.Seq) *step {
	b.live.Add(1)
	return &step{seq: seq, wake: make(chan bool, 1)}
}

func (b *batcher) close(s *step) {
	b.sent(s)
	b.live.Add(-1)
}

// sent tells the batcher that the step's last result has been passed on (or dropped): the
// request's goroutine calls it before it waits for its next input.
func (b *batcher) sent(s *step) {
	b.mu.Lock()
	if b.unleave(s) {
		b.signal()
	}
	b.mu.Unlock()
}

// unleave clears the step's leaving mark, reporting whether it was set (b.mu held).
func (b *batcher) unleave(s *step) bool {
	if !s.leaving {
		return false
	}
	s.leaving = false
	b.leaving--
	return true
}

// signal wakes the wait of gather or settle, if the lead is in one.
func (b *batcher) signal() {
	select {
	case b.kick <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// maxSettle bounds how long a round waits for the last round's results to be sent: a
// goroutine held up by the next stage's flow control must not hold this stage up.
const maxSettle = 5 * time.Millisecond

// settle waits until the steps the last round finished have been sent on, at most 1/8 of a
// round's time, then yields so that the transport's goroutines can write them out.
func (b *batcher) settle() {
	b.waitFor(min(b.settleMax, b.roundTime/8), func() bool { return b.leaving > 0 })
	runtime.Gosched()
}

// waitFor waits up to d while cond (called with b.mu held) holds; the lead calls it.
func (b *batcher) waitFor(d time.Duration, cond func() bool) {
	if d <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	for {
		b.mu.Lock()
		wait := cond()
		b.mu.Unlock()
		left := time.Until(deadline)
		if !wait || left <= 0 {
			return
		}
		if b.timer == nil {
			b.timer = time.NewTimer(left)
		} else {
			b.timer.Reset(left) // stopped or fired: since Go 1.23 no stale tick survives Reset
		}
		select {
		case <-b.kick:
			b.timer.Stop()
		case <-b.timer.C:
			return
		}
	}
}

// gather waits a moment for more steps while the next round has room for them (see batcher).
func (b *batcher) gather() {
	b.waitFor(min(b.gatherMax, b.roundTime/20), b.incomplete)
}

// incomplete reports whether the next round has room for steps of live requests that are not
// queued (b.mu held).
func (b *batcher) incomplete() bool {
	n := len(b.queue)
	return n < b.limit() && int64(n) < b.live.Load()
}

// forward evaluates in (never AllLogits: only the last position's logits come back) on the
// step's sequence, batched with the other requests' steps. The result aliases buffers of the
// step and its sequence, valid until the step's next forward.
func (b *batcher) forward(s *step, in model.Batch) (model.Out, error) {
	s.in, s.done, s.err, s.out = in, 0, nil, model.Out{}
	if s.n = len(in.Tokens); s.n == 0 {
		s.n = len(in.Hidden) / b.st.Config.NEmbd
	}
	if s.n == 0 {
		return model.Out{}, fmt.Errorf("pipeline: empty step")
	}
	b.mu.Lock()
	b.unleave(s) // where its goroutine did not say sent
	b.queue = append(b.queue, s)
	b.signal()
	lead := !b.running
	b.running = true
	b.mu.Unlock()
	if !lead {
		if done := <-s.wake; done {
			return s.out, s.err
		}
	}
	for {
		// The requests the last round finished (woken by its lead, which may have handed
		// over to this step or left the stage idle) send their results on before this round
		// takes the core.
		b.settle()
		b.gather()
		b.mu.Lock()
		batch := b.queue
		b.queue, b.spare = b.spare[:0], nil
		if n := b.limit(); len(batch) > n {
			b.queue = append(b.queue, batch[n:]...)
			batch = batch[:n:n]
		}
		b.mu.Unlock()
		left := b.round(batch)
		b.mu.Lock()
		for _, o := range batch {
			if o.done == o.n {
				o.leaving = true
				b.leaving++
			}
		}
		b.mu.Unlock()
		for _, o := range batch {
			if o != s && o.done == o.n {
				o.wake <- true
			}
		}
		b.mu.Lock()
		if len(left) > 0 {
			b.queue = append(left, b.queue...)
		}
		b.spare = batch[:0]
		if len(b.queue) == 0 {
			b.running = false
			b.mu.Unlock()
			return s.out, s.err
		}
		if s.done == s.n {
			next := b.queue[0]
			b.mu.Unlock()
			next.wake <- false
			return s.out, s.err
		}
		b.mu.Unlock()
		// Our own step was cut: keep leading.
	}
}

// round runs one ForwardBatch over the queued steps and returns those not finished yet.
func (b *batcher) round(batch []*step) []*step {
	c := b.st.Config
	shared := len(batch) > 1
	b.items, b.taken = b.items[:0], b.taken[:0]
	for _, s := range batch {
		k := s.n - s.done
		if shared && k > b.prefillShare {
			k = b.prefillShare
		}
		it := model.SeqBatch{Seq: s.seq, Batch: model.Batch{Pos: s.in.Pos + s.done}}
		if s.in.Tokens != nil {
			it.Tokens = s.in.Tokens[s.done : s.done+k]
		} else {
			it.Hidden = s.in.Hidden[s.done*c.NEmbd : (s.done+k)*c.NEmbd]
		}
		b.items = append(b.items, it)
		b.taken = append(b.taken, k)
	}
	if cap(b.outs) < len(batch) {
		b.outs = make([]model.Out, len(batch))
	}
	outs := b.outs[:len(batch)]
	b.rounds.Add(1)
	b.steps.Add(uint64(len(batch)))
	if int64(len(batch)) > b.maxBatch.Load() {
		b.maxBatch.Store(int64(len(batch))) // only the lead writes it
	}
	t0 := time.Now()
	err := b.st.ForwardBatch(b.items, outs)
	d := time.Since(t0)
	b.roundTime += (d - b.roundTime) / 4
	b.busy.Add(int64(d))
	if err != nil {
		if !shared {
			batch[0].err, batch[0].done = err, batch[0].n
			return nil
		}
		// One step's bad input must not fail the others: run each alone to find it.
		for i := range batch {
			if e := b.st.ForwardBatch(b.items[i:i+1], outs[i:i+1]); e != nil {
				batch[i].err = e
				b.taken[i] = batch[i].n - batch[i].done
			}
		}
	}
	var left []*step
	for i, s := range batch {
		k := b.taken[i]
		if s.err == nil {
			b.collect(s, outs[i], k)
		}
		s.done += k
		if s.done < s.n {
			left = append(left, s)
		}
	}
	return left
}

// collect keeps a round's result for the step: the logits of its last position (the last
// stage), or its hidden states, gathered over the rounds of a cut step.
func (b *batcher) collect(s *step, out model.Out, k int) {
	if out.Logits != nil || (s.done == 0 && k == s.n) {
		s.out = out
		return
	}
	e := b.st.Config.NEmbd
	if cap(s.acc) < s.n*e {
		s.acc = make([]float32, s.n*e)
	}
	s.acc = s.acc[:s.n*e]
	copy(s.acc[s.done*e:], out.Hidden[:k*e])
	s.out = model.Out{Hidden: s.acc}
}

// BatchStats are a stage's batching figures.
type BatchStats struct {
	// Rounds is the number of ForwardBatch calls, Steps the request steps they evaluated: their
	// ratio is the mean batch.
	Rounds uint64 `json:"rounds"`
	Steps  uint64 `json:"steps"`
	// MaxBatch is the most steps one round evaluated.
	MaxBatch int `json:"max_batch"`
	// BusySeconds is the time the rounds took: per round, the stage's own compute time, which
	// a request's time per token less the stages' rounds leaves to the hops between them.
	BusySeconds float64 `json:"busy_seconds"`
}

func (b *batcher) stats() BatchStats {
	return BatchStats{Rounds: b.rounds.Load(), Steps: b.steps.Load(), MaxBatch: int(b.maxBatch.Load()),
		BusySeconds: time.Duration(b.busy.Load()).Seconds()}
}
