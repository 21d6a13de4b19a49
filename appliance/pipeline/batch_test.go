package pipeline

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/model"
)

func loadStage(t *testing.T, path string, first, last int) *model.Stage {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := model.LoadStage(f, first, last, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// together runs the steps in one round: the batcher is made busy, every step queues, and the
// first is then handed the lead as a finishing round would. It returns copies of the results.
func together(t *testing.T, b *batcher, steps []*step, ins []model.Batch) ([]model.Out, []error) {
	t.Helper()
	b.mu.Lock()
	b.running = true
	b.mu.Unlock()
	outs := make([]model.Out, len(steps))
	errs := make([]error, len(steps))
	var wg sync.WaitGroup
	for i := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := b.forward(steps[i], ins[i])
			outs[i] = model.Out{Hidden: slices.Clone(out.Hidden), Logits: slices.Clone(out.Logits)}
			errs[i] = err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n == len(steps) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d steps queued", n, len(steps))
		}
		time.Sleep(time.Millisecond)
	}
	b.mu.Lock()
	first := b.queue[0]
	b.mu.Unlock()
	first.wake <- false
	wg.Wait()
	return outs, errs
}

func sameOut(t *testing.T, what string, got, want model.Out) {
	t.Helper()
	if !slices.Equal(got.Hidden, want.Hidden) || !slices.Equal(got.Logits, want.Logits) {
		t.Errorf("%s: batched result differs from Forward alone (hidden %d vs %d values, logits %d vs %d)",
			what, len(got.Hidden), len(want.Hidden), len(got.Logits), len(want.Logits))
	}
}

// TestBatcherBitIdentical: steps of four requests (prompts of 3, 40, 1 and 5 tokens, then one
// decode token each) evaluated in shared rounds at a first and a last stage give exactly what
// Forward gives each request alone; the 40-token prompt is cut while the others wait.
func TestBatcherBitIdentical(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	st0, st1 := loadStage(t, path, 0, 2), loadStage(t, path, 2, 5)
	prompts := make([][]int32, 4)
	for i, n := range []int{3, 40, 1, 5} {
		for j := range n {
			prompts[i] = append(prompts[i], int32(1+(37*i+11*j)%500))
		}
	}
	const ctx = 64
	// Alone: each request on its own sequences, one Forward at a time.
	want := make([][2][2]model.Out, len(prompts)) // [request][prompt, decode][stage]
	for i, p := range prompts {
		q0, q1 := st0.NewSequence(ctx), st1.NewSequence(ctx)
		for k, in := range []model.Batch{{Tokens: p}, {Pos: len(p), Tokens: []int32{int32(100 + i)}}} {
			h, err := st0.Forward(q0, in)
			if err != nil {
				t.Fatal(err)
			}
			l, err := st1.Forward(q1, model.Batch{Pos: in.Pos, Hidden: h.Hidden})
			if err != nil {
				t.Fatal(err)
			}
			want[i][k] = [2]model.Out{h, l}
		}
	}
	began := time.Now()
	b0, b1 := newBatcher(st0, 1, 16), newBatcher(st1, 1, 16)
	s0, s1 := make([]*step, len(prompts)), make([]*step, len(prompts))
	for i := range prompts {
		s0[i], s1[i] = b0.open(st0.NewSequence(ctx)), b1.open(st1.NewSequence(ctx))
	}
	for k := range 2 {
		ins := make([]model.Batch, len(prompts))
		for i, p := range prompts {
			ins[i] = model.Batch{Tokens: p}
			if k == 1 {
				ins[i] = model.Batch{Pos: len(p), Tokens: []int32{int32(100 + i)}}
			}
		}
		hid, errs := together(t, b0, s0, ins)
		for i := range ins {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			sameOut(t, fmt.Sprintf("request %d step %d, first stage", i, k), hid[i], want[i][k][0])
			ins[i] = model.Batch{Pos: ins[i].Pos, Hidden: hid[i].Hidden}
		}
		logits, errs := together(t, b1, s1, ins)
		for i := range ins {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			sameOut(t, fmt.Sprintf("request %d step %d, last stage", i, k), logits[i], want[i][k][1])
		}
	}
	// Prompts: a round of four (the 40-token one gives 16 tokens), then its 24 others alone.
	// Decode: one round of four.
	for name, b := range map[string]*batcher{"first": b0, "last": b1} {
		if s := b.stats(); s.MaxBatch != 4 || s.Rounds != 3 || s.Steps != 9 {
			t.Errorf("%s stage: %+v, want 3 rounds of 9 steps, at most 4 in one", name, s)
		}
	}
	// The rounds' time: more than none, less than the test's.
	for name, b := range map[string]*batcher{"first": b0, "last": b1} {
		if s := b.stats(); s.BusySeconds <= 0 || s.BusySeconds > time.Since(began).Seconds() {
			t.Errorf("%s stage: busy %v s of the test's %v", name, s.BusySeconds, time.Since(began))
		}
	}
}

