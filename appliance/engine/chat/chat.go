// Package chat renders a model's chat template (GGUF key
// tokenizer.chat_template, a Jinja2 template) into the prompt text the
// model was trained on, producing the same bytes as llama.cpp's Jinja path
// (common_chat_templates_apply with --jinja, as llama-server uses).
//
// The template language is implemented by the jinja subpackage, which
// follows the semantics of llama.cpp's own engine rather than Python
// Jinja2 where the two differ (whitespace control, printing of none and
// lists, "is none" on undefined values, tojson spacing).
package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/exo-nix/exo/appliance/engine/chat/jinja"
	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string // "system", "user", "assistant", "tool"
	Content string
}

// Tool describes a function the model may call (OpenAI "tools" entry).
// Parameters is its JSON schema; key order is kept in the rendered prompt.
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage
}

// Request is a full rendering request; Render covers the common case.
type Request struct {
	Messages            []Message
	AddGenerationPrompt bool
	// Tools, when not empty, are passed to the template as "tools".
	Tools []Tool
	// Kwargs are extra template variables given as JSON values (llama.cpp's
	// chat_template_kwargs), e.g. {"enable_thinking": false}.
	Kwargs map[string]json.RawMessage
}

// Template is a parsed chat template plus the special-token texts it
// needs. It is immutable and safe for concurrent use.
type Template struct {
	src  string
	tmpl *jinja.Template
	// toolUse is the model's separate template for requests with tools
	// (GGUF tokenizer.chat_template.tool_use), if any.
	toolUse *Template
	bos     string
	eos     string
	opts    options
	// systemRole is false when the template never reads a system message's
	// content (it would drop or reject it); llama.cpp then merges the
	// system text into the next message.
	systemRole bool
}

type options struct {
	addBOS         bool
	addEOS         bool
	now            func() time.Time
	enableThinking bool
}

// Option adjusts how a Template renders.
type Option func(*options)

// WithAddBOS says that the tokenizer prepends BOS itself, so a BOS text the
// template emits at the very start is removed (llama.cpp does the same;
// otherwise the prompt would start with two BOS tokens).
func WithAddBOS(v bool) Option { return func(o *options) { o.addBOS = v } }

// WithAddEOS says that the tokenizer appends EOS itself, so a trailing EOS
// text from the template is removed.
func WithAddEOS(v bool) Option { return func(o *options) { o.addEOS = v } }

