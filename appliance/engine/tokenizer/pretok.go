package tokenizer

import "fmt"

// Pre-tokenization: byte-level BPE vocabularies first cut the text into words with a list of
// regular expressions (chosen by tokenizer.ggml.pre) and merge only inside a word. llama.cpp
// applies the expressions one after another: each one re-splits every piece produced so far,
// and the text between two matches is kept as a piece of its own. Go's regexp has neither
// \p{..} classes of llama.cpp's flavour nor lookahead, and the expressions in use are few and
// simple, so each is implemented by hand below with the same leftmost-first, greedy,
// backtracking semantics that std::regex gives them in llama.cpp.

// text is a piece of input seen as code points plus their category flags.
type text struct {
	cp []uint32
	fl []cptFlags
}

func newText(s string) text {
	cp := decodeCpts(s)
	fl := make([]cptFlags, len(cp))
	for i, c := range cp {
		fl[i] = flagsOf(c)
	}
	return text{cp: cp, fl: fl}
}

// splitStep refines a segmentation (lengths in code points that sum to len(t.cp)).
type splitStep func(t text, segs []int) []int

// matcher reports where a match starting exactly at pos ends (> pos), or -1, without looking
// outside [pos, end): llama.cpp runs each expression on one piece at a time.
type matcher func(t text, pos, end int) int

// regexStep runs a matcher the way std::regex_iterator does: search from the left for the
// first position where it matches, emit the unmatched gap and the match, continue after it.
func regexStep(m matcher) splitStep {
	return func(t text, segs []int) []int {
		out := make([]int, 0, len(segs))
		start := 0
		for _, n := range segs {
			end := start + n
			gap := start
			for pos := start; pos < end; {
				e := m(t, pos, end)
				if e <= pos {
					pos++
					continue
				}
				if pos > gap {
					out = append(out, pos-gap)
				}
				out = append(out, e-pos)
				pos, gap = e, e
			}
			if end > gap {
				out = append(out, end-gap)
			}
			start = end
		}
		return out
	}
}

type cptPred func(c uint32, f cptFlags) bool

func isLetter(_ uint32, f cptFlags) bool { return f.isLetter() }
func isNumber(_ uint32, f cptFlags) bool { return f.isNumber() }
func isPunct(_ uint32, f cptFlags) bool  { return f.isPunctuation() }
func isCRLF(c uint32, _ cptFlags) bool   { return c == '\r' || c == '\n' }

func isASCIIDigit(c uint32, _ cptFlags) bool { return c >= '0' && c <= '9' }

// punctOr is [\p{P}<extra>]: the collapsed-category trick of llama.cpp keeps ASCII symbols
// such as '$' outside \p{P}, so expressions list them explicitly.
func punctOr(extra string) cptPred {
	var set [128]bool
	for i := 0; i < len(extra); i++ {
		set[extra[i]] = true
	}
	return func(c uint32, f cptFlags) bool {
		return f.isPunctuation() || (c < 128 && set[c])
	}
}

// ranges is a character class given as inclusive code point ranges.
type ranges [][2]uint32

func (r ranges) pred() cptPred {
	return func(c uint32, f cptFlags) bool {
		// Non-ASCII whitespace is folded to \v before llama.cpp runs these expressions, so it
		// can never match a literal class.
		if c >= 128 && f.isWhitespace() {
			return false
		}
		for _, rg := range r {
			if c >= rg[0] && c <= rg[1] {
				return true
			}
		}
		return false
	}
}

func runLen(t text, pos, end int, p cptPred) int {
	i := pos
	for i < end && p(t.cp[i], t.fl[i]) {
		i++
	}
	return i - pos
}

// matchRun is X+.
func matchRun(p cptPred) matcher {
	return func(t text, pos, end int) int {
		if n := runLen(t, pos, end, p); n > 0 {
			return pos + n
		}
		return -1
	}
}

// matchOne is X.
func matchOne(p cptPred) matcher {
	return func(t text, pos, end int) int {
		if p(t.cp[pos], t.fl[pos]) {
			return pos + 1
		}
		return -1
	}
}

