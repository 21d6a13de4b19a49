package e2e

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// clusterNode is one exo process of a test cluster.
type clusterNode struct {
	*proc
	name   string
	gossip string
	raft   string
	data   string
}

// startClusterNode runs `exo serve` with its own data directory and loopback ports. With wait it
// returns once /readyz is 200.
func startClusterNode(t *testing.T, name string, wait bool, args ...string) *clusterNode {
	t.Helper()
	n := &clusterNode{name: name, gossip: nettest.FreePort(t), raft: nettest.FreePort(t), data: filepath.Join(t.TempDir(), name)}
	args = append([]string{"--node-name", name, "--gossip-addr", n.gossip, "--raft-addr", n.raft,
		"--transport-addr", nettest.FreePort(t), "--data-dir", n.data}, args...)
	if wait {
		n.proc = serve(t, cleanEnv(t), "http", args...)
		return n
	}
	addr := nettest.FreePort(t)
	n.proc = start(t, cleanEnv(t), append([]string{"serve", "--api-addr", addr, "--log-format", "json"}, args...)...)
	n.addr = addr
	return n
}

func (n *clusterNode) url(path string) string { return "http://" + n.addr + path }

// getJSON fetches a JSON document; it returns the status code.
func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := insecureClient.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(body, out)
	}
	return resp.StatusCode
}

type nodesDoc struct {
	Nodes []struct {
		ID     string   `json:"id"`
		Name   string   `json:"name"`
		Roles  []string `json:"roles"`
		Status string   `json:"status"`
		Leader bool     `json:"leader"`
	} `json:"nodes"`
}

// statuses maps node name to status as seen by n.
func (n *clusterNode) statuses(t *testing.T) map[string]string {
	var doc nodesDoc
	if getJSON(t, n.url("/api/v1/nodes"), &doc) != 200 {
		return nil
	}
	out := map[string]string{}
	for _, m := range doc.Nodes {
		out[m.Name] = m.Status
	}
	return out
}

type clusterDoc struct {
	ID     string `json:"id"`
	Leader *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"leader"`
	Raft *struct {
		State  string   `json:"state"`
		Voters []string `json:"voters"`
	} `json:"raft"`
}

type instanceDoc struct {
	ID     string `json:"id"`
	Model  string `json:"model"`
	Status string `json:"status"`
	Reason string `json:"reason"`
	Stages []struct {
		Node     string `json:"node"`
		NodeName string `json:"node_name"`
		Layers   [2]int `json:"layers"`
		Shards   []struct {
			Node     string `json:"node"`
			NodeName string `json:"node_name"`
		} `json:"shards"`
	} `json:"stages"`
	TensorParallel int `json:"tensor_parallel"`
	Placements     int `json:"placements"`
}

func (n *clusterNode) instances(t *testing.T) []instanceDoc {
	var doc struct {
		Instances []instanceDoc `json:"instances"`
	}
	if getJSON(t, n.url("/api/v1/instances"), &doc) != 200 {
		return nil
	}
	return doc.Instances
}

// waitUntil polls cond every 50 ms and returns how long it took.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// clusterToken asks a node for a join token admitting role (api, worker, master) through the
// CLI, as an operator would.
func clusterToken(t *testing.T, n *clusterNode, role string) string {
	t.Helper()
	code, out := runExo(t, cleanEnv(t), "cluster", "token", "--api-addr", n.addr, "--ttl", "10m", "--role", role)
	if code != 0 {
		t.Fatalf("exo cluster token: exit %d\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "exo1.") {
			return strings.TrimSpace(line)
		}
	}
	t.Fatalf("no token in output:\n%s", out)
	return ""
}

// writeModel writes a llama-shaped GGUF whose tensors are zeros: placement reads only the
// header, so the values do not matter. layerMiB sizes each block; ctx is the model's context
// length (the KV cache is 1 KiB per token per layer: 4 KV heads of 64 in F16).
func writeModel(t *testing.T, path string, layers int, layerMiB int, ctx int) {
	t.Helper()
	w := gguf.NewWriter()
	w.AddKV("general.architecture", gguf.Str("llama"))
	w.AddKV("general.name", gguf.Str(filepath.Base(path)))
	w.AddKV("llama.block_count", gguf.U32(uint32(layers)))
	w.AddKV("llama.embedding_length", gguf.U32(256))
	w.AddKV("llama.attention.head_count", gguf.U32(4))
	w.AddKV("llama.attention.head_count_kv", gguf.U32(4))
	w.AddKV("llama.context_length", gguf.U32(uint32(ctx)))
	zeros := func(dst io.Writer, n int64) error {
		buf := make([]byte, 64<<10)
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := dst.Write(buf[:k]); err != nil {
				return err
			}
			n -= k
		}
		return nil
	}
	add := func(name string, dims []uint64) {
		size := int64(4)
		for _, d := range dims {
			size *= int64(d)
		}
		if err := w.AddTensorFunc(name, ggml.F32, dims, func(dst io.Writer) error { return zeros(dst, size) }); err != nil {
			t.Fatal(err)
		}
	}
	add("token_embd.weight", []uint64{256, 512})
	for i := 0; i < layers; i++ {
		add("blk."+strconv.Itoa(i)+".ffn_up.weight", []uint64{256, uint64(layerMiB) * 1024})
	}
	add("output_norm.weight", []uint64{256})
	add("output.weight", []uint64{256, 512})
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
}
