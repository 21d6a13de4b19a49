package store

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// cluster is a set of stores that serve each other over mutual TLS with certificates of one
// test CA, and share one fake hub.
type cluster struct {
	hub   interface{ Served() int64 }
	ca    *testCA
	nodes []*testStore
	addrs []string
}

// addNode starts a store serving its models to peers; peers lists the addresses it asks.
func (c *cluster) addNode(t *testing.T, edit func(*Options), peers ...string) (*testStore, string) {
	t.Helper()
	name := "node" + string(rune('a'+len(c.nodes)))
	cert := c.ca.node(t, name)
	hub := c.hub.(interface {
		Client() *http.Client
		Endpoint() string
	})
	st := newStore(t, nil, []string{filepath.Join(t.TempDir(), name)}, func(o *Options) {
		o.Client, o.Hub = hub.Client(), Hub{Endpoint: hub.Endpoint()}
		o.PeerClient = NewPeerClient(c.ca.clientTLS(cert))
		o.Peers = func() []string { return peers }
		if edit != nil {
			edit(o)
		}
	})
	addr := servePeer(t, st.Store, c.ca.serverTLS(cert))
	c.nodes = append(c.nodes, st)
	c.addrs = append(c.addrs, addr)
	return st, addr
}

// TestPeersBeforeHub: one node pulls from the hub; the others get the model from peers, in
// parallel from several, and the hub serves each byte once.
func TestPeersBeforeHub(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	hub.Add(testRepo, q8File, data)
	c := &cluster{hub: hub, ca: newTestCA(t)}
	ref := testRepo + ":" + q8File

	a, addrA := c.addNode(t, nil)
	if _, err := a.Pull(ctxT(t), PullRequest{Source: ref}, nil); err != nil {
		t.Fatal(err)
	}
	b, addrB := c.addNode(t, nil, addrA)
	m, err := b.Pull(ctxT(t), PullRequest{Source: ref}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, data) {
		t.Fatal("file from the peer differs")
	}
	if ev := b.lastEvent(); ev.From != "peer" || ev.Peers != 1 || !ev.Verified {
		t.Errorf("progress %+v", ev)
	}
	// The copy keeps the origin, so it is found by the same reference on B too.
	if man, _ := ReadManifest(m.Path); man == nil || man.Origin != "hf://"+testRepo+"/"+q8File || !man.Verified {
		t.Errorf("manifest %+v", man)
	}

	// A third node fetches from both A and B at once, a bare model id is enough.
	cNode, _ := c.addNode(t, nil, addrA, addrB, "127.0.0.1:1") // the last one is down
	if _, err := cNode.Pull(ctxT(t), PullRequest{Source: "stories260K-Q8_0"}, nil); err != nil {
		t.Fatal(err)
	}
	servedA, servedB := a.counter("exo_model_peer_served_bytes_total"), b.counter("exo_model_peer_served_bytes_total")
	if servedA+servedB != float64(2*len(data)) || servedB == float64(len(data)) || servedA < float64(len(data))+1 {
		// A served B's whole copy and part of C's; B served the rest of C's.
		t.Errorf("peers served A=%v B=%v bytes for two copies of %d", servedA, servedB, len(data))
	}
	if hub.Served() != int64(len(data)) {
		t.Errorf("the hub served %d bytes for three nodes, want one copy (%d)", hub.Served(), len(data))
	}
	if got := cNode.counter("exo_model_pull_bytes_total", "source", "peer"); got != float64(len(data)) {
		t.Errorf("peer bytes metric %v", got)
	}
}

