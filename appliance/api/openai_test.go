package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/serving"
	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

func storiesCatalog(t *testing.T) *store.Catalog {
	return store.NewCatalog([]string{testfixtures.Path(t, "stories260K")})
}

// TestQueueFullIs429: with one slot taken and the one queue place used, the next request is
// refused at once with 429 and Retry-After.
func TestQueueFullIs429(t *testing.T) {
	mgr := serving.New(serving.Options{Catalog: storiesCatalog(t), Slots: 1, MaxQueue: 1})
	defer mgr.Close()
	_, base := startServer(t, Options{Serving: mgr})
	hold, err := mgr.Acquire(context.Background(), "stories260K-F32")
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"stories260K-F32","prompt":"Once","max_tokens":2,"temperature":0}`
	queued := make(chan int, 1)
	go func() {
		resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			queued <- -1
			return
		}
		resp.Body.Close()
		queued <- resp.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	for st := mgr.States(); len(st) == 0 || st[0].Waiting != 1; st = mgr.States() {
		if time.Now().After(deadline) {
			t.Fatal("request never queued")
		}
		time.Sleep(time.Millisecond)
	}
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the queue: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	hold.Release()
	if code := <-queued; code != 200 {
		t.Fatalf("queued request finished with %d", code)
	}
}

func TestNoWorkerRoleIs503(t *testing.T) {
	_, base := startServer(t, Options{})
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if code, _ := do(t, "GET", base+"/v1/models", ""); code != 503 {
		t.Fatalf("models without a worker role: %d", code)
	}
}

// With API keys, a caller's request reuses the cached prompt start of its own earlier request
// and never another key's: cached_tokens, and the time saved, would tell it what another
// caller's prompt began with.
func TestCachedPromptStartsStayWithTheirKey(t *testing.T) {
	mgr := serving.New(serving.Options{Catalog: storiesCatalog(t), Slots: 2})
	defer mgr.Close()
	_, base := startServer(t, Options{Serving: mgr, Keys: []string{"key-alice", "key-bob"}})
	body := `{"model":"stories260K-F32","prompt":"Once upon a time there was a little girl","max_tokens":3,"temperature":0}`
	post := func(key string) (prompt, cached int) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Usage struct {
				PromptTokens int `json:"prompt_tokens"`
				Details      struct {
					CachedTokens *int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Usage.Details.CachedTokens == nil {
			t.Fatalf("status %d, usage %+v, decode error %v", resp.StatusCode, out.Usage, err)
		}
		return out.Usage.PromptTokens, *out.Usage.Details.CachedTokens
	}
	if _, c := post("key-alice"); c != 0 {
		t.Fatalf("first request: %d cached tokens", c)
	}
	if _, c := post("key-bob"); c != 0 {
		t.Errorf("another key's request found %d cached tokens", c)
	}
	if p, c := post("key-alice"); c != p-1 {
		t.Errorf("the same key's repeated prompt: %d of %d tokens cached, want %d", c, p, p-1)
	}
}
