// Package placement decides where a model instance runs: which nodes, in which order, with
// which layer ranges. It is a pure function of its inputs (nodes, links, model, request), so
// every decision can be reproduced in a table test.
//
// The cost model predicts the time per generated token of one sequence going through the
// pipeline: each stage streams its weights once per token (bytes / the node's measured speed),
// each hop moves one hidden state (latency + bytes / bandwidth), and the sampled token returns
// from the last stage to the first. The planner minimises that time; among equally fast plans
// it minimises the slowest stage (so that a full pipeline under continuous batching is
// balanced), then prefers nodes that already hold the model, then fewer nodes.
//
// Links come from what the nodes' transports measured (BuildLinks: per-path probes of RTT and
// bandwidth, the paths of a multipath peer summed), with gossip's network coordinates for a
// latency no probe measured and DefaultLink for the rest. Candidate node sets are ranked by
// speed, memory and model holdings, and in a small cluster every set of a given size is tried
// too, so that two fast nodes joined by a slow link lose to a pair joined by a fast one.
//
// Memory is checked per node for the stage's weights plus its KV cache for the requested
// context, which exo's memory-proportional split leaves out.
package placement

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Defaults for figures that have not been measured yet.
var (
	// DefaultSpeed is the weight streaming speed assumed for a node without a measurement
	// (bytes per second; roughly a dual-channel DDR4 desktop).
	DefaultSpeed = 20e9
	// DefaultLink is assumed between nodes without a link measurement (a switched 10 GbE LAN).
	DefaultLink = Link{Latency: 200 * time.Microsecond, Bandwidth: 1.25e9}
	// DefaultContext is the context reserved when a request names none.
	DefaultContext = 4096
)

// Node is a candidate node as the planner sees it.
type Node struct {
	ID   string
	Name string
	// Memory is what the node can give this instance, in bytes: its free memory minus what
	// other instances placed on it already hold.
	Memory uint64
	// Speed is the measured weight streaming speed in bytes per second; 0 means unknown.
	Speed float64
	// HasModel says the node already holds the model file (no transfer needed).
	HasModel bool
}

func (n Node) speed() float64 {
	if n.Speed > 0 {
		return n.Speed
	}
	return DefaultSpeed
}

// Link is a measured one-way path between two nodes.
type Link struct {
	Latency   time.Duration
	Bandwidth float64 // bytes per second
	// Source says where the figures come from: "probe" (the nodes' transport measured them),
	// "gossip" (latency from gossip's network coordinates, bandwidth assumed) or empty.
	Source string
}

// Link sources.
const (
	SourceProbe  = "probe"
	SourceGossip = "gossip"
)

// Probe is what a node's transport measured of its path to a peer; zero fields were not
// measured.
type Probe struct {
	RTT       time.Duration
	Bandwidth float64 // bytes per second from the node to the peer
}

// BuildLinks assembles the planner's links between nodes: for each ordered pair (a, b), what a
// measured towards b (probes[a][b]), else what b measured towards a (a link's two directions
// are usually alike), with gossip's round-trip estimate (coords) standing in for a latency no
// probe measured and DefaultLink's bandwidth for one not measured. Pairs known to neither are
// left out (DefaultLink).
func BuildLinks(nodes []string, probes map[string]map[string]Probe, coords func(a, b string) (time.Duration, bool)) Links {
	ls := Links{}
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			p, ok := probes[a][b]
			if !ok || (p.RTT <= 0 && p.Bandwidth <= 0) {
				p, ok = probes[b][a]
				ok = ok && (p.RTT > 0 || p.Bandwidth > 0)
			}
			l := Link{Bandwidth: DefaultLink.Bandwidth}
			switch {
			case ok:
				l.Source = SourceProbe
				if p.Bandwidth > 0 {
					l.Bandwidth = p.Bandwidth
				}
				l.Latency = p.RTT / 2
				if p.RTT <= 0 {
					l.Latency = DefaultLink.Latency
					if rtt, known := coords(a, b); known {
						l.Latency = rtt / 2
					}
				}
			default:
				rtt, known := coords(a, b)
				if !known {
					continue
				}
				l.Latency, l.Source = rtt/2, SourceGossip
			}
			if ls[a] == nil {
				ls[a] = map[string]Link{}
			}
			ls[a][b] = l
		}
	}
	return ls
}

// Links holds measured links by source then destination node ID; missing pairs get
// DefaultLink.
type Links map[string]map[string]Link

