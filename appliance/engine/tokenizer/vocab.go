// Package tokenizer turns text into token ids and back, for the vocabularies GGUF files carry,
// reproducing llama.cpp (commit 34af94cd9) token for token: SentencePiece-style vocabularies
// (tokenizer.ggml.model "llama"), byte-level BPE ("gpt2") with the pre-tokenizers of the common
// model families, and WordPiece ("bert").
package tokenizer

import (
	"fmt"
	"sort"
	"strings"
)

// TokenType is the value stored per token in tokenizer.ggml.token_type.
type TokenType int32

// Token types as gguf-py writes them.
const (
	TypeUndefined   TokenType = 0
	TypeNormal      TokenType = 1
	TypeUnknown     TokenType = 2
	TypeControl     TokenType = 3
	TypeUserDefined TokenType = 4
	TypeUnused      TokenType = 5
	TypeByte        TokenType = 6
)

// attr is llama.cpp's llama_token_attr: a token type widened into flags, because llama.cpp
// adjusts tokens after loading (e.g. end-of-generation tokens become control tokens).
type attr uint32

const (
	attrUnknown     attr = 1 << 0
	attrUnused      attr = 1 << 1
	attrNormal      attr = 1 << 2
	attrControl     attr = 1 << 3
	attrUserDefined attr = 1 << 4
	attrByte        attr = 1 << 5
	attrLStrip      attr = 1 << 7
	attrRStrip      attr = 1 << 8
)

func (t TokenType) attr() attr {
	switch t {
	case TypeNormal:
		return attrNormal
	case TypeUnknown:
		return attrUnknown
	case TypeControl:
		return attrControl
	case TypeUserDefined:
		return attrUserDefined
	case TypeUnused:
		return attrUnused
	case TypeByte:
		return attrByte
	}
	return 0
}

// Vocab is the tokenizer description as stored in GGUF metadata (tokenizer.ggml.*). Optional
// values are pointers: nil means the key is absent and llama.cpp's default for the model applies.
type Vocab struct {
	Model  string      // tokenizer.ggml.model: "llama" (SPM), "gpt2" (BPE), "bert" (WPM)
	Pre    string      // tokenizer.ggml.pre (BPE only)
	Name   string      // general.name: llama.cpp keys a few token attributes off it (Phi-3)
	Tokens []string    // tokenizer.ggml.tokens
	Scores []float32   // tokenizer.ggml.scores (optional)
	Types  []TokenType // tokenizer.ggml.token_type (optional: all NORMAL)
	Merges []string    // tokenizer.ggml.merges (BPE): "left right", rank = index

	BOS, EOS, EOT, EOM, UNK, SEP, PAD, MASK        *uint32
	FIMPre, FIMSuf, FIMMid, FIMPad, FIMRep, FIMSep *uint32

	AddBOS, AddEOS, AddSEP, AddSpacePrefix *bool
	Lowercase, StripAccents                *bool // WordPiece normalizer
}

type vocabType int

const (
	typeSPM vocabType = iota
	typeBPE
	typeWPM
)

// noToken is LLAMA_TOKEN_NULL.
const noToken int32 = -1

// Tokenizer encodes and decodes text for one vocabulary. It is immutable after New and safe for
// concurrent use.
type Tokenizer struct {
	typ   vocabType
	model string
	pre   string

	texts  []string
	scores []float32
	attrs  []attr
	ids    map[string]int32

	// BPE
	ranks  map[string]int32 // "left right" -> merge rank, first occurrence wins
	preTok preTokenizer
	preCfg bpePreFlags

	// special ids (noToken when absent)
	bos, eos, eot, eom, unk, sep, pad, mask        int32
	fimPre, fimSuf, fimMid, fimPad, fimRep, fimSep int32

	addBOS, addEOS, addSEP bool
	addSpacePrefix         bool
	cleanSpaces            bool
	lowercase, stripAcc    bool
	maxTokenLen            int

	eog     map[int32]bool
	special []int32  // control, user-defined and unknown tokens, longest text first
	pieces  [][]byte // token_to_piece with special tokens rendered
}

