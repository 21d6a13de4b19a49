package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/exo-nix/exo/appliance/cluster/identity"
)

// Files of the credential directory.
const (
	caCertFile  = "ca.crt"
	caKeyFile   = "ca.key"
	nodeCert    = "node.crt"
	gossipFile  = "gossip.key"
	secretFile  = "cluster.secret"
	credDirMode = 0o700
)

// Credentials are what a node needs to be a member: the CA certificate, its own CA-signed
// certificate and the gossip key. Masters also hold the CA key and the cluster secret, so that
// any of them can admit new nodes when another is down.
type Credentials struct {
	CA        *CA
	NodeCert  *x509.Certificate
	NodeKey   *ecdsa.PrivateKey
	GossipKey []byte
	Secret    []byte // nil on non-masters
}

// TLS returns the node's certificate with its chain.
func (c *Credentials) TLS() tls.Certificate { return TLSCertificate(c.NodeCert, c.NodeKey, c.CA.Cert) }

// CanSign reports whether these credentials can admit nodes and issue tokens.
func (c *Credentials) CanSign() bool { return c.CA.Key != nil && c.Secret != nil }

// LoadCredentials reads the credentials kept in dir; it returns (nil, nil) when the directory
// holds none (a node that has not joined a cluster yet).
func LoadCredentials(dir string, nodeKey *ecdsa.PrivateKey) (*Credentials, error) {
	read := func(name string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		return data, nil
	}
	caPEM, err := read(caCertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster CA: %w", err)
	}
	bad := func(name string, err error) error {
		return fmt.Errorf("cluster credentials %s: %w (remove %s to join a cluster afresh)", filepath.Join(dir, name), err, dir)
	}
	caCert, err := DecodeCert(caPEM)
	if err != nil {
		return nil, bad(caCertFile, err)
	}
	c := &Credentials{CA: &CA{Cert: caCert}, NodeKey: nodeKey}
	certPEM, err := read(nodeCert)
	if err != nil {
		return nil, bad(nodeCert, err)
	}
	if c.NodeCert, err = DecodeCert(certPEM); err != nil {
		return nil, bad(nodeCert, err)
	}
	g, err := read(gossipFile)
	if err != nil {
		return nil, bad(gossipFile, err)
	}
	if c.GossipKey, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(g))); err != nil || len(c.GossipKey) != 32 {
		return nil, bad(gossipFile, fmt.Errorf("want 32 base64 bytes (err %v)", err))
	}
	if keyPEM, err := read(caKeyFile); err == nil {
		if c.CA.Key, err = DecodeKey(keyPEM); err != nil {
			return nil, bad(caKeyFile, err)
		}
		s, err := read(secretFile)
		if err != nil {
			return nil, bad(secretFile, err)
		}
		if c.Secret, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(s))); err != nil {
			return nil, bad(secretFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, bad(caKeyFile, err)
	}
	if _, err := c.CA.VerifyNode(c.NodeCert); err != nil {
		return nil, bad(nodeCert, err)
	}
	if !publicKeysEqual(c.NodeCert.PublicKey, &nodeKey.PublicKey) {
		return nil, bad(nodeCert, errors.New("certificate is for another key than this node's (was the node identity regenerated?)"))
	}
	return c, nil
}

func publicKeysEqual(a any, b *ecdsa.PublicKey) bool {
	pa, ok := a.(*ecdsa.PublicKey)
	return ok && pa.Equal(b)
}

// Save writes the credentials to dir with owner-only permissions.
func (c *Credentials) Save(dir string) error {
	if err := os.MkdirAll(dir, credDirMode); err != nil {
		return fmt.Errorf("create credential directory %s: %w", dir, err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{nodeCert, EncodeCert(c.NodeCert)},
		{gossipFile, []byte(base64.StdEncoding.EncodeToString(c.GossipKey) + "\n")},
	}
	if c.CA.Key != nil {
		keyPEM, err := EncodeKey(c.CA.Key)
		if err != nil {
			return fmt.Errorf("encode CA key: %w", err)
		}
		files = append(files,
			struct {
				name string
				data []byte
			}{caKeyFile, keyPEM},
			struct {
				name string
				data []byte
			}{secretFile, []byte(base64.StdEncoding.EncodeToString(c.Secret) + "\n")})
	}
	// The CA certificate goes last: LoadCredentials treats its presence as "joined".
	files = append(files, struct {
		name string
		data []byte
	}{caCertFile, EncodeCert(c.CA.Cert)})
	for _, f := range files {
		if err := identity.WriteFileAtomic(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Bootstrap creates the credentials of a new cluster's first master.
func Bootstrap(name, nodeID string, roles []string, nodeKey *ecdsa.PrivateKey) (*Credentials, error) {
	ca, err := NewCA(name)
	if err != nil {
		return nil, err
	}
	secret, err := NewSecret()
	if err != nil {
		return nil, err
	}
	gk, err := GossipKey(secret, ca.Fingerprint())
	if err != nil {
		return nil, err
	}
	cert, err := ca.Sign(NodeCertRequest{NodeID: nodeID, Name: name, Roles: roles, Public: &nodeKey.PublicKey})
	if err != nil {
		return nil, err
	}
	return &Credentials{CA: ca, NodeCert: cert, NodeKey: nodeKey, GossipKey: gk, Secret: secret}, nil
}

// LoadSigningCA reads the cluster CA certificate and key kept in a master's credentials
// directory, for issuing join tokens without a running node (e.g. a boot-time unit that hands
// the other roles on the same host their token).
func LoadSigningCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("read cluster CA: %w (is %s a master's credentials directory?)", err, dir)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read cluster CA key: %w (only a master's data directory holds it)", err)
	}
	cert, err := DecodeCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, caCertFile), err)
	}
	key, err := DecodeKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, caKeyFile), err)
	}
	if !publicKeysEqual(cert.PublicKey, &key.PublicKey) {
		return nil, fmt.Errorf("%s does not belong to %s", caKeyFile, caCertFile)
	}
	return &CA{Cert: cert, Key: key}, nil
}