// matchOptSpaceRun is \s?X+ where X never matches whitespace.
func matchOptSpaceRun(p cptPred) matcher {
	return func(t text, pos, end int) int {
		if t.fl[pos].isWhitespace() && pos+1 < end {
			if n := runLen(t, pos+1, end, p); n > 0 {
				return pos + 1 + n
			}
		}
		if n := runLen(t, pos, end, p); n > 0 {
			return pos + n
		}
		return -1
	}
}

// splitTrailingSpace is \s+$: the only possible match is the whitespace run that ends the
// piece, found directly instead of by trying every start position.
func splitTrailingSpace(t text, segs []int) []int {
	out := make([]int, 0, len(segs)+1)
	start := 0
	for _, n := range segs {
		end := start + n
		p := end
		for p > start && t.fl[p-1].isWhitespace() {
			p--
		}
		if p > start {
			out = append(out, p-start)
		}
		if p < end {
			out = append(out, end-p)
		}
		start = end
	}
	return out
}

// matchThreeDigits is [0-9][0-9][0-9].
func matchThreeDigits(t text, pos, end int) int {
	if end-pos >= 3 && runLen(t, pos, pos+3, isASCIIDigit) == 3 {
		return pos + 3
	}
	return -1
}

// splitGPT2 is the GPT-2 expression
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
//
// following llama.cpp's hand-written version of it (unicode_regex_split_custom_gpt2), which is
// what llama.cpp actually runs for this exact expression.
func splitGPT2(t text, segs []int) []int {
	return eachPiece(t, segs, func(p *piece) {
		for pos := p.ini; pos < p.end; {
			if n := p.contraction(pos, false); n > 0 {
				pos = p.emit(pos + n)
				continue
			}
			c := p.cpt(pos)
			f2, skipSpace := p.flags(pos), 0
			if c == ' ' {
				f2, skipSpace = p.flags(pos+1), 1
			}
			switch {
			case f2.isLetter():
				pos = p.emit(p.run(pos+skipSpace, cptFlags.isLetter))
			case f2.isNumber():
				pos = p.emit(p.run(pos+skipSpace, cptFlags.isNumber))
			case isOther(f2):
				pos = p.emit(p.run(pos+skipSpace, isOther))
			default:
				pos = p.emit(p.whitespace(pos, p.run(pos, cptFlags.isWhitespace)-pos))
			}
		}
	})
}

// outOfRange marks a position outside the piece being split.
const outOfRange = 0xFFFFFFFF

// isOther is [^\s\p{L}\p{N}] for a position inside the piece.
func isOther(f cptFlags) bool {
	return f != 0 && f&(flagWhitespace|flagLetter|flagNumber) == 0
}

// piece is one segment [ini, end) of t that a split step cuts further: positions outside it
// read as outOfRange and no flags, as the hand-written splitters of llama.cpp see them.
type piece struct {
	t        text
	ini, end int
	prev     int    // where the next emitted piece starts
	out      *[]int // the lengths of the pieces cut so far
}

// eachPiece runs split over every segment of segs and returns the lengths of what they cut.
func eachPiece(t text, segs []int, split func(p *piece)) []int {
	out := make([]int, 0, len(segs)*2)
	start := 0
	for _, n := range segs {
		split(&piece{t: t, ini: start, end: start + n, prev: start, out: &out})
		start += n
	}
	return out
}

func (p *piece) cpt(i int) uint32 {
	if i >= p.ini && i < p.end {
		return p.t.cp[i]
	}
	return outOfRange
}

func (p *piece) flags(i int) cptFlags {
	if i >= p.ini && i < p.end {
		return p.t.fl[i]
	}
	return 0
}

// emit cuts a piece ending at e (none if it would be empty) and returns e.
func (p *piece) emit(e int) int {
	if e > p.prev {
		*p.out = append(*p.out, e-p.prev)
	}
	p.prev = e
	return e
}

// run returns the end of the run of positions from pos whose flags satisfy is.
func (p *piece) run(pos int, is func(cptFlags) bool) int {
	for is(p.flags(pos)) {
		pos++
	}
	return pos
}

