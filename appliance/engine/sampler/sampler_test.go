package sampler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustNew(t *testing.T, p Params) *Sampler {
	t.Helper()
	s, err := New(p)
	if err != nil {
		t.Fatalf("New(%+v): %v", p, err)
	}
	return s
}

func sample(t *testing.T, s *Sampler, logits []float32) int32 {
	t.Helper()
	r, err := s.Sample(logits)
	if err != nil {
		t.Fatal(err)
	}
	return r.Token
}

func randomLogits(r *rand.Rand, n int) []float32 {
	l := make([]float32, n)
	for i := range l {
		l[i] = float32(r.NormFloat64() * 3)
	}
	return l
}

func TestArgmaxLowestIDWinsTies(t *testing.T) {
	if got := Argmax([]float32{1, 5, 3, 5, 5}); got != 1 {
		t.Fatalf("Argmax = %d, want 1", got)
	}
	if got := Argmax([]float32{-2, -1, -1}); got != 1 {
		t.Fatalf("Argmax = %d, want 1", got)
	}
	s := mustNew(t, Params{})
	if got := sample(t, s, []float32{0, 2, 2}); got != 1 {
		t.Fatalf("greedy = %d, want 1", got)
	}
}

func TestTopK1AndColdTemperatureAreGreedy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	topk1 := mustNew(t, Params{Temperature: 1.5, TopK: 1, Seed: 7})
	cold := mustNew(t, Params{Temperature: 1e-4, Seed: 7})
	for i := 0; i < 200; i++ {
		l := randomLogits(r, 1000)
		want := Argmax(l)
		if got := sample(t, topk1, l); got != want {
			t.Fatalf("top-k 1 step %d: got %d want %d", i, got, want)
		}
		if got := sample(t, cold, l); got != want {
			t.Fatalf("temperature 1e-4 step %d: got %d want %d", i, got, want)
		}
	}
}

func TestSameSeedSameTokens(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	logits := make([][]float32, 100)
	for i := range logits {
		logits[i] = randomLogits(r, 500)
	}
	run := func(seed uint64) []int32 {
		s := mustNew(t, Params{Temperature: 1, TopP: 0.95, Seed: seed})
		var out []int32
		for _, l := range logits {
			out = append(out, sample(t, s, l))
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 42 run twice differs at %d: %d vs %d", i, a[i], b[i])
		}
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Fatalf("seeds 42 and 43 gave identical sequences of %d tokens", len(a))
	}
}

// With temperature 1 and no truncation the empirical frequencies follow softmax(logits).
func TestDistributionFollowsSoftmax(t *testing.T) {
	logits := []float32{1, 2, 0.5, 3}
	want := make([]float64, len(logits))
	for i, lp := range LogSoftmax(logits) {
		want[i] = math.Exp(float64(lp))
	}
	s := mustNew(t, Params{Temperature: 1, Seed: 1})
	const n = 20000
	counts := make([]int, len(logits))
	for i := 0; i < n; i++ {
		counts[sample(t, s, logits)]++
	}
	for i := range counts {
		got := float64(counts[i]) / n
		if math.Abs(got-want[i]) > 0.015 {
			t.Errorf("token %d: frequency %.4f, softmax %.4f", i, got, want[i])
		}
	}
}

func TestTemperatureSharpens(t *testing.T) {
	logits := []float32{1, 2, 0.5, 3}
	count3 := func(temp float32) int {
		s := mustNew(t, Params{Temperature: temp, Seed: 9})
		c := 0
		for i := 0; i < 5000; i++ {
			if sample(t, s, logits) == 3 {
				c++
			}
		}
		return c
	}
	hot, cold := count3(2), count3(0.3)
	if !(cold > hot) || cold < 4500 {
		t.Fatalf("argmax frequency: temp 0.3 %d/5000, temp 2 %d/5000", cold, hot)
	}
}

func TestTopKRestrictsSupport(t *testing.T) {
	logits := []float32{5, 4, 3, 2, 1, 0, 4}
	s := mustNew(t, Params{Temperature: 5, TopK: 3, Seed: 1})
	seen := map[int32]bool{}
	for i := 0; i < 3000; i++ {
		seen[sample(t, s, logits)] = true
	}
	// The three best are ids 0 (5), 1 (4) and 6 (4).
	if len(seen) != 3 || !seen[0] || !seen[1] || !seen[6] {
		t.Fatalf("top-k 3 sampled %v, want exactly {0,1,6}", seen)
	}
}

