package cluster

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/placement"
)

func TestTransportPathsTag(t *testing.T) {
	prefixes := []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24"), netip.MustParsePrefix("192.168.7.2/24"), netip.MustParsePrefix("2001:db8::5/64")}
	for _, tc := range []struct {
		listen, primary, want string
	}{
		{":52417", "10.0.0.5:52417", "192.168.7.2,2001:db8::5"},
		{"0.0.0.0:52417", "192.168.7.2:52417", "10.0.0.5,2001:db8::5"},
		{"[::]:52417", "10.0.0.5:52417", "192.168.7.2,2001:db8::5"},
		// Bound to one address: the listener accepts nowhere else.
		{"10.0.0.5:52417", "10.0.0.5:52417", ""},
		{"localhost:52417", "127.0.0.1:52417", ""},
		{"garbage", "10.0.0.5:52417", ""},
	} {
		if got := transportPaths(tc.listen, tc.primary, prefixes); got != tc.want {
			t.Errorf("transportPaths(%q, %q) = %q, want %q", tc.listen, tc.primary, got, tc.want)
		}
	}
	// The tag stays within its budget however many addresses the machine has.
	var many []netip.Prefix
	for i := range 40 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), 24))
	}
	if got := transportPaths(":1", "10.9.9.9:1", many); len(got) > maxPathsTag || got == "" {
		t.Errorf("tag of %d bytes: %q", len(got), got)
	}
	if got := pathAddrs("192.168.7.2,2001:db8::5,bogus", "10.0.0.5:52417"); !slices.Equal(got, []string{"192.168.7.2:52417", "[2001:db8::5]:52417"}) {
		t.Errorf("pathAddrs: %v", got)
	}
	if got := pathAddrs("", "10.0.0.5:52417"); got != nil {
		t.Errorf("pathAddrs of an empty tag: %v", got)
	}
}

func TestLinksTag(t *testing.T) {
	ids := []string{"0a1b2c3d4e5f60718293a4b5c6d7e8f9", "0a1b2c3dffffffffffffffffffffffff", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}
	figs := map[string]LinkFigure{
		ids[2]:                             {RTT: 350 * time.Microsecond, Bandwidth: 117.5e6},
		"77777777000000000000000000000000": {RTT: 2 * time.Millisecond}, // not a planner node
		"5555555500000000000000000000000":  {},                          // nothing measured: left out
	}
	tag := encodeLinks(figs)
	if tag != "77777777:2000:0,9f8e7d6c:350:117500" {
		t.Fatalf("tag %q", tag)
	}
	got := decodeLinks(tag+",0a1b2c3d:10:10,bad,x:1", ids)
	// The ambiguous prefix (two ids start with 0a1b2c3d) and the unknown one are dropped.
	want := map[string]placement.Probe{ids[2]: {RTT: 350 * time.Microsecond, Bandwidth: 117.5e6}}
	if !maps.Equal(got, want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	// However many peers, the tag keeps to its budget.
	many := map[string]LinkFigure{}
	for i := range 50 {
		many[fmt.Sprintf("%08x%024d", i, 0)] = LinkFigure{RTT: time.Second, Bandwidth: 1e12}
	}
	if tag := encodeLinks(many); len(tag) > maxLinksTag || tag == "" {
		t.Fatalf("tag of %d bytes", len(tag))
	}
}
