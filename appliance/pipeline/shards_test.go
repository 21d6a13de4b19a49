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

// Stages placed on groups of nodes (tensor parallelism) generate exactly what one node
// generates: one stage on a pair, a pipeline of two pairs (the second pair's shards take the
// first's activations as input), one stage on three nodes and a pipeline of two groups of
// three (the members swap with each other, not only with shard 0); three requests at once,
// driven from outside and from a shard 0.
func TestTensorParallelStagesMatchSingleNode(t *testing.T) {
	for _, file := range []string{"stories260K-F32.gguf", "stories260K-Q8_0.gguf"} {
		path := storiesPath(t, file)
		for _, tc := range []struct {
			split  [][2]int
			group  int
			driver string
		}{
			{[][2]int{{0, 5}}, 2, ""},
			{[][2]int{{0, 2}, {2, 5}}, 2, "node2"},
			{[][2]int{{0, 5}}, 3, ""},
			{[][2]int{{0, 2}, {2, 5}}, 3, "node0"},
		} {
			g := tc.group
			t.Run(fmt.Sprintf("%s/%d-groups-of-%d", file, len(tc.split), g), func(t *testing.T) {
				c := newGroupCluster(t, path, tc.split, g, wire.F32)
				if tc.driver != "" {
					c.driveFrom(tc.driver)
				}
				m := openWhole(t, path)
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
				for i := range g * len(tc.split) {
					if i%g == 0 {
						continue
					}
					h, h0 := c.hosts[fmt.Sprintf("node%d", i)], c.hosts[fmt.Sprintf("node%d", i-i%g)]
					if !nettest.WaitFor(5*time.Second, func() bool {
						st, st0 := h.Status(), h0.Status()
						return len(st) == 1 && len(st0) == 1 && st0[0].Kept == 3 && st[0].Active == st0[0].Kept
					}) {
						t.Errorf("node%d (shard %d) holds other sequences than shard 0 keeps: %+v, shard 0 %+v", i, i%g, h.Status(), h0.Status())
					}
				}
				// Shard 0 reports the group; every member its shard.
				for i := range g * len(tc.split) {
					st := c.hosts[fmt.Sprintf("node%d", i)].Status()
					if len(st) != 1 || st[0].Shards != g || st[0].Shard != i%g || st[0].State != StageReady {
						t.Errorf("node%d reports %+v", i, st)
						continue
					}
					// Shard 0 batches; the other shard runs what it is told.
					if b := st[0].Batching; (i%g == 0) != (b != nil && b.Steps > 0) {
						t.Errorf("node%d (shard %d) reports batching %+v", i, i%g, b)
					}
					// Both shards swap four times a layer per pass, and once more for the last
					// stage's logits.
					l := tc.split[i/g]
					perPass := uint64(4 * (l[1] - l[0]))
					if i/g == len(tc.split)-1 {
						perPass++
					}
					rounds := c.hosts[fmt.Sprintf("node%d", i-i%g)].Status()[0].Batching.Rounds
					if sw := st[0].Swaps; sw == nil || sw.Count != rounds*perPass || sw.Seconds <= 0 {
						t.Errorf("node%d (shard %d) reports swaps %+v, want %d (%d passes)", i, i%g, sw, rounds*perPass, rounds)
					}
				}
			})
		}
	}
}

// Losing the node of the group's last shard fails the request running on the group with an
// error naming that node; once the node is back (a new endpoint), shard 0 loads again,
// reconnects, and the group generates what one node generates. In a pair, and in a group of
// three (where the lost node's swaps with shard 1 break too).
func TestTensorParallelShardLostAndBack(t *testing.T) {
	path := storiesPath(t, "stories260K-F32.gguf")
	m := openWhole(t, path)
	prompt := m.Tokenizer.Encode("Once upon a time", true, false)
	want, err := m.Generate(context.Background(), model.GenerateRequest{Prompt: prompt, MaxTokens: 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []int{2, 3} {
		t.Run(fmt.Sprintf("group-of-%d", g), func(t *testing.T) {
			c := newGroupCluster(t, path, [][2]int{{0, 5}}, g, wire.F32)
			victim := fmt.Sprintf("node%d", g-1)
			n := 0
			req := model.GenerateRequest{Prompt: prompt, MaxTokens: 200, IgnoreEOS: true,
				OnText: func(string) error {
					if n++; n == 5 {
						c.nets[victim].Close()
					}
					return nil
				}}
			_, err := c.generate(context.Background(), req)
			var pe *Error
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), fmt.Sprintf("shard %d on %s", g-1, victim)) {
				t.Fatalf("want a pipeline error naming shard %d's node, got %v", g-1, err)
			}
			t.Logf("shard %d lost: %v", g-1, err)
			c.hosts[victim].Close()
			back := c.startHost(victim, path)
			back.Sync([]state.Instance{c.inst})
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
			if st := back.Status(); len(st) != 1 || st[0].Shard != g-1 {
				t.Fatalf("%s reports %+v", victim, st)
			}
		})
	}
}
