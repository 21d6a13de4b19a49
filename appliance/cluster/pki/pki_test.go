package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/syncbuf"
)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const nodeA = "0123456789abcdef0123456789abcdef"
const nodeB = "fedcba9876543210fedcba9876543210"

func TestCASignsAndVerifiesNodes(t *testing.T) {
	creds, err := Bootstrap("c1", nodeA, []string{"master"}, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	id, err := creds.CA.VerifyNode(creds.NodeCert)
	if err != nil || id != nodeA {
		t.Fatalf("own certificate: %q %v", id, err)
	}
	other, err := Bootstrap("c2", nodeB, nil, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := creds.CA.VerifyNode(other.NodeCert); err == nil {
		t.Fatal("certificate of another cluster verified")
	}
	if creds.CA.Fingerprint() == other.CA.Fingerprint() || len(creds.CA.Fingerprint()) != 64 {
		t.Fatal("fingerprints not distinct 64-hex")
	}
	if bytes.Equal(creds.GossipKey, other.GossipKey) || len(creds.GossipKey) != 32 {
		t.Fatal("gossip keys not distinct 32-byte keys")
	}
	again, _ := GossipKey(creds.Secret, creds.CA.Fingerprint())
	if !bytes.Equal(again, creds.GossipKey) {
		t.Fatal("gossip key derivation not deterministic")
	}
	worker := &CA{Cert: creds.CA.Cert}
	if _, err := worker.Sign(NodeCertRequest{NodeID: nodeB, Public: &newKey(t).PublicKey}); err == nil {
		t.Fatal("CA without key signed")
	}
}

func TestTokens(t *testing.T) {
	creds, _ := Bootstrap("c1", nodeA, nil, newKey(t))
	other, _ := Bootstrap("c2", nodeB, nil, newKey(t))
	s, tok, err := creds.CA.IssueToken(time.Hour, TokenWorker)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, TokenPrefix) || strings.ContainsAny(s, " +/=\n") {
		t.Fatalf("token %q is not a plain string", s)
	}
	parsed, err := ParseToken(s)
	if err != nil || parsed.Fingerprint() != creds.CA.Fingerprint() || !parsed.Expires.Equal(tok.Expires) || parsed.Role != TokenWorker {
		t.Fatalf("round trip: %+v %v", parsed, err)
	}
	now := time.Now()
	if err := parsed.Verify(creds.CA, now); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if err := parsed.Verify(creds.CA, tok.Expires.Add(time.Second)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired token: %v", err)
	}
	if err := parsed.Verify(other.CA, now); !errors.Is(err, ErrTokenCluster) {
		t.Fatalf("token checked against another cluster: %v", err)
	}
	// Extending the expiry breaks the signature.
	forged := *parsed
	forged.Expires = forged.Expires.Add(24 * time.Hour)
	if err := forged.Verify(creds.CA, now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("forged expiry: %v", err)
	}
	// Raising the role breaks the signature too: the role is signed.
	raised := *parsed
	raised.Role = TokenMaster
	if err := raised.Verify(creds.CA, now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("forged role: %v", err)
	}
	if reparsed, err := ParseToken(raised.String()); err != nil || reparsed.Role != TokenMaster || reparsed.Verify(creds.CA, now) == nil {
		t.Fatalf("re-encoded forged role: %+v %v", reparsed, err)
	}
	// A token signed by another CA but claiming this one's fingerprint.
	_, otherTok, _ := other.CA.IssueToken(time.Hour, TokenWorker)
	otherTok.CAFingerprint = parsed.CAFingerprint
	if err := otherTok.Verify(creds.CA, now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("foreign signature: %v", err)
	}
	for _, bad := range []string{"", "exo1.", "exo1.!!!", "exo2." + s[5:], s[:30]} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%q) accepted", bad)
		}
	}
	if _, _, err := (&CA{Cert: creds.CA.Cert}).IssueToken(time.Hour, TokenWorker); err == nil {
		t.Fatal("token issued without CA key")
	}
	if _, _, err := creds.CA.IssueToken(time.Hour, 0); err == nil {
		t.Fatal("token issued without a role")
	}
	// A token in the format before roles (v1: no role byte, role-less signature) is refused
	// with a hint, not misread.
	v1 := *tok
	body := v1.body()
	old := TokenPrefix + base64.RawURLEncoding.EncodeToString(append(body[:48:48], v1.Sig...))
	if _, err := ParseToken(old); err == nil || !strings.Contains(err.Error(), "older exo") {
		t.Fatalf("v1 token: %v", err)
	}
}

