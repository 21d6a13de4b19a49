package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serverFingerprint opens a new TLS connection and returns the SHA-256 of the served leaf.
func serverFingerprint(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if st.Version < tls.VersionTLS12 {
		t.Fatalf("negotiated TLS version %x below 1.2", st.Version)
	}
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}

func TestSelfSignedTLSKeepsItsCertificate(t *testing.T) {
	env := cleanEnv(t)
	data := filepath.Join(t.TempDir(), "data")
	var prints []string
	for i := 0; i < 2; i++ {
		p := serve(t, env, "https", "--tls", "--data-dir", data)
		if code, body := get(t, "https://"+p.addr+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
			t.Fatalf("HTTPS /healthz %d %s", code, body)
		}
		fp := serverFingerprint(t, p.addr)
		prints = append(prints, fp)
		// The fingerprint is announced at start so an operator can pin it.
		if !strings.Contains(strings.ReplaceAll(strings.ToLower(p.output.String()), ":", ""), fp) {
			t.Errorf("start-up log does not print the fingerprint %s", fp)
		}
		if rc := p.stop(t, 20*time.Second); rc != 0 {
			t.Fatalf("exit %d", rc)
		}
	}
	if prints[0] != prints[1] {
		t.Fatalf("certificate changed across restarts: %s vs %s", prints[0], prints[1])
	}
	// TLS 1.1 and below are refused.
	if _, err := tls.Dial("tcp", serve(t, env, "https", "--tls", "--data-dir", data).addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

func writeCert(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	// Write to temporary names and rename, as certificate renewal tools do.
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{keyFile, "EC PRIVATE KEY", kder}, {certFile, "CERTIFICATE", der}} {
		if err := os.WriteFile(f.path+".new", pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.path+".new", f.path); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGivenCertificateReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, "first")
	p := serve(t, cleanEnv(t), "https", "--tls", "--tls-cert", certFile, "--tls-key", keyFile)
	before := serverFingerprint(t, p.addr)

	writeCert(t, certFile, keyFile, "second")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for serverFingerprint(t, p.addr) == before {
		if time.Now().After(deadline) {
			t.Fatal("new certificate not served after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-p.done:
		t.Fatal("SIGHUP stopped the node")
	default:
	}
	if code, _ := get(t, "https://"+p.addr+"/healthz"); code != 200 {
		t.Fatalf("after reload /healthz %d", code)
	}
}
