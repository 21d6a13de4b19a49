package iface

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/exo-nix/exo/netstack/nettest"
)

// TestUsablePrefixes: in a namespace with two veth links, the usable addresses are exactly the
// two links' (loopback and the links' IPv6 link-local addresses left out).
func TestUsablePrefixes(t *testing.T) {
	nw := nettest.New(t)
	a, b := nw.Host("a"), nw.Host("b")
	l1, l2 := nw.Link(a, b), nw.Link(a, b)
	var got []netip.Prefix
	if err := a.Do(func() (err error) {
		got, err = UsablePrefixes()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.PrefixFrom(l1.AAddr, 24), netip.PrefixFrom(l2.AAddr, 24)}
	if !slices.Equal(got, want) {
		t.Fatalf("usable prefixes %v, want %v", got, want)
	}
}