// TestBatcherIsolatesBadStep: a step the stage refuses fails alone; the others of its round
// get their results.
func TestBatcherIsolatesBadStep(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	st := loadStage(t, path, 0, 5)
	b := newBatcher(st, 1, 0)
	steps := []*step{b.open(st.NewSequence(16)), b.open(st.NewSequence(16)), b.open(st.NewSequence(16))}
	ins := []model.Batch{{Tokens: []int32{1, 2}}, {Tokens: []int32{int32(st.Config.NVocab)}}, {Tokens: []int32{3}}}
	outs, errs := together(t, b, steps, ins)
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "outside the vocabulary") {
		t.Fatalf("the bad step: %v", errs[1])
	}
	for _, i := range []int{0, 2} {
		if errs[i] != nil {
			t.Fatalf("step %d failed with its neighbour: %v", i, errs[i])
		}
		want, err := st.Forward(st.NewSequence(16), ins[i])
		if err != nil {
			t.Fatal(err)
		}
		sameOut(t, fmt.Sprintf("step %d", i), outs[i], want)
	}
}

// TestBatcherGroupsPerStage: with four requests live at a stage of a two-stage pipeline, a
// round takes two steps, so the requests form two groups that the stages work on in turn.
func TestBatcherGroupsPerStage(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	st := loadStage(t, path, 0, 5)
	b := newBatcher(st, 2, 0)
	var steps []*step
	var ins []model.Batch
	for i := range 4 {
		steps = append(steps, b.open(st.NewSequence(16)))
		ins = append(ins, model.Batch{Tokens: []int32{int32(1 + i)}})
	}
	outs, errs := together(t, b, steps, ins)
	for i := range steps {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		want, err := st.Forward(st.NewSequence(16), ins[i])
		if err != nil {
			t.Fatal(err)
		}
		sameOut(t, fmt.Sprintf("step %d", i), outs[i], want)
	}
	if s := b.stats(); s.Rounds != 2 || s.MaxBatch != 2 {
		t.Errorf("%+v, want 2 rounds of 2 steps", s)
	}
	b.close(steps[0])
	b.close(steps[1])
	if n := b.limit(); n != 1 {
		t.Errorf("two requests left on two stages: a round takes %d steps, want 1", n)
	}
}

// TestBatcherConcurrentRequests: six requests decode at once through one batcher with no help
// from the test; every one gets exactly its lone result and the batcher ends idle.
func TestBatcherConcurrentRequests(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	st := loadStage(t, path, 0, 5)
	b := newBatcher(st, 1, 4)
	const steps = 24
	run := func(i int, fwd func(*model.Seq, model.Batch) (model.Out, error)) []float32 {
		seq := st.NewSequence(64)
		var trail []float32
		in := model.Batch{Tokens: []int32{int32(1 + i), int32(2 + i), int32(3 + i), int32(4 + i), int32(5 + i), int32(6 + i)}}
		for range steps {
			out, err := fwd(seq, in)
			if err != nil {
				t.Error(err)
				return nil
			}
			best := 0
			for v := range out.Logits {
				if out.Logits[v] > out.Logits[best] {
					best = v
				}
			}
			trail = append(trail, out.Logits[best])
			in = model.Batch{Pos: in.Pos + max(len(in.Tokens), 1), Tokens: []int32{int32(best)}}
		}
		return trail
	}
	want := make([][]float32, 6)
	for i := range want {
		want[i] = run(i, st.Forward)
	}
	var wg sync.WaitGroup
	for i := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var stp *step
			got := run(i, func(seq *model.Seq, in model.Batch) (model.Out, error) {
				if stp == nil {
					stp = b.open(seq)
					defer b.close(stp)
				}
				return b.forward(stp, in)
			})
			if !slices.Equal(got, want[i]) {
				t.Errorf("request %d: batched greedy trail differs from its lone run", i)
			}
		}()
	}
	wg.Wait()
	s := b.stats()
	t.Logf("MEASURE 6 concurrent requests × %d steps: %d rounds, %d steps, at most %d in one", steps, s.Rounds, s.Steps, s.MaxBatch)
	if s.Steps < 6*steps || s.Rounds > s.Steps {
		t.Errorf("stats %+v", s)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running || len(b.queue) != 0 {
		t.Errorf("the batcher is left running=%v with %d queued", b.running, len(b.queue))
	}
}

