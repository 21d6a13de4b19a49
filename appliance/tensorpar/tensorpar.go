// Package tensorpar runs a tensor-parallel model across nodes: every node loads one shard of
// the same layers (model.Options.Shards), shard 0 drives (it samples, and announces every
// batch and sequence change to the others), and the shards swap the parts of their products
// over one frame stream per pair of shards (model.Exchanger).
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
	"sync"

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
				return fmt.Errorf("write to shard %d: %w", j, err)
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
			return fmt.Errorf("write to shard %d: %w", j, err)
		}
	}
	return nil
}

// read fills parts from the shards that send them.
func (x *Exchanger) read(parts [][]float32) error {
	for j, p := range parts {
		if p == nil {
			continue
		}
		b, err := x.peers[j].ReadFrame(&x.hdr[j], x.bufs[j])
		if err != nil {
			return fmt.Errorf("read from shard %d: %w", j, err)
		}
		x.bufs[j] = b
		got, ok := wire.F32View(b)
		if !ok || x.hdr[j].Kind != wire.KindActivations || len(got) != len(p) {
			return fmt.Errorf("shard %d sent %s of %d bytes, want %d float32 values", j, x.hdr[j].Kind, len(b), len(p))
		}
		copy(p, got)
	}
	return nil
}

// The driver's messages to the other shards, one control frame each: a sequence made, a
// sequence freed, a batch to evaluate. Integers are little-endian.
const (
	opNewSeq  byte = 1 // id u64, context u32
	opFree    byte = 2 // id u64
	opForward byte = 3 // items u32, then per item: id u64, pos u32, all-logits u8, tokens u32, tokens × i32
)

// Item is one sequence's part of a Driver.Forward call.
type Item struct {
	Seq uint64
	model.Batch
}

// Driver runs shard 0 of a sharded stage and keeps the other shards in step with it. It is
// used by one goroutine at a time.
type Driver struct {
	stage   *model.Stage
	control []transport.FrameStream // to shards 1..n-1
	seqs    map[uint64]*model.Seq
	msg     []byte
	items   []model.SeqBatch
	outs    []model.Out
}

// NewDriver drives stage (shard 0, its exchanger set) through control streams to shards
// 1..n-1, in order.
func NewDriver(stage *model.Stage, control []transport.FrameStream) (*Driver, error) {
	if o := stage.Options(); o.Shard != 0 || max(o.Shards, 1) != len(control)+1 {
		return nil, fmt.Errorf("tensorpar: driver of shard %d of %d with %d control streams", o.Shard, o.Shards, len(control))
	}
	return &Driver{stage: stage, control: control, seqs: map[uint64]*model.Seq{}}, nil
}

func (d *Driver) send() error {
	h := wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{uint32(len(d.msg))}}
	for i, c := range d.control {
		if err := c.WriteFrame(&h, d.msg); err != nil {
			return fmt.Errorf("tensorpar: control message to shard %d: %w", i+1, err)
		}
	}
	return nil
}

// NewSequence makes sequence id with a cache of ctxLen positions on every shard.
func (d *Driver) NewSequence(id uint64, ctxLen int) error {
	if _, ok := d.seqs[id]; ok {
		return fmt.Errorf("tensorpar: sequence %d exists", id)
	}
	if err := checkContext(d.stage, ctxLen); err != nil {
		return err
	}
	d.msg = binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint64(append(d.msg[:0], opNewSeq), id), uint32(ctxLen))
	if err := d.send(); err != nil {
		return err
	}
	d.seqs[id] = d.stage.NewSequence(ctxLen)
	return nil
}

// Free drops sequence id on every shard.
func (d *Driver) Free(id uint64) error {
	delete(d.seqs, id)
	d.msg = binary.LittleEndian.AppendUint64(append(d.msg[:0], opFree), id)
	return d.send()
}

