package placement

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

const MiB = 1 << 20

// model builds a uniform model: layers of layerMiB, embeddings and head of ioMiB each, kv
// bytes per token per layer.
func model(layers int, layerMiB, ioMiB float64, kvPerToken uint64, ctx int) Model {
	m := Model{Name: fmt.Sprintf("m%d", layers), InputBytes: uint64(ioMiB * MiB), OutputBytes: uint64(ioMiB * MiB),
		KVBytesPerToken: kvPerToken, ContextLength: ctx, HiddenBytes: 4096 * 4}
	for i := 0; i < layers; i++ {
		m.LayerBytes = append(m.LayerBytes, uint64(layerMiB*MiB))
	}
	return m
}

func node(id string, memMiB float64, speedGBs float64) Node {
	return Node{ID: id, Name: "name-" + id, Memory: uint64(memMiB * MiB), Speed: speedGBs * 1e9}
}

func layersOf(p *Plan) [][3]string {
	var out [][3]string
	for _, s := range p.Stages {
		out = append(out, [3]string{s.Node, fmt.Sprint(s.Start), fmt.Sprint(s.End)})
	}
	return out
}

func TestPlanTable(t *testing.T) {
	slowLinks := Links{
		"a": {"c": {Latency: 20 * time.Millisecond, Bandwidth: 1e6}},
		"c": {"a": {Latency: 20 * time.Millisecond, Bandwidth: 1e6}},
	}
	cases := []struct {
		name  string
		nodes []Node
		links Links
		req   Request
		want  string // "a:0-8 b:8-16": node:start-end per stage
		// baselineOverflows: exo's split does not fit memory once the KV cache is counted.
		baselineOverflows bool
	}{
		{
			name:  "one node holds it all",
			nodes: []Node{node("a", 4096, 20), node("b", 4096, 20)},
			req:   Request{Model: model(16, 10, 20, 0, 0)},
			want:  "a:0-16",
		},
		{
			name: "min_nodes 2 on equal nodes balances stage times",
			// The last stage also streams the 20 MiB output head, worth two layers.
			nodes: []Node{node("a", 4096, 20), node("b", 4096, 20)},
			req:   Request{Model: model(16, 10, 20, 0, 0), MinNodes: 2},
			want:  "a:0-9 b:9-16",
		},
		{
			name: "KV cache counted: weights fit one node, weights+KV need two",
			// 16 layers × 10 MiB + 2×20 MiB = 200 MiB of weights; KV 8 KiB/token/layer at 4096
			// tokens = 32 MiB per layer, 512 MiB in all.
			nodes:             []Node{node("a", 400, 20), node("b", 400, 20)},
			req:               Request{Model: model(16, 10, 20, 8192, 4096), Context: 4096},
			want:              "a:0-9 b:9-16",
			baselineOverflows: true,
		},
		{
			name: "unequal memory, equal speed: balanced, not memory-proportional",
			// exo gives the big node 12 of 16 layers; equal speeds make that the bottleneck.
			nodes: []Node{node("big", 3000, 20), node("small", 1000, 20)},
			req:   Request{Model: model(16, 10, 0, 0, 0), MinNodes: 2},
			want:  "big:0-8 small:8-16",
		},
		{
			name: "faster node takes as much as fits",
			// fast: 3× the speed but room for 10 layers only (+ output head).
			nodes: []Node{node("slow", 4096, 10), node("fast", 105, 30)},
			req:   Request{Model: model(16, 10, 0, 0, 0), MinNodes: 2},
			want:  "fast:0-10 slow:10-16",
		},
		{
			name:  "node that holds the model wins a tie",
			nodes: []Node{node("a", 4096, 20), {ID: "b", Memory: 4096 * MiB, Speed: 20e9, HasModel: true}},
			req:   Request{Model: model(8, 10, 10, 0, 0)},
			want:  "b:0-8",
		},
		{
			name: "a slow link is avoided",
			// a and c are far apart; the ring a→b→c→a would cross it once either way, so the
			// planner uses the two nodes joined by fast links.
			nodes: []Node{node("a", 100, 20), node("b", 100, 20), node("c", 100, 20)},
			links: slowLinks,
			req:   Request{Model: model(10, 10, 0, 0, 0), MinNodes: 2},
			want:  "a:0-5 b:5-10",
		},
		{
			name:  "nodes restriction by name",
			nodes: []Node{node("a", 4096, 50), node("b", 4096, 20), node("c", 4096, 20)},
			req:   Request{Model: model(8, 10, 0, 0, 0), Nodes: []string{"name-c", "b"}, MinNodes: 2},
			want:  "b:0-4 c:4-8",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Place(tc.nodes, tc.links, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range layersOf(p) {
				got = append(got, fmt.Sprintf("%s:%s-%s", s[0], s[1], s[2]))
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("plan %s, want %s", strings.Join(got, " "), tc.want)
			}
			checkPlan(t, tc.nodes, tc.req, p)
			b, err := Baseline(tc.nodes, tc.links, tc.req)
			if err != nil {
				t.Fatalf("baseline: %v", err)
			}
			if overflow := !fitsMemory(tc.nodes, b); overflow != tc.baselineOverflows {
				t.Errorf("baseline overflows memory: %v, want %v (%+v)", overflow, tc.baselineOverflows, b.Stages)
			}
			if !tc.baselineOverflows && cmpTol(p.TokenMs, b.TokenMs) > 0 {
				t.Errorf("planner %.4f ms/token is worse than exo's baseline %.4f", p.TokenMs, b.TokenMs)
			}
		})
	}
}

