package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
)

func init() { addCommand(newGGUFCmd) }

func newGGUFCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "gguf", Short: "Inspect, split and synthesize GGUF model files"}
	cmd.AddCommand(newGGUFInfoCmd(), newGGUFExtractCmd(), newGGUFSynthCmd())
	return cmd
}

func newGGUFInfoCmd() *cobra.Command {
	var asJSON, full bool
	cmd := &cobra.Command{
		Use:   "info FILE",
		Short: "Print a GGUF file's metadata and tensor table",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := gguf.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			maxElems := 8
			if full {
				maxElems = -1
			}
			if asJSON {
				return ggufInfoJSON(cmd.OutOrStdout(), f, maxElems)
			}
			return ggufInfoText(cmd.OutOrStdout(), f, maxElems)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().BoolVar(&full, "full", false, "print arrays in full instead of their first 8 elements")
	return cmd
}

func ggufInfoText(out io.Writer, f *gguf.File, maxElems int) error {
	var total int64
	for _, t := range f.Tensors {
		total += t.Size
	}
	fmt.Fprintf(out, "file:       %s\nversion:    %d\nalignment:  %d\ndata:       offset %d, %d tensors, %s\n",
		f.Path, f.Version, f.Alignment, f.DataOffset, len(f.Tensors), humanBytes(total))
	fmt.Fprintf(out, "\nmetadata (%d keys):\n", len(f.KVs))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, kv := range f.KVs {
		typ := kv.Value.Type.String()
		if kv.Value.Type == gguf.Array {
			typ = "[]" + kv.Value.ElemType.String()
		}
		val := kv.Value.Format(maxElems)
		if maxElems >= 0 && len(val) > 200 {
			cut := 200
			for cut > 0 && !utf8.RuneStart(val[cut]) {
				cut--
			}
			val = val[:cut] + "…"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", kv.Key, typ, strings.ReplaceAll(val, "\n", `\n`))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\ntensors (%d):\n", len(f.Tensors))
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  name\ttype\tdims\tbytes\n")
	for _, t := range f.Tensors {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\n", t.Name, t.Type, dimsString(t.Dims), t.Size)
	}
	return tw.Flush()
}

type jsonKV struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Count *int   `json:"count,omitempty"` // arrays: total elements, even when Value is cut short
	Value any    `json:"value"`
}

type jsonTensor struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Dims   []uint64 `json:"dims"`
	Offset uint64   `json:"offset"`
	Bytes  int64    `json:"bytes"`
}

