package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/exo-nix/exo/appliance/testfixtures"
)

// fixtures returns the shared fixture directory with the stories260K models in it.
func fixtures(t testing.TB) string {
	testfixtures.Path(t, "stories260K", "stories260K-F32.gguf")
	return testfixtures.Dir(t)
}

// storiesNode serves the stories260K fixture models.
func storiesNode(t testing.TB, extraEnv []string, args ...string) (*proc, openai.Client) {
	t.Helper()
	fx := fixtures(t)
	args = append([]string{"--models-dir", filepath.Join(fx, "stories260K")}, args...)
	p := serve(t, cleanEnv(t, extraEnv...), "http", args...)
	client := openai.NewClient(option.WithBaseURL("http://"+p.addr+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	return p, client
}

type generated struct {
	Tokens       []int32 `json:"tokens"`
	Text         string  `json:"text"`
	FinishReason string  `json:"finish_reason"`
}

// exoGenerate runs `exo generate` for the same greedy request, the reference the API must match.
func exoGenerate(t *testing.T, model, prompt string, n int, chat bool) generated {
	t.Helper()
	args := []string{"generate", "--model", model, "--prompt", prompt, "-n", itoa(n), "--temp", "0", "--json"}
	if chat {
		args = append(args, "--chat")
	}
	cmd := execCommand(args...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("exo generate: %v\n%s", err, out)
	}
	var g generated
	if err := json.Unmarshal(out, &g); err != nil {
		t.Fatalf("exo generate output %q: %v", out, err)
	}
	return g
}

func TestOpenAIClientAgainstExo(t *testing.T) {
	fx := fixtures(t)
	_, client := storiesNode(t, nil)
	ctx := context.Background()
	modelFile := filepath.Join(fx, "stories260K", "stories260K-F32.gguf")

	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range page.Data {
		ids[m.ID] = true
	}
	if !ids["stories260K-F32"] || !ids["stories260K-Q8_0"] || len(ids) != 4 {
		t.Fatalf("models: %v", ids)
	}

	t.Run("completion equals exo generate", func(t *testing.T) {
		want := exoGenerate(t, modelFile, "Once upon a time", 48, false)
		got, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model: "stories260K-F32", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(48), Temperature: openai.Float(0),
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Choices[0].Text != want.Text || got.Usage.CompletionTokens != int64(len(want.Tokens)) {
			t.Fatalf("API %q (%d tokens)\nexo generate %q (%d tokens)", got.Choices[0].Text, got.Usage.CompletionTokens, want.Text, len(want.Tokens))
		}
		if !strings.Contains(got.Choices[0].Text, "Lily") {
			t.Fatalf("not the stories260K story: %q", got.Choices[0].Text)
		}
	})

	t.Run("chat equals exo generate --chat, streaming equals non-streaming", func(t *testing.T) {
		want := exoGenerate(t, modelFile, "Tell me a story.", 24, true)
		params := openai.ChatCompletionNewParams{
			Model:     "stories260K-F32",
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story.")},
			MaxTokens: openai.Int(24), Temperature: openai.Float(0),
		}
		got, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if got.Object != "chat.completion" || got.Choices[0].Message.Content != want.Text {
			t.Fatalf("chat %q, exo generate --chat %q", got.Choices[0].Message.Content, want.Text)
		}
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var text strings.Builder
		var finish string
		var usage int64
		chunks := 0
		for stream.Next() {
			ch := stream.Current()
			chunks++
			if ch.Object != "chat.completion.chunk" {
				t.Fatalf("chunk object %q", ch.Object)
			}
			if chunks == 1 && (len(ch.Choices) == 0 || ch.Choices[0].Delta.Role != "assistant") {
				t.Fatalf("first chunk does not carry the role: %+v", ch)
			}
			if len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
				if ch.Choices[0].FinishReason != "" {
					finish = ch.Choices[0].FinishReason
				}
			}
			if ch.Usage.TotalTokens > 0 {
				usage = ch.Usage.CompletionTokens
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != want.Text || finish != "length" || usage != 24 {
			t.Fatalf("stream %q finish %q usage %d; want %q", text.String(), finish, usage, want.Text)
		}
	})

	t.Run("stop sequence", func(t *testing.T) {
		got, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model: "stories260K-F32", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(48), Temperature: openai.Float(0),
			Stop: openai.CompletionNewParamsStopUnion{OfString: openai.String("Lily")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Choices[0].FinishReason != "stop" || strings.Contains(got.Choices[0].Text, "Lily") || !strings.HasSuffix(got.Choices[0].Text, "named ") {
			t.Fatalf("stop: %q %s", got.Choices[0].Text, got.Choices[0].FinishReason)
		}
	})

	t.Run("seed determinism", func(t *testing.T) {
		sample := func(seed int64) string {
			got, err := client.Completions.New(ctx, openai.CompletionNewParams{
				Model: "stories260K-F32", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
				MaxTokens: openai.Int(40), Temperature: openai.Float(1.0), Seed: openai.Int(seed),
			})
			if err != nil {
				t.Fatal(err)
			}
			return got.Choices[0].Text
		}
		a, b, c := sample(7), sample(7), sample(8)
		if a != b {
			t.Fatalf("same seed, different text:\n%q\n%q", a, b)
		}
		if a == c {
			t.Fatalf("different seeds gave the same 40 sampled tokens: %q", a)
		}
	})

	t.Run("logprobs", func(t *testing.T) {
		got, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:     "stories260K-F32",
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			MaxTokens: openai.Int(6), Temperature: openai.Float(0), Logprobs: openai.Bool(true), TopLogprobs: openai.Int(3),
		})
		if err != nil {
			t.Fatal(err)
		}
		lps := got.Choices[0].Logprobs.Content
		if len(lps) != 6 {
			t.Fatalf("%d logprob entries for 6 tokens", len(lps))
		}
		var joined strings.Builder
		for _, lp := range lps {
			joined.WriteString(lp.Token)
			if lp.Logprob > 0 || len(lp.TopLogprobs) != 3 || lp.TopLogprobs[0].Token != lp.Token || lp.TopLogprobs[0].Logprob != lp.Logprob {
				t.Fatalf("greedy logprob entry %+v", lp)
			}
			if lp.TopLogprobs[1].Logprob > lp.TopLogprobs[0].Logprob {
				t.Fatalf("top logprobs not sorted: %+v", lp.TopLogprobs)
			}
		}
		if joined.String() != got.Choices[0].Message.Content {
			t.Fatalf("tokens %q do not spell the content %q", joined.String(), got.Choices[0].Message.Content)
		}
	})

	t.Run("a follow-up turn reuses the conversation's cache", func(t *testing.T) {
		first := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story.")}
		a, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "stories260K-F32", Messages: first,
			MaxTokens: openai.Int(20), Temperature: openai.Float(0)})
		if err != nil {
			t.Fatal(err)
		}
		next := append(first, openai.AssistantMessage(a.Choices[0].Message.Content), openai.UserMessage("What happened next?"))
		turn := func() (string, int64, int64) {
			got, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "stories260K-F32", Messages: next,
				MaxTokens: openai.Int(16), Temperature: openai.Float(0)})
			if err != nil {
				t.Fatal(err)
			}
			return got.Choices[0].Message.Content, got.Usage.PromptTokens, got.Usage.PromptTokensDetails.CachedTokens
		}
		text1, prompt1, cached1 := turn()
		// The same turn again finds all its prompt but the last token, and says the same.
		text2, prompt2, cached2 := turn()
		// The follow-up begins with the first turn's prompt (its last token aside, where the
		// template's text may tokenize differently) and what was generated for it.
		if cached1 < a.Usage.PromptTokens-1 || cached1 >= prompt1 {
			t.Errorf("cached tokens: follow-up %d of %d, first turn's prompt %d", cached1, prompt1, a.Usage.PromptTokens)
		}
		if text2 != text1 || prompt2 != prompt1 || cached2 != prompt2-1 {
			t.Errorf("repeated turn: %q (%d of %d cached), first time %q (%d of %d)", text2, cached2, prompt2, text1, cached1, prompt1)
		}
	})
}