func (ls Links) get(a, b string) Link {
	if l, ok := ls[a][b]; ok && l.Bandwidth > 0 {
		return l
	}
	return DefaultLink
}

func (ls Links) cost(a, b string, bytes uint64) float64 {
	l := ls.get(a, b)
	return l.Latency.Seconds() + float64(bytes)/l.Bandwidth
}

// Model is what placement needs to know about a model.
type Model struct {
	Name string
	// LayerBytes are the weight bytes of each transformer block, in order.
	LayerBytes []uint64
	// InputBytes are needed on the first stage only (token embeddings).
	InputBytes uint64
	// OutputBytes are needed on the last stage only (final norm and output projection, or the
	// token embeddings again when the output is tied to them); they are read once per token.
	OutputBytes uint64
	// KVBytesPerToken is the KV cache size of one layer for one token (keys and values).
	KVBytesPerToken uint64
	// ContextLength is the longest context the model supports; 0 means unknown.
	ContextLength int
	// HiddenBytes is the size of the hidden state passed between stages per token.
	HiddenBytes uint64
}

// Layers is the number of transformer blocks.
func (m Model) Layers() int { return len(m.LayerBytes) }

// WeightBytes is the size of all weights.
func (m Model) WeightBytes() uint64 {
	var s uint64
	for _, b := range m.LayerBytes {
		s += b
	}
	return s + m.InputBytes + m.OutputBytes
}

// Request is one placement question.
type Request struct {
	Model   Model
	Context int // tokens of KV cache to reserve; 0 means min(DefaultContext, model's)
	// MinNodes is the fewest nodes to spread over (at least 1).
	MinNodes int
	// Nodes, when set, restricts placement to these node IDs (or names).
	Nodes []string
	// StageOverhead is fixed memory per stage beyond weights and KV cache (compute buffers).
	StageOverhead uint64
	// TensorParallel > 1 runs every stage on a group of that many nodes, each holding a share
	// of the stage's matrices (tensor.go).
	TensorParallel int
}

func (r Request) context() int {
	c := r.Context
	if c <= 0 {
		c = DefaultContext
		if r.Model.ContextLength > 0 && r.Model.ContextLength < c {
			c = r.Model.ContextLength
		}
	}
	return c
}

// Stage is one pipeline stage of a plan.
type Stage struct {
	Node        string  `json:"node"`
	Name        string  `json:"name,omitempty"`
	Start       int     `json:"start"` // first layer
	End         int     `json:"end"`   // one past the last layer
	WeightBytes uint64  `json:"weight_bytes"`
	KVBytes     uint64  `json:"kv_bytes"`
	MemoryBytes uint64  `json:"memory_bytes"`
	ComputeMs   float64 `json:"compute_ms"`
	// LinkMs is the hop from this stage to the next (to the first for the last stage).
	LinkMs float64 `json:"link_ms"`
	// Shards are the other nodes of a tensor-parallel stage (shard 1 on); each holds
	// MemoryBytes. ComputeMs then includes the shards' swaps of their parts (SwapMs).
	Shards []Member `json:"shards,omitempty"`
	SwapMs float64  `json:"swap_ms,omitempty"`
}

// Member is a node of a tensor-parallel group.
type Member struct {
	Node string `json:"node"`
	Name string `json:"name,omitempty"`
}

// Plan is an ordered list of stages with its prediction.
type Plan struct {
	Stages  []Stage `json:"stages"`
	Context int     `json:"context"`
	// TokenMs is the predicted time per token of one sequence.
	TokenMs float64 `json:"token_ms"`
	// BottleneckMs is the slowest stage including its outgoing hop: the time per token of a
	// pipeline kept full by continuous batching.
	BottleneckMs float64 `json:"bottleneck_ms"`
	MemoryBytes  uint64  `json:"memory_bytes"`
}

// Nodes lists the plan's node IDs in stage order.
func (p *Plan) Nodes() []string {
	out := make([]string, len(p.Stages))
	for i, s := range p.Stages {
		out[i] = s.Node
	}
	return out
}

// InsufficientMemoryError says the eligible nodes together cannot hold the model.
type InsufficientMemoryError struct {
	Model          string
	Context        int
	NeedBytes      uint64 // weights + KV cache + overheads
	WeightBytes    uint64
	KVBytes        uint64
	AvailableBytes uint64 // sum over eligible nodes
	Nodes          int
}

// ShortBytes is how much memory is missing.
func (e *InsufficientMemoryError) ShortBytes() uint64 { return e.NeedBytes - e.AvailableBytes }

