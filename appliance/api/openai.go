package api

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v3"

	"github.com/exo-nix/exo/appliance/buildinfo"
	"github.com/exo-nix/exo/appliance/engine/chat"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/serving"
	"github.com/exo-nix/exo/appliance/store"
)

// streamKeepAlive is how often a stream that has produced nothing yet (a long prompt) gets an
// SSE comment, so that clients and proxies do not time out.
var streamKeepAlive = 10 * time.Second

func (s *Server) openAIRoutes() {
	s.app.Get("/v1/models", s.listModels)
	s.app.Get("/v1/models/:id", s.getModel)
	s.app.Post("/v1/chat/completions", s.chatCompletions)
	s.app.Post("/v1/completions", s.completions)
}

type modelObject struct {
	ID            string `json:"id"`
	Object        string `json:"object"`
	Created       int64  `json:"created"`
	OwnedBy       string `json:"owned_by"`
	ContextLength int    `json:"context_length"`
	Size          int64  `json:"size"`
	Quantization  string `json:"quantization"`
	Arch          string `json:"arch"`
}

func toModelObject(m store.Model) modelObject {
	return modelObject{ID: m.ID, Object: "model", Created: m.Modified.Unix(), OwnedBy: "exo",
		ContextLength: m.ContextLength, Size: m.Size, Quantization: m.Quantization, Arch: m.Arch}
}

func (s *Server) noServing(c fiber.Ctx) error {
	return writeError(c, fiber.StatusServiceUnavailable, "server_error", "this node serves no models (it runs without the worker role)")
}

func (s *Server) listModels(c fiber.Ctx) error {
	if s.opt.Serving == nil && s.opt.Pipelines == nil {
		return s.noServing(c)
	}
	data := []modelObject{}
	seen := map[string]bool{}
	if s.opt.Serving != nil {
		models, problems := s.opt.Serving.Catalog().List()
		for _, p := range problems {
			s.opt.Logger.Warn("model directory entry skipped", "err", p)
		}
		for _, m := range models {
			if m.Stage != nil {
				continue // a layer range held for a pipeline, not a model a client can ask for
			}
			data = append(data, toModelObject(m))
			seen[m.ID] = true
		}
	}
	if s.opt.Pipelines != nil {
		// Models this node holds no file of but whose instance runs across the cluster.
		for _, id := range s.opt.Pipelines.Models() {
			if !seen[id] {
				seen[id] = true
				data = append(data, modelObject{ID: id, Object: "model", OwnedBy: "exo"})
			}
		}
	}
	return c.JSON(fiber.Map{"object": "list", "data": data})
}

func (s *Server) getModel(c fiber.Ctx) error {
	if s.opt.Serving == nil {
		return s.noServing(c)
	}
	m, err := s.opt.Serving.Catalog().Get(c.Params("id"))
	if err != nil {
		return s.openAIError(c, err)
	}
	return c.JSON(toModelObject(m))
}

