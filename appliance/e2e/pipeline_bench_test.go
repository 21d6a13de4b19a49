package e2e

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// streamRate runs one streamed greedy completion and returns its generated tokens and the
// decode rate (tokens after the first over the time after the first).
func streamRate(b *testing.B, api *pnode, model string, max int) (int, float64) {
	b.Helper()
	var first, last time.Time
	tokens := 0
	err := api.stream(b, map[string]any{"model": model, "prompt": "Once upon a time there was", "max_tokens": max, "temperature": 0,
		"stream": true, "stream_options": map[string]any{"include_usage": true}}, func(ev map[string]any) {
		if e, ok := ev["error"]; ok {
			b.Errorf("error event: %v", e)
		}
		if u, ok := ev["usage"].(map[string]any); ok {
			if n, ok := u["completion_tokens"].(float64); ok {
				tokens = int(n)
			}
			return
		}
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		last = now
	})
	if err != nil {
		b.Fatal(err)
	}
	if tokens < 2 || !last.After(first) {
		b.Fatalf("%d tokens", tokens)
	}
	return tokens, float64(tokens-1) / last.Sub(first).Seconds()
}

// aggregate runs n streams at once and returns generated tokens per second over all of them.
func aggregate(b *testing.B, api *pnode, model string, n, max int) float64 {
	b.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _ := streamRate(b, api, model, max)
			mu.Lock()
			total += k
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// pipelineBenchModel returns the benchmark model (EXO_PIPELINE_BENCH_MODEL), a models directory
// holding only it, and its id; it skips the benchmark without the model or taskset.
func pipelineBenchModel(b *testing.B) (src, dir, id string) {
	b.Helper()
	src = os.Getenv("EXO_PIPELINE_BENCH_MODEL")
	if src == "" {
		b.Skip("set EXO_PIPELINE_BENCH_MODEL to a GGUF model")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		b.Skip("taskset not found (util-linux)")
	}
	dir = b.TempDir()
	id = strings.TrimSuffix(filepath.Base(src), ".gguf")
	if err := os.Link(src, filepath.Join(dir, id+".gguf")); err != nil {
		b.Fatal(err)
	}
	return src, dir, id
}

// benchCores returns the two cores the benchmarks pin their one-core nodes to:
// EXO_PIPELINE_BENCH_CPUS ("A,B"), else 0 and 1. On a machine with SMT, cores 0 and 1 can be
// two threads of one physical core, which would halve what two nodes can do; name two cores
// that share nothing there.
func benchCores(b *testing.B) [2]string {
	b.Helper()
	v := os.Getenv("EXO_PIPELINE_BENCH_CPUS")
	if v == "" {
		return [2]string{"0", "1"}
	}
	a, c, ok := strings.Cut(v, ",")
	for _, s := range []string{a, c} {
		if n, err := strconv.Atoi(s); !ok || err != nil || n < 0 {
			b.Fatalf("EXO_PIPELINE_BENCH_CPUS=%q: want two core numbers, e.g. 0,8", v)
		}
	}
	if a == c {
		b.Fatalf("EXO_PIPELINE_BENCH_CPUS=%q: the two cores must differ", v)
	}
	return [2]string{a, c}
}

// startPinnedPair starts two nodes of one core each (the benchCores) as one cluster and places
// model id across both.
func startPinnedPair(b *testing.B, dir, id string) ([]*pnode, liveInstance) {
	b.Helper()
	return startPinnedPairAs(b, dir, nil, map[string]any{"model": id, "min_nodes": 2})
}

// startPinnedPairAs is startPinnedPair with extra environment and a placement request.
func startPinnedPairAs(b *testing.B, dir string, env []string, place map[string]any) ([]*pnode, liveInstance) {
	b.Helper()
	one := append([]string{"GOMAXPROCS=1"}, env...)
	cores := benchCores(b)
	nodes := joinAll(b, pnodeSpec{name: "p1", env: one, models: []string{dir}, prefix: []string{"taskset", "-c", cores[0]}},
		pnodeSpec{name: "p2", env: one, models: []string{dir}, prefix: []string{"taskset", "-c", cores[1]}})
	return nodes, placeInstance(b, nodes[0], place)
}

// BenchmarkPipelineVsOneNode compares a 2-node pipeline, each node one core, with one node on
// one core, through the OpenAI API: single-stream decode and 4 concurrent streams. It needs a
// model (EXO_PIPELINE_BENCH_MODEL, e.g. `exo gguf synth --preset llama-3.2-1b --type q4_0
// --seed 1 --out /tmp/l1b.gguf`) and taskset; run it with -bench PipelineVsOneNode -benchtime 1x.
//
// On one machine the two pipeline nodes share its memory bandwidth, which a pipeline of two
// machines would not; the ceiling is measured in the same run: two independent one-core nodes
// serving two streams each at the same time, against the one node's four. Every node runs for
// the whole benchmark and the measurements alternate over EXO_PIPELINE_BENCH_ROUNDS rounds
// (default 3); the ratios reported are the medians of the rounds' ratios, so that a burst of
// other load on the machine spoils one round, not the result.
//
// Each round also runs the placement's split as two bare stage processes (stageproc_test.go)
// on the same cores, handing each decode step on through pipes, against one such process with
// the whole model: what the machine allows two alternating one-core processes, apart from
// everything the nodes add. On a shared VM that figure can sit well below 1 by itself (two
// processes that take turns each stream their weights more slowly than one process running
// both halves in turn), and the nodes' single stream is then measured against it as well.
func BenchmarkPipelineVsOneNode(b *testing.B) {
	src, dir, id := pipelineBenchModel(b)
	rounds := benchRounds(b)
	const max = 48
	one := []string{"GOMAXPROCS=1"}
	cores := benchCores(b)
	for i := 0; i < b.N; i++ {
		solo := startPNode(b, pnodeSpec{name: "solo", env: one, models: []string{dir}, prefix: []string{"taskset", "-c", cores[0]}})
		solo2 := startPNode(b, pnodeSpec{name: "solo2", env: one, models: []string{dir}, prefix: []string{"taskset", "-c", cores[1]}})
		nodes, in := startPinnedPair(b, dir, id)
		pipe := nodes[0]
		for _, n := range []*pnode{solo, solo2, pipe} {
			streamRate(b, n, id, 4) // load the model
		}
		// The stage processes mirror the placement: each stage's layers on its node's core.
		var ranges [][2]int
		var onCores []string
		for _, st := range in.Stages {
			ranges = append(ranges, st.Layers)
			core := cores[1] // p2's (startPinnedPair)
			if st.NodeName == "p1" {
				core = cores[0]
			}
			onCores = append(onCores, core)
		}
		whole := [][2]int{{0, ranges[len(ranges)-1][1]}}
		var single, agg, ceil, floor [][2]float64 // per round: one node (process), then the 2-node figure
		for r := range rounds {
			_, s1 := streamRate(b, solo, id, max)
			_, s2 := streamRate(b, pipe, id, max)
			p1 := stageProcRate(b, src, whole, cores[:1], max)
			p2 := stageProcRate(b, src, ranges, onCores, max)
			a1 := aggregate(b, solo, id, 4, max)
			a2 := aggregate(b, pipe, id, 4, max)
			var par [2]float64
			var wg sync.WaitGroup
			for k, n := range []*pnode{solo, solo2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					par[k] = aggregate(b, n, id, 2, max)
				}()
			}
			wg.Wait()
			single, agg, ceil = append(single, [2]float64{s1, s2}), append(agg, [2]float64{a1, a2}), append(ceil, [2]float64{a1, par[0] + par[1]})
			floor = append(floor, [2]float64{p1, p2})
			b.Logf("MEASURE round %d: single stream %.2f vs %.2f tok/s (%.2fx); 4 streams %.2f vs %.2f tok/s (%.2fx); ceiling %.2f tok/s (%.2fx); stage processes %.2f vs %.2f steps/s (%.2fx)",
				r+1, s1, s2, s2/s1, a1, a2, a2/a1, par[0]+par[1], (par[0]+par[1])/a1, p1, p2, p2/p1)
		}
		ms, ma, mc, mf := medianRatio(single), medianRatio(agg), medianRatio(ceil), medianRatio(floor)
		var bare [][2]float64 // the nodes' single stream against the stage processes', per round
		for r := range single {
			bare = append(bare, [2]float64{floor[r][1], single[r][1]})
		}
		mb := medianRatio(bare)
		b.Logf("MEASURE %s, %d tokens per stream, medians of %d rounds: 2 nodes x 1 core (%v) against 1 node x 1 core: single stream %.2fx, 4 streams aggregate %.2fx; ceiling (2 independent 1-core nodes, 2 streams each at once, against 1 node's 4): %.2fx",
			id, max, rounds, in.Stages, ms, ma, mc)
		b.ReportMetric(ms, "single-ratio")
		b.ReportMetric(ma, "aggregate4-ratio")
		b.ReportMetric(mc, "ceiling4-ratio")
		b.Logf("MEASURE the same split as two bare stage processes (no node, network or API; pinned alike) handing each decode step on through pipes, against one such process running the whole model: %.2fx; the 2-node single stream against those two processes: %.2fx",
			mf, mb)
		b.ReportMetric(mf, "stageproc-ratio")
		b.ReportMetric(mb, "single-vs-stageproc")
		for _, n := range append(nodes, solo, solo2) {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}

// benchRounds is EXO_PIPELINE_BENCH_ROUNDS, default 3.
func benchRounds(b *testing.B) int {
	v := os.Getenv("EXO_PIPELINE_BENCH_ROUNDS")
	if v == "" {
		return 3
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("EXO_PIPELINE_BENCH_ROUNDS=%q: want a positive number", v)
	}
	return n
}

// medianRatio is the median over rounds of second/first.
func medianRatio(rounds [][2]float64) float64 {
	r := make([]float64, len(rounds))
	for i, x := range rounds {
		r[i] = x[1] / x[0]
	}
	slices.Sort(r)
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
}

// BenchmarkTensorParallelVsOneNode compares an instance placed with tensor_parallel 2 on two
// one-core nodes (both halves of every layer read at once, 65 swaps a token over the pair's
// link) with one node on one core, through the OpenAI API: single-stream decode and 4
// concurrent streams, EXO_PIPELINE_BENCH_ROUNDS rounds (default 3) alternating, medians of the
// rounds' ratios. The nodes' tensor transport is EXO_TP_BENCH_TRANSPORT (default tcp; quic,
// auto). Model and cores as BenchmarkPipelineVsOneNode.
func BenchmarkTensorParallelVsOneNode(b *testing.B) {
	_, dir, id := pipelineBenchModel(b)
	rounds := benchRounds(b)
	mode := cmp.Or(os.Getenv("EXO_TP_BENCH_TRANSPORT"), "tcp")
	const max = 48
	cores := benchCores(b)
	for i := 0; i < b.N; i++ {
		solo := startPNode(b, pnodeSpec{name: "solo", env: []string{"GOMAXPROCS=1"}, models: []string{dir}, prefix: []string{"taskset", "-c", cores[0]}})
		nodes, in := startPinnedPairAs(b, dir, []string{"EXO_TRANSPORT__MODE=" + mode}, map[string]any{"model": id, "tensor_parallel": 2})
		pair := nodes[0]
		for _, n := range []*pnode{solo, pair} {
			streamRate(b, n, id, 4) // load the model
		}
		var single, agg [][2]float64
		for r := range rounds {
			_, s1 := streamRate(b, solo, id, max)
			_, s2 := streamRate(b, pair, id, max)
			a1 := aggregate(b, solo, id, 4, max)
			a2 := aggregate(b, pair, id, 4, max)
			single, agg = append(single, [2]float64{s1, s2}), append(agg, [2]float64{a1, a2})
			b.Logf("MEASURE round %d: single stream %.2f vs %.2f tok/s (%.2fx); 4 streams %.2f vs %.2f tok/s (%.2fx)",
				r+1, s1, s2, s2/s1, a1, a2, a2/a1)
		}
		ms, ma := medianRatio(single), medianRatio(agg)
		b.Logf("MEASURE %s, %d tokens per stream, medians of %d rounds: a pair of 1-core nodes (tensor_parallel 2 over %s, %v) against 1 node x 1 core: single stream %.2fx, 4 streams aggregate %.2fx",
			id, max, rounds, mode, in.Stages, ms, ma)
		b.ReportMetric(ms, "single-ratio")
		b.ReportMetric(ma, "aggregate4-ratio")
		if live, ok := pair.instance(b, in.ID); ok && len(live.Live) == 1 {
			for _, s := range append([]liveStage{live.Live[0]}, live.Live[0].OtherShards...) {
				if s.Swaps != nil && s.Swaps.Count > 0 {
					b.Logf("MEASURE %s (shard %d): %d swaps, %.1f µs each on average (waiting for the other shard included)",
						s.Name, s.Shard, s.Swaps.Count, 1e6*s.Swaps.Seconds/float64(s.Swaps.Count))
				}
			}
		}
		for _, n := range append(nodes, solo) {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}

// firstTokenTime is how long a streamed completion of prompt takes to its first token.
func firstTokenTime(b *testing.B, api *pnode, model, prompt string) time.Duration {
	b.Helper()
	start := time.Now()
	var first time.Time
	err := api.stream(b, map[string]any{"model": model, "prompt": prompt, "max_tokens": 2, "temperature": 0, "stream": true},
		func(ev map[string]any) {
			if e, ok := ev["error"]; ok {
				b.Errorf("error event: %v", e)
			}
			if first.IsZero() {
				first = time.Now()
			}
		})
	if err != nil || first.IsZero() {
		b.Fatalf("no first token: %v", err)
	}
	return first.Sub(start)
}

// BenchmarkPipelineFollowUp measures what reusing kept sequences saves a conversation's next
// turn on a 2-node pipeline (one core each): the time to the first token of a long prompt no
// stage has seen, against that of the same prompt plus a few words right after it (every
// stage starts from a copy of the first's sequence and computes only the new words).
// EXO_PIPELINE_BENCH_ROUNDS rounds (default 3), each with its own prompt; the ratio reported is
// the median of the rounds' (fresh / follow-up).
func BenchmarkPipelineFollowUp(b *testing.B) {
	_, dir, id := pipelineBenchModel(b)
	rounds := benchRounds(b)
	for i := 0; i < b.N; i++ {
		nodes, _ := startPinnedPair(b, dir, id)
		api := nodes[0]
		streamRate(b, api, id, 4) // load the model
		var ratios [][2]float64
		for r := range rounds {
			// A prompt of a few hundred tokens that starts differently every round.
			prompt := fmt.Sprintf("Story number %d.", 1000+r) + strings.Repeat(" The little fox ran over the hill to find his friend, and the sun was warm.", 20)
			fresh := firstTokenTime(b, api, id, prompt)
			follow := firstTokenTime(b, api, id, prompt+" Then the fox")
			ratios = append(ratios, [2]float64{follow.Seconds(), fresh.Seconds()})
			b.Logf("MEASURE round %d: first token after %s for a new prompt of %d chars, %s for the follow-up (%.1fx)",
				r+1, fresh.Round(time.Millisecond), len(prompt), follow.Round(time.Millisecond), fresh.Seconds()/follow.Seconds())
		}
		m := medianRatio(ratios)
		b.Logf("MEASURE %s on 2 nodes x 1 core: a follow-up's first token %.1fx sooner than a new prompt's (median of %d rounds)", id, m, rounds)
		b.ReportMetric(m, "followup-speedup")
		for _, n := range nodes {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}