// contraction is the length of 's|'t|'re|'ve|'m|'ll|'d at pos (0: none there), case-insensitive
// when fold is set.
func (p *piece) contraction(pos int, fold bool) int {
	if p.cpt(pos) != '\'' || pos+1 >= p.end {
		return 0
	}
	lower := func(c uint32) uint32 {
		if fold {
			return toLower(c)
		}
		return c
	}
	c1 := lower(p.cpt(pos + 1))
	if c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd' {
		return 2
	}
	if pos+2 < p.end {
		c2 := lower(p.cpt(pos + 2))
		if (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') {
			return 3
		}
	}
	return 0
}

// whitespace is where the piece at pos ends when it starts with nws whitespace code points:
// \s+(?!\S) leaves the last of several to the next piece when something follows, \s+ takes
// them all, and anything else is one code point of its own.
func (p *piece) whitespace(pos, nws int) int {
	switch {
	case nws > 1 && p.cpt(pos+nws) != outOfRange:
		return pos + nws - 1
	case nws > 0:
		return pos + nws
	}
	return pos + 1
}

// splitLlama3 returns the Llama 3 expression (maxDigits 3) or the Qwen2 one (maxDigits 1):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// For Llama 3 this is llama.cpp's hand-written unicode_regex_split_custom_llama3. Qwen2 is run
// by std::regex in llama.cpp; working through its alternatives in order gives the same steps
// with single digits, so both share this code.
func splitLlama3(maxDigits int) splitStep {
	return func(t text, segs []int) []int {
		return eachPiece(t, segs, func(p *piece) {
			for pos := p.ini; pos < p.end; {
				if n := p.contraction(pos, true); n > 0 {
					pos = p.emit(pos + n)
					continue
				}
				c, f := p.cpt(pos), p.flags(pos)
				// [^\r\n\p{L}\p{N}]?\p{L}+
				if !(c == '\r' || c == '\n' || f.isNumber()) && (f.isLetter() || p.flags(pos+1).isLetter()) {
					pos = p.emit(p.run(pos+1, cptFlags.isLetter))
					continue
				}
				// \p{N}{1,maxDigits}
				if f.isNumber() {
					first := pos
					for p.flags(pos).isNumber() {
						pos++
						if pos-first >= maxDigits {
							first = p.emit(pos)
						}
					}
					p.emit(pos)
					continue
				}
				//  ?[^\s\p{L}\p{N}]+[\r\n]*
				f2 := f
				if c == ' ' {
					f2 = p.flags(pos + 1)
				}
				if f2&(flagWhitespace|flagLetter|flagNumber) == 0 && f != 0 {
					if c == ' ' {
						pos++
					}
					pos = p.run(pos, isOther)
					for c2 := p.cpt(pos); c2 == '\r' || c2 == '\n'; c2 = p.cpt(pos) {
						pos++
					}
					p.emit(pos)
					continue
				}
				nws, lastCRLF := 0, 0
				for p.flags(pos + nws).isWhitespace() {
					if c2 := p.cpt(pos + nws); c2 == '\r' || c2 == '\n' {
						lastCRLF = pos + nws + 1
					}
					nws++
				}
				// \s*[\r\n]+
				if lastCRLF > 0 {
					pos = p.emit(lastCRLF)
					continue
				}
				pos = p.emit(p.whitespace(pos, nws))
			}
		})
	}
}

