package tlscert

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSelfSignedIsKept(t *testing.T) {
	dir := t.TempDir()
	a, err := SelfSigned(dir, "node1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := SelfSigned(dir, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatalf("fingerprint changed: %s vs %s", a.Fingerprint(), b.Fingerprint())
	}
	for _, f := range []string{"tls-cert.pem", "tls-key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v %v", f, st.Mode(), err)
		}
	}
	leaf, err := x509.ParseCertificate(a.Certificate().Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(leaf.DNSNames, "localhost") || !slices.Contains(leaf.DNSNames, "node1") {
		t.Errorf("SANs %v", leaf.DNSNames)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("loopback IP not covered: %v", err)
	}
}

func TestReloadKeepsOldOnError(t *testing.T) {
	dir := t.TempDir()
	s, err := SelfSigned(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	fp := s.Fingerprint()
	if err := os.WriteFile(filepath.Join(dir, "tls-cert.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("garbage certificate accepted")
	}
	if s.Fingerprint() != fp {
		t.Fatal("certificate lost after failed reload")
	}
	if _, err := SelfSigned(dir, "x"); err == nil {
		t.Fatal("corrupt stored certificate silently replaced")
	}
}
