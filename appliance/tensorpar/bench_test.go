package tensorpar

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/netstack/nettest"
	"github.com/exo-nix/exo/netstack/transport"
)

// benchRates are a child's decode rates: tokens per second over all streams, by stream count.
type benchRates map[int]float64

var benchStreams = []int{1, 4}

const (
	benchPrompt = 16
	benchSteps  = 64
)

// BenchmarkTensorParallelVsOneNode: two processes, each pinned to one core with one thread,
// hold one shard each of EXO_TP_BENCH_MODEL and decode over a real tensor connection on
// loopback (TCP+TLS, then QUIC), against one process on one core holding the whole model, in
// each round. Reported: the ratio of decode rates (greedy, after a 16-token prompt) for one
// stream and for four concurrent streams (one batch). EXO_TP_PINGPONG=1 also times bare
// exchanges between the two processes.
func BenchmarkTensorParallelVsOneNode(b *testing.B) {
	src := os.Getenv("EXO_TP_BENCH_MODEL")
	if src == "" {
		b.Skip("set EXO_TP_BENCH_MODEL to a GGUF model")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		b.Skip("taskset not found (util-linux)")
	}
	ca := nettest.NewCA(b, "cluster")
	key, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), "EXO_TP_MODEL="+src, "EXO_TP_CA_CERT="+hex.EncodeToString(ca.Cert.Raw), "EXO_TP_CA_KEY="+hex.EncodeToString(key))
	child := func(cpu int, role string, extra ...string) *exec.Cmd {
		cpus := fmt.Sprint(cpu)
		if c := os.Getenv("EXO_TP_CPUS"); c != "" {
			cpus = c
		}
		cmd := exec.Command("taskset", "-c", cpus, os.Args[0], "-test.run=^TestBenchChild$", "-test.v")
		if p := os.Getenv("EXO_TP_PROFILE"); p != "" {
			cmd.Args = append(cmd.Args, "-test.cpuprofile="+p+"-"+role+".pprof")
		}
		cmd.Env = append(append(env, "EXO_TP_CHILD="+role), extra...)
		return cmd
	}
	run := func(role string, extra ...string) benchRates {
		out := filepath.Join(b.TempDir(), "rates.json")
		cmd := child(0, role, append(extra, "EXO_TP_OUT="+out)...)
		o, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%s: %v\n%s", role, err, o)
		}
		for _, l := range strings.Split(string(o), "\n") {
			if strings.Contains(l, "MEASURE") {
				b.Log(strings.TrimSpace(l))
			}
		}
		raw, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		var r benchRates
		if err := json.Unmarshal(raw, &r); err != nil {
			b.Fatal(err)
		}
		return r
	}
	ratios := map[string][]float64{}
	modes := []transport.Mode{transport.ModeTCP, transport.ModeQUIC}
	for i := 0; i < b.N; i++ {
		one := run("one")
		for _, mode := range modes {
			addr := "127.0.0.1:" + nettestPort(b)
			w := child(1, "worker", "EXO_TP_ADDR="+addr)
			wout, err := os.CreateTemp(b.TempDir(), "worker")
			if err != nil {
				b.Fatal(err)
			}
			w.Stdout, w.Stderr = wout, wout
			if err := w.Start(); err != nil {
				b.Fatal(err)
			}
			tp := run("driver", "EXO_TP_ADDR="+addr, "EXO_TP_MODE="+string(mode))
			werr := w.Wait()
			log, _ := os.ReadFile(wout.Name())
			if werr != nil {
				b.Fatalf("worker: %v\n%s", werr, log)
			}
			for _, l := range strings.Split(string(log), "\n") {
				if strings.Contains(l, "MEASURE") {
					b.Log(strings.TrimSpace(l))
				}
			}
			for _, n := range benchStreams {
				k := fmt.Sprintf("x_%dstreams_%s", n, mode)
				ratios[k] = append(ratios[k], tp[n]/one[n])
				fmt.Fprintf(os.Stderr, "MEASURE round %d, %s, %d streams: one node %.2f tok/s, two shards %.2f tok/s, %.2fx\n", i, mode, n, one[n], tp[n], tp[n]/one[n])
			}
		}
	}
	for k, rs := range ratios {
		sum := 0.0
		for _, r := range rs {
			sum += r
		}
		b.ReportMetric(sum/float64(len(rs)), k)
	}
}

