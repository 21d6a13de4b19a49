package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
)

// llamaBenchRate runs llama-bench for a generation-only test and returns its mean tokens/s.
// extra carries the device flags (--rpc …, -ngl …); prefix runs it under taskset.
func llamaBenchRate(b *testing.B, bin, model string, gen int, prefix []string, extra ...string) float64 {
	b.Helper()
	args := append([]string{filepath.Join(bin, "llama-bench"), "-m", model, "-p", "0", "-n", fmt.Sprint(gen), "-t", "1", "-r", "2", "-o", "json"}, extra...)
	args = append(append([]string{}, prefix...), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var runs []struct {
		NGen  int     `json:"n_gen"`
		AvgTS float64 `json:"avg_ts"`
	}
	if err := json.Unmarshal(out, &runs); err != nil {
		b.Fatalf("llama-bench output: %v\n%s", err, out)
	}
	for _, r := range runs {
		if r.NGen == gen && r.AvgTS > 0 {
			return r.AvgTS
		}
	}
	b.Fatalf("llama-bench gave no generation result:\n%s", out)
	return 0
}

// startRPCServer runs llama.cpp's rpc-server with one compute thread on the given cores, and
// waits until it accepts connections. stop ends it (also done at cleanup).
func startRPCServer(b *testing.B, bin string, cores string) (addr string, stop func()) {
	b.Helper()
	addr = nettest.FreePort(b)
	host, port, _ := net.SplitHostPort(addr)
	name := "rpc-server"
	if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
		name = "ggml-rpc-server"
	}
	cmd := exec.Command("taskset", "-c", cores, filepath.Join(bin, name), "-H", host, "-p", port, "-t", "1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	b.Cleanup(stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return addr, stop
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s on %s not accepting within 30s: %v\n%s", name, addr, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkPipelineVsLlamaRPC compares exo's 2-node pipeline (one core per node) with llama.cpp's
// RPC mode on the same two cores (two rpc-servers of one compute thread each, llama-bench offloading
// every layer to them), single-stream decode, in one run. It needs the model
// (EXO_PIPELINE_BENCH_MODEL) and a llama.cpp build with GGML_RPC=ON (EXO_LLAMA_CPP_BIN: the
// directory holding llama-bench and rpc-server); run it with -bench PipelineVsLlamaRPC
// -benchtime 1x.
func BenchmarkPipelineVsLlamaRPC(b *testing.B) {
	bin := os.Getenv("EXO_LLAMA_CPP_BIN")
	if bin == "" {
		b.Skip("set EXO_LLAMA_CPP_BIN to a llama.cpp build (GGML_RPC=ON)")
	}
	src, dir, id := pipelineBenchModel(b)
	const max = 48
	cores := benchCores(b)
	both := cores[0] + "," + cores[1]
	for i := 0; i < b.N; i++ {
		// llama.cpp first, so that its RPC servers are gone before exo's nodes start. Each server
		// may use both cores: pinned to one core, its network thread waits behind the compute
		// thread's busy polling and decode drops about 8x, which would not be a fair comparison.
		rpc1, stop1 := startRPCServer(b, bin, both)
		rpc2, stop2 := startRPCServer(b, bin, both)
		llama := llamaBenchRate(b, bin, src, max, nil, "--rpc", rpc1+","+rpc2, "-ngl", "99")
		stop1()
		stop2()
		llamaLocal := llamaBenchRate(b, bin, src, max, []string{"taskset", "-c", cores[0]})

		nodes, in := startPinnedPair(b, dir, id)
		streamRate(b, nodes[0], id, 4) // load the stages
		_, exo := streamRate(b, nodes[0], id, max)
		b.Logf("MEASURE %s, %d generated tokens, single stream: llama.cpp 1 core %.2f tok/s; llama.cpp RPC 2 servers x 1 core %.2f tok/s; exo 2 nodes x 1 core (%v) %.2f tok/s = %.2fx llama.cpp RPC",
			id, max, llamaLocal, llama, in.Stages, exo, exo/llama)
		b.ReportMetric(exo/llama, "exo/llama-rpc")
		b.ReportMetric(exo, "exo-tok/s")
		b.ReportMetric(llama, "llama-rpc-tok/s")
		for _, n := range nodes {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}