func TestTokenRoles(t *testing.T) {
	for _, c := range []struct {
		token  TokenRole
		roles  []string
		denied string
	}{
		{TokenWorker, []string{"worker"}, ""},
		{TokenWorker, []string{"worker", "api"}, ""},
		{TokenWorker, []string{"master", "worker", "api"}, "master"},
		{TokenWorker, []string{"master"}, "master"},
		{TokenAPI, []string{"api"}, ""},
		{TokenAPI, []string{"worker", "api"}, "worker"},
		{TokenAPI, []string{"master", "worker"}, "master,worker"},
		{TokenMaster, []string{"master", "worker", "api"}, ""},
		{TokenMaster, []string{"root"}, "root"},
		{TokenMaster, nil, ""},
	} {
		if got := strings.Join(c.token.Denied(c.roles), ","); got != c.denied {
			t.Errorf("%s token, roles %v: denied %q, want %q", c.token, c.roles, got, c.denied)
		}
	}
	for name, want := range map[string]TokenRole{"api": TokenAPI, "worker": TokenWorker, "master": TokenMaster} {
		if r, err := ParseTokenRole(name); err != nil || r != want || r.String() != name {
			t.Errorf("ParseTokenRole(%q) = %v, %v", name, r, err)
		}
	}
	if _, err := ParseTokenRole("admin"); err == nil {
		t.Error("unknown token role accepted")
	}
	for roles, want := range map[string]TokenRole{"master,worker,api": TokenMaster, "api,worker": TokenWorker, "api": TokenAPI} {
		if r, ok := MaxTokenRole(strings.Split(roles, ",")); !ok || r != want {
			t.Errorf("MaxTokenRole(%s) = %v %v, want %v", roles, r, ok, want)
		}
	}
	if _, ok := MaxTokenRole(nil); ok {
		t.Error("a node without roles may issue tokens")
	}
}

func TestCredentialsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	if c, err := LoadCredentials(dir, key); c != nil || err != nil {
		t.Fatalf("empty dir: %v %v", c, err)
	}
	creds, _ := Bootstrap("c1", nodeA, nil, key)
	if err := creds.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCredentials(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CanSign() || got.CA.Fingerprint() != creds.CA.Fingerprint() || !bytes.Equal(got.GossipKey, creds.GossipKey) {
		t.Fatalf("loaded credentials differ")
	}
	// The certificate is bound to the node key.
	if _, err := LoadCredentials(dir, newKey(t)); err == nil || !strings.Contains(err.Error(), "node.crt") {
		t.Fatalf("certificate for another key accepted: %v", err)
	}
}

// serveJoin runs a JoinServer on a loopback listener.
func serveJoin(t *testing.T, s *JoinServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.Serve(c)
		}
	}()
	return ln.Addr().String()
}

func TestJoinExchange(t *testing.T) {
	master, _ := Bootstrap("c1", nodeA, []string{"master"}, newKey(t))
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	addr := serveJoin(t, &JoinServer{Creds: func() *Credentials { return master }, Masters: func() []string { return nil }, Log: log})
	token, _, _ := master.CA.IssueToken(time.Minute, TokenMaster)
	workerToken, _, _ := master.CA.IssueToken(time.Minute, TokenWorker)
	apiToken, _, _ := master.CA.IssueToken(time.Minute, TokenAPI)
	ctx := context.Background()

	// A worker gets a certificate and the gossip key, but neither the CA key nor the secret.
	wkey := newKey(t)
	wc, err := Join(ctx, addr, JoinRequest{Token: workerToken, NodeID: nodeB, Name: "w", Roles: []string{"worker", "api"}, Key: wkey})
	if err != nil {
		t.Fatal(err)
	}
	if wc.CanSign() || wc.CA.Key != nil || !bytes.Equal(wc.GossipKey, master.GossipKey) || wc.NodeCert.Subject.CommonName != nodeB {
		t.Fatalf("worker credentials wrong: canSign=%v", wc.CanSign())
	}
	// The issued certificate works for mutual TLS with the master.
	checkMutualTLS(t, master, wc)

	// A master also receives the signing material.
	mc, err := Join(ctx, addr, JoinRequest{Token: token, NodeID: "11111111111111111111111111111111", Name: "m2", Roles: []string{"master"}, Key: newKey(t)})
	if err != nil || !mc.CanSign() || !bytes.Equal(mc.Secret, master.Secret) {
		t.Fatalf("master join: %v", err)
	}

	var refused *RefusedError
	// A token admits its role and those below it, never more: a worker token cannot make a
	// master (which would receive the CA key), an API token not even a worker.
	for _, c := range []struct {
		token string
		roles []string
	}{{workerToken, []string{"master"}}, {workerToken, []string{"master", "worker", "api"}}, {apiToken, []string{"worker", "api"}}} {
		mc, err := Join(ctx, addr, JoinRequest{Token: c.token, NodeID: "22222222222222222222222222222222", Name: "escalate", Roles: c.roles, Key: newKey(t)})
		if !errors.As(err, &refused) || refused.WrongCluster || !strings.Contains(err.Error(), "token does not admit") || mc != nil {
			t.Fatalf("roles %v with a weaker token: %v", c.roles, err)
		}
	}
	if ac, err := Join(ctx, addr, JoinRequest{Token: apiToken, NodeID: "33333333333333333333333333333333", Name: "a", Roles: []string{"api"}, Key: newKey(t)}); err != nil || ac.CanSign() {
		t.Fatalf("api join with an api token: %v", err)
	}
	// No token: refused, and the refusal is logged with the reason.
	if _, err := Join(ctx, addr, JoinRequest{NodeID: nodeB, Name: "nt", Key: wkey}); !errors.As(err, &refused) {
		t.Fatalf("join without token: %v", err)
	}
	// A tampered token.
	bad := token[:len(token)-4] + "AAAA"
	if _, err := Join(ctx, addr, JoinRequest{Token: bad, NodeID: nodeB, Name: "bt", Key: wkey}); !errors.As(err, &refused) {
		t.Fatalf("join with tampered token: %v", err)
	}
	// Another cluster's token: the joiner notices the CA mismatch and sends nothing.
	other, _ := Bootstrap("c2", nodeB, nil, newKey(t))
	otherTok, _, _ := other.CA.IssueToken(time.Minute, TokenMaster)
	_, err = Join(ctx, addr, JoinRequest{Token: otherTok, NodeID: nodeB, Name: "ot", Key: wkey})
	if !errors.As(err, &refused) || !refused.WrongCluster || !strings.Contains(err.Error(), "not the token's") {
		t.Fatalf("join with another cluster's token: %v", err)
	}
	waitFor(t, func() bool {
		s := logs.String()
		return strings.Contains(s, "reason=\"no token\"") && strings.Contains(s, "reason=\"invalid token\"") &&
			strings.Contains(s, "TLS handshake failed") && strings.Count(s, "join accepted") == 3 &&
			strings.Count(s, "token does not admit") == 3 && strings.Contains(s, "token_role=worker")
	}, logs)
	if strings.Contains(logs.String(), token[10:]) {
		t.Fatal("token signature written to the log")
	}
}

