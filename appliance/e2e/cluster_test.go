package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
)

func clusterPost(t *testing.T, url string, body any, out any) (int, string) {
	t.Helper()
	data, _ := json.Marshal(body)
	resp, err := insecureClient.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode, string(raw)
}

// allSee waits until every node reports exactly the named nodes with the given status.
func allSee(t *testing.T, nodes []*clusterNode, want map[string]string, within time.Duration) time.Duration {
	t.Helper()
	return waitUntil(t, within, "every node agrees on the members", func() bool {
		for _, n := range nodes {
			got := n.statuses(t)
			if len(got) != len(want) {
				return false
			}
			for name, st := range want {
				if got[name] != st {
					return false
				}
			}
		}
		return true
	})
}

// membersViaCLI runs `exo cluster members --json` against a node and returns name→status.
func membersViaCLI(t *testing.T, n *clusterNode) map[string]string {
	t.Helper()
	p := start(t, cleanEnv(t), "cluster", "members", "--json", "--api-addr", n.addr)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exo cluster members: exit %d\n%s", code, p.output.String())
	}
	var doc nodesDoc
	if err := json.Unmarshal([]byte(p.output.String()), &doc); err != nil {
		t.Fatalf("exo cluster members --json: %v\n%s", err, p.output.String())
	}
	out := map[string]string{}
	for _, m := range doc.Nodes {
		out[m.Name] = m.Status
	}
	return out
}

func stageNames(in instanceDoc) []string {
	var out []string
	for _, s := range in.Stages {
		out = append(out, s.NodeName)
	}
	return out
}

