package tokenizer

import (
	"container/heap"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Encode tokenizes text like llama_tokenize. addSpecial adds BOS/EOS (and CLS/SEP for
// WordPiece) as the vocabulary asks; parseSpecial lets control and unknown tokens written in
// the text (e.g. "<|im_start|>") become single tokens. User-defined tokens are always matched
// as whole tokens, as in llama.cpp and Hugging Face tokenizers.
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) []int32 {
	frags := t.partition(text, parseSpecial)
	var out []int32
	switch t.typ {
	case typeSPM:
		if addSpecial && t.addBOS {
			out = append(out, t.bos)
		}
		// SentencePiece adds a space before the text; llama.cpp does so at the start and after
		// every special token, since each text fragment is a fresh SentencePiece input.
		prevSpecial := true
		for _, f := range frags {
			if f.tok != noToken {
				out = append(out, f.tok)
				prevSpecial = true
				continue
			}
			s := f.text
			if t.addSpacePrefix && prevSpecial {
				s = " " + s
			}
			out = t.encodeSPM(strings.ReplaceAll(s, " ", spmSpace), out)
			prevSpecial = false
		}
		if addSpecial && t.addEOS {
			out = append(out, t.eos)
		}
	case typeBPE:
		if addSpecial && t.addBOS {
			out = append(out, t.bos)
		}
		for _, f := range frags {
			if f.tok != noToken {
				out = append(out, f.tok)
				continue
			}
			out = t.encodeBPE(f.text, out)
		}
		if addSpecial && t.addEOS {
			out = append(out, t.eos)
		}
	case typeWPM:
		// WordPiece always frames the text with CLS (BOS) and SEP when asked for special
		// tokens; llama.cpp asserts they exist rather than consulting add_bos.
		if addSpecial && t.bos != noToken {
			out = append(out, t.bos)
		}
		for _, f := range frags {
			if f.tok != noToken {
				out = append(out, f.tok)
				continue
			}
			out = t.encodeWPM(f.text, out)
		}
		if addSpecial && t.sep != noToken {
			out = append(out, t.sep)
		}
	}
	return out
}

// spmSpace is U+2581, SentencePiece's visible space.
const spmSpace = "\u2581"

// fragment is a piece of input that is either still text or already one special token.
type fragment struct {
	tok  int32 // noToken for text
	text string
}

// partition splits out special tokens (llama.cpp's tokenizer_st_partition): longest token
// text first, every occurrence in every remaining text fragment, left to right.
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{tok: noToken, text: text}}
	var next []fragment
	for _, id := range t.special {
		a := t.attrs[id]
		if !parseSpecial && a&(attrControl|attrUnknown) != 0 {
			continue
		}
		tok := t.texts[id]
		next = next[:0]
		changed := false
		for _, f := range frags {
			if f.tok != noToken || !strings.Contains(f.text, tok) {
				next = append(next, f)
				continue
			}
			changed = true
			rest := f.text
			for {
				i := strings.Index(rest, tok)
				if i < 0 {
					if rest != "" {
						next = append(next, fragment{tok: noToken, text: rest})
					}
					break
				}
				left := rest[:i]
				if a&attrLStrip != 0 {
					left = strings.TrimRight(left, cSpace)
				}
				if left != "" {
					next = append(next, fragment{tok: noToken, text: left})
				}
				next = append(next, fragment{tok: id})
				rest = rest[i+len(tok):]
				if a&attrRStrip != 0 {
					rest = strings.TrimLeft(rest, cSpace)
				}
			}
		}
		if changed {
			frags, next = next, frags
			next = next[:0]
		}
	}
	return frags
}

// cSpace is what C's isspace accepts, which llama.cpp uses to strip around special tokens.
const cSpace = " \t\n\v\f\r"

// symbol is one node of the doubly linked list that the merge loops work on; text is
// src[start:start+n] and n == 0 marks a symbol merged into its left neighbour.
type symbol struct {
	start, n   int
	prev, next int
}

