package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"

	"github.com/exo-nix/exo/appliance/cluster/pki"
	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/config"
	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/syncbuf"
)

// writeModel writes a llama-shaped GGUF of zeros: layers blocks of layerKiB each.
func writeModel(t *testing.T, path string, layers, layerKiB int, tied bool) {
	t.Helper()
	w := gguf.NewWriter()
	w.AddKV("general.architecture", gguf.Str("llama"))
	w.AddKV("llama.block_count", gguf.U32(uint32(layers)))
	w.AddKV("llama.embedding_length", gguf.U32(64))
	w.AddKV("llama.attention.head_count", gguf.U32(8))
	w.AddKV("llama.attention.head_count_kv", gguf.U32(2))
	w.AddKV("llama.context_length", gguf.U32(4096))
	add := func(name string, dims ...uint64) {
		n := uint64(4)
		for _, d := range dims {
			n *= d
		}
		if err := w.AddTensor(name, ggml.F32, dims, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	add("token_embd.weight", 64, 32)
	for i := 0; i < layers; i++ {
		add("blk."+strconv.Itoa(i)+".attn_q.weight", 64, uint64(layerKiB)*4)
	}
	add("output_norm.weight", 64)
	if !tied {
		add("output.weight", 64, 16)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
}

func TestModelInfoFromGGUF(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, filepath.Join(dir, "untied.gguf"), 4, 2, false)
	writeModel(t, filepath.Join(dir, "tied", "model-q8.gguf"), 3, 1, true)
	m, err := modelInfo(filepath.Join(dir, "untied.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Layers() != 4 || m.LayerBytes[3] != 64*8*4 || m.InputBytes != 64*32*4 || m.OutputBytes != 64*4+64*16*4 {
		t.Fatalf("untied model figures %+v", m)
	}
	// 2 KV heads × (8 + 8) dims × 2 bytes (F16 cache).
	if m.KVBytesPerToken != 2*16*2 || m.ContextLength != 4096 || m.HiddenBytes != 64*4 {
		t.Fatalf("kv/context/hidden %+v", m)
	}
	tied, err := modelInfo(filepath.Join(dir, "tied", "model-q8.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if tied.OutputBytes != 64*4+64*32*4 {
		t.Fatalf("tied output should count the embeddings on the last stage: %d", tied.OutputBytes)
	}

	if p, err := resolveModel([]string{filepath.Join(dir, "none"), dir}, "untied"); err != nil || p != filepath.Join(dir, "untied.gguf") {
		t.Fatalf("resolve file: %q %v", p, err)
	}
	if p, err := resolveModel([]string{dir}, "tied"); err != nil || !strings.HasSuffix(p, "model-q8.gguf") {
		t.Fatalf("resolve directory: %q %v", p, err)
	}
	if _, err := resolveModel([]string{dir}, "missing"); !errors.Is(err, ErrModelNotFound) {
		t.Fatalf("missing model: %v", err)
	}
	for _, bad := range []string{"../untied", "a/b", "", ".."} {
		if _, err := resolveModel([]string{dir}, bad); err == nil {
			t.Errorf("model id %q accepted", bad)
		}
	}
	if got := listModels([]string{dir, filepath.Join(dir, "none")}); strings.Join(got, ",") != "tied,untied" {
		t.Fatalf("listModels %v", got)
	}
	os.WriteFile(filepath.Join(dir, "broken.gguf"), []byte("GGUF nope"), 0o644)
	if _, err := modelInfo(filepath.Join(dir, "broken.gguf")); err == nil {
		t.Fatal("broken GGUF accepted")
	}
}

func TestParseBytesAndMemInfo(t *testing.T) {
	for in, want := range map[string]uint64{"512MiB": 512 << 20, "8GiB": 8 << 30, "1.5G": 3 << 29, "1000": 1000, "2 GB": 2e9, "64K": 64 << 10} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1GiB", "GiB"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
	p := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(p, []byte("MemTotal:       16000 kB\nMemFree:  10 kB\nMemAvailable:    8000 kB\n"), 0o644)
	total, avail, err := memInfo(p)
	if err != nil || total != 16000*1024 || avail != 8000*1024 {
		t.Fatalf("memInfo %d %d %v", total, avail, err)
	}
	cfg := config.Config{}
	cfg.Node.Memory = "lots"
	if _, err := OptionsFromConfig(cfg, nil); !config.IsConfigError(err) || !strings.Contains(err.Error(), "node.memory") {
		t.Fatalf("bad node.memory: %v", err)
	}
}

type testNode struct {
	*Node
	opt  Options
	logs *syncbuf.Buffer
	errs chan error
}

func newTestNode(t *testing.T, name string, roles []string, dataDir, models string, join []string, token string) *testNode {
	t.Helper()
	logs := &syncbuf.Buffer{}
	opt := Options{
		Name: name, Roles: roles, DataDir: dataDir, GossipAddr: nettest.FreePort(t), RaftAddr: nettest.FreePort(t), APIAddr: nettest.FreePort(t),
		TransportAddr: nettest.FreePort(t), Join: join, Token: token, ModelDirs: []string{models}, Memory: 64 << 20,
		Log:            slog.New(slog.NewTextHandler(io.MultiWriter(logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
		MachineIDPaths: []string{filepath.Join(dataDir, "no-machine-id")},
	}
	tn := startTestNode(t, opt)
	tn.logs = logs
	return tn
}

func startTestNode(t *testing.T, opt Options) *testNode {
	t.Helper()
	n, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: n, opt: opt, logs: &syncbuf.Buffer{}, errs: make(chan error, 4)}
	if err := n.Start(context.Background(), func(err error) { tn.errs <- err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	return tn
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestNodesJoinThroughRedirectAndStateSurvivesRestart runs a master and two workers in one
// process: the second worker asks the first (which cannot sign) and is redirected to the
// master. The master's state survives a restart from its data directory.
func TestNodesJoinThroughRedirectAndStateSurvivesRestart(t *testing.T) {
	models := t.TempDir()
	writeModel(t, filepath.Join(models, "m.gguf"), 6, 256, false)
	mdir := t.TempDir()
	master := newTestNode(t, "master", config.AllRoles, mdir, models, nil, "")
	ctx := context.Background()
	eventually(t, 10*time.Second, "master ready", func() bool { ok, _ := master.MasterReady(); return ok })
	tok, err := master.CreateToken(ctx, time.Minute, "")
	if err != nil || tok.Role != config.RoleWorker {
		t.Fatalf("default token role %q: %v", tok.Role, err)
	}
	w1 := newTestNode(t, "w1", []string{config.RoleWorker}, t.TempDir(), models, []string{master.opt.GossipAddr}, tok.Token)
	eventually(t, 10*time.Second, "w1 joined", func() bool { ok, _ := w1.WorkerReady(); return ok })
	w2 := newTestNode(t, "w2", []string{config.RoleWorker, config.RoleAPI}, t.TempDir(), models, []string{w1.opt.GossipAddr}, tok.Token)
	eventually(t, 10*time.Second, "w2 joined via w1", func() bool { ok, _ := w2.WorkerReady(); return ok })
	if w2.credentials().CanSign() || !master.credentials().CanSign() {
		t.Fatal("signing material went to a worker, or the master lacks it")
	}
	eventually(t, 10*time.Second, "three members seen by all", func() bool {
		for _, n := range []*testNode{master, w1, w2} {
			if nodes, _ := n.Nodes(ctx); len(nodes) != 3 {
				return false
			}
		}
		return true
	})

	// A member gets no token above its own admission over the control RPC: w2 joined with a
	// worker token, so a master token from it would be an escalation.
	var ce *Error
	if _, err := w2.CreateToken(ctx, time.Minute, config.RoleMaster); !errors.As(err, &ce) || ce.Status != 403 {
		t.Fatalf("master token via a worker's RPC: %v", err)
	}
	if wt, err := w2.CreateToken(ctx, time.Minute, config.RoleAPI); err != nil || wt.Role != config.RoleAPI {
		t.Fatalf("api token via a worker's RPC: %+v %v", wt, err)
	}
	if _, err := master.CreateToken(ctx, time.Minute, "root"); !errors.As(err, &ce) || ce.Status != 400 {
		t.Fatalf("unknown token role: %v", err)
	}
	if !strings.Contains(master.logs.String(), "join token refused") {
		t.Fatal("the refused token request is not logged on the master")
	}
	// A worker's certificate passes the TLS handshake on a master's raft port, but raft itself
	// is for masters: the connection is closed at once instead of reaching raft.
	wc := w1.credentials()
	raw, err := tls.Dial("tcp", master.opt.RaftAddr, pki.ClientTLS(wc.CA, wc.TLS(), pki.ALPNRaft))
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("raft connection with a worker certificate: %v, want it closed", err)
	}
	raw.Close()
	eventually(t, 5*time.Second, "raft refusal logged", func() bool {
		return strings.Contains(master.logs.String(), "refused raft connection from a member without the master role")
	})

	// A worker's API call reaches the leader over the control RPC.
	in, err := w2.CreateInstance(ctx, InstanceRequest{Model: "m", MinNodes: 3, Context: 256})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Stages) != 3 || in.Status != state.StatusPlaced {
		t.Fatalf("instance %+v", in)
	}
	if _, err := w2.CreateInstance(ctx, InstanceRequest{Model: "nope"}); !errors.As(err, &ce) || ce.Status != 404 {
		t.Fatalf("unknown model: %v", err)
	}
	if _, err := w2.Placement(ctx, InstanceRequest{Model: "m", MinNodes: 2, Nodes: []string{"w1"}}); !errors.As(err, &ce) || ce.Status != 409 {
		t.Fatalf("two stages on one named node: %v", err)
	}
	res, err := w1.Rebalance(ctx, "")
	if err != nil || len(res.Moved) != 0 {
		t.Fatalf("rebalance of a fresh placement moved %v (%v)", res, err)
	}
	if err := w1.DeleteInstance(ctx, "i-000000000000"); !errors.As(err, &ce) || ce.Status != 404 {
		t.Fatalf("delete unknown: %v", err)
	}

	// Restart the master from its data directory: same ID, same cluster, instance kept.
	id := master.ID()
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := master.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	cancel()
	again := startTestNode(t, master.opt)
	if again.ID() != id {
		t.Fatalf("node ID changed across restart: %s -> %s", id, again.ID())
	}
	eventually(t, 10*time.Second, "restarted master leads", func() bool { ok, _ := again.MasterReady(); return ok })
	list, err := again.Instances(ctx)
	if err != nil || len(list) != 1 || list[0].ID != in.ID {
		t.Fatalf("instances after restart: %v %v", list, err)
	}
}

func TestStandaloneAndRefusedNodes(t *testing.T) {
	models := t.TempDir()
	// A worker without credentials, token or join address stands alone and says so.
	alone := newTestNode(t, "alone", []string{config.RoleWorker}, t.TempDir(), models, nil, "")
	if ok, detail := alone.WorkerReady(); !ok || !strings.Contains(detail, "not in a cluster") {
		t.Fatalf("stand-alone worker: %v %q", ok, detail)
	}
	if _, err := alone.Instances(context.Background()); !errors.Is(err, ErrNotInCluster) {
		t.Fatalf("cluster call on a stand-alone node: %v", err)
	}
	master := newTestNode(t, "master", config.AllRoles, t.TempDir(), models, nil, "")
	// A node without a token is refused and reports it as a fatal error.
	nt := newTestNode(t, "nt", []string{config.RoleWorker}, t.TempDir(), models, []string{master.opt.GossipAddr}, "")
	select {
	case err := <-nt.errs:
		if !strings.Contains(err.Error(), "refused") {
			t.Fatalf("refusal error %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tokenless join not refused")
	}
	if ok, _ := nt.WorkerReady(); ok {
		t.Fatal("refused node reports ready")
	}
	// A data directory of one cluster does not take another cluster's token.
	other := newTestNode(t, "other", config.AllRoles, t.TempDir(), models, nil, "")
	tok, err := other.CreateToken(context.Background(), time.Minute, config.RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = master.Stop(ctx)
	opt := master.opt
	opt.Token = tok.Token
	if _, err := New(opt); err == nil || !strings.Contains(err.Error(), "belongs to cluster") {
		t.Fatalf("foreign token on a member's data dir: %v", err)
	}
	opt.Token = "exo1.garbage"
	if _, err := New(opt); !config.IsConfigError(err) {
		t.Fatalf("malformed token: %v", err)
	}
}

// TestJoinedMasterNeverBootstrapsAlone: a master admitted by a join (found by --join or by
// mDNS) that restarts without raft state and without --join must not found a raft cluster of
// its own next to the real one.
func TestJoinedMasterNeverBootstrapsAlone(t *testing.T) {
	models := t.TempDir()
	ctx := context.Background()
	master := newTestNode(t, "m1", config.AllRoles, t.TempDir(), models, nil, "")
	eventually(t, 10*time.Second, "m1 ready", func() bool { ok, _ := master.MasterReady(); return ok })
	tok, err := master.CreateToken(ctx, time.Minute, config.RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	m2 := newTestNode(t, "m2", []string{config.RoleMaster}, t.TempDir(), models, []string{master.opt.GossipAddr}, tok.Token)
	eventually(t, 10*time.Second, "m2 follows m1", func() bool { ok, detail := m2.MasterReady(); return ok && strings.Contains(detail, "follower") })
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m2.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	// As if it had crashed before its raft log reached the disk.
	if err := os.RemoveAll(filepath.Join(m2.opt.DataDir, "raft")); err != nil {
		t.Fatal(err)
	}
	opt := m2.opt
	opt.Join, opt.Token = nil, ""
	again := startTestNode(t, opt)
	// It left gracefully, so nothing brings it back without --join; what matters is that it
	// waits for a leader instead of electing itself (a bootstrapped lone voter leads within
	// an election timeout).
	time.Sleep(3 * raftElection)
	if ok, detail := again.MasterReady(); ok || !strings.Contains(detail, "no leader") || strings.Contains(m2.logs.String(), "raft bootstrapped") {
		t.Fatalf("a joined master restarted without raft state: ready=%v %q; it must not found a raft cluster of its own", ok, detail)
	}
	if ok, _ := master.MasterReady(); !ok {
		t.Fatal("m1 lost its leadership")
	}
	// Without --join, and without mDNS to find one, a token alone is a configuration error.
	lost := newTestNode(t, "lost", []string{config.RoleWorker}, t.TempDir(), models, nil, tok.Token)
	select {
	case err := <-lost.errs:
		if !config.IsConfigError(err) || !strings.Contains(err.Error(), "--discovery mdns") {
			t.Fatalf("token without a join address: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a token without --join or discovery was not reported")
	}
	cfg := config.Config{}
	cfg.Cluster.Discovery = "mdns"
	if o, err := OptionsFromConfig(cfg, nil); err != nil || o.Discovery != "mdns" {
		t.Fatalf("cluster.discovery not passed on: %q %v", o.Discovery, err)
	}
}