func (e *InsufficientMemoryError) Error() string {
	return fmt.Sprintf("model %s with context %d needs %d bytes (weights %d, KV cache %d) but the %d eligible node(s) offer %d bytes: short by %d bytes",
		e.Model, e.Context, e.NeedBytes, e.WeightBytes, e.KVBytes, e.Nodes, e.AvailableBytes, e.ShortBytes())
}

// ConstraintError says a request constraint cannot be met (node count, named nodes, per-node
// memory granularity).
type ConstraintError struct {
	Constraint string // "min_nodes", "nodes", "layers", "memory"
	Msg        string
}

func (e *ConstraintError) Error() string { return e.Msg }

// IsUnsatisfiable reports whether err says the request cannot be placed on these nodes (as
// opposed to a malformed request).
func IsUnsatisfiable(err error) bool {
	var im *InsufficientMemoryError
	var ce *ConstraintError
	return errors.As(err, &im) || errors.As(err, &ce)
}

// eligible applies the Nodes restriction and drops nodes without memory.
func eligible(nodes []Node, req Request) ([]Node, error) {
	if len(req.Nodes) == 0 {
		return slices.Clone(nodes), nil
	}
	var out []Node
	var unknown []string
	for _, want := range req.Nodes {
		i := slices.IndexFunc(nodes, func(n Node) bool { return n.ID == want || (n.Name != "" && n.Name == want) })
		if i < 0 {
			unknown = append(unknown, want)
			continue
		}
		if !slices.ContainsFunc(out, func(n Node) bool { return n.ID == nodes[i].ID }) {
			out = append(out, nodes[i])
		}
	}
	if len(unknown) > 0 {
		return nil, &ConstraintError{Constraint: "nodes", Msg: fmt.Sprintf("requested nodes %s are not live workers", strings.Join(unknown, ", "))}
	}
	return out, nil
}

func (req Request) validate() error {
	if req.Model.Layers() == 0 {
		return fmt.Errorf("model %s has no layers", req.Model.Name)
	}
	if req.MinNodes < 0 {
		return fmt.Errorf("min_nodes %d is negative", req.MinNodes)
	}
	if req.TensorParallel < 0 {
		return fmt.Errorf("tensor_parallel %d is negative", req.TensorParallel)
	}
	if req.TensorParallel > MaxTensorParallel {
		return &ConstraintError{Constraint: "tensor_parallel", Msg: fmt.Sprintf("tensor_parallel %d: groups of more than %d nodes are not supported yet", req.TensorParallel, MaxTensorParallel)}
	}
	if c := req.context(); req.Model.ContextLength > 0 && c > req.Model.ContextLength {
		return &ConstraintError{Constraint: "context", Msg: fmt.Sprintf("context %d exceeds model %s's context length %d", c, req.Model.Name, req.Model.ContextLength)}
	}
	return nil
}

// Place computes the best plan for req on nodes.
func Place(nodes []Node, links Links, req Request) (*Plan, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	cands, err := eligible(nodes, req)
	if err != nil {
		return nil, err
	}
	if req.TensorParallel > 1 {
		return placeGroups(cands, links, req)
	}
	minNodes := max(req.MinNodes, 1)
	L := req.Model.Layers()
	if minNodes > L {
		return nil, &ConstraintError{Constraint: "min_nodes", Msg: fmt.Sprintf("min_nodes %d exceeds the %d layers of model %s", minNodes, L, req.Model.Name)}
	}
	if len(cands) < minNodes {
		return nil, &ConstraintError{Constraint: "min_nodes", Msg: fmt.Sprintf("min_nodes %d but only %d eligible live worker node(s)", minNodes, len(cands))}
	}
	if err := totalCheck(cands, req, minNodes); err != nil {
		return nil, err
	}
	ctx := req.context()
	var best *Plan
	var bestHas int
	consider := func(order []Node) {
		if len(order) < minNodes {
			return
		}
		p := split(order, links, req, ctx)
		if p == nil {
			return
		}
		has := 0
		for _, s := range p.Stages {
			if i := slices.IndexFunc(order, func(n Node) bool { return n.ID == s.Node }); i >= 0 && order[i].HasModel {
				has++
			}
		}
		if best == nil || better(p, has, best, bestHas) {
			best, bestHas = p, has
		}
	}
	maxK := min(len(cands), L)
	seen := map[string]bool{}
	for _, order := range candidateOrders(cands, req, minNodes, maxK, links) {
		key := strings.Join(ids(order), ",")
		if seen[key] {
			continue
		}
		seen[key] = true
		consider(order)
	}
	if best == nil {
		return nil, &ConstraintError{Constraint: "memory", Msg: fmt.Sprintf(
			"no split of the %d layers of model %s over %d to %d of the %d eligible nodes fits each node's memory (largest layer %d bytes, KV cache %d bytes per layer at context %d)",
			L, req.Model.Name, minNodes, maxK, len(cands), slices.Max(req.Model.LayerBytes), req.Model.KVBytesPerToken*uint64(ctx), ctx)}
	}
	return best, nil
}

