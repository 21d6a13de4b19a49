package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func startServer(t *testing.T, opt Options) (*Server, string) {
	t.Helper()
	opt.Addr = "127.0.0.1:0"
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, "http://" + addr.String()
}

func do(t *testing.T, method, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAuthProtectsAPIButNotHealthOrDashboard(t *testing.T) {
	dash := fstest.MapFS{"index.html": {Data: []byte("<title>exo</title>")}, "assets/app.js": {Data: []byte("x")}}
	_, base := startServer(t, Options{Keys: []string{"k-123"}, Dashboard: dash,
		Readiness: func() map[string]RoleStatus { return map[string]RoleStatus{"api": {Ready: true}} }})
	open := []string{"/healthz", "/readyz", "/", "/assets/app.js", "/some/spa/route"}
	for _, p := range open {
		if code, body := do(t, "GET", base+p, ""); code != 200 {
			t.Errorf("%s without key: %d %s", p, code, body)
		}
	}
	for _, p := range []string{"/metrics", "/api/v1/events", "/v1/models"} {
		code, body := do(t, "GET", base+p, "")
		if code != 401 || !strings.Contains(body, `"authentication_error"`) {
			t.Errorf("%s without key: %d %s", p, code, body)
		}
		if code, _ := do(t, "GET", base+p, "wrong"); code != 401 {
			t.Errorf("%s with a wrong key: %d", p, code)
		}
	}
	if code, body := do(t, "GET", base+"/metrics", "k-123"); code != 200 || !strings.Contains(body, "exo_build_info") {
		t.Errorf("/metrics with key: %d", code)
	}
}

func TestReadinessFollowsRoles(t *testing.T) {
	ready := false
	_, base := startServer(t, Options{Readiness: func() map[string]RoleStatus {
		return map[string]RoleStatus{"api": {Ready: true}, "worker": {Ready: ready, Detail: "loading"}}
	}})
	code, body := do(t, "GET", base+"/readyz", "")
	if code != 503 || !strings.Contains(body, `"loading"`) || !strings.Contains(body, `"ready":false`) {
		t.Fatalf("not-ready worker: %d %s", code, body)
	}
	ready = true
	if code, _ := do(t, "GET", base+"/readyz", ""); code != 200 {
		t.Fatalf("all ready: %d", code)
	}
}

func TestNoDashboardBuilt(t *testing.T) {
	_, base := startServer(t, Options{})
	code, body := do(t, "GET", base+"/", "")
	if code != 404 || !strings.Contains(body, "without the dashboard") {
		t.Fatalf("%d %s", code, body)
	}
}

func TestBrokerDropsForSlowSubscribersAndCloses(t *testing.T) {
	b := NewBroker()
	ch, cancel := b.Subscribe()
	for i := 0; i < 100; i++ {
		b.Publish(Event{Type: "x"}) // must not block on a full subscriber
	}
	if len(ch) != cap(ch) {
		t.Fatalf("buffered %d of %d", len(ch), cap(ch))
	}
	b.Close()
	n := 0
	for range ch {
		n++
	}
	if n != cap(ch) {
		t.Fatalf("drained %d", n)
	}
	cancel() // after close: no double close panic
	late, _ := b.Subscribe()
	if _, ok := <-late; ok {
		t.Fatal("subscription after close is open")
	}
}
