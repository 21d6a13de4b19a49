// Package store knows the models on this node's disks: which GGUF files the model directories
// hold and what each one is; it pulls models from the hub, a URL or cluster peers (resumable,
// parallel, verified), fetches only the tensors of a pipeline stage, and serves its models to
// peers.
//
// A model directory given as "PATH:ro" is never written, even where the file system would
// allow it (a shared NFS export, a directory root could write anyway); pulls, imports and
// removals go to the first directory that is writable.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// Model describes one GGUF file. The ID is the file name without ".gguf".
type Model struct {
	ID            string    `json:"id"`
	Path          string    `json:"path"`
	Size          int64     `json:"size"`
	Modified      time.Time `json:"modified"`
	Arch          string    `json:"arch"`
	Name          string    `json:"name,omitempty"`
	ContextLength int       `json:"context_length"`
	Layers        int       `json:"layers"`
	Quantization  string    `json:"quantization"`
	// Stage is set for a stage file that holds only layers [First, Last) of a model.
	Stage *Stage `json:"stage,omitempty"`
	// Dir is the model directory the file was found in; ReadOnly reports that directory.
	Dir      string `json:"dir"`
	ReadOnly bool   `json:"read_only"`
}

// ErrNotFound is returned for a model id no directory holds.
var ErrNotFound = errors.New("model not found")

// Catalog lists the models of a set of directories. Headers are parsed once per file version
// (path, size, modification time), since large vocabularies make parsing cost milliseconds.
type Catalog struct {
	dirs     []string
	readOnly map[string]bool // directories marked ":ro"

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	size  int64
	mtime time.Time
	model Model
	err   error
}

// maxDepth bounds the directory walk: model directories hold files or one level of
// per-model folders, never deep trees.
const maxDepth = 3

// ReadOnlySuffix marks a model directory that exo must never write: "PATH:ro".
const ReadOnlySuffix = ":ro"

// NewCatalog returns a catalog over dirs; earlier directories win when two hold the same id.
// A directory may carry ReadOnlySuffix.
func NewCatalog(dirs []string) *Catalog {
	c := &Catalog{cache: map[string]cached{}, readOnly: map[string]bool{}}
	for _, d := range dirs {
		p, ro := strings.CutSuffix(d, ReadOnlySuffix)
		p = filepath.Clean(p)
		c.dirs = append(c.dirs, p)
		if ro {
			c.readOnly[p] = true
		}
	}
	return c
}

// Dir describes one model directory.
type Dir struct {
	Path string `json:"path"`
	// ReadOnly: marked ":ro", or the file system refuses writes.
	ReadOnly bool `json:"read_only"`
	Marked   bool `json:"marked_read_only"`
	Exists   bool `json:"exists"`
	// Free is the space left on its file system (-1 when unknown).
	Free   int64 `json:"free_bytes"`
	Models int   `json:"models"`
	Bytes  int64 `json:"bytes"`
}

// DirInfo describes the model directories and what they hold.
func (c *Catalog) DirInfo() []Dir {
	models, _ := c.List()
	out := make([]Dir, 0, len(c.dirs))
	for _, p := range c.dirs {
		d := Dir{Path: p, Marked: c.readOnly[p], Free: -1}
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			d.Exists = true
			if n, err := diskFree(p); err == nil {
				d.Free = n
			}
		}
		d.ReadOnly = c.isReadOnly(p)
		for _, m := range models {
			if m.Dir == p {
				d.Models++
				d.Bytes += m.Size
			}
		}
		out = append(out, d)
	}
	return out
}

// isReadOnly reports a directory marked ":ro", or an existing one the kernel will not let this
// process write. A directory that does not exist yet is writable if it can be created later.
func (c *Catalog) isReadOnly(dir string) bool {
	if c.readOnly[dir] {
		return true
	}
	if _, err := os.Stat(dir); err != nil {
		return false
	}
	return !accessWritable(dir)
}