func TestTopPKeepsSmallestNucleus(t *testing.T) {
	// Probabilities ~ 0.5, 0.3, 0.15, 0.05 (logs).
	logits := []float32{float32(math.Log(0.5)), float32(math.Log(0.3)), float32(math.Log(0.15)), float32(math.Log(0.05))}
	s := mustNew(t, Params{Temperature: 1, TopP: 0.75, Seed: 5})
	seen := map[int32]int{}
	for i := 0; i < 4000; i++ {
		seen[sample(t, s, logits)]++
	}
	if len(seen) != 2 || seen[0] == 0 || seen[1] == 0 {
		t.Fatalf("top-p 0.75 sampled %v, want only {0,1}", seen)
	}
	// Renormalised: 0.5/0.8 = 0.625.
	if f := float64(seen[0]) / 4000; math.Abs(f-0.625) > 0.03 {
		t.Fatalf("top-p renormalised frequency of token 0 = %.3f, want 0.625", f)
	}
}

func TestMinPFilters(t *testing.T) {
	// p ∝ 1, 0.5, 0.2, 0.05: min-p 0.3 keeps the first two.
	logits := []float32{0, float32(math.Log(0.5)), float32(math.Log(0.2)), float32(math.Log(0.05))}
	s := mustNew(t, Params{Temperature: 1, MinP: 0.3, Seed: 5})
	seen := map[int32]bool{}
	for i := 0; i < 3000; i++ {
		seen[sample(t, s, logits)] = true
	}
	if len(seen) != 2 || !seen[0] || !seen[1] {
		t.Fatalf("min-p 0.3 sampled %v, want {0,1}", seen)
	}
}

func TestRepeatPenaltyOverLastN(t *testing.T) {
	s := mustNew(t, Params{RepeatPenalty: 2, RepeatLastN: 3})
	s.AcceptPrompt([]int32{0, 1, 2, 2, 3})
	l := []float32{4, 4, 4, -4, -4}
	s.applyPenalties(l)
	// The window is the last 3 tokens {2, 2, 3}: id 2 (positive) halves once, id 3 (negative)
	// doubles; ids 0 and 1 fell out of the window.
	want := []float32{4, 4, 2, -8, -4}
	for i := range want {
		if l[i] != want[i] {
			t.Fatalf("after repeat penalty: %v, want %v", l, want)
		}
	}
}

func TestFrequencyPresenceOverGeneratedOnly(t *testing.T) {
	s := mustNew(t, Params{FrequencyPenalty: 0.5, PresencePenalty: 1})
	s.AcceptPrompt([]int32{0, 0, 0})
	s.Accept(1)
	s.Accept(1)
	s.Accept(2)
	l := []float32{3, 3, 3, 3}
	s.applyPenalties(l)
	want := []float32{3, 3 - 2*0.5 - 1, 3 - 0.5 - 1, 3}
	for i := range want {
		if l[i] != want[i] {
			t.Fatalf("after frequency/presence: %v, want %v", l, want)
		}
	}
}

func TestPenaltiesChangeGreedyChoice(t *testing.T) {
	s := mustNew(t, Params{PresencePenalty: 2})
	logits := []float32{1, 2.5, 2}
	if got := sample(t, s, logits); got != 1 {
		t.Fatalf("first token %d, want 1", got)
	}
	if got := sample(t, s, logits); got != 2 {
		t.Fatalf("after presence penalty token %d, want 2", got)
	}
	if logits[1] != 2.5 {
		t.Fatalf("Sample modified the caller's logits: %v", logits)
	}
}

