package kernels

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Concurrent sequences decode as a few activation rows a weight matrix. Two or three rows can
// take one pass of the four-column kernel, padded with rows whose results are dropped
// (packedPass), or one pass of the one-column kernel each, the first streaming the weights
// from memory and the others reading them from the level-2 cache (unitBytes). Which is faster
// is a matter of the core's arithmetic against its memory: packedPad4 holds what a Zen 5 VM
// measured, but on a Zen 3 EPYC VM (AVX2) one padded pass made two sequences of Q4_0 decode
// 1.16x as fast as one pass each, and three sequences 1.2x (Q4_K_M) and 1.2-1.35x (Q8_0),
// where that table said one pass each. So, as TuneStreams does for the one-column kernel's
// form, the first model that holds enough of a type measures both ways on its own weights
// with its own threads, and keeps the faster for the process. Every way computes the same
// bits: only the speed depends on the choice.

// PadChoice is how a weight type's packed products take two or three activation rows.
type PadChoice struct {
	Type ggml.Type
	// Rows is the fewest activation rows that share one padded pass of the four-column
	// kernel; 0: two and three rows take one pass each.
	Rows int
	// Rates: weight bytes read per second (1e9) by products of three and of two activation
	// rows over the type's matrices, in one padded pass and in one pass each. Two rows are
	// measured only where three pad (else they would not either); 0 where not measured.
	Padded3GBs, Each3GBs, Padded2GBs, Each2GBs float64
	// Bytes: the weights of Type each measured pass read.
	Bytes int64
}

func (c PadChoice) String() string {
	way := "one pass each for two or three rows"
	if c.Rows > 0 {
		way = fmt.Sprintf("one padded pass of four columns from %d rows", c.Rows)
	}
	rates := fmt.Sprintf("3 rows: %.1f GB/s padded, %.1f each", c.Padded3GBs, c.Each3GBs)
	if c.Padded2GBs > 0 {
		rates += fmt.Sprintf("; 2 rows: %.1f padded, %.1f each", c.Padded2GBs, c.Each2GBs)
	}
	return fmt.Sprintf("%s %s (%s; over %d MiB)", c.Type, way, rates, c.Bytes>>20)
}

// Variables for the tests.
var (
	// Below padTuneMin of a type the weights fit the large caches of some machines, where the
	// passes after the first would say nothing about memory; the table's figure stays.
	padTuneMin int64 = 64 << 20
	// At most padTuneMax of a type (whole panels of its matrices) is read per pass: the
	// fourteen passes take about 0.2-0.3 s a type at one thread.
	padTuneMax int64 = 96 << 20
)

const (
	// padTuneRounds passes of each way, alternating; the fastest of each counts.
	padTuneRounds = 3
	// The way the table does not give must be at least this much faster to be taken, so that
	// noise does not flip it (on the 2-core Zen 3 VM, two runs of the same binary differed by
	// up to 15% at times).
	padTuneGain = 1.10
)

var padTune = struct {
	mu   sync.Mutex
	done map[ggml.Type]PadChoice
}{done: map[ggml.Type]PadChoice{}}

// TunePadding measures, for each type of mats with a four-column packed kernel that no earlier
// call settled, two and three activation rows over (up to padTuneMax of) those matrices on
// pool p, as one padded pass and as one pass each, and keeps the faster way; it returns the
// choices it made. Types with less than padTuneMin of weights in mats keep the table's.
func TunePadding(p *Pool, mats []*Packed) []PadChoice {
	padTune.mu.Lock()
	defer padTune.mu.Unlock()
	wide := func(k *packedKernelSet) bool { return k.dot4 != nil }
	return tuneEach(mats, wide, padTune.done, func(mats []*Packed) (PadChoice, bool) { return tunePadding(p, mats) })
}

// tunePadding measures one type's ways over mats (all of type t); false where mats hold too
// few weights.
func tunePadding(p *Pool, mats []*Packed) (PadChoice, bool) {
	k := mats[0].kernels()
	ops3, total := tuneOps(mats, 3, padTuneMax, true, 3)
	if total < padTuneMin {
		return PadChoice{}, false
	}
	ops2 := slices.Clone(ops3)
	for i := range ops2 {
		ops2[i].N = 2
	}
	// The fastest pass of n rows in one padded pass and in one pass each, alternating.
	measure := func(ops []MatMulOp, n int) (padded, each time.Duration) {
		best := fastestRuns(p, ops, padTuneRounds, []func(){
			func() { k.pad4.Store(int32(n)) },
			func() { k.pad4.Store(0) },
		})
		return best[0], best[1]
	}
	c := PadChoice{Type: mats[0].t, Bytes: total}
	padded3, each3 := measure(ops3, 3)
	c.Padded3GBs, c.Each3GBs = gbPerS(total, padded3), gbPerS(total, each3)
	var padded2, each2 time.Duration
	if pads(k.padTable, 3, padded3, each3) {
		padded2, each2 = measure(ops2, 2)
		c.Padded2GBs, c.Each2GBs = gbPerS(total, padded2), gbPerS(total, each2)
	}
	c.Rows = pickPad(k.padTable, padded3, each3, padded2, each2)
	k.pad4.Store(int32(c.Rows))
	return c, true
}

// pads reports whether n activation rows are to share one padded pass, given the fastest
// pass of each way: the way the table (its pad4 figure) gives, unless the other is
// padTuneGain faster.
func pads(table, n int, padded, each time.Duration) bool {
	if table > 0 && table <= n {
		return float64(padded) < padTuneGain*float64(each)
	}
	return float64(each) >= padTuneGain*float64(padded)
}

// pickPad is the pad4 figure the measurements give (two rows measured only where three pad):
// 0 unless three rows pad, then 2 where two do too, else 3.
func pickPad(table int, padded3, each3, padded2, each2 time.Duration) int {
	switch {
	case !pads(table, 3, padded3, each3):
		return 0
	case padded2 > 0 && each2 > 0 && pads(table, 2, padded2, each2):
		return 2
	}
	return 3
}

// PadChoices returns the choices TunePadding made so far, by type.
func PadChoices() []PadChoice {
	padTune.mu.Lock()
	defer padTune.mu.Unlock()
	return sortedChoices(padTune.done)
}

// PadSummary is PadChoices in one line ("" where none was made), for logs.
func PadSummary() string { return joinChoices(PadChoices()) }
