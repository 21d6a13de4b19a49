package tensorpar

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/appliance/engine/scheduler"
	"github.com/exo-nix/exo/appliance/testfixtures"
	"github.com/exo-nix/exo/netstack/nettest"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

func openModel(t testing.TB, rel ...string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(testfixtures.Path(t, rel...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// connected returns two ends of a real tensor connection on loopback (mutual TLS, mode).
func connected(t testing.TB, mode transport.Mode) (driver, worker transport.Conn) {
	t.Helper()
	ca := nettest.NewCA(t, "cluster")
	ln, err := transport.Listen("127.0.0.1:0", transport.Config{ServerTLS: ca.ServerTLS(t, "w"), ClientTLS: ca.ClientTLS(t, "w")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	d, err := transport.NewDialer(transport.Config{ClientTLS: ca.ClientTLS(t, "d"), Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if driver, err = d.Dial(ctx, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if worker, err = ln.Accept(ctx); err != nil {
		t.Fatal(err)
	}
	return driver, worker
}

// group is a two-shard group in one process: shard 0 used here, shard 1 served by a goroutine,
// over a real connection.
type group struct {
	stage  *model.Stage // shard 0
	mirror *Mirror
	served chan error
	wconn  transport.Conn
}

func layers(t testing.TB, f *gguf.File) int {
	t.Helper()
	c, err := model.ConfigFromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	return c.NLayer
}

func startGroup(t testing.TB, f *gguf.File, kv ggml.Type, mode transport.Mode) *group {
	t.Helper()
	return startGroupAt(t, f, kv, mode, 0)
}

// startGroupAt starts a group of the stage of layers [first, the last).
func startGroupAt(t testing.TB, f *gguf.File, kv ggml.Type, mode transport.Mode, first int) *group {
	t.Helper()
	nl := layers(t, f)
	dconn, wconn := connected(t, mode)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type streams struct {
		c, x transport.Stream
		err  error
	}
	acc := make(chan streams, 1)
	go func() {
		c, x, err := AcceptStreams(ctx, wconn)
		acc <- streams{c, x, err}
	}()
	dc, dx, err := OpenStreams(ctx, dconn)
	if err != nil {
		t.Fatal(err)
	}
	ws := <-acc
	if ws.err != nil {
		t.Fatal(ws.err)
	}
	// Each shard on a pool of its own: a pool runs one pass at a time.
	var stages [2]*model.Stage
	for i := range stages {
		if stages[i], err = model.LoadStage(f, first, nl, model.Options{Shard: i, Shards: 2, Threads: i + 1, KVType: kv}); err != nil {
			t.Fatal(err)
		}
	}
	x0, err := NewExchanger(0, []transport.FrameStream{nil, dx})
	if err != nil {
		t.Fatal(err)
	}
	x1, err := NewExchanger(1, []transport.FrameStream{ws.x, nil})
	if err != nil {
		t.Fatal(err)
	}
	stages[0].SetExchanger(x0)
	stages[1].SetExchanger(x1)
	g := &group{served: make(chan error, 1), wconn: wconn}
	go func() {
		err := Serve(stages[1], ws.c, nil)
		if err != nil {
			ws.x.Cancel(err.Error())
		}
		g.served <- err
	}()
	g.stage = stages[0]
	if g.mirror, err = NewMirror(g.stage, []transport.FrameStream{dc}); err != nil {
		t.Fatal(err)
	}
	return g
}

// A two-shard group over QUIC and over TCP computes exactly the logits of the whole model on
// one node: two sequences' prompts in one batch (one long enough that a pass's parts overflow
// the streams' windows, so that shards writing at once must not wait on each other), then
// greedy decode steps of both together.
func TestTwoShardsMatchOneNode(t *testing.T) {
	for _, c := range []struct {
		file []string
		kv   ggml.Type
		mode transport.Mode
	}{
		{[]string{"synthetic", "llama-spm32k-e256", "llama-spm32k-e256-Q4_K_M.gguf"}, ggml.F16, transport.ModeQUIC},
		{[]string{"synthetic", "llama-spm32k-e256", "llama-spm32k-e256-Q8_0.gguf"}, ggml.Q8_0, transport.ModeTCP},
		{[]string{"stories260K", "stories260K-Q8_0.gguf"}, ggml.F32, transport.ModeTCP},
	} {
		t.Run(c.file[len(c.file)-1]+"/"+string(c.mode), func(t *testing.T) {
			f := openModel(t, c.file...)
			whole, err := model.LoadStage(f, 0, layers(t, f), model.Options{KVType: c.kv})
			if err != nil {
				t.Fatal(err)
			}
			g := startGroup(t, f, c.kv, c.mode)
			long := make([]int32, 300)
			for i := range long {
				long[i] = int32(1 + (i*37)%250)
			}
			prompts := [][]int32{long, {1, 7, 4}}
			if strings.Contains(c.file[0], "stories") {
				prompts[0] = long[:40] // a 512-token context
			}
			var want, seqs [2]*model.Seq
			batches := make([]model.Batch, 2)
			for k := range want {
				want[k], seqs[k] = whole.NewSequence(400), g.stage.NewSequence(400)
				batches[k] = model.Batch{Tokens: prompts[k]}
			}
			outs := make([]model.Out, 2)
			for step := range 12 {
				wantOuts := make([]model.Out, 2)
				if err := whole.ForwardBatch([]model.SeqBatch{{Seq: want[0], Batch: batches[0]}, {Seq: want[1], Batch: batches[1]}}, wantOuts); err != nil {
					t.Fatal(err)
				}
				if err := g.stage.ForwardBatch([]model.SeqBatch{{Seq: seqs[0], Batch: batches[0]}, {Seq: seqs[1], Batch: batches[1]}}, outs); err != nil {
					t.Fatal(err)
				}
				for k := range batches {
					if !slices.Equal(outs[k].Logits, wantOuts[k].Logits) {
						t.Fatalf("step %d, sequence %d: the shards' logits differ from one node's", step, k)
					}
					batches[k] = model.Batch{Pos: want[k].Len(), Tokens: []int32{sampler.Argmax(wantOuts[k].Logits)}}
				}
			}
			// A batch the model refuses (it starts past the cached positions) is refused before
			// the other shard hears of it, and the group goes on.
			if err := g.stage.ForwardBatch([]model.SeqBatch{{Seq: seqs[0], Batch: model.Batch{Pos: 399, Tokens: []int32{1, 2}}}}, outs); err == nil ||
				!strings.Contains(err.Error(), "position 399") {
				t.Fatalf("a batch past the cached positions: %v", err)
			}
			// A copy of a sequence's start (Extend) continues on every shard as the original.
			ext, err := seqs[1].Extend(400, seqs[1].Len())
			if err != nil {
				t.Fatal(err)
			}
			wantExt, err := want[1].Extend(400, want[1].Len())
			if err != nil {
				t.Fatal(err)
			}
			wantOuts := make([]model.Out, 1)
			if err := whole.ForwardBatch([]model.SeqBatch{{Seq: wantExt, Batch: batches[1]}}, wantOuts); err != nil {
				t.Fatal(err)
			}
			if err := g.stage.ForwardBatch([]model.SeqBatch{{Seq: ext, Batch: batches[1]}}, outs); err != nil {
				t.Fatalf("the step after a refused batch: %v", err)
			}
			if !slices.Equal(outs[0].Logits, wantOuts[0].Logits) {
				t.Fatal("a copied sequence's logits differ from one node's")
			}
			// A freed sequence is gone.
			seqs[0].Free()
			if err := g.stage.ForwardBatch([]model.SeqBatch{{Seq: seqs[0], Batch: batches[0]}}, outs); err == nil {
				t.Fatal("forward of a freed sequence accepted")
			}
			if err := g.mirror.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-g.served:
				if err != nil {
					t.Fatalf("worker: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the worker did not stop after the driver closed")
			}
		})
	}
}

// A worker lost in the middle of a request fails the driver's next step with an error naming
// the shard, within the transport's timeout, instead of hanging.
// A group that runs a later stage takes the previous stage's hidden states as input (sent to
// the other shard with each batch) and computes exactly what the whole stage computes on one
// node: a prompt, then decode steps.
func TestLaterStageGroupMatchesOneNode(t *testing.T) {
	f := openModel(t, "stories260K", "stories260K-Q8_0.gguf")
	nl := layers(t, f)
	first, err := model.LoadStage(f, 0, 2, model.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	rest, err := model.LoadStage(f, 2, nl, model.Options{Threads: 1, KVType: ggml.F16})
	if err != nil {
		t.Fatal(err)
	}
	g := startGroupAt(t, f, ggml.F16, transport.ModeTCP, 2)
	q0, qr, qg := first.NewSequence(64), rest.NewSequence(64), g.stage.NewSequence(64)
	toks := []int32{1, 403, 407, 261, 378, 302, 391}
	pos := 0
	for step := range 8 {
		h, err := first.Forward(q0, model.Batch{Pos: pos, Tokens: toks})
		if err != nil {
			t.Fatal(err)
		}
		want, err := rest.Forward(qr, model.Batch{Pos: pos, Hidden: h.Hidden})
		if err != nil {
			t.Fatal(err)
		}
		got, err := g.stage.Forward(qg, model.Batch{Pos: pos, Hidden: h.Hidden})
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if !slices.Equal(got.Logits, want.Logits) {
			t.Fatalf("step %d: the group's logits differ from one node's", step)
		}
		pos += len(toks)
		toks = []int32{int32(sampler.Argmax(want.Logits))}
	}
	if err := g.mirror.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-g.served; err != nil {
		t.Fatalf("shard 1: %v", err)
	}
}

func TestLostWorkerFailsTheStep(t *testing.T) {
	f := openModel(t, "stories260K", "stories260K-Q8_0.gguf")
	g := startGroup(t, f, ggml.F32, transport.ModeQUIC)
	seq := g.stage.NewSequence(32)
	outs := make([]model.Out, 1)
	if err := g.stage.ForwardBatch([]model.SeqBatch{{Seq: seq, Batch: model.Batch{Tokens: []int32{1, 2, 3}}}}, outs); err != nil {
		t.Fatal(err)
	}
	g.wconn.Close()
	done := make(chan error, 1)
	go func() {
		done <- g.stage.ForwardBatch([]model.SeqBatch{{Seq: seq, Batch: model.Batch{Pos: 3, Tokens: []int32{4}}}}, outs)
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "shard 1") {
			t.Fatalf("step after the worker's connection closed: %v", err)
		}
		t.Logf("shard 0 says: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the driver's step hangs after the worker's connection closed")
	}
}

// hello is shard 0's first control message to shard 1 of 2 of st's model.
func hello(st *model.Stage) []byte {
	b := le.AppendUint16(le.AppendUint16(le.AppendUint16([]byte{opHello}, protocol), 1), 2)
	return append(b, groupShape(st)...)
}

// Malformed control messages, and a hello that does not fit the worker, stop the worker with an
// error naming the problem.
func TestServeRefusesMalformedControl(t *testing.T) {
	f := openModel(t, "stories260K", "stories260K-Q8_0.gguf")
	st, err := model.LoadStage(f, 0, layers(t, f), model.Options{Shard: 1, Shards: 2, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	fwd := func(id uint64, ntok uint32, toks ...uint32) []byte {
		b := le.AppendUint32([]byte{opForward}, 1)
		b = le.AppendUint32(le.AppendUint64(b, id), 0)
		b = le.AppendUint32(append(b, 0), ntok)
		for _, tk := range toks {
			b = le.AppendUint32(b, tk)
		}
		return b
	}
	other := le.AppendUint16(le.AppendUint16(le.AppendUint16([]byte{opHello}, protocol), 1), 2)
	for _, c := range []struct {
		name, want string
		msgs       [][]byte
	}{
		{"no hello", "before its hello", [][]byte{le.AppendUint64([]byte{opFree}, 5)}},
		{"another protocol", "group protocol 9", [][]byte{append(le.AppendUint16([]byte{opHello}, 9), 0, 1, 0, 2)}},
		{"another shard", "shard 0 of 2; it loaded shard 1 of 2", [][]byte{append(le.AppendUint16(le.AppendUint16(le.AppendUint16([]byte{opHello}, protocol), 0), 2), groupShape(st)...)}},
		{"another model", "this node's layers", [][]byte{append(other, "layers [0,2) of 2"...)}},
		{"hello twice", "hello twice", [][]byte{hello(st), hello(st)}},
		{"unknown op", "unknown control op 9", [][]byte{hello(st), {9}}},
		{"short new", "cut short", [][]byte{hello(st), {opNewSeq, 1, 2}}},
		{"unknown sequence", "never made", [][]byte{hello(st), fwd(5, 1, 1)}},
		{"extend of an unknown sequence", "never made", [][]byte{hello(st), le.AppendUint32(le.AppendUint32(le.AppendUint64(le.AppendUint64([]byte{opExtend}, 5), 6), 16), 0)}},
		{"free of an unknown sequence", "never made", [][]byte{hello(st), le.AppendUint64([]byte{opFree}, 5)}},
		{"context too long", "not within the model's", [][]byte{hello(st), le.AppendUint32(le.AppendUint64([]byte{opNewSeq}, 7), 1<<30)}},
		{"tokens cut short", "cut short", [][]byte{hello(st), fwd(5, 3, 1)}},
		{"empty", "0 bytes", [][]byte{hello(st), nil}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Serve(st, controlOf(c.msgs...), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Serve(%x) = %v, want an error with %q", c.msgs, err, c.want)
			}
		})
	}
}

// FuzzServeControl: no control message makes a worker panic; every one either runs or fails
// with an error.
func FuzzServeControl(f *testing.F) {
	gf := openModel(f, "stories260K", "stories260K-Q8_0.gguf")
	st, err := model.LoadStage(gf, 0, layers(f, gf), model.Options{Shard: 1, Shards: 2, Threads: 1})
	if err != nil {
		f.Fatal(err)
	}
	// The worker's exchanges fail at once: only the message handling is under test.
	st.SetExchanger(failing{})
	newSeq := le.AppendUint32(le.AppendUint64([]byte{opNewSeq}, 7), 16)
	hi := hello(st)
	f.Add(newSeq)
	f.Add(le.AppendUint64([]byte{opFree}, 7))
	f.Add(le.AppendUint32(le.AppendUint32(le.AppendUint64(le.AppendUint64([]byte{opExtend}, 7), 8), 16), 0))
	f.Add([]byte{opForward, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		_ = Serve(st, controlOf(hi, newSeq, msg), nil)
	})
}

type failing struct{}

func (failing) Gather([]float32, [][]float32, int) error { return errors.New("no peers") }

// controlOf is a control stream that delivers msgs, then ends.
func controlOf(msgs ...[]byte) transport.FrameStream {
	a, b := transport.Pipe(ServiceControl, 0)
	go func() {
		for _, m := range msgs {
			h := wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{uint32(len(m))}}
			if a.WriteFrame(&h, m) != nil {
				return
			}
		}
		_ = a.CloseWrite()
	}()
	return b
}

// The scheduler runs on shard 0 of a group as on a whole stage: continuous batching of
// concurrent requests, prompts that reuse another request's cached start (copied on every
// shard), sequences freed as it drops them; every request generates the tokens it generates
// on one node.
func TestSchedulerOverAGroup(t *testing.T) {
	f := openModel(t, "synthetic", "llama-spm32k-e256", "llama-spm32k-e256-Q8_0.gguf")
	whole, err := model.LoadStage(f, 0, layers(t, f), model.Options{KVType: ggml.F16})
	if err != nil {
		t.Fatal(err)
	}
	g := startGroup(t, f, ggml.F16, transport.ModeTCP)
	base := make([]int32, 40)
	for i := range base {
		base[i] = int32(1 + (i*53)%900)
	}
	var prompts [][]int32
	for k := range 6 {
		p := append([]int32(nil), base[:10+5*k]...)
		prompts = append(prompts, append(p, int32(1000+k), int32(2000+k)))
	}
	generate := func(st *model.Stage) [][]int32 {
		s, err := scheduler.New(scheduler.Config{Stage: st, MaxSeqs: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out := make([][]int32, len(prompts))
		// A first request leaves its cache for the others to start from.
		run := func(k int) {
			_, err := s.Generate(context.Background(), scheduler.Request{Prompt: prompts[k], MaxTokens: 12, IgnoreEOS: true,
				OnToken: func(tok int32, _ sampler.Result) error { out[k] = append(out[k], tok); return nil }})
			if err != nil {
				t.Error(err)
			}
		}
		run(0)
		var wg sync.WaitGroup
		for k := 1; k < len(prompts); k++ {
			wg.Add(1)
			go func() { defer wg.Done(); run(k) }()
		}
		wg.Wait()
		if st := s.Stats(); st.CachedTokens == 0 {
			t.Errorf("no request reused a cached start: %+v", st)
		}
		return out
	}
	want := generate(whole)
	got := generate(g.stage)
	for k := range prompts {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("request %d: the group generated %v, one node %v", k, got[k], want[k])
		}
	}
	if err := g.mirror.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-g.served; err != nil {
		t.Fatalf("worker: %v", err)
	}
}

// A shard that loses another shard cancels its streams with a reason naming the lost one, and
// stops reading: the next write to it fails with a bare "stopped reading". Gather then reads
// the reason the shard sent before it stopped (past a part it had already sent), so the error
// names the shard that was lost rather than the messenger. For parts written inline and for
// parts written by goroutines.
func TestGatherExplainsAPeersCancel(t *testing.T) {
	const why = "shard 1 on node1: read from shard 2 on node2: connection lost"
	for _, n := range []int{16, 3 * inlineWrite} {
		t.Run(fmt.Sprintf("%d-values", n), func(t *testing.T) {
			// streams[i][j] is shard i's end of the stream to shard j.
			streams := make([][]transport.FrameStream, 3)
			for i := range streams {
				streams[i] = make([]transport.FrameStream, 3)
			}
			for i := range 3 {
				for j := i + 1; j < 3; j++ {
					a, b := transport.Pipe(transport.ServiceData, 0)
					streams[i][j], streams[j][i] = a, b
				}
			}
			xs := make([]*Exchanger, 3)
			for i := range xs {
				x, err := NewExchanger(i, streams[i])
				if err != nil {
					t.Fatal(err)
				}
				x.Names = []string{"node0", "node1", "node2"}
				xs[i] = x
			}
			part := func(i int) []float32 {
				p := make([]float32, n)
				for k := range p {
					p[k] = float32(i*n + k)
				}
				return p
			}
			// Shard 1 sends its part of this exchange to shard 0, then loses shard 2 and
			// cancels everything.
			h := wire.Header{Kind: wire.KindActivations, DType: wire.F32, Shape: []uint32{uint32(n)}}
			if err := streams[1][0].WriteFrame(&h, wire.F32Bytes(part(1))); err != nil {
				t.Fatal(err)
			}
			for _, s := range streams[1] {
				if s != nil {
					s.Cancel(why)
				}
			}
			// Shard 2 takes part in the exchange as usual; the group ends with the test,
			// which releases it (shard 0 may never send it a part).
			gathered := make(chan struct{})
			go func() {
				defer close(gathered)
				parts := [][]float32{make([]float32, n), make([]float32, n), nil}
				_ = xs[2].Gather(part(2), parts, -1)
			}()
			defer func() {
				for _, s := range slices.Concat(streams...) {
					if s != nil {
						s.Cancel("test over")
					}
				}
				<-gathered
			}()
			parts := [][]float32{nil, make([]float32, n), make([]float32, n)}
			err := xs[0].Gather(part(0), parts, -1)
			if err == nil || !strings.Contains(err.Error(), "shard 2 on node2") || !strings.Contains(err.Error(), "shard 1 on node1") {
				t.Fatalf("want an error passing on shard 1's reason, got %v", err)
			}
			if transport.IsUnexplained(err) {
				t.Fatalf("the error is still the bare reset: %v", err)
			}
			t.Logf("shard 0 says: %v", err)
		})
	}
}

// deafPeer is a stream whose peer stopped reading without a word: writes fail unexplained, and
// nothing ever arrives.
type deafPeer struct{ transport.FrameStream }

func (deafPeer) WriteFrame(*wire.Header, []byte) error {
	return &transport.CancelledError{Reason: "peer reset the stream", Unexplained: true}
}

// A peer that never sends its reason does not hold Gather for longer than reasonWait: the
// bare error comes back.
func TestGatherDoesNotWaitLongForAReason(t *testing.T) {
	a, b := transport.Pipe(transport.ServiceData, 0)
	defer b.Cancel("test over")
	defer a.Cancel("test over")
	x, err := NewExchanger(0, []transport.FrameStream{nil, deafPeer{a}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = x.Gather(make([]float32, 4), [][]float32{nil, make([]float32, 4)}, -1)
	if !transport.IsUnexplained(err) || !strings.Contains(err.Error(), "write to shard 1") {
		t.Fatalf("want the bare reset writing to shard 1, got %v", err)
	}
	if d := time.Since(start); d > 10*reasonWait {
		t.Fatalf("Gather took %v waiting for a reason that never came", d)
	}
}
