package chat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/chat/jinja"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

var testNow = func() time.Time { return time.Date(2024, time.July, 5, 9, 3, 0, 0, time.UTC) }

func loadTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goldenTemplate returns the exact template of a fixture model (from its
// chat golden), e.g. "qwen2-e32".
func goldenTemplate(t *testing.T, model string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testfixtures.Dir(t), "synthetic", model, "golden", model+"-chat.json"))
	if err != nil {
		testfixtures.Missing(t, err.Error())
	}
	var g chatGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g.ChatTemplate
}

func mustNew(t *testing.T, src, bos, eos string, opts ...Option) *Template {
	t.Helper()
	tm, err := New(src, bos, eos, append([]Option{WithNow(testNow)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func check(t *testing.T, got string, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
}

var weatherTool = Tool{
	Name:        "get_weather",
	Description: "Get the weather",
	Parameters:  json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`),
}

const weatherJSONIndent4 = `{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {
                    "type": "string"
                }
            },
            "required": [
                "city"
            ]
        }
    }
}`

func TestFallbackChatML(t *testing.T) {
	out, err := Fallback().Render([]Message{{"system", "S"}, {"user", "Hi"}, {"assistant", "Yo"}}, true)
	check(t, out, err, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>assistant\n")
	out, err = Fallback().Render([]Message{{"user", "Hi"}}, false)
	check(t, out, err, "<|im_start|>user\nHi<|im_end|>\n")
}

func TestMistralStyle(t *testing.T) {
	src := loadTestdata(t, "mistral_style.jinja")
	conv := []Message{{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}}

	// The tokenizer adds BOS, so the template's leading <s> is removed.
	tm := mustNew(t, src, "<s>", "</s>", WithAddBOS(true))
	out, err := tm.Render(conv, true)
	check(t, out, err, "[INST] Hi[/INST] Hello!</s>[INST] Be brief.\n\n2+2?[/INST]")

	tm = mustNew(t, src, "<s>", "</s>")
	out, err = tm.Render(conv[1:2], false)
	check(t, out, err, "<s>[INST] Hi[/INST]")

	_, err = tm.Render([]Message{{"user", "a"}, {"user", "b"}}, true)
	var je *jinja.Error
	if !errors.As(err, &je) || je.Kind != jinja.RaisedError {
		t.Fatalf("want a raised *jinja.Error, got %v", err)
	}
	if je.Message != "After the optional system message, conversation roles must alternate user/assistant/user/assistant/..." {
		t.Errorf("message %q", je.Message)
	}
	if !strings.Contains(err.Error(), "conversation roles must alternate") || je.Line != 11 {
		t.Errorf("error %q (line %d) should carry the template's message and line 11", err, je.Line)
	}
	_, err = tm.Render([]Message{{"user", "q"}, {"tool", "x"}}, true)
	if err == nil || !strings.Contains(err.Error(), "Only user and assistant roles are supported") {
		t.Errorf("tool role: got %v", err)
	}
}

func TestSystemRoleMergedWhenTemplateIgnoresIt(t *testing.T) {
	tm := mustNew(t, loadTestdata(t, "no_system.jinja"), "<bos>", "<eos>", WithAddBOS(true))
	if tm.SupportsSystemRole() {
		t.Fatal("template that rejects system messages reported as supporting them")
	}
	out, err := tm.Render([]Message{{"system", "Be brief."}, {"user", "Hi"}}, true)
	check(t, out, err, "<start_of_turn>user\nBe brief.\nHi<end_of_turn>\n<start_of_turn>model\n")
	out, err = tm.Render([]Message{{"system", "Alone"}}, false)
	check(t, out, err, "")
	if !Fallback().SupportsSystemRole() {
		t.Error("ChatML fallback must support the system role")
	}
}

func TestLlama31Style(t *testing.T) {
	src := loadTestdata(t, "llama31_style.jinja")
	tm := mustNew(t, src, "<|begin_of_text|>", "<|end_of_text|>", WithAddBOS(true))
	conv := []Message{{"system", "You are a helpful assistant. "}, {"user", " Hello "}}

	out, err := tm.Render(conv, true)
	check(t, out, err, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 05 Jul 2024\n\n"+
		"You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")

	out, err = tm.Apply(Request{Messages: conv, AddGenerationPrompt: true, Tools: []Tool{weatherTool}})
	check(t, out, err, "<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 05 Jul 2024\n\n"+
		"You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, respond with a JSON function call.\n\n"+
		weatherJSONIndent4+"\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")

	out, err = tm.Apply(Request{Messages: conv, Tools: []Tool{weatherTool}, Kwargs: map[string]json.RawMessage{"tools_in_user_message": json.RawMessage("false")}})
	check(t, out, err, "<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 05 Jul 2024\n\n"+
		"You have access to the following functions.\n\n"+weatherJSONIndent4+"\n\nYou are a helpful assistant.<|eot_id|>"+
		"<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>")

	_, err = tm.Apply(Request{Messages: conv[:1], Tools: []Tool{weatherTool}})
	if err == nil || !strings.Contains(err.Error(), "no first user message") {
		t.Errorf("want the template's exception, got %v", err)
	}
}

func TestQwenTemplates(t *testing.T) {
	qwen25 := mustNew(t, goldenTemplate(t, "qwen2-e32"), "<|endoftext|>", "<|im_end|>")
	out, err := qwen25.Render([]Message{{"user", "Hello"}}, true)
	check(t, out, err, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")

	out, err = qwen25.Apply(Request{Messages: []Message{{"developer", "You are a helpful assistant."}, {"user", "Hello"}}, AddGenerationPrompt: true, Tools: []Tool{weatherTool}})
	check(t, out, err, "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"+
		"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"+
		`{"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}`+
		"\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"+
		`{"name": <function-name>, "arguments": <args-json-object>}`+"\n</tool_call><|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")

	qwen3src := goldenTemplate(t, "qwen3-e32")
	qwen3 := mustNew(t, qwen3src, "<|endoftext|>", "<|im_end|>", WithEnableThinking(false))
	out, err = qwen3.Render([]Message{{"user", "Hi"}}, true)
	check(t, out, err, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
	// The same through chat_template_kwargs, overriding the default (true).
	qwen3 = mustNew(t, qwen3src, "<|endoftext|>", "<|im_end|>")
	out, err = qwen3.Apply(Request{Messages: []Message{{"user", "Hi"}}, AddGenerationPrompt: true, Kwargs: map[string]json.RawMessage{"enable_thinking": json.RawMessage("false")}})
	check(t, out, err, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
	// Reasoning in an earlier assistant turn is dropped, the last one kept.
	out, err = qwen3.Render([]Message{{"user", "a"}, {"assistant", "<think>\nr1\n</think>\n\nx"}, {"user", "b"}, {"assistant", "<think>r2</think>y"}}, false)
	check(t, out, err, "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nx<|im_end|>\n<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n<think>\nr2\n</think>\n\ny<|im_end|>\n")
}

func TestLlama3BOSHandling(t *testing.T) {
	src := goldenTemplate(t, "llama-bpe128k-e32")
	conv := []Message{{"user", "Hi"}}
	out, err := mustNew(t, src, "<|begin_of_text|>", "<|end_of_text|>").Render(conv, true)
	check(t, out, err, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
	out, err = mustNew(t, src, "<|begin_of_text|>", "<|end_of_text|>", WithAddBOS(true)).Render(conv, true)
	check(t, out, err, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
	out, err = mustNew(t, "{{ 'x' + eos_token }}", "", "</s>", WithAddEOS(true)).Render(conv, true)
	check(t, out, err, "x")
}

func TestContextVariables(t *testing.T) {
	tm := mustNew(t, "{{ add_generation_prompt is defined }}|{{ tools is defined }}|{{ enable_thinking }}|{{ datetime }}|{{ date_string }}|{{ strftime_now('%d %B') }}", "", "")
	out, err := tm.Render(nil, false)
	check(t, out, err, "False|False|True|Jul 05 2024|05 Jul 2024|05 July")
	out, err = tm.Apply(Request{AddGenerationPrompt: true, Tools: []Tool{weatherTool}})
	check(t, out, err, "True|True|True|Jul 05 2024|05 Jul 2024|05 July")
}

func TestErrors(t *testing.T) {
	_, err := New("hello\n{% for m in messages %}\n{{ m.content | }}\n{% endfor %}", "", "")
	var je *jinja.Error
	if !errors.As(err, &je) || je.Kind != jinja.SyntaxError || je.Line != 3 || je.Column != 16 {
		t.Fatalf("want syntax error at 3:16, got %v", err)
	}
	if !strings.Contains(err.Error(), "line 3, column 16") {
		t.Errorf("message %q lacks the position", err)
	}
	tm := mustNew(t, "{{ messages[0].content.nosuch() }}", "", "")
	if _, err := tm.Render([]Message{{"user", "x"}}, false); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("want error naming nosuch, got %v", err)
	}
	if _, err := tm.Apply(Request{Tools: []Tool{{Name: "bad", Parameters: json.RawMessage("{")}}}); err == nil || !strings.Contains(err.Error(), `tool "bad"`) {
		t.Errorf("want error naming the tool, got %v", err)
	}
}

func TestFromGGUFWithoutTemplateFallsBack(t *testing.T) {
	path := filepath.Join(testfixtures.Dir(t), "synthetic", "llama-spm32k-e256", "llama-spm32k-e256-F16.gguf")
	if _, err := os.Stat(path); err != nil {
		testfixtures.Missing(t, err.Error())
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.String("tokenizer.chat_template"); ok {
		t.Fatal("fixture unexpectedly carries a chat template")
	}
	tm, err := FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if tm.Source() != chatMLSource || tm.BOS() != "<s>" || tm.EOS() != "</s>" {
		t.Errorf("got source %q bos %q eos %q", tm.Source(), tm.BOS(), tm.EOS())
	}
	out, err := tm.Render([]Message{{"user", "Hi"}}, true)
	check(t, out, err, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
}