// TestClusterThreeNodes: one master and two workers form a cluster, refuse nodes without a
// valid token, place an instance over two nodes, and re-place it when a worker dies.
func TestClusterThreeNodes(t *testing.T) {
	models := t.TempDir()
	// 8 blocks of 1 MiB; 1 KiB of KV cache per token and layer.
	writeModel(t, filepath.Join(models, "tiny.gguf"), 8, 1, 65536)
	common := []string{"--models-dir", models, "--node-memory", "40MiB"}

	m1 := startClusterNode(t, "m1", true, common...)
	token := clusterToken(t, m1, "worker")
	t0 := time.Now()
	join := append([]string{"--roles", "worker,api", "--join", m1.gossip, "--token", token}, common...)
	w2 := startClusterNode(t, "w2", true, join...)
	w3 := startClusterNode(t, "w3", true, join...)
	nodes := []*clusterNode{m1, w2, w3}
	took := allSee(t, nodes, map[string]string{"m1": "alive", "w2": "alive", "w3": "alive"}, 20*time.Second)
	t.Logf("MEASURE three nodes formed: workers started and all agree %s after the first join started (%s after the last was ready)", time.Since(t0).Round(time.Millisecond), took.Round(time.Millisecond))
	for _, n := range nodes {
		if got := membersViaCLI(t, n); len(got) != 3 || got["m1"] != "alive" || got["w2"] != "alive" || got["w3"] != "alive" {
			t.Fatalf("exo cluster members on %s: %v", n.name, got)
		}
	}

	// Refused joiners: no token, a tampered token, and another cluster's token.
	refused := func(name string, extra ...string) string {
		args := append([]string{"serve", "--roles", "worker,api", "--node-name", name, "--api-addr", nettest.FreePort(t), "--gossip-addr", nettest.FreePort(t),
			"--join", m1.gossip, "--data-dir", filepath.Join(t.TempDir(), name), "--log-format", "json"}, extra...)
		code, out := runExo(t, cleanEnv(t), args...)
		if code == 0 || !strings.Contains(out, "refused") {
			t.Fatalf("%s: exit %d, want a refusal:\n%s", name, code, out)
		}
		return out
	}
	refused("no-token")
	refused("bad-token", "--token", token[:len(token)-8]+"AAAAAAAA")
	other := startClusterNode(t, "other", true)
	if out := refused("other-cluster", "--token", clusterToken(t, other, "master")); !strings.Contains(out, "not the token's") {
		t.Fatalf("another cluster's token: the joiner should notice the CA mismatch:\n%s", out)
	}
	// The workers' token does not make a master (which would receive the CA key): --roles
	// adds master to worker,api here.
	if out := refused("worker-as-master", "--roles", "master", "--token", token); !strings.Contains(out, "a worker token does not admit the master role") {
		t.Fatalf("master join with a worker token: the joiner should be told why:\n%s", out)
	}
	waitUntil(t, 5*time.Second, "refusals logged on the cluster side", func() bool {
		log := m1.output.String()
		return strings.Count(log, `"msg":"join refused"`) >= 4 && strings.Contains(log, `"reason":"no token"`) &&
			strings.Contains(log, `"reason":"invalid token"`) && strings.Contains(log, "TLS handshake failed") &&
			strings.Contains(log, `"reason":"a worker token does not admit the master role","token_id"`) && strings.Contains(log, `"name":"worker-as-master"`)
	})
	// Nor does a worker-role member hand out a master token in its place.
	if code, out := runExo(t, cleanEnv(t), "cluster", "token", "--api-addr", w2.addr, "--role", "master"); code == 0 || !strings.Contains(out, "may not issue a master token") {
		t.Fatalf("master token through a worker's API: exit %d\n%s", code, out)
	}
	if st := m1.statuses(t); len(st) != 3 {
		t.Fatalf("a refused node became a member: %v", st)
	}

	// A model larger than the cluster: 409 naming the shortfall in bytes.
	var tooBig struct {
		Error struct {
			Message    string `json:"message"`
			ShortBytes uint64 `json:"short_bytes"`
		} `json:"error"`
	}
	if code := getJSON(t, w2.url("/api/v1/placement?model=tiny&context=60000"), &tooBig); code != http.StatusConflict ||
		tooBig.Error.ShortBytes == 0 || !strings.Contains(tooBig.Error.Message, "short by") {
		t.Fatalf("placement beyond the cluster: %d %+v", code, tooBig)
	}
	var preview struct {
		Plan struct {
			Stages []struct{ Node string } `json:"stages"`
		} `json:"plan"`
	}
	if code := getJSON(t, w3.url("/api/v1/placement?model=tiny&context=1024&min_nodes=2"), &preview); code != 200 || len(preview.Plan.Stages) != 2 {
		t.Fatalf("placement preview: %d %+v", code, preview)
	}

	// A tensor-parallel preview through the CLI names each stage's other shard and its swaps;
	// a group beyond the largest is refused with the field and the range.
	code, out := runExo(t, cleanEnv(t), "instances", "create", "tiny", "--tensor-parallel", "2", "--context", "1024", "--dry-run", "--api-addr", w3.addr)
	if code != 0 || !strings.Contains(out, "shard 1 on ") || !strings.Contains(out, "ms/token") {
		t.Fatalf("exo instances create --tensor-parallel 2 --dry-run: exit %d\n%s", code, out)
	}
	if code, out := runExo(t, cleanEnv(t), "instances", "create", "tiny", "--tensor-parallel", "5", "--api-addr", w3.addr); code == 0 || !strings.Contains(out, "tensor_parallel 5 out of range") {
		t.Fatalf("exo instances create --tensor-parallel 5: exit %d\n%s", code, out)
	}

	// Create through a worker's API (forwarded to the leader) with the CLI.
	code, out = runExo(t, cleanEnv(t), "instances", "create", "tiny", "--min-nodes", "2", "--context", "1024", "--json", "--api-addr", w2.addr)
	var inst instanceDoc
	if code != 0 || json.Unmarshal([]byte(out), &inst) != nil || inst.Status != "placed" || len(inst.Stages) != 2 {
		t.Fatalf("exo instances create: exit %d\n%s", code, out)
	}
	t.Logf("instance %s placed on %v", inst.ID, stageNames(inst))

	// Kill -9 a worker holding a stage (not m1, which runs the leader).
	var victim *clusterNode
	for _, n := range []*clusterNode{w2, w3} {
		if slices.Contains(stageNames(inst), n.name) {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("no worker-only node holds a stage of %v", stageNames(inst))
	}
	survivor := w2
	if victim == w2 {
		survivor = w3
	}
	killed := time.Now()
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	detected := waitUntil(t, 20*time.Second, "the leader declares the killed worker failed", func() bool {
		return m1.statuses(t)[victim.name] == "failed"
	})
	var replaced instanceDoc
	waitUntil(t, 20*time.Second, "the instance is re-placed on the survivors", func() bool {
		for _, in := range survivor.instances(t) {
			if in.ID == inst.ID && in.Status == "placed" && in.Placements >= 2 && !slices.Contains(stageNames(in), victim.name) {
				replaced = in
				return true
			}
		}
		return false
	})
	replacedAfter := time.Since(killed)
	t.Logf("MEASURE worker %s killed: failure detected after %s, instance re-placed on %v after %s (reason %q)",
		victim.name, detected.Round(time.Millisecond), stageNames(replaced), replacedAfter.Round(time.Millisecond), replaced.Reason)
	if len(replaced.Stages) != 2 || !strings.Contains(replaced.Reason, victim.name) {
		t.Fatalf("re-placed instance %+v", replaced)
	}
	if !strings.Contains(m1.output.String(), `"msg":"instance degraded"`) {
		t.Fatal("the leader did not record the instance as degraded before re-placing it")
	}
	// The failure spreads by gossip: every survivor's `exo cluster members` agrees soon.
	waitUntil(t, 10*time.Second, "survivor lists the killed worker as failed", func() bool {
		got := membersViaCLI(t, survivor)
		return got[victim.name] == "failed" && got["m1"] == "alive" && got[survivor.name] == "alive"
	})

	// SIGTERM is a graceful leave: the others see "left", not "failed". With one worker left
	// the instance (min_nodes 2) no longer fits: it stays degraded and says why.
	if rc := survivor.stop(t, 20*time.Second); rc != 0 {
		t.Fatalf("%s exit %d after SIGTERM", survivor.name, rc)
	}
	waitUntil(t, 10*time.Second, "graceful leave seen as left", func() bool { return m1.statuses(t)[survivor.name] == "left" })
	waitUntil(t, 10*time.Second, "instance degraded without enough workers", func() bool {
		for _, in := range m1.instances(t) {
			if in.ID == inst.ID && in.Status == "degraded" && strings.Contains(in.Reason, "cannot re-place") {
				return true
			}
		}
		return false
	})
}

// TestClusterFiveNodesLeaderFailover: three masters and two workers; kill -9 of the raft leader
// elects a new one within seconds, with the desired state intact and writable.
func TestClusterFiveNodesLeaderFailover(t *testing.T) {
	models := t.TempDir()
	writeModel(t, filepath.Join(models, "tiny.gguf"), 8, 1, 65536)
	common := []string{"--models-dir", models, "--node-memory", "40MiB"}
	m1 := startClusterNode(t, "m1", true, common...)
	masterJoin := append([]string{"--join", m1.gossip, "--token", clusterToken(t, m1, "master")}, common...)
	workerJoin := append([]string{"--roles", "worker,api", "--join", m1.gossip, "--token", clusterToken(t, m1, "worker")}, common...)
	t0 := time.Now()
	m2 := startClusterNode(t, "m2", true, masterJoin...)
	m3 := startClusterNode(t, "m3", true, masterJoin...)
	w4 := startClusterNode(t, "w4", true, workerJoin...)
	w5 := startClusterNode(t, "w5", true, workerJoin...)
	nodes := []*clusterNode{m1, m2, m3, w4, w5}
	want := map[string]string{"m1": "alive", "m2": "alive", "m3": "alive", "w4": "alive", "w5": "alive"}
	allSee(t, nodes, want, 30*time.Second)
	var cl clusterDoc
	waitUntil(t, 10*time.Second, "three raft voters", func() bool {
		return getJSON(t, m1.url("/api/v1/cluster"), &cl) == 200 && cl.Raft != nil && len(cl.Raft.Voters) == 3
	})
	t.Logf("MEASURE five nodes formed with 3 voters %s after the first join started", time.Since(t0).Round(time.Millisecond))
	for _, n := range nodes {
		if got := membersViaCLI(t, n); len(got) != 5 {
			t.Fatalf("exo cluster members on %s: %v", n.name, got)
		}
	}

	var first instanceDoc
	if code, body := clusterPost(t, w4.url("/api/v1/instances"), map[string]any{"model": "tiny", "min_nodes": 2, "context": 1024}, &first); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}

	if getJSON(t, w5.url("/api/v1/cluster"), &cl) != 200 || cl.Leader == nil {
		t.Fatalf("no leader known: %+v", cl)
	}
	oldLeader := cl.Leader
	var leader *clusterNode
	for _, n := range nodes {
		if n.name == oldLeader.Name {
			leader = n
		}
	}
	if leader == nil || !strings.HasPrefix(leader.name, "m") {
		t.Fatalf("leader %+v is not one of the masters", oldLeader)
	}
	var survivors []*clusterNode
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	killed := time.Now()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var newLeader string
	elected := waitUntil(t, 20*time.Second, "a new leader", func() bool {
		for _, n := range survivors {
			var c clusterDoc
			if strings.HasPrefix(n.name, "m") && getJSON(t, n.url("/api/v1/cluster"), &c) == 200 && c.Raft != nil && c.Raft.State == "Leader" {
				newLeader = n.name
				return true
			}
		}
		return false
	})
	t.Logf("MEASURE raft leader %s killed: %s elected after %s", leader.name, newLeader, elected.Round(time.Millisecond))

	// The desired state survived, and every survivor reads it.
	for _, n := range survivors {
		var found bool
		waitUntil(t, 10*time.Second, "instance listed on "+n.name, func() bool {
			found = slices.ContainsFunc(n.instances(t), func(in instanceDoc) bool { return in.ID == first.ID })
			return found
		})
	}
	// New instances can be created, through a worker's API.
	var second instanceDoc
	waitUntil(t, 10*time.Second, "create after failover", func() bool {
		code, _ := clusterPost(t, w5.url("/api/v1/instances"), map[string]any{"model": "tiny", "min_nodes": 1, "context": 512}, &second)
		return code == http.StatusCreated
	})
	t.Logf("MEASURE first write after the leader kill accepted %s after the kill", time.Since(killed).Round(time.Millisecond))
	code, out := runExo(t, cleanEnv(t), "instances", "list", "--json", "--api-addr", w4.addr)
	if code != 0 || !strings.Contains(out, first.ID) || !strings.Contains(out, second.ID) {
		t.Fatalf("instances list after failover: exit %d (want %s and %s)\n%s", code, first.ID, second.ID, out)
	}
}
