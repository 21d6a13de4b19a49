package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/netstack/nettest"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// reusedTokens sums the prompt positions the hosts' stages took from kept sequences.
func (c *testCluster) reusedTokens() map[string]uint64 {
	out := map[string]uint64{}
	for name, h := range c.hosts {
		for _, st := range h.Status() {
			out[name] += st.ReusedTokens
		}
	}
	return out
}

// A conversation's next turn reuses what the stages kept of the previous one, on every stage,
// and generates exactly what one node generates for the whole prompt; a turn that branches off
// inside a kept sequence reuses the common start; a stage that lost its kept sequences makes
// the driver run the whole prompt again, with the same result. Over a 3-stage pipeline and a
// tensor-parallel pair (where the other shard copies and frees as shard 0 does).
func TestPipelineReusesKeptPromptStarts(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	m := openWhole(t, path)
	for _, tc := range []struct {
		name     string
		split    [][2]int
		perStage int
	}{
		{"3-stages", [][2]int{{0, 1}, {1, 4}, {4, 5}}, 1},
		{"pair", [][2]int{{0, 5}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newGroupCluster(t, path, tc.split, tc.perStage, wire.F32)
			stageNodes := []string{}
			for _, st := range c.inst.Stages {
				stageNodes = append(stageNodes, st.Node)
			}
			// wantReuse is what every stage reuses; -1: the last stage reuses nothing (the
			// others may have copied before it failed the first attempt).
			check := func(prompt []int32, wantReuse int) *model.Generation {
				t.Helper()
				before := c.reusedTokens()
				req := model.GenerateRequest{Prompt: prompt, MaxTokens: 24}
				want, err := m.Generate(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.generate(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got.Tokens, want.Tokens) {
					t.Fatalf("prompt of %d tokens: pipeline %v, one node %v", len(prompt), got.Tokens, want.Tokens)
				}
				after := c.reusedTokens()
				for i, n := range stageNodes {
					if wantReuse < 0 && i < len(stageNodes)-1 {
						continue
					}
					if d := after[n] - before[n]; d != uint64(max(wantReuse, 0)) {
						t.Errorf("prompt of %d tokens: %s reused %d positions, want %d", len(prompt), n, d, wantReuse)
					}
				}
				return got
			}
			p1 := m.Tokenizer.Encode("Once upon a time, there was a little girl named Lily. She loved", true, false)
			g1 := check(p1, 0)
			// The next turn: the whole first exchange and more. The stages hold the prompt and
			// every sampled token but the last.
			p2 := append(append(slices.Clone(p1), g1.Tokens...), m.Tokenizer.Encode(" One day, she", false, false)...)
			g2 := check(p2, len(p1)+len(g1.Tokens)-1)
			// A branch off the second turn's prompt: only the common start is reused.
			p3 := append(slices.Clone(p2[:len(p1)+3]), m.Tokenizer.Encode(" and the sun", false, false)...)
			check(p3, len(p1)+3)
			// A stage that lost what it kept (evicted, or loaded again): the whole prompt runs.
			p4 := append(append(slices.Clone(p2), g2.Tokens...), m.Tokenizer.Encode(" The end.", false, false)...)
			last := c.hosts[stageNodes[len(stageNodes)-1]]
			last.mu.Lock()
			for _, sl := range last.slots {
				for key := range sl.kept {
					last.dropKept(sl, key)
				}
			}
			last.mu.Unlock()
			check(p4, -1)
			c.idleEventually(5 * time.Second)
			for _, n := range stageNodes {
				st := c.hosts[n].Status()[0]
				if st.Kept == 0 || st.Kept > maxKept {
					t.Errorf("%s keeps %d sequences", n, st.Kept)
				}
				// The other shard holds a copy of each kept sequence, and nothing else.
				if tc.perStage > 1 {
					other := c.hosts["node1"]
					if !nettest.WaitFor(5*time.Second, func() bool { return other.Status()[0].Active == st.Kept }) {
						t.Errorf("shard 1 holds %d sequences, shard 0 keeps %d", other.Status()[0].Active, st.Kept)
					}
				}
			}
			// Requests with room for the whole context are kept at their length, so that one
			// does not take a stage's whole budget (one context).
			for i, p := range []string{"The cat sat on the mat.", "A boy had a red ball.", "It was a sunny day."} {
				req := model.GenerateRequest{Prompt: m.Tokenizer.Encode(p, true, false), MaxTokens: 8, CtxLen: m.Config.ContextLength}
				if _, err := c.generate(context.Background(), req); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
			}
			for _, n := range stageNodes {
				if st := c.hosts[n].Status()[0]; st.Kept < 3 {
					t.Errorf("%s keeps %d sequences after three full-context requests", n, st.Kept)
				}
			}
			t.Logf("reused positions per node: %v", fmt.Sprint(c.reusedTokens()))
		})
	}
}

// A stage that refuses a request's reuse (here: more positions than the prompt) cancels the
// driver's stream with its reason, also when the stage has already read a prompt frame ahead:
// the input pump used to close the stream as the request ended, so the cancellation turned
// into a bare reset and the driver never learnt why (nor that the prompt should run whole).
func TestStageRefusalReachesTheDriverStream(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newTestCluster(t, path, [][2]int{{0, 5}}, wire.F32)
	m := openWhole(t, path)
	gen, err := c.driver.Acquire(context.Background(), c.inst.Model)
	if err != nil {
		t.Fatal(err)
	}
	g := gen.(*generator)
	defer g.Release()
	prompt := m.Tokenizer.Encode("Once upon a time, there was a little girl", true, false)
	params := sampler.Params{}
	dn := c.nets["driver"]
	for i := range 200 {
		id := uint64(1000 + 2*i + 1)
		ret, err := dn.OpenData(context.Background(), "node0", c.addrs["node0"], false)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(ret, id, &openMsg{Op: opReturn, Proto: protoVersion, Instance: c.inst.ID, Model: c.inst.Model, Request: id, Sampler: &params}); err != nil {
			t.Fatal(err)
		}
		ph := wire.Header{Kind: wire.KindTokens, DType: wire.I32, Request: id, Shape: []uint32{uint32(len(prompt))}}
		if err := ret.WriteFrame(&ph, wire.I32Bytes(prompt)); err != nil {
			t.Fatal(err)
		}
		fwd, err := dn.OpenData(context.Background(), "node0", c.addrs["node0"], false)
		if err != nil {
			t.Fatal(err)
		}
		open := openMsg{Op: opForward, Proto: protoVersion, Instance: c.inst.ID, Model: c.inst.Model, Request: id, Stages: g.stages,
			CtxLen: 64, Prompt: len(prompt), DType: wire.F32.String(), Reuse: 77, ReuseLen: len(prompt) + 1}
		if err := writeJSON(fwd, id, &open); err != nil {
			t.Fatal(err)
		}
		// The stage may have refused and stopped reading already.
		h := wire.Header{Kind: wire.KindTokens, DType: wire.I32, Instance: c.inst.ID, Request: id, Positions: positions(0, len(prompt)), Shape: []uint32{uint32(len(prompt))}}
		if err := fwd.WriteFrame(&h, wire.I32Bytes(prompt)); err != nil && !transport.IsUnexplained(err) {
			t.Fatal(err)
		}
		var ce *transport.CancelledError
		if _, err := fwd.ReadFrame(&h, nil); !errors.As(err, &ce) || ce.Unexplained || !strings.Contains(ce.Reason, "reuse of") {
			t.Fatalf("request %d: the forward stream ended with %v, want the stage's refusal of the reuse", i, err)
		}
		fwd.Cancel("done")
		ret.Cancel("done")
	}
	c.idleEventually(5 * time.Second)
}
