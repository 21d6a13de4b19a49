package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
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

// Token is a join token: the CA fingerprint the joiner pins the cluster with, an expiry, and a
// CA signature over both that serves as the join secret. Any member can check the signature with
// the CA certificate alone, so a non-master can refuse a bad token without asking a master.
type Token struct {
	CAFingerprint [32]byte
	ID            [8]byte
	Expires       time.Time
	Sig           []byte
}

// ErrTokenExpired and ErrTokenSignature are the reasons a token is refused.
var (
	ErrTokenExpired   = errors.New("join token expired")
	ErrTokenSignature = errors.New("join token signature does not verify")
	ErrTokenCluster   = errors.New("join token belongs to another cluster")
)

// IssueToken signs a token valid for ttl.
func (ca *CA) IssueToken(ttl time.Duration) (string, *Token, error) {
	if ca.Key == nil {
		return "", nil, errors.New("issue join token: this node does not hold the CA key (ask a master)")
	}
	if ttl <= 0 {
		return "", nil, fmt.Errorf("issue join token: ttl %s must be positive", ttl)
	}
	t := &Token{Expires: time.Now().Add(ttl).UTC().Truncate(time.Second)}
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
	b := make([]byte, 0, 48)
	b = append(b, t.CAFingerprint[:]...)
	b = append(b, t.ID[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(t.Expires.Unix()))
}

func (t *Token) digest() [32]byte {
	return sha256.Sum256(append([]byte("exo join token v1\x00"), t.body()...))
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
	if len(raw) < 48+8 || len(raw) > 48+80 {
		return nil, fmt.Errorf("join token is %d bytes; want 56 to 128", len(raw))
	}
	t := &Token{}
	copy(t.CAFingerprint[:], raw[:32])
	copy(t.ID[:], raw[32:40])
	t.Expires = time.Unix(int64(binary.BigEndian.Uint64(raw[40:48])), 0).UTC()
	t.Sig = append([]byte(nil), raw[48:]...)
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
