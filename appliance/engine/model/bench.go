package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// BenchConfig describes a llama-bench-style measurement: prompt processing of PromptTokens
// tokens in one batch, and generation of GenTokens tokens one step at a time, by Batch
// sequences at once (continuous batching), each repeated Repetitions times. Depth tokens fill
// every sequence's context first, unmeasured (llama-bench's -d): attention then reads a KV
// cache of that length.
type BenchConfig struct {
	PromptTokens int // 0 skips prompt processing
	GenTokens    int // 0 skips generation
	Depth        int // context filled before each measured pass (0: an empty context)
	Batch        int // sequences decoding together (>= 1)
	Repetitions  int // >= 1; the reported figure is the mean rate
	Seed         uint64
	// Measuring, when set, is called with true just before the first measured pass and with
	// false after the last (or on an error): the warm-up and the depth fills lie outside, so
	// that a profile taken between the calls shows the measured passes alone.
	Measuring func(on bool)
}

// BenchResult holds the measured rates; each is tokens over wall-clock time, averaged over
// the repetitions (with their standard deviation, as llama-bench reports).
type BenchResult struct {
	PromptPerS, PromptStd float64
	GenPerS, GenStd       float64 // aggregate over all Batch sequences
	PromptTimes, GenTimes []time.Duration
}

// Bench runs cfg on a stage that holds the whole model (first and last). Tokens are drawn at
// random from the vocabulary like llama-bench's; nothing is sampled, so the figures are the
// forward passes alone. Generation starts from a context of Depth tokens, as llama-bench's tg
// does (empty by default).
func Bench(st *Stage, cfg BenchConfig) (BenchResult, error) {
	var res BenchResult
	if !st.IsFirst() || !st.IsLast() {
		return res, fmt.Errorf("model: bench needs a stage over all layers, have [%d,%d)", st.First, st.Last)
	}
	if cfg.Batch < 1 || cfg.Repetitions < 1 || cfg.PromptTokens < 0 || cfg.GenTokens < 0 || cfg.Depth < 0 {
		return res, fmt.Errorf("model: bench config %+v is out of range", cfg)
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x62656e6368))
	tok := func() int32 { return int32(r.IntN(st.Config.NVocab)) }
	ctx := cfg.Depth + max(cfg.PromptTokens, cfg.GenTokens, 1)
	if ctx > st.Config.ContextLength {
		return res, fmt.Errorf("model: bench needs a context of %d tokens, the model's is %d", ctx, st.Config.ContextLength)
	}
	// fill gives seq the Depth tokens of context once; each measured pass truncates back to
	// them, which keeps their cache entries.
	fill := func(seq *Seq) error {
		const chunk = 256
		for pos := 0; pos < cfg.Depth; pos += chunk {
			toks := make([]int32, min(chunk, cfg.Depth-pos))
			for i := range toks {
				toks[i] = tok()
			}
			if err := st.ForwardBatch([]SeqBatch{{Seq: seq, Batch: Batch{Pos: pos, Tokens: toks}}}, make([]Out, 1)); err != nil {
				return fmt.Errorf("model: bench fill of depth %d: %w", cfg.Depth, err)
			}
		}
		return nil
	}

	// Warm-up: one short pass maps the weights in and sizes the buffers, as llama-bench's
	// warm-up run does.
	warm := st.NewSequence(ctx)
	if _, err := st.Forward(warm, Batch{Tokens: []int32{tok()}}); err != nil {
		return res, err
	}

	// Every sequence is filled before the first measured pass, so that the measured passes
	// run back to back and Measuring brackets them alone. The prompt's sequence is the first
	// generating one: each pass truncates it back to the depth.
	n := 0
	if cfg.PromptTokens > 0 {
		n = 1
	}
	if cfg.GenTokens > 0 {
		n = cfg.Batch
	}
	seqs := make([]*Seq, n)
	for i := range seqs {
		seqs[i] = st.NewSequence(ctx)
		if err := fill(seqs[i]); err != nil {
			return res, err
		}
	}
	if cfg.Measuring != nil {
		cfg.Measuring(true)
		defer cfg.Measuring(false)
	}

	if cfg.PromptTokens > 0 {
		prompt := make([]int32, cfg.PromptTokens)
		outs := make([]Out, 1)
		for rep := 0; rep < cfg.Repetitions; rep++ {
			for i := range prompt {
				prompt[i] = tok()
			}
			if err := seqs[0].Truncate(cfg.Depth); err != nil {
				return res, err
			}
			t0 := time.Now()
			if err := st.ForwardBatch([]SeqBatch{{Seq: seqs[0], Batch: Batch{Pos: cfg.Depth, Tokens: prompt}}}, outs); err != nil {
				return res, err
			}
			res.PromptTimes = append(res.PromptTimes, time.Since(t0))
		}
		res.PromptPerS, res.PromptStd = rates(res.PromptTimes, cfg.PromptTokens)
	}

	if cfg.GenTokens > 0 {
		items := make([]SeqBatch, cfg.Batch)
		toks := make([]int32, cfg.Batch)
		outs := make([]Out, cfg.Batch)
		for rep := 0; rep < cfg.Repetitions; rep++ {
			for _, q := range seqs {
				if err := q.Truncate(cfg.Depth); err != nil {
					return res, err
				}
			}
			t0 := time.Now()
			for step := 0; step < cfg.GenTokens; step++ {
				for i, q := range seqs {
					toks[i] = tok()
					items[i] = SeqBatch{Seq: q, Batch: Batch{Pos: cfg.Depth + step, Tokens: toks[i : i+1]}}
				}
				if err := st.ForwardBatch(items, outs); err != nil {
					return res, err
				}
			}
			res.GenTimes = append(res.GenTimes, time.Since(t0))
		}
		res.GenPerS, res.GenStd = rates(res.GenTimes, cfg.GenTokens*cfg.Batch)
	}
	return res, nil
}

// rates returns the mean and standard deviation of tokens/d over the durations.
func rates(ds []time.Duration, tokens int) (mean, std float64) {
	var sum, sq float64
	for _, d := range ds {
		v := float64(tokens) / d.Seconds()
		sum += v
		sq += v * v
	}
	n := float64(len(ds))
	mean = sum / n
	if len(ds) > 1 {
		if v := (sq - sum*sum/n) / (n - 1); v > 0 {
			std = math.Sqrt(v)
		}
	}
	return mean, std
}
