// Package sampler turns a vector of next-token logits into a token id. It implements the usual
// controls of llama.cpp and the OpenAI API (temperature, top-k, top-p, min-p, repetition,
// frequency and presence penalties, seeds, log-probabilities) and a stop-sequence matcher for
// streamed text.
package sampler

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// Params configures a Sampler. The zero value means greedy decoding without penalties.
type Params struct {
	// Temperature divides the logits before the final softmax; <= 0 selects greedy decoding
	// (argmax, the lowest id wins exact ties), after penalties.
	Temperature float32
	// TopK keeps the K most likely tokens; <= 0 disables it.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability reaches P; values
	// <= 0 or >= 1 disable it.
	TopP float32
	// MinP drops tokens whose probability is below MinP times that of the most likely token;
	// <= 0 disables it.
	MinP float32

	// RepeatPenalty is llama.cpp's repetition penalty over the last RepeatLastN tokens of the
	// context (prompt tokens given to AcceptPrompt included): a positive logit is divided by
	// it, a negative one multiplied. 0 or 1 disables it.
	RepeatPenalty float32
	// RepeatLastN is the window of RepeatPenalty; 0 disables the penalty, -1 means the whole
	// context.
	RepeatLastN int
	// FrequencyPenalty and PresencePenalty follow the OpenAI API: over the tokens generated so
	// far (not the prompt), logit -= count*FrequencyPenalty + (count > 0)*PresencePenalty.
	FrequencyPenalty float32
	PresencePenalty  float32

	// Seed makes sampling reproducible: the same seed, parameters and logits give the same
	// tokens. Callers wanting fresh randomness choose a random seed themselves.
	Seed uint64
	// Logprobs asks for the log-probability of the chosen token and of the TopLogprobs most
	// likely tokens, taken from the model's raw distribution (log-softmax of the logits as
	// given, before penalties, temperature and truncation), as the OpenAI API reports them.
	Logprobs    bool
	TopLogprobs int
}

// Validate reports parameters outside their meaningful range.
func (p Params) Validate() error {
	switch {
	case math.IsNaN(float64(p.Temperature)) || p.Temperature < 0:
		return fmt.Errorf("sampler: temperature %v must be >= 0", p.Temperature)
	case p.TopK < 0:
		return fmt.Errorf("sampler: top-k %d must be >= 0", p.TopK)
	case math.IsNaN(float64(p.TopP)) || p.TopP < 0 || p.TopP > 1:
		return fmt.Errorf("sampler: top-p %v must be in [0,1]", p.TopP)
	case math.IsNaN(float64(p.MinP)) || p.MinP < 0 || p.MinP > 1:
		return fmt.Errorf("sampler: min-p %v must be in [0,1]", p.MinP)
	case math.IsNaN(float64(p.RepeatPenalty)) || p.RepeatPenalty < 0:
		return fmt.Errorf("sampler: repeat penalty %v must be >= 0", p.RepeatPenalty)
	case p.RepeatLastN < -1:
		return fmt.Errorf("sampler: repeat-last-n %d must be >= -1", p.RepeatLastN)
	case p.TopLogprobs < 0:
		return fmt.Errorf("sampler: top logprobs %d must be >= 0", p.TopLogprobs)
	}
	return nil
}

// TokenLogprob is one token with its log-probability.
type TokenLogprob struct {
	Token   int32
	Logprob float32
}

// Result is the outcome of one sampling step.
type Result struct {
	Token int32
	// Logprob and Top are filled only when Params.Logprobs is set.
	Logprob float32
	Top     []TokenLogprob
}

// Sampler draws tokens for one sequence. It keeps that sequence's history for the penalties,
// so each sequence needs its own Sampler. It is not safe for concurrent use.
type Sampler struct {
	p   Params
	rng *rand.Rand

	context   []int32       // prompt + generated tokens, for the repeat penalty window
	generated map[int32]int // counts of generated tokens, for frequency/presence penalties

	work []float32   // penalised logits
	cand []candidate // scratch for the truncation samplers
	exps []float32   // scratch for softmax
}

type candidate struct {
	id    int32
	logit float32
	p     float64
}

// New returns a sampler for p; it fails when p is invalid.
func New(p Params) (*Sampler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	// PCG needs two words of state; deriving the second from the seed keeps one number as the
	// user-facing seed.
	return &Sampler{
		p:         p,
		rng:       rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15)),
		generated: map[int32]int{},
	}, nil
}

// Params returns the parameters the sampler was built with.
func (s *Sampler) Params() Params { return s.p }

// AcceptPrompt records prompt tokens: they count for the repeat penalty window but not for the
// frequency and presence penalties, which the OpenAI API defines over generated text only.
func (s *Sampler) AcceptPrompt(ids []int32) {
	s.context = append(s.context, ids...)
	s.trimContext()
}

// Accept records a generated token. Sample calls it for the token it returns; call it directly
// only for tokens chosen some other way.
func (s *Sampler) Accept(id int32) {
	s.context = append(s.context, id)
	s.trimContext()
	s.generated[id]++
}

