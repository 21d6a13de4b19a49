package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
)

// prompts the pipelines must complete exactly like one node does.
var pipelinePrompts = []struct {
	prompt string
	chat   bool
}{
	{"Once upon a time", false},
	{"Tell me a story.", true},
}

// checkSameTokens compares greedy completions through api with `exo generate` on one node.
func checkSameTokens(t *testing.T, api *pnode, model, file string, stages int) {
	t.Helper()
	for _, p := range pipelinePrompts {
		want := exoGenerate(t, file, p.prompt, 40, p.chat)
		got, n := api.completion(t, model, p.prompt, 40, p.chat)
		if got != want.Text || n != len(want.Tokens) {
			t.Errorf("%s over %d stages (chat=%v, asked %s):\npipeline     %q (%d tokens)\nexo generate %q (%d tokens)",
				model, stages, p.chat, api.name, got, n, want.Text, len(want.Tokens))
		}
	}
}

// checkFollowUpReuses asks api for a completion, then for one of a prompt that continues the
// first prompt and its completion (a conversation's next turn): the answer is still exactly
// exo generate's, and every stage took the first turn's positions from what it kept.
func checkFollowUpReuses(t *testing.T, api *pnode, inst, model, file string) {
	t.Helper()
	reused := func() []uint64 {
		live, _ := api.instance(t, inst)
		var out []uint64
		for _, st := range live.Live {
			out = append(out, st.ReusedTokens)
		}
		return out
	}
	first := "Lily and Tom went to the park."
	text, _ := api.completion(t, model, first, 24, false)
	before := reused()
	next := first + text + " Then they"
	want := exoGenerate(t, file, next, 24, false)
	got, _ := api.completion(t, model, next, 24, false)
	if got != want.Text {
		t.Errorf("follow-up through %s: %q, exo generate %q", api.name, got, want.Text)
	}
	after := reused()
	for i := range after {
		if i >= len(before) || after[i] <= before[i] {
			t.Errorf("stage %d reused no positions for the follow-up (%v, then %v)", i+1, before, after)
		}
	}
	t.Logf("MEASURE follow-up of %d chars: positions reused per stage %v", len(next), after)
}

// TestPipelineSameTokensAsOneNode: 2- and 3-stage pipelines of the F32 and Q8_0 fixtures
// across three exo processes produce exactly the tokens of single-node `exo generate`, through
// /v1/completions and /v1/chat/completions, asked on the master and on a worker that holds
// only a stage file (fetched from its peer).
func TestPipelineSameTokensAsOneNode(t *testing.T) {
	fx := filepath.Join(fixtures(t), "stories260K")
	nodes := joinAll(t, pnodeSpec{name: "n1", models: []string{fx}}, pnodeSpec{name: "n2"}, pnodeSpec{name: "n3"})
	n1, n3 := nodes[0], nodes[2]
	f32, q8 := filepath.Join(fx, "stories260K-F32.gguf"), filepath.Join(fx, "stories260K-Q8_0.gguf")

	for round, sizes := range [][2]int{{3, 2}, {2, 3}} {
		a := placeInstance(t, n1, map[string]any{"model": "stories260K-F32", "min_nodes": sizes[0]})
		b := placeInstance(t, n1, map[string]any{"model": "stories260K-Q8_0", "min_nodes": sizes[1]})
		if len(a.Stages) != sizes[0] || len(b.Stages) != sizes[1] {
			t.Fatalf("placement: %v and %v, want %d and %d stages", stageNames(a.instanceDoc), stageNames(b.instanceDoc), sizes[0], sizes[1])
		}
		t.Logf("round %d: F32 on %v, Q8_0 on %v", round, a.Stages, b.Stages)
		for _, api := range []*pnode{n1, n3} {
			checkSameTokens(t, api, "stories260K-F32", f32, sizes[0])
			checkSameTokens(t, api, "stories260K-Q8_0", q8, sizes[1])
		}
		if round == 0 {
			checkFollowUpReuses(t, n3, a.ID, "stories260K-F32", f32)
		}
		// Every stage's node counts the instance's batched steps, and the time its forward
		// passes took, in /metrics; the first stage's node the tokens that came round the ring.
		stepNodes, busyNodes, ringNodes := 0, 0, 0
		for _, n := range nodes {
			_, raw := n.get("/metrics", nil)
			if stageMetric(string(raw), "exo_pipeline_stage_steps_total", a.ID) > 0 {
				stepNodes++
			}
			if stageMetric(string(raw), "exo_pipeline_stage_busy_seconds_total", a.ID) > 0 {
				busyNodes++
			}
			if stageMetric(string(raw), "exo_pipeline_stage_ring_tokens_total", a.ID) > 0 {
				ringNodes++
			}
		}
		if stepNodes != sizes[0] || busyNodes != sizes[0] || ringNodes != 1 {
			t.Errorf("/metrics: %d nodes counted steps of %s and %d their time (want %d each), %d counted ring tokens (want 1)",
				stepNodes, a.ID, busyNodes, sizes[0], ringNodes)
		}
		deleteInstance(t, n1, a.ID)
		deleteInstance(t, n1, b.ID)
	}
	// n2 and n3 never held the models: they fetched only their stages from n1.
	for _, n := range nodes[1:] {
		entries, _ := os.ReadDir(n.models)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".gguf") && !strings.Contains(e.Name(), ".layers-") {
				t.Errorf("%s holds the whole model %s", n.name, e.Name())
			}
		}
	}
}

