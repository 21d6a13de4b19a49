package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// memExchange links the shards of one process through channels, as the network links those of
// several nodes.
type memExchange struct {
	self  int
	links [][]chan []float32 // [from][to]
	fail  error              // returned instead of exchanging, once set
}

func newMemExchanges(n int) []*memExchange {
	links := make([][]chan []float32, n)
	for i := range links {
		links[i] = make([]chan []float32, n)
		for j := range links[i] {
			links[i][j] = make(chan []float32, 4)
		}
	}
	xs := make([]*memExchange, n)
	for i := range xs {
		xs[i] = &memExchange{self: i, links: links}
	}
	return xs
}

func (m *memExchange) Gather(part []float32, parts [][]float32, root int) error {
	if m.fail != nil {
		return m.fail
	}
	for j := range m.links {
		if j != m.self && (root < 0 || root == j) {
			m.links[m.self][j] <- append([]float32(nil), part...)
		}
	}
	for j, p := range parts {
		if p == nil {
			continue
		}
		var got []float32
		select {
		case got = <-m.links[j][m.self]:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("nothing from shard %d within 10 s", j)
		}
		if len(got) != len(p) {
			return fmt.Errorf("shard %d sent %d values, want %d", j, len(got), len(p))
		}
		copy(p, got)
	}
	return nil
}