// New builds a tokenizer from a vocabulary description, applying llama.cpp's loading rules
// (per-model defaults, end-of-generation detection by token text, attribute fix-ups).
func New(v Vocab) (*Tokenizer, error) {
	t := &Tokenizer{model: v.Model, pre: v.Pre}
	n := len(v.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.tokens is empty")
	}
	if v.Scores != nil && len(v.Scores) < n {
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.scores has %d entries, want %d", len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) < n {
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.token_type has %d entries, want %d", len(v.Types), n)
	}

	// Defaults per model, as in llama_vocab::impl::load.
	t.bos, t.eos, t.eot, t.eom, t.unk, t.sep, t.pad, t.mask = 1, 2, noToken, noToken, 0, noToken, noToken, noToken
	t.fimPre, t.fimSuf, t.fimMid, t.fimPad, t.fimRep, t.fimSep = noToken, noToken, noToken, noToken, noToken, noToken
	switch v.Model {
	case "llama":
		t.typ = typeSPM
		t.addSpacePrefix, t.addBOS = true, true
	case "gpt2":
		t.typ = typeBPE
		t.bos, t.eos, t.unk = 11, 11, noToken
		cfg, err := lookupPre(v.Pre)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		t.preCfg = cfg
		t.preTok = newPreTokenizer(cfg.typ)
		t.addBOS, t.cleanSpaces = cfg.addBOS, cfg.cleanSpaces
		if cfg.nullBOS {
			t.bos = noToken
		}
		t.ranks = make(map[string]int32, len(v.Merges))
		for i, m := range v.Merges {
			// Lookups use "left right"; llama.cpp splits an entry at the first space after
			// its first byte, which gives the same key. An entry without that space becomes
			// the pair ("", ""), which no symbol pair can match.
			key := m
			if !strings.Contains(m[min(1, len(m)):], " ") {
				key = " "
			}
			if _, dup := t.ranks[key]; !dup { // the first rank of a repeated merge wins
				t.ranks[key] = int32(i)
			}
		}
	case "bert":
		t.typ = typeWPM
		t.bos, t.eos, t.unk, t.sep, t.pad, t.mask = 101, noToken, 100, 102, 0, 103
		t.addBOS, t.addSEP, t.cleanSpaces = true, true, true
		t.lowercase = true
	case "":
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.model is missing")
	default:
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.model %q not supported (want llama, gpt2 or bert)", v.Model)
	}
	if v.AddSpacePrefix != nil {
		t.addSpacePrefix = *v.AddSpacePrefix
	}

	t.texts = make([]string, n)
	t.scores = make([]float32, n)
	t.attrs = make([]attr, n)
	t.ids = make(map[string]int32, n)
	for i, s := range v.Tokens {
		if s == "" {
			s = fmt.Sprintf("[EMPTY_%d]", i)
		}
		if prev, dup := t.ids[s]; dup {
			return nil, fmt.Errorf("tokenizer: duplicate token %q at ids %d and %d", s, prev, i)
		}
		t.ids[s] = int32(i)
		t.texts[i] = s
		t.maxTokenLen = max(t.maxTokenLen, len(s))
		if v.Scores != nil {
			t.scores[i] = v.Scores[i]
		}
		t.attrs[i] = attrNormal
		if v.Types != nil {
			t.attrs[i] = v.Types[i].attr()
		}
	}

	// Metadata ids override the defaults; a default outside the vocabulary is dropped and an
	// out-of-range metadata id is ignored, as llama.cpp does (with a warning).
	for _, s := range []struct {
		dst *int32
		src *uint32
	}{
		{&t.bos, v.BOS}, {&t.eos, v.EOS}, {&t.eot, v.EOT}, {&t.eom, v.EOM}, {&t.unk, v.UNK},
		{&t.sep, v.SEP}, {&t.pad, v.PAD}, {&t.mask, v.MASK}, {&t.fimPre, v.FIMPre},
		{&t.fimSuf, v.FIMSuf}, {&t.fimMid, v.FIMMid}, {&t.fimPad, v.FIMPad}, {&t.fimRep, v.FIMRep},
		{&t.fimSep, v.FIMSep},
	} {
		if *s.dst >= int32(n) {
			*s.dst = noToken
		}
		if s.src != nil && *s.src < uint32(n) {
			*s.dst = int32(*s.src)
		}
	}
	if v.AddBOS != nil {
		t.addBOS = *v.AddBOS
	}
	if v.AddEOS != nil {
		t.addEOS = *v.AddEOS
	}
	if v.AddSEP != nil {
		t.addSEP = *v.AddSEP
	}
	for _, c := range []struct {
		on   bool
		id   int32
		what string
	}{{t.addBOS, t.bos, "add_bos_token is true but there is no bos_token_id"},
		{t.addEOS, t.eos, "add_eos_token is true but there is no eos_token_id"},
		{t.addSEP, t.sep, "add_sep_token is true but there is no seperator_token_id"}} {
		if c.on && c.id == noToken {
			return nil, fmt.Errorf("tokenizer: %s", c.what)
		}
	}
	if v.Lowercase != nil {
		t.lowercase = *v.Lowercase
	}
	t.stripAcc = t.lowercase
	if v.StripAccents != nil {
		t.stripAcc = *v.StripAccents
	}

	t.detectSpecial(strings.ToLower(v.Name))

	t.pieces = make([][]byte, n)
	for i := range t.pieces {
		t.pieces[i] = t.renderPiece(int32(i))
	}
	return t, nil
}

