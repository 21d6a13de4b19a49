package model

import (
	"context"
	"errors"
	"fmt"
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
	// CacheScope confines the reuse of cached prompt starts between requests (a scheduler's)
	// to requests of the same scope: the API sets it per API key, so that one caller cannot
	// learn from cached_tokens or timing what another's prompts began with.
	CacheScope string
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
	// CachedTokens is how many leading prompt tokens were not evaluated, their keys and values
	// found in the cache an earlier request left (a scheduler's; model.Generate has none).
	CachedTokens int
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
	col := NewCollector(m.Tokenizer, &req)

	t0 := time.Now()
	out, err := m.Stage.Forward(seq, Batch{Pos: 0, Tokens: req.Prompt})
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	col.Generation().Timings.Prompt = t1.Sub(t0)
	logits := out.Logits
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := smp.Sample(logits)
		if err != nil {
			return nil, err
		}
		done, err := col.Accept(res)
		if err != nil {
			return nil, err
		}
		if done || seq.Len() >= ctxLen {
			break
		}
		out, err = m.Stage.Forward(seq, Batch{Pos: seq.Len(), Tokens: []int32{res.Token}})
		if err != nil {
			return nil, err
		}
		logits = out.Logits
	}
	return col.Finish(t1)
}
