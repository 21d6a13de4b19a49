package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/netstack/nettest"
	"github.com/exo-nix/exo/netstack/wire"
)

// Stages placed on pairs of nodes (tensor parallelism) generate exactly what one node
// generates: one stage on a pair, and a pipeline of two pairs (the second pair's shards take
// the first's activations as input); three requests at once, driven from outside and from a
// shard 0.
func TestTensorParallelStagesMatchSingleNode(t *testing.T) {
	for _, file := range []string{"stories260K-F32.gguf", "stories260K-Q8_0.gguf"} {
		path := storiesPath(t, file)
		for _, tc := range []struct {
			split  [][2]int
			driver string
		}{
			{[][2]int{{0, 5}}, ""},
			{[][2]int{{0, 2}, {2, 5}}, "node2"},
		} {
			t.Run(fmt.Sprintf("%s/%d-pairs", file, len(tc.split)), func(t *testing.T) {
				c := newGroupCluster(t, path, tc.split, 2, wire.F32)
				if tc.driver != "" {
					c.driveFrom(tc.driver)
				}
				m, err := model.Open(path, model.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				var wg sync.WaitGroup
				for _, p := range []string{"Once upon a time", "Lily and Tom went to the park. They saw a big dog", "The sun"} {
					req := model.GenerateRequest{Prompt: m.Tokenizer.Encode(p, true, false), MaxTokens: 40}
					want, err := m.Generate(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						got, err := c.generate(context.Background(), req)
						if err != nil {
							t.Error(err)
							return
						}
						if !slices.Equal(got.Tokens, want.Tokens) || got.Text != want.Text {
							t.Errorf("prompt %q:\npairs    %v %q\none node %v %q", p, got.Tokens, got.Text, want.Tokens, want.Text)
						}
					}()
				}
				wg.Wait()
				c.idleEventually(5 * time.Second)
				// The other shards free their copies of the sequences as shard 0 frees its own:
				// they end with copies of the ones shard 0 keeps for later requests.
				for i := 1; i < 2*len(tc.split); i += 2 {
					h, h0 := c.hosts[fmt.Sprintf("node%d", i)], c.hosts[fmt.Sprintf("node%d", i-1)]
					if !nettest.WaitFor(5*time.Second, func() bool {
						st, st0 := h.Status(), h0.Status()
						return len(st) == 1 && len(st0) == 1 && st0[0].Kept == 3 && st[0].Active == st0[0].Kept
					}) {
						t.Errorf("node%d (shard 1) holds other sequences than shard 0 keeps: %+v, shard 0 %+v", i, h.Status(), h0.Status())
					}
				}
				// Shard 0 reports the group; every member its shard.
				for i := range 2 * len(tc.split) {
					st := c.hosts[fmt.Sprintf("node%d", i)].Status()
					if len(st) != 1 || st[0].Shards != 2 || st[0].Shard != i%2 || st[0].State != StageReady {
						t.Errorf("node%d reports %+v", i, st)
						continue
					}
					// Shard 0 batches; the other shard runs what it is told.
					if b := st[0].Batching; (i%2 == 0) != (b != nil && b.Steps > 0) {
						t.Errorf("node%d (shard %d) reports batching %+v", i, i%2, b)
					}
					// Both shards swap four times a layer per pass, and once more for the last
					// stage's logits.
					l := tc.split[i/2]
					perPass := uint64(4 * (l[1] - l[0]))
					if i/2 == len(tc.split)-1 {
						perPass++
					}
					rounds := c.hosts[fmt.Sprintf("node%d", i-i%2)].Status()[0].Batching.Rounds
					if sw := st[0].Swaps; sw == nil || sw.Count != rounds*perPass || sw.Seconds <= 0 {
						t.Errorf("node%d (shard %d) reports swaps %+v, want %d (%d passes)", i, i%2, sw, rounds*perPass, rounds)
					}
				}
			})
		}
	}
}

// Losing the node of shard 1 fails the request running on the group with an error naming
// that node; once the node is back (a new endpoint), shard 0 loads again, reconnects, and the
// group generates what one node generates.
func TestTensorParallelShardLostAndBack(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	c := newGroupCluster(t, path, [][2]int{{0, 5}}, 2, wire.F32)
	m, err := model.Open(path, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := m.Tokenizer.Encode("Once upon a time", true, false)
	n := 0
	req := model.GenerateRequest{Prompt: prompt, MaxTokens: 200, IgnoreEOS: true,
		OnText: func(string) error {
			if n++; n == 5 {
				c.nets["node1"].Close()
			}
			return nil
		}}
	_, err = c.generate(context.Background(), req)
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "shard 1 on node1") {
		t.Fatalf("want a pipeline error naming shard 1's node, got %v", err)
	}
	t.Logf("shard 1 lost: %v", err)
	c.hosts["node1"].Close()
	h1 := c.startHost("node1", path)
	h1.Sync([]state.Instance{c.inst})
	want, err := m.Generate(context.Background(), model.GenerateRequest{Prompt: prompt, MaxTokens: 30})
	if err != nil {
		t.Fatal(err)
	}
	// Shard 0 notices the lost group, loads again and reaches the new endpoint.
	var got *model.Generation
	if !nettest.WaitFor(30*time.Second, func() bool {
		got, err = c.generate(context.Background(), model.GenerateRequest{Prompt: prompt, MaxTokens: 30})
		return err == nil
	}) {
		t.Fatalf("the group does not generate again: %v", err)
	}
	if !slices.Equal(got.Tokens, want.Tokens) {
		t.Fatalf("after reconnecting: %v, one node %v", got.Tokens, want.Tokens)
	}
	// A pipeline stream to a node that holds only shard 1 is refused with the reason.
	if st := h1.Status(); len(st) != 1 || st[0].Shard != 1 {
		t.Fatalf("node1 reports %+v", st)
	}
}