func TestLogprobs(t *testing.T) {
	logits := []float32{1, 3, 2, 3}
	s := mustNew(t, Params{Logprobs: true, TopLogprobs: 3})
	r, err := s.Sample(logits)
	if err != nil {
		t.Fatal(err)
	}
	lse := math.Log(math.Exp(1) + 2*math.Exp(3) + math.Exp(2))
	if r.Token != 1 || math.Abs(float64(r.Logprob)-(3-lse)) > 1e-6 {
		t.Fatalf("token %d logprob %v, want 1 and %v", r.Token, r.Logprob, 3-lse)
	}
	wantIDs := []int32{1, 3, 2}
	if len(r.Top) != 3 {
		t.Fatalf("top logprobs %v", r.Top)
	}
	for i, w := range wantIDs {
		if r.Top[i].Token != w {
			t.Fatalf("top logprobs order %v, want ids %v", r.Top, wantIDs)
		}
	}
	if math.Abs(float64(r.Top[2].Logprob)-(2-lse)) > 1e-6 {
		t.Fatalf("top[2] logprob %v want %v", r.Top[2].Logprob, 2-lse)
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{{Temperature: -1}, {TopP: 1.5}, {MinP: -0.1}, {TopK: -2}, {RepeatLastN: -5}} {
		if _, err := New(p); err == nil {
			t.Errorf("New(%+v) accepted invalid parameters", p)
		}
	}
}

func TestStopMatcherHoldsBackAcrossChunks(t *testing.T) {
	m := NewStopMatcher([]string{"</end>", "STOP"})
	var out strings.Builder
	pieces := []string{"Hello <", "/e", "x> wor", "ld S", "T", "OP trailing"}
	stopped := false
	for i, p := range pieces {
		e, s := m.Push(p)
		out.WriteString(e)
		// Nothing emitted may end in a prefix of a stop sequence that could still complete.
		if i == 0 && e != "Hello " {
			t.Fatalf("first emit %q, want %q (the '<' must be held)", e, "Hello ")
		}
		if i == 1 && e != "" {
			t.Fatalf("second emit %q, want nothing held '</e' is a stop prefix", e)
		}
		if s {
			stopped = true
			break
		}
	}
	if !stopped {
		t.Fatal("stop sequence STOP split over three pieces was not detected")
	}
	if got, want := out.String(), "Hello </ex> world "; got != want {
		t.Fatalf("emitted %q, want %q", got, want)
	}
	if e, s := m.Push("more"); e != "" || !s {
		t.Fatalf("push after stop returned %q %v", e, s)
	}
}

func TestStopMatcherFlushAndEarliest(t *testing.T) {
	m := NewStopMatcher([]string{"abc"})
	e, s := m.Push("xxab")
	if e != "xx" || s {
		t.Fatalf("Push = %q %v", e, s)
	}
	if f := m.Flush(); f != "ab" {
		t.Fatalf("Flush = %q, want held-back %q", f, "ab")
	}

	m = NewStopMatcher([]string{"world", "lo w"})
	e, s = m.Push("hello world")
	if e != "hel" || !s {
		t.Fatalf("earliest stop: %q %v, want %q true", e, s, "hel")
	}

	m = NewStopMatcher(nil)
	if e, s := m.Push("abc"); e != "abc" || s {
		t.Fatalf("no stops: %q %v", e, s)
	}

	// Multibyte: the held part starts at a character boundary.
	m = NewStopMatcher([]string{"日本語"})
	e, _ = m.Push("x日本")
	if e != "x" {
		t.Fatalf("held back wrong part: emitted %q", e)
	}
}

// Randomised: however text is chunked, the emitted text is the text before the first stop.
func TestStopMatcherChunkingInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	stops := []string{"aab", "ba", "ccc"}
	alphabet := "abcd"
	for iter := 0; iter < 2000; iter++ {
		n := 1 + r.IntN(20)
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		text := b.String()
		want, wantStop := text, false
		first := -1
		for _, s := range stops {
			if i := strings.Index(text, s); i >= 0 && (first < 0 || i < first) {
				first = i
			}
		}
		if first >= 0 {
			want, wantStop = text[:first], true
		}
		m := NewStopMatcher(stops)
		var out strings.Builder
		gotStop := false
		for rest := text; rest != "" && !gotStop; {
			k := 1 + r.IntN(min(4, len(rest)))
			e, s := m.Push(rest[:k])
			rest = rest[k:]
			out.WriteString(e)
			gotStop = s
			for _, st := range stops {
				if strings.Contains(out.String(), st) {
					t.Fatalf("%q: emitted text %q contains stop %q", text, out.String(), st)
				}
			}
		}
		if !gotStop {
			out.WriteString(m.Flush())
		}
		if out.String() != want || gotStop != wantStop {
			t.Fatalf("%q: got %q stop=%v, want %q stop=%v", text, out.String(), gotStop, want, wantStop)
		}
	}
}

