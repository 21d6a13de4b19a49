package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// extractBytes is what `exo gguf extract` writes for layers [a, b) of the fixture.
func extractBytes(t *testing.T, path string, a, b int) []byte {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if err := gguf.Extract(f, a, b, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// stageBytes is how many bytes of the source a stage needs: its tensors.
func stageBytes(t *testing.T, path string, a, b int) int64 {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts, err := gguf.StageTensors(f, a, b)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, ti := range ts {
		n += ti.Size
	}
	return n
}

// TestStageFetchFromHub: a stage fetch reads the header with Range requests, fetches only
// the stage's tensors, and writes exactly what gguf.Extract writes from the whole file.
func TestStageFetchFromHub(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		a, b int
	}{
		{"stories260K/stories260K-F32.gguf", 0, 2},
		{"stories260K/stories260K-F32.gguf", 2, 5}, // last stage of a tied model keeps token_embd
		{"stories260K/stories260K-Q8_0.gguf", 1, 3},
		{"synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf", 1, 3}, // a 32k vocabulary: the header needs several reads
	} {
		path := filepath.Join(fixtures(t), tc.rel)
		data := fixtureBytes(t, tc.rel)
		file := filepath.Base(tc.rel)
		hub := newHub(t)
		hub.Add(testRepo, file, data)
		dir := t.TempDir()
		st := newStore(t, hub, []string{dir}, nil)
		m, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + file, Layers: &Stage{tc.a, tc.b}}, nil)
		if err != nil {
			t.Fatalf("%s [%d,%d): %v", file, tc.a, tc.b, err)
		}
		want := extractBytes(t, path, tc.a, tc.b)
		got, err := os.ReadFile(m.Path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s [%d,%d): stage file (%d bytes) differs from gguf.Extract (%d bytes)", file, tc.a, tc.b, len(got), len(want))
		}
		if m.Stage == nil || *m.Stage != (Stage{tc.a, tc.b}) || filepath.Base(m.Path) != StageFileName(m.ID[:len(m.ID)-len(".layers-0-0")], tc.a, tc.b) {
			t.Errorf("model %+v", m)
		}
		// Only the header and the stage's tensors crossed the wire: the header probe (4 KiB,
		// doubling) may overshoot the header by less than its size.
		f, _ := gguf.Open(path)
		header := f.DataOffset
		f.Close()
		tensors := stageBytes(t, path, tc.a, tc.b)
		if served := hub.Served(); served < header+tensors || served > 2*header+tensors+4<<10 {
			t.Errorf("%s [%d,%d): served %d bytes for a %d byte header and %d bytes of tensors (file %d)",
				file, tc.a, tc.b, served, header, tensors, len(data))
		}
		man, err := ReadManifest(m.Path)
		if err != nil || man.Verified || man.Stage == nil || man.Origin != "hf://"+testRepo+"/"+file {
			t.Errorf("manifest %+v %v: a stage cut from the hub is unverified", man, err)
		}
		if ev := st.lastEvent(); ev.Verified || ev.Note == "" {
			t.Errorf("progress does not say the stage is unverified: %+v", ev)
		}
	}
}

// TestStageFetchResumes: tensors written before an interruption are not fetched again.
func TestStageFetchResumes(t *testing.T) {
	rel := "stories260K/stories260K-F32.gguf"
	data := fixtureBytes(t, rel)
	hub := newHub(t)
	hub.Add(testRepo, "m.gguf", data)
	dir := t.TempDir()
	st := newStore(t, hub, []string{dir}, func(o *Options) { o.Parallel = 1 })
	final := filepath.Join(dir, StageFileName("m", 0, 3))
	hub.StallAfter(300 << 10) // past the header, inside the tensors
	p, err := st.Start(PullRequest{Source: testRepo + ":m.gguf", Layers: &Stage{0, 3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a tensor to be recorded", func() bool {
		s, ok := readState(t, final)
		return ok && len(s.Tensors) > 0
	})
	p.Cancel()
	p.Wait(ctxT(t))
	waitFor(t, "the cancelled requests to end", func() bool { return hub.InFlight() == 0 })
	first := hub.Served()
	s, _ := readState(t, final)
	hub.Release()
	hub.Reset()
	m, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":m.gguf", Layers: &Stage{0, 3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, extractBytes(t, filepath.Join(fixtures(t), rel), 0, 3)) {
		t.Fatal("resumed stage differs from gguf.Extract")
	}
	// The second run asked for exactly the tensors the first had not recorded.
	f, err := gguf.Open(filepath.Join(fixtures(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts, _ := gguf.StageTensors(f, 0, 3)
	want := map[string]bool{}
	for _, ti := range ts {
		if !s.Tensors[ti.Name] {
			want[fmt.Sprintf("bytes=%d-%d", f.DataOffset+int64(ti.Offset), f.DataOffset+int64(ti.Offset)+ti.Size-1)] = true
		}
	}
	got := map[string]bool{}
	for _, r := range hub.Requests() {
		if !want[r.Range] {
			// Header reads start inside the header; anything else is a tensor fetched twice.
			var a, b int64
			fmt.Sscanf(r.Range, "bytes=%d-%d", &a, &b)
			if a >= f.DataOffset {
				t.Errorf("resumed fetch asked for %s, which the first run had", r.Range)
			}
			continue
		}
		got[r.Range] = true
	}
	for r := range want {
		if !got[r] {
			t.Errorf("missing tensor range %s was not fetched", r)
		}
	}
	if len(s.Tensors) == 0 || len(want) == 0 || first == 0 {
		t.Fatalf("the interruption did not fall inside the tensors (%d done)", len(s.Tensors))
	}
}
