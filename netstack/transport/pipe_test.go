package transport

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/wire"
)

// TestPipe: an in-process stream carries frames both ways, ends cleanly, passes a cancel
// reason, holds writers back at its window and honours read deadlines, like a stream between
// nodes.
func TestPipe(t *testing.T) {
	a, b := Pipe(ServiceData, 1<<20)
	if a.Service() != ServiceData {
		t.Fatalf("service %s", a.Service())
	}
	x := randomF32(3000, 7)
	h := wire.Header{Kind: wire.KindActivations, DType: wire.F32, Instance: "i", Request: 9, Step: 2,
		Positions: []int32{5, 6, 7}, Shape: []uint32{3, 1000}}
	go func() {
		if err := a.WriteFrame(&h, wire.F32Bytes(x)); err != nil {
			t.Error(err)
		}
		_ = a.CloseWrite()
	}()
	var rh wire.Header
	p, err := b.ReadFrame(&rh, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := wire.F32View(p)
	if !slices.Equal(got, x) || rh.Request != 9 || rh.Step != 2 || !slices.Equal(rh.Positions, h.Positions) || rh.Instance != "i" {
		t.Fatalf("frame %+v came through as %+v", h, rh)
	}
	if _, err := b.ReadFrame(&rh, nil); err != io.EOF {
		t.Fatalf("after CloseWrite: %v, want io.EOF", err)
	}
	// The other direction still works after one side's end.
	go func() {
		_ = b.WriteFrame(&wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{2}}, []byte("ok"))
	}()
	if p, err := a.ReadFrame(&rh, nil); err != nil || string(p) != "ok" {
		t.Fatalf("reply: %q %v", p, err)
	}

	// Backpressure: an 8 MiB frame does not fit a 1 MiB window until the reader reads.
	a, b = Pipe(ServiceData, 1<<20)
	big := bytes.Repeat([]byte{1, 2, 3, 4}, 2<<20)
	done := make(chan error, 1)
	go func() {
		done <- a.WriteFrame(&wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{uint32(len(big))}}, big)
	}()
	select {
	case err := <-done:
		t.Fatalf("an 8 MiB frame was written into a 1 MiB window with no reader (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	if p, err := b.ReadFrame(&rh, nil); err != nil || !bytes.Equal(p, big) {
		t.Fatalf("big frame: %v, equal %v", err, bytes.Equal(p, big))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Cancel between frames: the reason arrives; mid-frame with a blocked writer: the writer is
	// released and the reader sees an error, not a clean end.
	a, b = Pipe(ServiceData, 1<<20)
	a.Cancel("stage 2 failed: out of memory")
	var ce *CancelledError
	if _, err := b.ReadFrame(&rh, nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "out of memory") {
		t.Fatalf("read after cancel: %v", err)
	}
	if err := b.WriteFrame(&wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{2}}, []byte("hi")); !errors.As(err, &ce) {
		t.Fatalf("write to a cancelled peer: %v", err)
	}
	a, b = Pipe(ServiceData, 1<<20)
	go func() {
		done <- a.WriteFrame(&wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{uint32(len(big))}}, big)
	}()
	time.Sleep(20 * time.Millisecond)
	a.Cancel("request cancelled")
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled write reported success")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Cancel did not release a writer held back by the window")
	}
	if _, err := b.ReadFrame(&rh, nil); err == nil || err == io.EOF {
		t.Fatalf("reader of a cancelled frame got %v", err)
	}

	// Deadlines.
	a, _ = Pipe(ServiceData, 0)
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := a.ReadFrame(&rh, nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
}
