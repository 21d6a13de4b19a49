package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
)

// fixturesDir resolves the fixture pack: EXO_FIXTURES, else ../shared/fixtures next to the
// directory holding go.mod.
func fixturesDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("EXO_FIXTURES"); dir != "" {
		return dir
	}
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "..", "shared", "fixtures")
		}
		if filepath.Dir(d) == d {
			return ""
		}
		d = filepath.Dir(d)
	}
}

func openModel(t testing.TB, rel string) *model.Model {
	t.Helper()
	p := filepath.Join(fixturesDir(t), rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("fixture missing: %v", err)
		}
		t.Skipf("fixture missing: %v", err)
	}
	m, err := model.Open(p, model.Options{KVType: ggml.F16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

const stories = "stories260K/stories260K-Q8_0.gguf"

// solo generates with the model alone (model.Generate), the reference each scheduled request
// must reproduce exactly.
func solo(t *testing.T, m *model.Model, prompt []int32, params sampler.Params, n int) []int32 {
	t.Helper()
	g, err := m.Generate(context.Background(), model.GenerateRequest{Prompt: prompt, MaxTokens: n, Sampler: params, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	return g.Tokens
}

func newScheduler(t *testing.T, m *model.Model, cfg Config) *Scheduler {
	t.Helper()
	cfg.Stage = m.Stage
	if cfg.IsEOG == nil {
		cfg.IsEOG = m.Tokenizer.IsEOG
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

var texts = []string{
	"Once upon a time",
	"Lily liked to play with her ball in the park",
	"The dog",
	"One day, a little bird flew over the big tree and saw a cat who was very hungry",
	"Tom and Sue",
	"There was a girl",
	"The sun was hot",
	"A boy named Max had a red car",
}

// Eight requests running together, with prompts of different lengths, greedy and seeded
// sampling, each produce exactly the tokens they produce alone, and were batched.
func TestConcurrentRequestsMatchSolo(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 8, StepTokens: 24})
	const n = 20
	got := make([][]int32, len(texts))
	want := make([][]int32, len(texts))
	params := make([]sampler.Params, len(texts))
	for i, text := range texts {
		params[i] = sampler.Params{Temperature: 0}
		if i%2 == 1 {
			params[i] = sampler.Params{Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: uint64(i)}
		}
		want[i] = solo(t, m, m.Tokenizer.Encode(text, true, false), params[i], n)
	}
	// Submitted back to back from one goroutine (prompts encoded first), so that the requests
	// meet in the batch even where a busy machine starts goroutines late: eight goroutines
	// each encoding and submitting its own let a loaded CI runner finish one request of this
	// tiny model before the next arrived.
	prompts := make([][]int32, len(texts))
	for i, text := range texts {
		prompts[i] = m.Tokenizer.Encode(text, true, false)
	}
	handles := make([]*Handle, len(texts))
	for i := range texts {
		h, err := s.Submit(context.Background(), Request{
			Prompt: prompts[i], Sampler: params[i], MaxTokens: n, IgnoreEOS: true,
			OnToken: func(tok int32, _ sampler.Result) error { got[i] = append(got[i], tok); return nil },
		})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		handles[i] = h
	}
	for i, h := range handles {
		res, err := h.Wait()
		if err != nil {
			t.Errorf("request %d: %v", i, err)
			continue
		}
		if res.FinishReason != FinishLength || res.Tokens != n {
			t.Errorf("request %d: finish %q after %d tokens, want length after %d", i, res.FinishReason, res.Tokens, n)
		}
	}
	for i := range texts {
		if !equal(got[i], want[i]) {
			t.Errorf("request %d: scheduled %v, alone %v", i, got[i], want[i])
		}
	}
	st := s.Stats()
	if st.MaxActive < 2 {
		t.Errorf("at most %d sequences ran together; requests were not batched", st.MaxActive)
	}
	t.Logf("stats: %+v", st)
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Cancelling a request removes it at the next step: no token after the cancellation, Wait
// returns the context's error, its sequence is released, and the others are unaffected.
func TestCancellationFreesWithinOneStep(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var after int
	cancelled := false
	prompt := m.Tokenizer.Encode(texts[0], true, false)
	other := m.Tokenizer.Encode(texts[1], true, false)
	want := solo(t, m, other, sampler.Params{}, 30)
	var got []int32
	h2, err := s.Submit(context.Background(), Request{Prompt: other, MaxTokens: 30, IgnoreEOS: true,
		OnToken: func(tok int32, _ sampler.Result) error { got = append(got, tok); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	h1, err := s.Submit(ctx, Request{Prompt: prompt, MaxTokens: 1000, IgnoreEOS: true, CtxLen: 256,
		OnToken: func(int32, sampler.Result) error {
			if cancelled {
				after++
			}
			if !cancelled {
				cancel() // the callback runs on the scheduler's goroutine, between two steps
				cancelled = true
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := h1.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want context.Canceled", err)
	}
	if after != 0 || res.Tokens != 1 {
		t.Errorf("cancelled request got %d tokens after cancellation (%d in all)", after, res.Tokens)
	}
	if _, err := h2.Wait(); err != nil {
		t.Fatal(err)
	}
	if !equal(got, want) {
		t.Errorf("the other request: %v, alone %v", got, want)
	}
	// A request whose context is done before admission never runs.
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := s.Generate(done, Request{Prompt: prompt, MaxTokens: 5}); !errors.Is(err, context.Canceled) {
		t.Errorf("request cancelled before admission: %v", err)
	}
}

// A prompt longer than a step is fed in chunks while another sequence keeps decoding: the
// decoder gets a token at every step of the other's prefill, and both match their solo runs.
func TestChunkedPrefillDoesNotStall(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 2, StepTokens: 4})
	long := m.Tokenizer.Encode(texts[3]+" "+texts[1]+" "+texts[7], true, false)
	short := m.Tokenizer.Encode(texts[2], true, false)
	wantLong := solo(t, m, long, sampler.Params{}, 5)
	wantShort := solo(t, m, short, sampler.Params{}, 40)

	var mu sync.Mutex
	var gotShort, gotLong []int32
	var stepsAtLongFirst int64 = -1
	started, submitted := make(chan struct{}), make(chan struct{})
	h1, err := s.Submit(context.Background(), Request{Prompt: short, MaxTokens: 40, IgnoreEOS: true,
		OnToken: func(tok int32, _ sampler.Result) error {
			mu.Lock()
			gotShort = append(gotShort, tok)
			n := len(gotShort)
			mu.Unlock()
			if n == 2 {
				// Hold the decoder until the long request is queued: on a loaded machine the
				// test goroutine can otherwise wake after the short request has nearly finished.
				close(started)
				<-submitted
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	before := s.Stats().Steps
	shortBefore := func() int { mu.Lock(); defer mu.Unlock(); return len(gotShort) }()
	h2, err := s.Submit(context.Background(), Request{Prompt: long, MaxTokens: 5, IgnoreEOS: true,
		OnToken: func(tok int32, _ sampler.Result) error {
			mu.Lock()
			defer mu.Unlock()
			if gotLong == nil {
				stepsAtLongFirst = int64(len(gotShort) - shortBefore)
			}
			gotLong = append(gotLong, tok)
			return nil
		}})
	close(submitted)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Wait(); err != nil {
		t.Fatal(err)
	}
	// The long prompt needs ceil(len/3) steps with 3 of 4 step tokens free; the short request
	// received a token in each of them.
	if min := int64(len(long)/3) - 1; stepsAtLongFirst < min {
		t.Errorf("short request got %d tokens during a %d-token prefill, want >= %d (steps before: %d)", stepsAtLongFirst, len(long), min, before)
	}
	if !equal(gotLong, wantLong) || !equal(gotShort, wantShort) {
		t.Errorf("chunked prefill changed results: long %v want %v; short %v want %v", gotLong, wantLong, gotShort, wantShort)
	}
}

func TestStopsAndErrors(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 2})
	prompt := m.Tokenizer.Encode(texts[0], true, false)

	// ErrStop from the callback: a normal stop.
	res, err := s.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 50, IgnoreEOS: true,
		OnToken: func(int32, sampler.Result) error { return ErrStop }})
	if err != nil || res.FinishReason != FinishStop || res.Tokens != 1 {
		t.Errorf("ErrStop: %+v, %v", res, err)
	}
	// Any other error ends the request with it.
	boom := errors.New("client went away")
	if _, err := s.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 50,
		OnToken: func(int32, sampler.Result) error { return boom }}); !errors.Is(err, boom) {
		t.Errorf("callback error: %v", err)
	}
	// End of generation: the EOG token is not passed on.
	eog := solo(t, m, prompt, sampler.Params{}, 3)[2]
	s2 := newScheduler(t, m, Config{IsEOG: func(id int32) bool { return id == eog }})
	var toks []int32
	res, err = s2.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 50,
		OnToken: func(tok int32, _ sampler.Result) error { toks = append(toks, tok); return nil }})
	if err != nil || res.FinishReason != FinishStop || len(toks) != 2 {
		t.Errorf("end of generation: %+v, %v, tokens %v", res, err, toks)
	}
	// Context full.
	res, err = s.Generate(context.Background(), Request{Prompt: prompt, CtxLen: len(prompt) + 3, IgnoreEOS: true})
	if err != nil || res.FinishReason != FinishLength || res.Tokens != 4 {
		t.Errorf("full context: %+v, %v", res, err)
	}
	// Invalid requests fail on submission.
	for _, req := range []Request{{}, {Prompt: []int32{-1}}, {Prompt: prompt, CtxLen: len(prompt)}, {Prompt: prompt, Sampler: sampler.Params{TopP: 2}}} {
		if _, err := s.Submit(context.Background(), req); err == nil {
			t.Errorf("request %+v accepted", req)
		}
	}
}

func TestQueueAndClose(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 1, Queue: 1})
	block := make(chan struct{})
	prompt := m.Tokenizer.Encode(texts[0], true, false)
	h1, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 100, IgnoreEOS: true, CtxLen: 256,
		OnToken: func(int32, sampler.Result) error { <-block; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the first request runs, then fill the queue.
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Steps == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	h2, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 5}); err == nil || !strings.Contains(err.Error(), "full") {
		t.Errorf("third request with a queue of 1: %v", err)
	}
	close(block)
	go s.Close()
	if _, err := h1.Wait(); err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("running request at Close: %v", err)
	}
	if _, err := h2.Wait(); err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("queued request at Close: %v", err)
	}
	s.Close()
	if _, err := s.Submit(context.Background(), Request{Prompt: prompt}); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close: %v", err)
	}
}