// forwardShards runs one ForwardBatch on every shard at once and returns shard 0's outputs.
func forwardShards(t *testing.T, shards []*Stage, seqs [][]*Seq, batches []Batch) []Out {
	t.Helper()
	outs := make([][]Out, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, st := range shards {
		items := make([]SeqBatch, len(batches))
		for k, b := range batches {
			items[k] = SeqBatch{Seq: seqs[i][k], Batch: b}
		}
		outs[i] = make([]Out, len(batches))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.ForwardBatch(items, outs[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	return outs[0]
}

// Shards of a tensor-parallel stage, each holding only its rows of every matrix and swapping
// parts of the products, compute exactly the logits of the whole stage on one node: prompts of
// two sequences in one batch, then decode steps of both, for every KV cache type, two and three
// shards, and the models with bias (qwen2), query/key norms (qwen3), the packed kernels' types
// and an untied classifier.
func TestShardedStagesComputeWhatOneComputes(t *testing.T) {
	files := append([]string{"synthetic/qwen2-e32/qwen2-e32-F16.gguf", "synthetic/qwen3-e32/qwen3-e32-F16.gguf"}, batchFiles...)
	prompts := [][]int32{{1, 5, 9, 3, 17, 2, 11}, {1, 7, 4}}
	for _, file := range files {
		for _, n := range []int{2, 3} {
			for _, kv := range []ggml.Type{ggml.F32, ggml.F16, ggml.Q8_0} {
				if quick() && (n == 3 || kv == ggml.Q8_0) && !strings.Contains(file, "Q4_K") {
					continue
				}
				t.Run(fmt.Sprintf("%s/%d/%s", name(file), n, kv), func(t *testing.T) {
					f := openFixture(t, file)
					nl := mustConfig(t, f).NLayer
					whole, err := LoadStage(f, 0, nl, Options{KVType: kv})
					if err != nil {
						t.Fatal(err)
					}
					shards := make([]*Stage, n)
					xs := newMemExchanges(n)
					var sum int64
					for i := range shards {
						// Each shard on a pool of its own (a pool runs one pass at a time).
						if shards[i], err = LoadStage(f, 0, nl, Options{KVType: kv, Shard: i, Shards: n, Threads: i + 1}); err != nil {
							t.Fatal(err)
						}
						shards[i].SetExchanger(xs[i])
						if names := shards[i].Tensors(); len(slices.Compact(slices.Sorted(slices.Values(names)))) != len(names) {
							t.Errorf("shard %d lists a tensor twice: %v", i, names)
						}
						b := layerBytes(shards[i])
						if b >= layerBytes(whole) {
							t.Errorf("shard %d of %d holds %d bytes of layer matrices, the whole stage %d", i, n, b, layerBytes(whole))
						}
						sum += b
					}
					if sum != layerBytes(whole) {
						t.Errorf("the shards hold %d bytes of layer matrices together, the whole stage %d", sum, layerBytes(whole))
					}
					wantSeqs := []*Seq{whole.NewSequence(32), whole.NewSequence(32)}
					seqs := make([][]*Seq, n)
					for i, st := range shards {
						seqs[i] = []*Seq{st.NewSequence(32), st.NewSequence(32)}
					}
					batches := []Batch{{Tokens: prompts[0]}, {Tokens: prompts[1]}}
					for step := range 4 {
						wantOuts := make([]Out, len(batches))
						items := []SeqBatch{{Seq: wantSeqs[0], Batch: batches[0]}, {Seq: wantSeqs[1], Batch: batches[1]}}
						if err := whole.ForwardBatch(items, wantOuts); err != nil {
							t.Fatal(err)
						}
						got := forwardShards(t, shards, seqs, batches)
						for k := range batches {
							if !equalF32(got[k].Logits, wantOuts[k].Logits) {
								t.Fatalf("step %d, sequence %d: shard 0's logits differ from the whole stage's (top %v against %v)",
									step, k, topIDs(got[k].Logits, 4), topIDs(wantOuts[k].Logits, 4))
							}
						}
						for k := range batches {
							batches[k] = Batch{Pos: wantSeqs[k].Len(), Tokens: topIDs(wantOuts[k].Logits, 1)}
						}
					}
				})
			}
		}
	}
}

// layerBytes is the size of the layer matrices a stage holds.
func layerBytes(s *Stage) int64 {
	var n int64
	for _, ly := range s.layers {
		for _, m := range []*matrix{ly.wq, ly.wk, ly.wv, ly.wo, ly.gate, ly.up, ly.down} {
			n += int64(m.rows * m.rowBytes)
		}
	}
	return n
}

func TestShardRows(t *testing.T) {
	for _, c := range []struct{ rows, n int }{{2048, 2}, {512, 3}, {128256, 2}, {100, 3}, {40, 4}, {8, 2}, {32, 2}} {
		next := 0
		for i := range c.n {
			lo, hi := ShardRows(c.rows, i, c.n)
			if lo != next || hi < lo || (i < c.n-1 && lo%shardAlign != 0) {
				t.Fatalf("ShardRows(%d, %d, %d) = [%d, %d), after %d", c.rows, i, c.n, lo, hi, next)
			}
			next = hi
		}
		if next != c.rows {
			t.Fatalf("ShardRows(%d, ·, %d) covers %d rows", c.rows, c.n, next)
		}
	}
	if lo, hi := ShardRows(2048, 1, 2); lo != 1024 || hi != 2048 {
		t.Fatalf("second half of 2048: [%d, %d)", lo, hi)
	}
}

// A shard whose exchange fails fails its pass with the cause; one without an exchanger refuses
// to run; a shard that is not one is refused at load.
func TestShardedStageErrors(t *testing.T) {
	f := openFixture(t, "stories260K/stories260K-F32.gguf")
	nl := mustConfig(t, f).NLayer
	st, err := LoadStage(f, 0, nl, Options{Shard: 1, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Forward(st.NewSequence(8), Batch{Tokens: []int32{1, 2}}); err == nil || !strings.Contains(err.Error(), "no exchanger") {
		t.Fatalf("without an exchanger: %v", err)
	}
	x := newMemExchanges(2)[1]
	x.fail = errors.New("peer gone")
	st.SetExchanger(x)
	if _, err := st.Forward(st.NewSequence(8), Batch{Tokens: []int32{1, 2}}); err == nil || !strings.Contains(err.Error(), "peer gone") ||
		!strings.Contains(err.Error(), "shard 1 of 2") {
		t.Fatalf("exchange failing: %v", err)
	}
	for _, o := range []Options{{Shard: 2, Shards: 2}, {Shard: -1, Shards: 2}, {Shard: 1}, {Shards: -2}} {
		if _, err := LoadStage(f, 0, nl, o); err == nil || !strings.Contains(err.Error(), "is not a shard") {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
