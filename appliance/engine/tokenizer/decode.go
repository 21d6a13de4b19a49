package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// renderPiece is llama.cpp's token_to_piece with special tokens rendered and no stripping;
// the result is cached per token by New.
func (t *Tokenizer) renderPiece(id int32) []byte {
	a := t.attrs[id]
	text := t.texts[id]
	switch {
	case a&(attrUnknown|attrControl|attrUserDefined) != 0:
		return []byte(text)
	case a&attrNormal != 0:
		if t.typ == typeBPE {
			return decodeByteLevel(text)
		}
		return []byte(strings.ReplaceAll(text, spmSpace, " "))
	case a&attrByte != 0:
		return []byte{byteTokenValue(text)}
	}
	// Unused and undefined tokens have no text.
	return nil
}

// byteTokenValue reads the XX of "<0xXX>" the way llama.cpp does (strtol on two characters,
// stopping at the first non-hex one).
func byteTokenValue(text string) byte {
	if len(text) < 4 {
		return 0
	}
	var v byte
	for i := 3; i < len(text) && i < 5; i++ {
		c := text[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return v
		}
	}
	return v
}

// decodeByteLevel maps GPT-2's printable stand-ins back to bytes. A character outside the
// 256-entry alphabet is written out the way llama.cpp's llama_decode_text does.
func decodeByteLevel(text string) []byte {
	out := make([]byte, 0, len(text))
	for _, c := range decodeCpts(text) {
		if b, ok := unicodeToByte[rune(c)]; ok {
			out = append(out, b)
			continue
		}
		out = append(out, "[UNK_BYTE_0x"...)
		for _, b := range appendCpt(nil, c) {
			out = fmt.Appendf(out, "%02x", b)
		}
		out = append(out, text...)
		out = append(out, ']')
	}
	return out
}

// TokenPiece is llama_token_to_piece (no leading-space stripping): the bytes a token stands
// for. With special false, control and unknown tokens give nothing, as in generated text;
// with special true they give their vocabulary text. The result must not be modified.
func (t *Tokenizer) TokenPiece(id int32, special bool) []byte {
	if !t.valid(id) {
		return nil
	}
	if !special && t.attrs[id]&(attrUnknown|attrControl) != 0 {
		return nil
	}
	p := t.pieces[id]
	return p[:len(p):len(p)] // appending to it must not reach the neighbouring cache entry
}

// Piece is TokenPiece(id, false): what the token adds to generated text. The bytes may be a
// fragment of a UTF-8 character (byte tokens); the result must not be modified.
func (t *Tokenizer) Piece(id int32) []byte { return t.TokenPiece(id, false) }

// Decode concatenates the pieces of ids with control tokens left out. This is the text
// llama.cpp's completion tool prints for generated tokens (pieces as they are, no space
// stripping or clean-up); it may hold invalid UTF-8 where the tokens split a character.
func (t *Tokenizer) Decode(ids []int32) string {
	var b []byte
	for _, id := range ids {
		b = append(b, t.Piece(id)...)
	}
	return string(b)
}

// Detokenize is llama_detokenize: like Decode, but it removes the space SentencePiece put in
// front of the text, optionally drops the BOS/EOS that Encode added (removeSpecial), renders
// control tokens when unparseSpecial, and applies the vocabulary's clean-up of spaces before
// punctuation (BPE vocabularies that ask for it). It reverses Encode(text, true, false).
func (t *Tokenizer) Detokenize(ids []int32, removeSpecial, unparseSpecial bool) string {
	removeSpace := t.addSpacePrefix
	if removeSpecial && t.addBOS && len(ids) > 0 && ids[0] == t.bos {
		removeSpace = false
		ids = ids[1:]
	}
	if removeSpecial && t.addEOS && len(ids) > 0 && ids[len(ids)-1] == t.eos {
		ids = ids[:len(ids)-1]
	}
	var b []byte
	for _, id := range ids {
		p := t.TokenPiece(id, unparseSpecial)
		if removeSpace && len(p) > 0 && p[0] == ' ' {
			p = p[1:]
		}
		removeSpace = false
		b = append(b, p...)
	}
	if t.cleanSpaces {
		b = cleanSpaces(b)
	}
	return string(b)
}

// cleanSpaces is Hugging Face's clean_up_tokenization as llama.cpp does it, in three passes:
// " ?" " !" " ." " ," lose the space, " ' " loses both spaces, and " 's" " 'm" " 're" " 've"
// lose the space.
func cleanSpaces(a []byte) []byte {
	if len(a) == 0 {
		return a
	}
	out := []byte{a[0]}
	for i := 1; i < len(a); i++ {
		x := a[i]
		if a[i-1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',') {
			out = out[:len(out)-1]
		}
		out = append(out, x)
	}

	a = out
	out = []byte{a[0]}
	for i := 1; i < len(a); i++ {
		x := a[i]
		if x == '\'' && i+1 < len(a) && a[i-1] == ' ' && a[i+1] == ' ' {
			out = out[:len(out)-1]
			// The space after the apostrophe is skipped; llama.cpp also blanks it, which
			// the previous-character test of the next step sees.
			a[i+1] = 0
			i++
		}
		out = append(out, x)
	}

	a = out
	out = []byte{a[0]}
	for i := 1; i < len(a); i++ {
		x := a[i]
		if a[i-1] == ' ' && x == '\'' && i+1 < len(a) {
			x1 := a[i+1]
			switch {
			case x1 == 't' || x1 == 'd':
			case x1 == 's' || x1 == 'm':
				out = out[:len(out)-1]
			case i+2 < len(a):
				x2 := a[i+2]
				if (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e') {
					out = out[:len(out)-1]
				}
			}
		}
		out = append(out, x)
	}
	return out
}

// StreamDecoder turns generated tokens into text as they arrive without ever cutting a UTF-8
// character in two: bytes of an incomplete character are held back until the rest arrives.
// Bytes that can never form a character come out as U+FFFD, so every chunk is valid UTF-8.
type StreamDecoder struct {
	t   *Tokenizer
	buf []byte
}

// NewStreamDecoder starts an empty stream over t.
func NewStreamDecoder(t *Tokenizer) *StreamDecoder { return &StreamDecoder{t: t} }

// Add appends the piece of id and returns the text that is now complete (possibly "").
func (d *StreamDecoder) Add(id int32) string {
	d.buf = append(d.buf, d.t.Piece(id)...)
	var out strings.Builder
	i := 0
	for i < len(d.buf) {
		if !utf8.FullRune(d.buf[i:]) {
			break // a valid prefix of a character: wait for more bytes
		}
		r, n := utf8.DecodeRune(d.buf[i:])
		if r == utf8.RuneError && n == 1 {
			out.WriteRune(utf8.RuneError)
		} else {
			out.Write(d.buf[i : i+n])
		}
		i += n
	}
	d.buf = append(d.buf[:0], d.buf[i:]...)
	return out.String()
}

// Flush returns what is held back (the start of a character that never completed) as one
// U+FFFD, and resets the decoder.
func (d *StreamDecoder) Flush() string {
	if len(d.buf) == 0 {
		return ""
	}
	d.buf = d.buf[:0]
	return string(utf8.RuneError)
}
