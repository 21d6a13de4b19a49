package tokenizer

import (
	"fmt"

	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// FromGGUF builds the tokenizer stored in a GGUF file's tokenizer.ggml.* metadata. The
// tokenizer keeps no reference to f, which may be closed afterwards.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	v, err := VocabFromGGUF(f)
	if err != nil {
		return nil, err
	}
	t, err := New(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	return t, nil
}

// VocabFromGGUF reads the tokenizer description without building the tokenizer.
func VocabFromGGUF(f *gguf.File) (Vocab, error) {
	var v Vocab
	bad := func(key string, want string) error {
		got := "missing"
		if val, ok := f.Get(key); ok {
			got = val.Type.String()
			if val.Type == gguf.Array {
				got += " of " + val.ElemType.String()
			}
		}
		return fmt.Errorf("%s: tokenizer: %s is %s, want %s", f.Path, key, got, want)
	}
	var ok bool
	if v.Model, ok = f.String("tokenizer.ggml.model"); !ok {
		return v, bad("tokenizer.ggml.model", "string")
	}
	if _, present := f.Get("tokenizer.ggml.pre"); present {
		if v.Pre, ok = f.String("tokenizer.ggml.pre"); !ok {
			return v, bad("tokenizer.ggml.pre", "string")
		}
	}
	v.Name, _ = f.String("general.name")
	if v.Tokens, ok = f.Strings("tokenizer.ggml.tokens"); !ok {
		return v, bad("tokenizer.ggml.tokens", "array of string")
	}
	if val, present := f.Get("tokenizer.ggml.scores"); present {
		switch s := val.V.(type) {
		case []float32:
			v.Scores = s
		case []int32:
			v.Scores = make([]float32, len(s))
			for i, x := range s {
				v.Scores[i] = float32(x)
			}
		default:
			return v, bad("tokenizer.ggml.scores", "array of float32 or int32")
		}
	}
	if _, present := f.Get("tokenizer.ggml.token_type"); present {
		types, ok := f.Int32s("tokenizer.ggml.token_type")
		if !ok {
			return v, bad("tokenizer.ggml.token_type", "array of int32")
		}
		v.Types = make([]TokenType, len(types))
		for i, x := range types {
			v.Types[i] = TokenType(x)
		}
	}
	if _, present := f.Get("tokenizer.ggml.merges"); present {
		if v.Merges, ok = f.Strings("tokenizer.ggml.merges"); !ok {
			return v, bad("tokenizer.ggml.merges", "array of string")
		}
	} else if v.Model == "gpt2" {
		return v, bad("tokenizer.ggml.merges", "array of string")
	}

	for key, dst := range map[string]**uint32{
		"bos_token_id": &v.BOS, "eos_token_id": &v.EOS, "eot_token_id": &v.EOT, "eom_token_id": &v.EOM,
		"unknown_token_id": &v.UNK, "seperator_token_id": &v.SEP, "padding_token_id": &v.PAD,
		"mask_token_id": &v.MASK, "fim_pre_token_id": &v.FIMPre, "fim_suf_token_id": &v.FIMSuf,
		"fim_mid_token_id": &v.FIMMid, "fim_pad_token_id": &v.FIMPad, "fim_rep_token_id": &v.FIMRep,
		"fim_sep_token_id": &v.FIMSep,
	} {
		if err := optID(f, "tokenizer.ggml."+key, dst); err != nil {
			return v, err
		}
	}
	// Deprecated FIM keys take precedence when present, as llama.cpp reads them last.
	for key, dst := range map[string]**uint32{
		"prefix_token_id": &v.FIMPre, "suffix_token_id": &v.FIMSuf, "middle_token_id": &v.FIMMid,
	} {
		if err := optID(f, "tokenizer.ggml."+key, dst); err != nil {
			return v, err
		}
	}
	for key, dst := range map[string]**bool{
		"add_bos_token": &v.AddBOS, "add_eos_token": &v.AddEOS, "add_sep_token": &v.AddSEP,
		"add_space_prefix": &v.AddSpacePrefix, "normalizer.lowercase": &v.Lowercase,
		"normalizer.strip_accents": &v.StripAccents,
	} {
		key = "tokenizer.ggml." + key
		if _, present := f.Get(key); !present {
			continue
		}
		b, ok := f.Bool(key)
		if !ok {
			return v, bad(key, "bool")
		}
		*dst = &b
	}
	return v, nil
}

func optID(f *gguf.File, key string, dst **uint32) error {
	val, present := f.Get(key)
	if !present {
		return nil
	}
	id, ok := f.Uint(key)
	if !ok || id > 1<<31-1 {
		return fmt.Errorf("%s: tokenizer: %s = %v (%s), want a token id", f.Path, key, val.V, val.Type)
	}
	x := uint32(id)
	*dst = &x
	return nil
}