// BenchmarkAggregate measures generation with 1 and 8 concurrent sequences on the e256 fixture
// (tokens/s over all sequences).
func BenchmarkAggregate(b *testing.B) {
	m := openModel(b, "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf")
	for _, n := range []int{1, 8} {
		b.Run(map[int]string{1: "seqs=1", 8: "seqs=8"}[n], func(b *testing.B) {
			s, err := New(Config{Stage: m.Stage, MaxSeqs: n})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			prompt := m.Tokenizer.Encode("Once upon a time", true, false)
			const gen = 32
			for b.Loop() {
				var wg sync.WaitGroup
				for i := 0; i < n; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := s.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: gen, IgnoreEOS: true, CtxLen: 64}); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(n*gen)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// A small model's steps are split into one ForwardBatch per core; with one thread they are
// whole. Either way, and with uneven parts (three threads), every request matches its solo run.
func TestSplitStepsMatchSolo(t *testing.T) {
	ref := openModel(t, stories)
	const n = 12
	var prompts [][]int32
	var want [][]int32
	for _, text := range texts[:6] {
		p := ref.Tokenizer.Encode(text, true, false)
		prompts = append(prompts, p)
		want = append(want, solo(t, ref, p, sampler.Params{}, n))
	}
	for _, threads := range []int{1, 3} {
		m, err := model.FromFile(ref.File, model.Options{KVType: ggml.F16, Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		s := newScheduler(t, m, Config{MaxSeqs: 6, StepTokens: 16})
		if got := s.pool.Threads(); got != threads {
			t.Fatalf("scheduler pool has %d threads, want %d", got, threads)
		}
		got := make([][]int32, len(prompts))
		var wg sync.WaitGroup
		for i, p := range prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Generate(context.Background(), Request{Prompt: p, MaxTokens: n, IgnoreEOS: true,
					OnToken: func(tok int32, _ sampler.Result) error { got[i] = append(got[i], tok); return nil }})
				if err != nil {
					t.Errorf("%d threads, request %d: %v", threads, i, err)
				}
			}()
		}
		wg.Wait()
		for i := range prompts {
			if !equal(got[i], want[i]) {
				t.Errorf("%d threads, request %d: scheduled %v, alone %v", threads, i, got[i], want[i])
			}
		}
	}
}

// A request whose prompt begins with an earlier request's tokens (its prompt and what it
// generated) takes their keys and values from the finished sequence instead of evaluating them
// again, whether that sequence has room for the new request (cut back) or not (extended), and
// generates exactly what it generates alone; an unrelated prompt shares only its first token.
func TestPrefixReuse(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 2})
	// Log-probabilities of the chosen and the top tokens, so that a logit changed too little to
	// change a greedy choice still shows.
	params := sampler.Params{Logprobs: true, TopLogprobs: 4}
	run := func(prompt []int32, n int) ([]int32, Result) {
		t.Helper()
		var got []int32
		var lps []sampler.Result
		res, err := s.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: n, IgnoreEOS: true, Sampler: params,
			OnToken: func(tok int32, r sampler.Result) error { got = append(got, tok); lps = append(lps, r); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		sameAsAlone(t, m, prompt, n, params, res, got, lps)
		return got, res
	}
	a := m.Tokenizer.Encode(texts[0], true, false)
	genA, resA := run(a, 12)
	if resA.CachedTokens != 0 {
		t.Fatalf("first request found %d cached tokens", resA.CachedTokens)
	}
	// A's sequence holds its prompt and the 11 tokens fed back; b continues 6 of them and then
	// goes its own way, with a longer context than A's sequence has.
	more := m.Tokenizer.Encode(" and the sun", false, false)
	b := append(append(append([]int32(nil), a...), genA[:6]...), more...)
	_, resB := run(b, 10)
	if want := len(a) + 6; resB.CachedTokens != want {
		t.Errorf("continuation: %d cached tokens, want %d", resB.CachedTokens, want)
	}
	// All of B's prompt but its last token, from B's sequence (which has room: cut back).
	c := b[:len(b)-1]
	_, resC := run(c, 3)
	if want := len(c) - 1; resC.CachedTokens != want {
		t.Errorf("repeated prompt: %d cached tokens, want %d", resC.CachedTokens, want)
	}
	d := m.Tokenizer.Encode(texts[2], true, false)
	_, resD := run(d, 4)
	if want := commonPrefix(d, a); resD.CachedTokens != want || want > 1 {
		t.Errorf("unrelated prompt: %d cached tokens, want %d (the shared start)", resD.CachedTokens, want)
	}
	if got, want := s.Stats().CachedTokens, int64(resB.CachedTokens+resC.CachedTokens+resD.CachedTokens); got != want {
		t.Errorf("Stats.CachedTokens = %d, want %d", got, want)
	}
}

// sameAsAlone fails t unless the tokens and log-probabilities a scheduled request produced are
// model.Generate's for the same request alone, bit for bit.
func sameAsAlone(t *testing.T, m *model.Model, prompt []int32, n int, params sampler.Params, res Result, got []int32, lps []sampler.Result) {
	t.Helper()
	g, err := m.Generate(context.Background(), model.GenerateRequest{Prompt: prompt, MaxTokens: n, Sampler: params, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if !equal(got, g.Tokens) {
		t.Fatalf("prompt of %d tokens (%d cached): generated %v, alone %v", len(prompt), res.CachedTokens, got, g.Tokens)
	}
	for i, r := range lps {
		w := g.Logprobs[i]
		if r.Logprob != w.Logprob || len(r.Top) != len(w.Top) {
			t.Fatalf("prompt of %d tokens (%d cached), token %d: logprob %v, alone %v", len(prompt), res.CachedTokens, i, r.Logprob, w.Logprob)
		}
		for k := range r.Top {
			if r.Top[k] != w.Top[k] {
				t.Fatalf("prompt of %d tokens (%d cached), token %d: top %v, alone %v", len(prompt), res.CachedTokens, i, r.Top, w.Top)
			}
		}
	}
}

// A request admitted while another is running with the same start of its prompt copies that
// part of the running sequence's cache, and both generate what they generate alone.
func TestPrefixReuseFromRunningRequest(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 2})
	params := sampler.Params{Logprobs: true, TopLogprobs: 4}
	shared := m.Tokenizer.Encode(texts[1]+" "+texts[3], true, false)
	a := append(append([]int32(nil), shared...), m.Tokenizer.Encode(" and", false, false)...)
	b := append(append([]int32(nil), shared...), m.Tokenizer.Encode(" but then", false, false)...)
	common := commonPrefix(a, b) // the shared text, and perhaps the tails' first piece
	if common < len(shared) || common >= len(b)-1 {
		t.Fatalf("test prompts share %d tokens, want %d or a little more", common, len(shared))
	}
	var gotA, gotB []int32
	var lpsA, lpsB []sampler.Result
	started, submitted := make(chan struct{}), make(chan struct{})
	ha, err := s.Submit(context.Background(), Request{Prompt: a, MaxTokens: 20, IgnoreEOS: true, Sampler: params,
		OnToken: func(tok int32, r sampler.Result) error {
			gotA, lpsA = append(gotA, tok), append(lpsA, r)
			if len(gotA) == 2 {
				close(started) // hold A running until B is queued
				<-submitted
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	hb, err := s.Submit(context.Background(), Request{Prompt: b, MaxTokens: 8, IgnoreEOS: true, Sampler: params,
		OnToken: func(tok int32, r sampler.Result) error { gotB, lpsB = append(gotB, tok), append(lpsB, r); return nil }})
	close(submitted)
	if err != nil {
		t.Fatal(err)
	}
	resB, err := hb.Wait()
	if err != nil {
		t.Fatal(err)
	}
	resA, err := ha.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if resB.CachedTokens != common || resA.CachedTokens != 0 {
		t.Errorf("cached tokens: B %d (want %d, from running A), A %d", resB.CachedTokens, common, resA.CachedTokens)
	}
	sameAsAlone(t, m, a, 20, params, resA, gotA, lpsA)
	sameAsAlone(t, m, b, 8, params, resB, gotB, lpsB)
}

// Requests of different cache scopes (API keys) share no cached start, not even the BOS
// token; within a scope they do.
func TestPrefixReuseStaysInScope(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 4})
	prompt := m.Tokenizer.Encode(texts[1], true, false)
	run := func(scope string) int {
		t.Helper()
		res, err := s.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 4, IgnoreEOS: true, CacheScope: scope})
		if err != nil {
			t.Fatal(err)
		}
		return res.CachedTokens
	}
	if got := run("alice"); got != 0 {
		t.Fatalf("first request: %d cached tokens", got)
	}
	if got := run("bob"); got != 0 {
		t.Errorf("another scope's request found %d cached tokens", got)
	}
	if got := run("alice"); got != len(prompt)-1 {
		t.Errorf("same scope: %d cached tokens, want %d", got, len(prompt)-1)
	}
	if got := run(""); got != 0 {
		t.Errorf("the unscoped request found %d cached tokens", got)
	}
}

// The scheduler holds at most MaxSeqs sequences, running and idle: once that many are idle, a
// request sharing nothing takes the oldest one's place (its memory, where it has room) rather
// than making another.
func TestIdleSequencesStayWithinMaxSeqs(t *testing.T) {
	m := openModel(t, stories)
	s := newScheduler(t, m, Config{MaxSeqs: 2})
	idle := func() []*model.Seq {
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []*model.Seq
		for _, e := range s.idle {
			out = append(out, e.seq)
		}
		return out
	}
	for i, scope := range []string{"a", "b", "c"} {
		before := idle()
		prompt := m.Tokenizer.Encode(texts[i], true, false)
		res, err := s.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 2, IgnoreEOS: true, CacheScope: scope})
		if err != nil {
			t.Fatal(err)
		}
		after := idle()
		if res.CachedTokens != 0 || len(after) != min(i+1, 2) {
			t.Fatalf("request %d: %d cached tokens, %d idle sequences", i, res.CachedTokens, len(after))
		}
		if i == 2 && (after[0] != before[1] || after[1] != before[0]) {
			t.Errorf("the third request did not take the oldest idle sequence's place: idle %p %p before, %p %p after", before[0], before[1], after[0], after[1])
		}
	}
	// One running and one idle are two: a request admitted beside the running one takes the
	// idle one's place.
	before := idle()
	started, release := make(chan struct{}), make(chan struct{})
	var seen []*model.Seq
	h, err := s.Submit(context.Background(), Request{Prompt: m.Tokenizer.Encode(texts[3], true, false), MaxTokens: 8, IgnoreEOS: true, CacheScope: "d",
		OnToken: func(int32, sampler.Result) error {
			if seen == nil {
				seen = idle()
				close(started)
				<-release
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if len(seen) != 1 {
		t.Fatalf("a request beside one idle sequence left %d idle, want 1 (it took the other's place)", len(seen))
	}
	idleBeside := -1
	h2, err := s.Submit(context.Background(), Request{Prompt: m.Tokenizer.Encode(texts[4], true, false), MaxTokens: 2, IgnoreEOS: true, CacheScope: "e",
		OnToken: func(int32, sampler.Result) error {
			if idleBeside < 0 {
				idleBeside = len(idle())
			}
			return nil
		}})
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Handle{h, h2} {
		if res, err := h.Wait(); err != nil || res.CachedTokens != 0 {
			t.Fatal(res, err)
		}
	}
	if idleBeside != 0 {
		t.Errorf("a request beside a running one and an idle one left %d idle, want 0 (%d before)", idleBeside, len(before))
	}
}

// liveSeqs is a model.Mirror that keeps the sequences a stage has made and not freed, as the
// other shards of a tensor-parallel group hold them.
type liveSeqs struct {
	mu   sync.Mutex
	live map[uint64]bool
	bad  []string
}

func (l *liveSeqs) NewSequence(id uint64, _ int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.live[id] = true
	return nil
}

func (l *liveSeqs) Extend(src, dst uint64, _, _ int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live[src] {
		l.bad = append(l.bad, fmt.Sprintf("extend of sequence %d, which is not live", src))
	}
	l.live[dst] = true
	return nil
}

func (l *liveSeqs) Free(id uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live[id] {
		l.bad = append(l.bad, fmt.Sprintf("free of sequence %d, which is not live", id))
	}
	delete(l.live, id)
	return nil
}

func (l *liveSeqs) Forward(items []model.SeqBatch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range items {
		if !l.live[it.Seq.ID()] {
			l.bad = append(l.bad, fmt.Sprintf("forward of sequence %d, which is not live", it.Seq.ID()))
		}
	}
	return nil
}

func (l *liveSeqs) count() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.live), slices.Clone(l.bad)
}

// Every sequence the scheduler drops (beyond MaxSeqs idle ones, copied from and replaced, at
// Close) is freed, so that the other shards of a tensor-parallel stage, which keep theirs until
// told, hold no more than the scheduler does; none is used after it is freed.
func TestDroppedSequencesAreFreed(t *testing.T) {
	m := openModel(t, stories)
	mirror := &liveSeqs{live: map[uint64]bool{}}
	m.Stage.SetMirror(mirror)
	s, err := New(Config{Stage: m.Stage, IsEOG: m.Tokenizer.IsEOG, MaxSeqs: 2})
	if err != nil {
		t.Fatal(err)
	}
	run := func(prompt []int32, scope string) {
		if _, err := s.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 6, IgnoreEOS: true, CacheScope: scope}); err != nil {
			t.Fatal(err)
		}
	}
	var prompts [][]int32
	for _, tx := range texts {
		prompts = append(prompts, m.Tokenizer.Encode(tx, true, false))
	}
	for i, p := range prompts {
		run(p, fmt.Sprint(i%3)) // idle sequences beyond MaxSeqs make way
		long := append(append([]int32(nil), p...), prompts[(i+1)%len(prompts)]...)
		run(long, fmt.Sprint(i%3)) // a continuation: copied into a longer sequence
		if n, bad := mirror.count(); n > 2 || len(bad) > 0 {
			t.Fatalf("after request %d: %d sequences live (MaxSeqs 2); %v", i, n, bad)
		}
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(append(append([]int32(nil), prompts[3]...), prompts[i]...), "")
		}()
	}
	wg.Wait()
	if n, bad := mirror.count(); n > 2 || len(bad) > 0 {
		t.Fatalf("after concurrent requests: %d sequences live (MaxSeqs 2); %v", n, bad)
	}
	s.Close()
	if n, bad := mirror.count(); n != 0 || len(bad) > 0 {
		t.Fatalf("after Close: %d sequences live; %v", n, bad)
	}
}
