// Package logging sets up the process logger: structured lines on stderr, in the journal's
// format when systemd's journal reads the stream, otherwise text or JSON as configured.
package logging

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// Options select the format ("auto", "text", "json") and level ("debug", "info", "warn", "error").
type Options struct {
	Format string
	Level  string
	// Environ lookups are injectable for tests; nil means the process environment.
	Getenv func(string) string
}

// New builds a logger writing to w.
func New(w io.Writer, opt Options) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(opt.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", opt.Level, err)
	}
	getenv := opt.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	format := opt.Format
	if format == "" || format == "auto" {
		format = "text"
		if f, ok := w.(*os.File); ok && isJournal(f, getenv("JOURNAL_STREAM")) {
			format = "journal"
		}
	}
	ho := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "journal":
		// journald stamps each line itself and reads a "<N>" syslog priority prefix.
		ho.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
		return slog.New(slog.NewTextHandler(&priorityWriter{w: w}, ho)), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, text or json", opt.Format)
}

// isJournal reports whether f is the stream systemd connected to the journal; JOURNAL_STREAM
// holds its "device:inode".
func isJournal(f *os.File, stream string) bool {
	if stream == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return stream == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// priorityWriter prefixes each record (one Write per record from slog's text handler) with the
// syslog priority of its level.
type priorityWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *priorityWriter) Write(b []byte) (int, error) {
	prio := "<6>"
	switch {
	case bytes.HasPrefix(b, []byte("level=DEBUG")):
		prio = "<7>"
	case bytes.HasPrefix(b, []byte("level=WARN")):
		prio = "<4>"
	case bytes.HasPrefix(b, []byte("level=ERROR")):
		prio = "<3>"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.w, prio+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
