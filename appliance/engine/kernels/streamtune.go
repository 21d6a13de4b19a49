package kernels

import (
	"fmt"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Decoding one sequence streams every weight from memory once a token, so the one-column
// kernels run at the speed the memory reaches one core. Whether software prefetches ahead of
// the kernel help that stream depends on the machine: the packed Q4_K kernel read 1.19x faster
// with them on a Zen 5 VM (where they were added; Q6_K's had made that one 1.6x faster on an
// earlier Zen 4 host), and on a later Zen 4 host Q4_K's 1.12-1.25x and Q6_K's 1.09-1.21x slower
// with them, its hardware prefetcher keeping up alone (Q4_0's and Q8_0's made no difference
// there on pages of 4 KiB, and 1.05x and 1.06-1.18x on the huge pages decoding uses). Some cores
// stream two runs of memory faster than one: a Zen 3 EPYC VM read 256 MiB at 10.0 GB/s as one
// run and 12.9 as two in step (a float32 dot), and its AVX2 Q4_0 kernel read 1.2-1.3x faster
// over two runs of panels than over one. So where a type's one-column kernel comes in more
// than one form (packedKernelSet.has), the first model that holds enough of that type
// measures each on its own weights, with its own threads, and keeps the fastest for the
// process. Every form computes the same bits: only the speed depends on the choice.

// StreamChoice is the one-column kernel in use for a weight type.
type StreamChoice struct {
	Type ggml.Type
	// Prefetch: the kernel in use prefetches its weights in software.
	Prefetch bool
	// TwoRuns: the kernel in use reads two runs of panels in step (without prefetches).
	TwoRuns bool
	// Measured: chosen by measuring (else set by SetStreamPrefetch).
	Measured bool
	// AheadGBs, StreamGBs and TwoRunsGBs: weight bytes read per second (1e9) by one-column
	// products over the model's matrices of Type with prefetches, without, and over two runs
	// (where Measured; 0 for a form the type lacks).
	AheadGBs, StreamGBs, TwoRunsGBs float64
	// Bytes: the weights of Type each measured pass read.
	Bytes int64
}

func (c StreamChoice) String() string {
	form := "without prefetch"
	switch {
	case c.Prefetch:
		form = "with prefetch"
	case c.TwoRuns:
		form = "two runs in step"
	}
	if !c.Measured {
		return fmt.Sprintf("%s %s (set)", c.Type, form)
	}
	rates := fmt.Sprintf("%.1f GB/s with prefetch", c.AheadGBs)
	if c.StreamGBs > 0 {
		rates += fmt.Sprintf(", %.1f without", c.StreamGBs)
	}
	if c.TwoRunsGBs > 0 {
		rates += fmt.Sprintf(", %.1f two runs", c.TwoRunsGBs)
	}
	return fmt.Sprintf("%s %s (%s, over %d MiB)", c.Type, form, rates, c.Bytes>>20)
}

// Variables for the tests.
var (
	// Below streamTuneMin of a type the weights fit the large caches of some machines, where
	// the measurement would say nothing about memory; the default (prefetch) stays.
	streamTuneMin int64 = 64 << 20
	// At most streamTuneMax of a type is read per pass, so that tuning costs a large model
	// no more than a small one (six passes: about 0.1-0.2 s).
	streamTuneMax int64 = 512 << 20
)

const (
	// streamTuneRounds passes of each form, alternating; the fastest of each counts.
	streamTuneRounds = 3
	// The kernel without prefetches must read at least this much faster to be chosen: the
	// prefetching form is the one measured on most machines, and noise must not flip it.
	streamTuneGain = 1.05
)

var streamTune = struct {
	mu   sync.Mutex
	mode string // "auto", "on" or "off"
	done map[ggml.Type]StreamChoice
}{mode: "auto", done: map[ggml.Type]StreamChoice{}}

// SetStreamPrefetch sets how the one-column kernels that come in several forms are chosen:
// "auto" (measured by TuneStreams, the default), "on" (prefetching), "off" (not) or "runs2"
// (two runs in step, where a type has that form, else "off"). All but "auto" apply at once;
// "auto" forgets earlier choices, so that the next model measures again.
func SetStreamPrefetch(mode string) error {
	want, ok := map[string]decodeForm{"auto": formAhead, "on": formAhead, "off": formStream, "runs2": formRuns2}[mode]
	if !ok {
		return fmt.Errorf("kernels: stream prefetch %q: want auto, on, off or runs2", mode)
	}
	streamTune.mu.Lock()
	defer streamTune.mu.Unlock()
	streamTune.mode = mode
	clear(streamTune.done)
	for t, f := range packedFormats {
		k := f.kernels
		if k == nil || !k.tunable() {
			continue
		}
		form := want
		if form == formRuns2 && !k.has(formRuns2) {
			form = formStream
		}
		if !k.has(form) {
			form = formAhead
		}
		k.form.Store(int32(form))
		if mode != "auto" {
			streamTune.done[t] = StreamChoice{Type: t, Prefetch: form == formAhead, TwoRuns: form == formRuns2}
		}
	}
	return nil
}

// StreamChoices returns the choices made so far, by type.
func StreamChoices() []StreamChoice {
	streamTune.mu.Lock()
	defer streamTune.mu.Unlock()
	return sortedChoices(streamTune.done)
}

// StreamSummary is StreamChoices in one line ("" where none was made), for logs.
func StreamSummary() string { return joinChoices(StreamChoices()) }

// TuneStreams measures, for each type of mats whose one-column kernel comes in several forms
// and that no earlier call settled, each form over (up to streamTuneMax of) those matrices
// with one-column products on pool p, and keeps the fastest; it returns the choices it made.
// Types with less than streamTuneMin of weights in mats are left as they are.
func TuneStreams(p *Pool, mats []*Packed) []StreamChoice {
	streamTune.mu.Lock()
	defer streamTune.mu.Unlock()
	if streamTune.mode != "auto" {
		return nil
	}
	tunable := func(k *packedKernelSet) bool { return k.tunable() }
	return tuneEach(mats, tunable, streamTune.done, func(mats []*Packed) (StreamChoice, bool) { return tuneStream(p, mats) })
}

// tuneStream measures one type's forms over mats (all of type t); false where mats hold too
// few weights.
func tuneStream(p *Pool, mats []*Packed) (StreamChoice, bool) {
	k := mats[0].kernels()
	ops, total := tuneOps(mats, 1, streamTuneMax, false, 1)
	if total < streamTuneMin {
		return StreamChoice{}, false
	}
	// The fastest pass of each form, by decodeForm; 0 for a form k lacks.
	settings := make([]func(), 3)
	for form := range settings {
		if k.has(decodeForm(form)) {
			settings[form] = func() { k.form.Store(int32(form)) }
		}
	}
	best := [3]time.Duration(fastestRuns(p, ops, streamTuneRounds, settings))
	form := pickForm(best)
	k.form.Store(int32(form))
	return StreamChoice{Type: mats[0].t, Prefetch: form == formAhead, TwoRuns: form == formRuns2, Measured: true,
		AheadGBs: gbPerS(total, best[formAhead]), StreamGBs: gbPerS(total, best[formStream]), TwoRunsGBs: gbPerS(total, best[formRuns2]),
		Bytes: total}, true
}

// pickForm chooses a form from the fastest pass of each (0 where the type lacks it): the
// prefetching one, which most machines were measured with, unless another is streamTuneGain
// faster than it, so that noise does not flip the choice; of the others the faster, by the
// same margin for two runs over one.
func pickForm(best [3]time.Duration) decodeForm {
	form := formAhead
	if preferStream(best[formAhead], best[formStream]) {
		form = formStream
	}
	if preferStream(best[form], best[formRuns2]) {
		form = formRuns2
	}
	return form
}

// preferStream says whether a form whose fastest pass took alt is to be used rather than one
// whose fastest took cur: only where it is streamTuneGain faster.
func preferStream(cur, alt time.Duration) bool {
	return alt > 0 && float64(cur) >= streamTuneGain*float64(alt)
}