// TestPipelineMiddleStageKilled: the node of the middle stage dies (SIGKILL) during a streamed
// completion; the client gets an error event naming the stage within seconds instead of a
// hang, and the surviving stages free the request's KV cache.
func TestPipelineMiddleStageKilled(t *testing.T) {
	model := filepath.Join(fixtures(t), "synthetic", "llama-spm32k-e256")
	// The master only plans; the three workers run the stages.
	nodes := joinAll(t, pnodeSpec{name: "m1", roles: "master,api", models: []string{model}},
		pnodeSpec{name: "w1", models: []string{model}}, pnodeSpec{name: "w2", models: []string{model}}, pnodeSpec{name: "w3", models: []string{model}})
	m1 := nodes[0]
	in := placeInstance(t, m1, map[string]any{"model": "llama-spm32k-e256-Q8_0", "min_nodes": 3, "nodes": []string{"w1", "w2", "w3"}})
	if len(in.Stages) != 3 {
		t.Fatalf("placement %v, want 3 stages", stageNames(in.instanceDoc))
	}
	// m1 runs no worker: it lists and serves the model through the pipeline alone.
	if code, raw := m1.get("/v1/models", nil); code != http.StatusOK || !strings.Contains(string(raw), `"id":"llama-spm32k-e256-Q8_0"`) {
		t.Fatalf("/v1/models on an API-only node: %d %s", code, raw)
	}
	var middle *pnode
	for _, n := range nodes {
		if n.name == in.Stages[1].NodeName {
			middle = n
		}
	}
	errText, took, chunks := streamAndKill(t, m1, middle, "llama-spm32k-e256-Q8_0")
	if errText == "" || !strings.Contains(errText, middle.name) {
		t.Fatalf("want an error event naming %s, got %q after %d chunks", middle.name, errText, chunks)
	}
	t.Logf("MEASURE middle stage (%s) killed after 20 chunks: error event %s later: %s", middle.name, took.Round(time.Millisecond), errText)
	if took > 15*time.Second {
		t.Errorf("the error took %s", took)
	}
	waitFor(t, 20*time.Second, "the surviving stages free the request's KV cache", func() bool {
		live, ok := m1.instance(t, in.ID)
		if !ok || len(live.Live) != 3 {
			return false
		}
		return live.Live[0].State == "ready" && live.Live[0].Active == 0 && live.Live[2].State == "ready" && live.Live[2].Active == 0
	})
}

