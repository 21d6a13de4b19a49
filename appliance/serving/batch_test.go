package serving

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/store"
)

const storiesID = "stories260K-F32"

func newStoriesManager(t *testing.T, slots int) *Manager {
	t.Helper()
	m := New(Options{Catalog: store.NewCatalog([]string{storiesDir(t)}), Slots: slots})
	t.Cleanup(m.Close)
	return m
}

func acquire(t *testing.T, m *Manager) *Lease {
	t.Helper()
	l, err := m.Acquire(context.Background(), storiesID)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// run is one Generate with its callbacks recorded.
type run struct {
	gen    *model.Generation
	err    error
	texts  []string
	tokens []int32
}

func generateRecorded(ctx context.Context, g interface {
	Generate(context.Context, model.GenerateRequest) (*model.Generation, error)
}, req model.GenerateRequest) run {
	var r run
	req.OnText = func(s string) error { r.texts = append(r.texts, s); return nil }
	req.OnToken = func(res sampler.Result) error { r.tokens = append(r.tokens, res.Token); return nil }
	r.gen, r.err = g.Generate(ctx, req)
	return r
}

// Requests decoding together in a model's batch give exactly what the model gives each alone
// (tokens, streamed text, finish reason, logprobs), whatever ends them: the token limit, a
// stop sequence, or a full context.
func TestBatchedGenerationsMatchSolo(t *testing.T) {
	m := newStoriesManager(t, 8)
	ref := acquire(t, m)
	tok := ref.Model.Tokenizer
	var reqs []model.GenerateRequest
	for i, text := range []string{"Once upon a time", "Lily", "The dog ran", "Tom had a big red ball and", "One day"} {
		p := sampler.Params{Temperature: 0}
		if i%2 == 1 {
			p = sampler.Params{Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: uint64(i)}
		}
		reqs = append(reqs, model.GenerateRequest{Prompt: tok.Encode(text, true, false), MaxTokens: 20 + 3*i, Sampler: p})
	}
	reqs[1].Sampler.Logprobs, reqs[1].Sampler.TopLogprobs = true, 3
	reqs[2].Stop = []string{"box"}
	reqs[2].MaxTokens = 60
	reqs[3].MaxTokens, reqs[3].CtxLen = 0, 24 // until the context is full
	reqs[4].Stop = []string{"nope", "ark"}    // matches inside a token

	want := make([]run, len(reqs))
	for i, req := range reqs {
		want[i] = generateRecorded(context.Background(), ref.Model, req)
		if want[i].err != nil {
			t.Fatal(want[i].err)
		}
	}
	ref.Release()
	if want[2].gen.FinishReason != model.FinishStop || want[4].gen.FinishReason != model.FinishStop || want[3].gen.FinishReason != model.FinishLength {
		t.Fatalf("the requests do not cover stop sequences and a full context: %s %s %s",
			want[2].gen.FinishReason, want[4].gen.FinishReason, want[3].gen.FinishReason)
	}

	got := make([]run, len(reqs))
	var wg sync.WaitGroup
	start := make(chan struct{}) // submit together, so that they share steps
	for i, req := range reqs {
		l := acquire(t, m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer l.Release()
			<-start
			got[i] = generateRecorded(context.Background(), l, req)
		}()
	}
	close(start)
	wg.Wait()
	for i := range reqs {
		g, w := got[i], want[i]
		if g.err != nil {
			t.Fatalf("request %d: %v", i, g.err)
		}
		if !reflect.DeepEqual(g.gen.Tokens, w.gen.Tokens) || g.gen.Text != w.gen.Text || g.gen.FinishReason != w.gen.FinishReason ||
			!reflect.DeepEqual(g.gen.Logprobs, w.gen.Logprobs) || !reflect.DeepEqual(g.gen.PromptTokens, w.gen.PromptTokens) {
			t.Errorf("request %d batched: %q (%s, %d tokens)\nalone: %q (%s, %d tokens)", i, g.gen.Text, g.gen.FinishReason, len(g.gen.Tokens),
				w.gen.Text, w.gen.FinishReason, len(w.gen.Tokens))
		}
		if !reflect.DeepEqual(g.texts, w.texts) || !reflect.DeepEqual(g.tokens, w.tokens) {
			t.Errorf("request %d: callbacks got texts %q tokens %v, alone %q %v", i, g.texts, g.tokens, w.texts, w.tokens)
		}
	}
	if st := m.models[storiesID].sched.Stats(); st.MaxActive < 2 {
		t.Errorf("the requests never shared a step: %+v", st)
	}
}

// A consumer that stops reading (its OnText blocks, as a write to a client that reads nothing
// eventually does) holds up no one: the requests batched with it complete, its own sequence
// runs to its end and leaves the batch, and it gets all of its text once it reads again.
func TestStalledConsumerDoesNotStallBatch(t *testing.T) {
	m := newStoriesManager(t, 4)
	ref := acquire(t, m)
	prompt := func(i int) []int32 { return ref.Model.Tokenizer.Encode(fmt.Sprintf("Story %d", i), true, false) }
	stalledReq := model.GenerateRequest{Prompt: prompt(0), MaxTokens: 200, Sampler: sampler.Params{Temperature: 0}}
	want, err := ref.Model.Generate(context.Background(), stalledReq)
	if err != nil {
		t.Fatal(err)
	}
	ref.Release()

	stalled := acquire(t, m)
	started, unblock := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var text strings.Builder
	req := stalledReq
	req.OnText = func(s string) error {
		once.Do(func() { close(started) })
		<-unblock
		text.WriteString(s)
		return nil
	}
	stalledDone := make(chan run, 1)
	go func() {
		defer stalled.Release()
		g, err := stalled.Generate(context.Background(), req)
		stalledDone <- run{gen: g, err: err}
	}()
	<-started

	// Three more requests share the batch and finish while the first consumer is stuck.
	others := make(chan error, 3)
	for i := 1; i <= 3; i++ {
		l := acquire(t, m)
		go func() {
			defer l.Release()
			_, err := l.Generate(context.Background(), model.GenerateRequest{Prompt: prompt(i), MaxTokens: 30, Sampler: sampler.Params{Temperature: 0}})
			others <- err
		}()
	}
	timeout := time.After(30 * time.Second)
	for range 3 {
		select {
		case err := <-others:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			close(unblock)
			t.Fatal("requests batched with a stalled consumer did not finish")
		}
	}
	// The stalled request's own sequence finishes too: all four have completed in the
	// scheduler and none is left in the batch, though its consumer has read one piece.
	sched := m.models[storiesID].sched
	for st := sched.Stats(); st.Completed < 4 || st.Active != 0; st = sched.Stats() {
		select {
		case <-timeout:
			close(unblock)
			t.Fatalf("the stalled request's sequence stayed in the batch: %+v", st)
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case <-stalledDone:
		t.Fatal("the stalled request returned before its consumer read")
	default:
	}
	close(unblock)
	r := <-stalledDone
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.gen.Text != want.Text || text.String() != want.Text || len(r.gen.Tokens) != 200 {
		t.Fatalf("stalled request got %q (streamed %q), alone %q", r.gen.Text, text.String(), want.Text)
	}
}

// An error from a callback (a client gone mid-stream) ends the request with that error and
// takes its sequence out of the batch before Generate returns, so the lease's slot is free.
func TestCallbackErrorLeavesBatch(t *testing.T) {
	m := newStoriesManager(t, 2)
	l := acquire(t, m)
	defer l.Release()
	gone := errors.New("client gone")
	n := 0
	_, err := l.Generate(context.Background(), model.GenerateRequest{
		Prompt: l.Model.Tokenizer.Encode("Once upon a time", true, false), MaxTokens: 400, Sampler: sampler.Params{Temperature: 0},
		OnText: func(string) error {
			if n++; n == 3 {
				return gone
			}
			return nil
		},
	})
	if !errors.Is(err, gone) {
		t.Fatalf("Generate: %v, want the callback's error", err)
	}
	st := m.models[storiesID].sched.Stats()
	if st.Active != 0 || st.Completed != 1 {
		t.Fatalf("after the error: %+v", st)
	}
	// Cancelling the context does the same.
	ctx, cancel := context.WithCancel(context.Background())
	_, err = l.Generate(ctx, model.GenerateRequest{
		Prompt: l.Model.Tokenizer.Encode("Lily", true, false), MaxTokens: 400, Sampler: sampler.Params{Temperature: 0},
		OnText: func(string) error { cancel(); return nil },
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Generate: %v", err)
	}
	if st := m.models[storiesID].sched.Stats(); st.Active != 0 || st.Completed != 2 {
		t.Fatalf("after the cancel: %+v", st)
	}
}
