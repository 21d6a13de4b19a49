package api

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/appliance/store/hubtest"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

// TestModelRoutes: list with directory info, a pull whose progress arrives as events, the
// pulled model in the list, errors in the API's shape, and removal.
func TestModelRoutes(t *testing.T) {
	data, err := os.ReadFile(testfixtures.Path(t, "stories260K", "stories260K-Q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	hub := hubtest.New()
	defer hub.Close()
	hub.Add("exo-test/stories", "stories260K-Q8_0.gguf", data)

	ro := t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "stories260K-F32.gguf"), mustRead(t, testfixtures.Path(t, "stories260K", "stories260K-F32.gguf")), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := filepath.Join(t.TempDir(), "models")
	var srv *Server
	st := store.New(store.Options{
		Dirs: []string{ro + store.ReadOnlySuffix, rw}, Client: hub.Client(), Hub: store.Hub{Endpoint: hub.Endpoint()},
		ChunkSize: 64 << 10, ProgressInterval: 5 * time.Millisecond,
		Publish: func(typ string, d any) { srv.Events().Publish(Event{Type: typ, Data: d}) },
	})
	defer st.Close()
	srv, base := startServer(t, Options{Models: st})

	// Subscribe to events before pulling.
	resp, err := http.Get(base + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewScanner(resp.Body)
	next := func() (string, string) {
		var typ string
		for events.Scan() {
			line := events.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				typ = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				return typ, v
			}
		}
		t.Fatal("event stream ended")
		return "", ""
	}
	if typ, _ := next(); typ != "hello" {
		t.Fatalf("first event %q", typ)
	}

	code, body := doBody(t, "POST", base+"/api/v1/models", `{"source":"exo-test/stories:stories260K-Q8_0.gguf"}`)
	if code != 202 || !strings.Contains(body, `"id":"stories260K-Q8_0"`) {
		t.Fatalf("pull: %d %s", code, body)
	}
	var last store.Progress
	sawBytes := false
	for !last.Finished() {
		typ, d := next()
		if typ != store.EventPull {
			continue
		}
		if err := json.Unmarshal([]byte(d), &last); err != nil {
			t.Fatal(err)
		}
		sawBytes = sawBytes || (last.State == store.StateDownloading && last.Total == int64(len(data)))
	}
	if last.State != store.StateDone || last.Done != int64(len(data)) || !last.Verified || !sawBytes {
		t.Fatalf("final progress %+v (saw download progress: %v)", last, sawBytes)
	}

	code, body = doBody(t, "GET", base+"/api/v1/models", "")
	var list struct {
		Models []store.Model    `json:"models"`
		Dirs   []store.Dir      `json:"dirs"`
		Pulls  []store.Progress `json:"pulls"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	if len(list.Models) != 2 || len(list.Dirs) != 2 || !list.Dirs[0].ReadOnly || list.Dirs[1].ReadOnly || list.Dirs[1].Models != 1 || len(list.Pulls) != 1 {
		t.Fatalf("list %+v", list)
	}
	if code, body := doBody(t, "GET", base+"/api/v1/models/stories260K-Q8_0", ""); code != 200 || !strings.Contains(body, `"quantization":"Q8_0"`) {
		t.Fatalf("get: %d %s", code, body)
	}

	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/v1/models", `{"source":"not a ref:"}`, 400, "bad model reference"},
		{"POST", "/api/v1/models", `{}`, 400, `\"source\" is required`},
		{"POST", "/api/v1/models", `{"source":"a/b:c.gguf","bogus":1}`, 400, "bogus"},
		{"DELETE", "/api/v1/models/stories260K-F32", "", 409, "read_only_error"},
		{"DELETE", "/api/v1/models/nope", "", 404, "not_found_error"},
		{"GET", "/api/v1/models/nope", "", 404, "not_found_error"},
	} {
		if code, body := doBody(t, tc.method, base+tc.path, tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s %s: %d %s", tc.method, tc.path, tc.body, code, body)
		}
	}
	code, body = doBody(t, "DELETE", base+"/api/v1/models/stories260K-Q8_0", "")
	if code != 200 || !strings.Contains(body, filepath.Join(rw, "stories260K-Q8_0.gguf")) {
		t.Fatalf("delete: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(rw, "stories260K-Q8_0.gguf")); !os.IsNotExist(err) {
		t.Fatal("model still on disk")
	}
}

func doBody(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
