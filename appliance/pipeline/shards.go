package pipeline

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/tensorpar"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// Tensor-parallel stages. A stage placed on a group (state.Stage.Shards) is loaded as shard 0
// on its node and as shard k on the k-th other member: each holds its share of every matrix's
// rows (model.Options.Shard). Shard 0 is the stage as the pipeline sees it: the driver and the
// neighbouring stages talk to it alone, its batcher and requests are those of any stage. Once
// loaded, shard 0 opens two data streams to every other member (opShard, the group's control
// messages; opShardExchange, the parts the shards swap within every pass), each member opens
// an exchange stream to every member after it when its control stream arrives, and the
// shards swap over that mesh (tensorpar.Exchanger); shard 0's stage tells the others of every
// sequence and batch (tensorpar.Mirror), and each member runs tensorpar.Serve on its shard.
//
// A group session ends when any member goes: the other members' shards are then loaded afresh
// (their sequences are gone with the session), and shard 0, whose stage refuses every pass
// after a failed swap, loads again and reconnects. Requests running at that moment fail with
// the cause, naming the node that went.

// Ops of the open message of a group's streams.
const (
	opShard         = "shard"          // shard 0's control stream to another shard of its stage
	opShardExchange = "shard-exchange" // a stream two shards swap their parts over
)

// groupConnectWait bounds how long shard 0 keeps trying to reach the other members.
const groupConnectWait = time.Minute

// shardGroup is shard 0's link to the other shards of its stage.
type shardGroup struct {
	members []groupMember // shards 1..n-1
	mirror  *tensorpar.Mirror
}

// groupMember is one other shard of shard 0's group and the streams to it.
type groupMember struct {
	node, name     string
	control, swaps transport.FrameStream
}

// close ends the session: the other shards' Serve returns, and they load their shards afresh.
func (g *shardGroup) close() {
	_ = g.mirror.Close()
	for _, m := range g.members {
		m.swaps.Cancel("pipeline: shard 0 left the group")
	}
}

// groupRefs lists a stage's group in shard order, with the members' transport addresses.
func (h *Host) groupRefs(st state.Stage) ([]StageRef, error) {
	var out []StageRef
	for i, id := range st.Nodes() {
		name := st.NodeName
		if i > 0 {
			name = st.Shards[i-1].NodeName
		}
		ref := StageRef{Node: id, Name: cmp.Or(name, id), Layers: st.Layers}
		if id != h.cfg.NodeID {
			if h.cfg.Addr != nil {
				ref.Addr = h.cfg.Addr(id)
			}
			if ref.Addr == "" {
				return nil, fmt.Errorf("the transport address of %s (shard %d) is not known (not a live member)", ref.Name, i)
			}
		}
		out = append(out, ref)
	}
	return out, nil
}

