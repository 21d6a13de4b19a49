package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/tokenizer"
)

func init() { addCommand(newTokenizeCmd) }

// newTokenizeCmd is `exo tokenize`, the counterpart of llama.cpp's llama-tokenize: it prints
// the ids a model's tokenizer gives a text, with BOS/EOS added and special tokens parsed
// unless told otherwise.
func newTokenizeCmd() *cobra.Command {
	var (
		model, text, file         string
		noBOS, noParse, asJSON, s bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize --model FILE (--text TEXT | --file FILE | --stdin)",
		Short: "Show the token ids of a text under a GGUF model's tokenizer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if model == "" {
				return errors.New("--model is required")
			}
			input, err := tokenizeInput(cmd, text, file, s)
			if err != nil {
				return err
			}
			f, err := gguf.Open(model)
			if err != nil {
				return err
			}
			defer f.Close()
			tok, err := tokenizer.FromGGUF(f)
			if err != nil {
				return err
			}
			ids := tok.Encode(input, !noBOS, !noParse)
			out := cmd.OutOrStdout()
			if asJSON {
				if ids == nil {
					ids = []int32{}
				}
				return json.NewEncoder(out).Encode(struct {
					Tokens []int32 `json:"tokens"`
				}{ids})
			}
			for _, id := range ids {
				// Pieces are shown with special tokens rendered, quoted so that spaces,
				// newlines and partial UTF-8 are visible.
				if _, err := fmt.Fprintf(out, "%6d -> %s\n", id, strconv.Quote(string(tok.TokenPiece(id, true)))); err != nil {
					return err
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&model, "model", "m", "", "GGUF model file whose tokenizer to use")
	fl.StringVarP(&text, "text", "p", "", "text to tokenize")
	fl.StringVarP(&file, "file", "f", "", "read the text from this file")
	fl.BoolVar(&s, "stdin", false, "read the text from standard input")
	fl.BoolVar(&noBOS, "no-bos", false, "do not add BOS/EOS (add_special=false)")
	fl.BoolVar(&noParse, "no-parse-special", false, "treat special-token text such as <|im_start|> as plain text")
	fl.BoolVar(&asJSON, "json", false, `print {"tokens":[...]} instead of a table`)
	return cmd
}

func tokenizeInput(cmd *cobra.Command, text, file string, stdin bool) (string, error) {
	n := 0
	for _, set := range []bool{cmd.Flags().Changed("text"), file != "", stdin} {
		if set {
			n++
		}
	}
	if n != 1 {
		return "", errors.New("give exactly one of --text, --file, --stdin")
	}
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		return string(b), err
	case stdin:
		b, err := io.ReadAll(cmd.InOrStdin())
		return string(b), err
	}
	return text, nil
}