// trimContext bounds the memory of the history to the penalty window.
func (s *Sampler) trimContext() {
	n := s.p.RepeatLastN
	if n < 0 {
		return
	}
	if len(s.context) > 2*n+64 {
		s.context = append(s.context[:0], s.context[len(s.context)-n:]...)
	}
}

// Sample chooses the next token from logits (which it does not modify) and records it as
// generated.
func (s *Sampler) Sample(logits []float32) (Result, error) {
	if len(logits) == 0 {
		return Result{}, fmt.Errorf("sampler: empty logits")
	}
	if id := nonFinite(logits); id >= 0 {
		// Whatever token a NaN led to would be garbage passed off as text (NaN compares false
		// everywhere, so argmax and the softmax would pick something arbitrary): the request
		// ends with this error instead.
		return Result{}, fmt.Errorf("sampler: the logit of token %d is %v: the model's forward pass produced a non-finite value (activations overflowed, or the weights are corrupt)", id, logits[id])
	}
	s.work = append(s.work[:0], logits...)
	s.applyPenalties(s.work)

	var tok int32
	if s.p.Temperature <= 0 || s.p.TopK == 1 {
		tok = Argmax(s.work)
	} else {
		tok = s.draw(s.work)
	}
	res := Result{Token: tok}
	if s.p.Logprobs {
		res.Logprob, res.Top = logprobs(logits, tok, s.p.TopLogprobs)
	}
	s.Accept(tok)
	return res, nil
}

// nonFinite returns the first token whose logit is NaN or +Inf, or -1. -Inf is a token ruled
// out, which sampling handles (its probability is zero).
func nonFinite(logits []float32) int {
	for i, v := range logits {
		if v != v || v > math.MaxFloat32 {
			return i
		}
	}
	return -1
}

// applyPenalties changes logits in place according to the repeat, frequency and presence
// penalties and the recorded history.
func (s *Sampler) applyPenalties(logits []float32) {
	if rp := s.p.RepeatPenalty; rp != 0 && rp != 1 && s.p.RepeatLastN != 0 {
		window := s.context
		if n := s.p.RepeatLastN; n > 0 && len(window) > n {
			window = window[len(window)-n:]
		}
		seen := make(map[int32]struct{}, len(window))
		for _, id := range window {
			if id < 0 || int(id) >= len(logits) {
				continue
			}
			if _, dup := seen[id]; dup {
				continue // llama.cpp penalises a token once however often it repeats
			}
			seen[id] = struct{}{}
			if logits[id] > 0 {
				logits[id] /= rp
			} else {
				logits[id] *= rp
			}
		}
	}
	if s.p.FrequencyPenalty != 0 || s.p.PresencePenalty != 0 {
		for id, c := range s.generated {
			if id < 0 || int(id) >= len(logits) || c == 0 {
				continue
			}
			logits[id] -= float32(c)*s.p.FrequencyPenalty + s.p.PresencePenalty
		}
	}
}

// draw runs top-k, top-p, min-p and temperature (llama.cpp's order: the truncations look at the
// untempered distribution) and draws from what remains.
func (s *Sampler) draw(logits []float32) int32 {
	c := s.truncate(logits)
	s.exps = softmax(c, s.p.Temperature, s.exps)
	u := s.rng.Float64()
	var cum float64
	for _, x := range c {
		cum += x.p
		if u < cum {
			return x.id
		}
	}
	return c[len(c)-1].id // rounding left u just above the total
}

// truncate returns the candidates that top-k, top-p and min-p keep. As far as a truncation
// looks, they are sorted by logit descending (lower id first on ties); the rest, all below
// those, stay unsorted. Sorting a 128k vocabulary for every token costs milliseconds, and
// with no truncation (the API's default) nothing needs sorting: the order only decides which
// token a given random number picks, not the distribution.
func (s *Sampler) truncate(logits []float32) []candidate {
	c := s.cand[:0]
	defer func() { s.cand = c[:0] }()
	p, mp, k := s.p.TopP, s.p.MinP, s.p.TopK
	if k > 0 && k <= 256 && k < len(logits) {
		c = topKHeap(c, logits, k)
	} else {
		for i, l := range logits {
			c = append(c, candidate{id: int32(i), logit: l})
		}
	}
	o := orderer{c: c}
	if k > 0 && k < len(c) {
		o.upTo(k)
		c = c[:k]
		o.c = c
	}
	if (p <= 0 || p >= 1) && mp <= 0 {
		return c
	}
	s.exps = softmax(c, 1, s.exps)
	if p > 0 && p < 1 {
		var cum float64
		for i := 0; i < len(c); i++ {
			o.upTo(i + 1)
			if cum += c[i].p; cum >= float64(p) {
				c = c[:i+1]
				break
			}
		}
		o.c = c
	}
	if mp > 0 && len(c) > 1 {
		o.upTo(1)
		limit := c[0].p * float64(mp)
		keep := 1
		for ; keep < len(c); keep++ {
			if o.upTo(keep + 1); c[keep].p < limit {
				break
			}
		}
		c = c[:keep]
	}
	return c
}

