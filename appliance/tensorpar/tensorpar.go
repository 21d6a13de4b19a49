// Package tensorpar runs a tensor-parallel model across nodes: every node loads one shard of
// the same layers (model.Options.Shards), shard 0 is used like a whole stage (a scheduler runs
// on it; it samples) and tells the others of every sequence and batch (Mirror, Serve), and the
// shards swap the parts of their products over one frame stream per pair of shards
// (Exchanger).
//
// Where pipeline stages take turns (stage 2 waits while stage 1 computes), all shards read their
// share of the weights at the same time for every token, so two memory-bound nodes decode one
// stream up to twice as fast as one, at the price of four exchanges a layer: a protocol for
// links of tens of microseconds (a LAN, RDMA), not for slow ones.
package tensorpar

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// Exchanger is model.Exchanger over one frame stream to each other shard.
type Exchanger struct {
	self  int
	peers []transport.FrameStream // by shard; nil for self
	bufs  [][]byte
	hdr   []wire.Header
	werr  []error

	// Names, when set, name each shard's node in errors (the streams know only addresses).
	Names []string
}

// shard names shard j in errors.
func (x *Exchanger) shard(j int) string {
	if j < len(x.Names) && x.Names[j] != "" {
		return fmt.Sprintf("shard %d on %s", j, x.Names[j])
	}
	return fmt.Sprintf("shard %d", j)
}

// NewExchanger links shard self to the others; peers[j] is the stream to shard j (nil at self).
func NewExchanger(self int, peers []transport.FrameStream) (*Exchanger, error) {
	if self < 0 || self >= len(peers) || peers[self] != nil {
		return nil, fmt.Errorf("tensorpar: shard %d of %d streams", self, len(peers))
	}
	for j, p := range peers {
		if j != self && p == nil {
			return nil, fmt.Errorf("tensorpar: shard %d has no stream to shard %d", self, j)
		}
	}
	n := len(peers)
	return &Exchanger{self: self, peers: peers, bufs: make([][]byte, n), hdr: make([]wire.Header, n), werr: make([]error, n)}, nil
}

// inlineWrite is the largest part Gather writes before it reads. Every stream's flow-control
// window holds it (yamux's and QUIC's smallest start at 256 KiB), so shards that all write
// first cannot block one another; larger parts (a prompt's) are written by a goroutine while
// Gather reads. Writing inline saves a decode step's small exchanges a hand-off between
// goroutines, which costs a wake-up on a one-core node.
const inlineWrite = 64 << 10

