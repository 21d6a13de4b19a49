package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/serving"
	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/appliance/testfixtures"
	"github.com/exo-nix/exo/netstack/nettest"
	"github.com/exo-nix/exo/netstack/wire"
)

// cluster is an in-process pipeline: a stage host per node on loopback and a driver node.
type testCluster struct {
	t      *testing.T
	ca     *nettest.CA
	nets   map[string]*Net
	hosts  map[string]*Host
	driver *Driver
	inst   state.Instance
	mu     sync.Mutex // guards addrs and hosts while a test restarts a node
	addrs  map[string]string
}

func storiesPath(t *testing.T, file string) string {
	return testfixtures.Path(t, "stories260K", file)
}

// newTestCluster starts one host per stage of layers (a list of [first,last) ranges) serving
// the model file, and a driver on its own endpoint.
func newTestCluster(t *testing.T, path string, layers [][2]int, dt wire.DType) *testCluster {
	t.Helper()
	return newGroupCluster(t, path, layers, 1, dt)
}

// newGroupCluster runs every stage on a group of perStage nodes (tensor parallelism when
// perStage > 1): stage i on node<i*perStage> and its shards on the next perStage-1 nodes.
func newGroupCluster(t *testing.T, path string, layers [][2]int, perStage int, dt wire.DType) *testCluster {
	t.Helper()
	c := &testCluster{t: t, ca: nettest.NewCA(t, "test-cluster"), nets: map[string]*Net{}, hosts: map[string]*Host{}, addrs: map[string]string{}}
	id := strings.TrimSuffix(filepath.Base(path), ".gguf")
	c.inst = state.Instance{ID: "i-test", Model: id, Status: state.StatusPlaced}
	if perStage > 1 {
		c.inst.TensorParallel = perStage
	}
	for i, l := range layers {
		st := state.Stage{Layers: l}
		for k := range perStage {
			name := fmt.Sprintf("node%d", i*perStage+k)
			c.startHost(name, path)
			if k == 0 {
				st.Node, st.NodeName = name, name
			} else {
				st.Shards = append(st.Shards, state.Shard{Node: name, NodeName: name})
			}
		}
		c.inst.Stages = append(c.inst.Stages, st)
	}
	for _, h := range c.hosts {
		h.Sync([]state.Instance{c.inst})
	}
	dn := c.newNet("driver", "")
	c.driver = NewDriver(DriverConfig{NodeID: "driver", Net: dn, DType: dt, PromptChunk: 3,
		Placement: func() ([]state.Instance, map[string]string) {
			c.mu.Lock()
			defer c.mu.Unlock()
			return []state.Instance{c.inst}, maps.Clone(c.addrs)
		},
		LocalFile: func(string) (string, bool) { return path, true }})
	return c
}

// startHost starts (or restarts) node name's stage host on a new endpoint.
func (c *testCluster) startHost(name, path string) *Host {
	n := c.newNet(name, "127.0.0.1:0")
	h := NewHost(HostConfig{NodeID: name, NodeName: name, Net: n, LoadWait: 10 * time.Second,
		Resolve: func(context.Context, string, int, int, func(store.Progress)) (string, error) { return path, nil },
		Addr:    c.addrOf})
	n.Handle(h.Handle)
	c.t.Cleanup(h.Close)
	c.mu.Lock()
	c.hosts[name] = h
	c.addrs[name] = n.Addr().String()
	c.mu.Unlock()
	return h
}

func (c *testCluster) addrOf(node string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[node]
}

func (c *testCluster) newNet(name, listen string) *Net {
	c.t.Helper()
	n, err := NewNet(NetConfig{NodeID: name, Listen: listen, ServerTLS: c.ca.ServerTLS(c.t, name), ClientTLS: c.ca.ClientTLS(c.t, name)})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { n.Close() })
	c.nets[name] = n
	return n
}

// driveFrom moves the driver onto a stage's node, as an API node that also hosts a stage: its
// streams to that stage stay in the process.
func (c *testCluster) driveFrom(name string) {
	d := c.driver.cfg
	d.NodeID, d.Net = name, c.nets[name]
	c.driver = NewDriver(d)
}