// Texts that llama.cpp recognises as special tokens when metadata does not name them. The
// order only matters for which id EOT() reports when several candidates exist.
var (
	eotTexts = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
		"<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}
	eomTexts    = []string{"<|eom_id|>"}
	fimPreTexts = []string{"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
		"▁<PRE>", "<|code_prefix|>", "<|prefix|>"}
	fimSufTexts = []string{"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
		"▁<SUF>", "<|code_suffix|>", "<|suffix|>"}
	fimMidTexts = []string{"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
		"▁<MID>", "<|code_middle|>", "<|middle|>"}
	fimPadTexts = []string{"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}
	fimRepTexts = []string{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}
	fimSepTexts = []string{"<|file_sep|>"}
	eogTexts    = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
		"<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]",
		"[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
		"<｜end▁of▁sentence｜>", "[e~["}
)

// detectSpecial reproduces the part of llama.cpp's loader that works from token texts: EOT,
// EOM and FIM ids, the end-of-generation set, "unused" control tokens, the special-token list
// used to split input text, and per-model strip attributes.
func (t *Tokenizer) detectSpecial(name string) {
	find := func(dst *int32, texts []string) {
		if *dst != noToken {
			return
		}
		for _, s := range texts {
			if id, ok := t.ids[s]; ok {
				*dst = id
				t.attrs[id] |= attrControl
				break
			}
		}
	}
	find(&t.eot, eotTexts)
	find(&t.eom, eomTexts)
	find(&t.fimPre, fimPreTexts)
	find(&t.fimSuf, fimSufTexts)
	find(&t.fimMid, fimMidTexts)
	find(&t.fimPad, fimPadTexts)
	find(&t.fimRep, fimRepTexts)
	find(&t.fimSep, fimSepTexts)

	for id, a := range t.attrs {
		if a&attrControl != 0 && strings.Contains(t.texts[id], "unused") {
			t.attrs[id] |= attrUnused
		}
	}

	t.eog = map[int32]bool{}
	for _, id := range []int32{t.fimPad, t.fimRep, t.fimSep} {
		if id != noToken {
			t.eog[id] = true
		}
	}
	for _, s := range eogTexts {
		if id, ok := t.ids[s]; ok {
			t.eog[id] = true
			t.attrs[id] |= attrControl
		}
	}
	// gpt-oss renders these channel markers as text.
	for _, s := range []string{"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"} {
		if id, ok := t.ids[s]; ok {
			t.attrs[id] = attrUserDefined
		}
	}
	for _, id := range []int32{t.eos, t.eot, t.eom} {
		if id != noToken {
			t.eog[id] = true
		}
	}
	has := func(s string) (int32, bool) {
		id, ok := t.ids[s]
		return id, ok && t.eog[id]
	}
	// o200k_harmony and solar-open use <|end|> between turns, not at the end of generation.
	_, hasReturn := has("<|return|>")
	_, hasCall := has("<|call|>")
	_, hasCalls := has("<|calls|>")
	_, hasFlush := has("<|flush|>")
	if endID, hasEnd := has("<|end|>"); hasEnd && ((hasReturn && (hasCall || hasCalls)) || ((hasCall || hasCalls) && hasFlush)) {
		delete(t.eog, endID)
		t.attrs[endID] = attrUserDefined
	}
	// Gemma 4 and PaddleOCR use </s> as text.
	if _, ok := has("<|tool_response>"); ok {
		if sID, ok := has("</s>"); ok {
			delete(t.eog, sID)
			t.attrs[sID] = attrNormal
		}
	}

	for id, a := range t.attrs {
		if a&(attrControl|attrUserDefined|attrUnknown) != 0 {
			t.special = append(t.special, int32(id))
		}
	}
	// llama.cpp sorts by length only (std::sort, unstable); ids break ties here so the result
	// is deterministic. Order among equal lengths matters only for overlapping matches.
	sort.SliceStable(t.special, func(i, j int) bool {
		return len(t.texts[t.special[i]]) > len(t.texts[t.special[j]])
	})

	setAttr := func(s string, a attr, on bool) {
		if id, ok := t.ids[s]; ok {
			if on {
				t.attrs[id] |= a
			} else {
				t.attrs[id] &^= a
			}
		}
	}
	switch {
	case containsAny(t.pre, "jina-v2-de", "jina-v2-es", "jina-v2-code"):
		setAttr("<mask>", attrLStrip, true)
	case containsAny(name, "phi-3", "phi3"):
		for _, id := range t.special {
			t.attrs[id] |= attrRStrip
		}
		setAttr("</s>", attrRStrip, true)
		for _, s := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			setAttr(s, attrRStrip, false)
		}
	case containsAny(name, "modern-bert"):
		setAttr("[MASK]", attrLStrip, true)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// VocabSize is the number of tokens.
func (t *Tokenizer) VocabSize() int { return len(t.texts) }

// BOS is the beginning-of-sequence id, or -1.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS is the end-of-sequence id, or -1.
func (t *Tokenizer) EOS() int32 { return t.eos }

// EOT is the end-of-turn id (from metadata or recognised by its text), or -1.
func (t *Tokenizer) EOT() int32 { return t.eot }

// EOM is the end-of-message id, or -1.
func (t *Tokenizer) EOM() int32 { return t.eom }

// UNK is the unknown-token id, or -1.
func (t *Tokenizer) UNK() int32 { return t.unk }

// PAD is the padding id, or -1.
func (t *Tokenizer) PAD() int32 { return t.pad }

// SEP is the separator id, or -1.
func (t *Tokenizer) SEP() int32 { return t.sep }

// AddBOS reports whether Encode with addSpecial prepends BOS.
func (t *Tokenizer) AddBOS() bool { return t.addBOS }

// AddEOS reports whether Encode with addSpecial appends EOS.
func (t *Tokenizer) AddEOS() bool { return t.addEOS }

// Model is tokenizer.ggml.model.
func (t *Tokenizer) Model() string { return t.model }

// Pre is tokenizer.ggml.pre.
func (t *Tokenizer) Pre() string { return t.pre }

// IsEOG reports whether generation should stop at id: EOS, EOT, EOM and the tokens llama.cpp
// recognises by text (<|im_end|>, <|eot_id|>, <|endoftext|>, FIM separators, ...).
func (t *Tokenizer) IsEOG(id int32) bool { return t.eog[id] }

// EOG returns the end-of-generation ids in ascending order.
func (t *Tokenizer) EOG() []int32 {
	out := make([]int32, 0, len(t.eog))
	for id := range t.eog {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Text is the token's string as stored in the vocabulary (e.g. "▁the", "Ġthe", "<0x0A>").
func (t *Tokenizer) Text(id int32) string {
	if !t.valid(id) {
		return ""
	}
	return t.texts[id]
}

// Type is the token's type after llama.cpp's load-time adjustments (an end-of-generation token
// stored as NORMAL reports CONTROL).
func (t *Tokenizer) Type(id int32) TokenType {
	if !t.valid(id) {
		return TypeUndefined
	}
	a := t.attrs[id]
	switch {
	case a&attrUnused != 0:
		return TypeUnused
	case a&attrControl != 0:
		return TypeControl
	case a&attrUserDefined != 0:
		return TypeUserDefined
	case a&attrUnknown != 0:
		return TypeUnknown
	case a&attrByte != 0:
		return TypeByte
	case a&attrNormal != 0:
		return TypeNormal
	}
	return TypeUndefined
}

// IsControl reports whether id is a control token (never rendered in generated text).
func (t *Tokenizer) IsControl(id int32) bool { return t.valid(id) && t.attrs[id]&attrControl != 0 }

// TokenID looks a token up by its vocabulary text.
func (t *Tokenizer) TokenID(s string) (int32, bool) {
	id, ok := t.ids[s]
	return id, ok
}

func (t *Tokenizer) valid(id int32) bool { return id >= 0 && int(id) < len(t.texts) }
