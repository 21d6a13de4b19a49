package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
)

// pnode is one exo process of a pipeline test cluster, on loopback or in a network namespace.
type pnode struct {
	*proc
	name, data, models string
	gossip, transport  string
	host               *nettest.Host // nil on loopback
	client             *http.Client
}

// pnodeSpec says how to start a node.
type pnodeSpec struct {
	name  string
	roles string // empty: all roles (the first node, a master)
	env   []string
	// host runs the node in a network namespace, listening on ip; nil means loopback.
	host *nettest.Host
	ip   string
	// anyTransport makes the tensor transport listen on every address of the namespace (and
	// advertise them all, for multipath) instead of on ip only.
	anyTransport bool
	// models are extra model directories after the node's own writable one.
	models []string
	args   []string
	// prefix runs exo under another program (taskset -c 1) on loopback.
	prefix []string
}

// startPNode runs `exo serve` for spec and waits for /readyz.
func startPNode(t testing.TB, spec pnodeSpec) *pnode {
	t.Helper()
	n := &pnode{name: spec.name, host: spec.host, data: filepath.Join(t.TempDir(), spec.name)}
	n.models = filepath.Join(n.data, "models")
	if err := os.MkdirAll(n.models, 0o755); err != nil {
		t.Fatal(err)
	}
	port := func(fixed string) string {
		if spec.host == nil {
			return nettest.FreePort(t)
		}
		return net.JoinHostPort(spec.ip, fixed)
	}
	api := port("52415")
	n.gossip, n.transport = port("52416"), port("52417")
	if spec.host != nil && spec.anyTransport {
		n.transport = ":52417"
	}
	args := []string{"serve", "--node-name", spec.name, "--api-addr", api, "--gossip-addr", n.gossip, "--raft-addr", port("52418"),
		"--transport-addr", n.transport, "--data-dir", n.data, "--log-format", "json", "--models-dir", n.models}
	if spec.host != nil {
		keys := filepath.Join(t.TempDir(), "api-keys")
		if err := os.WriteFile(keys, []byte("sk-pipeline\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--api-key-file", keys)
	}
	for _, d := range spec.models {
		args = append(args, "--models-dir", d)
	}
	if spec.roles != "" {
		args = append(args, "--roles", spec.roles)
	}
	args = append(args, spec.args...)
	env := cleanEnv(t, spec.env...)
	if spec.host == nil && len(spec.prefix) > 0 {
		n.proc = startCmd(t, spec.name, exec.Command(spec.prefix[0], append(append(spec.prefix[1:], exoBin), args...)...), env)
		n.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	} else if spec.host == nil {
		n.proc = start(t, env, args...)
		n.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	} else {
		n.proc = startIn(t, spec.host, env, args...)
		h := spec.host
		n.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := h.Do(func() (err error) {
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			}}}
	}
	n.addr = api
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-n.done:
			t.Fatalf("%s exited before ready: %v\n%s", spec.name, n.err, n.output.String())
		default:
		}
		if code, _ := n.get("/readyz", nil); code == http.StatusOK {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 30s\n%s", spec.name, n.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startIn runs exo inside a network namespace.
func startIn(t testing.TB, h *nettest.Host, env []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, h.Name, exec.Command("ip", append([]string{"netns", "exec", h.NS, exoBin}, args...)...), env)
}

