package jinja

import (
	"fmt"
	"strings"
)

// ErrorKind tells what went wrong.
type ErrorKind int

const (
	// SyntaxError: the template text cannot be parsed.
	SyntaxError ErrorKind = iota
	// RuntimeError: evaluation failed (wrong types, unknown filter, ...).
	RuntimeError
	// RaisedError: the template called raise_exception(message).
	RaisedError
)

// Error is every error this package returns. Line and Column are 1-based
// and refer to the template with CRLF normalized to LF.
type Error struct {
	Kind    ErrorKind
	Line    int
	Column  int
	Message string
}

func (e *Error) Error() string {
	switch e.Kind {
	case SyntaxError:
		return fmt.Sprintf("template syntax error at line %d, column %d: %s", e.Line, e.Column, e.Message)
	case RaisedError:
		return fmt.Sprintf("template raised exception at line %d, column %d: %s", e.Line, e.Column, e.Message)
	}
	return fmt.Sprintf("template error at line %d, column %d: %s", e.Line, e.Column, e.Message)
}

func lineCol(src string, pos int) (int, int) {
	if pos > len(src) {
		pos = len(src)
	}
	before := src[:pos]
	line := strings.Count(before, "\n") + 1
	col := pos - (strings.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func syntaxErr(src string, pos int, format string, args ...any) *Error {
	l, c := lineCol(src, pos)
	return &Error{Kind: SyntaxError, Line: l, Column: c, Message: fmt.Sprintf(format, args...)}
}

// raised is returned by raise_exception before a position is known.
type raised struct{ msg string }

func (r *raised) Error() string { return r.msg }
