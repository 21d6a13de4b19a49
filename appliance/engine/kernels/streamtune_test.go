package kernels

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The stream tuner measures a type's one-column kernel forms on the matrices it is given,
// once, only where they hold enough weights, and runs the form it reports; SetStreamPrefetch
// forces a form at once.
func TestTuneStreams(t *testing.T) {
	k := packedFormats[ggml.Q4_K].kernels
	if k == nil || !k.has(formStream) {
		t.Skip("no Q4_K kernel in several forms in this build and CPU (the amd64 assembly with AVX2 has them)")
	}
	oldMin, oldMax := streamTuneMin, streamTuneMax
	t.Cleanup(func() {
		streamTuneMin, streamTuneMax = oldMin, oldMax
		if err := SetStreamPrefetch("auto"); err != nil {
			t.Error(err)
		}
	})
	if err := SetStreamPrefetch("sometimes"); err == nil || !strings.Contains(err.Error(), `"sometimes"`) {
		t.Fatalf("mode sometimes: %v", err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	mats, q4k := packedMats(t, r, ggml.Q4_K, 3, 1024, 2048)
	// A type with one form only is not measured.
	mats = append(mats, Pack(ggml.Q5_1, q4Matrix(t, r, ggml.Q5_1, 256, 2048), 256, 2048))
	if packedFormats[ggml.Q5_1].kernels.tunable() {
		t.Fatal("Q5_1's kernel has several forms: pick another type for the test")
	}

	only := func(cs []StreamChoice) StreamChoice {
		t.Helper()
		if len(cs) != 1 || cs[0].Type != ggml.Q4_K {
			t.Fatalf("choices %v, want one for Q4_K", cs)
		}
		return cs[0]
	}
	for _, c := range []struct {
		mode string
		want func(k *packedKernelSet) decodeForm
	}{
		{"off", func(*packedKernelSet) decodeForm { return formStream }},
		{"on", func(*packedKernelSet) decodeForm { return formAhead }},
		{"runs2", func(k *packedKernelSet) decodeForm {
			switch {
			case k.has(formRuns2):
				return formRuns2
			case k.has(formStream):
				return formStream
			}
			return formAhead
		}},
	} {
		if err := SetStreamPrefetch(c.mode); err != nil {
			t.Fatal(err)
		}
		// Every type whose kernel has several forms is set, Q4_K among them.
		forced := map[ggml.Type]StreamChoice{}
		for _, ch := range StreamChoices() {
			forced[ch.Type] = ch
		}
		for ty, f := range packedFormats {
			if f.kernels == nil || !f.kernels.tunable() {
				continue
			}
			want := c.want(f.kernels)
			if c.mode == "off" && !f.kernels.has(formStream) {
				want = formAhead
			}
			ch, ok := forced[ty]
			got := decodeForm(f.kernels.form.Load())
			if got != want || !ok || ch.Prefetch != (want == formAhead) || ch.TwoRuns != (want == formRuns2) || ch.Measured {
				t.Fatalf("mode %s: %s runs form %d, want %d; choice %+v", c.mode, ty, got, want, ch)
			}
		}
		if _, ok := forced[ggml.Q4_K]; !ok {
			t.Fatalf("mode %s: no choice for Q4_K in %v", c.mode, StreamChoices())
		}
		if cs := TuneStreams(SharedPool(1), mats); cs != nil {
			t.Fatalf("mode %s: TuneStreams measured %v", c.mode, cs)
		}
	}
	if err := SetStreamPrefetch("auto"); err != nil {
		t.Fatal(err)
	}
	if cs := StreamChoices(); len(cs) != 0 || decodeForm(k.form.Load()) != formAhead {
		t.Fatalf("auto: choices %v, form %d; want none, the prefetching kernel", cs, k.form.Load())
	}
	// Less than streamTuneMin of Q4_K: nothing measured, the default stays.
	streamTuneMin = q4k + 1
	if cs := TuneStreams(SharedPool(1), mats); len(cs) != 0 || len(StreamChoices()) != 0 {
		t.Fatalf("below the minimum: %v", cs)
	}
	// Enough: measured over at most streamTuneMax (two matrices here), and the chosen form runs.
	streamTuneMin, streamTuneMax = 1<<20, int64(len(mats[0].data))+1
	c := only(TuneStreams(SharedPool(2), mats))
	if !c.Measured || c.AheadGBs <= 0 || c.StreamGBs <= 0 || (c.TwoRunsGBs > 0) != k.has(formRuns2) ||
		c.Bytes != int64(len(mats[0].data)+len(mats[1].data)) {
		t.Fatalf("measured choice %+v", c)
	}
	// The rates give back the choice: the pick from the passes' times (rates inverted).
	dur := func(gbs float64) time.Duration {
		if gbs == 0 {
			return 0
		}
		return time.Duration(float64(c.Bytes) / gbs)
	}
	want := pickForm([3]time.Duration{dur(c.AheadGBs), dur(c.StreamGBs), dur(c.TwoRunsGBs)})
	if got := decodeForm(k.form.Load()); got != want || c.Prefetch != (want == formAhead) || c.TwoRuns != (want == formRuns2) {
		t.Fatalf("choice %+v, form %d, want form %d", c, got, want)
	}
	t.Logf("%v", c)
	// Settled for the process: a later model does not measure again.
	if cs := TuneStreams(SharedPool(1), mats); len(cs) != 0 || only(StreamChoices()) != c {
		t.Fatalf("second call: %v, choices %v", cs, StreamChoices())
	}
}

// Another form is taken only where it is streamTuneGain faster than the one it replaces; two
// runs compete with the better of the other two.
func TestPickForm(t *testing.T) {
	for _, c := range []struct {
		cur, alt time.Duration
		want     bool
	}{{105, 100, true}, {200, 100, true}, {104, 100, false}, {100, 100, false}, {90, 100, false}, {100, 0, false}} {
		if got := preferStream(c.cur, c.alt); got != c.want {
			t.Errorf("preferStream(%v, %v) = %v, want %v", c.cur, c.alt, got, c.want)
		}
	}
	for _, c := range []struct {
		best [3]time.Duration
		want decodeForm
	}{
		{[3]time.Duration{100, 100, 100}, formAhead},
		{[3]time.Duration{100, 90, 0}, formStream},
		{[3]time.Duration{100, 0, 90}, formRuns2},
		{[3]time.Duration{100, 90, 88}, formStream}, // two runs not 5% faster than the stream form
		{[3]time.Duration{100, 90, 80}, formRuns2},
		{[3]time.Duration{100, 104, 97}, formAhead},
		{[3]time.Duration{100, 0, 0}, formAhead},
	} {
		if got := pickForm(c.best); got != c.want {
			t.Errorf("pickForm(%v) = %d, want %d", c.best, got, c.want)
		}
	}
}
