package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// BenchConfig describes a llama-bench-style measurement: prompt processing of PromptTokens
// tokens in one batch, and generation of GenTokens tokens one step at a time, by Batch
// sequences at once (continuous batching), each repeated Repetitions times.
type BenchConfig struct {
	PromptTokens int // 0 skips prompt processing
	GenTokens    int // 0 skips generation
	Batch        int // sequences decoding together (>= 1)
	Repetitions  int // >= 1; the reported figure is the mean rate
	Seed         uint64
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
// forward passes alone. Generation starts from an empty context, as llama-bench's tg does.
func Bench(st *Stage, cfg BenchConfig) (BenchResult, error) {
	var res BenchResult
	if !st.IsFirst() || !st.IsLast() {
		return res, fmt.Errorf("model: bench needs a stage over all layers, have [%d,%d)", st.First, st.Last)
	}
	if cfg.Batch < 1 || cfg.Repetitions < 1 || cfg.PromptTokens < 0 || cfg.GenTokens < 0 {
		return res, fmt.Errorf("model: bench config %+v is out of range", cfg)
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x62656e6368))
	tok := func() int32 { return int32(r.IntN(st.Config.NVocab)) }
	ctx := max(cfg.PromptTokens, cfg.GenTokens, 1)

	// Warm-up: one short pass maps the weights in and sizes the buffers, as llama-bench's
	// warm-up run does.
	warm := st.NewSequence(ctx)
	if _, err := st.Forward(warm, Batch{Tokens: []int32{tok()}}); err != nil {
		return res, err
	}

	if cfg.PromptTokens > 0 {
		prompt := make([]int32, cfg.PromptTokens)
		seq := st.NewSequence(ctx)
		outs := make([]Out, 1)
		for rep := 0; rep < cfg.Repetitions; rep++ {
			for i := range prompt {
				prompt[i] = tok()
			}
			if err := seq.Truncate(0); err != nil {
				return res, err
			}
			t0 := time.Now()
			if err := st.ForwardBatch([]SeqBatch{{Seq: seq, Batch: Batch{Tokens: prompt}}}, outs); err != nil {
				return res, err
			}
			res.PromptTimes = append(res.PromptTimes, time.Since(t0))
		}
		res.PromptPerS, res.PromptStd = rates(res.PromptTimes, cfg.PromptTokens)
	}

	if cfg.GenTokens > 0 {
		seqs := make([]*Seq, cfg.Batch)
		for i := range seqs {
			seqs[i] = st.NewSequence(ctx)
		}
		items := make([]SeqBatch, cfg.Batch)
		toks := make([]int32, cfg.Batch)
		outs := make([]Out, cfg.Batch)
		for rep := 0; rep < cfg.Repetitions; rep++ {
			for _, q := range seqs {
				if err := q.Truncate(0); err != nil {
					return res, err
				}
			}
			t0 := time.Now()
			for step := 0; step < cfg.GenTokens; step++ {
				for i, q := range seqs {
					toks[i] = tok()
					items[i] = SeqBatch{Seq: q, Batch: Batch{Pos: step, Tokens: toks[i : i+1]}}
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
