package pipeline

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/exo-nix/exo/appliance/tensorpar"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// Tensor-parallel stages. A stage placed on a group (state.Stage.Shards) is loaded as shard 0
// on its node and as shard k on the k-th other member: each holds its share of every matrix's
// rows (model.Options.Shard). Shard 0 is the stage as the pipeline sees it: the driver and the
// neighbouring stages talk to it alone, its batcher and requests are those of any stage. Once
// loaded, shard 0 opens two data streams to the other member (opShard, the group's control
// messages; opShardExchange, the parts the shards swap within every pass) and makes its stage
// tell the other shard of every sequence and batch (tensorpar.Mirror) and swap through the
// exchange stream (tensorpar.Exchanger); the member runs tensorpar.Serve on its shard.
//
// A group session ends when either side goes: the member's shard is then loaded afresh (its
// sequences are gone with the session), and shard 0, whose stage refuses every pass after a
// failed swap, loads again and reconnects. Requests running at that moment fail with the
// cause, naming the node that went.

// Ops of the open message of a group's streams.
const (
	opShard         = "shard"          // shard 0's control stream to another shard of its stage
	opShardExchange = "shard-exchange" // the stream the two shards swap their parts over
)

// groupConnectWait bounds how long shard 0 keeps trying to reach the other members.
const groupConnectWait = time.Minute

// shardGroup is shard 0's link to the other shard of its stage.
type shardGroup struct {
	node, name     string
	control, swaps transport.FrameStream
	mirror         *tensorpar.Mirror
}

// close ends the session: the other shard's Serve returns, and it loads its shard afresh.
func (g *shardGroup) close() {
	_ = g.mirror.Close()
	g.swaps.Cancel("pipeline: shard 0 left the group")
}

