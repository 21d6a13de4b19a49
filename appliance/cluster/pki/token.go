package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// TokenPrefix starts every join token, so that a pasted string is recognisable.
const TokenPrefix = "exo1."

// Token is a join token: the CA fingerprint the joiner pins the cluster with, an expiry, the
// most privileged role it admits, and a CA signature over all three that serves as the join
// secret. Any member can check the signature with the CA certificate alone, so a non-master can
// refuse a bad token without asking a master.
type Token struct {
	CAFingerprint [32]byte
	ID            [8]byte
	Expires       time.Time
	Role          TokenRole
	Sig           []byte
}

// TokenRole is the most privileged node role a token admits. The roles form a ladder, each
// admitting itself and those below it: api < worker < master. Only a master token lets a node
// join as a master, and so receive the CA key and the cluster secret.
type TokenRole byte

// Token roles; the values are the byte signed into the token.
const (
	TokenAPI    TokenRole = 1
	TokenWorker TokenRole = 2
	TokenMaster TokenRole = 3
)

// TokenRoles lists the token roles by name, least privileged first.
var TokenRoles = []string{"api", "worker", "master"}

// ParseTokenRole reads a token role by name.
func ParseTokenRole(name string) (TokenRole, error) {
	for i, n := range TokenRoles {
		if n == name {
			return TokenRole(i + 1), nil
		}
	}
	return 0, fmt.Errorf("token role %q unknown; want one of %s", name, strings.Join(TokenRoles, ", "))
}

func (r TokenRole) valid() bool { return r >= TokenAPI && r <= TokenMaster }

func (r TokenRole) String() string {
	if !r.valid() {
		return fmt.Sprintf("role(%d)", byte(r))
	}
	return TokenRoles[r-1]
}

// Denied lists the node roles that a token of role r does not admit.
func (r TokenRole) Denied(roles []string) []string {
	var out []string
	for _, name := range roles {
		if want, err := ParseTokenRole(name); err != nil || want > r {
			out = append(out, name)
		}
	}
	return out
}

// MaxTokenRole is the most privileged token role that a node running roles may issue: a node
// never hands out more than it was admitted with.
func MaxTokenRole(roles []string) (TokenRole, bool) {
	var best TokenRole
	for _, name := range roles {
		if r, err := ParseTokenRole(name); err == nil && r > best {
			best = r
		}
	}
	return best, best.valid()
}

// CertRoles are the node roles a node certificate was issued for (admitted by the token the
// node joined with).
func CertRoles(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	return c.Subject.OrganizationalUnit
}

// ErrTokenExpired and ErrTokenSignature are the reasons a token is refused.
var (
	ErrTokenExpired   = errors.New("join token expired")
	ErrTokenSignature = errors.New("join token signature does not verify")
	ErrTokenCluster   = errors.New("join token belongs to another cluster")
)

// IssueToken signs a token valid for ttl that admits nodes up to role.
func (ca *CA) IssueToken(ttl time.Duration, role TokenRole) (string, *Token, error) {
	if ca.Key == nil {
		return "", nil, errors.New("issue join token: this node does not hold the CA key (ask a master)")
	}
	if ttl <= 0 {
		return "", nil, fmt.Errorf("issue join token: ttl %s must be positive", ttl)
	}
	if !role.valid() {
		return "", nil, fmt.Errorf("issue join token: %s is not a token role", role)
	}
	t := &Token{Expires: time.Now().Add(ttl).UTC().Truncate(time.Second), Role: role}
	fp, _ := hex.DecodeString(ca.Fingerprint())
	copy(t.CAFingerprint[:], fp)
	if _, err := rand.Read(t.ID[:]); err != nil {
		return "", nil, fmt.Errorf("issue join token: %w", err)
	}
	digest := t.digest()
	sig, err := ecdsa.SignASN1(rand.Reader, ca.Key, digest[:])
	if err != nil {
		return "", nil, fmt.Errorf("sign join token: %w", err)
	}
	t.Sig = sig
	return t.String(), t, nil
}

func (t *Token) body() []byte {
	b := make([]byte, 0, tokenBodySize)
	b = append(b, t.CAFingerprint[:]...)
	b = append(b, t.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Expires.Unix()))
	return append(b, byte(t.Role))
}

// tokenBodySize is the signed part: fingerprint, ID, expiry, role.
const tokenBodySize = 32 + 8 + 8 + 1

func (t *Token) digest() [32]byte {
	// v2 signs the role too; a v1 signature (no role) never verifies as v2.
	return sha256.Sum256(append([]byte("exo join token v2\x00"), t.body()...))
}

// String encodes the token.
func (t *Token) String() string {
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(append(t.body(), t.Sig...))
}

// Fingerprint is the pinned CA fingerprint as lower-case hex.
func (t *Token) Fingerprint() string { return hex.EncodeToString(t.CAFingerprint[:]) }

// IDHex names the token in logs without revealing its signature.
func (t *Token) IDHex() string { return hex.EncodeToString(t.ID[:]) }

// ParseToken decodes a token string; it checks the form, not the signature.
func ParseToken(s string) (*Token, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, TokenPrefix) {
		return nil, fmt.Errorf("join token does not start with %q", TokenPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s[len(TokenPrefix):])
	if err != nil {
		return nil, fmt.Errorf("join token is not base64url: %w", err)
	}
	if len(raw) < tokenBodySize+8 || len(raw) > tokenBodySize+80 {
		return nil, fmt.Errorf("join token is %d bytes; want %d to %d", len(raw), tokenBodySize+8, tokenBodySize+80)
	}
	t := &Token{}
	copy(t.CAFingerprint[:], raw[:32])
	copy(t.ID[:], raw[32:40])
	t.Expires = time.Unix(int64(binary.BigEndian.Uint64(raw[40:48])), 0).UTC()
	t.Role = TokenRole(raw[48])
	if !t.Role.valid() {
		// Tokens of exo before roles were signed have a signature byte here.
		return nil, fmt.Errorf("join token role byte 0x%02x is unknown (a token from an older exo? issue a new one with `exo cluster token --role`)", raw[48])
	}
	t.Sig = append([]byte(nil), raw[tokenBodySize:]...)
	return t, nil
}

// Verify checks the token against the cluster's CA at time now.
func (t *Token) Verify(ca *CA, now time.Time) error {
	if t.Fingerprint() != ca.Fingerprint() {
		return ErrTokenCluster
	}
	pub, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("cluster CA key is %T, not ECDSA", ca.Cert.PublicKey)
	}
	digest := t.digest()
	if !ecdsa.VerifyASN1(pub, digest[:], t.Sig) {
		return ErrTokenSignature
	}
	if !now.Before(t.Expires) {
		return fmt.Errorf("%w at %s", ErrTokenExpired, t.Expires.Format(time.RFC3339))
	}
	return nil
}