func TestJoinRedirectsFromNonSigners(t *testing.T) {
	master, _ := Bootstrap("c1", nodeA, []string{"master"}, newKey(t))
	worker := &Credentials{CA: &CA{Cert: master.CA.Cert}, NodeCert: master.NodeCert, NodeKey: master.NodeKey, GossipKey: master.GossipKey}
	log := slog.New(slog.NewTextHandler(&syncbuf.Buffer{}, nil))
	addr := serveJoin(t, &JoinServer{Creds: func() *Credentials { return worker }, Masters: func() []string { return []string{"10.0.0.1:52416"} }, Log: log})
	token, _, _ := master.CA.IssueToken(time.Minute, TokenWorker)
	_, err := Join(context.Background(), addr, JoinRequest{Token: token, NodeID: nodeB, Roles: []string{"worker"}, Key: newKey(t)})
	var redirect *RedirectError
	if !errors.As(err, &redirect) || len(redirect.Masters) != 1 {
		t.Fatalf("non-signer answered %v", err)
	}
	// So is a token too weak for the requested roles.
	_, err = Join(context.Background(), addr, JoinRequest{Token: token, NodeID: nodeB, Roles: []string{"master"}, Key: newKey(t)})
	var weak *RefusedError
	if !errors.As(err, &weak) || strings.Contains(err.Error(), "10.0.0.1") {
		t.Fatalf("master join with a worker token at a non-signer: %v", err)
	}
	// A bad token is refused before any master address is revealed.
	_, err = Join(context.Background(), addr, JoinRequest{NodeID: nodeB, Key: newKey(t)})
	var refused *RefusedError
	if !errors.As(err, &refused) || strings.Contains(err.Error(), "10.0.0.1") {
		t.Fatalf("tokenless join at non-signer: %v", err)
	}
}

func checkMutualTLS(t *testing.T, server, client *Credentials) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLS(server.CA, server.TLS(), ALPNRPC))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), ClientTLS(client.CA, client.TLS(), ALPNRPC))
	if err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("mutual TLS read: %v", err)
	}
	c.Close()

	// A certificate of another cluster is refused by the server.
	stranger, _ := Bootstrap("c3", nodeB, nil, newKey(t))
	go func() {
		if c, err := ln.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c2, err := tls.Dial("tcp", ln.Addr().String(), ClientTLS(client.CA, stranger.TLS(), ALPNRPC))
	if err == nil {
		_, err = c2.Read(buf)
		c2.Close()
	}
	if err == nil {
		t.Fatal("stranger's certificate accepted")
	}
}

func waitFor(t *testing.T, cond func() bool, logs *syncbuf.Buffer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