func TestPlanPredictionNumbers(t *testing.T) {
	// Two stages of 80 MiB at 20 GB/s with the default link: the prediction is the sum of
	// both stages' streaming time and both hops.
	nodes := []Node{node("a", 4096, 20), node("b", 4096, 20)}
	req := Request{Model: model(16, 10, 0, 0, 0), MinNodes: 2}
	p, err := Place(nodes, nil, req)
	if err != nil {
		t.Fatal(err)
	}
	stage := 1000 * 80 * MiB / 20e9
	hop := 1000 * (DefaultLink.Latency.Seconds() + 4096*4/DefaultLink.Bandwidth)
	back := 1000 * (DefaultLink.Latency.Seconds() + 4/DefaultLink.Bandwidth)
	want := 2*stage + hop + back
	if cmpTol(p.TokenMs, want) != 0 {
		t.Fatalf("token time %.6f ms, want %.6f", p.TokenMs, want)
	}
	if cmpTol(p.BottleneckMs, stage+hop) != 0 {
		t.Fatalf("bottleneck %.6f ms, want %.6f", p.BottleneckMs, stage+hop)
	}
}

func TestPlanErrors(t *testing.T) {
	m := model(8, 100, 50, 1024, 8192)
	// 8×100 + 2×50 MiB of weights + 8 × 1 KiB × 4096 tokens = 32 MiB of KV cache.
	nodes := []Node{node("a", 300, 20), node("b", 300, 20)}
	_, err := Place(nodes, nil, Request{Model: m})
	var im *InsufficientMemoryError
	if !errors.As(err, &im) {
		t.Fatalf("want InsufficientMemoryError, got %v", err)
	}
	wantNeed := uint64(900*MiB + 32*MiB)
	if im.NeedBytes != wantNeed || im.AvailableBytes != 600*MiB || im.ShortBytes() != wantNeed-600*MiB {
		t.Fatalf("shortfall figures %+v", im)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("short by %d bytes", wantNeed-600*MiB)) {
		t.Fatalf("message does not name the shortfall: %v", err)
	}

	var ce *ConstraintError
	if _, err := Place(nodes, nil, Request{Model: m, MinNodes: 3}); !errors.As(err, &ce) || ce.Constraint != "min_nodes" {
		t.Fatalf("min_nodes beyond nodes: %v", err)
	}
	if _, err := Place(nodes, nil, Request{Model: m, Nodes: []string{"a", "zz"}}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "zz") {
		t.Fatalf("unknown node: %v", err)
	}
	if _, err := Place(nodes, nil, Request{Model: m, Context: 100000}); !errors.As(err, &ce) || ce.Constraint != "context" {
		t.Fatalf("context beyond model: %v", err)
	}
	// Enough memory in total but no node can hold the one huge layer.
	huge := model(2, 10, 0, 0, 0)
	huge.LayerBytes[1] = 500 * MiB
	if _, err := Place([]Node{node("a", 300, 20), node("b", 300, 20)}, nil, Request{Model: huge}); !errors.As(err, &ce) || ce.Constraint != "memory" {
		t.Fatalf("layer granularity: %v", err)
	}
	if !IsUnsatisfiable(err) || IsUnsatisfiable(errors.New("x")) {
		t.Fatal("IsUnsatisfiable misclassifies")
	}
}