func ggufInfoJSON(out io.Writer, f *gguf.File, maxElems int) error {
	doc := struct {
		Path       string       `json:"path"`
		Version    uint32       `json:"version"`
		Alignment  uint64       `json:"alignment"`
		DataOffset int64        `json:"data_offset"`
		Metadata   []jsonKV     `json:"metadata"`
		Tensors    []jsonTensor `json:"tensors"`
	}{Path: f.Path, Version: f.Version, Alignment: f.Alignment, DataOffset: f.DataOffset, Metadata: []jsonKV{}, Tensors: []jsonTensor{}}
	for _, kv := range f.KVs {
		j := jsonKV{Key: kv.Key, Type: kv.Value.Type.String(), Value: jsonSafe(kv.Value.JSON(), maxElems)}
		if kv.Value.Type == gguf.Array {
			j.Type = "[]" + kv.Value.ElemType.String()
			n := kv.Value.Len()
			j.Count = &n
		}
		doc.Metadata = append(doc.Metadata, j)
	}
	for _, t := range f.Tensors {
		doc.Tensors = append(doc.Tensors, jsonTensor{Name: t.Name, Type: t.Type.String(), Dims: t.Dims, Offset: t.Offset, Bytes: t.Size})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}

// jsonSafe cuts arrays to maxElems (negative: no limit) and spells non-finite floats as strings,
// which encoding/json cannot represent.
func jsonSafe(v any, maxElems int) any {
	cut := func(n int) int {
		if maxElems >= 0 && n > maxElems {
			return maxElems
		}
		return n
	}
	float := func(x float64) any {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return x
	}
	switch x := v.(type) {
	case float32:
		return float(float64(x))
	case float64:
		return float(x)
	case []float32:
		out := make([]any, cut(len(x)))
		for i := range out {
			out[i] = float(float64(x[i]))
		}
		return out
	case []float64:
		out := make([]any, cut(len(x)))
		for i := range out {
			out[i] = float(x[i])
		}
		return out
	case []any:
		out := make([]any, cut(len(x)))
		for i := range out {
			out[i] = jsonSafe(x[i], maxElems)
		}
		return out
	case []uint8:
		// encoding/json would write a byte slice as base64.
		out := make([]uint16, cut(len(x)))
		for i := range out {
			out[i] = uint16(x[i])
		}
		return out
	case []string:
		return x[:cut(len(x))]
	case []bool:
		return x[:cut(len(x))]
	case []int8:
		return x[:cut(len(x))]
	case []uint16:
		return x[:cut(len(x))]
	case []int16:
		return x[:cut(len(x))]
	case []uint32:
		return x[:cut(len(x))]
	case []int32:
		return x[:cut(len(x))]
	case []uint64:
		return x[:cut(len(x))]
	case []int64:
		return x[:cut(len(x))]
	}
	return v
}

func dimsString(d []uint64) string {
	parts := make([]string, len(d))
	for i, n := range d {
		parts[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(parts, "×")
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newGGUFExtractCmd() *cobra.Command {
	var layers, out string
	cmd := &cobra.Command{
		Use:   "extract FILE --layers A:B --out OUT",
		Short: "Write the blocks [A, B) of a model, with what their pipeline stage needs, to a new GGUF",
		Long: "Writes blk.A … blk.B-1 with all metadata and exo.stage.* keys recording the range; the first\n" +
			"stage (A = 0) also gets token_embd, the last (B = block count) output_norm and output (or\n" +
			"token_embd when the output is tied to it). Block numbers are kept as in the source.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			first, last, err := parseLayerRange(layers)
			if err != nil {
				return usageError{err}
			}
			if out == "" {
				return usageError{fmt.Errorf("--out is required")}
			}
			src, err := gguf.Open(args[0])
			if err != nil {
				return err
			}
			defer src.Close()
			if err := gguf.ExtractFile(src, first, last, out); err != nil {
				return err
			}
			ts, _ := gguf.StageTensors(src, first, last)
			var n int64
			for _, t := range ts {
				n += t.Size
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: blocks [%d, %d), %d tensors, %s\n", out, first, last, len(ts), humanBytes(n))
			return nil
		},
	}
	cmd.Flags().StringVar(&layers, "layers", "", "block range A:B (B exclusive)")
	cmd.Flags().StringVar(&out, "out", "", "output file")
	_ = cmd.MarkFlagRequired("layers")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func parseLayerRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, ":")
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || first < 0 || last <= first {
		return 0, 0, fmt.Errorf("--layers %q: want A:B with 0 <= A < B", s)
	}
	return first, last, nil
}

func newGGUFSynthCmd() *cobra.Command {
	var arch, preset, dims, typ, vocabFrom, out, name string
	var seed uint64
	var names []string
	for _, p := range gguf.Presets() {
		names = append(names, fmt.Sprintf("  %-14s %s, %.2fB parameters", p.Name, p.Arch, float64(p.H.Params(p.Arch))/1e9))
	}
	cmd := &cobra.Command{
		Use:   "synth --arch A (--preset P | --dims K=V,...) --type T --seed S [--vocab-from FILE] --out FILE",
		Short: "Create a random-weight model of a real architecture (for tests and benchmarks)",
		Long: "Writes a GGUF with random weights (N(0, (g/sqrt(fan_in))²), norms 1+0.1·N(0,1)), deterministic\n" +
			"for a seed. --type applies to 2-D weights whose rows hold its blocks (K-quants fall back to\n" +
			"Q5_0/Q5_1/Q8_0/Q4_0 like llama.cpp, then F16); 1-D tensors are F32. q4_k_m and q5_k_m are\n" +
			"llama-quantize's _M mixes (Q6_K for the output matrix and for attn_v and ffn_down of the first\n" +
			"and last eighth of the layers and every third between). --vocab-from copies every\n" +
			"tokenizer.* key (and so the vocabulary size) from another GGUF; otherwise a placeholder\n" +
			"SentencePiece vocabulary is written.\n\n" +
			"--dims keys: embd, layers, heads, ffn, vocab (required); kv_heads, head_dim, ctx, rope_theta,\n" +
			"eps, tied=true|false.\n\nPresets:\n" + strings.Join(names, "\n"),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			medium := false
			switch strings.ToLower(typ) {
			case "q4_k_m", "q5_k_m":
				medium, typ = true, typ[:4]
			case "q4_k_s", "q5_k_s":
				typ = typ[:4] // what a uniform K-quant file is called
			}
			t, err := ggml.Parse(typ)
			if err != nil {
				return usageError{fmt.Errorf("--type: %w", err)}
			}
			opts := gguf.SynthOptions{Arch: arch, Preset: preset, Type: t, Medium: medium, Seed: seed, VocabFrom: vocabFrom, Out: out, Name: name}
			switch {
			case preset != "" && dims != "":
				return usageError{fmt.Errorf("give --preset or --dims, not both")}
			case preset == "" && dims == "":
				return usageError{fmt.Errorf("give --preset or --dims")}
			case dims != "":
				if arch == "" {
					return usageError{fmt.Errorf("--dims needs --arch")}
				}
				h, err := gguf.ParseDims(arch, dims)
				if err != nil {
					return usageError{err}
				}
				opts.Dims = &h
			}
			if err := gguf.Synth(opts); err != nil {
				return err
			}
			f, err := gguf.Open(out)
			if err != nil {
				return err
			}
			defer f.Close()
			var n int64
			for _, ti := range f.Tensors {
				n += ti.Size
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, %d tensors, %s of weights\n", out, f.Arch(), len(f.Tensors), humanBytes(n))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&arch, "arch", "", "llama, qwen2 or qwen3 (implied by --preset)")
	fl.StringVar(&preset, "preset", "", "published model dimensions (see below)")
	fl.StringVar(&dims, "dims", "", "explicit dimensions, e.g. embd=256,layers=4,heads=8,kv_heads=4,ffn=768,vocab=32000")
	fl.StringVar(&typ, "type", "f16", "tensor type of 2-D weights (f32, f16, bf16, q8_0, q4_0, q4_k, q4_k_m, q6_k, ...)")
	fl.Uint64Var(&seed, "seed", 0, "random seed")
	fl.StringVar(&vocabFrom, "vocab-from", "", "GGUF whose tokenizer to copy")
	fl.StringVar(&out, "out", "", "output file")
	fl.StringVar(&name, "name", "", "general.name (default: derived from preset or dims)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
