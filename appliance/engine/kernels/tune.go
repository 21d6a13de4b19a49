package kernels

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The steps the load-time tuners (TuneStreams, TunePadding) share: each measures a weight type
// once a process, on the matrices of the first model that holds enough of it, with that
// model's threads, and keeps what ran fastest.

// tuneEach groups mats by type, leaving out the types whose kernel set fails want and those
// done holds already, and measures each group with tune; what tune chooses (its false: too few
// weights, nothing chosen) goes into done and is returned.
func tuneEach[C any](mats []*Packed, want func(*packedKernelSet) bool, done map[ggml.Type]C, tune func([]*Packed) (C, bool)) []C {
	byType := map[ggml.Type][]*Packed{}
	var types []ggml.Type
	for _, m := range mats {
		k := m.kernels()
		if k == nil || !want(k) {
			continue
		}
		if _, ok := done[m.t]; ok {
			continue
		}
		if byType[m.t] == nil {
			types = append(types, m.t)
		}
		byType[m.t] = append(byType[m.t], m)
	}
	var made []C
	for _, t := range types {
		c, ok := tune(byType[t])
		if !ok {
			continue
		}
		done[t] = c
		made = append(made, c)
	}
	return made
}

// tuneOps returns a product of n activation rows (random, one set a width) with each of mats
// in turn, for at most limit bytes of weights: the matrices after the limit is reached are
// left out, and where cut is set the last one is cut to the whole panels that fit (at least
// one). It returns the ops and the weight bytes they read.
func tuneOps(mats []*Packed, n int, limit int64, cut bool, seed uint64) ([]MatMulOp, int64) {
	r := rand.New(rand.NewPCG(seed, seed+1))
	acts := map[int][]byte{}
	var ops []MatMulOp
	var total int64
	for _, m := range mats {
		if total >= limit {
			break
		}
		if cut {
			m = m.headPanels(limit - total)
		}
		act := acts[m.cols]
		if act == nil {
			for range n {
				x := make([]float32, m.cols)
				for i := range x {
					x[i] = float32(r.NormFloat64())
				}
				act = append(act, QuantizeActivations(m.t, x, nil)...)
			}
			acts[m.cols] = act
		}
		ops = append(ops, MatMulOp{Type: m.t, Packed: m, Rows: m.rows, Cols: m.cols, N: n,
			Act: act, ActStride: len(act) / n, Out: make([]float32, n*m.rows), OutStride: m.rows})
		total += int64(len(m.data))
	}
	return ops, total
}

// fastestRuns runs ops on p once (allocating MatMul's bookkeeping and faulting the results
// in), then rounds times each setting in turn (nil: left out) followed by one pass, and
// returns each setting's fastest pass (0 for those left out).
func fastestRuns(p *Pool, ops []MatMulOp, rounds int, settings []func()) []time.Duration {
	mm := &MatMul{Ops: ops}
	mm.Run(p)
	best := make([]time.Duration, len(settings))
	for range rounds {
		for i, set := range settings {
			if set == nil {
				continue
			}
			set()
			t0 := time.Now()
			mm.Run(p)
			if d := time.Since(t0); best[i] == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	return best
}

// headPanels is p cut to its first whole panels that hold at most bytes, but at least one
// panel (p itself where it holds at most bytes): the same weights, fewer rows.
func (p *Packed) headPanels(bytes int64) *Packed {
	panels := max(1, min(p.rows/panelRows, int(bytes/int64(p.stride))))
	if bytes >= int64(len(p.data)) || panels*panelRows >= p.rows {
		return p
	}
	h := *p
	h.rows, h.data = panels*panelRows, p.data[:panels*p.stride]
	return &h
}

// gbPerS is bytes over d in GB/s (1e9), 0 for no time.
func gbPerS(bytes int64, d time.Duration) float64 {
	if d == 0 {
		return 0
	}
	return float64(bytes) / d.Seconds() / 1e9
}

// sortedChoices returns done's choices by type.
func sortedChoices[C any](done map[ggml.Type]C) []C {
	out := make([]C, 0, len(done))
	for _, t := range slices.Sorted(maps.Keys(done)) {
		out = append(out, done[t])
	}
	return out
}

// joinChoices is cs in one line ("" for none), for logs.
func joinChoices[C fmt.Stringer](cs []C) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, "; ")
}
