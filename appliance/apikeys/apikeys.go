// Package apikeys keeps the node's API keys. Only SHA-256 digests are stored: a key is shown
// once when it is created and cannot be read back. The store is a JSON file in the data
// directory that the CLI edits while a node runs; the node notices changes by the file's
// modification time.
package apikeys

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// FileName is the store's file inside the data directory.
const FileName = "api-keys.json"

// Prefix starts every key, so that keys are recognisable in secret scanners and logs.
const Prefix = "exo-"

// Key is a stored key: its digest and what an operator needs to recognise it.
type Key struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Hint    string    `json:"hint"` // the first characters of the key
	Digest  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

type fileFormat struct {
	Keys []Key `json:"keys"`
}

// Store is the key file of one data directory.
type Store struct {
	path string

	mu      sync.Mutex
	mtime   time.Time
	size    int64
	checked time.Time
	digests [][32]byte
}

// Open returns the store in dir; the file need not exist.
func Open(dir string) *Store { return &Store{path: filepath.Join(dir, FileName)} }

// Path is the key file.
func (s *Store) Path() string { return s.path }

// Create makes a key, stores its digest and returns the key itself (shown once).
func (s *Store) Create(name string) (string, Key, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", Key{}, fmt.Errorf("generate key: %w", err)
	}
	secret := Prefix + base64.RawURLEncoding.EncodeToString(raw)
	idRaw := make([]byte, 4)
	_, _ = rand.Read(idRaw)
	sum := sha256.Sum256([]byte(secret))
	k := Key{ID: hex.EncodeToString(idRaw), Name: name, Hint: secret[:len(Prefix)+4] + "…", Digest: hex.EncodeToString(sum[:]), Created: time.Now().UTC().Truncate(time.Second)}
	err := s.update(func(f *fileFormat) error {
		f.Keys = append(f.Keys, k)
		return nil
	})
	if err != nil {
		return "", Key{}, err
	}
	return secret, k, nil
}

// Revoke removes the key with the given id.
func (s *Store) Revoke(id string) error {
	return s.update(func(f *fileFormat) error {
		for i, k := range f.Keys {
			if k.ID == id {
				f.Keys = append(f.Keys[:i], f.Keys[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("no API key with id %q (see `exo keys list`)", id)
	})
}

// List returns the stored keys (digests and hints only).
func (s *Store) List() ([]Key, error) {
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	return f.Keys, nil
}

// Digests returns the stored digests, re-reading the file at most once a second and only when
// it changed, so that checking a request costs no I/O in the common case.
func (s *Store) Digests() ([][32]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.checked) < time.Second && !s.checked.IsZero() {
		return s.digests, nil
	}
	s.checked = time.Now()
	st, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		s.digests, s.mtime, s.size = nil, time.Time{}, 0
		return nil, nil
	}
	if err != nil {
		return s.digests, fmt.Errorf("api keys %s: %w", s.path, err)
	}
	if st.ModTime().Equal(s.mtime) && st.Size() == s.size && s.digests != nil {
		return s.digests, nil
	}
	f, err := s.read()
	if err != nil {
		return s.digests, err
	}
	digests := make([][32]byte, 0, len(f.Keys))
	for _, k := range f.Keys {
		b, err := hex.DecodeString(k.Digest)
		if err != nil || len(b) != 32 {
			return s.digests, fmt.Errorf("api keys %s: key %s has a malformed digest", s.path, k.ID)
		}
		digests = append(digests, [32]byte(b))
	}
	s.digests, s.mtime, s.size = digests, st.ModTime(), st.Size()
	return digests, nil
}

// Match reports whether token equals one of the digests, in constant time per digest.
func Match(token string, digests [][32]byte) bool {
	d := sha256.Sum256([]byte(token))
	ok := 0
	for _, want := range digests {
		ok |= subtle.ConstantTimeCompare(d[:], want[:])
	}
	return ok == 1
}

// Digest hashes a key given in configuration.
func Digest(key string) [32]byte { return sha256.Sum256([]byte(key)) }

func (s *Store) read() (*fileFormat, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return &fileFormat{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read api keys: %w", err)
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("api keys %s: %w", s.path, err)
	}
	return &f, nil
}

// update edits the file under an exclusive lock and replaces it atomically (mode 0600).
func (s *Store) update(edit func(*fileFormat) error) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	lock, err := os.OpenFile(s.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("api keys lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("api keys lock: %w", err)
	}
	f, err := s.read()
	if err != nil {
		return err
	}
	if err := edit(f); err != nil {
		return err
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write api keys: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write api keys: %w", err)
	}
	s.mu.Lock()
	s.checked = time.Time{} // our own change is visible at once
	s.mu.Unlock()
	return nil
}