// Forward evaluates items on all shards together; the outputs (logits) are shard 0's, valid
// until the next call, as model.Stage.ForwardBatch returns them. A batch the stage refuses is
// refused before anything is sent and leaves the group as it was; any other error (a lost
// shard) leaves the shards out of step, and the group must be closed.
func (d *Driver) Forward(items []Item) ([]model.Out, error) {
	d.items = d.items[:0]
	d.msg = binary.LittleEndian.AppendUint32(append(d.msg[:0], opForward), uint32(len(items)))
	for _, it := range items {
		seq, ok := d.seqs[it.Seq]
		if !ok {
			return nil, fmt.Errorf("tensorpar: no sequence %d", it.Seq)
		}
		d.items = append(d.items, model.SeqBatch{Seq: seq, Batch: it.Batch})
		d.msg = binary.LittleEndian.AppendUint64(d.msg, it.Seq)
		d.msg = binary.LittleEndian.AppendUint32(d.msg, uint32(it.Pos))
		all := byte(0)
		if it.AllLogits {
			all = 1
		}
		d.msg = append(d.msg, all)
		d.msg = binary.LittleEndian.AppendUint32(d.msg, uint32(len(it.Tokens)))
		for _, tk := range it.Tokens {
			d.msg = binary.LittleEndian.AppendUint32(d.msg, uint32(tk))
		}
	}
	// A batch that shard 0 refuses (a position beyond a sequence's cache, a token outside the
	// vocabulary) is refused here, before the other shards see it: they would refuse it too, but
	// a worker takes any failure for the end of the group.
	if err := d.stage.CheckBatch(d.items); err != nil {
		return nil, err
	}
	if err := d.send(); err != nil {
		return nil, err
	}
	d.outs = grow(d.outs, len(items))
	if err := d.stage.ForwardBatch(d.items, d.outs); err != nil {
		return nil, err
	}
	return d.outs, nil
}

// Close tells the other shards that the driver is done; their Serve returns nil.
func (d *Driver) Close() error {
	var errs []error
	for _, c := range d.control {
		errs = append(errs, c.CloseWrite())
	}
	return errors.Join(errs...)
}

// Serve runs a shard other than 0: it carries out the driver's messages from control until the
// driver closes it (nil) or something fails.
func Serve(stage *model.Stage, control transport.FrameStream) error {
	seqs := map[uint64]*model.Seq{}
	var h wire.Header
	var buf []byte
	var items []model.SeqBatch
	var outs []model.Out
	var toks []int32
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
		switch msg[0] {
		case opNewSeq:
			id, ctx := r.u64(), r.u32()
			if r.err != nil {
				return r.err
			}
			if err := checkContext(stage, int(ctx)); err != nil {
				return err
			}
			seqs[id] = stage.NewSequence(int(ctx))
		case opFree:
			id := r.u64()
			if r.err != nil {
				return r.err
			}
			delete(seqs, id)
		case opForward:
			n := int(r.u32())
			items, toks = items[:0], toks[:0]
			type span struct{ lo, hi int }
			var spans []span
			for range n {
				id, pos, all, nt := r.u64(), r.u32(), r.u8(), int(r.u32())
				if r.err != nil || nt > len(r.b)/4 {
					return fmt.Errorf("tensorpar: forward message cut short (%d items)", n)
				}
				seq, ok := seqs[id]
				if !ok {
					return fmt.Errorf("tensorpar: forward names sequence %d, which the driver never made", id)
				}
				lo := len(toks)
				for range nt {
					toks = append(toks, int32(r.u32()))
				}
				spans = append(spans, span{lo, len(toks)})
				items = append(items, model.SeqBatch{Seq: seq, Batch: model.Batch{Pos: int(pos), AllLogits: all != 0}})
			}
			if r.err != nil {
				return r.err
			}
			for i, sp := range spans {
				items[i].Tokens = toks[sp.lo:sp.hi]
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
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.take(8)) }

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

// OpenStreams opens the driver's control stream and the exchange stream on conn, shard 0's
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
			return nil, nil, fmt.Errorf("tensorpar: accept the driver's streams: %w", err)
		}
		switch {
		case s.Service() == ServiceControl && control == nil:
			control = s
		case s.Service() == ServiceExchange && exchange == nil:
			exchange = s
		default:
			s.Cancel("unexpected stream")
			return nil, nil, fmt.Errorf("tensorpar: the driver opened a %s stream", s.Service())
		}
	}
	return control, exchange, nil
}
