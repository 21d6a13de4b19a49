package apikeys

import (
	"os"
	"strings"
	"testing"
)

func TestCreateListRevoke(t *testing.T) {
	dir := t.TempDir()
	s := Open(dir)
	if d, err := s.Digests(); err != nil || len(d) != 0 {
		t.Fatalf("empty store: %v %v", d, err)
	}
	secret, k, err := s.Create("ci")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, Prefix) || len(secret) < 40 {
		t.Fatalf("key %q", secret)
	}
	raw, _ := os.ReadFile(s.Path())
	if strings.Contains(string(raw), secret) {
		t.Fatal("key stored in clear")
	}
	st, _ := os.Stat(s.Path())
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	// A second handle (the running node) sees the key the CLI created.
	node := Open(dir)
	d, err := node.Digests()
	if err != nil || !Match(secret, d) || Match(secret+"x", d) {
		t.Fatalf("match: %v", err)
	}
	keys, _ := s.List()
	if len(keys) != 1 || keys[0].ID != k.ID || keys[0].Name != "ci" {
		t.Fatalf("list %+v", keys)
	}
	if err := s.Revoke("nope"); err == nil {
		t.Fatal("revoking an unknown id succeeded")
	}
	if err := s.Revoke(k.ID); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Digests(); Match(secret, d) {
		t.Fatal("revoked key still matches")
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := Open(dir)
	if err := os.WriteFile(s.Path(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Digests(); err == nil || !strings.Contains(err.Error(), FileName) {
		t.Fatalf("corrupt file: %v", err)
	}
	if _, _, err := s.Create("x"); err == nil {
		t.Fatal("create over a corrupt file would lose the keys it held")
	}
}
