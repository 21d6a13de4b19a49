package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/kernels"
	"github.com/exo-nix/exo/appliance/engine/model"
)

func init() { addCommand(newBenchCmd) }

// benchJSON is the --json output of `exo bench --model`.
type benchJSON struct {
	Model         string  `json:"model"`
	Type          string  `json:"type"`
	ModelBytes    int64   `json:"model_bytes"`
	Threads       int     `json:"threads"`
	Batch         int     `json:"batch"`
	KVType        string  `json:"kv_type"`
	SIMD          string  `json:"simd"`
	PromptTokens  int     `json:"n_prompt"`
	Depth         int     `json:"n_depth"`
	GenTokens     int     `json:"n_gen"`
	Repetitions   int     `json:"repetitions"`
	PPTokensPerS  float64 `json:"pp_tokens_per_s"`
	PPStd         float64 `json:"pp_std"`
	TGTokensPerS  float64 `json:"tg_tokens_per_s"`
	TGStd         float64 `json:"tg_std"`
	WeightsGBPerS float64 `json:"weights_gb_per_s"`
	PeakRSSBytes  int64   `json:"peak_rss_bytes"`
	// MembwGBPerS and MembwFraction (with --membw): the read bandwidth measured after the
	// runs with the same threads, and weights_gb_per_s as a fraction of it.
	MembwGBPerS   float64 `json:"membw_gb_per_s,omitempty"`
	MembwFraction float64 `json:"weights_membw_fraction,omitempty"`
	// StreamPrefetch: the one-column kernel chosen for each type that has two (kernels.TuneStreams).
	StreamPrefetch []streamJSON `json:"stream_prefetch"`
	// BatchPadding: how two or three sequences decoding together take each measured type's
	// weights (kernels.TunePadding).
	BatchPadding []padJSON `json:"batch_padding"`
}

// padJSON is one kernels.PadChoice.
type padJSON struct {
	Type string `json:"type"`
	// PadRows: the fewest rows that share one padded four-column pass (0: none).
	PadRows       int     `json:"pad_rows"`
	Padded3GBPerS float64 `json:"padded3_gb_per_s"`
	Each3GBPerS   float64 `json:"each3_gb_per_s"`
	Padded2GBPerS float64 `json:"padded2_gb_per_s,omitempty"`
	Each2GBPerS   float64 `json:"each2_gb_per_s,omitempty"`
	MeasuredBytes int64   `json:"measured_bytes"`
}

// streamJSON is one kernels.StreamChoice.
type streamJSON struct {
	Type          string  `json:"type"`
	Prefetch      bool    `json:"prefetch"`
	TwoRuns       bool    `json:"two_runs"`
	Measured      bool    `json:"measured"`
	WithGBPerS    float64 `json:"with_prefetch_gb_per_s,omitempty"`
	WithoutGBPerS float64 `json:"without_prefetch_gb_per_s,omitempty"`
	TwoRunsGBPerS float64 `json:"two_runs_gb_per_s,omitempty"`
	MeasuredBytes int64   `json:"measured_bytes,omitempty"`
}

// membwJSON is the --json output of `exo bench --membw`.
type membwJSON struct {
	Threads   int     `json:"threads"`
	SizeBytes int64   `json:"size_bytes"`
	GBPerS    float64 `json:"gb_per_s"`
}