// WithNow sets the clock used by strftime_now and date_string (tests use a
// fixed time; the default is time.Now in the local time zone, like
// llama.cpp's localtime).
func WithNow(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithEnableThinking sets the enable_thinking variable (llama.cpp default:
// true). Qwen3 templates emit an empty think block when it is false.
func WithEnableThinking(v bool) Option { return func(o *options) { o.enableThinking = v } }

// New parses template source. bos and eos are the texts of the BOS and EOS
// tokens (bos_token / eos_token in the template). A syntax error is a
// *jinja.Error naming the line and column.
func New(src, bos, eos string, opts ...Option) (*Template, error) {
	t, err := jinja.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("chat: parse template: %w", err)
	}
	o := options{now: time.Now, enableThinking: true}
	for _, f := range opts {
		f(&o)
	}
	return &Template{src: src, tmpl: t, bos: bos, eos: eos, opts: o, systemRole: probeSystemRole(t)}, nil
}

// probeSystemRole renders a system+user conversation the way llama.cpp's
// capability check does and reports whether the template gets hold of the
// system content (through a variable or member access) at all.
func probeSystemRole(t *jinja.Template) bool {
	const marker = "\x00system content probe\x00"
	sys := jinja.NewDict()
	sys.Set("role", "system")
	sys.Set("content", marker)
	user := jinja.NewDict()
	user.Set("role", "user")
	user.Set("content", "User message")
	vars := map[string]jinja.Value{
		"messages":              jinja.NewList(sys, user),
		"tools":                 jinja.NewList(),
		"bos_token":             "",
		"eos_token":             "",
		"add_generation_prompt": true,
	}
	return t.UsesValue(vars, marker, time.Now())
}

// SupportsSystemRole reports whether the template uses system messages
// itself; when it does not, Render merges a leading system message into the
// following message (as llama.cpp does).
func (t *Template) SupportsSystemRole() bool { return t.systemRole }

// chatMLSource is the fallback for models without a template, the same
// format llama.cpp falls back to (ChatML).
const chatMLSource = `{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}`

// Fallback returns the ChatML template, used when a model carries no chat
// template (llama.cpp does the same).
func Fallback(opts ...Option) *Template {
	t, err := New(chatMLSource, "", "", opts...)
	if err != nil {
		panic("chat: built-in ChatML template does not parse: " + err.Error())
	}
	return t
}

// Source returns the template text.
func (t *Template) Source() string { return t.src }

// BOS and EOS return the special-token texts the template sees.
func (t *Template) BOS() string { return t.bos }

// EOS returns the EOS token text.
func (t *Template) EOS() string { return t.eos }

// FromGGUF builds the template of a model file: tokenizer.chat_template,
// bos/eos token texts looked up by id in tokenizer.ggml.tokens, and whether
// the tokenizer adds BOS/EOS itself. A model without a template gets the
// ChatML fallback.
func FromGGUF(f *gguf.File, opts ...Option) (*Template, error) {
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	tokenText := func(key string) (string, error) {
		id, ok := f.Uint(key)
		if !ok {
			return "", nil // no such token: the template sees ""
		}
		if id >= uint64(len(tokens)) {
			return "", fmt.Errorf("chat: %s: %s = %d is outside tokenizer.ggml.tokens (%d tokens)", f.Path, key, id, len(tokens))
		}
		return tokens[id], nil
	}
	bos, err := tokenText("tokenizer.ggml.bos_token_id")
	if err != nil {
		return nil, err
	}
	eos, err := tokenText("tokenizer.ggml.eos_token_id")
	if err != nil {
		return nil, err
	}
	all := append([]Option{WithAddBOS(addBOSDefault(f)), WithAddEOS(boolKey(f, "tokenizer.ggml.add_eos_token", false))}, opts...)
	src, ok := f.String("tokenizer.chat_template")
	if !ok || src == "" {
		t := Fallback(all...)
		t.bos, t.eos = bos, eos
		return t, nil
	}
	t, err := New(src, bos, eos, all...)
	if err != nil {
		return nil, fmt.Errorf("%s: tokenizer.chat_template: %w", f.Path, err)
	}
	if tsrc, ok := f.String("tokenizer.chat_template.tool_use"); ok && tsrc != "" {
		if t.toolUse, err = New(tsrc, bos, eos, all...); err != nil {
			return nil, fmt.Errorf("%s: tokenizer.chat_template.tool_use: %w", f.Path, err)
		}
	}
	return t, nil
}

func boolKey(f *gguf.File, key string, def bool) bool {
	if v, ok := f.Bool(key); ok {
		return v
	}
	return def
}

// addBOSDefault mirrors llama.cpp's choice when the file does not say:
// SentencePiece vocabularies and the Llama 3 BPE pre-tokenizer add BOS.
func addBOSDefault(f *gguf.File) bool {
	if v, ok := f.Bool("tokenizer.ggml.add_bos_token"); ok {
		return v
	}
	model, _ := f.String("tokenizer.ggml.model")
	pre, _ := f.String("tokenizer.ggml.pre")
	switch {
	case model == "llama":
		return true
	case model == "gpt2" && (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3"):
		return true
	}
	return false
}

// Render applies the template to a conversation. With addGenerationPrompt
// the output ends with the header of an assistant turn (if the template
// supports it). A raise_exception in the template is returned as an error
// carrying the template's message (a *jinja.Error with Kind RaisedError).
func (t *Template) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	return t.Apply(Request{Messages: msgs, AddGenerationPrompt: addGenerationPrompt})
}

// Apply renders a request, building the template context the way
// llama.cpp's common_chat_templates_apply does: messages (role "developer"
// mapped to "system"; a system message merged into the next message when
// the template ignores system content), bos_token, eos_token,
// enable_thinking, tools (only when given), datetime and date_string (the
// current local date, "%b %d %Y" and "%d %b %Y"), the kwargs, and
// add_generation_prompt (only defined when true). A leading BOS text is
// removed when the tokenizer adds BOS itself (WithAddBOS), likewise a
// trailing EOS (WithAddEOS).
func (t *Template) Apply(r Request) (string, error) {
	if len(r.Tools) > 0 && t.toolUse != nil {
		return t.toolUse.Apply(r)
	}
	msgs := make([]Message, len(r.Messages))
	copy(msgs, r.Messages)
	for i := range msgs {
		if msgs[i].Role == "developer" {
			msgs[i].Role = "system"
		}
	}
	if !t.systemRole && len(msgs) > 0 && msgs[0].Role == "system" {
		if len(msgs) > 1 {
			msgs[1].Content = msgs[0].Content + "\n" + msgs[1].Content
		}
		msgs = msgs[1:]
	}
	list := jinja.NewList()
	for _, m := range msgs {
		d := jinja.NewDict()
		d.Set("role", m.Role)
		d.Set("content", m.Content)
		list.Items = append(list.Items, d)
	}
	now := t.opts.now()
	vars := map[string]jinja.Value{
		"messages":        list,
		"bos_token":       t.bos,
		"eos_token":       t.eos,
		"enable_thinking": t.opts.enableThinking,
		"datetime":        now.Format("Jan 02 2006"),
		"date_string":     now.Format("02 Jan 2006"),
	}
	if len(r.Tools) > 0 {
		tools := jinja.NewList()
		for _, tool := range r.Tools {
			v, err := toolValue(tool)
			if err != nil {
				return "", err
			}
			tools.Items = append(tools.Items, v)
		}
		vars["tools"] = tools
	}
	for k, raw := range r.Kwargs {
		v, err := jinja.FromJSON(raw)
		if err != nil {
			return "", fmt.Errorf("chat: template kwarg %q: %w", k, err)
		}
		vars[k] = v
	}
	// llama.cpp only defines add_generation_prompt when it is true; the
	// difference shows in templates that test "is defined".
	if r.AddGenerationPrompt {
		vars["add_generation_prompt"] = true
	}
	out, err := t.tmpl.Render(vars, now)
	if err != nil {
		var je *jinja.Error
		if errors.As(err, &je) && je.Kind == jinja.RaisedError {
			return "", fmt.Errorf("chat: %w", err)
		}
		return "", fmt.Errorf("chat: render: %w", err)
	}
	if t.opts.addBOS && t.bos != "" {
		out = strings.TrimPrefix(out, t.bos)
	}
	if t.opts.addEOS && t.eos != "" {
		out = strings.TrimSuffix(out, t.eos)
	}
	return out, nil
}

// toolValue builds the OpenAI-style tool object in the key order llama.cpp
// re-serializes tools with: {"type", "function": {"name", "description",
// "parameters"}}.
func toolValue(tool Tool) (jinja.Value, error) {
	fn := jinja.NewDict()
	fn.Set("name", tool.Name)
	fn.Set("description", tool.Description)
	var params jinja.Value = jinja.NewDict()
	if len(tool.Parameters) > 0 {
		var err error
		if params, err = jinja.FromJSON(tool.Parameters); err != nil {
			return nil, fmt.Errorf("chat: tool %q parameters: %w", tool.Name, err)
		}
	}
	fn.Set("parameters", params)
	d := jinja.NewDict()
	d.Set("type", "function")
	d.Set("function", fn)
	return d, nil
}
