package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
	"github.com/exo-nix/exo/netstack/wire"
)

var modes = []Mode{ModeQUIC, ModeTCP}

type testPair struct {
	server, client *Endpoint
	sconn, cconn   Conn
}

func listen(t testing.TB, ca *nettest.CA, addr string, mutate func(*Config)) *Endpoint {
	t.Helper()
	cfg := Config{ServerTLS: ca.ServerTLS(t, "node-b"), ClientTLS: ca.ClientTLS(t, "node-b")}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := Listen(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func dialer(t testing.TB, ca *nettest.CA, mode Mode, mutate func(*Config)) *Endpoint {
	t.Helper()
	cfg := Config{ClientTLS: ca.ClientTLS(t, "node-a"), Mode: mode}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := NewDialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func connect(t testing.TB, mode Mode, mutate func(*Config)) *testPair {
	t.Helper()
	ca := nettest.NewCA(t, "cluster")
	p := &testPair{server: listen(t, ca, "127.0.0.1:0", mutate), client: dialer(t, ca, mode, mutate)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if p.cconn, err = p.client.Dial(ctx, p.server.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if p.sconn, err = p.server.Accept(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// echo serves streams of c: every frame read is written back, until the peer's CloseWrite.
func echo(t testing.TB, c Conn) {
	go func() {
		for {
			s, err := c.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() {
				var h wire.Header
				var buf []byte
				for {
					p, err := s.ReadFrame(&h, buf)
					if err != nil {
						if err == io.EOF {
							_ = s.CloseWrite()
						}
						return
					}
					buf = p
					if err := s.WriteFrame(&h, p); err != nil {
						return
					}
				}
			}()
		}
	}()
}

func randomF32(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

func TestRoundTripMutualTLS(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := connect(t, mode, nil)
			want := Kind(mode)
			if p.cconn.Transport() != want || p.sconn.Transport() != want {
				t.Fatalf("transport: client %s, server %s, want %s", p.cconn.Transport(), p.sconn.Transport(), want)
			}
			if cn := p.cconn.PeerCertificates()[0].Subject.CommonName; cn != "node-b" {
				t.Fatalf("client sees peer %q, want node-b", cn)
			}
			if cn := p.sconn.PeerCertificates()[0].Subject.CommonName; cn != "node-a" {
				t.Fatalf("server sees peer %q, want node-a", cn)
			}
			echo(t, p.sconn)
			ctx := context.Background()
			s, err := p.cconn.OpenStream(ctx, ServiceData)
			if err != nil {
				t.Fatal(err)
			}
			for i, rows := range []int{1, 7, 300} {
				x := randomF32(rows*1024, uint64(i))
				h := wire.Header{Kind: wire.KindActivations, DType: wire.F32, Instance: "llama-1b#0", Request: 42,
					Step: uint32(i), Shape: []uint32{uint32(rows), 1024}}
				for r := range rows {
					h.Positions = append(h.Positions, int32(r))
				}
				if err := s.WriteFrame(&h, wire.F32Bytes(x)); err != nil {
					t.Fatal(err)
				}
				var got wire.Header
				payload, err := s.ReadFrame(&got, nil)
				if err != nil {
					t.Fatal(err)
				}
				back, _ := wire.F32View(payload)
				if got.Step != uint32(i) || got.Request != 42 || got.Instance != "llama-1b#0" || !slices.Equal(back, x) || len(got.Positions) != rows {
					t.Fatalf("frame %d came back different: %+v", i, got)
				}
			}
			if err := s.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.ReadFrame(&wire.Header{}, nil); err != io.EOF {
				t.Fatalf("after CloseWrite the echo ends with %v, want io.EOF", err)
			}
			if p.cconn.RTT() <= 0 || p.cconn.RTT() > time.Second {
				t.Fatalf("RTT estimate %v", p.cconn.RTT())
			}
		})
	}
}

func TestForeignCertificatesRefused(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode)+"/client", func(t *testing.T) {
			ca, other := nettest.NewCA(t, "cluster"), nettest.NewCA(t, "intruder")
			server := listen(t, ca, "127.0.0.1:0", nil)
			// The client trusts the cluster's CA but presents a certificate of another one (even
			// though the server's list of acceptable CAs does not name it).
			foreign := other.Issue(t, "node-x")
			client := dialer(t, ca, mode, func(c *Config) {
				c.ClientTLS.Certificates = nil
				c.ClientTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, server.Addr().String())
			if err == nil {
				c.Close()
				t.Fatal("a client certificate from another CA was accepted")
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error does not say the certificate was the problem: %v", err)
			}
			actx, acancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer acancel()
			if c, err := server.Accept(actx); err == nil {
				t.Fatalf("server accepted %v", c.RemoteAddr())
			}
		})
		t.Run(string(mode)+"/server", func(t *testing.T) {
			ca, other := nettest.NewCA(t, "cluster"), nettest.NewCA(t, "intruder")
			server := listen(t, other, "127.0.0.1:0", func(c *Config) { c.ServerTLS.ClientCAs = ca.Pool })
			client := dialer(t, ca, mode, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if c, err := client.Dial(ctx, server.Addr().String()); err == nil {
				c.Close()
				t.Fatal("a server certificate from another CA was accepted")
			} else if t.Logf("refused: %v", err); !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error does not name the certificate: %v", err)
			}
		})
	}
}

func TestMutualTLSRequired(t *testing.T) {
	ca := nettest.NewCA(t, "cluster")
	st := ca.ServerTLS(t, "x")
	st.ClientAuth = 0
	if _, err := Listen("127.0.0.1:0", Config{ServerTLS: st}); err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("a listener without client authentication: %v", err)
	}
	ct := ca.ClientTLS(t, "x")
	ct.Certificates = nil
	if _, err := NewDialer(Config{ClientTLS: ct}); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("a dialer without certificate: %v", err)
	}
	ct = ca.ClientTLS(t, "x")
	ct.VerifyPeerCertificate = nil
	if _, err := NewDialer(Config{ClientTLS: ct}); err == nil || !strings.Contains(err.Error(), "skips server verification") {
		t.Fatalf("a dialer that trusts anyone: %v", err)
	}
}

func TestVersionMismatchRefused(t *testing.T) {
	for _, mode := range []Mode{ModeQUIC, ModeTCP, ModeAuto} {
		t.Run(string(mode), func(t *testing.T) {
			ca := nettest.NewCA(t, "cluster")
			server := listen(t, ca, "127.0.0.1:0", func(c *Config) { c.version = 2 })
			client := dialer(t, ca, mode, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, err := client.Dial(ctx, server.Addr().String())
			var ve *wire.VersionError
			if !errors.As(err, &ve) || ve.Remote != 2 || ve.Local != wire.Version {
				t.Fatalf("got %v, want a version error", err)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), "v2") || !strings.Contains(err.Error(), "v1") {
				t.Fatalf("error should name both versions: %v", err)
			}
			if mode == ModeAuto && time.Since(start) > 900*time.Millisecond {
				t.Fatalf("a version mismatch over QUIC must not wait for a TCP fallback (took %v)", time.Since(start))
			}
		})
	}
}

func TestBackpressure(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := connect(t, mode, func(c *Config) { c.StreamWindow = 1 << 20 })
			ctx := context.Background()
			s, err := p.cconn.OpenStream(ctx, ServiceData)
			if err != nil {
				t.Fatal(err)
			}
			payload := make([]byte, 8<<20)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			done := make(chan error, 1)
			go func() {
				h := wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{uint32(len(payload))}}
				done <- s.WriteFrame(&h, payload)
			}()
			rs, err := p.sconn.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				t.Fatalf("an 8 MiB frame was fully written with a 1 MiB window and no reader (err %v)", err)
			case <-time.After(300 * time.Millisecond):
			}
			var h wire.Header
			got, err := rs.ReadFrame(&h, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("payload corrupted")
			}
		})
	}
}