func nettestPort(b *testing.B) string {
	_, port, _ := cutLast(nettest.FreePort(b), ":")
	return port
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// timedExchanger records how long each Gather takes: the wait for the other shard (its lag and
// the link's latency).
type timedExchanger struct {
	model.Exchanger
	took []time.Duration
}

func (x *timedExchanger) Gather(part []float32, parts [][]float32, root int) error {
	t0 := time.Now()
	err := x.Exchanger.Gather(part, parts, root)
	x.took = append(x.took, time.Since(t0))
	return err
}

func (x *timedExchanger) report(t *testing.T, who string) {
	if len(x.took) == 0 {
		return
	}
	d := slices.Clone(x.took)
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	t.Logf("MEASURE %s: %d exchanges, p50 %s, p90 %s, p99 %s, total %s", who, len(d), d[len(d)/2], d[len(d)*9/10], d[len(d)*99/100], sum)
}

// pingPong times bare exchanges of 1024 values with no work between them (EXO_TP_PINGPONG=1):
// the link's own latency between the two pinned processes.
func pingPong(t *testing.T, ex model.Exchanger, who string) {
	if os.Getenv("EXO_TP_PINGPONG") == "" {
		return
	}
	tx := &timedExchanger{Exchanger: ex}
	part := make([]float32, 1024)
	parts := [][]float32{make([]float32, 1024), make([]float32, 1024)}
	self := 0
	if who == "worker" {
		self = 1
	}
	parts[self] = nil
	for range 2000 {
		if err := tx.Gather(part, parts, -1); err != nil {
			t.Fatal(err)
		}
	}
	tx.report(t, who+" bare")
}

// TestBenchChild is one process of BenchmarkTensorParallelVsOneNode; it does nothing elsewhere.
func TestBenchChild(t *testing.T) {
	role := os.Getenv("EXO_TP_CHILD")
	if role == "" {
		t.Skip("a child process of BenchmarkTensorParallelVsOneNode")
	}
	f, err := gguf.Open(os.Getenv("EXO_TP_MODEL"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	certDER, _ := hex.DecodeString(os.Getenv("EXO_TP_CA_CERT"))
	keyDER, _ := hex.DecodeString(os.Getenv("EXO_TP_CA_KEY"))
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParseECPrivateKey(keyDER)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ca := &nettest.CA{Cert: cert, Key: key, Pool: pool}
	nl := layers(t, f)
	opts := model.Options{Threads: 1, KVType: ggml.F16}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch role {
	case "one":
		st, err := model.LoadStage(f, 0, nl, opts)
		if err != nil {
			t.Fatal(err)
		}
		writeRates(t, measure(t, st))
	case "worker":
		opts.Shard, opts.Shards = 1, 2
		st, err := model.LoadStage(f, 0, nl, opts)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := transport.Listen(os.Getenv("EXO_TP_ADDR"), transport.Config{ServerTLS: ca.ServerTLS(t, "w"), ClientTLS: ca.ClientTLS(t, "w")})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		conn, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c, x, err := AcceptStreams(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		ex, err := NewExchanger(1, []transport.FrameStream{x, nil})
		if err != nil {
			t.Fatal(err)
		}
		pingPong(t, ex, "worker")
		tx := &timedExchanger{Exchanger: ex}
		st.SetExchanger(tx)
		if err := Serve(st, c, nil); err != nil {
			t.Fatal(err)
		}
		tx.report(t, "worker")
	case "driver":
		opts.Shard, opts.Shards = 0, 2
		st, err := model.LoadStage(f, 0, nl, opts)
		if err != nil {
			t.Fatal(err)
		}
		mode := transport.Mode(os.Getenv("EXO_TP_MODE"))
		if mode == "" {
			mode = transport.ModeQUIC
		}
		d, err := transport.NewDialer(transport.Config{ClientTLS: ca.ClientTLS(t, "d"), Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		var conn transport.Conn
		for {
			if conn, err = d.Dial(ctx, os.Getenv("EXO_TP_ADDR")); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c, x, err := OpenStreams(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		ex, err := NewExchanger(0, []transport.FrameStream{nil, x})
		if err != nil {
			t.Fatal(err)
		}
		pingPong(t, ex, "driver")
		tx := &timedExchanger{Exchanger: ex}
		st.SetExchanger(tx)
		defer tx.report(t, "driver")
		mirror, err := NewMirror(st, []transport.FrameStream{c})
		if err != nil {
			t.Fatal(err)
		}
		writeRates(t, measure(t, st))
		if err := mirror.Close(); err != nil {
			t.Fatal(err)
		}
		// Let the close reach the worker before the connection goes.
		time.Sleep(200 * time.Millisecond)
	}
}

// measure decodes benchSteps tokens for each stream count after a prompt of benchPrompt tokens
// per stream, on st (a whole stage, or shard 0 of a group), and returns the decode rates.
func measure(t *testing.T, st *model.Stage) benchRates {
	rates := benchRates{}
	for _, n := range benchStreams {
		items := make([]model.SeqBatch, n)
		for k := range items {
			toks := make([]int32, benchPrompt)
			for i := range toks {
				toks[i] = int32(1 + 31*(i+k)%1000)
			}
			items[k] = model.SeqBatch{Seq: st.NewSequence(benchPrompt + benchSteps + 1), Batch: model.Batch{Tokens: toks}}
		}
		outs := make([]model.Out, n)
		step := func() {
			if err := st.ForwardBatch(items, outs); err != nil {
				t.Fatal(err)
			}
		}
		pos := benchPrompt
		step()
		var start time.Time
		for s := range benchSteps {
			if s == 1 {
				start = time.Now() // the first decode step warms the buffers of its batch size
			}
			for k := range items {
				items[k].Batch = model.Batch{Pos: pos, Tokens: []int32{sampler.Argmax(outs[k].Logits)}}
			}
			step()
			pos++
		}
		rates[n] = float64(n*(benchSteps-1)) / time.Since(start).Seconds()
		for _, it := range items {
			it.Seq.Free()
		}
	}
	return rates
}

func writeRates(t *testing.T, r benchRates) {
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("EXO_TP_OUT"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}