// Gather implements model.Exchanger.
func (x *Exchanger) Gather(part []float32, parts [][]float32, root int) error {
	payload := wire.F32Bytes(part)
	h := wire.Header{Kind: wire.KindActivations, DType: wire.F32, Shape: []uint32{uint32(len(part))}}
	inline := len(payload) <= inlineWrite
	var wg sync.WaitGroup
	for j, s := range x.peers {
		x.werr[j] = nil
		if s == nil || (root >= 0 && root != j) {
			continue
		}
		if inline {
			if err := s.WriteFrame(&h, payload); err != nil {
				return fmt.Errorf("write to %s: %w", x.shard(j), x.explain(j, err))
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := h
			x.werr[j] = s.WriteFrame(&h, payload)
		}()
	}
	rerr := x.read(parts)
	wg.Wait()
	if rerr != nil {
		return rerr
	}
	for j, err := range x.werr {
		if err != nil {
			return fmt.Errorf("write to %s: %w", x.shard(j), x.explain(j, err))
		}
	}
	return nil
}

// reasonWait bounds how long explain waits for a peer's reason.
const reasonWait = time.Second

// explain returns the reason shard j gave for cancelling its stream in place of err, a write's
// bare "stopped reading" or reset, where the reason arrives within reasonWait. A shard that
// cancels sends its reason before it stops reading, so it is queued on the stream, behind any
// part the shard sent first; and it names the cause (often another shard lost), where err
// names only the messenger. The exchange is over either way: the stream is read to its end.
func (x *Exchanger) explain(j int, err error) error {
	if !transport.IsUnexplained(err) {
		return err
	}
	got := make(chan error, 1)
	// The reader outlives a peer that never answers until the session's streams are
	// cancelled, which a failed exchange leads to; it touches nothing of x but the stream.
	go func() {
		var h wire.Header
		var buf []byte
		for {
			b, rerr := x.peers[j].ReadFrame(&h, buf)
			if rerr != nil {
				got <- rerr
				return
			}
			buf = b
		}
	}()
	select {
	case rerr := <-got:
		var ce *transport.CancelledError
		if errors.As(rerr, &ce) && !ce.Unexplained {
			return rerr
		}
	case <-time.After(reasonWait):
	}
	return err
}

// read fills parts from the shards that send them.
func (x *Exchanger) read(parts [][]float32) error {
	for j, p := range parts {
		if p == nil {
			continue
		}
		b, err := x.peers[j].ReadFrame(&x.hdr[j], x.bufs[j])
		if err != nil {
			return fmt.Errorf("read from %s: %w", x.shard(j), err)
		}
		x.bufs[j] = b
		got, ok := wire.F32View(b)
		if !ok || x.hdr[j].Kind != wire.KindActivations || len(got) != len(p) {
			return fmt.Errorf("%s sent %s of %d bytes, want %d float32 values", x.shard(j), x.hdr[j].Kind, len(b), len(p))
		}
		copy(p, got)
	}
	return nil
}

// Shard 0's messages to the other shards, one control frame each: a sequence made, copied or
// freed, a batch to evaluate. Integers are little-endian; sequences are named by shard 0's
// Seq.ID.
const (
	opHello   byte = 5 // the first message: protocol u16, shard u16, shards u16, then the group's shape (groupShape)
	opNewSeq  byte = 1 // id u64, context u32
	opFree    byte = 2 // id u64
	opForward byte = 3 // items u32, then per item: id u64, pos u32, all-logits u8, tokens u32, tokens × i32, hidden u32, hidden × f32
	opExtend  byte = 4 // src u64, dst u64, context u32, keep u32
)

// Mirror is model.Mirror over control streams to shards 1..n-1: shard 0's stage, with it set,
// runs like a stage of its own (a scheduler on it) and the other shards follow (Serve).
type Mirror struct {
	control []transport.FrameStream
	msg     []byte
}

// protocol is the control stream's version: a worker of another version refuses the group.
// (2: a forward item carries the hidden states a stage after the first takes as input.)
const protocol = 2

// NewMirror makes stage (shard 0 of a group of len(control)+1) tell shards 1..n-1 of its
// sequences and batches through control, in order. It first tells each which shard it must be
// and the shape of the group's model, so that a worker of another exo version, or one that
// loaded another model or shard, refuses at once with an error naming the difference.
func NewMirror(stage *model.Stage, control []transport.FrameStream) (*Mirror, error) {
	o := stage.Options()
	if o.Shard != 0 || max(o.Shards, 1) != len(control)+1 {
		return nil, fmt.Errorf("tensorpar: shard %d of %d cannot lead a group of %d", o.Shard, o.Shards, len(control)+1)
	}
	m := &Mirror{control: control}
	for i, c := range control {
		m.msg = le.AppendUint16(append(m.msg[:0], opHello), protocol)
		m.msg = le.AppendUint16(le.AppendUint16(m.msg, uint16(i+1)), uint16(len(control)+1))
		m.msg = append(m.msg, groupShape(stage)...)
		h := wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{uint32(len(m.msg))}}
		if err := c.WriteFrame(&h, m.msg); err != nil {
			return nil, fmt.Errorf("tensorpar: hello to shard %d: %w", i+1, err)
		}
	}
	stage.SetMirror(m)
	return m, nil
}

// groupShape is what the shards of a group must agree on: the model's layer range and
// dimensions, and how they compute (the KV cache type and compute mode change the arithmetic).
func groupShape(st *model.Stage) string {
	c, o := st.Config, st.Options()
	return fmt.Sprintf("layers [%d,%d) of %d, n_embd %d, n_ff %d, heads %d/%d, vocab %d, KV cache %s, compute %s",
		st.First, st.Last, c.NLayer, c.NEmbd, c.NFF, c.NHead, c.NHeadKV, c.NVocab, o.KVType, o.Compute)
}

func (m *Mirror) send() error {
	h := wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{uint32(len(m.msg))}}
	for i, c := range m.control {
		if err := c.WriteFrame(&h, m.msg); err != nil {
			return fmt.Errorf("tensorpar: control message to shard %d: %w", i+1, err)
		}
	}
	return nil
}

// NewSequence implements model.Mirror.
func (m *Mirror) NewSequence(id uint64, ctxLen int) error {
	m.msg = le.AppendUint32(le.AppendUint64(append(m.msg[:0], opNewSeq), id), uint32(ctxLen))
	return m.send()
}