func (n *pnode) do(method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+n.addr+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if n.host != nil {
		req.Header.Set("Authorization", "Bearer sk-pipeline")
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (n *pnode) get(path string, out any) (int, []byte) {
	code, raw := n.do(http.MethodGet, path, nil)
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return code, raw
}

// joinAll starts the first node (master, worker, api) and joins the others as workers.
func joinAll(t testing.TB, first pnodeSpec, others ...pnodeSpec) []*pnode {
	t.Helper()
	n1 := startPNode(t, first)
	var tok struct {
		Token string `json:"token"`
	}
	if code, raw := n1.do(http.MethodPost, "/api/v1/cluster/token", map[string]string{"ttl": "10m"}); code != http.StatusCreated || json.Unmarshal(raw, &tok) != nil {
		t.Fatalf("token: %d %s", code, raw)
	}
	nodes := []*pnode{n1}
	for _, o := range others {
		if o.roles == "" {
			o.roles = "worker,api"
		}
		o.args = append(o.args, "--join", n1.gossip, "--token", tok.Token)
		nodes = append(nodes, startPNode(t, o))
	}
	waitFor(t, 30*time.Second, "every node sees every other alive", func() bool {
		for _, n := range nodes {
			var doc nodesDoc
			if code, _ := n.get("/api/v1/nodes", &doc); code != 200 || len(doc.Nodes) != len(nodes) {
				return false
			}
			for _, m := range doc.Nodes {
				if m.Status != "alive" {
					return false
				}
			}
		}
		return true
	})
	return nodes
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// liveStage is a stage's (or shard's) live state.
type liveStage struct {
	Name         string      `json:"name"`
	Layers       [2]int      `json:"layers"`
	State        string      `json:"state"`
	Error        string      `json:"error"`
	File         string      `json:"file"`
	FileBytes    int64       `json:"file_bytes"`
	Active       int         `json:"active"`
	Shard        int         `json:"shard"`
	Shards       int         `json:"shards"`
	OtherShards  []liveStage `json:"other_shards"`
	Kept         int         `json:"kept"`
	ReusedTokens uint64      `json:"reused_tokens"`
	Swaps        *struct {
		Count   uint64  `json:"count"`
		Seconds float64 `json:"seconds"`
	} `json:"swaps"`
}

// liveInstance is an instance with its stages' live state, as GET /api/v1/instances shows it.
type liveInstance struct {
	instanceDoc
	Live []liveStage `json:"live"`
}

func (n *pnode) instance(t testing.TB, id string) (liveInstance, bool) {
	var doc struct {
		Instances []liveInstance `json:"instances"`
	}
	n.get("/api/v1/instances", &doc)
	for _, in := range doc.Instances {
		if in.ID == id {
			return in, true
		}
	}
	return liveInstance{}, false
}

// placeInstance creates an instance and waits until every stage reports ready.
func placeInstance(t testing.TB, api *pnode, body map[string]any) liveInstance {
	t.Helper()
	var in instanceDoc
	code, raw := api.do(http.MethodPost, "/api/v1/instances", body)
	if code != http.StatusCreated || json.Unmarshal(raw, &in) != nil {
		t.Fatalf("create instance %v: %d %s", body, code, raw)
	}
	var live liveInstance
	waitFor(t, 60*time.Second, "stages of "+in.ID+" ready", func() bool {
		var ok bool
		live, ok = api.instance(t, in.ID)
		if !ok || len(live.Live) != len(live.Stages) {
			return false
		}
		for _, st := range live.Live {
			for _, s := range append([]liveStage{st}, st.OtherShards...) {
				if s.State == "failed" {
					t.Fatalf("stage %s %v (shard %d) failed: %s", s.Name, s.Layers, s.Shard, s.Error)
				}
				if s.State != "ready" {
					return false
				}
			}
		}
		return true
	})
	// Every API node routes by the placement it read last (once a second).
	time.Sleep(1500 * time.Millisecond)
	return live
}

func deleteInstance(t testing.TB, api *pnode, id string) {
	t.Helper()
	if code, raw := api.do(http.MethodDelete, "/api/v1/instances/"+id, nil); code != http.StatusOK {
		t.Fatalf("delete %s: %d %s", id, code, raw)
	}
	time.Sleep(1500 * time.Millisecond)
}

// completion asks for a greedy completion (chat or text) and returns text and token count.
func (n *pnode) completion(t testing.TB, model, prompt string, max int, chat bool) (string, int) {
	t.Helper()
	path, body := "/v1/completions", map[string]any{"model": model, "prompt": prompt, "max_tokens": max, "temperature": 0}
	if chat {
		path, body = "/v1/chat/completions", map[string]any{"model": model, "max_tokens": max, "temperature": 0,
			"messages": []map[string]string{{"role": "user", "content": prompt}}}
	}
	code, raw := n.do(http.MethodPost, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s on %s: %d %s", path, n.name, code, raw)
	}
	var resp struct {
		Choices []struct {
			Text    string `json:"text"`
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil || len(resp.Choices) != 1 {
		t.Fatalf("%s: %v %s", path, err, raw)
	}
	if chat {
		return resp.Choices[0].Message.Content, resp.Usage.CompletionTokens
	}
	return resp.Choices[0].Text, resp.Usage.CompletionTokens
}

// sseEvents reads a streamed completion: every data line's JSON, until [DONE] or the end.
func (n *pnode) stream(t testing.TB, body map[string]any, onEvent func(ev map[string]any)) error {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.addr+"/v1/completions", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Transport: n.client.Transport} // no overall timeout: the test bounds it
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			return nil
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return fmt.Errorf("bad event %q: %v", line, err)
		}
		onEvent(ev)
	}
	return sc.Err()
}

// linkDoc is one peer of /api/v1/cluster's transport list.
type linkDoc struct {
	Name      string `json:"name"`
	Addr      string `json:"addr"`
	Transport string `json:"transport"`
	Paths     []struct {
		ID     string `json:"id"`
		Local  string `json:"local"`
		Remote string `json:"remote"`
		Probe  *struct {
			RTT       int64   `json:"rtt_ns"`
			Bandwidth float64 `json:"bandwidth_bytes_per_second"`
		} `json:"probe"`
		SentBytes uint64 `json:"sent_bytes"`
	} `json:"paths"`
}

// links reads /api/v1/cluster's per-peer transport links by peer name.
func (n *pnode) links(t testing.TB) map[string]linkDoc {
	var doc struct {
		Transport []linkDoc `json:"transport"`
	}
	n.get("/api/v1/cluster", &doc)
	out := map[string]linkDoc{}
	for _, l := range doc.Transport {
		out[l.Name] = l
	}
	return out
}

// transports reads /api/v1/cluster's per-peer transport: peer name → quic or tcp.
func (n *pnode) transports(t testing.TB) map[string]string {
	var doc struct {
		Transport []struct {
			Name      string `json:"name"`
			Transport string `json:"transport"`
			Probe     *struct {
				RTT       int64   `json:"rtt_ns"`
				Bandwidth float64 `json:"bandwidth_bytes_per_second"`
			} `json:"probe"`
		} `json:"transport"`
	}
	n.get("/api/v1/cluster", &doc)
	out := map[string]string{}
	for _, l := range doc.Transport {
		if l.Probe != nil && l.Probe.RTT > 0 {
			out[l.Name] = l.Transport
		}
	}
	return out
}

// streamAndKill streams a long greedy completion of model from api and kills victim after 20
// chunks; it returns the stream's error event, how long after the kill the stream ended, and
// the chunks received. A stream that does not end within a minute of starting fails the test.
func streamAndKill(t *testing.T, api, victim *pnode, model string) (errText string, took time.Duration, chunks int) {
	t.Helper()
	var killed time.Time
	done := make(chan error, 1)
	go func() {
		done <- api.stream(t, map[string]any{"model": model, "prompt": "Once upon a time", "max_tokens": 1900,
			"temperature": 0, "stream": true}, func(ev map[string]any) {
			if e, ok := ev["error"].(map[string]any); ok {
				errText, _ = e["message"].(string)
				return
			}
			if chunks++; chunks == 20 {
				killed = time.Now()
				_ = victim.cmd.Process.Signal(syscall.SIGKILL)
			}
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the stream hangs after %s was killed", victim.name)
	}
	if killed.IsZero() {
		t.Fatalf("the completion ended after %d chunks, before the kill", chunks)
	}
	return errText, time.Since(killed), chunks
}
