package probe

import (
	"context"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// serveProbes answers probe streams on every connection the endpoint accepts.
func serveProbes(ep *transport.Endpoint) {
	go func() {
		for {
			c, err := ep.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					s, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					if s.Service() == transport.ServiceProbe {
						go Serve(s)
					} else {
						s.Cancel("not a probe")
					}
				}
			}()
		}
	}()
}

// connect listens on host b at addr and dials it from host a.
func connect(t *testing.T, a, b *nettest.Host, addr string, mode transport.Mode) transport.Conn {
	t.Helper()
	ca := nettest.NewCA(t, "cluster")
	err := b.Do(func() error {
		ep, err := transport.Listen(addr, transport.Config{ServerTLS: ca.ServerTLS(t, "b"), ClientTLS: ca.ClientTLS(t, "b")})
		if err != nil {
			return err
		}
		t.Cleanup(func() { ep.Close() })
		serveProbes(ep)
		addr = ep.Addr().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var conn transport.Conn
	err = a.Do(func() error {
		d, err := transport.NewDialer(transport.Config{ClientTLS: ca.ClientTLS(t, "a"), Mode: mode})
		if err != nil {
			return err
		}
		t.Cleanup(func() { d.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err = d.Dial(ctx, addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func gauge(t *testing.T, reg *prometheus.Registry, name, path string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelValue(m, "path") == path {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestProberOnLoopback(t *testing.T) {
	for _, mode := range []transport.Mode{transport.ModeQUIC, transport.ModeTCP} {
		t.Run(string(mode), func(t *testing.T) {
			nw := nettest.Loopback(t)
			a, b := nw.Host("a"), nw.Host("b")
			conn := connect(t, a, b, "127.0.0.1:0", mode)
			reg := prometheus.NewRegistry()
			p, err := New(Config{Registerer: reg, Interval: 50 * time.Millisecond, Bandwidth: BandwidthOptions{Target: 100 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			est, err := p.Add(context.Background(), Path{ID: "b via lo", Peer: "b", Conn: conn})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s loopback: RTT %v, bandwidth %.0f MB/s", mode, est.RTT, est.Bandwidth/1e6)
			if est.RTT <= 0 || est.RTT > 50*time.Millisecond || est.Bandwidth < 1e6 || est.Transport != transport.Kind(mode) {
				t.Fatalf("implausible loopback estimate %+v", est)
			}
			// Background pings keep the RTT fresh.
			first := est.RTTAt
			if !nettest.WaitFor(2*time.Second, func() bool { e, _ := p.Estimate("b via lo"); return e.RTTAt.After(first) }) {
				t.Fatal("no background RTT probe within 2s at a 50ms interval")
			}
			est, _ = p.Estimate("b via lo")
			if v, ok := gauge(t, reg, "exo_netstack_path_rtt_seconds", "b via lo"); !ok || v <= 0 || v > 0.05 {
				t.Fatalf("rtt metric %v (present %v)", v, ok)
			}
			if v, ok := gauge(t, reg, "exo_netstack_path_bandwidth_bytes_per_second", "b via lo"); !ok || v != est.Bandwidth {
				t.Fatalf("bandwidth metric %v, estimate %v", v, est.Bandwidth)
			}
			// A second prober on the same registry shares the collectors instead of failing.
			if p2, err := New(Config{Registerer: reg}); err != nil {
				t.Fatal(err)
			} else {
				p2.Close()
			}
			conn.Close()
			if !nettest.WaitFor(3*time.Second, func() bool { _, ok := p.Estimate("b via lo"); return !ok }) {
				t.Fatal("a path whose connection closed is still probed")
			}
			if _, ok := gauge(t, reg, "exo_netstack_path_rtt_seconds", "b via lo"); ok {
				t.Fatal("metrics of a removed path remain")
			}
		})
	}
}

// TestBandwidthOnRateLimitedLink checks the probe against a tc tbf limit between namespaces.
func TestBandwidthOnRateLimitedLink(t *testing.T) {
	nw := nettest.New(t)
	a, b := nw.Host("a"), nw.Host("b")
	link := nw.Link(a, b)
	const rate = 40e6 // bits per second
	link.Limit(a, rate)
	for _, mode := range []transport.Mode{transport.ModeQUIC, transport.ModeTCP} {
		conn := connect(t, a, b, netip.AddrPortFrom(link.BAddr, 0).String(), mode)
		sess, err := Open(context.Background(), conn)
		if err != nil {
			t.Fatal(err)
		}
		bw, err := sess.Bandwidth(context.Background(), BandwidthOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rtt, err := sess.RTT(context.Background(), 5)
		if err != nil {
			t.Fatal(err)
		}
		// tbf counts IP packets; the probe counts payload, which is a few percent less.
		errPct := 100 * (bw*8 - rate) / rate
		t.Logf("%s: tbf %.0f Mbit/s, probe %.1f Mbit/s (%+.1f%%), RTT %v", mode, rate/1e6, bw*8/1e6, errPct, rtt)
		if math.Abs(errPct) > 15 {
			t.Errorf("%s: probe %.1f Mbit/s is more than 15%% off the %.0f Mbit/s limit", mode, bw*8/1e6, rate/1e6)
		}
		sess.Close()
		conn.Close()
	}
}
