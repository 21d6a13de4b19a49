package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exo-nix/exo/appliance/store/hubtest"
	"github.com/exo-nix/exo/appliance/syncbuf"
)

func newHub(t *testing.T) *hubtest.Server {
	t.Helper()
	h := hubtest.New()
	t.Cleanup(func() { h.Release(); h.Close() })
	return h
}

// fixtureBytes reads a fixture model.
func fixtureBytes(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type testStore struct {
	*Store
	reg    *prometheus.Registry
	log    *syncbuf.Buffer
	mu     sync.Mutex
	events []Progress
}

// newStore makes a store over dirs that trusts hub, with small chunks and quick retries.
func newStore(t *testing.T, hub *hubtest.Server, dirs []string, edit func(*Options)) *testStore {
	t.Helper()
	ts := &testStore{reg: prometheus.NewRegistry(), log: &syncbuf.Buffer{}}
	m, err := NewMetrics(ts.reg)
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{
		Dirs: dirs, Parallel: 4, ChunkSize: 64 << 10, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		ProgressInterval: 10 * time.Millisecond, HeaderProbe: 4 << 10, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Publish: func(typ string, data any) {
			if typ != EventPull {
				t.Errorf("event type %q", typ)
			}
			ts.mu.Lock()
			ts.events = append(ts.events, data.(Progress))
			ts.mu.Unlock()
		},
	}
	if hub != nil {
		opt.Client = hub.Client()
		opt.Hub = Hub{Endpoint: hub.Endpoint()}
	}
	if edit != nil {
		edit(&opt)
	}
	ts.Store = New(opt)
	t.Cleanup(ts.Close)
	return ts
}

func (ts *testStore) counter(name string, labels ...string) float64 {
	mfs, _ := ts.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			ok := true
			for i := 0; i+1 < len(labels); i += 2 {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() != labels[i+1] {
						ok = false
					}
				}
			}
			if !ok {
				continue
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
		return sum
	}
	return 0
}

func (ts *testStore) lastEvent() Progress {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.events) == 0 {
		return Progress{}
	}
	return ts.events[len(ts.events)-1]
}

// readState reads a partial download's resume record.
func readState(t *testing.T, final string) (partialState, bool) {
	t.Helper()
	data, err := os.ReadFile(final + stateSuffix)
	if err != nil {
		return partialState{}, false
	}
	var st partialState
	if err := json.Unmarshal(data, &st); err != nil {
		return partialState{}, false
	}
	return st, true
}

func doneBytes(st partialState) int64 {
	var n int64
	for _, d := range st.Done {
		n += d
	}
	return n
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testCA issues certificates for peer tests: one CA, node certificates usable as TLS server
// and client, all for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "exo test cluster CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial int64 = 100

func (ca *testCA) node(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serverTLS requires client certificates of the CA, as the cluster's transport does.
func (ca *testCA) serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
}

func (ca *testCA) clientTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
}

// servePeer serves st's models over mutual TLS and returns the address.
func servePeer(t *testing.T, st *Store, conf *tls.Config) string {
	t.Helper()
	srv := newTLSServer(st.PeerHandler(), conf)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTLSServer(h http.Handler, conf *tls.Config) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = conf
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of some tests
	srv.StartTLS()
	return srv
}

// fixtureDir copies the stories260K models into a fresh directory, so that tests marking it
// read-only never risk the shared fixtures.
func fixtureDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, v := range []string{"F32", "F16", "Q8_0", "Q4_0"} {
		name := "stories260K-" + v + ".gguf"
		if err := os.WriteFile(filepath.Join(dir, name), fixtureBytes(t, "stories260K/"+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
