package model

import (
	"encoding/json"
	"math"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

func openFixture(t testing.TB, rel string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(testfixtures.Path(t, rel))
	if err != nil {
		t.Fatalf("open %s: %v", rel, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

type goldenMode struct {
	Top64 struct {
		IDs    []int32   `json:"ids"`
		Values []float32 `json:"values"`
	} `json:"last_logits_top64"`
	LastLogits []float32 `json:"last_logits"`
	Stats      struct {
		Std    float64 `json:"std"`
		Argmax int32   `json:"argmax"`
	} `json:"last_logits_stats"`
	GreedyIDs  []int32   `json:"greedy_ids"`
	GreedyText string    `json:"greedy_text"`
	GreedyGap  []float32 `json:"greedy_gap"`
}

type goldenPrompt struct {
	ID        string      `json:"id"`
	Text      string      `json:"text"`
	PromptIDs []int32     `json:"prompt_ids"`
	Default   *goldenMode `json:"default"`
	F32Ref    *goldenMode `json:"f32ref"`
	Dequant   *goldenMode `json:"dequant_f32ref"`
}

type golden struct {
	ModelFile string         `json:"model_file"`
	NVocab    int            `json:"n_vocab"`
	Prompts   []goldenPrompt `json:"prompts"`
}

var goldenCache sync.Map

func loadGolden(t testing.TB, rel string) *golden {
	t.Helper()
	p := testfixtures.Path(t, rel)
	if g, ok := goldenCache.Load(p); ok {
		return g.(*golden)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	goldenCache.Store(p, &g)
	return &g
}

// logitDiff compares logits with a golden mode: over the full vector when the golden has it,
// else over the golden's top-64 ids, plus a check that no other id rises above the 64th value
// by more than tol. It returns the largest absolute difference seen.
func logitDiff(t testing.TB, got []float32, m *goldenMode, tol float64) float64 {
	t.Helper()
	var worst float64
	if m.LastLogits != nil {
		if len(m.LastLogits) != len(got) {
			t.Fatalf("golden has %d logits, engine %d", len(m.LastLogits), len(got))
		}
		for i, w := range m.LastLogits {
			worst = math.Max(worst, math.Abs(float64(got[i])-float64(w)))
		}
		return worst
	}
	in := map[int32]bool{}
	for i, id := range m.Top64.IDs {
		in[id] = true
		worst = math.Max(worst, math.Abs(float64(got[id])-float64(m.Top64.Values[i])))
	}
	floor := float64(m.Top64.Values[len(m.Top64.Values)-1])
	for i, v := range got {
		if !in[int32(i)] && float64(v) > floor+tol {
			t.Errorf("id %d has logit %v, above the golden's 64th value %v (it is not in the golden top 64)", i, v, floor)
		}
	}
	return worst
}

// topIDs returns the ids of the n largest logits.
func topIDs(l []float32, n int) []int32 {
	ids := make([]int32, len(l))
	for i := range ids {
		ids[i] = int32(i)
	}
	sort.SliceStable(ids, func(a, b int) bool { return l[ids[a]] > l[ids[b]] })
	return ids[:n]
}