// connectGroup links a loaded shard 0 to the other members of its stage, retrying while a
// member's address is unknown or its transport unreachable.
func (h *Host) connectGroup(ctx context.Context, sl *slot) (*shardGroup, error) {
	deadline := time.Now().Add(groupConnectWait)
	for {
		g, err := h.openGroup(ctx, sl)
		if err == nil {
			return g, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("reach the other shards: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// exchangeOp names the rendezvous of a session's exchange stream from shard from.
func exchangeOp(from int) string { return fmt.Sprintf("%s/%d", opShardExchange, from) }

// openGroup opens a session: an exchange and a control stream to every other member. The
// members open exchange streams to each other when their control stream arrives.
func (h *Host) openGroup(ctx context.Context, sl *slot) (*shardGroup, error) {
	refs, err := h.groupRefs(sl.inst.Stages[sl.index])
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	o := openMsg{Proto: protoVersion, Instance: sl.inst.ID, Model: sl.inst.Model, Request: binary.LittleEndian.Uint64(b[:]) | 1,
		Stage: sl.index, Stages: stageRefs(sl), Group: refs}
	g := &shardGroup{}
	fail := func(err error) (*shardGroup, error) {
		for _, m := range g.members {
			for _, s := range []transport.FrameStream{m.control, m.swaps} {
				if s != nil {
					s.Cancel("pipeline: " + err.Error())
				}
			}
		}
		return nil, err
	}
	open := func(to StageRef, op string, shard int) (transport.FrameStream, error) {
		s, err := h.cfg.Net.OpenData(ctx, to.Node, to.Addr, false)
		if err != nil {
			return nil, fmt.Errorf("%s (shard %d): %w", to.Name, shard, err)
		}
		m := o
		m.Op, m.Shard = op, shard
		if err := writeJSON(s, o.Request, &m); err != nil {
			s.Cancel("pipeline: " + err.Error())
			return nil, fmt.Errorf("%s (shard %d): %w", to.Name, shard, err)
		}
		return s, nil
	}
	peers := []transport.FrameStream{nil}
	var controls []transport.FrameStream
	names := []string{refs[0].Name}
	for k, ref := range refs[1:] {
		m := groupMember{node: ref.Node, name: ref.Name}
		var err error
		if m.swaps, err = open(ref, opShardExchange, k+1); err == nil {
			m.control, err = open(ref, opShard, k+1)
		}
		g.members = append(g.members, m)
		if err != nil {
			return fail(err)
		}
		peers, controls, names = append(peers, m.swaps), append(controls, m.control), append(names, ref.Name)
	}
	x, err := tensorpar.NewExchanger(0, peers)
	if err != nil {
		return fail(err)
	}
	x.Names = names
	sl.stage.SetExchanger(&countingExchanger{x: x, stats: &sl.swaps})
	if g.mirror, err = tensorpar.NewMirror(sl.stage, controls); err != nil {
		return fail(err)
	}
	sl.stage.SetMirror(g.mirror)
	return g, nil
}

// watchGroup waits for any other shard to end the session (they never write on their control
// streams, so a read returns only when a stream or its connection ends) and then loads the
// stage again, which reconnects.
func (h *Host) watchGroup(sl *slot, g *shardGroup) {
	ended := make(chan string, len(g.members))
	for _, m := range g.members {
		go func() {
			_, err := m.control.ReadFrame(new(wire.Header), nil)
			why := m.name + " closed the group"
			if err != nil {
				why = reason(err)
			}
			ended <- why
		}()
	}
	// The readers end with their streams; the host closing does not wait for a member that
	// is gone to time out.
	var why string
	select {
	case why = <-ended:
	case <-h.ctx.Done():
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if sl.retired || h.slots[sl.inst.ID] != sl {
		return
	}
	h.log.Warn("tensor-parallel group lost another shard; loading the stage again", "instance", sl.inst.ID,
		"layers", sl.layers, "reason", why)
	h.restart(sl)
}

// restart replaces a slot by a fresh load of the same role (h.mu held).
func (h *Host) restart(sl *slot) {
	delete(h.slots, sl.inst.ID)
	h.retire(sl)
	h.startLoad(sl.inst, sl.index, sl.shard)
}

// serveShard runs a group session on this node's shard: the control stream o came on. Shard 0
// opened an exchange stream just before it; this shard opens one to every higher shard and
// takes the lower shards' from them.
func (h *Host) serveShard(s transport.FrameStream, o *openMsg) {
	n, k := len(o.Group), o.Shard
	if o.Request == 0 || k <= 0 || k >= n || o.Stage < 0 || o.Stage >= len(o.Stages) || o.Group[k].Node != h.cfg.NodeID {
		s.Cancel("pipeline: shard stream without a session, a shard of its group or its stage")
		return
	}
	peers := make([]transport.FrameStream, n)
	cancel := func(why string) {
		s.Cancel(why)
		for _, p := range peers {
			if p != nil {
				p.Cancel(why)
			}
		}
	}
	for j := k + 1; j < n; j++ {
		p, err := h.cfg.Net.OpenData(h.ctx, o.Group[j].Node, o.Group[j].Addr, false)
		if err == nil {
			m := *o
			m.Op, m.Shard, m.From = opShardExchange, j, k
			if err = writeJSON(p, o.Request, &m); err != nil {
				p.Cancel("pipeline: " + err.Error())
			}
		}
		if err != nil {
			cancel(fmt.Sprintf("pipeline: shard %d on %s cannot reach shard %d on %s: %v", k, h.cfg.NodeName, j, o.Group[j].Name, err))
			return
		}
		peers[j] = p
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
		cancel("pipeline: " + err.Error())
		return
	}
	for j := 0; j < k && err == nil; j++ {
		ss, ok := h.claim(o.Request, exchangeOp(j), nil)
		if !ok {
			err = fmt.Errorf("no exchange stream came from shard %d on %s", j, o.Group[j].Name)
			break
		}
		peers[j] = ss.s
	}
	var x *tensorpar.Exchanger
	if err == nil {
		x, err = tensorpar.NewExchanger(k, peers)
	}
	if err == nil {
		x.Names = make([]string, n)
		for j, ref := range o.Group {
			x.Names[j] = ref.Name
		}
		sl.stage.SetExchanger(&countingExchanger{x: x, stats: &sl.swaps})
		h.log.Info("tensor-parallel group session started", "instance", o.Instance, "layers", sl.layers, "shard", k, "shards", n)
		err = tensorpar.Serve(sl.stage, s, &sl.sessionSeqs)
	}
	if err != nil {
		why := fmt.Sprintf("shard %d of stage %d [%d,%d) of %s on %s: %v", k, o.Stage+1, sl.layers[0], sl.layers[1], o.Model, h.cfg.NodeName, err)
		cancel(why)
		h.log.Warn("tensor-parallel group session ended", "instance", o.Instance, "reason", why)
	} else {
		_ = s.CloseWrite()
		for _, p := range peers {
			if p != nil {
				p.Cancel("pipeline: group session over")
			}
		}
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

// countingExchanger counts a shard's swaps and the time they take.
type countingExchanger struct {
	x     *tensorpar.Exchanger
	stats *swapStats
}

// swapStats are a tensor-parallel shard's swaps: how many, and the time from sending its part
// to having the others' (waiting for the slower shard included).
type swapStats struct {
	n  atomic.Uint64
	ns atomic.Int64
}

func (c *countingExchanger) Gather(part []float32, parts [][]float32, root int) error {
	t := time.Now()
	err := c.x.Gather(part, parts, root)
	c.stats.ns.Add(int64(time.Since(t)))
	c.stats.n.Add(1)
	return err
}

// attachExchange parks a group's exchange stream for the shard it goes to.
func (h *Host) attachExchange(s transport.FrameStream, o *openMsg) {
	if o.Request == 0 || o.From < 0 || o.From >= o.Shard {
		s.Cancel("pipeline: exchange stream without a session or from a shard not below its own")
		return
	}
	select {
	case h.rendezvous(o.Request, exchangeOp(o.From)).ch <- sideStream{s: s, open: o}:
	default:
		s.Cancel(fmt.Sprintf("pipeline: a second exchange stream from shard %d in session %d", o.From, o.Request))
	}
}

// stageRefs describes the slot's instance as open messages carry it.
func stageRefs(sl *slot) []StageRef {
	out := make([]StageRef, len(sl.inst.Stages))
	for i, st := range sl.inst.Stages {
		out[i] = StageRef{Node: st.Node, Name: st.NodeName, Layers: st.Layers}
	}
	return out
}
