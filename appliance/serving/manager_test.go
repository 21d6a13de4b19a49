package serving

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

func storiesDir(t testing.TB) string { return testfixtures.Path(t, "stories260K") }

type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) publish(_ string, data any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := data.(State)
	e.got = append(e.got, st.ID+":"+st.Status)
}

func (e *events) list() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.got, ",")
}

func TestLoadOnFirstUseQueueAndUnload(t *testing.T) {
	ev := &events{}
	m := New(Options{Catalog: store.NewCatalog([]string{storiesDir(t)}), Slots: 1, MaxQueue: 1, Publish: ev.publish})
	defer m.Close()
	ctx := context.Background()

	first, err := m.Acquire(ctx, "stories260K-F32")
	if err != nil {
		t.Fatal(err)
	}
	if first.Model == nil || first.Model.Config.NLayer != 5 {
		t.Fatalf("loaded %+v", first.Model)
	}
	// The only slot is taken: one request may wait, the next is refused at once.
	waited := make(chan error, 1)
	go func() {
		l, err := m.Acquire(ctx, "stories260K-F32")
		if err == nil {
			l.Release()
		}
		waited <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for states := m.States(); len(states) == 0 || states[0].Waiting != 1; states = m.States() {
		if time.Now().After(deadline) {
			t.Fatalf("waiter not queued: %+v", states)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := m.Acquire(ctx, "stories260K-F32"); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third request: %v", err)
	}
	first.Release()
	if err := <-waited; err != nil {
		t.Fatalf("queued request: %v", err)
	}
	// A waiter that gives up leaves the queue.
	hold, _ := m.Acquire(ctx, "stories260K-F32")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if _, err := m.Acquire(cctx, "stories260K-F32"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	cancel()
	hold.Release()

	m.unloadIdle(time.Now().Add(time.Second))
	if got := ev.list(); got != "stories260K-F32:loading,stories260K-F32:loaded,stories260K-F32:unloaded" {
		t.Fatalf("events %s", got)
	}
	if len(m.States()) != 0 {
		t.Fatalf("still loaded: %+v", m.States())
	}
	// It loads again on the next use.
	again, err := m.Acquire(ctx, "stories260K-F32")
	if err != nil {
		t.Fatal(err)
	}
	again.Release()
}

func TestMemoryCheckAndUnknownModel(t *testing.T) {
	m := New(Options{Catalog: store.NewCatalog([]string{storiesDir(t)}), MemAvailable: func() (int64, error) { return 1000, nil }})
	defer m.Close()
	_, err := m.Acquire(context.Background(), "stories260K-F32")
	if !errors.Is(err, ErrNoMemory) || !strings.Contains(err.Error(), "1054560") || !strings.Contains(err.Error(), "1000") {
		t.Fatalf("memory check: %v", err)
	}
	if _, err := m.Acquire(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestMemAvailableReadsProc(t *testing.T) {
	n, err := memAvailable()
	if err != nil || n <= 0 {
		t.Fatalf("%d %v", n, err)
	}
}