func newBenchCmd() *cobra.Command {
	var (
		modelPath, kvType string
		cpuProfile        string
		prefetch          string
		threads, pp, tg   int
		batch, reps       int
		depth             int
		sizeMB            int
		membw, jsonOut    bool
	)
	cmd := &cobra.Command{
		Use:   "bench (--model FILE [-p 128] [-n 64] [-d 0] [--batch B] [--membw] | --membw) [--threads N] [--json]",
		Short: "Measure prompt and generation speed of a model, or this machine's memory bandwidth",
		Long: `Bench measures a GGUF model like llama-bench: -p tokens of prompt processed as one batch
(pp, tokens/s) and -n tokens generated one step at a time from an empty context (tg, tokens/s),
each repeated -r times with random tokens and no sampling. --batch B decodes B sequences at
once (continuous batching); tg is then their aggregate rate. -d fills the context with that
many tokens first, unmeasured, so that pp and tg run against a KV cache of that length (llama-
bench's -d). weights_gb_per_s is the model's
weight bytes read per generated step times the step rate: the figure to hold against --membw.

Where a weight type's decode kernel comes in several forms (with and without software
prefetches, and on some CPUs reading two runs of the matrix in step), loading the model
measures each on its weights and keeps the fastest (--prefetch auto); on, off and runs2 force
one (runs2 falls back to off for a type without that form). Loading also measures whether two
or three sequences decoding together go faster through one padded pass of the four-column
kernel or one pass each, and keeps the faster ("batch padding").

--membw measures the memory read bandwidth of this machine with the same number of threads:
the physical limit of decoding, which reads every weight once per step. With --model it is
measured after the model's runs (its buffer of --size-mb is not in the peak RSS reported),
and the weights' rate is given as a fraction of it: how near decoding comes to the limit,
from one run on a machine whose speed may drift between two.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if threads < 0 {
				return usageError{fmt.Errorf("bench: --threads %d is negative", threads)}
			}
			if threads == 0 {
				threads = kernels.DefaultThreads()
			}
			out := cmd.OutOrStdout()
			if membw && sizeMB < 1 {
				return usageError{fmt.Errorf("bench: --size-mb %d must be positive", sizeMB)}
			}
			measureBW := func() (float64, error) {
				return kernels.MemoryBandwidth(int64(sizeMB)<<20, threads, max(reps, 3))
			}
			if membw && modelPath == "" {
				bw, err := measureBW()
				if err != nil {
					return err
				}
				if jsonOut {
					return json.NewEncoder(out).Encode(membwJSON{Threads: threads, SizeBytes: int64(sizeMB) << 20, GBPerS: bw / 1e9})
				}
				fmt.Fprintf(out, "memory read bandwidth: %.2f GB/s (%d threads, %d MiB buffer)\n", bw/1e9, threads, sizeMB)
				return nil
			}
			if modelPath == "" {
				return usageError{errors.New("bench: --model or --membw is required")}
			}
			if pp < 0 || tg < 0 || pp+tg == 0 || batch < 1 || reps < 1 || depth < 0 {
				return usageError{fmt.Errorf("bench: -p %d -n %d -d %d --batch %d -r %d: need -p, -n, -d >= 0 (-p, -n not both 0), --batch and -r >= 1", pp, tg, depth, batch, reps)}
			}
			if err := kernels.SetStreamPrefetch(prefetch); err != nil {
				return usageError{fmt.Errorf("bench: --prefetch: %w", err)}
			}
			opts := model.Options{Threads: threads}
			kv, err := model.ParseKVType(kvType)
			if err != nil {
				return usageError{fmt.Errorf("bench: --kv-type: %w", err)}
			}
			opts.KVType = kv
			f, err := gguf.Open(modelPath)
			if err != nil {
				return err
			}
			defer f.Close()
			cfg, err := model.ConfigFromGGUF(f)
			if err != nil {
				return err
			}
			st, err := model.LoadStage(f, 0, cfg.NLayer, opts)
			if err != nil {
				return err
			}
			var measuring func(bool)
			var profErr error
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer pf.Close()
				// The profile covers the measured passes alone: not the loading, the warm-up
				// or the -d fills (which at depth take longer than the passes).
				measuring = func(on bool) {
					if !on {
						pprof.StopCPUProfile()
						return
					}
					if err := pprof.StartCPUProfile(pf); err != nil {
						profErr = fmt.Errorf("bench: cpu profile: %w", err)
					}
				}
			}
			res, err := model.Bench(st, model.BenchConfig{PromptTokens: pp, GenTokens: tg, Depth: depth, Batch: batch, Repetitions: reps, Measuring: measuring})
			if err == nil {
				err = profErr
			}
			if err != nil {
				return err
			}
			r := benchJSON{
				Model: filepath.Base(modelPath), Type: weightType(f), ModelBytes: st.WeightBytes(),
				Threads: threads, Batch: batch, KVType: opts.KVType.String(), SIMD: kernels.SIMD(),
				PromptTokens: pp, GenTokens: tg, Depth: depth, Repetitions: reps,
				PPTokensPerS: res.PromptPerS, PPStd: res.PromptStd, TGTokensPerS: res.GenPerS, TGStd: res.GenStd,
				// One decode step reads every weight once, whatever the batch.
				WeightsGBPerS: float64(st.WeightBytes()) * res.GenPerS / float64(batch) / 1e9,
				PeakRSSBytes:  peakRSS(),
			}
			if membw {
				bw, err := measureBW()
				if err != nil {
					return err
				}
				r.MembwGBPerS = bw / 1e9
				r.MembwFraction = r.WeightsGBPerS / r.MembwGBPerS
			}
			choices := kernels.StreamChoices()
			for _, c := range choices {
				r.StreamPrefetch = append(r.StreamPrefetch, streamJSON{Type: c.Type.String(), Prefetch: c.Prefetch, TwoRuns: c.TwoRuns,
					Measured: c.Measured, WithGBPerS: c.AheadGBs, WithoutGBPerS: c.StreamGBs, TwoRunsGBPerS: c.TwoRunsGBs,
					MeasuredBytes: c.Bytes})
			}
			pads := kernels.PadChoices()
			for _, c := range pads {
				r.BatchPadding = append(r.BatchPadding, padJSON{Type: c.Type.String(), PadRows: c.Rows,
					Padded3GBPerS: c.Padded3GBs, Each3GBPerS: c.Each3GBs, Padded2GBPerS: c.Padded2GBs, Each2GBPerS: c.Each2GBs,
					MeasuredBytes: c.Bytes})
			}
			if jsonOut {
				return json.NewEncoder(out).Encode(r)
			}
			fmt.Fprintf(out, "model %s (%s, %.2f GiB of weights), %d threads, KV %s, SIMD %s\n", r.Model, r.Type, float64(r.ModelBytes)/(1<<30), threads, r.KVType, r.SIMD)
			for _, c := range choices {
				fmt.Fprintf(out, "decode kernel: %s\n", c)
			}
			for _, c := range pads {
				fmt.Fprintf(out, "batch padding: %s\n", c)
			}
			at := ""
			if depth > 0 {
				at = fmt.Sprintf(" @ d%d", depth)
			}
			if pp > 0 {
				fmt.Fprintf(out, "pp%d%s: %8.2f ± %.2f tokens/s\n", pp, at, r.PPTokensPerS, r.PPStd)
			}
			if tg > 0 {
				fmt.Fprintf(out, "tg%d%s: %8.2f ± %.2f tokens/s (batch %d), weights %.2f GB/s\n", tg, at, r.TGTokensPerS, r.TGStd, batch, r.WeightsGBPerS)
			}
			if membw {
				fmt.Fprintf(out, "memory read bandwidth: %.2f GB/s (%d threads, %d MiB buffer, after the runs)", r.MembwGBPerS, threads, sizeMB)
				if tg > 0 {
					fmt.Fprintf(out, "; the weights streamed at %.0f%% of it", 100*r.MembwFraction)
				}
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "peak RSS %.1f MiB\n", float64(r.PeakRSSBytes)/(1<<20))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&modelPath, "model", "", "GGUF model file")
	fl.IntVarP(&threads, "threads", "t", 0, "worker threads (default: physical cores)")
	fl.IntVarP(&pp, "n-prompt", "p", 128, "prompt tokens processed as one batch (0 to skip)")
	fl.IntVarP(&tg, "n-gen", "n", 64, "tokens generated one step at a time (0 to skip)")
	fl.IntVarP(&depth, "n-depth", "d", 0, "tokens of context filled before each test, unmeasured")
	fl.IntVar(&batch, "batch", 1, "sequences generating at once")
	fl.IntVarP(&reps, "repetitions", "r", 5, "repetitions of each test")
	fl.StringVar(&kvType, "kv-type", "f16", "KV cache type: f16, f32 or q8_0")
	fl.BoolVar(&membw, "membw", false, "measure memory read bandwidth (alone, or after --model's runs)")
	fl.IntVar(&sizeMB, "size-mb", 1024, "buffer size of --membw in MiB")
	fl.BoolVar(&jsonOut, "json", false, "print one JSON object")
	fl.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) of the measured runs to FILE")
	fl.StringVar(&prefetch, "prefetch", "auto", "decode kernel form: auto (measured at load), on (software prefetch), off (none) or runs2 (two runs in step)")
	return cmd
}

// weightType names the most common type of the layers' 2-D tensors, by bytes (embeddings and
// the classifier often keep another type).
func weightType(f *gguf.File) string {
	by := map[ggml.Type]int64{}
	for _, t := range f.Tensors {
		if len(t.Dims) == 2 && strings.HasPrefix(t.Name, "blk.") {
			by[t.Type] += t.Size
		}
	}
	best, bytes := "", int64(-1)
	for t, b := range by {
		if b > bytes || b == bytes && t.String() < best {
			best, bytes = t.String(), b
		}
	}
	return best
}

// peakRSS is the process's peak resident set (mapped weights that were read included).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // kilobytes on Linux
}