func (c *testCluster) generate(ctx context.Context, req model.GenerateRequest) (*model.Generation, error) {
	g, err := c.driver.Acquire(ctx, c.inst.Model)
	if err != nil {
		return nil, err
	}
	if g == nil {
		c.t.Fatal("no pipeline for the instance")
	}
	defer g.Release()
	return g.Generate(ctx, req)
}

// activeEventually waits until no stage holds a request's sequence.
func (c *testCluster) idleEventually(within time.Duration) {
	c.t.Helper()
	if !nettest.WaitFor(within, func() bool {
		for _, h := range c.hosts {
			if h.Active() != 0 {
				return false
			}
		}
		return true
	}) {
		for name, h := range c.hosts {
			c.t.Errorf("%s still holds %d sequences", name, h.Active())
		}
	}
}

// openWhole opens the whole model on this node, closed when the test ends.
func openWhole(t *testing.T, path string) *model.Model {
	t.Helper()
	m, err := model.Open(path, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func singleNode(t *testing.T, path string, req model.GenerateRequest) *model.Generation {
	t.Helper()
	m := openWhole(t, path)
	g, err := m.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestPipelineMatchesSingleNode(t *testing.T) {
	for _, file := range []string{"stories260K-F32.gguf", "stories260K-Q8_0.gguf"} {
		path := storiesPath(t, file)
		for _, tc := range []struct {
			split [][2]int
			// The node the driver shares (the last stage's, the first's, the only one's), or
			// "" for an API node outside the pipeline.
			driver string
		}{
			{[][2]int{{0, 3}, {3, 5}}, "node1"},
			{[][2]int{{0, 1}, {1, 4}, {4, 5}}, "node0"},
			{[][2]int{{0, 2}, {2, 4}, {4, 5}}, ""},
			{[][2]int{{0, 5}}, ""},
		} {
			split := tc.split
			t.Run(fmt.Sprintf("%s/%d-stages-driver-%s", file, len(split), cmp.Or(tc.driver, "apart")), func(t *testing.T) {
				c := newTestCluster(t, path, split, wire.F32)
				if tc.driver != "" {
					c.driveFrom(tc.driver)
				}
				m := openWhole(t, path)
				prompts := []string{"Once upon a time", "Lily and Tom went to the park. They saw a big dog", "The sun"}
				var (
					wg   sync.WaitGroup
					ring atomic.Uint64 // decode tokens that went round the ring
				)
				for i, p := range prompts {
					req := model.GenerateRequest{Prompt: m.Tokenizer.Encode(p, true, false), MaxTokens: 40,
						Sampler: sampler.Params{Logprobs: i == 0, TopLogprobs: 2}}
					want, err := m.Generate(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					// The requests run at the same time: every stage holds three sequences.
					wg.Add(1)
					go func() {
						defer wg.Done()
						var streamed strings.Builder
						req.OnText = func(s string) error { streamed.WriteString(s); return nil }
						got, err := c.generate(context.Background(), req)
						if err != nil {
							t.Error(err)
							return
						}
						if !slices.Equal(got.Tokens, want.Tokens) || got.Text != want.Text || got.FinishReason != want.FinishReason {
							t.Errorf("prompt %q:\npipeline %v %q (%s)\none node %v %q (%s)", p, got.Tokens, got.Text, got.FinishReason, want.Tokens, want.Text, want.FinishReason)
						}
						// Every sampled token but the last went on round the ring; an
						// end-of-generation token is sampled but not in Tokens.
						n := len(got.Tokens) - 1
						if got.FinishReason == model.FinishStop {
							n++
						}
						ring.Add(uint64(n))
						if streamed.String() != got.Text {
							t.Errorf("streamed %q, result %q", streamed.String(), got.Text)
						}
						if req.Sampler.Logprobs {
							for k := range want.Logprobs {
								if got.Logprobs[k].Logprob != want.Logprobs[k].Logprob || !slices.Equal(got.Logprobs[k].Top, want.Logprobs[k].Top) {
									t.Errorf("token %d: logprobs %+v, one node %+v", k, got.Logprobs[k], want.Logprobs[k])
								}
							}
						}
					}()
				}
				wg.Wait()
				c.idleEventually(5 * time.Second)
				// The first stage took every decode token from the ring (the last stage, or
				// itself as the only stage), none from the driver.
				if st := c.hosts["node0"].Status(); len(st) != 1 || st[0].RingTokens != ring.Load() {
					t.Errorf("first stage received %+v tokens round the ring, want %d", st, ring.Load())
				}
				for name, h := range c.hosts {
					for _, st := range h.Status() {
						if st.Batching != nil {
							t.Logf("MEASURE %s stage %v: %+v", name, st.Layers, *st.Batching)
						}
					}
				}
			})
		}
	}
}

func TestPipelineStopSequenceAndSampling(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newTestCluster(t, path, [][2]int{{0, 2}, {2, 5}}, wire.F32)
	m := openWhole(t, path)
	prompt := m.Tokenizer.Encode("Once upon a time", true, false)
	for _, req := range []model.GenerateRequest{
		{Prompt: prompt, MaxTokens: 64, Stop: []string{"park", "."}},
		{Prompt: prompt, MaxTokens: 30, Sampler: sampler.Params{Temperature: 0.9, TopK: 20, TopP: 0.9, Seed: 7, RepeatPenalty: 1.2, RepeatLastN: 16}},
	} {
		want := singleNode(t, path, req)
		got, err := c.generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Tokens, want.Tokens) || got.Text != want.Text || got.FinishReason != want.FinishReason {
			t.Errorf("stop %v temp %v:\npipeline %q (%s)\none node %q (%s)", req.Stop, req.Sampler.Temperature, got.Text, got.FinishReason, want.Text, want.FinishReason)
		}
	}
}

// TestPipelineWireEncodings measures what F16 and Q8_0 activations do to greedy tokens.
func TestPipelineWireEncodings(t *testing.T) {
	for _, tc := range []struct {
		path  string
		split [][2]int
		// least is how many leading greedy tokens must match F32's: the encodings perturb
		// hidden states by about 2e-4 (F16) and 1e-2 (Q8_0) of their RMS, which may flip a
		// near-tie much later but not at once.
		least int
	}{
		{storiesPath(t, "stories260K-F32.gguf"), [][2]int{{0, 1}, {1, 3}, {3, 5}}, 8},
		{testfixtures.Path(t, "synthetic", "llama-spm32k-e256", "llama-spm32k-e256-Q8_0.gguf"), [][2]int{{0, 1}, {1, 2}, {2, 4}}, 1},
	} {
		m, err := model.Open(tc.path, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		req := model.GenerateRequest{Prompt: m.Tokenizer.Encode("Once upon a time", true, false), MaxTokens: 64}
		m.Close()
		want := singleNode(t, tc.path, req)
		for _, dt := range []wire.DType{wire.F16, wire.Q8_0} {
			c := newTestCluster(t, tc.path, tc.split, dt)
			got, err := c.generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			same := 0
			for same < len(got.Tokens) && same < len(want.Tokens) && got.Tokens[same] == want.Tokens[same] {
				same++
			}
			t.Logf("MEASURE %s: %s activations over 2 hops: the first %d of %d greedy tokens equal F32's", filepath.Base(tc.path), dt, same, len(want.Tokens))
			if same < tc.least {
				t.Errorf("%s activations diverge after %d tokens: %q vs %q", dt, same, got.Text, want.Text)
			}
		}
	}
}

func TestPipelineStageDiesMidRequest(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newTestCluster(t, path, [][2]int{{0, 1}, {1, 4}, {4, 5}}, wire.F32)
	m := openWhole(t, path)
	n := 0
	req := model.GenerateRequest{Prompt: m.Tokenizer.Encode("Once upon a time", true, false), MaxTokens: 200, IgnoreEOS: true,
		OnToken: func(sampler.Result) error {
			if n++; n == 5 {
				c.nets["node1"].Close() // the middle stage's node goes away
			}
			return nil
		}}
	start := time.Now()
	_, err := c.generate(context.Background(), req)
	took := time.Since(start)
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "node1") {
		t.Fatalf("want a pipeline error naming the middle stage, got %v", err)
	}
	t.Logf("MEASURE middle stage closed: request failed after %s: %v", took.Round(time.Millisecond), err)
	if took > 15*time.Second {
		t.Errorf("the failure took %s to reach the driver", took)
	}
	for _, name := range []string{"node0", "node2"} {
		h := c.hosts[name]
		if !nettest.WaitFor(15*time.Second, func() bool { return h.Active() == 0 }) {
			t.Errorf("%s still holds %d sequences after the failure", name, h.Active())
		}
	}
}

// A stage that refuses a prompt stops reading it while the driver may still be sending the
// rest: the driver's writes then fail with a bare reset, and the request must still fail with
// the stage's own reason (sent before it stopped reading), not the reset.
func TestPipelineNamesWhyAStageRefusedThePrompt(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newTestCluster(t, path, [][2]int{{0, 5}}, wire.F32)
	m := openWhole(t, path)
	// The bad token comes first, in the first of the prompt's many chunks (PromptChunk 3).
	prompt := []int32{int32(m.Config.NVocab)}
	for len(prompt) < 480 {
		prompt = append(prompt, m.Tokenizer.Encode(" once upon a time", false, false)...)
	}
	for i := range 100 {
		_, err := c.generate(context.Background(), model.GenerateRequest{Prompt: prompt, MaxTokens: 4})
		var pe *Error
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "outside the vocabulary") {
			t.Fatalf("request %d: want the stage's refusal of token %d, got %v", i, m.Config.NVocab, err)
		}
	}
	c.idleEventually(5 * time.Second)
}

func TestPipelineClientCancel(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newTestCluster(t, path, [][2]int{{0, 2}, {2, 5}}, wire.F32)
	m := openWhole(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	req := model.GenerateRequest{Prompt: m.Tokenizer.Encode("Once upon a time", true, false), MaxTokens: 400, IgnoreEOS: true,
		OnToken: func(sampler.Result) error {
			if n++; n == 3 {
				cancel()
			}
			return nil
		}}
	if _, err := c.generate(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	c.idleEventually(5 * time.Second)
}

func TestPipelineRefusesUnknownInstance(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newTestCluster(t, path, [][2]int{{0, 2}, {2, 5}}, wire.F32)
	// The placement moved layer 2 to the second node, which the hosts have not seen.
	c.inst.Stages[0].Layers, c.inst.Stages[1].Layers = [2]int{0, 3}, [2]int{3, 5}
	m := openWhole(t, path)
	_, err := c.generate(context.Background(), model.GenerateRequest{Prompt: m.Tokenizer.Encode("Hi", true, false), MaxTokens: 4})
	if err == nil || !strings.Contains(err.Error(), "placement changed") {
		t.Fatalf("want a placement mismatch, got %v", err)
	}
}

// A node of another pipeline protocol version is refused with an error that says so, rather
// than misread.
func TestPipelineRefusesOtherProtocolVersion(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newTestCluster(t, path, [][2]int{{0, 5}}, wire.F32)
	for _, op := range []string{opForward, opStatus} {
		s, err := c.nets["driver"].OpenData(context.Background(), "node0", c.addrs["node0"], false)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(s, 1, openMsg{Op: op, Proto: protoVersion - 1, Request: 1}); err != nil {
			t.Fatal(err)
		}
		var h wire.Header
		_, err = s.ReadFrame(&h, nil)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("speaks pipeline protocol %d, the peer %d", protoVersion, protoVersion-1)) {
			t.Errorf("%s of an older protocol: got %v, want a refusal naming both versions", op, err)
		}
	}
}

// TestPipelineFromStageFiles: every node runs from a stage-only file holding just its layers
// (as a stage fetch writes it), the middle one with neither embeddings nor output.
func TestPipelineFromStageFiles(t *testing.T) {
	path := storiesPath(t, "stories260K-Q8_0.gguf")
	src, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	split := [][2]int{{0, 2}, {2, 3}, {3, 5}}
	files := map[[2]int]string{}
	for _, l := range split {
		files[l] = filepath.Join(dir, store.StageFileName("stories260K-Q8_0", l[0], l[1]))
		if err := gguf.ExtractFile(src, l[0], l[1], files[l]); err != nil {
			t.Fatal(err)
		}
	}
	c := newTestCluster(t, path, split, wire.F32)
	for name, h := range c.hosts {
		h.Close()
		delete(c.hosts, name)
	}
	for i, l := range split {
		name := fmt.Sprintf("node%d", i)
		h := NewHost(HostConfig{NodeID: name, NodeName: name, Net: c.nets[name],
			Resolve: func(context.Context, string, int, int, func(store.Progress)) (string, error) { return files[l], nil }})
		c.nets[name].Handle(h.Handle)
		t.Cleanup(h.Close)
		h.Sync([]state.Instance{c.inst})
		c.hosts[name] = h
	}
	// The driver holds no file of the model: it reads the tokenizer from the first stage's
	// header, as an API-only node does.
	c.driver = NewDriver(DriverConfig{NodeID: "driver", Net: c.nets["driver"],
		Placement: func() ([]state.Instance, map[string]string) { return []state.Instance{c.inst}, c.addrs },
		LocalFile: func(string) (string, bool) { return "", false }})
	m := openWhole(t, path)
	req := model.GenerateRequest{Prompt: m.Tokenizer.Encode("Once upon a time", true, false), MaxTokens: 40}
	want := singleNode(t, path, req)
	got, err := c.generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Tokens, want.Tokens) {
		t.Fatalf("from stage files %q, one node %q", got.Text, want.Text)
	}
	for _, st := range c.hosts["node1"].Status() {
		if st.State != StageReady || st.File != files[[2]int{2, 3}] {
			t.Errorf("middle stage status %+v", st)
		}
	}
}

// TestModelSharingOverTransport: a peer lists and reads another node's models over the tensor
// transport with the store's peer client, authenticated by the cluster certificates.
func TestModelSharingOverTransport(t *testing.T) {
	ca := nettest.NewCA(t, "share")
	newNet := func(name, listen string) *Net {
		n, err := NewNet(NetConfig{Listen: listen, ServerTLS: ca.ServerTLS(t, name), ClientTLS: ca.ClientTLS(t, name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a, b := newNet("a", "127.0.0.1:0"), newNet("b", "")
	st := store.New(store.Options{Dirs: []string{testfixtures.Path(t, "stories260K") + ":ro"}})
	defer st.Close()
	a.ServeModels(st.PeerHandler())
	client := store.NewPeerClientDialer(b.DialModels)
	ctx := context.Background()
	list, err := client.List(ctx, a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	if !slices.Contains(ids, "stories260K-Q8_0") {
		t.Fatalf("peer lists %v", ids)
	}
	src := client.Source(a.Addr().String(), "stories260K-Q8_0")
	rem, err := src.Stat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(storiesPath(t, "stories260K-Q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if rem.Size != int64(len(want)) {
		t.Fatalf("size %d, want %d", rem.Size, len(want))
	}
	rc, err := src.ReadRange(ctx, 1000, 5000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want[1000:6000]) {
		t.Fatalf("range read: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, want[1000:6000]))
	}
}

func TestDriverBoundsRequestsInFlight(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newTestCluster(t, path, [][2]int{{0, 2}, {2, 5}}, wire.F32)
	c.driver.cfg.MaxInFlight = 1
	g1, err := c.driver.Acquire(context.Background(), c.inst.Model)
	if err != nil || g1 == nil {
		t.Fatal(g1, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.driver.Acquire(ctx, c.inst.Model); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second request while one runs: %v, want to wait", err)
	}
	g1.Release()
	g1.Release() // releasing twice frees one slot
	g2, err := c.driver.Acquire(context.Background(), c.inst.Model)
	if err != nil {
		t.Fatal(err)
	}
	g2.Release()
	// A model without an instance is not the driver's.
	if g, err := c.driver.Acquire(context.Background(), "other-model"); g != nil || err != nil {
		t.Fatalf("unplaced model: %v %v", g, err)
	}
	// An instance that lost a node is unavailable, not silently served elsewhere.
	c.inst.Status, c.inst.Reason = state.StatusDegraded, "lost node node1 failed"
	if _, err := c.driver.Acquire(context.Background(), c.inst.Model); !errors.Is(err, serving.ErrUnavailable) || !strings.Contains(err.Error(), "lost node") {
		t.Fatalf("degraded instance: %v", err)
	}
}
