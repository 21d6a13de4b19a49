package jinja

import (
	"strings"
)

type tokKind int

const (
	tEOF tokKind = iota
	tText
	tComment
	tNumber
	tString
	tIdent
	tEquals
	tLParen
	tRParen
	tOpenStmt
	tCloseStmt
	tOpenExpr
	tCloseExpr
	tLBracket
	tRBracket
	tLBrace
	tRBrace
	tComma
	tDot
	tColon
	tPipe
	tAdditive       // + - ~
	tMultiplicative // * / % // **
	tComparison     // == != < > <= >=
	tUnary          // - + in front of a non-literal operand
)

var tokNames = map[tokKind]string{
	tEOF: "end of template", tText: "text", tComment: "comment", tNumber: "number",
	tString: "string", tIdent: "name", tEquals: "'='", tLParen: "'('", tRParen: "')'",
	tOpenStmt: "'{%'", tCloseStmt: "'%}'", tOpenExpr: "'{{'", tCloseExpr: "'}}'",
	tLBracket: "'['", tRBracket: "']'", tLBrace: "'{'", tRBrace: "'}'", tComma: "','",
	tDot: "'.'", tColon: "':'", tPipe: "'|'", tAdditive: "operator",
	tMultiplicative: "operator", tComparison: "operator", tUnary: "operator",
}

type token struct {
	kind tokKind
	val  string
	pos  int // byte offset in the normalized source
}

// The order matters: longer sequences first. "//" and "**" are accepted
// although the reference engine lacks them; a template using them fails
// there and works here, never the other way round.
var symbolTable = []struct {
	seq  string
	kind tokKind
}{
	{"{%-", tOpenStmt}, {"-%}", tCloseStmt}, {"{{-", tOpenExpr}, {"-}}", tCloseExpr},
	{"{%", tOpenStmt}, {"%}", tCloseStmt}, {"{{", tOpenExpr}, {"}}", tCloseExpr},
	{"(", tLParen}, {")", tRParen}, {"{", tLBrace}, {"}", tRBrace},
	{"[", tLBracket}, {"]", tRBracket}, {",", tComma}, {".", tDot}, {":", tColon}, {"|", tPipe},
	{"<=", tComparison}, {">=", tComparison}, {"==", tComparison}, {"!=", tComparison},
	{"<", tComparison}, {">", tComparison},
	{"+", tAdditive}, {"-", tAdditive}, {"~", tAdditive},
	{"**", tMultiplicative}, {"//", tMultiplicative},
	{"*", tMultiplicative}, {"/", tMultiplicative}, {"%", tMultiplicative},
	{"=", tEquals},
}

