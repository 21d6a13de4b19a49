package iface

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// procAddresses reads interface addresses from procfs, for when netlink is not the right source
// (a fake tree) or not available. IPv6 comes straight from /proc/net/if_inet6. IPv4 has no such
// file: the local addresses are the "/32 host LOCAL" leaves of /proc/net/fib_trie, and the
// interface and prefix length of each come from the connected route in /proc/net/route that
// holds it.
func (s *scanner) procAddresses() map[string][]string {
	v4 := map[string][]netip.Prefix{}
	v6 := map[string][]netip.Prefix{}

	if err := s.readIfInet6(v6); err != nil {
		s.warnf("IPv6 addresses: %v", err)
	}
	if err := s.readIPv4(v4); err != nil {
		s.warnf("IPv4 addresses: %v", err)
	}

	out := map[string][]string{}
	for _, m := range []map[string][]netip.Prefix{v4, v6} {
		for name, ps := range m {
			sort.Slice(ps, func(i, j int) bool { return ps[i].Addr().Less(ps[j].Addr()) })
			for _, p := range ps {
				out[name] = append(out[name], p.String())
			}
		}
	}
	return out
}

func (s *scanner) readIfInet6(v6 map[string][]netip.Prefix) error {
	path := filepath.Join(s.proc, "net", "if_inet6")
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // kernel without IPv6
		}
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 {
			continue
		}
		raw, err := hex.DecodeString(fs[0])
		if err != nil || len(raw) != 16 {
			return fmt.Errorf("%s line %d: bad address %q", path, line, fs[0])
		}
		plen, err := strconv.ParseUint(fs[2], 16, 8)
		if err != nil || plen > 128 {
			return fmt.Errorf("%s line %d: bad prefix length %q", path, line, fs[2])
		}
		addr := netip.AddrFrom16([16]byte(raw))
		v6[fs[5]] = append(v6[fs[5]], netip.PrefixFrom(addr, int(plen)))
	}
	return sc.Err()
}

type route4 struct {
	iface string
	dst   uint32
	mask  uint32
}

// Route flags from <linux/route.h>.
const (
	rtfUp      = 0x1
	rtfGateway = 0x2
)

func (s *scanner) readIPv4(v4 map[string][]netip.Prefix) error {
	local, err := s.fibLocalAddresses()
	if err != nil {
		return err
	}
	if len(local) == 0 {
		return nil
	}
	routes, err := s.connectedRoutes()
	if err != nil {
		return err
	}
	for _, a := range local {
		b := a.As4()
		// /proc/net/route prints the in-memory (network order) word as a host-order number.
		ip := binary.NativeEndian.Uint32(b[:])
		best := -1
		bestLen := -1
		for i, r := range routes {
			if ip&r.mask == r.dst {
				if l := bits.OnesCount32(r.mask); l > bestLen {
					best, bestLen = i, l
				}
			}
		}
		switch {
		case best >= 0:
			v4[routes[best].iface] = append(v4[routes[best].iface], netip.PrefixFrom(a, bestLen))
		case a.IsLoopback():
			// Loopback addresses have routes only in the local table, which /proc/net/route
			// does not show.
			v4["lo"] = append(v4["lo"], netip.PrefixFrom(a, 8))
		default:
			s.warnf("IPv4 address %s: no connected route in %s names its interface", a, filepath.Join(s.proc, "net", "route"))
		}
	}
	return nil
}

func (s *scanner) fibLocalAddresses() ([]netip.Addr, error) {
	path := filepath.Join(s.proc, "net", "fib_trie")
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	var leaf netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		t := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(t, "|-- "):
			a, err := netip.ParseAddr(strings.TrimPrefix(t, "|-- "))
			if err == nil {
				leaf = a
			}
		case t == "/32 host LOCAL":
			if leaf.IsValid() && !seen[leaf] {
				seen[leaf] = true
				out = append(out, leaf)
			}
		}
	}
	return out, sc.Err()
}

func (s *scanner) connectedRoutes() ([]route4, error) {
	path := filepath.Join(s.proc, "net", "route")
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []route4
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Fields(sc.Text())
		if line == 1 || len(fs) < 8 {
			continue // header
		}
		dst, err1 := strconv.ParseUint(fs[1], 16, 32)
		flags, err2 := strconv.ParseUint(fs[3], 16, 32)
		mask, err3 := strconv.ParseUint(fs[7], 16, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("%s line %d: cannot parse %q", path, line, sc.Text())
		}
		if flags&rtfUp == 0 || flags&rtfGateway != 0 || mask == 0 {
			continue
		}
		out = append(out, route4{iface: fs[0], dst: uint32(dst), mask: uint32(mask)})
	}
	return out, sc.Err()
}