// referenceTruncate is truncate by the definition: the whole vocabulary sorted, then top-k,
// top-p and min-p in turn.
func referenceTruncate(logits []float32, p Params) []candidate {
	c := make([]candidate, len(logits))
	for i, l := range logits {
		c[i] = candidate{id: int32(i), logit: l}
	}
	sortBest(c)
	if p.TopK > 0 && p.TopK < len(c) {
		c = c[:p.TopK]
	}
	softmax(c, 1, nil)
	if p.TopP > 0 && p.TopP < 1 {
		var cum float64
		for i := range c {
			if cum += c[i].p; cum >= float64(p.TopP) {
				c = c[:i+1]
				break
			}
		}
	}
	if p.MinP > 0 {
		keep := 1
		for keep < len(c) && c[keep].p >= c[0].p*float64(p.MinP) {
			keep++
		}
		c = c[:keep]
	}
	return c
}

// truncate keeps exactly the candidates that sorting the whole vocabulary would keep, with the
// same probabilities, though it sorts only what a truncation looks at: on flat and on peaked
// distributions, and with truncations that reach far into the unsorted tail.
func TestTruncateMatchesFullSort(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, spread := range []float64{0.05, 1, 3, 8} {
		for _, p := range []Params{
			{}, {TopK: 5}, {TopK: 300}, {TopK: 5000}, {TopP: 0.5}, {TopP: 0.95}, {TopP: 0.99999},
			{MinP: 0.05}, {MinP: 1e-12}, {TopK: 400, TopP: 0.9, MinP: 0.01}, {TopP: 0.9999, MinP: 1e-10},
		} {
			logits := make([]float32, 20000)
			for i := range logits {
				logits[i] = float32(r.NormFloat64() * spread)
			}
			p.Temperature = 1
			s := mustNew(t, p)
			got := s.truncate(logits)
			want := referenceTruncate(logits, p)
			if len(got) != len(want) {
				t.Fatalf("spread %v %+v: kept %d candidates, full sort keeps %d", spread, p, len(got), len(want))
			}
			wantP := map[int32]float64{}
			for _, c := range want {
				wantP[c.id] = c.p
			}
			for i, c := range got {
				wp, ok := wantP[c.id]
				if !ok {
					t.Fatalf("spread %v %+v: kept token %d, which the full sort drops", spread, p, c.id)
				}
				if (p.TopP > 0 || p.MinP > 0) && math.Abs(c.p-wp) > 1e-12 {
					t.Fatalf("spread %v %+v: token %d p %v, full sort %v", spread, p, c.id, c.p, wp)
				}
				if truncating := p.TopK > 0 || p.TopP > 0 || p.MinP > 0; truncating && i > 0 && c.logit > got[0].logit {
					t.Fatalf("spread %v %+v: candidate %d beats the first", spread, p, i)
				}
			}
		}
	}
}

// BenchmarkSample is one token of Llama 3's vocabulary with the API's default parameters
// (temperature 1, no truncation) and with top-p.
func BenchmarkSample(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	logits := randomLogits(r, 128256)
	for _, p := range []Params{{Temperature: 1}, {Temperature: 0.8, TopP: 0.95}, {Temperature: 0.8, TopK: 40}} {
		b.Run(fmt.Sprintf("k%d-p%g", p.TopK, p.TopP), func(b *testing.B) {
			s, _ := New(p)
			for b.Loop() {
				if _, err := s.Sample(logits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestNonFiniteLogitsFail: a NaN or +Inf logit ends sampling with an error naming the token
// (greedy and drawn alike), where argmax or the softmax would otherwise pick an arbitrary token;
// -Inf only rules its token out.
func TestNonFiniteLogitsFail(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, p := range []Params{{}, {Temperature: 0.8, TopP: 0.9, Seed: 1}} {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
			logits := randomLogits(r, 1000)
			logits[617] = bad
			s := mustNew(t, p)
			_, err := s.Sample(logits)
			if err == nil || !strings.Contains(err.Error(), "token 617") || !strings.Contains(err.Error(), "non-finite") {
				t.Fatalf("%+v, logit %v: err %v, want one naming token 617 as non-finite", p, bad, err)
			}
		}
		logits := randomLogits(r, 1000)
		best := Argmax(logits)
		logits[best] = float32(math.Inf(-1))
		s := mustNew(t, p)
		for i := 0; i < 50; i++ {
			if tok := sample(t, s, logits); tok == best {
				t.Fatalf("%+v: drew token %d, whose logit is -Inf", p, tok)
			}
		}
	}
}
