package model

import (
	"fmt"

	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// Tensor parallelism: a stage loaded with Options.Shards = n > 1 holds only its share of the
// output rows of every matrix (ShardRows), so n nodes hold a model none of them could alone and
// all read their shares at once for every token, where pipeline stages take turns. After each
// group of products the shards swap their parts of the outputs (Exchanger.Gather), so every
// shard goes on with the whole vectors: every output row is the same dot of a weight row with
// the same activations as on one node, so a sharded model computes exactly what one node
// computes. Four swaps a layer: the query, key and value products; the attention output
// product; the gated activation (computed on each shard's own rows of gate and up, so only its
// result travels); the down product. Each shard keeps the whole KV cache and computes attention
// for all heads, which is cheap beside the products at the contexts a chat uses. Logits go to
// shard 0 only (the shard that samples).

// Exchanger carries a sharded stage's parts of a product's outputs between its shards.
type Exchanger interface {
	// Gather sends part, this shard's rows, to the other shards (to every one when root < 0,
	// else to root only) and, on a shard that receives, fills parts[j] with shard j's part
	// (parts[j] has the length that part has on shard j, zero included; parts of this shard
	// and of shards it receives nothing from are nil). Every shard calls Gather with the same
	// root, in the same order. A peer lost or a stream broken is an error; the stage's pass
	// then fails.
	Gather(part []float32, parts [][]float32, root int) error
}

// Mirror keeps the other shards of a group in step with shard 0, which is used like any stage
// (a scheduler runs on it): every sequence made, copied or freed and every batch is told to the
// mirror before shard 0 acts on it, and the other shards do the same with theirs
// (tensorpar.Mirror sends it all over a control stream). Sequences are named by Seq.ID.
type Mirror interface {
	NewSequence(id uint64, ctxLen int) error
	Extend(src, dst uint64, ctxLen, keep int) error
	Free(id uint64) error
	// Forward is told of a batch that shard 0 has checked and will run.
	Forward(items []SeqBatch) error
}

// SetMirror makes the stage tell m of its sequences and batches; it must be called before the
// first sequence is made.
func (s *Stage) SetMirror(m Mirror) { s.mirror = m }

// announce tells the mirror of a change, in order with the passes; a failure is kept, and the
// stage's next ForwardBatch returns it (the group is out of step from then on).
func (s *Stage) announce(tell func(Mirror) error) {
	if s.mirror == nil {
		return
	}
	s.group.Lock()
	defer s.group.Unlock()
	if s.groupErr == nil {
		if err := tell(s.mirror); err != nil {
			s.groupErr = fmt.Errorf("model: tell the other shards: %w", err)
		}
	}
}

// shardAlign is the granularity of a shard's rows: whole panels of the packed layout, so that a
// shard's packed copy is the same bytes as that part of one node's.
const shardAlign = 16

// ShardRows returns the rows [lo, hi) of a matrix of rows rows that shard i of n holds: the
// matrix cut in units of shardAlign rows, spread as evenly as they go, earlier shards taking
// the extra units, the last shard the rows past the last whole unit.
func ShardRows(rows, i, n int) (lo, hi int) {
	if n <= 1 {
		return 0, rows
	}
	units := rows / shardAlign
	at := func(k int) int {
		if k == n {
			return rows
		}
		u := units/n*k + min(k, units%n)
		return u * shardAlign
	}
	return at(i), at(i + 1)
}

// shardPart is one product of the current group whose outputs the shards swap.
type shardPart struct {
	out  []float32 // tokens × full rows
	full int
}

// SetExchanger connects a sharded stage to its other shards; it must be called before the
// first ForwardBatch and not while one runs.
func (s *Stage) SetExchanger(x Exchanger) { s.ex = x }

// Sharded reports whether the stage holds only a share of its matrices' rows.
func (s *Stage) Sharded() bool { return s.opts.sharded() }

// exchange swaps the shards' parts of the group's products (ws.parts) for the pass's first nt
// tokens; with root >= 0 only root receives. It records a failure in ws.err and reports
// whether the pass may go on.
func (s *Stage) exchange(ws *workspace, nt, root int) bool {
	if !s.Sharded() || ws.err != nil {
		return ws.err == nil
	}
	self, n := s.opts.Shard, s.opts.Shards
	size := func(j int) int {
		k := 0
		for _, p := range ws.parts {
			lo, hi := ShardRows(p.full, j, n)
			k += nt * (hi - lo)
		}
		return k
	}
	ws.send = grow(ws.send, size(self))
	o := 0
	for _, p := range ws.parts {
		lo, hi := ShardRows(p.full, self, n)
		for t := range nt {
			o += copy(ws.send[o:], p.out[t*p.full+lo:t*p.full+hi])
		}
	}
	ws.recv = grow(ws.recv, n)
	ws.recvBuf = grow(ws.recvBuf, n)
	for j := range n {
		ws.recv[j] = nil
		if j != self && (root < 0 || root == self) {
			ws.recvBuf[j] = grow(ws.recvBuf[j], size(j))
			if ws.recvBuf[j] == nil {
				ws.recvBuf[j] = []float32{} // an empty part is received all the same
			}
			ws.recv[j] = ws.recvBuf[j]
		}
	}
	if err := s.ex.Gather(ws.send, ws.recv, root); err != nil {
		ws.err = fmt.Errorf("model: shard %d of %d: exchange with the other shards: %w", self, n, err)
		return false
	}
	for j, r := range ws.recv {
		if r == nil {
			continue
		}
		o := 0
		for _, p := range ws.parts {
			lo, hi := ShardRows(p.full, j, n)
			for t := range nt {
				o += copy(p.out[t*p.full+lo:t*p.full+hi], r[o:])
			}
		}
	}
	return true
}

// shardGLU is the gated activation of the feed-forward block on this shard's rows of gate and
// up: gate becomes SiLU(gate)·up there, as elemGLU computes it element by element.
func (s *Stage) shardGLU(ws *workspace, nt int) {
	c := s.Config
	lo, hi := ShardRows(c.NFF, s.opts.Shard, s.opts.Shards)
	for t := range nt {
		gate, up := ws.gate[t*c.NFF+lo:t*c.NFF+hi], ws.up[t*c.NFF+lo:t*c.NFF+hi]
		if s.opts.Compute == ComputeF32 {
			kernels.SiLU(gate, gate)
		} else {
			kernels.SiLUFast(gate, gate)
		}
		kernels.Mul(gate, gate, up)
	}
}