func splitSymbols(s string) []symbol {
	syms := make([]symbol, 0, len(s))
	for off := 0; off < len(s); {
		n := min(utf8SeqLen(s[off]), len(s)-off)
		syms = append(syms, symbol{start: off, n: n, prev: len(syms) - 1, next: len(syms) + 1})
		off += n
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms
}

// bigram is a candidate merge of two adjacent symbols. key orders the queue: SPM pops the
// highest score, BPE the lowest rank; ties go to the leftmost pair in both.
type bigram struct {
	left, right int
	key         float64
	size        int
}

type bigramQueue []bigram

func (q bigramQueue) Len() int { return len(q) }
func (q bigramQueue) Less(i, j int) bool {
	if q[i].key != q[j].key {
		return q[i].key < q[j].key
	}
	return q[i].left < q[j].left
}
func (q bigramQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *bigramQueue) Push(x any)   { *q = append(*q, x.(bigram)) }
func (q *bigramQueue) Pop() any {
	old := *q
	b := old[len(old)-1]
	*q = old[:len(old)-1]
	return b
}

// mergeLoop repeatedly applies the best queued merge. A queued pair is stale once either side
// was merged elsewhere; since symbols only grow to the right, a changed length detects it.
func mergeLoop(syms []symbol, q *bigramQueue, push func(l, r int)) {
	for q.Len() > 0 {
		b := heap.Pop(q).(bigram)
		l, r := &syms[b.left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		push(l.prev, b.left)
		push(b.left, l.next)
	}
}

// encodeSPM is llama.cpp's llm_tokenizer_spm: merge the adjacent pair whose concatenation is
// the highest-scoring token until none is left, then fall back to byte tokens for what is not
// a token.
func (t *Tokenizer) encodeSPM(s string, out []int32) []int32 {
	syms := splitSymbols(s)
	q := &bigramQueue{}
	push := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		size := syms[l].n + syms[r].n
		id, ok := t.ids[s[syms[l].start:syms[l].start+size]]
		if !ok {
			return
		}
		heap.Push(q, bigram{left: l, right: r, key: -float64(t.scores[id]), size: size})
	}
	for i := 1; i < len(syms); i++ {
		push(i-1, i)
	}
	mergeLoop(syms, q, push)
	for i := 0; i >= 0 && len(syms) > 0; i = syms[i].next {
		piece := s[syms[i].start : syms[i].start+syms[i].n]
		if id, ok := t.ids[piece]; ok {
			out = append(out, id)
			continue
		}
		for j := 0; j < len(piece); j++ {
			if id := t.byteToken(piece[j]); id != noToken {
				out = append(out, id)
			}
		}
	}
	return out
}

// byteToken is llama.cpp's byte_to_token for SentencePiece vocabularies: the <0xXX> token, else
// the one-byte token. llama.cpp aborts when neither exists; the unknown token stands in here.
func (t *Tokenizer) byteToken(b byte) int32 {
	const hex = "0123456789ABCDEF"
	if id, ok := t.ids[string([]byte{'<', '0', 'x', hex[b>>4], hex[b&15], '>'})]; ok {
		return id
	}
	if id, ok := t.ids[string([]byte{b})]; ok {
		return id
	}
	return t.unk
}

// encodeBPE is llama.cpp's llm_tokenizer_bpe_session: pre-tokenize into byte-encoded words,
// then merge inside each word by rank.
func (t *Tokenizer) encodeBPE(s string, out []int32) []int32 {
	var key []byte
	for _, word := range t.preTok.split(s) {
		if t.preCfg.ignoreMerges {
			if id, ok := t.ids[word]; ok {
				out = append(out, id)
				continue
			}
		}
		syms := splitSymbols(word)
		q := &bigramQueue{}
		push := func(l, r int) {
			if l < 0 || r < 0 {
				return
			}
			ls, rs := syms[l], syms[r]
			key = append(key[:0], word[ls.start:ls.start+ls.n]...)
			key = append(key, ' ')
			key = append(key, word[rs.start:rs.start+rs.n]...)
			rank, ok := t.ranks[string(key)]
			if !ok {
				return
			}
			heap.Push(q, bigram{left: l, right: r, key: float64(rank), size: ls.n + rs.n})
		}
		for i := 1; i < len(syms); i++ {
			push(i-1, i)
		}
		mergeLoop(syms, q, push)
		for i := 0; i >= 0 && len(syms) > 0; i = syms[i].next {
			piece := word[syms[i].start : syms[i].start+syms[i].n]
			if id, ok := t.ids[piece]; ok {
				out = append(out, id)
				continue
			}
			// No token for the merged piece: llama.cpp tries its single bytes and drops
			// those that are not tokens either.
			for j := 0; j < len(piece); j++ {
				if id, ok := t.ids[piece[j:j+1]]; ok {
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// encodeWPM is llama.cpp's WordPiece: normalize and split into words, then take the longest
// vocabulary match from the left, "▁"-prefixed word; a word that cannot be covered becomes UNK.
func (t *Tokenizer) encodeWPM(s string, out []int32) []int32 {
	for _, word := range t.wpmWords(s) {
		w := spmSpace + word
		n0 := len(out)
		for i := 0; i < len(w); i++ {
			found := false
			for j := min(len(w), i+t.maxTokenLen+1); j > i; j-- {
				if id, ok := t.ids[w[i:j]]; ok {
					out = append(out, id)
					found = true
					i = j - 1
					break
				}
			}
			if !found {
				out = out[:n0]
				break
			}
		}
		if len(out) == n0 && t.unk != noToken {
			out = append(out, t.unk)
		}
	}
	return out
}

// wpmWords is BERT's basic tokenizer as llama.cpp implements it: optional accent stripping
// (first code point of the NFD form, combining marks dropped), lowercasing, whitespace
// splitting, and punctuation, ASCII symbols and CJK ideographs as one-character words.
func (t *Tokenizer) wpmWords(s string) []string {
	words := []string{""}
	var buf []byte
	for _, c := range decodeCpts(s) {
		if t.stripAcc && c >= 0x80 && c < maxCodepoint && utf8.ValidRune(rune(c)) {
			if d := norm.NFD.String(string(rune(c))); d != "" {
				r, _ := utf8.DecodeRuneInString(d)
				c = uint32(r)
			}
		}
		f := flagsOf(c)
		if f.isWhitespace() {
			if words[len(words)-1] != "" {
				words = append(words, "")
			}
			continue
		}
		if c == 0 || c == utf8.RuneError || f.isControl() {
			continue
		}
		if t.stripAcc && f.isAccentMark() {
			continue
		}
		lc := c
		if t.lowercase {
			lc = toLower(c)
		}
		buf = appendCpt(buf[:0], lc)
		if f.isPunctuation() || (c < 0x7F && f.isSymbol()) || isCJK(c) {
			if words[len(words)-1] != "" {
				words = append(words, "")
			}
			words[len(words)-1] = string(buf)
			words = append(words, "")
		} else {
			words[len(words)-1] += string(buf)
		}
	}
	if words[len(words)-1] == "" {
		words = words[:len(words)-1]
	}
	return words
}

// isCJK is BERT's _is_chinese_char, including its 0x2B920 typo that llama.cpp keeps.
func isCJK(c uint32) bool {
	return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
		(c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
		(c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
		(c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F)
}