// openAIError maps engine and serving errors onto OpenAI's error statuses and types.
func (s *Server) openAIError(c fiber.Ctx, err error) error {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": apiError{Message: re.Msg, Type: "invalid_request_error", Param: strPtr(re.Param)}})
	case errors.Is(err, store.ErrNotFound):
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": apiError{Message: err.Error(), Type: "invalid_request_error", Param: strPtr("model"), Code: strPtr("model_not_found")}})
	case errors.Is(err, serving.ErrQueueFull):
		c.Set(fiber.HeaderRetryAfter, "1")
		return c.Status(fiber.StatusTooManyRequests).JSON(fiber.Map{"error": apiError{Message: err.Error(), Type: "rate_limit_error", Code: strPtr("queue_full")}})
	case errors.Is(err, serving.ErrUnavailable):
		c.Set(fiber.HeaderRetryAfter, "5")
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": apiError{Message: err.Error(), Type: "server_error", Code: strPtr("instance_unavailable")}})
	case errors.Is(err, serving.ErrNoMemory):
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": apiError{Message: err.Error(), Type: "server_error", Code: strPtr("insufficient_memory")}})
	case errors.Is(err, serving.ErrLoadFailed):
		return c.Status(fiber.StatusInternalServerError).JSON(fiber.Map{"error": apiError{Message: err.Error(), Type: "server_error", Code: strPtr("model_load_failed")}})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": apiError{Message: "request cancelled", Type: "server_error"}})
	}
	s.opt.Logger.Error("request failed", "err", err)
	return c.Status(fiber.StatusInternalServerError).JSON(fiber.Map{"error": apiError{Message: err.Error(), Type: "server_error"}})
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// job is one admitted completion, chat or text.
type job struct {
	chat        bool
	id          string
	created     int64
	model       string
	gen         serving.Generator
	req         model.GenerateRequest
	stream      bool
	usage       bool
	logprobs    bool
	topLogprobs int
	admitted    time.Time
}

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// samplerParams validates the shared sampling fields.
func samplerParams(f *samplingFields) (sampler.Params, []string, int, error) {
	var p sampler.Params
	if f.N != nil && *f.N != 1 {
		return p, nil, 0, badParam("n", "n=%d is not supported: exo returns one choice per request", *f.N)
	}
	p.Temperature = 1
	if f.Temperature != nil {
		if *f.Temperature < 0 || *f.Temperature > 2 || math.IsNaN(*f.Temperature) {
			return p, nil, 0, badParam("temperature", "temperature must be between 0 and 2, got %v", *f.Temperature)
		}
		p.Temperature = float32(*f.Temperature)
	}
	if f.TopP != nil {
		if *f.TopP <= 0 || *f.TopP > 1 {
			return p, nil, 0, badParam("top_p", "top_p must be in (0, 1], got %v", *f.TopP)
		}
		p.TopP = float32(*f.TopP)
	}
	if f.TopK != nil {
		if *f.TopK < 0 {
			return p, nil, 0, badParam("top_k", "top_k must be >= 0, got %d", *f.TopK)
		}
		p.TopK = *f.TopK
	}
	if f.MinP != nil {
		if *f.MinP < 0 || *f.MinP > 1 {
			return p, nil, 0, badParam("min_p", "min_p must be between 0 and 1, got %v", *f.MinP)
		}
		p.MinP = float32(*f.MinP)
	}
	for name, v := range map[string]*float64{"presence_penalty": f.PresencePenalty, "frequency_penalty": f.FrequencyPenalty} {
		if v != nil && (*v < -2 || *v > 2) {
			return p, nil, 0, badParam(name, "%s must be between -2 and 2, got %v", name, *v)
		}
	}
	if f.PresencePenalty != nil {
		p.PresencePenalty = float32(*f.PresencePenalty)
	}
	if f.FrequencyPenalty != nil {
		p.FrequencyPenalty = float32(*f.FrequencyPenalty)
	}
	if f.RepeatPenalty != nil {
		if *f.RepeatPenalty <= 0 {
			return p, nil, 0, badParam("repeat_penalty", "repeat_penalty must be > 0, got %v", *f.RepeatPenalty)
		}
		p.RepeatPenalty, p.RepeatLastN = float32(*f.RepeatPenalty), 64
	}
	if f.Seed != nil {
		p.Seed = uint64(*f.Seed)
	} else {
		p.Seed = mrand.Uint64()
	}
	stop, err := stopList(f.Stop)
	if err != nil {
		return p, nil, 0, err
	}
	maxTokens := 0
	for name, v := range map[string]*int{"max_tokens": f.MaxTokens, "max_completion_tokens": f.MaxCompletionTokens} {
		if v != nil {
			if *v < 1 {
				return p, nil, 0, badParam(name, "%s must be >= 1, got %d", name, *v)
			}
			maxTokens = *v
		}
	}
	if f.Model == "" {
		return p, nil, 0, badParam("model", "model is required (see GET /v1/models)")
	}
	return p, stop, maxTokens, nil
}

