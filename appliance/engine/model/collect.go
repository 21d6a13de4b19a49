package model

import (
	"strings"
	"time"

	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/engine/tokenizer"
)

// Collector turns sampled tokens into a Generation the same way wherever the tokens come from
// (this process's stage or the last stage of a pipeline): end-of-generation tokens, stop
// sequences held back across pieces, streamed text that never splits a character, logprobs,
// callbacks and the token limit.
type Collector struct {
	req  *GenerateRequest
	tok  *tokenizer.Tokenizer
	dec  *tokenizer.StreamDecoder
	stop *sampler.StopMatcher
	gen  *Generation
	text strings.Builder
}

// NewCollector starts a generation for req, decoding with tok.
func NewCollector(tok *tokenizer.Tokenizer, req *GenerateRequest) *Collector {
	return &Collector{
		req: req, tok: tok,
		dec:  tokenizer.NewStreamDecoder(tok),
		stop: sampler.NewStopMatcher(req.Stop),
		gen:  &Generation{PromptTokens: append([]int32(nil), req.Prompt...), FinishReason: FinishLength},
	}
}

// Tokens is how many tokens were generated so far.
func (c *Collector) Tokens() int { return len(c.gen.Tokens) }

// Accept records one sampled token and reports whether generation is over (end of generation,
// a stop sequence, or MaxTokens). Errors come from the callbacks.
func (c *Collector) Accept(res sampler.Result) (done bool, err error) {
	tok := res.Token
	if !c.req.IgnoreEOS && c.tok.IsEOG(tok) {
		c.gen.FinishReason = FinishStop
		return true, nil
	}
	c.gen.Tokens = append(c.gen.Tokens, tok)
	if c.req.Sampler.Logprobs {
		c.gen.Logprobs = append(c.gen.Logprobs, res)
	}
	if c.req.OnToken != nil {
		if err := c.req.OnToken(res); err != nil {
			return true, err
		}
	}
	piece, stopped := c.stop.Push(c.dec.Add(tok))
	if err := c.emit(piece); err != nil {
		return true, err
	}
	if stopped {
		c.gen.FinishReason = FinishStop
		return true, nil
	}
	return c.req.MaxTokens > 0 && len(c.gen.Tokens) >= c.req.MaxTokens, nil
}

// Finish releases the text still held back (a partial character, a possible stop sequence) and
// returns the generation; genStart is when the first token was sampled.
func (c *Collector) Finish(genStart time.Time) (*Generation, error) {
	if !c.stop.Stopped() {
		rest, stopped := c.stop.Push(c.dec.Flush())
		if stopped {
			c.gen.FinishReason = FinishStop
		} else {
			rest += c.stop.Flush()
		}
		if err := c.emit(rest); err != nil {
			return nil, err
		}
	}
	g := c.gen
	g.Text = c.text.String()
	g.Timings.Gen = time.Since(genStart)
	if s := g.Timings.Gen.Seconds(); s > 0 {
		g.Timings.TokensPerSecond = float64(len(g.Tokens)) / s
	}
	return g, nil
}

// Generation is the result so far (for timings set by the caller).
func (c *Collector) Generation() *Generation { return c.gen }

func (c *Collector) emit(s string) error {
	if s == "" {
		return nil
	}
	c.text.WriteString(s)
	if c.req.OnText != nil {
		return c.req.OnText(s)
	}
	return nil
}
