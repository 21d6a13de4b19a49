package placement

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestTensorParallelGroupsHoldWhatNoNodeHolds(t *testing.T) {
	// 16 × 100 MiB layers, 50 MiB embeddings and head: 1700 MiB of weights, no node holds
	// them; each of a pair holds half the layers and head (825 MiB with the embeddings).
	nodes := []Node{node("a", 1000, 20), node("b", 1000, 20)}
	m := model(16, 100, 50, 0, 0)
	if pp, err := Place(nodes, nil, Request{Model: m}); err != nil || len(pp.Stages) != 2 {
		t.Fatalf("as a pipeline the model needs both nodes: %v %v", pp, err)
	}
	p, err := Place(nodes, nil, Request{Model: m, TensorParallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Stages) != 1 {
		t.Fatalf("want one stage on the pair, got %v", layersOf(p))
	}
	st := p.Stages[0]
	if st.Node != "a" || len(st.Shards) != 1 || st.Shards[0].Node != "b" || st.Shards[0].Name != "name-b" || st.Start != 0 || st.End != 16 {
		t.Fatalf("stage %+v", st)
	}
	wantW := uint64(16*50*MiB + 50*MiB + 25*MiB)
	if st.WeightBytes != wantW || st.MemoryBytes != wantW {
		t.Fatalf("per-member weights %d memory %d, want %d", st.WeightBytes, st.MemoryBytes, wantW)
	}
	if p.MemoryBytes != 2*st.MemoryBytes {
		t.Fatalf("plan memory %d, want both members' %d", p.MemoryBytes, 2*st.MemoryBytes)
	}
	// Default links: 65 swaps of 8 KiB.
	hop := DefaultLink.Latency.Seconds() + float64(4096*4/2)/DefaultLink.Bandwidth
	if want := 1000 * hop * 65; math.Abs(st.SwapMs-want) > 1e-9 {
		t.Fatalf("swap ms %v, want %v", st.SwapMs, want)
	}
	stream := 1000 * float64(16*50*MiB+25*MiB) / 20e9
	if math.Abs(st.ComputeMs-(stream+st.SwapMs)) > 1e-9 || math.Abs(p.TokenMs-st.ComputeMs) > 1e-9 {
		t.Fatalf("compute %v token %v, want %v", st.ComputeMs, p.TokenMs, stream+st.SwapMs)
	}
	// Evaluating the same placement predicts the same.
	q, err := EvaluateGroups([][]Node{{nodes[0], nodes[1]}}, nil, Request{Model: m, TensorParallel: 2}, [][2]int{{0, 16}})
	if err != nil {
		t.Fatal(err)
	}
	if q.TokenMs != p.TokenMs || q.MemoryBytes != p.MemoryBytes || q.Stages[0].Shards[0] != st.Shards[0] {
		t.Fatalf("EvaluateGroups %+v, Place %+v", q, p)
	}
}

func TestTensorParallelKVCacheIsWholeOnEachMember(t *testing.T) {
	// 16 × 10 MiB layers and a KV cache of 32 MiB per layer at context 4096: a member of a
	// pair needs 80 + 512 MiB, which 500 MiB nodes do not have; 700 MiB ones do.
	m := model(16, 10, 0, 8192, 4096)
	_, err := Place([]Node{node("a", 500, 20), node("b", 500, 20)}, nil, Request{Model: m, Context: 4096, TensorParallel: 2})
	if !IsUnsatisfiable(err) {
		t.Fatalf("want an unsatisfiable placement, got %v", err)
	}
	p, err := Place([]Node{node("a", 700, 20), node("b", 700, 20)}, nil, Request{Model: m, Context: 4096, TensorParallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Stages[0].KVBytes, uint64(512*MiB); got != want {
		t.Fatalf("KV bytes %d, want %d", got, want)
	}
}

func TestTensorParallelPairsByLinks(t *testing.T) {
	// a-c and b-d are joined by fast links, the other pairs by slow ones: the groups follow
	// the links, not the node order, and with min_nodes 4 both groups are used.
	fast := Link{Latency: 10 * time.Microsecond, Bandwidth: 10e9}
	slow := Link{Latency: 5 * time.Millisecond, Bandwidth: 100e6}
	ids := []string{"a", "b", "c", "d"}
	links := Links{}
	for _, x := range ids {
		links[x] = map[string]Link{}
		for _, y := range ids {
			if x != y {
				links[x][y] = slow
			}
		}
	}
	for _, pr := range [][2]string{{"a", "c"}, {"b", "d"}} {
		links[pr[0]][pr[1]], links[pr[1]][pr[0]] = fast, fast
	}
	nodes := []Node{node("a", 4096, 30), node("b", 4096, 20), node("c", 4096, 25), node("d", 4096, 20)}
	p, err := Place(nodes, links, Request{Model: model(16, 10, 10, 0, 0), TensorParallel: 2, MinNodes: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Stages) != 2 {
		t.Fatalf("want two stages, got %v", layersOf(p))
	}
	pairs := map[string]string{}
	for _, s := range p.Stages {
		pairs[s.Node] = s.Shards[0].Node
	}
	if pairs["a"] != "c" || pairs["b"] != "d" {
		t.Fatalf("groups %v, want a+c and b+d", pairs)
	}
	// A group's speed is its slowest member's: a+c streams at 25 GB/s.
	for _, s := range p.Stages {
		if s.Node == "a" {
			var w uint64 = uint64(s.End-s.Start) * 5 * MiB
			if s.End == 16 {
				w += 5 * MiB
			}
			if want := 1000*float64(w)/25e9 + s.SwapMs; math.Abs(s.ComputeMs-want) > 1e-9 {
				t.Fatalf("a+c compute %v, want %v", s.ComputeMs, want)
			}
		}
	}
}

func TestTensorParallelRefusals(t *testing.T) {
	m := model(16, 10, 10, 0, 0)
	var ce *ConstraintError
	if _, err := Place([]Node{node("a", 4096, 20)}, nil, Request{Model: m, TensorParallel: 2}); !errors.As(err, &ce) || ce.Constraint != "tensor_parallel" {
		t.Fatalf("one node for a pair: %v", err)
	}
	if _, err := Place([]Node{node("a", 4096, 20), node("b", 4096, 20), node("c", 4096, 20)}, nil, Request{Model: m, TensorParallel: MaxTensorParallel + 1}); !errors.As(err, &ce) || ce.Constraint != "tensor_parallel" {
		t.Fatalf("groups beyond the largest: %v", err)
	}
	// A group of three: one stage, two other shards, a third of the layers each.
	p, err := Place([]Node{node("a", 4096, 30), node("b", 4096, 20), node("c", 4096, 20)}, nil, Request{Model: m, TensorParallel: 3})
	if err != nil || len(p.Stages) != 1 || len(p.Stages[0].Shards) != 2 || p.Stages[0].Node != "a" {
		t.Fatalf("groups of three: %+v %v", p, err)
	}
	if w := p.Stages[0].WeightBytes; w != uint64(16*((10*MiB+2)/3)+(10*MiB+2)/3+10*MiB) {
		t.Fatalf("a member of three holds %d bytes of weights", w)
	}
	if _, err := Place([]Node{node("a", 4096, 20)}, nil, Request{Model: m, TensorParallel: -1}); err == nil {
		t.Fatal("negative tensor_parallel accepted")
	}
	// min_nodes counts nodes: 3 nodes need two pairs.
	if _, err := Place([]Node{node("a", 4096, 20), node("b", 4096, 20), node("c", 4096, 20)}, nil, Request{Model: m, TensorParallel: 2, MinNodes: 3}); !IsUnsatisfiable(err) {
		t.Fatalf("min_nodes 3 over one pair: %v", err)
	}
	if _, err := EvaluateGroups([][]Node{{node("a", 4096, 20)}}, nil, Request{Model: m, TensorParallel: 2}, [][2]int{{0, 16}}); err == nil {
		t.Fatal("a group of one evaluated as a pair")
	}
}
