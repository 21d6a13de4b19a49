package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStalledClientDoesNotStallOthers: a client that sends a long streaming request and then
// reads nothing (its receive window shrunk to a few KB, so the server's writes to it block)
// shares the model's batch with eight streaming clients; they all complete, each with exactly
// its solo output, and once the stalled client hangs up its request is released.
func TestStalledClientDoesNotStallOthers(t *testing.T) {
	p, client := storiesNode(t, nil)
	ctx := context.Background()
	const clients = 8
	alone := soloStories(t, client, 100, clients, 32)

	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"model":"stories260K-F32","prompt":"Once","max_tokens":500,"temperature":0,"stream":true}`
	fmt.Fprintf(conn, "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", p.addr, len(body), body)

	base := "http://" + p.addr
	waitMetric := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, m := get(t, base+"/metrics")
			if strings.Contains(m, want) {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics never showed %s:\n%s", want, grepLines(m, "exo_generations"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMetric(`exo_generations_active{model="stories260K-F32"} 1`)

	results := streamStories(ctx, client, clients, 100, 32, 30*time.Second)
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("client %d beside a stalled client: %v", i, r.err)
		}
		if r.text != alone[i] {
			t.Fatalf("client %d beside a stalled client:\n%q\nalone:\n%q", i, r.text, alone[i])
		}
	}
	_, m := get(t, base+"/metrics")
	t.Logf("while the stalled client reads nothing: %s", strings.ReplaceAll(grepLines(m, "exo_generations_active"), "\n", "; "))

	conn.Close()
	waitMetric(`exo_generations_active{model="stories260K-F32"} 0`)
}
