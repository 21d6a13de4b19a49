package membership

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/syncbuf"
)

func key(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func startMember(t *testing.T, id string, k []byte, logs *syncbuf.Buffer, join func(net.Conn)) *Membership {
	t.Helper()
	m, err := Start(Config{
		NodeID: id, Bind: "127.0.0.1:0", Advertise: net.IPv4(127, 0, 0, 1), Key: k,
		Tags: map[string]string{"name": id, "roles": "worker"}, JoinHandler: join,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func statusOf(m *Membership, id string) string {
	for _, mem := range m.Members() {
		if mem.ID == id {
			return mem.Status
		}
	}
	return ""
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestMembershipJoinTagsFailureAndLeave(t *testing.T) {
	k := key(t)
	logs := &syncbuf.Buffer{}
	a := startMember(t, "a", k, logs, nil)
	b := startMember(t, "b", k, logs, nil)
	c := startMember(t, "c", k, logs, nil)
	ctx := context.Background()
	b.JoinLoop(ctx, []string{a.Addr()})
	c.JoinLoop(ctx, []string{b.Addr()})
	eventually(t, 5*time.Second, "all see three members", func() bool {
		return len(a.Members()) == 3 && len(c.Members()) == 3 && statusOf(a, "c") == StatusAlive
	})
	if !b.Joined() || !c.Joined() {
		t.Fatal("joined flag not set")
	}
	if err := c.SetTags(map[string]string{"mema": "12345"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "tag update seen by a", func() bool {
		for _, m := range a.Members() {
			if m.ID == "c" && m.Tags["mema"] == "12345" && m.Tags["name"] == "c" {
				return true
			}
		}
		return false
	})
	// An abrupt stop (no leave) is detected as a failure within seconds.
	_ = c.Shutdown()
	took := eventually(t, 10*time.Second, "c declared failed", func() bool { return statusOf(a, "c") == StatusFailed })
	t.Logf("failure of c detected by a after %s", took)
	// A graceful leave shows as left.
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b left", func() bool { return statusOf(a, "b") == StatusLeft })
}

func TestMembershipRefusesOtherKeys(t *testing.T) {
	logs := &syncbuf.Buffer{}
	a := startMember(t, "a", key(t), logs, nil)
	strangerLogs := &syncbuf.Buffer{}
	s := startMember(t, "stranger", key(t), strangerLogs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.JoinLoop(ctx, []string{a.Addr()})
	if s.Joined() || len(a.Members()) != 1 {
		t.Fatalf("member with another key joined: %v", a.Members())
	}
	eventually(t, 5*time.Second, "refusal logged on the cluster side", func() bool {
		return strings.Contains(logs.String(), "gossip refused")
	})
}

func TestTransportRoutesTLSToJoinHandler(t *testing.T) {
	got := make(chan string, 1)
	m := startMember(t, "a", key(t), &syncbuf.Buffer{}, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 1)
		_, _ = c.Read(buf)
		got <- string(buf)
	})
	// A TLS dial sends a ClientHello: the handler sees its first byte again (nothing lost).
	go func() {
		c, err := tls.Dial("tcp", m.Addr(), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
		}
	}()
	select {
	case b := <-got:
		if b != "\x16" {
			t.Fatalf("join handler read %q first, want the TLS record type", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("join handler not called")
	}
}

func TestAdvertiseIP(t *testing.T) {
	ip, err := AdvertiseIP("127.0.0.5")
	if err != nil || ip.String() != "127.0.0.5" {
		t.Fatalf("specific host: %v %v", ip, err)
	}
	for _, h := range []string{"", "0.0.0.0", "::"} {
		ip, err := AdvertiseIP(h)
		if err != nil || ip == nil || ip.IsUnspecified() {
			t.Fatalf("AdvertiseIP(%q) = %v %v", h, ip, err)
		}
	}
	if a, err := AdvertiseAddr("127.0.0.1:99"); err != nil || a != "127.0.0.1:99" {
		t.Fatalf("AdvertiseAddr: %s %v", a, err)
	}
}

// TestGossipOverTCPWhenUDPIsDropped: b's UDP is dropped both ways, or only one way (as behind a
// firewall that lets only TCP through). Gossip reaches both sides over TCP all the same: tag
// changes arrive within a few seconds each way, far sooner than the 10 s push-pull that would
// otherwise be their only way, and neither node is taken for failed. Once UDP gets through
// again, packets go over UDP alone.
func TestGossipOverTCPWhenUDPIsDropped(t *testing.T) {
	for _, c := range []struct {
		name    string
		in, out bool
	}{{"both ways", true, true}, {"into b", true, false}, {"out of b", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			k := key(t)
			logs := &syncbuf.Buffer{}
			a := startMember(t, "a", k, logs, nil)
			b := startMember(t, "b", k, logs, nil)
			b.transport.dropUDPIn.Store(c.in)
			b.transport.dropUDPOut.Store(c.out)
			b.JoinLoop(context.Background(), []string{a.Addr()})
			eventually(t, 5*time.Second, "both see two members", func() bool {
				return statusOf(a, "b") == StatusAlive && statusOf(b, "a") == StatusAlive
			})
			// Two seconds of unanswered packets tell one side that UDP does not get through;
			// its packets over TCP tell the other.
			eventually(t, 8*time.Second, "both send packets over TCP", func() bool {
				return a.transport.tcpPacketsSent.Load() > 0 && b.transport.tcpPacketsSent.Load() > 0
			})
			tagSeen := func(on *Membership, id, v string) func() bool {
				return func() bool {
					for _, m := range on.Members() {
						if m.ID == id && m.Tags["round"] == v {
							return true
						}
					}
					return false
				}
			}
			for round := range 3 {
				v := fmt.Sprint(round)
				if err := a.SetTags(map[string]string{"round": v}); err != nil {
					t.Fatal(err)
				}
				took := eventually(t, 3*time.Second, "a's tag change seen by b (round "+v+")", tagSeen(b, "a", v))
				if err := b.SetTags(map[string]string{"round": v}); err != nil {
					t.Fatal(err)
				}
				took2 := eventually(t, 3*time.Second, "b's tag change seen by a (round "+v+")", tagSeen(a, "b", v))
				t.Logf("round %d: a→b %s, b→a %s", round, took.Round(time.Millisecond), took2.Round(time.Millisecond))
			}
			if s := statusOf(a, "b") + "/" + statusOf(b, "a"); s != "alive/alive" {
				t.Errorf("status of b on a / a on b: %s", s)
			}
			b.transport.dropUDPIn.Store(false)
			b.transport.dropUDPOut.Store(false)
			eventually(t, 15*time.Second, "both stop sending packets over TCP", func() bool {
				na, nb := a.transport.tcpPacketsSent.Load(), b.transport.tcpPacketsSent.Load()
				time.Sleep(time.Second)
				return a.transport.tcpPacketsSent.Load() == na && b.transport.tcpPacketsSent.Load() == nb
			})
		})
	}
}

// TestPacketStreamRefusesMalformedInput: a packet connection with a bad sender address or a
// frame length out of range is closed, naming the problem in the log.
func TestPacketStreamRefusesMalformedInput(t *testing.T) {
	logs := &syncbuf.Buffer{}
	m := startMember(t, "a", key(t), logs, nil)
	for _, c := range []struct {
		name, want string
		input      []byte
	}{
		{"bad address", `sender address \"nope\"`, append([]byte{packetStreamByte, 4}, "nope"...)},
		{"empty frame", "packet of 0 bytes", append(append([]byte{packetStreamByte, 11}, "127.0.0.1:9"...), 0, 0, 0, 0)},
		{"huge frame", "packet of 16777216 bytes", append(append([]byte{packetStreamByte, 11}, "127.0.0.1:9"...), 1, 0, 0, 0)},
	} {
		conn, err := net.Dial("tcp", m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(c.input); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
			t.Errorf("%s: connection not closed (%v)", c.name, err)
		}
		conn.Close()
		eventually(t, 2*time.Second, c.name+" logged", func() bool { return strings.Contains(logs.String(), c.want) })
	}
}
