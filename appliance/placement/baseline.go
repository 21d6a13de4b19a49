package placement

import (
	"cmp"
	"fmt"
	"slices"
)

// Baseline is exo's placement, kept as the yardstick the planner must never lose to: the
// smallest set of nodes whose memory holds the weights (the KV cache is not counted), with
// the most memory among sets of that size, layers split in proportion to each node's memory
// with largest-remainder rounding. Its prediction uses the same cost model as Place, so the
// two are comparable; it does not check the KV cache against memory (that is the point).
func Baseline(nodes []Node, links Links, req Request) (*Plan, error) {
	cands, err := eligible(nodes, req)
	if err != nil {
		return nil, err
	}
	m := req.Model
	L := m.Layers()
	if L == 0 {
		return nil, fmt.Errorf("model %s has no layers", m.Name)
	}
	byMem := slices.Clone(cands)
	slices.SortStableFunc(byMem, func(a, b Node) int { return cmp.Or(-cmp.Compare(a.Memory, b.Memory), cmp.Compare(a.ID, b.ID)) })
	need := m.WeightBytes()
	k, have := 0, uint64(0)
	for k < len(byMem) && (have < need || k < max(req.MinNodes, 1)) {
		have += byMem[k].Memory
		k++
	}
	if have < need || k < max(req.MinNodes, 1) {
		return nil, &InsufficientMemoryError{Model: m.Name, Context: req.context(), NeedBytes: need, WeightBytes: need, AvailableBytes: have, Nodes: len(cands)}
	}
	// Keep the caller's node order within the chosen set, as exo keeps its cycle order.
	chosen := map[string]bool{}
	for _, n := range byMem[:k] {
		chosen[n.ID] = true
	}
	var set []Node
	for _, n := range cands {
		if chosen[n.ID] {
			set = append(set, n)
		}
	}
	counts := proportional(L, set)
	var order []Node
	var ranges [][2]int
	at := 0
	for i, n := range set {
		if counts[i] == 0 {
			continue
		}
		order = append(order, n)
		ranges = append(ranges, [2]int{at, at + counts[i]})
		at += counts[i]
	}
	p, _ := evaluate(order, links, req, req.context(), ranges)
	// evaluate stops at the first stage that overflows; finish the prediction regardless,
	// because the baseline does not check memory beyond the weights.
	if len(p.Stages) < len(order) {
		p = predictOnly(order, links, req, ranges)
	}
	return p, nil
}

// proportional splits L layers over the nodes in proportion to memory, rounding by largest
// remainder.
func proportional(L int, set []Node) []int {
	var total uint64
	for _, n := range set {
		total += n.Memory
	}
	counts := make([]int, len(set))
	if total == 0 {
		total = 1 // every share is zero; largest remainder then deals layers round-robin
	}
	type rem struct {
		i    int
		frac float64
	}
	var rems []rem
	given := 0
	for i, n := range set {
		exact := float64(L) * float64(n.Memory) / float64(total)
		counts[i] = int(exact)
		given += counts[i]
		rems = append(rems, rem{i, exact - float64(counts[i])})
	}
	slices.SortStableFunc(rems, func(a, b rem) int { return -cmp.Compare(a.frac, b.frac) })
	for j := 0; given < L; j++ {
		counts[rems[j%len(rems)].i]++
		given++
	}
	return counts
}

// predictOnly is evaluate without the memory check.
func predictOnly(order []Node, links Links, req Request, ranges [][2]int) *Plan {
	roomy := make([]Node, len(order))
	for i, n := range order {
		n.Memory = ^uint64(0)
		roomy[i] = n
	}
	p, _ := evaluate(roomy, links, req, req.context(), ranges)
	return p
}
