// Package identity gives a node a persistent ID and key pair, kept in its data directory and
// bound to the machine's machine-id so that a cloned disk is noticed and gets an ID of its own.
//
// exo's upstream nodes take a random ID on every start, which churns placements; a copied disk
// image would duplicate a stable ID instead. Binding the ID to machine-id avoids both.
package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside the identity directory.
const (
	MetaFile = "identity.json"
	KeyFile  = "node.key"
)

// DefaultMachineIDPaths are read in order; the first readable, non-empty one is the machine's.
var DefaultMachineIDPaths = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// Identity is a node's stable identity.
type Identity struct {
	ID      string
	Key     *ecdsa.PrivateKey
	Created time.Time
	// Regenerated says why a new identity was made on this start ("" when an existing one was
	// loaded): "new" for a fresh data directory, "cloned" when the stored machine-id binding does
	// not match this machine.
	Regenerated string
	// PreviousID is the ID the data directory held before a clone was detected.
	PreviousID string
}

type meta struct {
	ID string `json:"id"`
	// MachineBinding is a hash of machine-id, not machine-id itself: the ID file may be shown
	// to operators and machine-id is meant to stay private (machine-id(5)).
	MachineBinding string    `json:"machine_binding"`
	Created        time.Time `json:"created"`
}

// Load returns the identity stored in dir, creating one when there is none or when the stored
// one was made on another machine. machineIDPaths nil means DefaultMachineIDPaths. A machine
// without a machine-id binds to the empty string, which still detects a disk moved to a
// machine that has one.
func Load(dir string, machineIDPaths []string) (*Identity, error) {
	if machineIDPaths == nil {
		machineIDPaths = DefaultMachineIDPaths
	}
	binding := machineBinding(readMachineID(machineIDPaths))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create identity directory %s: %w", dir, err)
	}
	metaPath := filepath.Join(dir, MetaFile)
	data, err := os.ReadFile(metaPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return create(dir, binding, "new", "")
	case err != nil:
		return nil, fmt.Errorf("read node identity %s: %w", metaPath, err)
	}
	var m meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("node identity %s is corrupt (%v); remove it to get a new node ID", metaPath, err)
	}
	if !validID(m.ID) {
		return nil, fmt.Errorf("node identity %s: id %q is not 32 hex digits; remove the file to get a new node ID", metaPath, m.ID)
	}
	if m.MachineBinding != binding {
		return create(dir, binding, "cloned", m.ID)
	}
	key, err := readKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	return &Identity{ID: m.ID, Key: key, Created: m.Created}, nil
}

func create(dir, binding, why, previous string) (*Identity, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("generate node ID: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate node key: %w", err)
	}
	id := &Identity{ID: hex.EncodeToString(raw[:]), Key: key, Created: time.Now().UTC().Truncate(time.Second),
		Regenerated: why, PreviousID: previous}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode node key: %w", err)
	}
	// The key goes first: an ID file without its key would be unusable on the next start.
	if err := WriteFileAtomic(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	js, _ := json.MarshalIndent(meta{ID: id.ID, MachineBinding: binding, Created: id.Created}, "", "  ")
	if err := WriteFileAtomic(filepath.Join(dir, MetaFile), append(js, '\n'), 0o600); err != nil {
		return nil, err
	}
	return id, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node key %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "EC PRIVATE KEY" {
		return nil, fmt.Errorf("node key %s: no EC PRIVATE KEY PEM block", path)
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("node key %s: %w", path, err)
	}
	return key, nil
}

func readMachineID(paths []string) string {
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			if s := strings.TrimSpace(string(data)); s != "" {
				return s
			}
		}
	}
	return ""
}

func machineBinding(machineID string) string {
	sum := sha256.Sum256([]byte("exo node identity\x00" + machineID))
	return hex.EncodeToString(sum[:])
}

func validID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// WriteFileAtomic writes data to a temporary file next to path and renames it into place, so
// that a crash leaves either the old or the new content, never a torn file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