// better orders plans: lower predicted token time, then lower bottleneck, then more nodes
// holding the model, then fewer stages, then node IDs (for determinism).
func better(p *Plan, pHas int, q *Plan, qHas int) bool {
	if c := cmpTol(p.TokenMs, q.TokenMs); c != 0 {
		return c < 0
	}
	if c := cmpTol(p.BottleneckMs, q.BottleneckMs); c != 0 {
		return c < 0
	}
	if pHas != qHas {
		return pHas > qHas
	}
	if len(p.Stages) != len(q.Stages) {
		return len(p.Stages) < len(q.Stages)
	}
	return slices.Compare(p.Nodes(), q.Nodes()) < 0
}

// cmpTol compares with a relative tolerance that only absorbs floating-point rounding, so
// that splits of equal cost are treated as ties rather than won by the last bit.
func cmpTol(a, b float64) int {
	if math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) {
		return 0
	}
	return cmp.Compare(a, b)
}

func ids(ns []Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

// totalCheck fails early, with the shortfall in bytes, when the eligible nodes together cannot
// hold weights plus KV cache.
func totalCheck(cands []Node, req Request, minNodes int) error {
	ctx := req.context()
	m := req.Model
	var layers uint64
	for _, b := range m.LayerBytes {
		layers += b
	}
	kv := m.KVBytesPerToken * uint64(ctx) * uint64(m.Layers())
	need := layers + m.InputBytes + m.OutputBytes + kv + req.StageOverhead*uint64(minNodes)
	var have uint64
	for _, n := range cands {
		have += n.Memory
	}
	if have < need {
		return &InsufficientMemoryError{Model: m.Name, Context: ctx, NeedBytes: need, WeightBytes: m.WeightBytes(), KVBytes: kv,
			AvailableBytes: have, Nodes: len(cands)}
	}
	return nil
}

// candidateOrders proposes node sequences: for each stage count, the best nodes by several
// keys (speed, memory, holding the model, exo's choice), each arranged for cheap links, with
// a few rotations (the first stage also holds the embeddings, the last the output head).
func candidateOrders(cands []Node, req Request, minNodes, maxK int, links Links) [][]Node {
	keys := []func(a, b Node) int{
		func(a, b Node) int {
			return cmp.Or(-cmp.Compare(a.speed(), b.speed()), -cmp.Compare(a.Memory, b.Memory), cmp.Compare(a.ID, b.ID))
		},
		func(a, b Node) int {
			return cmp.Or(-cmp.Compare(a.Memory, b.Memory), -cmp.Compare(a.speed(), b.speed()), cmp.Compare(a.ID, b.ID))
		},
		func(a, b Node) int {
			return cmp.Or(-boolCmp(a.HasModel, b.HasModel), -cmp.Compare(a.speed(), b.speed()), -cmp.Compare(a.Memory, b.Memory), cmp.Compare(a.ID, b.ID))
		},
		func(a, b Node) int {
			return cmp.Or(-cmp.Compare(a.speed()*float64(a.Memory), b.speed()*float64(b.Memory)), cmp.Compare(a.ID, b.ID))
		},
	}
	var out [][]Node
	byID := slices.Clone(cands)
	slices.SortFunc(byID, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	for k := minNodes; k <= maxK; k++ {
		for _, key := range keys {
			sorted := slices.Clone(cands)
			slices.SortStableFunc(sorted, key)
			out = append(out, rotations(arrange(sorted[:k], links, req.Model.HiddenBytes))...)
		}
		// The keys rank nodes one by one and cannot see that two good nodes are joined by a
		// bad link: in a small cluster every set of k nodes is tried.
		if binomial(len(byID), k) <= maxSubsets {
			subsets(byID, k, func(sub []Node) {
				out = append(out, rotations(arrange(sub, links, req.Model.HiddenBytes))...)
			})
		}
	}
	if b, err := Baseline(cands, links, req); err == nil {
		var order []Node
		for _, s := range b.Stages {
			order = append(order, cands[slices.IndexFunc(cands, func(n Node) bool { return n.ID == s.Node })])
		}
		out = append(out, order)
		out = append(out, rotations(arrange(order, links, req.Model.HiddenBytes))...)
	}
	return out
}

// maxSubsets bounds the node sets of one size the planner tries exhaustively.
const maxSubsets = 70

func binomial(n, k int) int {
	if k < 0 || k > n {
		return 0
	}
	r := 1
	for i := 1; i <= k; i++ {
		r = r * (n - k + i) / i
		if r > 1<<20 {
			return r
		}
	}
	return r
}

// subsets calls visit with every k-element subset of ns, in order.
func subsets(ns []Node, k int, visit func([]Node)) {
	cur := make([]Node, 0, k)
	var rec func(start int)
	rec = func(start int) {
		if len(cur) == k {
			visit(slices.Clone(cur))
			return
		}
		for i := start; i <= len(ns)-(k-len(cur)); i++ {
			cur = append(cur, ns[i])
			rec(i + 1)
			cur = cur[:len(cur)-1]
		}
	}
	rec(0)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// arrange orders nodes to make the ring of hops cheap: exhaustively for small sets, greedily
// (nearest next hop) for larger ones.
func arrange(ns []Node, links Links, hidden uint64) []Node {
	if len(ns) <= 2 {
		return slices.Clone(ns)
	}
	ring := func(o []Node) float64 {
		s := 0.0
		for i := range o {
			s += links.cost(o[i].ID, o[(i+1)%len(o)].ID, hidden)
		}
		return s
	}
	if len(ns) <= 7 {
		best := slices.Clone(ns)
		bestCost := ring(best)
		perm := slices.Clone(ns)
		// The first node stays put: rotations are tried separately.
		heapPermute(perm[1:], func() {
			if c := ring(perm); cmpTol(c, bestCost) < 0 {
				best, bestCost = slices.Clone(perm), c
			}
		})
		return best
	}
	out := []Node{ns[0]}
	rest := slices.Clone(ns[1:])
	for len(rest) > 0 {
		last := out[len(out)-1]
		bi := 0
		for i := range rest {
			if cmpTol(links.cost(last.ID, rest[i].ID, hidden), links.cost(last.ID, rest[bi].ID, hidden)) < 0 {
				bi = i
			}
		}
		out = append(out, rest[bi])
		rest = slices.Delete(rest, bi, bi+1)
	}
	return out
}

// heapPermute calls visit for every permutation of a (in place).
func heapPermute(a []Node, visit func()) {
	n := len(a)
	c := make([]int, n)
	visit()
	for i := 0; i < n; {
		if c[i] < i {
			if i%2 == 0 {
				a[0], a[i] = a[i], a[0]
			} else {
				a[c[i]], a[i] = a[i], a[c[i]]
			}
			visit()
			c[i]++
			i = 0
		} else {
			c[i] = 0
			i++
		}
	}
}

// rotations returns the order itself and its rotations that put the node with the most
// memory first or last (where the embeddings and the output head go).
func rotations(order []Node) [][]Node {
	out := [][]Node{order}
	if len(order) < 2 {
		return out
	}
	big := 0
	for i, n := range order {
		if n.Memory > order[big].Memory {
			big = i
		}
	}
	rot := func(start int) []Node {
		r := make([]Node, 0, len(order))
		return append(append(r, order[start:]...), order[:start]...)
	}
	out = append(out, rot(big), rot((big+1)%len(order)))
	return out
}

// split finds, for a fixed node order, the layer ranges with the lowest predicted token time
// (then the lowest bottleneck) that fit every node's memory; every node gets at least one
// layer. It returns nil when no split fits.
func split(order []Node, links Links, req Request, ctx int) *Plan {
	m := req.Model
	L, k := m.Layers(), len(order)
	if k > L {
		return nil
	}
	prefix := make([]uint64, L+1)
	for i, b := range m.LayerBytes {
		prefix[i+1] = prefix[i] + b
	}
	kvPerLayer := m.KVBytesPerToken * uint64(ctx)
	extraMem := func(j int) uint64 {
		e := req.StageOverhead
		if j == 0 {
			e += m.InputBytes
		}
		if j == k-1 {
			e += m.OutputBytes
		}
		return e
	}
	fits := func(j, a, b int) bool {
		return prefix[b]-prefix[a]+kvPerLayer*uint64(b-a)+extraMem(j) <= order[j].Memory
	}
	hop := func(j int) float64 {
		if k == 1 {
			return 0
		}
		if j == k-1 {
			return links.cost(order[j].ID, order[0].ID, 4) // the sampled token id
		}
		return links.cost(order[j].ID, order[j+1].ID, m.HiddenBytes)
	}
	compute := func(j, a, b int) float64 {
		w := prefix[b] - prefix[a]
		if j == k-1 {
			w += m.OutputBytes
		}
		return float64(w) / order[j].speed()
	}
	type cell struct {
		ok        bool
		sum, peak float64
		from      int
	}
	dp := make([][]cell, k)
	for j := range dp {
		dp[j] = make([]cell, L+1)
	}
	less := func(s1, p1, s2, p2 float64) bool {
		if c := cmpTol(s1, s2); c != 0 {
			return c < 0
		}
		return cmpTol(p1, p2) < 0
	}
	for b := 1; b <= L-(k-1); b++ {
		if fits(0, 0, b) {
			t := compute(0, 0, b) + hop(0)
			dp[0][b] = cell{ok: true, sum: t, peak: t}
		}
	}
	for j := 1; j < k; j++ {
		hj := hop(j)
		for a := j; a <= L-(k-j); a++ {
			prev := dp[j-1][a]
			if !prev.ok {
				continue
			}
			for b := a + 1; b <= L-(k-1-j); b++ {
				if !fits(j, a, b) {
					break // more layers only need more memory
				}
				t := compute(j, a, b) + hj
				s, p := prev.sum+t, math.Max(prev.peak, t)
				if c := dp[j][b]; !c.ok || less(s, p, c.sum, c.peak) {
					dp[j][b] = cell{ok: true, sum: s, peak: p, from: a}
				}
			}
		}
	}
	if !dp[k-1][L].ok {
		return nil
	}
	bounds := make([]int, k+1)
	bounds[k] = L
	for j := k - 1; j > 0; j-- {
		bounds[j] = dp[j][bounds[j+1]].from
	}
	stages := make([][2]int, k)
	for j := range stages {
		stages[j] = [2]int{bounds[j], bounds[j+1]}
	}
	p, _ := evaluate(order, links, req, ctx, stages)
	return p
}

// evaluate computes the prediction and memory of given layer ranges on given nodes; it fails
// when a stage does not fit its node.
func evaluate(order []Node, links Links, req Request, ctx int, ranges [][2]int) (*Plan, error) {
	m := req.Model
	k := len(order)
	p := &Plan{Context: ctx}
	for j, r := range ranges {
		var w uint64
		for _, b := range m.LayerBytes[r[0]:r[1]] {
			w += b
		}
		memW := w
		computeW := w
		if j == 0 {
			memW += m.InputBytes
		}
		if j == k-1 {
			memW += m.OutputBytes
			computeW += m.OutputBytes
		}
		kv := m.KVBytesPerToken * uint64(ctx) * uint64(r[1]-r[0])
		st := Stage{Node: order[j].ID, Name: order[j].Name, Start: r[0], End: r[1], WeightBytes: memW, KVBytes: kv,
			MemoryBytes: memW + kv + req.StageOverhead, ComputeMs: 1000 * float64(computeW) / order[j].speed()}
		if k > 1 {
			if j == k-1 {
				st.LinkMs = 1000 * links.cost(order[j].ID, order[0].ID, 4)
			} else {
				st.LinkMs = 1000 * links.cost(order[j].ID, order[j+1].ID, m.HiddenBytes)
			}
		}
		if st.MemoryBytes > order[j].Memory {
			return p, fmt.Errorf("stage %d on node %s needs %d bytes, node offers %d", j, order[j].ID, st.MemoryBytes, order[j].Memory)
		}
		p.Stages = append(p.Stages, st)
		p.TokenMs += st.ComputeMs + st.LinkMs
		p.BottleneckMs = math.Max(p.BottleneckMs, st.ComputeMs+st.LinkMs)
		p.MemoryBytes += st.MemoryBytes
	}
	return p, nil
}

// Evaluate predicts a given placement (for comparing against the planner and for showing
// what an existing placement costs). ranges[i] are the layers of order[i].
func Evaluate(order []Node, links Links, req Request, ranges [][2]int) (*Plan, error) {
	if len(order) != len(ranges) {
		return nil, fmt.Errorf("%d nodes but %d layer ranges", len(order), len(ranges))
	}
	return evaluate(order, links, req, req.context(), ranges)
}
