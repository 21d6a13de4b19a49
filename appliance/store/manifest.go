package store

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// ManifestSuffix names the sidecar that sits next to a model file: "<file>.exo-tensors.json".
const ManifestSuffix = ".exo-tensors.json"

// manifestVersion is bumped when the meaning of a field changes.
const manifestVersion = 1

// Manifest holds the hashes of one GGUF file: of the whole file, of its header, and of every
// tensor's bytes. exo's peer server hands it out so that a node fetching only some tensors
// (a pipeline stage) can verify each one; the hub gives only the whole file's hash.
type Manifest struct {
	Version int    `json:"version"`
	File    string `json:"file"`
	Size    int64  `json:"size"`
	// ModTimeNS identifies the version of the file the hashes were computed from.
	ModTimeNS int64  `json:"mtime_ns"`
	SHA256    string `json:"sha256"`
	// Origin is where the file came from (hf://org/repo/file, a URL), when it was pulled.
	Origin string `json:"origin,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Verified: a full file's SHA-256 matched the one its origin states; a stage file's tensors
	// each matched the hashes of a peer's manifest. False for imports and for stage files cut
	// from the hub, which states no per-tensor hashes.
	Verified bool `json:"verified"`
	// Stage is the layer range of a stage file (gguf exo.stage.* keys).
	Stage        *Stage            `json:"stage,omitempty"`
	DataOffset   int64             `json:"data_offset"`
	HeaderSHA256 string            `json:"header_sha256"`
	Tensors      map[string]string `json:"tensors"`
}

// Stage is the layer range [First, Last) of a stage file.
type Stage struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

// segment is a byte range of a file whose bytes feed one hash.
type segment struct {
	start, end int64
	h          hash.Hash
}

// segmentWriter routes a file's bytes, written in order from offset 0, to the hashes of
// non-overlapping sorted segments.
type segmentWriter struct {
	pos  int64
	segs []segment
	i    int
}

func (s *segmentWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		for s.i < len(s.segs) && s.segs[s.i].end <= s.pos {
			s.i++
		}
		if s.i == len(s.segs) {
			s.pos += int64(len(p))
			break
		}
		sg := s.segs[s.i]
		if s.pos < sg.start {
			skip := min(int64(len(p)), sg.start-s.pos)
			p, s.pos = p[skip:], s.pos+skip
			continue
		}
		take := min(int64(len(p)), sg.end-s.pos)
		sg.h.Write(p[:take])
		p, s.pos = p[take:], s.pos+take
	}
	return n, nil
}

// ComputeManifest hashes a GGUF file in one sequential pass.
func ComputeManifest(path string) (*Manifest, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Version: manifestVersion, File: filepath.Base(path), DataOffset: f.DataOffset, Tensors: make(map[string]string, len(f.Tensors))}
	if first, last, total, err := f.LayerRange(); err == nil && (first != 0 || last != total) {
		m.Stage = &Stage{First: first, Last: last}
	}
	header := sha256.New()
	segs := []segment{{start: 0, end: f.DataOffset, h: header}}
	names := map[hash.Hash]string{}
	for _, t := range f.Tensors {
		h := sha256.New()
		names[h] = t.Name
		start := f.DataOffset + int64(t.Offset)
		segs = append(segs, segment{start: start, end: start + t.Size, h: h})
	}
	_ = f.Close()
	sort.Slice(segs, func(i, j int) bool { return segs[i].start < segs[j].start })

	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	whole := sha256.New()
	if _, err := io.Copy(io.MultiWriter(whole, &segmentWriter{segs: segs}), bufio.NewReaderSize(fh, 4<<20)); err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	m.Size, m.ModTimeNS = st.Size(), st.ModTime().UnixNano()
	m.SHA256 = hex.EncodeToString(whole.Sum(nil))
	m.HeaderSHA256 = hex.EncodeToString(header.Sum(nil))
	for _, s := range segs[1:] {
		m.Tensors[names[s.h]] = hex.EncodeToString(s.h.Sum(nil))
	}
	return m, nil
}

// ReadManifest reads the sidecar of path and returns it if it describes the file as it is now.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path + ManifestSuffix)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path+ManifestSuffix, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if m.Version != manifestVersion || m.Size != st.Size() || m.ModTimeNS != st.ModTime().UnixNano() || !sha256Hex.MatchString(m.SHA256) {
		return nil, fmt.Errorf("manifest %s: %w", path+ManifestSuffix, errStaleManifest)
	}
	return &m, nil
}

var errStaleManifest = errors.New("stale: the model file changed since it was written")

// writeManifest stores m next to path, atomically. It fails in read-only directories; callers
// keep the manifest in memory then.
func writeManifest(path string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path+ManifestSuffix, data)
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// manifests caches manifests of files whose sidecar cannot be written (read-only directories)
// and serialises their computation, so that concurrent peers asking for one model hash it once.
type manifests struct {
	mu      sync.Mutex
	byPath  map[string]*Manifest
	working map[string]*sync.Mutex
}

// get returns the manifest of path: the sidecar when current, else computed, and stored as a
// sidecar when writable (else kept in memory). A recomputed file with an unchanged hash keeps
// the origin its old sidecar recorded.
func (ms *manifests) get(path string, writable bool) (*Manifest, error) {
	ms.mu.Lock()
	if ms.byPath == nil {
		ms.byPath, ms.working = map[string]*Manifest{}, map[string]*sync.Mutex{}
	}
	lock, ok := ms.working[path]
	if !ok {
		lock = &sync.Mutex{}
		ms.working[path] = lock
	}
	ms.mu.Unlock()
	lock.Lock()
	defer lock.Unlock()

	if m, err := ReadManifest(path); err == nil {
		return m, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	ms.mu.Lock()
	m, ok := ms.byPath[path]
	ms.mu.Unlock()
	if ok && m.Size == st.Size() && m.ModTimeNS == st.ModTime().UnixNano() {
		return m, nil
	}
	m, err = ComputeManifest(path)
	if err != nil {
		return nil, err
	}
	if old, err := readManifestAnyVersion(path); err == nil && old.SHA256 == m.SHA256 {
		m.Origin, m.Commit, m.Verified = old.Origin, old.Commit, old.Verified
	}
	if !writable || writeManifest(path, m) != nil {
		ms.mu.Lock()
		ms.byPath[path] = m
		ms.mu.Unlock()
	}
	return m, nil
}

// put records a manifest made while writing path (pull, stage fetch, import).
func (ms *manifests) put(path string, m *Manifest) error {
	ms.mu.Lock()
	if ms.byPath == nil {
		ms.byPath, ms.working = map[string]*Manifest{}, map[string]*sync.Mutex{}
	}
	delete(ms.byPath, path)
	ms.mu.Unlock()
	if err := writeManifest(path, m); err != nil {
		ms.mu.Lock()
		ms.byPath[path] = m
		ms.mu.Unlock()
		return err
	}
	return nil
}

func readManifestAnyVersion(path string) (*Manifest, error) {
	data, err := os.ReadFile(path + ManifestSuffix)
	if err != nil {
		return nil, err
	}
	var m Manifest
	return &m, json.Unmarshal(data, &m)
}
