package tensorpar

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/model"
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

// group is a two-shard group in one process: shard 0 driven here, shard 1 served by a goroutine,
// over a real connection.
type group struct {
	driver *Driver
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
		if stages[i], err = model.LoadStage(f, 0, nl, model.Options{Shard: i, Shards: 2, Threads: i + 1, KVType: kv}); err != nil {
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
		err := Serve(stages[1], ws.c)
		if err != nil {
			ws.x.Cancel(err.Error())
		}
		g.served <- err
	}()
	if g.driver, err = NewDriver(stages[0], []transport.FrameStream{dc}); err != nil {
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
			var want [2]*model.Seq
			batches := make([]model.Batch, 2)
			for k := range want {
				want[k] = whole.NewSequence(400)
				if err := g.driver.NewSequence(uint64(10+k), 400); err != nil {
					t.Fatal(err)
				}
				batches[k] = model.Batch{Tokens: prompts[k]}
			}
			for step := range 12 {
				wantOuts := make([]model.Out, 2)
				if err := whole.ForwardBatch([]model.SeqBatch{{Seq: want[0], Batch: batches[0]}, {Seq: want[1], Batch: batches[1]}}, wantOuts); err != nil {
					t.Fatal(err)
				}
				got, err := g.driver.Forward([]Item{{Seq: 10, Batch: batches[0]}, {Seq: 11, Batch: batches[1]}})
				if err != nil {
					t.Fatal(err)
				}
				for k := range batches {
					if !slices.Equal(got[k].Logits, wantOuts[k].Logits) {
						t.Fatalf("step %d, sequence %d: the shards' logits differ from one node's", step, k)
					}
					batches[k] = model.Batch{Pos: want[k].Len(), Tokens: []int32{argmax(wantOuts[k].Logits)}}
				}
			}
			// A batch the model refuses (it starts past the cached positions) leaves the group working.
			if _, err := g.driver.Forward([]Item{{Seq: 10, Batch: model.Batch{Pos: 399, Tokens: []int32{1, 2}}}}); err == nil ||
				!strings.Contains(err.Error(), "position 399") {
				t.Fatalf("a batch past the cached positions: %v", err)
			}
			if _, err := g.driver.Forward([]Item{{Seq: 10, Batch: batches[0]}, {Seq: 11, Batch: batches[1]}}); err != nil {
				t.Fatalf("the step after a refused batch: %v", err)
			}
			// A freed sequence is gone on the worker too; a new one under its id starts afresh.
			if err := g.driver.Free(10); err != nil {
				t.Fatal(err)
			}
			if _, err := g.driver.Forward([]Item{{Seq: 10, Batch: batches[0]}}); err == nil {
				t.Fatal("forward of a freed sequence accepted")
			}
			if err := g.driver.Close(); err != nil {
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
func TestLostWorkerFailsTheStep(t *testing.T) {
	f := openModel(t, "stories260K", "stories260K-Q8_0.gguf")
	g := startGroup(t, f, ggml.F32, transport.ModeQUIC)
	if err := g.driver.NewSequence(1, 32); err != nil {
		t.Fatal(err)
	}
	if _, err := g.driver.Forward([]Item{{Seq: 1, Batch: model.Batch{Tokens: []int32{1, 2, 3}}}}); err != nil {
		t.Fatal(err)
	}
	g.wconn.Close()
	done := make(chan error, 1)
	go func() {
		_, err := g.driver.Forward([]Item{{Seq: 1, Batch: model.Batch{Pos: 3, Tokens: []int32{4}}}})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "shard 1") {
			t.Fatalf("step after the worker's connection closed: %v", err)
		}
		t.Logf("the driver says: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the driver's step hangs after the worker's connection closed")
	}
}

// Malformed control messages stop the worker with an error naming the problem.
func TestServeRefusesMalformedControl(t *testing.T) {
	f := openModel(t, "stories260K", "stories260K-Q8_0.gguf")
	st, err := model.LoadStage(f, 0, layers(t, f), model.Options{Shard: 1, Shards: 2, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	fwd := func(id uint64, ntok uint32, toks ...uint32) []byte {
		b := le.AppendUint32([]byte{opForward}, 1)
		b = le.AppendUint32(le.AppendUint64(b, id), 0)
		b = le.AppendUint32(append(b, 0), ntok)
		for _, tk := range toks {
			b = le.AppendUint32(b, tk)
		}
		return b
	}
	for _, c := range []struct {
		name, want string
		msg        []byte
	}{
		{"unknown op", "unknown control op 9", []byte{9}},
		{"short new", "cut short", []byte{opNewSeq, 1, 2}},
		{"unknown sequence", "never made", fwd(5, 1, 1)},
		{"tokens cut short", "cut short", fwd(5, 3, 1)},
		{"empty", "0 bytes", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Serve(st, controlOf(c.msg))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Serve(%x) = %v, want an error with %q", c.msg, err, c.want)
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
	le := binary.LittleEndian
	newSeq := le.AppendUint32(le.AppendUint64([]byte{opNewSeq}, 7), 16)
	f.Add(newSeq)
	f.Add(le.AppendUint64([]byte{opFree}, 7))
	f.Add([]byte{opForward, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		_ = Serve(st, controlOf(newSeq, msg))
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

func argmax(l []float32) int32 {
	best := 0
	for i, v := range l {
		if v > l[best] {
			best = i
		}
	}
	return int32(best)
}