// orderer sorts a candidate list lazily, best first, in tiers of logits ever further below the
// best: a truncation that stops early sorts only the first tier.
type orderer struct {
	c      []candidate
	sorted int // c[:sorted] is sorted and better than all the rest
	tier   int
	top    float32
}

// tierSpans are how far below the best logit each tier reaches: a token 8 below has e^-8 of
// the best one's probability.
var tierSpans = [...]float32{8, 16, 32}

// upTo sorts until the first n candidates are in place.
func (o *orderer) upTo(n int) {
	if o.sorted >= n || o.sorted >= len(o.c) {
		return
	}
	if o.sorted == 0 && o.tier == 0 {
		o.top = o.c[0].logit
		for _, x := range o.c {
			o.top = max(o.top, x.logit)
		}
	}
	for o.sorted < n && o.sorted < len(o.c) {
		rest := o.c[o.sorted:]
		end := len(rest)
		if o.tier < len(tierSpans) {
			// Move this tier's candidates to the front of the unsorted rest.
			floor := o.top - tierSpans[o.tier]
			end = 0
			for i := range rest {
				if rest[i].logit >= floor {
					rest[i], rest[end] = rest[end], rest[i]
					end++
				}
			}
			o.tier++
		}
		sortBest(rest[:end])
		o.sorted += end
	}
}

// topKHeap returns the k best of logits, sorted, using a heap of k.
func topKHeap(c []candidate, logits []float32, k int) []candidate {
	h := candHeap(c)
	for i, l := range logits {
		x := candidate{id: int32(i), logit: l}
		if len(h) < k {
			heap.Push(&h, x)
		} else if better(x, h[0]) {
			h[0] = x
			heap.Fix(&h, 0)
		}
	}
	sortBest(h)
	return h
}

func sortBest(c []candidate) {
	slices.SortFunc(c, func(a, b candidate) int {
		switch {
		case a.logit > b.logit:
			return -1
		case a.logit < b.logit:
			return 1
		}
		return int(a.id - b.id)
	})
}

func better(a, b candidate) bool {
	if a.logit != b.logit {
		return a.logit > b.logit
	}
	return a.id < b.id
}

// candHeap is a min-heap by "goodness", so its root is the worst of the kept candidates.
type candHeap []candidate

func (h candHeap) Len() int           { return len(h) }
func (h candHeap) Less(i, j int) bool { return better(h[j], h[i]) }
func (h candHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)        { *h = append(*h, x.(candidate)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// softmax sets c[i].p from the logits divided by temp, using and returning the scratch exps.
// The exponentials are float32 (kernels.ExpFast, within 2 ulp; one below e^-87 of the best
// counts as e^-87), summed in float64: over Llama 3's 128k vocabulary a float64 math.Exp each
// cost about 2 ms per token.
func softmax(c []candidate, temp float32, exps []float32) []float32 {
	if len(c) == 0 {
		return exps
	}
	top := c[0].logit
	for _, x := range c {
		top = max(top, x.logit)
	}
	if cap(exps) < len(c) {
		exps = make([]float32, len(c))
	}
	e := exps[:len(c)]
	for i := range c {
		e[i] = (c[i].logit - top) / temp
	}
	kernels.ExpFast(e, e)
	var sum float64
	for _, v := range e {
		sum += float64(v)
	}
	for i := range c {
		c[i].p = float64(e[i]) / sum
	}
	return exps
}

// Argmax returns the index of the largest logit; the lowest index wins exact ties, which is
// what llama.cpp's greedy sampler (and the golden outputs) do.
func Argmax(logits []float32) int32 {
	best := 0
	for i := 1; i < len(logits); i++ {
		if logits[i] > logits[best] {
			best = i
		}
	}
	return int32(best)
}

// LogSoftmax returns log-probabilities of logits, computed in float64 for accuracy.
func LogSoftmax(logits []float32) []float32 {
	out := make([]float32, len(logits))
	lse := logSumExp(logits)
	for i, l := range logits {
		out[i] = float32(float64(l) - lse)
	}
	return out
}

func logSumExp(logits []float32) float64 {
	m := math.Inf(-1)
	for _, l := range logits {
		m = math.Max(m, float64(l))
	}
	var sum float64
	for _, l := range logits {
		sum += math.Exp(float64(l) - m)
	}
	return m + math.Log(sum)
}

// logprobs returns the log-probability of tok and the n most likely tokens (highest first,
// lower id first on ties).
func logprobs(logits []float32, tok int32, n int) (float32, []TokenLogprob) {
	lse := logSumExp(logits)
	lp := float32(float64(logits[tok]) - lse)
	if n <= 0 {
		return lp, nil
	}
	h := topKHeap(make([]candidate, 0, min(n, len(logits))), logits, min(n, len(logits)))
	top := make([]TokenLogprob, len(h))
	for i, x := range h {
		top[i] = TokenLogprob{Token: x.id, Logprob: float32(float64(x.logit) - lse)}
	}
	return lp, top
}