var escapes = map[byte]byte{
	'n': '\n', 't': '\t', 'r': '\r', 'b': '\b', 'f': '\f', 'v': '\v',
	'\\': '\\', '\'': '\'', '"': '"',
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isWord(c byte) bool {
	return isDigit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// normalize turns CRLF and lone CR into LF and drops one trailing newline
// (keep_trailing_newline=false), exactly as the reference lexer prepares
// its input. Positions in errors refer to this normalized text.
func normalize(source string) string {
	src := strings.ReplaceAll(source, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	if strings.HasSuffix(source, "\n") {
		src = src[:len(src)-1]
	}
	return src
}

// lex splits normalized template text into tokens. Whitespace control is
// done here, as in llama.cpp's engine (which follows huggingface.js):
// lstrip_blocks and trim_blocks are always on, and "-" markers strip all
// whitespace on their side. Text tokens come out already trimmed.
func lex(src string) ([]token, error) {
	var toks []token
	pos := 0
	n := len(src)
	at := func(i int) byte {
		if i < n {
			return src[i]
		}
		return 0
	}
	// nextIs reports whether src[pos+off] is one of cs (false past the end).
	nextIs := func(off int, cs string) bool {
		if pos+off >= n {
			return false
		}
		return strings.IndexByte(cs, src[pos+off]) >= 0
	}
	curly := 0

	for pos < n {
		last := tCloseStmt // the start of the template behaves like after a tag
		if len(toks) > 0 {
			last = toks[len(toks)-1].kind
		}
		if last == tCloseStmt || last == tCloseExpr || last == tComment {
			rstripPrev, trimNewline := false, false
			if pos > 3 {
				c0, c1, c2 := src[pos-3], src[pos-2], src[pos-1]
				rstripPrev = c0 == '-' && (c1 == '%' || c1 == '}' || c1 == '#') && c2 == '}'
				// trim_blocks: only after %} and #} (and "-}" forms), never after }}.
				trimNewline = (c1 == '#' || c1 == '%' || c1 == '-') && c2 == '}'
			}
			start := pos
			for pos < n && !(src[pos] == '{' && nextIs(1, "%{#")) {
				pos++
			}
			end := pos
			// lstrip_blocks: drop the indentation before a {% or {# that
			// starts a line. The reference scans back from the tag and, on
			// reaching index 1 of the whole template, drops everything before
			// the tag; that quirk is reproduced because byte equality with
			// it is the goal (it only affects a template's very first text).
			if at(pos) == '{' && nextIs(1, "%#-") {
				cur := end
				for cur > start {
					c := src[cur-1]
					if cur == 1 {
						end = 0
						break
					}
					if c == '\n' {
						end = cur
						break
					}
					if !isSpace(c) {
						break
					}
					cur--
				}
			}
			text := src[start:end]
			if trimNewline && strings.HasPrefix(text, "\n") {
				text = text[1:]
			}
			if rstripPrev {
				text = strings.TrimLeft(text, " \t\r\n")
			}
			if at(pos) == '{' && nextIs(1, "{%#") && nextIs(2, "-") {
				text = strings.TrimRight(text, " \t\r\n")
			}
			if text != "" {
				toks = append(toks, token{tText, text, start})
				continue
			}
		}
		if pos >= n {
			break
		}

		if src[pos] == '{' && nextIs(1, "#") {
			start := pos
			endAt := strings.Index(src[pos+2:], "#}")
			if endAt < 0 {
				return nil, syntaxErr(src, start, "comment opened here is never closed with '#}'")
			}
			toks = append(toks, token{tComment, src[pos+2 : pos+2+endAt], start})
			pos += 2 + endAt + 2
			continue
		}

		for pos < n && isSpace(src[pos]) {
			pos++
		}
		if pos >= n {
			break
		}
		ch := src[pos]
		start := pos

		closing := ch == '-' && nextIs(1, "%}")
		if !closing && (ch == '-' || ch == '+') {
			prev := tEOF
			if len(toks) > 0 {
				prev = toks[len(toks)-1].kind
			}
			switch prev {
			case tText, tEOF:
				return nil, syntaxErr(src, pos, "unexpected character %q", ch)
			case tIdent, tNumber, tString, tRParen, tRBracket:
				// binary operator, handled by the table below
			default:
				pos++
				num := ""
				for pos < n && isDigit(src[pos]) {
					pos++
				}
				num = src[start+1 : pos]
				if num != "" && at(pos) == '.' && isDigit(at(pos+1)) {
					pos++
					for pos < n && isDigit(src[pos]) {
						pos++
					}
					num = src[start+1 : pos]
				}
				if num == "" {
					toks = append(toks, token{tUnary, string(ch), start})
				} else {
					toks = append(toks, token{tNumber, string(ch) + num, start})
				}
				continue
			}
		}

		matched := false
		for _, s := range symbolTable {
			if s.seq == "}}" && curly > 0 {
				continue // inside a dict literal "}}" closes two dicts
			}
			if strings.HasPrefix(src[pos:], s.seq) {
				toks = append(toks, token{s.kind, s.seq, start})
				switch s.kind {
				case tOpenExpr:
					curly = 0
				case tLBrace:
					curly++
				case tRBrace:
					curly--
				}
				pos += len(s.seq)
				matched = true
				break
			}
		}
		if matched {
			continue
		}

		switch {
		case ch == '\'' || ch == '"':
			pos++
			var b strings.Builder
			for {
				if pos >= n {
					return nil, syntaxErr(src, start, "string literal is never closed")
				}
				c := src[pos]
				if c == ch {
					pos++
					break
				}
				if c == '\\' {
					if pos+1 >= n {
						return nil, syntaxErr(src, pos, "unexpected end of template after escape character")
					}
					e, ok := escapes[src[pos+1]]
					if !ok {
						return nil, syntaxErr(src, pos, "unknown escape sequence \\%c", src[pos+1])
					}
					b.WriteByte(e)
					pos += 2
					continue
				}
				b.WriteByte(c)
				pos++
			}
			toks = append(toks, token{tString, b.String(), start})
		case isDigit(ch):
			for pos < n && isDigit(src[pos]) {
				pos++
			}
			if at(pos) == '.' && isDigit(at(pos+1)) {
				pos++
				for pos < n && isDigit(src[pos]) {
					pos++
				}
			}
			toks = append(toks, token{tNumber, src[start:pos], start})
		case isWord(ch):
			for pos < n && isWord(src[pos]) {
				pos++
			}
			toks = append(toks, token{tIdent, src[start:pos], start})
		default:
			return nil, syntaxErr(src, pos, "unexpected character %q", ch)
		}
	}
	return toks, nil
}