// connectGroup links a loaded shard 0 to the other member of its stage, retrying while the
// member's address is unknown or its transport unreachable.
func (h *Host) connectGroup(ctx context.Context, sl *slot) (*shardGroup, error) {
	st := sl.inst.Stages[sl.index]
	if len(st.Shards) != 1 {
		return nil, fmt.Errorf("a tensor-parallel stage of %d nodes: this version runs groups of two", len(st.Shards)+1)
	}
	member := st.Shards[0]
	g := &shardGroup{node: member.Node, name: member.NodeName}
	if g.name == "" {
		g.name = member.Node
	}
	deadline := time.Now().Add(groupConnectWait)
	var last error
	for {
		err := h.openGroup(ctx, sl, g)
		if err == nil {
			return g, nil
		}
		last = err
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("reach shard 1 on %s: %w", g.name, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (h *Host) openGroup(ctx context.Context, sl *slot, g *shardGroup) error {
	addr := ""
	if h.cfg.Addr != nil {
		addr = h.cfg.Addr(g.node)
	}
	if addr == "" {
		return errors.New("its transport address is not known (not a live member)")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	o := openMsg{Proto: protoVersion, Instance: sl.inst.ID, Model: sl.inst.Model, Request: binary.LittleEndian.Uint64(b[:]) | 1,
		Stage: sl.index, Stages: stageRefs(sl), Shard: 1}
	open := func(op string) (transport.FrameStream, error) {
		s, err := h.cfg.Net.OpenData(ctx, g.node, addr, false)
		if err != nil {
			return nil, err
		}
		o.Op = op
		if err := writeJSON(s, o.Request, &o); err != nil {
			s.Cancel("pipeline: " + err.Error())
			return nil, err
		}
		return s, nil
	}
	var err error
	if g.swaps, err = open(opShardExchange); err != nil {
		return err
	}
	if g.control, err = open(opShard); err != nil {
		g.swaps.Cancel("pipeline: no control stream")
		return err
	}
	x, err := tensorpar.NewExchanger(0, []transport.FrameStream{nil, g.swaps})
	if err == nil {
		sl.stage.SetExchanger(&namedExchanger{x: x, peer: fmt.Sprintf("shard 1 on %s", g.name), stats: &sl.swaps})
		g.mirror, err = tensorpar.NewMirror(sl.stage, []transport.FrameStream{g.control})
	}
	if err != nil {
		g.control.Cancel("pipeline: " + err.Error())
		g.swaps.Cancel("pipeline: " + err.Error())
		return err
	}
	sl.stage.SetMirror(g.mirror)
	return nil
}

// watchGroup waits for the other shard to end the session (it never writes on the control
// stream, so a read returns only when the stream or its connection ends) and then loads the
// stage again, which reconnects.
func (h *Host) watchGroup(sl *slot, g *shardGroup) {
	_, err := g.control.ReadFrame(new(wire.Header), nil)
	h.mu.Lock()
	defer h.mu.Unlock()
	if sl.retired || h.slots[sl.inst.ID] != sl {
		return
	}
	why := "it closed the group"
	if err != nil {
		why = reason(err)
	}
	h.log.Warn("tensor-parallel group lost its other shard; loading the stage again", "instance", sl.inst.ID,
		"layers", sl.layers, "shard_node", g.name, "reason", why)
	h.restart(sl)
}

// restart replaces a slot by a fresh load of the same role (h.mu held).
func (h *Host) restart(sl *slot) {
	delete(h.slots, sl.inst.ID)
	h.retire(sl)
	h.startLoad(sl.inst, sl.index, sl.shard)
}

// serveShard runs a group session on this node's shard: the control stream o came on, with
// the exchange stream opened just before it.
func (h *Host) serveShard(s transport.FrameStream, o *openMsg) {
	if o.Request == 0 || o.Shard <= 0 || o.Stage < 0 || o.Stage >= len(o.Stages) {
		s.Cancel("pipeline: shard stream without a session, a shard or its stage")
		return
	}
	ex, ok := h.claim(o.Request, opShardExchange, nil)
	if !ok {
		s.Cancel(fmt.Sprintf("pipeline: node %s got no exchange stream for the group session", h.cfg.NodeName))
		return
	}
	// A new session replaces one still running (shard 0 loaded again before this node saw
	// the old connection go).
	h.mu.Lock()
	if old := h.slots[o.Instance]; old != nil && old.session != nil {
		old.session.Cancel("pipeline: shard 0 started a new group session")
		done := old.sessionDone
		h.mu.Unlock()
		<-done
	} else {
		h.mu.Unlock()
	}
	sl, err := h.acquire(context.Background(), o, s)
	if err != nil {
		s.Cancel("pipeline: " + err.Error())
		ex.s.Cancel("pipeline: " + err.Error())
		return
	}
	x, err := tensorpar.NewExchanger(o.Shard, []transport.FrameStream{ex.s, nil})
	if err == nil {
		sl.stage.SetExchanger(&namedExchanger{x: x, peer: "shard 0 on " + cmp.Or(o.Stages[o.Stage].Name, o.Stages[o.Stage].Node), stats: &sl.swaps})
		h.log.Info("tensor-parallel group session started", "instance", o.Instance, "layers", sl.layers, "shard", o.Shard)
		err = tensorpar.Serve(sl.stage, s, &sl.sessionSeqs)
	}
	if err != nil {
		why := fmt.Sprintf("shard %d of stage %d [%d,%d) of %s on %s: %v", o.Shard, o.Stage+1, sl.layers[0], sl.layers[1], o.Model, h.cfg.NodeName, err)
		s.Cancel(why)
		ex.s.Cancel(why)
		h.log.Warn("tensor-parallel group session ended", "instance", o.Instance, "reason", why)
	} else {
		ex.s.Cancel("pipeline: group session over")
		h.log.Info("tensor-parallel group session ended: shard 0 closed it", "instance", o.Instance)
	}
	// The session's sequences are gone with it: the shard starts afresh for the next one.
	h.mu.Lock()
	close(sl.sessionDone)
	sl.session = nil
	switch {
	case !sl.retired && h.slots[sl.inst.ID] == sl:
		h.restart(sl)
	case sl.refs == 0:
		h.unload(sl)
	}
	h.mu.Unlock()
}

// namedExchanger names the node of the other shard in a failed swap's error (the transport
// knows only its address) and counts the swaps and the time they take.
type namedExchanger struct {
	x     *tensorpar.Exchanger
	peer  string
	stats *swapStats
}

// swapStats are a tensor-parallel shard's swaps: how many, and the time from sending its part
// to having the others' (waiting for the slower shard included).
type swapStats struct {
	n  atomic.Uint64
	ns atomic.Int64
}

func (n *namedExchanger) Gather(part []float32, parts [][]float32, root int) error {
	t := time.Now()
	err := n.x.Gather(part, parts, root)
	n.stats.ns.Add(int64(time.Since(t)))
	n.stats.n.Add(1)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, n.peer)
	}
	return nil
}

// attachExchange parks a group's exchange stream for its control stream.
func (h *Host) attachExchange(s transport.FrameStream, o *openMsg) {
	if o.Request == 0 {
		s.Cancel("pipeline: exchange stream without a session")
		return
	}
	h.attach(sideStream{s: s, open: o})
}

// stageRefs describes the slot's instance as open messages carry it.
func stageRefs(sl *slot) []StageRef {
	out := make([]StageRef, len(sl.inst.Stages))
	for i, st := range sl.inst.Stages {
		out[i] = StageRef{Node: st.Node, Name: st.NodeName, Layers: st.Layers}
	}
	return out
}
