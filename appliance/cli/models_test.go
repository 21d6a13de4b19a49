package cli

import (
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/store"
)

func TestProgressLine(t *testing.T) {
	p := store.Progress{File: "m.gguf", State: store.StateDownloading, Total: 4 << 20, Done: 1 << 20,
		BytesPerSec: 512 << 10, ETASeconds: 6, Resumed: 256 << 10}
	got := progressLine(p, 10)
	want := "m.gguf  [==>       ]  25%  1.0 MiB/4.0 MiB  512.0 KiB/s  ETA 6s  (resumed at 256.0 KiB)"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p.ETASeconds, p.BytesPerSec = 3725, 1
	if got := progressLine(p, 0); !strings.Contains(got, "ETA 1h02m") || strings.Contains(got, "[") {
		t.Errorf("plain line %q", got)
	}
	p.State, p.Done, p.Verified, p.Resumed = store.StateDone, p.Total, true, 0
	if got := progressLine(p, 10); got != "m.gguf  done  4.0 MiB  sha256 verified" {
		t.Errorf("done line %q", got)
	}
	if got := formatETA(0, 0); got != "--" {
		t.Errorf("eta without a rate: %q", got)
	}
}

func TestParseSizeAndLayers(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512MiB": 512 << 20, "10G": 10 << 30, "1.5KB": 1500, "2 gib": 2 << 30, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.2.3G", "99999999999T"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
	if s, err := parseLayers("2-5"); err != nil || *s != (store.Stage{First: 2, Last: 5}) {
		t.Errorf("2-5: %+v %v", s, err)
	}
	if s, err := parseLayers("0:1"); err != nil || *s != (store.Stage{First: 0, Last: 1}) {
		t.Errorf("0:1: %+v %v", s, err)
	}
	for _, bad := range []string{"3-3", "4-2", "-1-2", "a-b", "5"} {
		if _, err := parseLayers(bad); err == nil {
			t.Errorf("parseLayers(%q) accepted", bad)
		}
	}
}
