package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestFormats(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, Options{Format: "json", Level: "info"})
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hidden")
	l.Info("hello", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "hello" || rec["k"] != float64(1) {
		t.Fatalf("json record %q: %v", buf.String(), err)
	}
	if _, err := New(&buf, Options{Format: "xml", Level: "info"}); err == nil {
		t.Error("bad format accepted")
	}
	if _, err := New(&buf, Options{Format: "text", Level: "loud"}); err == nil {
		t.Error("bad level accepted")
	}
}

func TestJournalDetection(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stream := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	l, err := New(f, Options{Format: "auto", Level: "debug", Getenv: func(string) string { return stream }})
	if err != nil {
		t.Fatal(err)
	}
	l.Warn("careful")
	l.Info("fine")
	out, _ := os.ReadFile(f.Name())
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "<4>level=WARN") || !strings.HasPrefix(lines[1], "<6>level=INFO") {
		t.Fatalf("journal lines: %q", out)
	}
	if strings.Contains(string(out), "time=") {
		t.Error("journal lines carry their own timestamp")
	}
	// Another stream (e.g. a pipe the journal does not own) gets plain text with time.
	l2, _ := New(f, Options{Format: "auto", Level: "info", Getenv: func(string) string { return "1:2" }})
	l2.Info("plain")
	out, _ = os.ReadFile(f.Name())
	if !strings.Contains(string(out), "time=") {
		t.Errorf("non-journal line lacks time: %q", out)
	}
}
