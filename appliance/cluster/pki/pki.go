// Package pki holds a cluster's trust material: the CA that the first master creates, node
// certificates signed by it, join tokens, the gossip key derived from the cluster secret, and
// the mutual-TLS configurations that raft and node-to-node traffic use.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Validity periods. Node certificates are long-lived because renewal is not built yet; the
// CA outlives them.
const (
	CAValidity   = 20 * 365 * 24 * time.Hour
	NodeValidity = 5 * 365 * 24 * time.Hour
	// SecretSize is the size of the cluster secret in bytes.
	SecretSize = 32
)

// CA is the cluster certificate authority. Key is nil on nodes that may not sign (workers).
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA creates a CA for a new cluster.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "exo cluster CA " + name, Organization: []string{"exo"}},
		NotBefore:             now,
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Fingerprint is the SHA-256 of the CA certificate, lower-case hex; it names the cluster.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert.Raw) }

// Fingerprint hashes a DER certificate as lower-case hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// NodeCertRequest is what a node asks the CA to certify.
type NodeCertRequest struct {
	NodeID string
	Name   string
	Roles  []string
	Public crypto.PublicKey
}

// Sign issues a node certificate: CN is the node ID, which is what peers check; it is valid
// for both ends of a mutual-TLS connection.
func (ca *CA) Sign(req NodeCertRequest) (*x509.Certificate, error) {
	if ca.Key == nil {
		return nil, errors.New("this node holds the CA certificate but not its key; only masters sign")
	}
	if req.NodeID == "" {
		return nil, errors.New("sign node certificate: empty node ID")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.NodeID, Organization: []string{"exo"}, OrganizationalUnit: req.Roles},
		DNSNames:     []string{req.NodeID},
		NotBefore:    now,
		NotAfter:     now.Add(NodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.Public, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate for %s: %w", req.NodeID, err)
	}
	return x509.ParseCertificate(der)
}

// VerifyNode checks that cert was issued by this CA for node use and returns its node ID.
func (ca *CA) VerifyNode(cert *x509.Certificate) (string, error) {
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:     ca.Pool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return "", fmt.Errorf("certificate %q is not signed by cluster CA %s: %w", cert.Subject.CommonName, ca.Fingerprint()[:16], err)
	}
	return cert.Subject.CommonName, nil
}

// GossipKey derives the serf/memberlist encryption key (AES-256) from the cluster secret. The
// CA fingerprint is the salt, so that two clusters never share a key even if a secret repeats.
func GossipKey(secret []byte, caFingerprint string) ([]byte, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("cluster secret is %d bytes; want at least 16", len(secret))
	}
	return hkdf.Key(sha256.New, secret, []byte(caFingerprint), "exo gossip key v1", 32)
}

// NewSecret returns a fresh cluster secret.
func NewSecret() ([]byte, error) {
	s := make([]byte, SecretSize)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("generate cluster secret: %w", err)
	}
	return s, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	return n, nil
}

// EncodeCert and friends convert to and from PEM.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// DecodeCert parses one PEM certificate.
func DecodeCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// EncodeKey encodes an EC private key as PEM.
func EncodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// DecodeKey parses a PEM EC private key.
func DecodeKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "EC PRIVATE KEY" {
		return nil, errors.New("no EC PRIVATE KEY PEM block")
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

// ALPN protocol names multiplexed on a master's raft port.
const (
	ALPNRaft = "exo-raft/1"
	ALPNRPC  = "exo-rpc/1"
)

// ServerTLS is the configuration of a node-to-node listener: it presents the node certificate
// (with the CA, so that joiners can check the CA fingerprint) and demands a client certificate
// signed by the same CA.
func ServerTLS(ca *CA, node tls.Certificate, protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{node},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		NextProtos:   protos,
	}
}

// ClientTLS dials another node: it presents the node certificate and accepts any peer whose
// certificate the CA signed. Host names are not checked because peers are found by address
// through gossip; the CA signature is what identifies a member.
func ClientTLS(ca *CA, node tls.Certificate, proto string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{node},
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(ca, raw)
		},
		NextProtos: []string{proto},
	}
}

func verifyChain(ca *CA, raw [][]byte) error {
	if len(raw) == 0 {
		return errors.New("peer presented no certificate")
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	_, err = ca.VerifyNode(leaf)
	return err
}

// TLSCertificate bundles a node certificate and key with the CA certificate as its chain.
func TLSCertificate(node *x509.Certificate, key *ecdsa.PrivateKey, ca *x509.Certificate) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{node.Raw, ca.Raw}, PrivateKey: key, Leaf: node}
}
