package cli

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/kernels"
)

func runBench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"bench"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// `exo bench --model` reports llama-bench's figures as JSON, with the fields the issue names.
func TestBenchCommandJSON(t *testing.T) {
	modelPath := generateFixture(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf")
	code, out, errs := runBench(t, "--model", modelPath, "-p", "16", "-n", "8", "-d", "40", "-r", "2", "--batch", "2", "-t", "2", "--kv-type", "q8_0", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	for _, k := range []string{"pp_tokens_per_s", "tg_tokens_per_s", "weights_gb_per_s", "model_bytes", "peak_rss_bytes"} {
		if v, ok := r[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, r[k])
		}
	}
	if r["threads"] != float64(2) || r["batch"] != float64(2) || r["type"] != "Q8_0" || r["kv_type"] != "Q8_0" || r["n_depth"] != float64(40) {
		t.Errorf("threads %v batch %v type %v kv_type %v n_depth %v", r["threads"], r["batch"], r["type"], r["kv_type"], r["n_depth"])
	}
	// batch_padding is what the padding tuner chose in this process (nothing for a model this
	// small: kernels.TestTunePadding covers the measuring).
	var typed benchJSON
	if err := json.Unmarshal([]byte(out), &typed); err != nil {
		t.Fatal(err)
	}
	if _, ok := r["batch_padding"]; !ok {
		t.Error("no batch_padding in the JSON")
	}
	pads := kernels.PadChoices()
	if len(typed.BatchPadding) != len(pads) {
		t.Fatalf("batch_padding %+v, kernels chose %v", typed.BatchPadding, pads)
	}
	for i, c := range typed.BatchPadding {
		if c.Type != pads[i].Type.String() || c.PadRows != pads[i].Rows || c.MeasuredBytes != pads[i].Bytes {
			t.Errorf("batch_padding[%d] = %+v, kernels chose %+v", i, c, pads[i])
		}
	}
	// --prefetch off runs the decode kernels without software prefetches and says so, for
	// every type that has that form here (Q4_K where the CPU has AVX2); runs2 runs two runs in
	// step where a type has that form (Q4_K on AVX2 without AVX-512), else the form without
	// prefetches, and says which.
	t.Cleanup(func() { _ = kernels.SetStreamPrefetch("auto") })
	for _, mode := range []string{"off", "runs2"} {
		code, out, errs = runBench(t, "--model", modelPath, "-p", "0", "-n", "4", "-r", "1", "--prefetch", mode, "--json")
		if code != 0 {
			t.Fatalf("--prefetch %s: exit %d: %s", mode, code, errs)
		}
		var forced benchJSON
		if err := json.Unmarshal([]byte(out), &forced); err != nil {
			t.Fatalf("%v: %q", err, out)
		}
		want := kernels.StreamChoices()
		if len(forced.StreamPrefetch) != len(want) {
			t.Fatalf("--prefetch %s: stream_prefetch %+v, kernels chose %v", mode, forced.StreamPrefetch, want)
		}
		for i, c := range forced.StreamPrefetch {
			if c.Type != want[i].Type.String() || c.Prefetch || c.Measured || c.TwoRuns != want[i].TwoRuns || (mode == "off" && c.TwoRuns) {
				t.Errorf("--prefetch %s: stream_prefetch[%d] = %+v, kernels chose %+v", mode, i, c, want[i])
			}
		}
	}
	// A depth beyond the model's context is refused, naming both.
	code, _, errs = runBench(t, "--model", modelPath, "-p", "16", "-n", "8", "-d", "1000000", "-r", "1")
	if code == 0 || !strings.Contains(errs, "context of 1000016 tokens") {
		t.Errorf("-d 1000000: exit %d, stderr %q", code, errs)
	}
}

// --cpuprofile writes a whole profile (gzip-framed protocol buffer, as runtime/pprof writes)
// once the run ends, at depth too, where the profile opens after the fills; a file that cannot
// be created fails the command naming it.
func TestBenchCommandCPUProfile(t *testing.T) {
	modelPath := generateFixture(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf")
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	if code, _, errs := runBench(t, "--model", modelPath, "-p", "8", "-n", "4", "-d", "32", "-r", "1", "--cpuprofile", prof); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	f, err := os.Open(prof)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("profile %s: %v", prof, err)
	}
	if b, err := io.ReadAll(z); err != nil || len(b) == 0 {
		t.Fatalf("profile %s: %d bytes, %v", prof, len(b), err)
	}
	bad := filepath.Join(t.TempDir(), "missing", "cpu.prof")
	if code, _, errs := runBench(t, "--model", modelPath, "-p", "8", "-n", "0", "-r", "1", "--cpuprofile", bad); code == 0 || !strings.Contains(errs, bad) {
		t.Errorf("--cpuprofile %s: exit %d, stderr %q", bad, code, errs)
	}
}

func TestBenchCommandMembwAndErrors(t *testing.T) {
	code, out, errs := runBench(t, "--membw", "--size-mb", "8", "-t", "1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r struct {
		GBPerS float64 `json:"gb_per_s"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.GBPerS <= 0 {
		t.Fatalf("membw: %v %q", err, out)
	}
	for _, args := range [][]string{{}, {"--model", "x.gguf", "--membw", "--size-mb", "0"}, {"--model", "x.gguf", "-p", "0", "-n", "0"}, {"--membw", "-t", "-1"}, {"--model", "x.gguf", "--kv-type", "q4_0"}, {"--model", "x.gguf", "-d", "-1"}, {"--model", "x.gguf", "--prefetch", "sometimes"}} {
		if code, _, errs := runBench(t, args...); code == 0 || !strings.Contains(errs, "bench") {
			t.Errorf("bench %v: exit %d, stderr %q", args, code, errs)
		}
	}
	if _, _, errs := runBench(t, "--model", "x.gguf", "--prefetch", "sometimes"); !strings.Contains(errs, `"sometimes"`) {
		t.Errorf("--prefetch sometimes: stderr %q does not name the value", errs)
	}
}

// --membw beside --model measures the read bandwidth after the model's runs and gives the
// weights' rate as a fraction of it, in JSON and in the text.
func TestBenchCommandModelAndMembw(t *testing.T) {
	modelPath := generateFixture(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf")
	code, out, errs := runBench(t, "--model", modelPath, "-p", "0", "-n", "4", "-r", "1", "-t", "1", "--membw", "--size-mb", "64", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r benchJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if r.MembwGBPerS <= 0 || r.WeightsGBPerS <= 0 || math.Abs(r.MembwFraction-r.WeightsGBPerS/r.MembwGBPerS) > 1e-9*r.MembwFraction {
		t.Fatalf("membw %v GB/s, weights %v GB/s, fraction %v", r.MembwGBPerS, r.WeightsGBPerS, r.MembwFraction)
	}
	code, out, errs = runBench(t, "--model", modelPath, "-p", "0", "-n", "4", "-r", "1", "-t", "1", "--membw", "--size-mb", "8")
	if code != 0 || !strings.Contains(out, "memory read bandwidth: ") || !strings.Contains(out, "% of it") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// Without generated tokens there is no weights' rate to compare.
	code, out, _ = runBench(t, "--model", modelPath, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "--membw", "--size-mb", "8", "--json")
	if code != 0 || strings.Contains(out, "weights_membw_fraction") || !strings.Contains(out, "membw_gb_per_s") {
		t.Fatalf("-n 0: exit %d, stdout %q", code, out)
	}
}