func TestCancel(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := connect(t, mode, func(c *Config) { c.StreamWindow = 1 << 20 })
			ctx := context.Background()
			// Between frames: the peer learns the reason.
			s, err := p.cconn.OpenStream(ctx, ServiceData)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := p.sconn.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.Cancel("stage 2 failed: out of memory")
			var ce *CancelledError
			if _, err := rs.ReadFrame(&wire.Header{}, nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "out of memory") {
				t.Fatalf("peer read %v, want the cancel reason", err)
			}
			if ce.Unexplained || IsUnexplained(err) {
				t.Errorf("a cancellation that carried its reason is marked unexplained: %v", err)
			}
			// Over QUIC the canceller stopped reading: the peer's writes fail, without a reason
			// (yamux has no way to stop a peer's writes, nor a reset).
			for i := 0; mode == ModeQUIC; i++ {
				werr := rs.WriteFrame(&wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{2}}, []byte("hi"))
				if werr != nil {
					if !IsUnexplained(werr) {
						t.Errorf("write to a stream the peer cancelled: %v, want an unexplained cancellation", werr)
					}
					break
				}
				if i == 1000 {
					t.Fatal("writes to a stream the peer stopped reading still succeed after a second")
				}
				time.Sleep(time.Millisecond)
			}
			// Mid-frame, with the writer blocked by flow control: the writer is released and the
			// reader sees an error, never a clean end.
			s2, err := p.cconn.OpenStream(ctx, ServiceData)
			if err != nil {
				t.Fatal(err)
			}
			rs2, err := p.sconn.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				h := wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Shape: []uint32{16 << 20}}
				done <- s2.WriteFrame(&h, make([]byte, 16<<20))
			}()
			time.Sleep(100 * time.Millisecond)
			s2.Cancel("request cancelled")
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("a cancelled write reported success")
				}
			case <-time.After(3 * time.Second):
				t.Fatal("Cancel did not release a writer blocked by flow control")
			}
			_, err = rs2.ReadFrame(&wire.Header{}, nil)
			if err == nil || err == io.EOF {
				t.Fatalf("reader of a cancelled frame got %v", err)
			}
			if mode == ModeQUIC && !IsUnexplained(err) {
				t.Errorf("reader of a frame cut by a reset: %v, want an unexplained cancellation", err)
			}
		})
	}
}