// TestBatcherGathers: with another request live, a round waits for its step (bounded); a lone
// request does not wait at all.
func TestBatcherGathers(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	st := loadStage(t, path, 0, 5)
	b := newBatcher(st, 1, 0)
	b.gatherMax, b.roundTime = time.Minute, time.Hour // the wait is bounded only by the test
	s1, s2 := b.open(st.NewSequence(16)), b.open(st.NewSequence(16))
	errs := make(chan error, 2)
	go func() {
		_, err := b.forward(s1, model.Batch{Tokens: []int32{1}})
		errs <- err
	}()
	time.Sleep(50 * time.Millisecond) // s1 leads and waits for s2
	go func() {
		_, err := b.forward(s2, model.Batch{Tokens: []int32{2}})
		errs <- err
	}()
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the steps did not finish")
		}
	}
	if s := b.stats(); s.Rounds != 1 || s.MaxBatch != 2 {
		t.Fatalf("%+v, want one round of both steps", s)
	}
	// s2's request ends: s1 alone never waits, however long the bound.
	b.close(s2)
	done := make(chan error, 1)
	go func() {
		_, err := b.forward(s1, model.Batch{Pos: 1, Tokens: []int32{3}})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a lone request waited for others")
	}
	// With a request live that does not come, the wait ends at the bound.
	s3 := b.open(st.NewSequence(16))
	defer b.close(s3)
	b.gatherMax = 20 * time.Millisecond
	start := time.Now()
	if _, err := b.forward(s1, model.Batch{Pos: 2, Tokens: []int32{4}}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Fatalf("the round started after %s without waiting for the live request", took)
	}
}

// TestBatcherSettles: a round does not start while a step the last round finished has not been
// sent on by its request's goroutine, and waits no longer than the bound for one that never is.
func TestBatcherSettles(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	st := loadStage(t, path, 0, 5)
	b := newBatcher(st, 2, 0) // two live requests over two stages: one step a round
	b.roundTime, b.settleMax = time.Hour, time.Minute
	s1, s2 := b.open(st.NewSequence(16)), b.open(st.NewSequence(16))
	defer b.close(s2)
	b.mu.Lock()
	b.running = true // a round is under way: both steps queue behind it
	b.mu.Unlock()
	errs := make(chan error, 2)
	for i, s := range []*step{s1, s2} {
		go func() {
			_, err := b.forward(s, model.Batch{Tokens: []int32{int32(i + 1)}})
			errs <- err
		}()
		waitQueued(t, b, i+1)
	}
	s1.wake <- false // the round ends and hands the lead to s1
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	// s1 ran alone and handed the lead to s2, whose round waits for s1's result to be sent.
	time.Sleep(100 * time.Millisecond)
	if r := b.stats().Rounds; r != 1 {
		t.Fatalf("%d rounds ran before the first round's step was sent on, want 1", r)
	}
	b.sent(s1)
	select {
	case err := <-errs:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the round did not start once the step was sent")
	}
	if r := b.stats().Rounds; r != 2 {
		t.Fatalf("%d rounds, want 2", r)
	}
	// s1's goroutine never says sent this time: the next round waits for the bound, no more.
	b.close(s1)
	s3 := b.open(st.NewSequence(16))
	defer b.close(s3)
	b.settleMax = 20 * time.Millisecond
	b.mu.Lock()
	b.running = true
	b.mu.Unlock()
	for i, s := range []*step{s2, s3} {
		go func() {
			_, err := b.forward(s, model.Batch{Pos: 1 - i, Tokens: []int32{int32(i + 3)}})
			errs <- err
		}()
		waitQueued(t, b, i+1)
	}
	s2.wake <- false
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-errs:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the round waited past the bound for a step that was never sent")
	}
	if took := time.Since(start); took < 15*time.Millisecond {
		t.Fatalf("the round started %s after the step left, without waiting for it to be sent", took)
	}
}

// waitQueued waits until n steps are queued at b.
func waitQueued(t *testing.T, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		k := len(b.queue)
		b.mu.Unlock()
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d steps queued", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatcherSettlesWhenIdle: a step that finds the stage idle still waits for the results of
// the last round to be sent before it runs its own.
func TestBatcherSettlesWhenIdle(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	st := loadStage(t, path, 0, 5)
	b := newBatcher(st, 2, 0)
	b.roundTime, b.settleMax = time.Hour, time.Minute
	s1, s2 := b.open(st.NewSequence(16)), b.open(st.NewSequence(16))
	defer b.close(s1)
	defer b.close(s2)
	if _, err := b.forward(s1, model.Batch{Tokens: []int32{1}}); err != nil {
		t.Fatal(err)
	}
	// s1's round is over and the stage idle, but s1's goroutine has not sent its result yet.
	done := make(chan error, 1)
	go func() {
		_, err := b.forward(s2, model.Batch{Tokens: []int32{2}})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the round ran before the last round's result was sent (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	b.sent(s1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the round did not start once the result was sent")
	}
}

// A request decoding alone goes through the batcher without allocating: its step, the
// batcher's wake-ups and the stage's buffers are all reused from step to step.
func TestBatcherStepAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	path := storiesPath(t, "stories260K-F32.gguf")
	st := loadStage(t, path, 0, 5)
	b := newBatcher(st, 1, 0)
	seq := st.NewSequence(64)
	s := b.open(seq)
	defer b.close(s)
	tok := []int32{1}
	step := func() {
		if seq.Len() == seq.Cap() {
			if err := seq.Truncate(0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.forward(s, model.Batch{Pos: seq.Len(), Tokens: tok}); err != nil {
			t.Fatal(err)
		}
		b.sent(s)
	}
	step()
	if a := testing.AllocsPerRun(50, step); a > 0 {
		t.Errorf("a decode step through the batcher: %.1f allocations", a)
	}
}
