package discovery

import (
	"net"
	"slices"
	"strings"
	"testing"
)

const (
	fpA = "4f1c0a9be27d33aa0123456789abcdef0123456789abcdef0123456789abcdef"
	fpB = "4f1c0a9be27d33ab0123456789abcdef0123456789abcdef0123456789abcdef" // differs in digit 16
)

func TestTXTCarriesPrefixAndIDOnly(t *testing.T) {
	txt := TXT(Advert{NodeID: "n1", Fingerprint: strings.ToUpper(fpA), Addr: "10.0.0.1:52416"})
	want := []string{"v=1", "cluster=" + fpA[:PrefixLen], "id=n1"}
	if !slices.Equal(txt, want) {
		t.Fatalf("TXT %q, want %q", txt, want)
	}
	p, ok := ParsePeer(txt, net.ParseIP("10.0.0.1"), "", 52416)
	if !ok || p != (Peer{NodeID: "n1", ClusterPrefix: fpA[:PrefixLen], Addr: "10.0.0.1:52416"}) {
		t.Fatalf("round trip: %+v %v", p, ok)
	}
	// A link-local IPv6 answer keeps the interface it came in on, or it could not be dialled.
	p, ok = ParsePeer(txt, net.ParseIP("fe80::1"), "eth0", 52416)
	if !ok || p.Addr != "[fe80::1%eth0]:52416" {
		t.Fatalf("IPv6 peer: %+v %v", p, ok)
	}
	if host, _, err := net.SplitHostPort(p.Addr); err != nil || host != "fe80::1%eth0" {
		t.Fatalf("IPv6 peer address %q does not split: %v", p.Addr, err)
	}
}

func TestParsePeerRejectsForeignAnnouncements(t *testing.T) {
	ip := net.ParseIP("10.0.0.2")
	good := []string{"v=1", "cluster=" + fpA[:PrefixLen], "id=n2"}
	for name, c := range map[string]struct {
		txt  []string
		ip   net.IP
		port int
	}{
		"other version": {[]string{"v=2", "cluster=" + fpA[:PrefixLen], "id=n2"}, ip, 1},
		"no version":    {[]string{"cluster=" + fpA[:PrefixLen], "id=n2"}, ip, 1},
		"no id":         {[]string{"v=1", "cluster=" + fpA[:PrefixLen]}, ip, 1},
		"short prefix":  {[]string{"v=1", "cluster=4f1c", "id=n2"}, ip, 1},
		"no cluster":    {[]string{"v=1", "id=n2"}, ip, 1},
		"no address":    {good, nil, 1},
		"no port":       {good, ip, 0},
		"port too big":  {good, ip, 70000},
		"garbage":       {[]string{"hello"}, ip, 1},
	} {
		if p, ok := ParsePeer(c.txt, c.ip, "", c.port); ok {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
}

func TestSelectMatchesTheTokensCluster(t *testing.T) {
	peers := []Peer{
		{NodeID: "m1", ClusterPrefix: fpA[:PrefixLen], Addr: "10.0.0.1:52416"},
		{NodeID: "x1", ClusterPrefix: fpB[:PrefixLen], Addr: "10.0.0.9:52416"}, // a neighbouring cluster
		{NodeID: "w2", ClusterPrefix: fpA[:PrefixLen], Addr: "10.0.0.2:52416"},
		{NodeID: "m1", ClusterPrefix: fpA[:PrefixLen], Addr: "10.0.0.1:52416"}, // heard on two interfaces
		{NodeID: "self", ClusterPrefix: fpA[:PrefixLen], Addr: "10.0.0.5:52416"},
	}
	if got := Select(peers, fpA, "self"); !slices.Equal(got, []string{"10.0.0.1:52416", "10.0.0.2:52416"}) {
		t.Fatalf("cluster A: %v", got)
	}
	// The fingerprint as printed in logs may be upper case; the token's is lower.
	if got := Select(peers, strings.ToUpper(fpB), "self"); !slices.Equal(got, []string{"10.0.0.9:52416"}) {
		t.Fatalf("cluster B: %v", got)
	}
	if got := Select(peers, strings.Repeat("0", 64), "self"); len(got) != 0 {
		t.Fatalf("unknown cluster matched %v", got)
	}
	// Without a whole prefix to compare, nothing matches (an empty one would match all).
	if got := Select(peers, "", "self"); got != nil {
		t.Fatalf("empty fingerprint matched %v", got)
	}
}

func TestAnnounceRefusesWhatPeersCannotDial(t *testing.T) {
	for _, addr := range []string{":52416", "0.0.0.0:52416", "10.0.0.1", "host:52416", "10.0.0.1:0"} {
		if a, err := Announce(Advert{NodeID: "n", Fingerprint: fpA, Addr: addr}, nil); err == nil {
			a.Close()
			t.Errorf("announced %q", addr)
		}
	}
	if a, err := Announce(Advert{NodeID: "n", Fingerprint: "4f1c", Addr: "10.0.0.1:52416"}, nil); err == nil {
		a.Close()
		t.Error("announced a cluster by a 4-digit prefix")
	}
}