// TestNeverWorseThanBaseline draws random clusters and models: every plan fits memory, covers
// the layers in order, and is never slower than exo's placement when that placement fits.
func TestNeverWorseThanBaseline(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	compared := 0
	for trial := 0; trial < 300; trial++ {
		n := 1 + rng.IntN(6)
		var nodes []Node
		links := Links{}
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("n%d", i)
			nodes = append(nodes, Node{ID: id, Memory: uint64(50+rng.IntN(400)) * MiB, Speed: float64(5+rng.IntN(40)) * 1e9, HasModel: rng.IntN(3) == 0})
		}
		for _, a := range nodes {
			links[a.ID] = map[string]Link{}
			for _, b := range nodes {
				links[a.ID][b.ID] = Link{Latency: time.Duration(50+rng.IntN(3000)) * time.Microsecond, Bandwidth: float64(1+rng.IntN(20)) * 1e8}
			}
		}
		m := model(4+rng.IntN(28), float64(1+rng.IntN(20)), float64(rng.IntN(30)), uint64(rng.IntN(4096)), 8192)
		req := Request{Model: m, Context: 256 << rng.IntN(5), MinNodes: 1 + rng.IntN(n)}
		p, err := Place(nodes, links, req)
		b, berr := Baseline(nodes, links, req)
		if err != nil {
			if !IsUnsatisfiable(err) {
				t.Fatalf("trial %d: %v", trial, err)
			}
			if berr == nil && fitsMemory(nodes, b) && len(b.Stages) >= req.MinNodes {
				t.Fatalf("trial %d: planner found nothing but the baseline fits: %v", trial, err)
			}
			continue
		}
		checkPlan(t, nodes, req, p)
		if berr == nil && fitsMemory(nodes, b) && len(b.Stages) >= req.MinNodes {
			compared++
			if cmpTol(p.TokenMs, b.TokenMs) > 0 {
				t.Fatalf("trial %d: planner %.5f ms/token worse than baseline %.5f\nplan %v\nbaseline %v", trial, p.TokenMs, b.TokenMs, layersOf(p), layersOf(b))
			}
		}
	}
	if compared < 50 {
		t.Fatalf("only %d trials compared against the baseline; the generator is off", compared)
	}
}

func fitsMemory(nodes []Node, p *Plan) bool {
	for _, s := range p.Stages {
		i := slices.IndexFunc(nodes, func(n Node) bool { return n.ID == s.Node })
		if s.MemoryBytes > nodes[i].Memory {
			return false
		}
	}
	return true
}

func checkPlan(t *testing.T, nodes []Node, req Request, p *Plan) {
	t.Helper()
	if len(p.Stages) < max(req.MinNodes, 1) {
		t.Fatalf("%d stages, min_nodes %d", len(p.Stages), req.MinNodes)
	}
	at := 0
	seen := map[string]bool{}
	for _, s := range p.Stages {
		if s.Start != at || s.End <= s.Start || seen[s.Node] {
			t.Fatalf("stages not contiguous or repeat a node: %v", layersOf(p))
		}
		seen[s.Node] = true
		at = s.End
	}
	if at != req.Model.Layers() {
		t.Fatalf("stages end at %d of %d layers", at, req.Model.Layers())
	}
	if !fitsMemory(nodes, p) {
		t.Fatalf("plan overflows memory: %+v", p.Stages)
	}
}

func TestProportionalLargestRemainder(t *testing.T) {
	got := proportional(10, []Node{{Memory: 1}, {Memory: 1}, {Memory: 1}})
	if slices.Max(got)-slices.Min(got) > 1 || got[0]+got[1]+got[2] != 10 {
		t.Fatalf("10 over 3 equal nodes: %v", got)
	}
	if got := proportional(16, []Node{{Memory: 3000}, {Memory: 1000}}); got[0] != 12 || got[1] != 4 {
		t.Fatalf("16 over 3:1: %v", got)
	}
}

