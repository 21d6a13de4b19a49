package kernels

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// resetPadTuning forgets TunePadding's choices and puts every kernel set back at its table's
// padding, now and when the test ends.
func resetPadTuning(t *testing.T) {
	reset := func() {
		padTune.mu.Lock()
		defer padTune.mu.Unlock()
		clear(padTune.done)
		for _, ks := range packedVariants {
			for _, k := range ks {
				k.pad4.Store(int32(k.padTable))
			}
		}
	}
	reset()
	oldMin, oldMax := padTuneMin, padTuneMax
	t.Cleanup(func() {
		padTuneMin, padTuneMax = oldMin, oldMax
		reset()
	})
}

// The padding tuner measures a type on the matrices it is given, once, only where they hold
// enough weights, over at most padTuneMax of whole panels, and applies the choice its rates
// give.
func TestTunePadding(t *testing.T) {
	k := packedFormats[ggml.Q4_0].kernels
	if k == nil || k.dot4 == nil {
		t.Skip("no four-column Q4_0 kernel in this build and CPU (the amd64 assembly with AVX2 has one)")
	}
	resetPadTuning(t)
	r := rand.New(rand.NewPCG(9, 9))
	mats, q40 := packedMats(t, r, ggml.Q4_0, 3, 1024, 2048)
	// Less than padTuneMin of Q4_0: nothing measured, the table's padding stays.
	padTuneMin = q40 + 1
	if cs := TunePadding(SharedPool(1), mats); len(cs) != 0 || len(PadChoices()) != 0 || PadSummary() != "" {
		t.Fatalf("below the minimum: %v, choices %v", cs, PadChoices())
	}
	if got := int(k.pad4.Load()); got != k.padTable {
		t.Fatalf("below the minimum: pad4 %d, table %d", got, k.padTable)
	}
	// Enough: measured over the first matrix and the first half of the second (whole panels).
	half := int64(len(mats[1].data) / 2)
	padTuneMin, padTuneMax = 1<<20, int64(len(mats[0].data))+half
	cs := TunePadding(SharedPool(2), mats)
	if len(cs) != 1 || cs[0].Type != ggml.Q4_0 {
		t.Fatalf("choices %v, want one for Q4_0", cs)
	}
	c := cs[0]
	if c.Bytes != int64(len(mats[0].data))+half || c.Padded3GBs <= 0 || c.Each3GBs <= 0 {
		t.Fatalf("measured choice %+v, want %d bytes", c, int64(len(mats[0].data))+half)
	}
	// The rates give back the choice (durations as the rates' inverses), and it applies.
	dur := func(gbs float64) time.Duration {
		if gbs == 0 {
			return 0
		}
		return time.Duration(float64(c.Bytes) / gbs)
	}
	if (c.Padded2GBs > 0) != pads(k.padTable, 3, dur(c.Padded3GBs), dur(c.Each3GBs)) || (c.Padded2GBs > 0) != (c.Each2GBs > 0) {
		t.Fatalf("two rows measured: %+v, table %d", c, k.padTable)
	}
	want := pickPad(k.padTable, dur(c.Padded3GBs), dur(c.Each3GBs), dur(c.Padded2GBs), dur(c.Each2GBs))
	if c.Rows != want || int(k.pad4.Load()) != want {
		t.Fatalf("choice %+v, pad4 %d, want %d", c, k.pad4.Load(), want)
	}
	if s := PadSummary(); !strings.HasPrefix(s, "Q4_0 ") || !strings.Contains(s, "over") {
		t.Fatalf("summary %q", s)
	}
	t.Logf("%v", c)
	// Settled for the process: a later model does not measure again.
	if cs := TunePadding(SharedPool(1), mats); len(cs) != 0 || !slices.Equal(PadChoices(), []PadChoice{c}) {
		t.Fatalf("second call: %v, choices %v", cs, PadChoices())
	}
}

// The table's way stays unless the other is padTuneGain faster; two rows pad only where three
// do.
func TestPickPad(t *testing.T) {
	ms := func(x float64) time.Duration { return time.Duration(x * float64(time.Millisecond)) }
	hi, lo := 10*padTuneGain+0.1, 10*padTuneGain-0.1 // more and less than padTuneGain slower than 10
	for _, c := range []struct {
		table                          int
		padded3, each3, padded2, each2 float64
		want                           int
	}{
		{0, 10, 10, 0, 0, 0},   // even: the table's one pass each
		{0, 10, lo, 0, 0, 0},   // padded not padTuneGain faster
		{0, 10, hi, 10, 10, 3}, // three pad; two even: the table's one pass each
		{0, 10, 20, 10, hi, 2}, // both pad
		{3, 10, 10, 10, 10, 3}, // the table pads three, not two
		{3, hi, 10, 0, 0, 0},   // padded padTuneGain slower
		{3, lo, 10, 10, 10, 3}, // padded slower, but not by padTuneGain
		{2, 10, 10, hi, 10, 3}, // the table pads two, but two rows padded are slower
		{2, 10, 10, 10, 10, 2}, // the table pads two; even
		{2, 10, 10, 0, 0, 3},   // two rows not measured
		{3, 10, hi, 10, hi, 2}, // the table pads three; two pad too where padTuneGain faster
	} {
		if got := pickPad(c.table, ms(c.padded3), ms(c.each3), ms(c.padded2), ms(c.each2)); got != c.want {
			t.Errorf("pickPad(%+v) = %d, want %d", c, got, c.want)
		}
	}
}