// Dirs returns the model directories.
func (c *Catalog) Dirs() []string { return append([]string(nil), c.dirs...) }

// List scans the directories. Files that are not valid GGUF models are reported in problems
// and left out; a missing directory is not a problem (it is created on the first pull).
func (c *Catalog) List() (models []Model, problems []error) {
	seen := map[string]bool{}
	for _, dir := range c.dirs {
		root := filepath.Clean(dir)
		ro := c.isReadOnly(root)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if path == root && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipDir
				}
				problems = append(problems, fmt.Errorf("scan %s: %w", path, err))
				return nil
			}
			if d.IsDir() {
				if path != root && (strings.HasPrefix(d.Name(), ".") || strings.Count(strings.TrimPrefix(path, root), string(filepath.Separator)) >= maxDepth) {
					return fs.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(d.Name(), ".gguf") || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			m, err := c.describe(path)
			if err != nil {
				problems = append(problems, err)
				return nil
			}
			m.Dir, m.ReadOnly = root, ro
			if !seen[m.ID] {
				seen[m.ID] = true
				models = append(models, m)
			}
			return nil
		})
		if err != nil {
			problems = append(problems, fmt.Errorf("scan %s: %w", dir, err))
		}
	}
	sort.Slice(models, func(i, j int) bool { return models[i].ID < models[j].ID })
	return models, problems
}

// Get finds a model by id.
func (c *Catalog) Get(id string) (Model, error) {
	models, _ := c.List()
	for _, m := range models {
		if m.ID == id {
			return m, nil
		}
	}
	return Model{}, fmt.Errorf("%w: %q is in none of %s", ErrNotFound, id, strings.Join(c.dirs, ", "))
}

func (c *Catalog) describe(path string) (Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Model{}, fmt.Errorf("model %s: %w", path, err)
	}
	c.mu.Lock()
	hit, ok := c.cache[path]
	c.mu.Unlock()
	if ok && hit.size == st.Size() && hit.mtime.Equal(st.ModTime()) {
		return hit.model, hit.err
	}
	m, err := Describe(path)
	if err == nil {
		m.Size, m.Modified = st.Size(), st.ModTime()
	}
	c.mu.Lock()
	c.cache[path] = cached{size: st.Size(), mtime: st.ModTime(), model: m, err: err}
	c.mu.Unlock()
	return m, err
}

// Describe reads a GGUF file's header and summarises it.
func Describe(path string) (Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return Model{}, err
	}
	defer f.Close()
	if err := f.ValidateArch(); err != nil {
		return Model{}, fmt.Errorf("model %s: %w", path, err)
	}
	arch := f.Arch()
	m := Model{ID: strings.TrimSuffix(filepath.Base(path), ".gguf"), Path: path, Arch: arch}
	m.Name, _ = f.String("general.name")
	if n, ok := f.Uint(arch + ".context_length"); ok {
		m.ContextLength = int(n)
	}
	if n, ok := f.Uint(arch + ".block_count"); ok {
		m.Layers = int(n)
	}
	m.Quantization = quantization(f)
	if first, last, total, err := f.LayerRange(); err == nil && (first != 0 || last != total) {
		m.Stage = &Stage{First: first, Last: last}
	}
	return m, nil
}

// fileTypes are llama.cpp's general.file_type values (llama_ftype).
var fileTypes = map[uint64]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
	11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
	17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}

// quantization names the file's type as llama.cpp does, falling back to the tensor type that
// holds the most bytes when the file does not say.
func quantization(f *gguf.File) string {
	if ft, ok := f.Uint("general.file_type"); ok {
		if name, ok := fileTypes[ft]; ok {
			return name
		}
	}
	bytes := map[ggml.Type]int64{}
	for _, t := range f.Tensors {
		bytes[t.Type] += t.Size
	}
	best, bestN := "", int64(-1)
	for ty, n := range bytes {
		if n > bestN || (n == bestN && ty.String() < best) {
			best, bestN = ty.String(), n
		}
	}
	return best
}