func TestBuildLinks(t *testing.T) {
	coords := func(a, b string) (time.Duration, bool) {
		if a == "d" || b == "d" {
			return 0, false // no coordinate yet
		}
		return 2 * time.Millisecond, true
	}
	probes := map[string]map[string]Probe{
		"a": {"b": {RTT: 400 * time.Microsecond, Bandwidth: 1e9}, "c": {RTT: 10 * time.Millisecond}},
		"c": {"b": {Bandwidth: 5e6}}, // bandwidth measured, its RTT not yet
		"d": {"a": {}},               // nothing measured
	}
	ls := BuildLinks([]string{"a", "b", "c", "d"}, probes, coords)
	for _, tc := range []struct {
		from, to string
		want     Link
		absent   bool
	}{
		{from: "a", to: "b", want: Link{Latency: 200 * time.Microsecond, Bandwidth: 1e9, Source: SourceProbe}},
		// b measured nothing towards a: a's measurement stands for both directions.
		{from: "b", to: "a", want: Link{Latency: 200 * time.Microsecond, Bandwidth: 1e9, Source: SourceProbe}},
		// RTT measured, bandwidth not: the default bandwidth.
		{from: "a", to: "c", want: Link{Latency: 5 * time.Millisecond, Bandwidth: DefaultLink.Bandwidth, Source: SourceProbe}},
		// Bandwidth measured, RTT not: gossip's estimate for the latency.
		{from: "c", to: "b", want: Link{Latency: time.Millisecond, Bandwidth: 5e6, Source: SourceProbe}},
		{from: "b", to: "c", want: Link{Latency: time.Millisecond, Bandwidth: 5e6, Source: SourceProbe}},
		// Neither measured: gossip's coordinates, the default bandwidth.
		{from: "c", to: "a", want: Link{Latency: 5 * time.Millisecond, Bandwidth: DefaultLink.Bandwidth, Source: SourceProbe}},
		// Nothing at all about d: left to DefaultLink.
		{from: "d", to: "a", absent: true},
		{from: "b", to: "d", absent: true},
	} {
		got, ok := ls[tc.from][tc.to]
		if tc.absent {
			if ok {
				t.Errorf("%s→%s: %+v, want no link (DefaultLink)", tc.from, tc.to, got)
			}
			if ls.get(tc.from, tc.to) != DefaultLink {
				t.Errorf("%s→%s is not DefaultLink", tc.from, tc.to)
			}
			continue
		}
		if !ok || got != tc.want {
			t.Errorf("%s→%s: %+v (present %v), want %+v", tc.from, tc.to, got, ok, tc.want)
		}
	}
	if got := BuildLinks([]string{"a", "b"}, nil, coords)["a"]["b"]; got != (Link{Latency: time.Millisecond, Bandwidth: DefaultLink.Bandwidth, Source: SourceGossip}) {
		t.Errorf("coordinates only: %+v", got)
	}
}

// TestPlanUsesProbes: three equal nodes, two needed. By gossip's coordinates alone every pair
// is alike and the first two win; once the probes show that a and b are joined by a slow link,
// the plan leaves that pair out, and its prediction counts the measured hop.
func TestPlanUsesProbes(t *testing.T) {
	nodes := []Node{node("a", 400, 20), node("b", 400, 20), node("c", 400, 20)}
	ids := []string{"a", "b", "c"}
	coords := func(a, b string) (time.Duration, bool) { return time.Millisecond, true }
	m := model(16, 10, 20, 0, 0)
	m.HiddenBytes = 2 << 20 // a prompt chunk's activations: the link's bandwidth matters
	req := Request{Model: m, MinNodes: 2}
	p, err := Place(nodes, BuildLinks(ids, nil, coords), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Nodes(), ","); got != "a,b" {
		t.Fatalf("coordinates only: nodes %s, want a,b", got)
	}
	slow := Probe{RTT: 20 * time.Millisecond, Bandwidth: 10e6}
	fast := Probe{RTT: 200 * time.Microsecond, Bandwidth: 1e9}
	probes := map[string]map[string]Probe{
		"a": {"b": slow, "c": fast},
		"b": {"a": slow, "c": fast},
		"c": {"a": fast, "b": fast},
	}
	p2, err := Place(nodes, BuildLinks(ids, probes, coords), req)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(p2.Nodes(), "a") && slices.Contains(p2.Nodes(), "b") {
		t.Fatalf("with probes: nodes %v still use the slow a↔b link", p2.Nodes())
	}
	// The hop is predicted from the measurement: latency plus hidden state over bandwidth.
	hop := p2.Stages[0].LinkMs
	want := 1000 * (fast.RTT.Seconds()/2 + float64(m.HiddenBytes)/fast.Bandwidth)
	if math.Abs(hop-want) > 1e-9 {
		t.Fatalf("first hop predicted %.4f ms, want %.4f ms from the probe", hop, want)
	}
	// And forcing the slow pair predicts its cost.
	p3, err := Place(nodes, BuildLinks(ids, probes, coords), Request{Model: m, MinNodes: 2, Nodes: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if p3.TokenMs <= p2.TokenMs+20 {
		t.Fatalf("the slow pair predicts %.2f ms per token, the fast one %.2f", p3.TokenMs, p2.TokenMs)
	}
}