// Extend implements model.Mirror.
func (m *Mirror) Extend(src, dst uint64, ctxLen, keep int) error {
	m.msg = le.AppendUint64(le.AppendUint64(append(m.msg[:0], opExtend), src), dst)
	m.msg = le.AppendUint32(le.AppendUint32(m.msg, uint32(ctxLen)), uint32(keep))
	return m.send()
}

// Free implements model.Mirror.
func (m *Mirror) Free(id uint64) error {
	m.msg = le.AppendUint64(append(m.msg[:0], opFree), id)
	return m.send()
}

// Forward implements model.Mirror.
func (m *Mirror) Forward(items []model.SeqBatch) error {
	m.msg = le.AppendUint32(append(m.msg[:0], opForward), uint32(len(items)))
	for _, it := range items {
		m.msg = le.AppendUint32(le.AppendUint64(m.msg, it.Seq.ID()), uint32(it.Pos))
		all := byte(0)
		if it.AllLogits {
			all = 1
		}
		m.msg = le.AppendUint32(append(m.msg, all), uint32(len(it.Tokens)))
		for _, tk := range it.Tokens {
			m.msg = le.AppendUint32(m.msg, uint32(tk))
		}
		m.msg = le.AppendUint32(m.msg, uint32(len(it.Hidden)))
		for _, v := range it.Hidden {
			m.msg = le.AppendUint32(m.msg, math.Float32bits(v))
		}
	}
	return m.send()
}

// Close tells the other shards that shard 0 is done; their Serve returns nil.
func (m *Mirror) Close() error {
	var errs []error
	for _, c := range m.control {
		errs = append(errs, c.CloseWrite())
	}
	return errors.Join(errs...)
}

var le = binary.LittleEndian

// Serve runs a shard other than 0: it carries out shard 0's messages from control until shard
// 0 closes it (nil) or something fails (the group is over then). live, when not nil, follows
// the number of sequences the session holds.
func Serve(stage *model.Stage, control transport.FrameStream, live *atomic.Int64) error {
	seqs := map[uint64]*model.Seq{}
	if live == nil {
		live = new(atomic.Int64)
	}
	defer live.Store(0)
	lookup := func(id uint64) (*model.Seq, error) {
		if q, ok := seqs[id]; ok {
			return q, nil
		}
		return nil, fmt.Errorf("tensorpar: shard 0 names sequence %d, which it never made", id)
	}
	var h wire.Header
	var buf []byte
	var items []model.SeqBatch
	var outs []model.Out
	var toks []int32
	var hidden []float32
	var spans, hspans [][2]int
	hello := false
	for {
		msg, err := control.ReadFrame(&h, buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tensorpar: control stream: %w", err)
		}
		buf = msg
		if h.Kind != wire.KindControl || len(msg) == 0 {
			return fmt.Errorf("tensorpar: control stream sent a %s frame of %d bytes", h.Kind, len(msg))
		}
		r := reader{b: msg[1:]}
		if !hello && msg[0] != opHello {
			return fmt.Errorf("tensorpar: shard 0 sent op %d before its hello", msg[0])
		}
		switch msg[0] {
		case opHello:
			if hello {
				return errors.New("tensorpar: shard 0 said hello twice")
			}
			hello = true
			proto, shard, shards := r.u16(), int(r.u16()), int(r.u16())
			if r.err != nil {
				return r.err
			}
			if proto != protocol {
				return fmt.Errorf("tensorpar: shard 0 speaks group protocol %d, this node %d (another exo version)", proto, protocol)
			}
			if o := stage.Options(); o.Shard != shard || max(o.Shards, 1) != shards {
				return fmt.Errorf("tensorpar: shard 0 takes this node for shard %d of %d; it loaded shard %d of %d", shard, shards, o.Shard, o.Shards)
			}
			if theirs, ours := string(r.b), groupShape(stage); theirs != ours {
				return fmt.Errorf("tensorpar: shard 0's model is %s; this node's %s", theirs, ours)
			}
		case opNewSeq:
			id, ctx := r.u64(), int(r.u32())
			if r.err != nil {
				return r.err
			}
			if err := checkContext(stage, ctx); err != nil {
				return err
			}
			if _, ok := seqs[id]; ok {
				return fmt.Errorf("tensorpar: shard 0 makes sequence %d twice", id)
			}
			seqs[id] = stage.NewSequence(ctx)
			live.Store(int64(len(seqs)))
		case opExtend:
			src, dst, ctx, keep := r.u64(), r.u64(), int(r.u32()), int(r.u32())
			if r.err != nil {
				return r.err
			}
			q, err := lookup(src)
			if err != nil {
				return err
			}
			if err := checkContext(stage, ctx); err != nil {
				return err
			}
			if _, ok := seqs[dst]; ok {
				return fmt.Errorf("tensorpar: shard 0 makes sequence %d twice", dst)
			}
			if seqs[dst], err = q.Extend(ctx, keep); err != nil {
				return err
			}
			live.Store(int64(len(seqs)))
		case opFree:
			id := r.u64()
			if r.err != nil {
				return r.err
			}
			q, err := lookup(id)
			if err != nil {
				return err
			}
			q.Free()
			delete(seqs, id)
			live.Store(int64(len(seqs)))
		case opForward:
			n := int(r.u32())
			items, toks, spans, hidden, hspans = items[:0], toks[:0], spans[:0], hidden[:0], hspans[:0]
			for range n {
				id, pos, all, nt := r.u64(), r.u32(), r.u8(), int(r.u32())
				if r.err != nil || nt > len(r.b)/4 {
					return fmt.Errorf("tensorpar: forward message cut short (%d items)", n)
				}
				q, err := lookup(id)
				if err != nil {
					return err
				}
				lo := len(toks)
				for range nt {
					toks = append(toks, int32(r.u32()))
				}
				spans = append(spans, [2]int{lo, len(toks)})
				nh := int(r.u32())
				if r.err != nil || nh > len(r.b)/4 {
					return fmt.Errorf("tensorpar: forward message cut short (%d items)", n)
				}
				lo = len(hidden)
				for range nh {
					hidden = append(hidden, math.Float32frombits(r.u32()))
				}
				hspans = append(hspans, [2]int{lo, len(hidden)})
				items = append(items, model.SeqBatch{Seq: q, Batch: model.Batch{Pos: int(pos), AllLogits: all != 0}})
			}
			if r.err != nil {
				return r.err
			}
			for i, sp := range spans {
				items[i].Tokens = toks[sp[0]:sp[1]]
				if h := hspans[i]; h[1] > h[0] {
					items[i].Hidden = hidden[h[0]:h[1]]
				}
			}
			outs = grow(outs, len(items))
			if err := stage.ForwardBatch(items, outs); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tensorpar: unknown control op %d", msg[0])
		}
	}
}

