package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// This file holds the code point helpers that llama.cpp's pre-tokenizers are written against.
// They deliberately reproduce llama.cpp's own UTF-8 decoder and category flags instead of using
// unicode/utf8 alone, because token boundaries depend on the exact way invalid input decays.

// cptFlags mirrors llama.cpp's per-code-point flags: exactly one general-category bit, plus
// a whitespace bit. The zero value means "outside the current piece", which the hand-written
// splitters use as an end marker (every real code point has at least one bit set).
type cptFlags uint16

const (
	flagUndefined   cptFlags = 0x0001 // unassigned (Cn)
	flagNumber      cptFlags = 0x0002 // \p{N}
	flagLetter      cptFlags = 0x0004 // \p{L}
	flagSeparator   cptFlags = 0x0008 // \p{Z}
	flagAccentMark  cptFlags = 0x0010 // \p{M}
	flagPunctuation cptFlags = 0x0020 // \p{P}
	flagSymbol      cptFlags = 0x0040 // \p{S}
	flagControl     cptFlags = 0x0080 // \p{C} without Cn
	flagWhitespace  cptFlags = 0x0100 // White_Space property
)

func (f cptFlags) isNumber() bool      { return f&flagNumber != 0 }
func (f cptFlags) isLetter() bool      { return f&flagLetter != 0 }
func (f cptFlags) isAccentMark() bool  { return f&flagAccentMark != 0 }
func (f cptFlags) isPunctuation() bool { return f&flagPunctuation != 0 }
func (f cptFlags) isSymbol() bool      { return f&flagSymbol != 0 }
func (f cptFlags) isControl() bool     { return f&flagControl != 0 }
func (f cptFlags) isWhitespace() bool  { return f&flagWhitespace != 0 }

// maxCodepoint bounds llama.cpp's flag table; anything above is "undefined".
const maxCodepoint = 0x110000

var asciiFlags [128]cptFlags

func init() {
	for c := range asciiFlags {
		asciiFlags[c] = computeFlags(uint32(c))
	}
}

func computeFlags(c uint32) cptFlags {
	if c >= maxCodepoint {
		return flagUndefined
	}
	r := rune(c)
	var f cptFlags
	switch {
	case unicode.IsLetter(r):
		f = flagLetter
	case unicode.IsNumber(r):
		f = flagNumber
	case unicode.Is(unicode.Z, r):
		f = flagSeparator
	case unicode.IsMark(r):
		f = flagAccentMark
	case unicode.IsPunct(r):
		f = flagPunctuation
	case unicode.IsSymbol(r):
		f = flagSymbol
	case unicode.Is(unicode.C, r): // Cc, Cf, Co, Cs (Go's C has no Cn)
		f = flagControl
	default:
		f = flagUndefined
	}
	if unicode.Is(unicode.White_Space, r) {
		f |= flagWhitespace
	}
	return f
}

func flagsOf(c uint32) cptFlags {
	if c < 128 {
		return asciiFlags[c]
	}
	return computeFlags(c)
}

// utf8SeqLen is llama.cpp's unicode_len_utf8: the sequence length claimed by a lead byte, with
// continuation and invalid bytes counting as 1. The SPM and BPE symbol splitters cut on it.
func utf8SeqLen(b byte) int {
	switch b >> 4 {
	case 0xC, 0xD:
		return 2
	case 0xE:
		return 3
	case 0xF:
		return 4
	}
	return 1
}

// decodeCpt decodes one code point the way llama.cpp's unicode_cpt_from_utf8 does: structure is
// checked, but overlong forms and surrogates are accepted. ok is false for a malformed sequence.
func decodeCpt(s string, i int) (c uint32, n int, ok bool) {
	b0 := s[i]
	switch {
	case b0&0x80 == 0:
		return uint32(b0), 1, true
	case b0&0x40 == 0:
		return 0, 0, false
	case b0&0x20 == 0:
		if i+1 >= len(s) || s[i+1]&0xC0 != 0x80 {
			return 0, 0, false
		}
		return uint32(b0&0x1F)<<6 | uint32(s[i+1]&0x3F), 2, true
	case b0&0x10 == 0:
		if i+2 >= len(s) || s[i+1]&0xC0 != 0x80 || s[i+2]&0xC0 != 0x80 {
			return 0, 0, false
		}
		return uint32(b0&0x0F)<<12 | uint32(s[i+1]&0x3F)<<6 | uint32(s[i+2]&0x3F), 3, true
	case b0&0x08 == 0:
		if i+3 >= len(s) || s[i+1]&0xC0 != 0x80 || s[i+2]&0xC0 != 0x80 || s[i+3]&0xC0 != 0x80 {
			return 0, 0, false
		}
		return uint32(b0&0x07)<<18 | uint32(s[i+1]&0x3F)<<12 | uint32(s[i+2]&0x3F)<<6 | uint32(s[i+3]&0x3F), 4, true
	}
	return 0, 0, false
}

// decodeCpts is llama.cpp's unicode_cpts_from_utf8: every malformed byte becomes U+FFFD. Values
// above U+10FFFF (which llama.cpp would later fail to re-encode, aborting the tokenize call) are
// also turned into U+FFFD so that every input has a defined result.
func decodeCpts(s string) []uint32 {
	out := make([]uint32, 0, len(s))
	for i := 0; i < len(s); {
		c, n, ok := decodeCpt(s, i)
		if !ok {
			out = append(out, utf8.RuneError)
			i++
			continue
		}
		if c >= maxCodepoint {
			c = utf8.RuneError
		}
		out = append(out, c)
		i += n
	}
	return out
}

// appendCpt appends the UTF-8 encoding of c. Unlike utf8.AppendRune it encodes surrogates as
// their three-byte form, as llama.cpp's unicode_cpt_to_utf8 does, so that text survives the
// decode/encode round trip byte for byte.
func appendCpt(b []byte, c uint32) []byte {
	switch {
	case c <= 0x7F:
		return append(b, byte(c))
	case c <= 0x7FF:
		return append(b, 0xC0|byte(c>>6), 0x80|byte(c&0x3F))
	case c <= 0xFFFF:
		return append(b, 0xE0|byte(c>>12), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F))
	default:
		return append(b, 0xF0|byte(c>>18&0x07), 0x80|byte(c>>12&0x3F), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F))
	}
}

// toLower is the simple (one code point) lowercase mapping, as in llama.cpp's unicode_tolower.
func toLower(c uint32) uint32 {
	if c >= maxCodepoint {
		return c
	}
	return uint32(unicode.ToLower(rune(c)))
}

// GPT-2 byte-level BPE represents every byte as a printable code point: printable Latin-1 bytes
// stand for themselves and the remaining 68 bytes are moved to U+0100 and up, in byte order.
var (
	byteToUnicode [256]string
	unicodeToByte = map[rune]byte{}
)

func init() {
	printable := func(b int) bool {
		return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	next := rune(256)
	for b := 0; b < 256; b++ {
		r := rune(b)
		if !printable(b) {
			r = next
			next++
		}
		byteToUnicode[b] = string(r)
		unicodeToByte[r] = byte(b)
	}
}