func postJSON(t *testing.T, url, body, key string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	if m == nil {
		m = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, m, resp.Header
}

func errorField(m map[string]any, f string) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e[f].(string)
	return s
}

func TestOpenAIErrors(t *testing.T) {
	p, _ := storiesNode(t, nil)
	chatURL := "http://" + p.addr + "/v1/chat/completions"
	big := strings.Repeat("word ", 200_000) // 1 MB
	cases := []struct {
		name, body string
		status     int
		param      string
		msgParts   []string
	}{
		{"malformed JSON", `{"model":`, 400, "", []string{"malformed JSON"}},
		{"wrong type", `{"model":"stories260K-F32","messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}`, 400, "max_tokens", []string{"max_tokens"}},
		{"unsupported field", `{"model":"stories260K-F32","messages":[{"role":"user","content":"hi"}],"tools":[]}`, 400, "tools", []string{"unsupported field"}},
		{"n > 1", `{"model":"stories260K-F32","messages":[{"role":"user","content":"hi"}],"n":2}`, 400, "n", []string{"n=2"}},
		{"unknown model", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, 404, "model", []string{"gpt-9"}},
		{"over the context", `{"model":"stories260K-F32","messages":[{"role":"user","content":"hi"}],"max_tokens":600}`, 400, "max_tokens", []string{"600", "512"}},
		{"1 MB prompt", `{"model":"stories260K-F32","messages":[{"role":"user","content":"` + big + `"}]}`, 400, "messages", []string{"512"}},
		{"image part", `{"model":"stories260K-F32","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content[0].type", []string{"image_url"}},
		{"temperature range", `{"model":"stories260K-F32","messages":[{"role":"user","content":"hi"}],"temperature":5}`, 400, "temperature", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := postJSON(t, chatURL, tc.body, "")
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			e, ok := body["error"].(map[string]any)
			if !ok || e["message"] == nil || e["type"] == nil {
				t.Fatalf("not OpenAI's error shape: %v", body)
			}
			if _, has := e["param"]; !has {
				t.Fatalf("error lacks param: %v", body)
			}
			if tc.param != "" && errorField(body, "param") != tc.param {
				t.Errorf("param %q, want %q (%v)", errorField(body, "param"), tc.param, body)
			}
			for _, part := range tc.msgParts {
				if !strings.Contains(errorField(body, "message"), part) {
					t.Errorf("message %q lacks %q", errorField(body, "message"), part)
				}
			}
		})
	}
	if status, body, _ := postJSON(t, chatURL, `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, ""); status != 404 || errorField(body, "code") != "model_not_found" {
		t.Errorf("unknown model code: %v", body)
	}
}

func TestOpenAIAuth(t *testing.T) {
	p, _ := storiesNode(t, nil, "--api-key-file", writeKeyFile(t, "sk-test-123"))
	url := "http://" + p.addr + "/v1/chat/completions"
	body := `{"model":"stories260K-F32","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	if status, b, h := postJSON(t, url, body, ""); status != 401 || errorField(b, "type") != "authentication_error" || h.Get("WWW-Authenticate") == "" {
		t.Fatalf("missing key: %d %v", status, b)
	}
	if status, _, _ := postJSON(t, url, body, "sk-wrong"); status != 401 {
		t.Fatalf("invalid key: %d", status)
	}
	if status, b, _ := postJSON(t, url, body, "sk-test-123"); status != 200 {
		t.Fatalf("valid key: %d %v", status, b)
	}
	client := openai.NewClient(option.WithBaseURL("http://"+p.addr+"/v1"), option.WithAPIKey("sk-wrong"), option.WithMaxRetries(0))
	_, err := client.Models.List(context.Background())
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Fatalf("SDK with a wrong key: %v", err)
	}
}

func writeKeyFile(t *testing.T, key string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, []byte("# ci key\n"+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientDisconnectStopsGeneration(t *testing.T) {
	fx := fixtures(t)
	p := serve(t, cleanEnv(t), "http", "--models-dir", filepath.Join(fx, "synthetic", "llama-spm32k-e256"))
	base := "http://" + p.addr
	body := `{"model":"llama-spm32k-e256-F16","prompt":"Hello","max_tokens":400,"temperature":0,"stream":true}`
	req, _ := http.NewRequest("POST", base+"/v1/completions", bytes.NewReader([]byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the client goes away mid-stream
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, metrics := get(t, base+"/metrics")
		if strings.Contains(metrics, `exo_generations_cancelled_total{model="llama-spm32k-e256-F16"} 1`) &&
			strings.Contains(metrics, `exo_generations_active{model="llama-spm32k-e256-F16"} 0`) {
			if strings.Contains(metrics, `exo_generations_total{finish_reason="length"`) {
				t.Fatal("the abandoned generation ran to its end")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("generation not cancelled:\n%s", grepLines(metrics, "exo_generations"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStreamingLogprobs(t *testing.T) {
	_, client := storiesNode(t, nil)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:     "stories260K-F32",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		MaxTokens: openai.Int(8), Temperature: openai.Float(0), Logprobs: openai.Bool(true), TopLogprobs: openai.Int(2),
	}
	whole, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var tokens []string
	var text strings.Builder
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) == 0 {
			continue
		}
		text.WriteString(ch.Choices[0].Delta.Content)
		for _, lp := range ch.Choices[0].Logprobs.Content {
			tokens = append(tokens, lp.Token)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, lp := range whole.Choices[0].Logprobs.Content {
		want = append(want, lp.Token)
	}
	if strings.Join(tokens, "|") != strings.Join(want, "|") || text.String() != whole.Choices[0].Message.Content {
		t.Fatalf("streamed logprob tokens %q, non-streamed %q", tokens, want)
	}
}
