package placement

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Tensor parallelism: with Request.TensorParallel = k, every stage runs on a group of k nodes,
// each holding 1/k of the stage's matrix rows and the whole KV cache of its layers (the
// shards swap their parts after each group of products, so each computes attention over all
// heads). The planner pairs the eligible nodes into groups (a node with the cheapest link to
// it, see formGroups), sees each group as one node (the memory of its smallest member, the
// speed of its slowest, since the shards wait for each other) running a model whose layers
// weigh 1/k, places that as a pipeline, and adds the swaps to each stage's time: four a layer
// (queries/keys/values, attention output, the gated activation, the down projection) and the
// logits, each one hop of a k-th of a hidden state between the members.

// MaxTensorParallel is the largest group placed: every member swaps with every other 4 times a
// layer, so larger groups pay more hops than their share of the weights saves on the links
// exo runs on.
const MaxTensorParallel = 4

// swapsPerLayer is how often the shards of a stage exchange their parts per layer and token.
const swapsPerLayer = 4

func placeGroups(cands []Node, links Links, req Request) (*Plan, error) {
	k := req.TensorParallel
	groups := formGroups(cands, links, k)
	if len(groups) == 0 {
		return nil, &ConstraintError{Constraint: "tensor_parallel", Msg: fmt.Sprintf("tensor_parallel %d needs at least %d eligible live worker nodes; there are %d", k, k, len(cands))}
	}
	virt, sub := groupRequest(groups, req)
	sub.MinNodes = (max(req.MinNodes, 1) + k - 1) / k
	p, err := Place(virt, links, sub)
	if err != nil {
		return nil, fmt.Errorf("tensor_parallel %d over groups %s: %w", k, describeGroups(groups), err)
	}
	return expandGroups(p, groups, links, req), nil
}

// EvaluateGroups is Evaluate for a tensor-parallel placement: groups[i] (shard 0 first) runs
// layers ranges[i].
func EvaluateGroups(groups [][]Node, links Links, req Request, ranges [][2]int) (*Plan, error) {
	if len(groups) != len(ranges) {
		return nil, fmt.Errorf("%d groups but %d layer ranges", len(groups), len(ranges))
	}
	for _, g := range groups {
		if len(g) != req.TensorParallel {
			return nil, fmt.Errorf("a group of %d nodes in a tensor_parallel %d placement", len(g), req.TensorParallel)
		}
	}
	virt, sub := groupRequest(groups, req)
	p, err := evaluate(virt, links, sub, sub.context(), ranges)
	if err != nil {
		return nil, err
	}
	return expandGroups(p, groups, links, req), nil
}

// formGroups pairs the nodes into groups of k, fastest first: each group starts with the
// fastest node left and takes in turn the node with the cheapest links to its members. Nodes
// left over (fewer than k) are not used.
func formGroups(cands []Node, links Links, k int) [][]Node {
	left := slices.Clone(cands)
	slices.SortStableFunc(left, func(a, b Node) int {
		return cmp.Or(-cmp.Compare(a.speed(), b.speed()), -cmp.Compare(a.Memory, b.Memory), cmp.Compare(a.ID, b.ID))
	})
	var groups [][]Node
	for len(left) >= k {
		g := []Node{left[0]}
		left = left[1:]
		for len(g) < k {
			best, bestCost := -1, 0.0
			for i, n := range left {
				var c float64
				for _, m := range g {
					c = max(c, links.cost(m.ID, n.ID, 0)+links.cost(n.ID, m.ID, 0))
				}
				if best < 0 || cmpTol(c, bestCost) < 0 {
					best, bestCost = i, c
				}
			}
			g = append(g, left[best])
			left = slices.Delete(left, best, best+1)
		}
		groups = append(groups, g)
	}
	return groups
}

// groupRequest describes each group as one node and the request as the pipeline planner sees
// it: layers and output head weigh 1/k on each member, the KV cache and embeddings do not
// shrink.
func groupRequest(groups [][]Node, req Request) ([]Node, Request) {
	k := uint64(req.TensorParallel)
	virt := make([]Node, len(groups))
	for i, g := range groups {
		v := Node{ID: g[0].ID, Name: g[0].Name, Memory: g[0].Memory, Speed: g[0].speed(), HasModel: true}
		for _, n := range g {
			v.Memory = min(v.Memory, n.Memory)
			v.Speed = min(v.Speed, n.speed())
			v.HasModel = v.HasModel && n.HasModel
		}
		virt[i] = v
	}
	sub := req
	sub.TensorParallel, sub.Nodes = 0, nil
	m := req.Model
	m.LayerBytes = make([]uint64, len(req.Model.LayerBytes))
	for i, b := range req.Model.LayerBytes {
		m.LayerBytes[i] = (b + k - 1) / k
	}
	m.OutputBytes = (m.OutputBytes + k - 1) / k
	sub.Model = m
	return virt, sub
}

// expandGroups turns a plan over groups into the plan of their nodes: each stage names its
// other members, and its time grows by the swaps between them.
func expandGroups(p *Plan, groups [][]Node, links Links, req Request) *Plan {
	k := req.TensorParallel
	out := &Plan{Context: p.Context}
	for _, st := range p.Stages {
		g := groups[slices.IndexFunc(groups, func(g []Node) bool { return g[0].ID == st.Node })]
		for _, n := range g[1:] {
			st.Shards = append(st.Shards, Member{Node: n.ID, Name: n.Name})
		}
		// The members swap at once; a swap ends when the slowest link of the group has
		// carried a k-th of a hidden state.
		var hop float64
		for _, a := range g {
			for _, b := range g {
				if a.ID != b.ID {
					hop = max(hop, links.cost(a.ID, b.ID, req.Model.HiddenBytes/uint64(k)))
				}
			}
		}
		st.SwapMs = 1000 * hop * float64(swapsPerLayer*(st.End-st.Start)+1)
		st.ComputeMs += st.SwapMs
		out.Stages = append(out.Stages, st)
		out.TokenMs += st.ComputeMs + st.LinkMs
		out.BottleneckMs = max(out.BottleneckMs, st.ComputeMs+st.LinkMs)
		out.MemoryBytes += st.MemoryBytes * uint64(len(g))
	}
	return out
}

func describeGroups(groups [][]Node) string {
	parts := make([]string, len(groups))
	for i, g := range groups {
		names := make([]string, len(g))
		for j, n := range g {
			names[j] = cmp.Or(n.Name, n.ID)
		}
		parts[i] = strings.Join(names, "+")
	}
	return strings.Join(parts, ", ")
}