// TestStageFromPeerVerifiedPerTensor: a stage fetched from a peer is checked tensor by tensor
// against the peer's manifest; a corrupted tensor is fetched again.
func TestStageFromPeerVerifiedPerTensor(t *testing.T) {
	rel := "stories260K/stories260K-F32.gguf"
	path := filepath.Join(fixtures(t), rel)
	hub := newHub(t)
	c := &cluster{hub: hub, ca: newTestCA(t)}
	a, _ := c.addNode(t, nil)
	if _, err := a.Import(path, false); err != nil {
		t.Fatal(err)
	}
	// Serve A through a proxy that flips one byte of the first header read
	// and of the first tensor response.
	cert := c.ca.node(t, "flaky")
	var headerOnce, tensorOnce sync.Once
	flaky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var start int64
		fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &start)
		hit := false
		if strings.HasSuffix(r.URL.Path, "/file") {
			once := &headerOnce
			if start > 64<<10 { // past the header: a tensor
				once = &tensorOnce
			}
			once.Do(func() { hit = true })
		}
		if hit {
			a.PeerHandler().ServeHTTP(&flipWriter{ResponseWriter: w, at: 100}, r)
			return
		}
		a.PeerHandler().ServeHTTP(w, r)
	})
	srv := servePeerHandler(t, flaky, c.ca.serverTLS(cert))
	b, _ := c.addNode(t, nil, srv)

	m, err := b.Pull(ctxT(t), PullRequest{Source: "stories260K-F32", Layers: &Stage{1, 4}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, extractBytes(t, path, 1, 4)) {
		t.Fatal("stage from the peer differs from gguf.Extract")
	}
	if got := b.counter("exo_model_pull_verify_failures_total"); got != 2 {
		t.Errorf("verify failures %v, want the flipped header and the flipped tensor", got)
	}
	man, err := ReadManifest(m.Path)
	if err != nil || !man.Verified || man.Stage == nil || *man.Stage != (Stage{1, 4}) {
		t.Errorf("manifest %+v %v", man, err)
	}
	if hub.Served() != 0 {
		t.Error("the hub was asked")
	}

	// A third node takes a narrower stage from B's stage file.
	_, addrB := c.nodes[1], c.addrs[1]
	d, _ := c.addNode(t, nil, addrB)
	m, err = d.Pull(ctxT(t), PullRequest{Source: "stories260K-F32", Layers: &Stage{2, 3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, extractBytes(t, path, 2, 3)) {
		t.Fatal("stage cut from a peer's stage differs from gguf.Extract of the full model")
	}
}

type flipWriter struct {
	http.ResponseWriter
	at      int
	written int
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if f.at >= f.written && f.at < f.written+len(p) {
		q := append([]byte(nil), p...)
		q[f.at-f.written] ^= 0x55
		p = q
	}
	f.written += len(p)
	return f.ResponseWriter.Write(p)
}

func servePeerHandler(t *testing.T, h http.Handler, conf *tls.Config) string {
	t.Helper()
	srv := newTLSServer(h, conf)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestPeerFallsBackToHub: a peer that fails mid-way leaves the rest to the hub, resuming
// what the peer delivered.
func TestPeerFallsBackToHub(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	sum := hub.Add(testRepo, q8File, data)
	c := &cluster{hub: hub, ca: newTestCA(t)}
	a, _ := c.addNode(t, nil)
	if _, err := a.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil); err != nil {
		t.Fatal(err)
	}
	hub.Reset()
	// The peer dies after 200 KiB.
	cert := c.ca.node(t, "dying")
	var mu sync.Mutex
	left := 200 << 10
	dying := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/file") {
			a.PeerHandler().ServeHTTP(w, r)
			return
		}
		mu.Lock()
		budget := left
		mu.Unlock()
		if budget <= 0 {
			http.Error(w, "gone", http.StatusNotFound)
			return
		}
		a.PeerHandler().ServeHTTP(&budgetWriter{ResponseWriter: w, mu: &mu, left: &left}, r)
	})
	addr := servePeerHandler(t, dying, c.ca.serverTLS(cert))
	b, _ := c.addNode(t, nil, addr)
	m, err := b.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(m.Path)
	if sha(got) != sum {
		t.Fatal("file differs")
	}
	fromPeer := int64(b.counter("exo_model_pull_bytes_total", "source", "peer"))
	if fromPeer == 0 || hub.Served() == int64(len(data)) || fromPeer+hub.Served() != int64(len(data)) {
		t.Errorf("peer gave %d bytes, hub %d: want the hub to send only the rest of %d", fromPeer, hub.Served(), len(data))
	}
}

type budgetWriter struct {
	http.ResponseWriter
	mu   *sync.Mutex
	left *int
}

func (b *budgetWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	n := min(len(p), *b.left)
	*b.left -= n
	b.mu.Unlock()
	if n < len(p) {
		b.ResponseWriter.Write(p[:n])
		panic(http.ErrAbortHandler) // cut the connection mid-body
	}
	return b.ResponseWriter.Write(p)
}

// TestPeerNeedsClientCertificate: without a certificate of the cluster CA nothing is served.
func TestPeerNeedsClientCertificate(t *testing.T) {
	ca := newTestCA(t)
	dir := fixtureDir(t)
	st := newStore(t, nil, []string{dir + ReadOnlySuffix}, nil)
	addr := servePeer(t, st.Store, ca.serverTLS(ca.node(t, "server")))

	// No client certificate: the handshake fails.
	noCert := NewPeerClient(&tls.Config{RootCAs: ca.pool})
	if _, err := noCert.List(ctxT(t), addr); err == nil {
		t.Fatal("listed models without a client certificate")
	}
	// A certificate of another CA: refused too.
	other := newTestCA(t)
	foreign := NewPeerClient(&tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{other.node(t, "intruder")}})
	if _, err := foreign.List(ctxT(t), addr); err == nil {
		t.Fatal("listed models with a foreign certificate")
	}
	// A server that would accept any client still refuses in the handler.
	lax := ca.serverTLS(ca.node(t, "lax"))
	lax.ClientAuth = tls.NoClientCert
	laxAddr := servePeer(t, st.Store, lax)
	if _, err := noCert.List(ctxT(t), laxAddr); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("handler without verified client: %v", err)
	}
	// The cluster's own certificate works, and read-only directories are served (with their
	// manifest computed in memory).
	good := NewPeerClient(ca.clientTLS(ca.node(t, "member")))
	models, err := good.List(ctxT(t), addr)
	if err != nil || len(models) != 4 {
		t.Fatalf("%v %+v", err, models)
	}
	src := good.Source(addr, "stories260K-F16")
	man, err := src.Manifest(ctxT(t))
	if err != nil || man.Size != 535936 || len(man.Tensors) == 0 {
		t.Fatalf("%v %+v", err, man)
	}
	if _, err := os.Stat(filepath.Join(dir, "stories260K-F16.gguf"+ManifestSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a manifest was written into a read-only directory")
	}
	rc, err := src.ReadRange(ctxT(t), 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "\x03\x00\x00\x00" {
		t.Errorf("range 4-7 = %q, want GGUF version 3", b)
	}
	if _, err := good.Source(addr, "nope").Manifest(ctxT(t)); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("missing model: %v", err)
	}
}