// checkContext bounds a sequence's cache by the model's context.
func checkContext(st *model.Stage, ctxLen int) error {
	if ctxLen < 1 || ctxLen > st.Config.ContextLength {
		return fmt.Errorf("tensorpar: a context of %d positions is not within the model's 1..%d", ctxLen, st.Config.ContextLength)
	}
	return nil
}

// reader takes little-endian integers off a message, remembering the first shortfall.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errors.New("tensorpar: control message cut short")
		return make([]byte, n)
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() byte    { return r.take(1)[0] }
func (r *reader) u16() uint16 { return le.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return le.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return le.Uint64(r.take(8)) }

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// Transport services of this package (netstack leaves 16 and up to the layers above; the
// pipeline uses 16).
const (
	ServiceControl  transport.Service = 17
	ServiceExchange transport.Service = 18
)

// OpenStreams opens shard 0's control stream and the exchange stream on conn, shard 0's
// connection to shard 1 of a two-shard group.
func OpenStreams(ctx context.Context, conn transport.Conn) (control, exchange transport.Stream, err error) {
	if control, err = conn.OpenStream(ctx, ServiceControl); err != nil {
		return nil, nil, fmt.Errorf("tensorpar: open control stream: %w", err)
	}
	if exchange, err = conn.OpenStream(ctx, ServiceExchange); err != nil {
		control.Cancel("no exchange stream")
		return nil, nil, fmt.Errorf("tensorpar: open exchange stream: %w", err)
	}
	return control, exchange, nil
}

// AcceptStreams accepts the two streams OpenStreams opens, in either order.
func AcceptStreams(ctx context.Context, conn transport.Conn) (control, exchange transport.Stream, err error) {
	for control == nil || exchange == nil {
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("tensorpar: accept shard 0's streams: %w", err)
		}
		switch {
		case s.Service() == ServiceControl && control == nil:
			control = s
		case s.Service() == ServiceExchange && exchange == nil:
			exchange = s
		default:
			s.Cancel("unexpected stream")
			return nil, nil, fmt.Errorf("tensorpar: shard 0 opened a %s stream", s.Service())
		}
	}
	return control, exchange, nil
}
