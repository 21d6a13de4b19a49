package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
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

// BenchmarkPipelineVsOneNode compares a 2-node pipeline, each node one core, with one node on
// one core, through the OpenAI API: single-stream decode and 4 concurrent streams. It needs a
// model (EXO_PIPELINE_BENCH_MODEL, e.g. `exo gguf synth --preset llama-3.2-1b --type q4_0
// --seed 1 --out /tmp/l1b.gguf`) and taskset; run it with -bench PipelineVsOneNode -benchtime 1x.
func BenchmarkPipelineVsOneNode(b *testing.B) {
	src := os.Getenv("EXO_PIPELINE_BENCH_MODEL")
	if src == "" {
		b.Skip("set EXO_PIPELINE_BENCH_MODEL to a GGUF model")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		b.Skip("taskset not found (util-linux)")
	}
	dir := b.TempDir()
	id := strings.TrimSuffix(filepath.Base(src), ".gguf")
	if err := os.Link(src, filepath.Join(dir, id+".gguf")); err != nil {
		b.Fatal(err)
	}
	const max = 48
	one := []string{"GOMAXPROCS=1"}
	for i := 0; i < b.N; i++ {
		solo := startPNode(b, pnodeSpec{name: "solo", env: one, models: []string{dir}, prefix: []string{"taskset", "-c", "0"}})
		streamRate(b, solo, id, 4) // load the model
		_, single1 := streamRate(b, solo, id, max)
		agg1 := aggregate(b, solo, id, 4, max)
		_ = solo.cmd.Process.Kill()
		<-solo.done

		nodes := joinAll(b, pnodeSpec{name: "p1", env: one, models: []string{dir}, prefix: []string{"taskset", "-c", "0"}},
			pnodeSpec{name: "p2", env: one, models: []string{dir}, prefix: []string{"taskset", "-c", "1"}})
		in := placeInstance(b, nodes[0], map[string]any{"model": id, "min_nodes": 2})
		streamRate(b, nodes[0], id, 4)
		_, single2 := streamRate(b, nodes[0], id, max)
		agg2 := aggregate(b, nodes[0], id, 4, max)
		b.Logf("MEASURE %s, %d tokens per stream: 1 node x 1 core: single stream %.2f tok/s, 4 streams %.2f tok/s aggregate", id, max, single1, agg1)
		b.Logf("MEASURE 2 nodes x 1 core (%v): single stream %.2f tok/s (%.2fx), 4 streams %.2f tok/s aggregate (%.2fx)",
			in.Stages, single2, single2/single1, agg2, agg2/agg1)
		b.ReportMetric(single2/single1, "single-ratio")
		b.ReportMetric(agg2/agg1, "aggregate4-ratio")
		for _, n := range nodes {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}
