package e2e

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// groupOf names a stage's nodes, shard 0 first.
func groupOf(in liveInstance, stage int) []string {
	st := in.Stages[stage]
	out := []string{st.NodeName}
	for _, sh := range st.Shards {
		out = append(out, sh.NodeName)
	}
	return out
}

// TestTensorParallelSameTokensAsOneNode: instances placed with tensor_parallel 2 (every stage
// on a pair of exo processes, each holding half of every matrix) generate exactly the tokens
// of single-node `exo generate`: the F32 fixture as one stage on a pair, asked on a node
// outside the pair and on its shard 0; the Q8_0 fixture as a pipeline of two pairs. Every
// member reports its shard ready, and the nodes that hold only a shard fetched their layers
// from a peer.
func TestTensorParallelSameTokensAsOneNode(t *testing.T) {
	fx := filepath.Join(fixtures(t), "stories260K")
	nodes := joinAll(t, pnodeSpec{name: "n1", models: []string{fx}}, pnodeSpec{name: "n2"}, pnodeSpec{name: "n3"}, pnodeSpec{name: "n4"})
	n1 := nodes[0]
	f32, q8 := filepath.Join(fx, "stories260K-F32.gguf"), filepath.Join(fx, "stories260K-Q8_0.gguf")

	a := placeInstance(t, n1, map[string]any{"model": "stories260K-F32", "tensor_parallel": 2, "nodes": []string{"n2", "n3"}})
	if len(a.Stages) != 1 || len(a.Stages[0].Shards) != 1 || a.TensorParallel != 2 {
		t.Fatalf("placement of F32: %+v, want one stage on a pair", a.Stages)
	}
	pair := groupOf(a, 0)
	slices.Sort(pair)
	if !slices.Equal(pair, []string{"n2", "n3"}) {
		t.Fatalf("F32 placed on %v, want n2 and n3", pair)
	}
	if l := a.Live[0]; l.Shards != 2 || l.Shard != 0 || len(l.OtherShards) != 1 || l.OtherShards[0].Shard != 1 || l.OtherShards[0].Name != a.Stages[0].Shards[0].NodeName {
		t.Fatalf("live state of the pair: %+v", l)
	}
	var shard0 *pnode
	for _, n := range nodes {
		if n.name == a.Stages[0].NodeName {
			shard0 = n
		}
	}
	for _, api := range []*pnode{n1, shard0} {
		checkSameTokens(t, api, "stories260K-F32", f32, 1)
	}
	deleteInstance(t, n1, a.ID)

	b := placeInstance(t, n1, map[string]any{"model": "stories260K-Q8_0", "tensor_parallel": 2, "min_nodes": 4})
	if len(b.Stages) != 2 || len(b.Stages[0].Shards) != 1 || len(b.Stages[1].Shards) != 1 {
		t.Fatalf("placement of Q8_0: %+v, want two stages on pairs", b.Stages)
	}
	t.Logf("Q8_0 on %v then %v", groupOf(b, 0), groupOf(b, 1))
	for _, api := range []*pnode{n1, nodes[3]} {
		checkSameTokens(t, api, "stories260K-Q8_0", q8, 2)
	}
	// Shard files: a member that is not n1 runs from a stage file of its layers.
	for _, st := range b.Live {
		for _, s := range append([]liveStage{st}, st.OtherShards...) {
			if s.Name != "n1" && !strings.Contains(filepath.Base(s.File), ".layers-") {
				t.Errorf("%s (shard %d of %v) runs from %s, not a stage file", s.Name, s.Shard, s.Layers, s.File)
			}
		}
	}
	deleteInstance(t, n1, b.ID)
}

// TestTensorParallelShardKilled: killing the node that holds shard 1 of a stage during a
// streamed completion ends the stream with an error event, not a hang; the instance is
// re-placed on the nodes left and generates again.
func TestTensorParallelShardKilled(t *testing.T) {
	model := filepath.Join(fixtures(t), "synthetic", "llama-spm32k-e256")
	nodes := joinAll(t, pnodeSpec{name: "m1", roles: "master,api", models: []string{model}},
		pnodeSpec{name: "w1", models: []string{model}}, pnodeSpec{name: "w2", models: []string{model}}, pnodeSpec{name: "w3", models: []string{model}})
	m1 := nodes[0]
	in := placeInstance(t, m1, map[string]any{"model": "llama-spm32k-e256-Q8_0", "tensor_parallel": 2})
	if len(in.Stages) != 1 || len(in.Stages[0].Shards) != 1 {
		t.Fatalf("placement %+v, want one stage on a pair", in.Stages)
	}
	var victim *pnode
	for _, n := range nodes {
		if n.name == in.Stages[0].Shards[0].NodeName {
			victim = n
		}
	}
	errText, took, chunks := streamAndKill(t, m1, victim, "llama-spm32k-e256-Q8_0")
	if errText == "" || !strings.Contains(errText, victim.name) {
		t.Fatalf("want an error event naming %s after %d chunks, got %q", victim.name, chunks, errText)
	}
	t.Logf("MEASURE shard 1 (%s) killed after 20 chunks: error event %s later: %s", victim.name, took.Round(time.Millisecond), errText)
	// The leader re-places the instance once the node is declared failed, on the two workers
	// left.
	waitFor(t, 60*time.Second, "the instance re-placed without "+victim.name, func() bool {
		cur, ok := m1.instance(t, in.ID)
		if !ok || cur.Status != "placed" || len(cur.Stages) == 0 {
			return false
		}
		for _, st := range cur.Live {
			for _, s := range append([]liveStage{st}, st.OtherShards...) {
				if s.State != "ready" || s.Name == victim.name {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(1500 * time.Millisecond)
	if text, n := m1.completion(t, "llama-spm32k-e256-Q8_0", "Once upon a time", 16, false); n == 0 {
		t.Fatalf("no tokens after re-placement: %q", text)
	}
}
