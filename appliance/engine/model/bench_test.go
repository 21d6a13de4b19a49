package model

import (
	"testing"
	"time"
)

// Bench's Measuring hook brackets the measured passes alone: the warm-up and the depth fills,
// which at depth take far longer than the passes, run before it opens, so a profile taken
// inside shows what the figures measure.
func TestBenchMeasuringBracketsThePasses(t *testing.T) {
	f := openFixture(t, batchFiles[0])
	st, err := LoadStage(f, 0, mustConfig(t, f).NLayer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var calls []bool
	var on, off time.Time
	start := time.Now()
	res, err := Bench(st, BenchConfig{PromptTokens: 4, GenTokens: 2, Depth: 192, Batch: 2, Repetitions: 2,
		Measuring: func(b bool) {
			calls = append(calls, b)
			if b {
				on = time.Now()
			} else {
				off = time.Now()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || !calls[0] || calls[1] {
		t.Fatalf("Measuring calls %v, want [true false]", calls)
	}
	var measured time.Duration
	for _, d := range append(res.PromptTimes, res.GenTimes...) {
		measured += d
	}
	if len(res.PromptTimes) != 2 || len(res.GenTimes) != 2 || res.PromptPerS <= 0 || res.GenPerS <= 0 {
		t.Fatalf("result %+v, want two timed passes of each kind", res)
	}
	// Inside the bracket: the passes and the bookkeeping between them. Before it: the
	// warm-up and the fills of 192 tokens (one a sequence).
	inside, before := off.Sub(on), on.Sub(start)
	if inside < measured || inside-measured > before/2 {
		t.Errorf("bracket %v holds %v of measured passes; %v ran before it", inside, measured, before)
	}
}
