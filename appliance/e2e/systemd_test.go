package e2e

import (
	"bufio"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// notifySocket listens like systemd's notification socket and collects the datagrams.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

func waitMessage(t *testing.T, msgs <-chan string, want string, within time.Duration) {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			for _, line := range strings.Split(m, "\n") {
				if line == want {
					return
				}
			}
		case <-timeout:
			t.Fatalf("no %q within %s", want, within)
		}
	}
}

func TestSystemdNotifyAndGracefulDrain(t *testing.T) {
	sock, msgs := notifySocket(t)
	p := serve(t, cleanEnv(t, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000"), "http", "--shutdown-timeout", "10s")
	waitMessage(t, msgs, "READY=1", 10*time.Second)
	// WATCHDOG_USEC=0.4s: pings every 0.2s.
	waitMessage(t, msgs, "WATCHDOG=1", 5*time.Second)

	// Hold a streaming response open across the shutdown.
	resp, err := http.Get("http://" + p.addr + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	if err != nil || first != "event: hello\n" {
		t.Fatalf("first stream line %q %v", first, err)
	}

	start := time.Now()
	code := p.stop(t, 15*time.Second)
	waitMessage(t, msgs, "STOPPING=1", 5*time.Second)
	if code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("shutdown took %s, beyond the 10s drain timeout", took)
	}
	// The stream was finished by the server (a final event and a clean end of the chunked body),
	// not cut: reading to the end gives EOF, not "unexpected EOF".
	var rest strings.Builder
	for {
		line, err := r.ReadString('\n')
		rest.WriteString(line)
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("stream cut: %v after %q", err, rest.String())
			}
			break
		}
	}
	if !strings.Contains(rest.String(), "event: shutdown") {
		t.Fatalf("stream ended without its final event: %q", rest.String())
	}
}