func (s *Server) chatCompletions(c fiber.Ctx) error {
	var req chatRequest
	if err := decodeStrict(c.Body(), &req); err != nil {
		return s.openAIError(c, err)
	}
	params, stop, maxTokens, err := samplerParams(&req.samplingFields)
	if err != nil {
		return s.openAIError(c, err)
	}
	if len(req.Messages) == 0 {
		return s.openAIError(c, badParam("messages", "messages must hold at least one message"))
	}
	msgs := make([]chat.Message, 0, len(req.Messages))
	for i, m := range req.Messages {
		role := m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer":
			role = "system"
		default:
			return s.openAIError(c, badParam(fmt.Sprintf("messages[%d].role", i), "role %q is not supported (system, developer, user, assistant)", m.Role))
		}
		text, err := messageText(i, m.Content)
		if err != nil {
			return s.openAIError(c, err)
		}
		msgs = append(msgs, chat.Message{Role: role, Content: text})
	}
	if req.TopLogprobs != nil {
		if !req.Logprobs {
			return s.openAIError(c, badParam("top_logprobs", "top_logprobs needs logprobs: true"))
		}
		if *req.TopLogprobs < 0 || *req.TopLogprobs > 20 {
			return s.openAIError(c, badParam("top_logprobs", "top_logprobs must be between 0 and 20, got %d", *req.TopLogprobs))
		}
		params.TopLogprobs = *req.TopLogprobs
	}
	params.Logprobs = req.Logprobs
	return s.run(c, &req.samplingFields, params, stop, maxTokens, func(g serving.Generator) ([]int32, error) {
		tmpl := g.Template()
		if tmpl == nil {
			tmpl = chat.Fallback()
		}
		text, err := tmpl.Render(msgs, true)
		if err != nil {
			return nil, badParam("messages", "the model's chat template rejected the messages: %v", err)
		}
		return g.Tokenizer().Encode(text, true, true), nil
	}, true)
}

func (s *Server) completions(c fiber.Ctx) error {
	var req completionRequest
	if err := decodeStrict(c.Body(), &req); err != nil {
		return s.openAIError(c, err)
	}
	params, stop, maxTokens, err := samplerParams(&req.samplingFields)
	if err != nil {
		return s.openAIError(c, err)
	}
	if req.Echo {
		return s.openAIError(c, badParam("echo", "echo is not supported"))
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > 5 {
			return s.openAIError(c, badParam("logprobs", "logprobs must be between 0 and 5, got %d", *req.Logprobs))
		}
		params.Logprobs, params.TopLogprobs = true, *req.Logprobs
	}
	text, ids, err := completionPrompt(req.Prompt)
	if err != nil {
		return s.openAIError(c, err)
	}
	if req.MaxTokens == nil && req.MaxCompletionTokens == nil {
		maxTokens = 16 // the OpenAI default for completions
	}
	return s.run(c, &req.samplingFields, params, stop, maxTokens, func(g serving.Generator) ([]int32, error) {
		tok := g.Tokenizer()
		if ids != nil {
			for _, id := range ids {
				if id < 0 || int(id) >= tok.VocabSize() {
					return nil, badParam("prompt", "token id %d is outside the vocabulary (0..%d)", id, tok.VocabSize()-1)
				}
			}
			return ids, nil
		}
		return tok.Encode(text, true, true), nil
	}, false)
}

// completionPrompt accepts a string, a one-element list of strings, or token ids.
func completionPrompt(raw json.RawMessage) (string, []int32, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, badParam("prompt", "prompt is required")
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return text, nil, nil
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil {
		if len(texts) != 1 {
			return "", nil, badParam("prompt", "a list of %d prompts is not supported: send one prompt per request", len(texts))
		}
		return texts[0], nil, nil
	}
	var ids []int32
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return "", ids, nil
	}
	var idLists [][]int32
	if json.Unmarshal(raw, &idLists) == nil && len(idLists) == 1 && len(idLists[0]) > 0 {
		return "", idLists[0], nil
	}
	return "", nil, badParam("prompt", "prompt must be a string or a list of token ids")
}

