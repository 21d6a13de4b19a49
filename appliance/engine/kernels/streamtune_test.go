package kernels

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// The stream tuner measures a type's two one-column kernels on the matrices it is given, once,
// only where they hold enough weights, and runs the form it reports; SetStreamPrefetch forces
// either form at once.
func TestTuneStreams(t *testing.T) {
	k := packedFormats[ggml.Q4_K].kernels
	if k == nil || k.dotStream == nil {
		t.Skip("no Q4_K kernel in two forms in this build and CPU (the amd64 assembly with AVX2 has one)")
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
	var mats []*Packed
	var q4k int64
	for i := 0; i < 3; i++ {
		p := Pack(ggml.Q4_K, q4Matrix(t, r, ggml.Q4_K, 1024, 2048), 1024, 2048)
		mats = append(mats, p)
		q4k += int64(len(p.data))
	}
	// A type with one form only is not measured.
	mats = append(mats, Pack(ggml.Q5_0, q4Matrix(t, r, ggml.Q5_0, 256, 2048), 256, 2048))

	only := func(cs []StreamChoice) StreamChoice {
		t.Helper()
		if len(cs) != 1 || cs[0].Type != ggml.Q4_K {
			t.Fatalf("choices %v, want one for Q4_K", cs)
		}
		return cs[0]
	}
	for _, mode := range []string{"off", "on"} {
		if err := SetStreamPrefetch(mode); err != nil {
			t.Fatal(err)
		}
		// Every type whose kernel has both forms is set, Q4_K among them.
		forced := map[ggml.Type]StreamChoice{}
		for _, c := range StreamChoices() {
			forced[c.Type] = c
		}
		for ty, f := range packedFormats {
			if f.kernels == nil || f.kernels.dotStream == nil {
				continue
			}
			c, ok := forced[ty]
			if f.kernels.stream.Load() != (mode == "off") || !ok || c.Prefetch != (mode == "on") || c.Measured {
				t.Fatalf("mode %s: %s runs the kernel without prefetch: %v; choice %+v", mode, ty, f.kernels.stream.Load(), c)
			}
		}
		if _, ok := forced[ggml.Q4_K]; !ok {
			t.Fatalf("mode %s: no choice for Q4_K in %v", mode, StreamChoices())
		}
		if cs := TuneStreams(SharedPool(1), mats); cs != nil {
			t.Fatalf("mode %s: TuneStreams measured %v", mode, cs)
		}
	}
	if err := SetStreamPrefetch("auto"); err != nil {
		t.Fatal(err)
	}
	if cs := StreamChoices(); len(cs) != 0 || k.stream.Load() {
		t.Fatalf("auto: choices %v, stream %v; want none, the prefetching kernel", cs, k.stream.Load())
	}
	// Less than streamTuneMin of Q4_K: nothing measured, the default stays.
	streamTuneMin = q4k + 1
	if cs := TuneStreams(SharedPool(1), mats); len(cs) != 0 || len(StreamChoices()) != 0 {
		t.Fatalf("below the minimum: %v", cs)
	}
	// Enough: measured over at most streamTuneMax (two matrices here), and the faster form runs.
	streamTuneMin, streamTuneMax = 1<<20, int64(len(mats[0].data))+1
	c := only(TuneStreams(SharedPool(2), mats))
	if !c.Measured || c.AheadGBs <= 0 || c.StreamGBs <= 0 || c.Bytes != int64(len(mats[0].data)+len(mats[1].data)) {
		t.Fatalf("measured choice %+v", c)
	}
	if c.Prefetch == (c.StreamGBs >= streamTuneGain*c.AheadGBs*(1+1e-9)) || k.stream.Load() == c.Prefetch {
		t.Fatalf("choice %+v against rates, stream %v", c, k.stream.Load())
	}
	t.Logf("%v", c)
	// Settled for the process: a later model does not measure again.
	if cs := TuneStreams(SharedPool(1), mats); len(cs) != 0 || only(StreamChoices()) != c {
		t.Fatalf("second call: %v, choices %v", cs, StreamChoices())
	}
}

// The form without prefetches is taken only where it is streamTuneGain faster.
func TestPreferStream(t *testing.T) {
	for _, c := range []struct {
		ahead, stream time.Duration
		want          bool
	}{{105, 100, true}, {200, 100, true}, {104, 100, false}, {100, 100, false}, {90, 100, false}, {100, 0, false}} {
		if got := preferStream(c.ahead, c.stream); got != c.want {
			t.Errorf("preferStream(%v, %v) = %v, want %v", c.ahead, c.stream, got, c.want)
		}
	}
}
