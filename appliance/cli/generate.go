package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/engine/chat"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
)

func init() { addCommand(newGenerateCmd) }

// generateJSON is the --json output of `exo generate`.
type generateJSON struct {
	PromptTokens []int32         `json:"prompt_tokens"`
	Tokens       []int32         `json:"tokens"`
	Text         string          `json:"text"`
	FinishReason string          `json:"finish_reason"`
	Timings      generateTimings `json:"timings"`
}

type generateTimings struct {
	PromptMS   float64 `json:"prompt_ms"`
	GenMS      float64 `json:"gen_ms"`
	TokensPerS float64 `json:"tokens_per_s"`
}

func newGenerateCmd() *cobra.Command {
	var (
		modelPath, prompt, compute, kvType string
		chatMode, jsonOut, ignoreEOS       bool
		n, topK, ctxLen                    int
		temp, topP, minP                   float32
		seed                               int64
		stops                              []string
	)
	cmd := &cobra.Command{
		Use:   "generate --model FILE --prompt TEXT",
		Short: "Run a GGUF model locally on this machine and print the completion",
		Long: `Generate loads a GGUF model (llama, qwen2, qwen3) on this machine and completes a prompt.

Sampling defaults follow llama.cpp: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05.
--temp 0 is greedy decoding (argmax; the lowest token id wins ties) and ignores the other
sampling flags. Without --seed a random seed is drawn, so sampled runs differ; greedy runs
are always reproducible.

--chat renders the prompt as one user message with the model's chat template (with the
assistant generation prompt) and tokenizes special-token text as control tokens.
--compute native mirrors llama.cpp's arithmetic (activations quantized like its CPU
backend); --compute f32 dequantizes weights and computes in fp32.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelPath == "" {
				return usageError{errors.New("generate: --model is required")}
			}
			if !cmd.Flags().Changed("prompt") {
				return usageError{errors.New("generate: --prompt is required")}
			}
			opts := model.Options{Compute: model.Compute(compute)}
			if opts.Compute != model.ComputeNative && opts.Compute != model.ComputeF32 {
				return usageError{fmt.Errorf("generate: --compute %q is not supported (native, f32 are)", compute)}
			}
			kv, err := model.ParseKVType(kvType)
			if err != nil {
				return usageError{fmt.Errorf("generate: --kv-type: %w", err)}
			}
			opts.KVType = kv
			params := sampler.Params{Temperature: temp, TopK: topK, TopP: topP, MinP: minP}
			if seed >= 0 {
				params.Seed = uint64(seed)
			} else {
				params.Seed = rand.Uint64()
			}
			if err := params.Validate(); err != nil {
				return usageError{fmt.Errorf("generate: %w", err)}
			}
			if n < 0 {
				return usageError{fmt.Errorf("generate: --max-tokens %d must be >= 0", n)}
			}

			m, err := model.Open(modelPath, opts)
			if err != nil {
				return err
			}
			defer m.Close()

			var ids []int32
			if chatMode {
				if ids, err = m.ChatPrompt([]chat.Message{{Role: "user", Content: prompt}}); err != nil {
					return err
				}
			} else {
				ids = m.Tokenizer.Encode(prompt, true, false)
			}
			if n == 0 {
				n = m.Config.ContextLength - len(ids)
			}
			req := model.GenerateRequest{
				Prompt: ids, MaxTokens: n, Sampler: params, Stop: stops, IgnoreEOS: ignoreEOS, CtxLen: ctxLen,
			}
			out := cmd.OutOrStdout()
			if !jsonOut {
				req.OnText = func(s string) error {
					_, err := fmt.Fprint(out, s)
					return err
				}
			}
			g, err := m.Generate(cmd.Context(), req)
			if err != nil {
				return err
			}
			tm := generateTimings{
				PromptMS:   float64(g.Timings.Prompt.Microseconds()) / 1000,
				GenMS:      float64(g.Timings.Gen.Microseconds()) / 1000,
				TokensPerS: g.Timings.TokensPerSecond,
			}
			if jsonOut {
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				return enc.Encode(generateJSON{
					PromptTokens: nonNil(g.PromptTokens), Tokens: nonNil(g.Tokens), Text: g.Text,
					FinishReason: g.FinishReason, Timings: tm,
				})
			}
			fmt.Fprintln(out)
			fmt.Fprintf(cmd.ErrOrStderr(), "prompt: %d tokens in %.1f ms; generated %d tokens in %.1f ms (%.1f tokens/s); finish: %s\n",
				len(g.PromptTokens), tm.PromptMS, len(g.Tokens), tm.GenMS, tm.TokensPerS, g.FinishReason)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelPath, "model", "", "GGUF model file")
	f.StringVar(&prompt, "prompt", "", "prompt text")
	f.BoolVar(&chatMode, "chat", false, "wrap the prompt as a user message in the model's chat template")
	f.IntVarP(&n, "max-tokens", "n", 128, "tokens to generate (0: until end of generation or the context is full)")
	f.Float32Var(&temp, "temp", 0.8, "sampling temperature; 0 is greedy")
	f.Int64Var(&seed, "seed", -1, "random seed (-1: random)")
	f.IntVar(&topK, "top-k", 40, "keep the K most likely tokens (0: off)")
	f.Float32Var(&topP, "top-p", 0.95, "nucleus sampling threshold (1: off)")
	f.Float32Var(&minP, "min-p", 0.05, "drop tokens below this fraction of the top probability (0: off)")
	f.StringArrayVar(&stops, "stop", nil, "stop sequence (repeatable); it is not printed")
	f.BoolVar(&ignoreEOS, "ignore-eos", false, "keep generating past end-of-generation tokens")
	f.StringVar(&compute, "compute", string(model.ComputeNative), "arithmetic: native (llama.cpp-like) or f32")
	f.StringVar(&kvType, "kv-type", "f16", "KV cache type: f16 (llama.cpp's default F16 cache + flash attention), f32 (fp32 attention) or q8_0 (half of f16's memory)")
	f.IntVar(&ctxLen, "ctx-size", 0, "KV cache positions (0: prompt + n, capped by the model's context length)")
	f.BoolVar(&jsonOut, "json", false, "print one JSON object with tokens, text, finish reason and timings")
	return cmd
}

// nonNil makes empty token lists encode as [] rather than null.
func nonNil(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return s
}