// DeepSeek LLM character classes, transcribed from its tokenizer.json as llama.cpp carries them.
var (
	deepseekLetters = ranges{
		{0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
		{0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
		{0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
		{0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
		{0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
		{0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
		{0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
		{0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
		{0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
		{0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
		{0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
		{0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
		{0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
		{0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
		{0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
		{0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
		{0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
	}
	deepseekPunct = ranges{
		{0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002},
	}
	// [一-龥ࠀ-一가-퟿]: CJK ideographs, the range below them, and Hangul.
	deepseekCJK = ranges{{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}}
)

// preTokenizer is the expression list for one tokenizer.ggml.pre family.
type preTokenizer struct {
	steps []splitStep
}

func (p preTokenizer) split(s string) []string {
	if s == "" {
		return nil
	}
	t := newText(s)
	segs := []int{len(t.cp)}
	for _, step := range p.steps {
		segs = step(t, segs)
	}
	words := make([]string, 0, len(segs))
	var utf []byte
	var enc []byte
	start := 0
	for _, n := range segs {
		utf = utf[:0]
		for _, c := range t.cp[start : start+n] {
			utf = appendCpt(utf, c)
		}
		enc = enc[:0]
		for _, b := range utf {
			enc = append(enc, byteToUnicode[b]...)
		}
		words = append(words, string(enc))
		start += n
	}
	return words
}

// preType is llama.cpp's llama_vocab_pre_type, reduced to the families implemented here.
type preType int

const (
	preDefault preType = iota
	preLlama3
	preDeepseekLLM
	preDeepseekCoder
	preFalcon
	preStarcoder
	preGPT2
	preQwen2
)

// bpePreFlags are the per-family settings llama.cpp attaches to tokenizer.ggml.pre.
type bpePreFlags struct {
	typ          preType
	ignoreMerges bool // a word that is already a token is not merged
	addBOS       bool
	cleanSpaces  bool
	nullBOS      bool // the family has no BOS token
}

// lookupPre maps a tokenizer.ggml.pre value to its family. Families whose expressions are not
// implemented here are reported as unsupported rather than silently tokenized differently.
func lookupPre(name string) (bpePreFlags, error) {
	f := bpePreFlags{typ: preDefault, cleanSpaces: true}
	switch name {
	case "", "default":
	case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
		f.typ, f.ignoreMerges, f.addBOS = preLlama3, true, true
	case "dbrx", "smaug-bpe":
		f.typ = preLlama3
	case "chatglm-bpe", "glm4":
		f.typ, f.nullBOS = preLlama3, true
	case "deepseek-llm":
		f.typ, f.cleanSpaces = preDeepseekLLM, false
	case "deepseek-coder":
		f.typ, f.cleanSpaces = preDeepseekCoder, false
	case "falcon":
		f.typ = preFalcon
	case "mpt", "olmo", "jais", "exaone4", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
		"jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe":
		f.typ = preGPT2
	case "trillion", "granite-docling":
		f.typ, f.cleanSpaces = preGPT2, false
	case "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2":
		f.typ = preStarcoder
	case "command-r", "smollm":
		f.typ, f.cleanSpaces = preStarcoder, false
	case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open":
		f.typ, f.cleanSpaces = preQwen2, false
	case "stablelm2", "megrez":
		f.typ = preQwen2
	default:
		return f, fmt.Errorf("tokenizer.ggml.pre %q: pre-tokenizer not supported", name)
	}
	return f, nil
}

func newPreTokenizer(t preType) preTokenizer {
	gpt2 := splitStep(splitGPT2)
	switch t {
	case preLlama3:
		return preTokenizer{[]splitStep{splitLlama3(3)}}
	case preQwen2:
		return preTokenizer{[]splitStep{splitLlama3(1)}}
	case preGPT2:
		return preTokenizer{[]splitStep{gpt2}}
	case preDeepseekLLM:
		return preTokenizer{[]splitStep{
			regexStep(matchOne(isCRLF)),
			regexStep(matchOptSpaceRun(deepseekLetters.pred())),
			regexStep(matchOptSpaceRun(deepseekPunct.pred())),
			splitTrailingSpace,
			regexStep(matchRun(deepseekCJK.pred())),
			regexStep(matchRun(isNumber)),
		}}
	case preDeepseekCoder:
		return preTokenizer{[]splitStep{
			regexStep(matchOne(isCRLF)),
			regexStep(matchOptSpaceRun(isLetter)),
			regexStep(matchOptSpaceRun(isPunct)),
			regexStep(matchRun(deepseekCJK.pred())),
			regexStep(matchOne(isNumber)),
		}}
	case preFalcon:
		return preTokenizer{[]splitStep{
			regexStep(matchRun(punctOr("$+<=>^~|`"))),
			gpt2,
			regexStep(matchThreeDigits),
		}}
	case preStarcoder:
		return preTokenizer{[]splitStep{
			regexStep(matchOne(isNumber)),
			gpt2,
		}}
	default:
		return preTokenizer{[]splitStep{
			regexStep(matchRun(punctOr("$+<=>^~|"))),
			gpt2,
			regexStep(matchRun(isNumber)),
			regexStep(matchThreeDigits),
		}}
	}
}