func TestConnectionLoss(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := connect(t, mode, nil)
			ctx := context.Background()
			s, err := p.cconn.OpenStream(ctx, ServiceData)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.sconn.AcceptStream(ctx); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := s.ReadFrame(&wire.Header{}, nil)
				errc <- err
			}()
			time.Sleep(50 * time.Millisecond)
			p.sconn.Close()
			select {
			case err := <-errc:
				var cl *ConnLostError
				if !errors.As(err, &cl) || errors.Is(err, io.EOF) {
					t.Fatalf("read on a lost connection: %v (%T), want ConnLostError that is not io.EOF", err, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read on a closed connection hangs")
			}
			select {
			case <-p.cconn.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("Done not closed")
			}
			if p.cconn.Err() == nil {
				t.Fatal("Err is nil after the peer closed")
			}
		})
	}
}

func TestFallbackToTCPOnLoopback(t *testing.T) {
	ca := nettest.NewCA(t, "cluster")
	server := listen(t, ca, "127.0.0.1:0", nil)
	// Nobody answers QUIC: close the server's UDP side.
	server.qln.Close()
	server.udp.Close()
	client := dialer(t, ca, ModeAuto, func(c *Config) { c.QUICTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, server.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if c.Transport() != KindTCP {
		t.Fatalf("transport %s, want tcp", c.Transport())
	}
	start := time.Now()
	c2, err := client.Dial(ctx, server.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if c2.Transport() != KindTCP || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("second dial: %s after %v; a peer known to need TCP is dialled over TCP at once", c2.Transport(), time.Since(start))
	}
	forced := dialer(t, ca, ModeQUIC, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	if _, err := forced.Dial(ctx, server.Addr().String()); err == nil {
		t.Fatal("forced QUIC must not fall back")
	}
}

// TestFallbackWhenUDPDropped runs two namespaces joined by a veth pair; the server's namespace
// drops every UDP packet (nftables), so the dial must end up on TCP and say so.
func TestFallbackWhenUDPDropped(t *testing.T) {
	nw := nettest.New(t)
	a, b := nw.Host("a"), nw.Host("b")
	link := nw.Link(a, b)
	ca := nettest.NewCA(t, "cluster")
	addr := netip.AddrPortFrom(link.BAddr, 52417).String()
	var server *Endpoint
	if err := b.Do(func() error {
		server = listen(t, ca, addr, nil)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var client *Endpoint
	dialIn := func() (Conn, error) {
		var c Conn
		err := a.Do(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			c, err = client.Dial(ctx, addr)
			return err
		})
		return c, err
	}
	_ = a.Do(func() error {
		// Generous for a first handshake on a 2-core CI machine under -race; production uses 1s.
		client = dialer(t, ca, ModeAuto, func(c *Config) { c.QUICTimeout = 2 * time.Second })
		return nil
	})
	c, err := dialIn()
	if err != nil {
		t.Fatal(err)
	}
	if c.Transport() != KindQUIC {
		t.Fatalf("with UDP open the connection uses %s, want quic", c.Transport())
	}
	c.Close()
	b.DropUDP()
	c, err = dialIn()
	if err != nil {
		t.Fatal(err)
	}
	if c.Transport() != KindTCP {
		t.Fatalf("with UDP dropped the connection uses %s, want tcp", c.Transport())
	}
	sc, err := server.Accept(context.Background())
	for err == nil && sc.Transport() != KindTCP { // the QUIC connection from before
		sc, err = server.Accept(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	echo(t, sc)
	s, err := c.OpenStream(context.Background(), ServiceData)
	if err != nil {
		t.Fatal(err)
	}
	h := wire.Header{Kind: wire.KindTokens, DType: wire.I32, Shape: []uint32{1}}
	if err := s.WriteFrame(&h, wire.I32Bytes([]int32{1234})); err != nil {
		t.Fatal(err)
	}
	p, err := s.ReadFrame(&h, nil)
	if ids, _ := wire.DecodeI32(p, nil); err != nil || len(ids) != 1 || ids[0] != 1234 {
		t.Fatalf("echo over the fallback: %v %v", ids, err)
	}
}

// BenchmarkHopLatency measures one hop of a 4 KB activation (1×1024 F32, a decode step of a
// 1024-wide model) on loopback: a frame goes out and comes back, a hop is half of that.
func BenchmarkHopLatency(b *testing.B) {
	for _, mode := range append(slices.Clone(modes), "pipe") {
		b.Run(string(mode), func(b *testing.B) {
			var s Stream
			if mode == "pipe" {
				// An in-process stream, as a node uses between two roles of itself.
				var peer Stream
				s, peer = Pipe(ServiceData, 0)
				go func() {
					var h wire.Header
					var buf []byte
					for {
						p, err := peer.ReadFrame(&h, buf)
						if err != nil {
							return
						}
						buf = p
						if peer.WriteFrame(&h, p) != nil {
							return
						}
					}
				}()
			} else {
				p := connect(b, mode, nil)
				echo(b, p.sconn)
				var err error
				if s, err = p.cconn.OpenStream(context.Background(), ServiceData); err != nil {
					b.Fatal(err)
				}
			}
			x := wire.F32Bytes(randomF32(1024, 1))
			h := wire.Header{Kind: wire.KindActivations, DType: wire.F32, Instance: "bench", Shape: []uint32{1, 1024}, Positions: []int32{0}}
			var rh wire.Header
			buf := make([]byte, len(x))
			for range 200 { // warm up congestion and flow control windows
				_ = s.WriteFrame(&h, x)
				_, _ = s.ReadFrame(&rh, buf)
			}
			var hops []time.Duration
			for b.Loop() {
				start := time.Now()
				if err := s.WriteFrame(&h, x); err != nil {
					b.Fatal(err)
				}
				if _, err := s.ReadFrame(&rh, buf); err != nil {
					b.Fatal(err)
				}
				hops = append(hops, time.Since(start)/2)
			}
			slices.Sort(hops)
			b.ReportMetric(float64(hops[len(hops)/2].Nanoseconds())/1e3, "p50-µs/hop")
			b.ReportMetric(float64(hops[len(hops)*99/100].Nanoseconds())/1e3, "p99-µs/hop")
		})
	}
}
