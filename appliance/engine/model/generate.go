package model

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/exo-nix/exo/appliance/engine/chat"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/engine/tokenizer"
)

// Model is a whole model in one process: the file, one stage over all layers, the tokenizer and
// the chat template. It is the single-machine path (CLI, tests); a cluster builds Stages itself.
type Model struct {
	File      *gguf.File
	Config    Config
	Stage     *Stage
	Tokenizer *tokenizer.Tokenizer
	// Template is nil when the file carries no usable chat template; TemplateErr says why.
	Template    *chat.Template
	TemplateErr error
}

// Open maps path and prepares it for generation.
func Open(path string, opts Options) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := FromFile(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

// FromFile builds a Model over an opened file; the Model's Close closes f.
func FromFile(f *gguf.File, opts Options) (*Model, error) {
	cfg, err := ConfigFromGGUF(f)
	if err != nil {
		return nil, err
	}
	st, err := LoadStage(f, 0, cfg.NLayer, opts)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("%s: tokenizer: %w", f.Path, err)
	}
	m := &Model{File: f, Config: cfg, Stage: st, Tokenizer: tok}
	m.Template, m.TemplateErr = chat.FromGGUF(f)
	return m, nil
}

// Close releases the file mapping; the Model must not be used afterwards.
func (m *Model) Close() error { return m.File.Close() }

// ChatPrompt renders messages with the model's chat template (with the assistant generation
// prompt) and tokenizes the result, turning special-token text into control tokens.
func (m *Model) ChatPrompt(msgs []chat.Message) ([]int32, error) {
	if m.Template == nil {
		return nil, fmt.Errorf("%s: no chat template: %w", m.File.Path, m.TemplateErr)
	}
	text, err := m.Template.Render(msgs, true)
	if err != nil {
		return nil, fmt.Errorf("%s: render chat template: %w", m.File.Path, err)
	}
	return m.Tokenizer.Encode(text, true, true), nil
}

// Finish reasons, as in the OpenAI API.
const (
	FinishLength = "length" // max tokens or the context length reached
	FinishStop   = "stop"   // end-of-generation token or stop sequence
)

// GenerateRequest describes one completion.
type GenerateRequest struct {
	Prompt    []int32
	MaxTokens int // <= 0: until EOG or the context is full
	Sampler   sampler.Params
	Stop      []string
	IgnoreEOS bool // keep generating past end-of-generation tokens
	// CtxLen is the KV cache size; 0 means prompt + MaxTokens, capped by the model's context.
	CtxLen int
	// OnText receives the text as it is generated (never a part of a stop sequence); returning an
	// error aborts generation with that error.
	OnText func(text string) error
	// OnToken receives each generated token (with its logprobs when asked for) before its text;
	// returning an error aborts generation with that error.
	OnToken func(res sampler.Result) error
}

// Timings are wall-clock durations of a generation.
type Timings struct {
	Prompt time.Duration // prompt evaluation, up to the logits of the first generated token
	Gen    time.Duration // everything after: sampling and evaluation of the generated tokens
	// TokensPerSecond is generated tokens / Gen.
	TokensPerSecond float64
}

// Generation is the result of Generate.
type Generation struct {
	PromptTokens []int32
	Tokens       []int32 // generated tokens, the stopping EOG token excluded
	Text         string  // the streamed text: control tokens not rendered, stop sequence cut
	FinishReason string
	Logprobs     []sampler.Result // per token, when the sampler was asked for logprobs
	Timings      Timings
}

// Generate evaluates the prompt and samples up to MaxTokens tokens.
func (m *Model) Generate(ctx context.Context, req GenerateRequest) (*Generation, error) {
	if len(req.Prompt) == 0 {
		return nil, errors.New("model: empty prompt")
	}
	smp, err := sampler.New(req.Sampler)
	if err != nil {
		return nil, err
	}
	ctxLen := req.CtxLen
	if ctxLen <= 0 {
		ctxLen = m.Config.ContextLength
		if req.MaxTokens > 0 {
			ctxLen = min(ctxLen, len(req.Prompt)+req.MaxTokens)
		}
	}
	if len(req.Prompt) >= ctxLen {
		return nil, fmt.Errorf("model: prompt of %d tokens does not fit the context of %d", len(req.Prompt), ctxLen)
	}
	seq := m.Stage.NewSequence(ctxLen)
	smp.AcceptPrompt(req.Prompt)
	dec := tokenizer.NewStreamDecoder(m.Tokenizer)
	stop := sampler.NewStopMatcher(req.Stop)
	g := &Generation{PromptTokens: append([]int32(nil), req.Prompt...), FinishReason: FinishLength}
	var text strings.Builder
	emit := func(s string) error {
		if s == "" {
			return nil
		}
		text.WriteString(s)
		if req.OnText != nil {
			return req.OnText(s)
		}
		return nil
	}

	t0 := time.Now()
	out, err := m.Stage.Forward(seq, Batch{Pos: 0, Tokens: req.Prompt})
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	g.Timings.Prompt = t1.Sub(t0)
	logits := out.Logits
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := smp.Sample(logits)
		if err != nil {
			return nil, err
		}
		tok := res.Token
		if !req.IgnoreEOS && m.Tokenizer.IsEOG(tok) {
			g.FinishReason = FinishStop
			break
		}
		g.Tokens = append(g.Tokens, tok)
		if req.Sampler.Logprobs {
			g.Logprobs = append(g.Logprobs, res)
		}
		if req.OnToken != nil {
			if err := req.OnToken(res); err != nil {
				return nil, err
			}
		}
		piece, stopped := stop.Push(dec.Add(tok))
		if err := emit(piece); err != nil {
			return nil, err
		}
		if stopped {
			g.FinishReason = FinishStop
			break
		}
		if (req.MaxTokens > 0 && len(g.Tokens) >= req.MaxTokens) || seq.Len() >= ctxLen {
			break
		}
		out, err = m.Stage.Forward(seq, Batch{Pos: seq.Len(), Tokens: []int32{tok}})
		if err != nil {
			return nil, err
		}
		logits = out.Logits
	}
	if !stop.Stopped() {
		// Text held back by the decoder (partial UTF-8) or the stop matcher is final now.
		rest, stopped := stop.Push(dec.Flush())
		if stopped {
			g.FinishReason = FinishStop
		} else {
			rest += stop.Flush()
		}
		if err := emit(rest); err != nil {
			return nil, err
		}
	}
	g.Text = text.String()
	g.Timings.Gen = time.Since(t1)
	if s := g.Timings.Gen.Seconds(); s > 0 {
		g.Timings.TokensPerSecond = float64(len(g.Tokens)) / s
	}
	return g, nil
}
