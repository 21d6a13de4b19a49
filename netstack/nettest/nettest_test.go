package nettest

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// roundTrip listens on b's end of the link, dials it from a, and checks one byte goes across.
func roundTrip(t *testing.T, l *Link) error {
	t.Helper()
	var ln net.Listener
	if err := l.B.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(l.BAddr, 0).String())
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	return l.A.Do(func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: l.AAddr.AsSlice()}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte{42}); err != nil {
			return err
		}
		var b [1]byte
		_, err = io.ReadFull(c, b[:])
		return err
	})
}

func TestNamespacesJoinedByVeth(t *testing.T) {
	var names []string
	t.Run("network", func(t *testing.T) {
		nw := New(t)
		a, b, c := nw.Host("a"), nw.Host("b"), nw.Host("c")
		ab := nw.Link(a, b)
		if err := roundTrip(t, ab); err != nil {
			t.Fatalf("a → b over their link: %v", err)
		}
		// c has no link to a: its namespace is really separate.
		bc := nw.Link(b, c)
		err := a.Do(func() error {
			_, err := net.DialTimeout("tcp", netip.AddrPortFrom(bc.BAddr, 9).String(), 300*time.Millisecond)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("a reached c without a link: %v", err)
		}
		out, err := a.Exec(context.Background(), "ip", "-o", "addr", "show", "dev", ab.ADev)
		if err != nil || !strings.Contains(string(out), ab.AAddr.String()+"/24") {
			t.Fatalf("address of a's end: %v %s", err, out)
		}
		out, err = c.Exec(context.Background(), "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports")
		if err != nil || strings.TrimSpace(string(out)) != ReservedPorts {
			t.Fatalf("reserved ports in c's namespace: %v %q, want %s", err, out, ReservedPorts)
		}
		ab.Limit(a, 10e6)
		out, _ = a.Exec(context.Background(), "tc", "qdisc", "show", "dev", ab.ADev)
		if !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "10Mbit") {
			t.Fatalf("rate limit not installed: %s", out)
		}
		names = []string{a.NS, b.NS, c.NS}
	})
	for _, n := range names {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); !os.IsNotExist(err) {
			t.Errorf("namespace %s survived its test (%v)", n, err)
		}
	}
}

func TestDropUDP(t *testing.T) {
	nw := New(t)
	a, b := nw.Host("a"), nw.Host("b")
	l := nw.Link(a, b)
	var pc net.PacketConn
	if err := b.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(l.BAddr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// send reports whether any of tries datagrams tagged phase arrives (a loaded machine may be
	// slow, and a late datagram of an earlier phase must not count).
	send := func(phase string, tries int, wait time.Duration) bool {
		for range tries {
			_ = a.Do(func() error {
				c, err := net.Dial("udp", pc.LocalAddr().String())
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte(phase))
				return err
			})
			deadline := time.Now().Add(wait)
			for {
				_ = pc.SetReadDeadline(deadline)
				var buf [16]byte
				n, _, err := pc.ReadFrom(buf[:])
				if err != nil {
					break
				}
				if string(buf[:n]) == phase {
					return true
				}
			}
		}
		return false
	}
	if !send("before", 3, time.Second) {
		t.Fatal("UDP does not get through before the filter")
	}
	b.DropUDP()
	if send("after", 2, 300*time.Millisecond) {
		t.Fatal("UDP gets through the filter")
	}
	if err := roundTrip(t, l); err != nil {
		t.Fatalf("TCP must still get through: %v", err)
	}
}

func TestLoopbackVariant(t *testing.T) {
	nw := Loopback(t)
	a, b := nw.Host("a"), nw.Host("b")
	l1, l2 := nw.Link(a, b), nw.Link(a, b)
	if !nw.IsLoopback() || l1.BAddr == l2.BAddr || !l2.AAddr.IsLoopback() {
		t.Fatalf("loopback links %v %v", l1, l2)
	}
	if err := roundTrip(t, l2); err != nil {
		t.Fatal(err)
	}
}

// FreePort never repeats a port in one process, stays below the ephemeral range, and what it
// returns can be bound for TCP and UDP.
func TestFreePort(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		addr := FreePort(t)
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().IsLoopback() || ap.Port() < 20000 || ap.Port() >= 32000 {
			t.Fatalf("FreePort gave %q (%v)", addr, err)
		}
	}
	addr := FreePort(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	u.Close()
}