// TestPipelineHubOnceStagesFromPeers (the model store's cluster acceptance): one pull from the
// hub, then an instance across three nodes; the hub serves each byte once, the other nodes
// fetch only their layers from the peer, and the instance generates the same tokens as one
// node.
func TestPipelineHubOnceStagesFromPeers(t *testing.T) {
	hub, data, env := pullEnv(t)
	env = env[2:] // pnode adds PATH and HOME itself
	nodes := joinAll(t, pnodeSpec{name: "n1", env: env}, pnodeSpec{name: "n2", env: env}, pnodeSpec{name: "n3", env: env})
	n1 := nodes[0]
	if code, raw := n1.do(http.MethodPost, "/api/v1/models", map[string]string{"source": pullRepo + ":" + pullFile}); code != http.StatusAccepted {
		t.Fatalf("pull: %d %s", code, raw)
	}
	waitFor(t, 30*time.Second, "the pull", func() bool {
		var doc struct {
			Model *struct{ Path string } `json:"model"`
		}
		n1.get("/api/v1/models/stories260K-Q8_0", &doc)
		return doc.Model != nil
	})
	in := placeInstance(t, n1, map[string]any{"model": "stories260K-Q8_0", "min_nodes": 3})
	if got := hub.Served(); got != int64(len(data)) {
		t.Errorf("the hub served %d bytes for a %d-byte model", got, len(data))
	}
	for _, s := range in.Live {
		t.Logf("MEASURE stage %s %v runs from %s (%d bytes of the %d-byte model)", s.Name, s.Layers, filepath.Base(s.File), s.FileBytes, len(data))
		if s.Name != "n1" && (!strings.Contains(s.File, ".layers-") || s.FileBytes >= int64(len(data))) {
			t.Errorf("stage %s %v runs from %s (%d bytes): want a stage-only file", s.Name, s.Layers, s.File, s.FileBytes)
		}
	}
	ref := filepath.Join(fixtures(t), "stories260K", pullFile)
	checkSameTokens(t, nodes[2], "stories260K-Q8_0", ref, 3)
	if got := hub.Served(); got != int64(len(data)) {
		t.Errorf("after generating, the hub served %d bytes for a %d-byte model", got, len(data))
	}
}

// TestPipelineOverTCPWhenUDPIsDropped: two nodes in their own network namespaces, the second
// dropping every UDP packet (nftables): the pipeline still runs, over TCP, and /api/v1/cluster
// says so on both nodes.
func TestPipelineOverTCPWhenUDPIsDropped(t *testing.T) {
	fx := filepath.Join(fixtures(t), "stories260K")
	nw := nettest.New(t)
	h1, h2 := nw.Host("a"), nw.Host("b")
	l := nw.Link(h1, h2)
	h2.DropUDP()
	nodes := joinAll(t, pnodeSpec{name: "a", host: h1, ip: l.AAddr.String(), models: []string{fx}},
		pnodeSpec{name: "b", host: h2, ip: l.BAddr.String()})
	a, b := nodes[0], nodes[1]
	placeInstance(t, a, map[string]any{"model": "stories260K-F32", "min_nodes": 2})
	checkSameTokens(t, a, "stories260K-F32", filepath.Join(fx, "stories260K-F32.gguf"), 2)
	checkSameTokens(t, b, "stories260K-F32", filepath.Join(fx, "stories260K-F32.gguf"), 2)
	waitFor(t, 20*time.Second, "both nodes report the link as tcp", func() bool {
		return a.transports(t)["b"] == "tcp" && b.transports(t)["a"] == "tcp"
	})
	// Gossip itself goes over TCP too (membership's packet path), so suspicions can be refuted
	// and tag changes arrive without waiting for a push-pull.
	waitFor(t, 20*time.Second, "both nodes send gossip over TCP", func() bool {
		return strings.Contains(a.output.String(), "gossip to a peer goes over TCP too") &&
			strings.Contains(b.output.String(), "gossip to a peer goes over TCP too")
	})
	_, raw := a.get("/api/v1/cluster", nil)
	t.Logf("MEASURE UDP dropped: a's /api/v1/cluster: %s", raw)
}

