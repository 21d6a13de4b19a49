package state

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func inst(id string, placements int, nodes ...string) *Instance {
	in := &Instance{ID: id, Model: "m", Status: StatusPlaced, Placements: placements, Created: time.Unix(int64(len(id)), 0)}
	for i, n := range nodes {
		in.Stages = append(in.Stages, Stage{Node: n, Layers: [2]int{i * 4, i*4 + 4}})
	}
	return in
}

func TestFSMCommands(t *testing.T) {
	changes := 0
	f := NewFSM(func() { changes++ })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.ApplyCommand(Command{Op: OpPutInstance, Instance: inst("a", 1, "n1", "n2")}))
	must(f.ApplyCommand(Command{Op: OpPutInstance, Instance: inst("bb", 1, "n3")}))
	if got := f.Instances(); len(got) != 2 || got[0].ID != "a" || !got[0].HasNode("n2") || got[0].HasNode("n3") {
		t.Fatalf("instances %+v", got)
	}
	// Conditional update: applies at the expected placement count, refused otherwise.
	one := 1
	must(f.ApplyCommand(Command{Op: OpPutInstance, Instance: inst("a", 2, "n1"), IfPlacements: &one}))
	if err := f.ApplyCommand(Command{Op: OpPutInstance, Instance: inst("a", 2, "n9"), IfPlacements: &one}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale conditional update: %v", err)
	}
	if in, _ := f.Instance("a"); in.Placements != 2 || in.HasNode("n9") {
		t.Fatalf("conditional update result %+v", in)
	}
	// Returned copies do not alias the state.
	in, _ := f.Instance("a")
	in.Stages[0].Node = "mutated"
	if again, _ := f.Instance("a"); again.Stages[0].Node != "n1" {
		t.Fatal("Instance returned an alias into the state")
	}
	must(f.ApplyCommand(Command{Op: OpDeleteInstance, ID: "bb"}))
	if err := f.ApplyCommand(Command{Op: OpDeleteInstance, ID: "bb"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	must(f.ApplyCommand(Command{Op: OpPutAPIKey, APIKey: &APIKey{ID: "k1", SHA256: strings.Repeat("ab", 32)}}))
	if err := f.ApplyCommand(Command{Op: OpPutAPIKey, APIKey: &APIKey{ID: "k2", SHA256: "short"}}); err == nil {
		t.Fatal("malformed key hash accepted")
	}
	must(f.ApplyCommand(Command{Op: OpSetSetting, Key: "placement.mode", Value: "latency"}))
	if v, ok := f.Setting("placement.mode"); !ok || v != "latency" {
		t.Fatalf("setting %q %v", v, ok)
	}
	if err := f.ApplyCommand(Command{Op: "bogus"}); err == nil {
		t.Fatal("unknown op accepted")
	}
	if changes != 6 {
		t.Fatalf("notify called %d times for 6 successful changes", changes)
	}
}

type memSink struct {
	strings.Builder
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := NewFSM(nil)
	_ = f.ApplyCommand(Command{Op: OpPutInstance, Instance: inst("a", 3, "n1", "n2")})
	_ = f.ApplyCommand(Command{Op: OpPutAPIKey, APIKey: &APIKey{ID: "k", SHA256: strings.Repeat("0", 64)}})
	_ = f.ApplyCommand(Command{Op: OpSetSetting, Key: "s", Value: "v"})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot are not in it.
	_ = f.ApplyCommand(Command{Op: OpDeleteInstance, ID: "a"})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(nil)
	if err := g.Restore(io.NopCloser(strings.NewReader(sink.String()))); err != nil {
		t.Fatal(err)
	}
	in, ok := g.Instance("a")
	if !ok || in.Placements != 3 || len(in.Stages) != 2 || len(g.APIKeys()) != 1 {
		t.Fatalf("restored state %+v %v", in, g.APIKeys())
	}
	if err := g.Restore(io.NopCloser(strings.NewReader("{broken"))); err == nil {
		t.Fatal("corrupt snapshot restored")
	}
}

// TestReplicatedThroughRaft runs three in-memory raft peers over the FSM: commands applied on
// the leader reach every follower, and a peer added later catches up from a snapshot.
func TestReplicatedThroughRaft(t *testing.T) {
	type peer struct {
		r   *raft.Raft
		fsm *FSM
		tr  *raft.InmemTransport
	}
	newPeer := func(id string) *peer {
		conf := raft.DefaultConfig()
		conf.LocalID = raft.ServerID(id)
		// Short enough to elect quickly, long enough that a loaded CI machine (two cores,
		// the race detector) does not miss heartbeats and move leadership mid-test.
		conf.HeartbeatTimeout = 300 * time.Millisecond
		conf.ElectionTimeout = 300 * time.Millisecond
		conf.LeaderLeaseTimeout = 150 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.SnapshotThreshold = 4
		conf.TrailingLogs = 2
		conf.Logger = hclog.NewNullLogger()
		_, tr := raft.NewInmemTransport(raft.ServerAddress(id))
		fsm := NewFSM(nil)
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(conf, fsm, store, store, raft.NewInmemSnapshotStore(), tr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Shutdown().Error() })
		return &peer{r: r, fsm: fsm, tr: tr}
	}
	peers := []*peer{newPeer("a"), newPeer("b"), newPeer("c")}
	for i, p := range peers {
		for j, q := range peers {
			if i != j {
				p.tr.Connect(q.tr.LocalAddr(), q.tr)
			}
		}
	}
	var servers []raft.Server
	for _, p := range peers[:2] {
		servers = append(servers, raft.Server{ID: raft.ServerID(p.tr.LocalAddr()), Address: p.tr.LocalAddr()})
	}
	if err := peers[0].r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, peers[0].r, peers[1].r)
	for i := 0; i < 10; i++ {
		data, _ := Command{Op: OpPutInstance, Instance: inst(fmt.Sprintf("i%d", i), 1, "n1")}.Encode()
		if err := leader.Apply(data, time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	data, _ := Command{Op: OpDeleteInstance, ID: "i0"}.Encode()
	if err := leader.Apply(data, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := leader.AddVoter("c", "c", 0, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	// Wait for the final state (9 instances, i0 gone) on every peer: a follower that has
	// applied only i0..i8 also counts 9 instances, so the count alone is not enough.
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range peers {
		for {
			_, has0 := p.fsm.Instance("i0")
			n := len(p.fsm.Instances())
			if n == 9 && !has0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("peer %s has %d instances (deleted i0 still there: %v), want 9 without i0", p.tr.LocalAddr(), n, has0)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func waitLeader(t *testing.T, rs ...*raft.Raft) *raft.Raft {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range rs {
			if r.State() == raft.Leader {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}