// run admits the request, builds its prompt and answers it, streaming or not.
func (s *Server) run(c fiber.Ctx, f *samplingFields, params sampler.Params, stop []string, maxTokens int,
	prompt func(serving.Generator) ([]int32, error), isChat bool) error {
	if s.opt.Serving == nil && s.opt.Pipelines == nil {
		return s.noServing(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	admitted := time.Now()
	gen, err := s.acquire(ctx, f.Model)
	if err != nil {
		cancel()
		return s.openAIError(c, err)
	}
	release := func() { gen.Release(); cancel() }
	ids, err := prompt(gen)
	if err != nil {
		release()
		return s.openAIError(c, err)
	}
	ctxLen := gen.ContextLength()
	if len(ids) >= ctxLen {
		release()
		return s.openAIError(c, badParam("messages", "the prompt has %d tokens, which does not fit the model's context length of %d", len(ids), ctxLen))
	}
	if maxTokens == 0 {
		maxTokens = ctxLen - len(ids)
	} else if len(ids)+maxTokens > ctxLen {
		release()
		param := "max_tokens"
		if f.MaxCompletionTokens != nil {
			param = "max_completion_tokens"
		}
		return s.openAIError(c, badParam(param, "prompt (%d tokens) + %s (%d) = %d exceeds the model's context length of %d",
			len(ids), param, maxTokens, len(ids)+maxTokens, ctxLen))
	}
	j := &job{chat: isChat, created: time.Now().Unix(), model: f.Model, gen: gen, stream: f.Stream,
		usage: f.StreamOptions != nil && f.StreamOptions.IncludeUsage, logprobs: params.Logprobs,
		topLogprobs: params.TopLogprobs, admitted: admitted,
		req: model.GenerateRequest{Prompt: ids, MaxTokens: maxTokens, Sampler: params, Stop: stop, CtxLen: len(ids) + maxTokens}}
	// With API keys, a caller reuses only its own requests' cached prompt starts.
	j.req.CacheScope, _ = c.Locals(cacheScopeKey).(string)
	if isChat {
		j.id = newID("chatcmpl-")
	} else {
		j.id = newID("cmpl-")
	}
	if f.StreamOptions != nil && !f.Stream {
		release()
		return s.openAIError(c, badParam("stream_options", "stream_options is only allowed with stream: true"))
	}
	if !j.stream {
		defer release()
		g, err := s.generate(ctx, j, nil, nil)
		if err != nil {
			return s.openAIError(c, err)
		}
		return c.JSON(s.response(j, g))
	}
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	return c.SendStreamWriter(func(w *bufio.Writer) {
		defer release()
		s.streamJob(ctx, cancel, j, w)
	})
}

// acquire admits a request: to the pipeline of a model instance placed across nodes when there
// is one, else to the model loaded on this node.
func (s *Server) acquire(ctx context.Context, id string) (serving.Generator, error) {
	if s.opt.Pipelines != nil {
		g, err := s.opt.Pipelines.Acquire(ctx, id)
		if err != nil || g != nil {
			return g, err
		}
	}
	if s.opt.Serving == nil {
		return nil, fmt.Errorf("%w: no instance of %q is placed in the cluster and this node serves no models itself (it runs without the worker role)", store.ErrNotFound, id)
	}
	return s.opt.Serving.Acquire(ctx, id)
}

// generate runs the engine and records metrics. onText, when set, receives text as it comes.
func (s *Server) generate(ctx context.Context, j *job, onText func(string) error, onToken func(sampler.Result) error) (*model.Generation, error) {
	met := s.opt.ServingMetrics
	first := true
	req := j.req
	req.OnText = func(text string) error {
		if first {
			first = false
			if met != nil {
				met.TTFT.WithLabelValues(j.model).Observe(time.Since(j.admitted).Seconds())
			}
		}
		if onText != nil {
			return onText(text)
		}
		return nil
	}
	req.OnToken = onToken
	g, err := j.gen.Generate(ctx, req)
	if met != nil {
		if err != nil {
			met.Cancelled.WithLabelValues(j.model).Inc()
		} else {
			met.Finished.WithLabelValues(j.model, g.FinishReason).Inc()
			met.Tokens.WithLabelValues(j.model, "prompt").Add(float64(len(g.PromptTokens)))
			met.Tokens.WithLabelValues(j.model, "prompt_cached").Add(float64(g.CachedTokens))
			met.Tokens.WithLabelValues(j.model, "generated").Add(float64(len(g.Tokens)))
		}
	}
	return g, err
}

type usage struct {
	PromptTokens        int           `json:"prompt_tokens"`
	CompletionTokens    int           `json:"completion_tokens"`
	TotalTokens         int           `json:"total_tokens"`
	PromptTokensDetails promptDetails `json:"prompt_tokens_details"`
}

// promptDetails is OpenAI's breakdown of the prompt tokens: cached_tokens were not evaluated
// again, their keys and values left by an earlier request that began the same way.
type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

func usageOf(g *model.Generation) usage {
	return usage{PromptTokens: len(g.PromptTokens), CompletionTokens: len(g.Tokens), TotalTokens: len(g.PromptTokens) + len(g.Tokens),
		PromptTokensDetails: promptDetails{CachedTokens: g.CachedTokens}}
}

func fingerprint() string { return "exo-" + buildinfo.Get().Version }

// response builds the non-streaming body.
func (s *Server) response(j *job, g *model.Generation) fiber.Map {
	var choice fiber.Map
	if j.chat {
		choice = fiber.Map{"index": 0, "message": fiber.Map{"role": "assistant", "content": g.Text}, "finish_reason": g.FinishReason, "logprobs": nil}
		if j.logprobs {
			choice["logprobs"] = fiber.Map{"content": s.chatLogprobs(j, g.Logprobs)}
		}
	} else {
		choice = fiber.Map{"index": 0, "text": g.Text, "finish_reason": g.FinishReason, "logprobs": nil}
		if j.logprobs {
			choice["logprobs"] = s.textLogprobs(j, g.Logprobs)
		}
	}
	obj := "chat.completion"
	if !j.chat {
		obj = "text_completion"
	}
	return fiber.Map{"id": j.id, "object": obj, "created": j.created, "model": j.model,
		"system_fingerprint": fingerprint(), "choices": []fiber.Map{choice}, "usage": usageOf(g)}
}

type tokenLogprob struct {
	Token       string         `json:"token"`
	Logprob     float32        `json:"logprob"`
	Bytes       []int          `json:"bytes"`
	TopLogprobs []tokenLogprob `json:"top_logprobs,omitempty"`
}

func (s *Server) piece(j *job, id int32) (string, []int) {
	b := j.gen.Tokenizer().Piece(id)
	ints := make([]int, len(b))
	for i, c := range b {
		ints[i] = int(c)
	}
	return string(b), ints
}

func (s *Server) chatLogprobs(j *job, res []sampler.Result) []tokenLogprob {
	out := make([]tokenLogprob, 0, len(res))
	for _, r := range res {
		tok, b := s.piece(j, r.Token)
		lp := tokenLogprob{Token: tok, Logprob: r.Logprob, Bytes: b, TopLogprobs: []tokenLogprob{}}
		for _, t := range r.Top {
			tt, tb := s.piece(j, t.Token)
			lp.TopLogprobs = append(lp.TopLogprobs, tokenLogprob{Token: tt, Logprob: t.Logprob, Bytes: tb})
		}
		out = append(out, lp)
	}
	return out
}

// textLogprobs is the legacy completions shape.
func (s *Server) textLogprobs(j *job, res []sampler.Result) fiber.Map {
	tokens := make([]string, 0, len(res))
	lps := make([]float32, 0, len(res))
	tops := make([]map[string]float32, 0, len(res))
	offsets := make([]int, 0, len(res))
	off := 0
	for _, r := range res {
		tok, _ := s.piece(j, r.Token)
		tokens = append(tokens, tok)
		lps = append(lps, r.Logprob)
		top := map[string]float32{}
		for _, t := range r.Top {
			tt, _ := s.piece(j, t.Token)
			if _, dup := top[tt]; !dup {
				top[tt] = t.Logprob
			}
		}
		tops = append(tops, top)
		offsets = append(offsets, off)
		off += utf8.RuneCountInString(tok)
	}
	return fiber.Map{"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}
}

// sseWriter serialises writes from the generation and the keep-alive ticker.
type sseWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
}

func (w *sseWriter) data(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.raw("data: " + string(b) + "\n\n")
}

func (w *sseWriter) raw(s string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if _, err := w.w.WriteString(s); err != nil {
		w.err = err
		return err
	}
	if err := w.w.Flush(); err != nil {
		w.err = err
	}
	return w.err
}

func (s *Server) chunk(j *job, delta fiber.Map, text string, finish any) fiber.Map {
	var choice fiber.Map
	if j.chat {
		choice = fiber.Map{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}
	} else {
		choice = fiber.Map{"index": 0, "text": text, "logprobs": nil, "finish_reason": finish}
	}
	obj := "chat.completion.chunk"
	if !j.chat {
		obj = "text_completion"
	}
	m := fiber.Map{"id": j.id, "object": obj, "created": j.created, "model": j.model, "system_fingerprint": fingerprint(), "choices": []fiber.Map{choice}}
	if j.usage {
		m["usage"] = nil
	}
	return m
}

// attachLogprobs puts the logprobs of res into a stream chunk, in the chat or legacy shape.
func (s *Server) attachLogprobs(j *job, chunk fiber.Map, res []sampler.Result) {
	if !j.logprobs || len(res) == 0 {
		return
	}
	choice := chunk["choices"].([]fiber.Map)[0]
	if j.chat {
		choice["logprobs"] = fiber.Map{"content": s.chatLogprobs(j, res)}
	} else {
		choice["logprobs"] = s.textLogprobs(j, res)
	}
}

// streamJob writes the SSE stream. A write error means the client left: the generation is
// cancelled at its next token and its KV cache freed with the sequence.
func (s *Server) streamJob(ctx context.Context, cancel context.CancelFunc, j *job, bw *bufio.Writer) {
	w := &sseWriter{w: bw}
	if j.chat {
		if w.data(s.chunk(j, fiber.Map{"role": "assistant", "content": ""}, "", nil)) != nil {
			cancel()
			return
		}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(streamKeepAlive)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if w.raw(": keep-alive\n\n") != nil {
					cancel()
					return
				}
			}
		}
	}()
	// Logprobs travel with the chunk that carries their tokens' text; tokens whose text is held
	// back (a partial character, a possible stop sequence) are reported with the next text.
	var pending []sampler.Result
	var onToken func(sampler.Result) error
	if j.logprobs {
		onToken = func(r sampler.Result) error { pending = append(pending, r); return nil }
	}
	g, err := s.generate(ctx, j, func(text string) error {
		ch := s.chunk(j, fiber.Map{"content": text}, text, nil)
		s.attachLogprobs(j, ch, pending)
		pending = pending[:0]
		return w.data(ch)
	}, onToken)
	close(done)
	if err != nil {
		if w.err == nil && !errors.Is(err, context.Canceled) {
			_ = w.data(fiber.Map{"error": apiError{Message: err.Error(), Type: "server_error"}})
		}
		if w.err != nil {
			s.opt.Logger.Info("client left mid-stream; generation stopped", "id", j.id, "model", j.model)
		}
		return
	}
	final := s.chunk(j, fiber.Map{}, "", g.FinishReason)
	s.attachLogprobs(j, final, pending)
	if w.data(final) != nil {
		return
	}
	if j.usage {
		u := usageOf(g)
		obj := "chat.completion.chunk"
		if !j.chat {
			obj = "text_completion"
		}
		if w.data(fiber.Map{"id": j.id, "object": obj, "created": j.created, "model": j.model, "system_fingerprint": fingerprint(), "choices": []fiber.Map{}, "usage": u}) != nil {
			return
		}
	}
	_ = w.raw("data: [DONE]\n\n")
}