// TestPipelineMultipathPrompt: two nodes in network namespaces joined by two veth links, each
// rate-limited with tc tbf (24 and 12 Mbit/s). The transport listens on both addresses and
// advertises them; each node opens a connection per path, and the prompt's activations between
// the stages are striped over both (per-path byte counters in /api/v1/cluster and /metrics),
// while the tokens stay exactly those of one node.
func TestPipelineMultipathPrompt(t *testing.T) {
	dir := filepath.Join(fixtures(t), "synthetic", "llama-spm32k-e256")
	const model = "llama-spm32k-e256-Q8_0"
	nw := nettest.New(t)
	h1, h2 := nw.Host("a"), nw.Host("b")
	l1, l2 := nw.Link(h1, h2), nw.Link(h1, h2)
	for _, h := range []*nettest.Host{h1, h2} {
		l1.Limit(h, 24_000_000)
		l2.Limit(h, 12_000_000)
	}
	nodes := joinAll(t, pnodeSpec{name: "a", host: h1, ip: l1.AAddr.String(), models: []string{dir}, anyTransport: true},
		pnodeSpec{name: "b", host: h2, ip: l1.BAddr.String(), models: []string{dir}, anyTransport: true})
	byName := map[string]*pnode{"a": nodes[0], "b": nodes[1]}
	waitFor(t, 60*time.Second, "both nodes measure two paths to each other", func() bool {
		for self, peer := range map[string]string{"a": "b", "b": "a"} {
			l := byName[self].links(t)[peer]
			if len(l.Paths) != 2 {
				return false
			}
			for _, p := range l.Paths {
				if p.Probe == nil || p.Probe.Bandwidth <= 0 {
					return false
				}
			}
		}
		return true
	})
	in := placeInstance(t, nodes[0], map[string]any{"model": model, "min_nodes": 2})
	sender, receiver := byName[in.Stages[0].NodeName], in.Stages[1].NodeName
	before := sender.links(t)[receiver]

	// About 600 prompt tokens: chunks of 256 tokens × 256 floats are 256 KiB frames, large
	// enough to stripe.
	prompt := strings.Repeat("The little dog ran to the park and played with a red ball. ", 45)
	want := exoGenerate(t, filepath.Join(dir, model+".gguf"), prompt, 16, false)
	got, n := nodes[0].completion(t, model, prompt, 16, false)
	if got != want.Text || n != len(want.Tokens) {
		t.Fatalf("over two paths:\npipeline     %q (%d tokens)\nexo generate %q (%d tokens)", got, n, want.Text, len(want.Tokens))
	}
	after := sender.links(t)[receiver]
	var total uint64
	sent := map[string]uint64{}
	for i, p := range after.Paths {
		d := p.SentBytes - before.Paths[i].SentBytes
		sent[p.Local+">"+p.Remote] = d
		total += d
		t.Logf("MEASURE path %s>%s: probe %.1f Mbit/s, rtt %s; the prompt put %d bytes on it", p.Local, p.Remote,
			p.Probe.Bandwidth*8/1e6, time.Duration(p.Probe.RTT), d)
	}
	// The prompt's hidden states: one F32 row of 256 values per token.
	if min := uint64(500 * 256 * 4); total < min {
		t.Fatalf("the bundles carried %d bytes, less than the prompt's activations (%d): %v", total, min, sent)
	}
	for k, d := range sent {
		if d < total/6 {
			t.Errorf("path %s carried %d of %d bytes: the prompt was not striped over both paths", k, d, total)
		}
	}
	code, raw := sender.get("/metrics", nil)
	if code != 200 || !strings.Contains(string(raw), "exo_netstack_path_sent_bytes_total") {
		t.Errorf("/metrics (%d) has no per-path byte counter", code)
	}

	// Placement predicts hops from the probes (both paths together), which the nodes publish
	// in gossip every 10 s.
	var preview struct {
		Links []struct {
			From, To  string
			LatencyMs float64 `json:"latency_ms"`
			Bandwidth float64 `json:"bandwidth_bytes_per_second"`
			Source    string
		} `json:"links"`
	}
	waitFor(t, 30*time.Second, "/api/v1/placement shows the measured links", func() bool {
		if code, _ := nodes[0].get("/api/v1/placement?model="+model+"&min_nodes=2", &preview); code != 200 || len(preview.Links) != 2 {
			return false
		}
		for _, l := range preview.Links {
			if l.Source != "probe" {
				return false
			}
		}
		return true
	})
	for _, l := range preview.Links {
		t.Logf("MEASURE placement link %s→%s: %.2f ms, %.1f Mbit/s (%s)", l.From, l.To, l.LatencyMs, l.Bandwidth*8/1e6, l.Source)
		// Two tbf-limited paths of 24 and 12 Mbit/s: more than the faster alone, less than both.
		if mbit := l.Bandwidth * 8 / 1e6; mbit < 26 || mbit > 37 {
			t.Errorf("link %s→%s: %.1f Mbit/s, want the two paths' sum (about 36)", l.From, l.To, mbit)
		}
	}
}

// stageMetric is the value of a pipeline stage metric of instance in a /metrics page (0 when
// absent).
func stageMetric(page, name, instance string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `instance="`+instance+`"`) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			return v
		}
	}
	return 0
}
