package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// requestError is a 400 that names the offending field, in OpenAI's error shape.
type requestError struct {
	Param string
	Msg   string
}

func (e *requestError) Error() string { return e.Msg }

func badParam(param, format string, args ...any) error {
	return &requestError{Param: param, Msg: fmt.Sprintf(format, args...)}
}

// streamOptions is stream_options.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// samplingFields are shared by chat and text completions.
type samplingFields struct {
	Model               string          `json:"model"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"`
	MinP                *float64        `json:"min_p"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	RepeatPenalty       *float64        `json:"repeat_penalty"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	User                string          `json:"user"`
	N                   *int            `json:"n"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name,omitempty"`
}

type chatRequest struct {
	samplingFields
	Messages    []chatMessage `json:"messages"`
	Logprobs    bool          `json:"logprobs"`
	TopLogprobs *int          `json:"top_logprobs"`
}

type completionRequest struct {
	samplingFields
	Prompt   json.RawMessage `json:"prompt"`
	Logprobs *int            `json:"logprobs"`
	Echo     bool            `json:"echo"`
}

// decodeStrict parses body into v, refusing unknown fields: a field the server does not
// implement must fail loudly, never be ignored.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badParam("", "request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			// Embedded structs show up in the path; clients know only the JSON names.
			field := strings.TrimPrefix(typeErr.Field, "samplingFields.")
			return badParam(field, "field %q: expected %s, got JSON %s", field, typeErr.Type, typeErr.Value)
		case errors.As(err, &syntaxErr):
			return badParam("", "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badParam(field, "unsupported field %q", field)
		default:
			return badParam("", "malformed JSON: %v", err)
		}
	}
	if dec.More() {
		return badParam("", "malformed JSON: data after the request object")
	}
	return nil
}

// stopList accepts a string or a list of up to 4 strings.
func stopList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badParam("stop", "stop must be a string or a list of strings")
	}
	if len(list) > 4 {
		return nil, badParam("stop", "stop takes at most 4 sequences, got %d", len(list))
	}
	out := list[:0]
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// messageText accepts string content or a list of text parts.
func messageText(i int, raw json.RawMessage) (string, error) {
	param := fmt.Sprintf("messages[%d].content", i)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badParam(param, "%s must be a string or a list of content parts", param)
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", badParam(fmt.Sprintf("%s[%d].type", param, j), "content part type %q is not supported (only \"text\")", p.Type)
		}
		b.WriteString(*p.Text)
	}
	return b.String(), nil
}
