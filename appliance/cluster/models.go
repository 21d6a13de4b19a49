package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/placement"
)

// ErrModelNotFound says no models directory holds the model.
var ErrModelNotFound = errors.New("model not found")

// validModelID keeps model IDs to names inside a models directory.
func validModelID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\\") || id == "." || id == ".." || strings.HasPrefix(id, ".") {
		return fmt.Errorf("model id %q: want a file name without directories", id)
	}
	return nil
}

// resolveModel finds a model by ID: DIR/ID.gguf, DIR/ID (a GGUF file), or the first .gguf file
// in DIR/ID/ — in the order of the models directories.
func resolveModel(dirs []string, id string) (string, error) {
	if err := validModelID(id); err != nil {
		return "", err
	}
	for _, d := range dirs {
		for _, p := range []string{filepath.Join(d, id+".gguf"), filepath.Join(d, id)} {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p, nil
			}
		}
		if matches, _ := filepath.Glob(filepath.Join(d, id, "*.gguf")); len(matches) > 0 {
			slices.Sort(matches)
			return matches[0], nil
		}
	}
	return "", fmt.Errorf("%w: %q is in none of the models directories %v", ErrModelNotFound, id, dirs)
}

// listModels returns the IDs of the models in dirs.
func listModels(dirs []string) []string {
	var ids []string
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			switch {
			case strings.HasPrefix(name, "."):
			case e.Type().IsRegular() && strings.HasSuffix(name, ".gguf"):
				ids = append(ids, strings.TrimSuffix(name, ".gguf"))
			case e.IsDir():
				if m, _ := filepath.Glob(filepath.Join(d, name, "*.gguf")); len(m) > 0 {
					ids = append(ids, name)
				}
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// modelInfo reads what placement needs from a GGUF file's header.
func modelInfo(path string) (placement.Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return placement.Model{}, err
	}
	defer f.Close()
	arch := f.Arch()
	if arch == "" {
		return placement.Model{}, fmt.Errorf("model %s: no general.architecture", path)
	}
	key := func(k string) string { return arch + "." + k }
	blocks, ok := f.Uint(key("block_count"))
	if !ok || blocks == 0 || blocks > 4096 {
		return placement.Model{}, fmt.Errorf("model %s: %s missing or out of range", path, key("block_count"))
	}
	m := placement.Model{Name: strings.TrimSuffix(filepath.Base(path), ".gguf"), LayerBytes: make([]uint64, blocks)}
	var embd uint64
	tied := true
	for _, t := range f.Tensors {
		size := uint64(t.Size)
		switch {
		case strings.HasPrefix(t.Name, "blk."):
			rest := strings.TrimPrefix(t.Name, "blk.")
			n, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '.'), 0)])
			if err != nil || n < 0 || uint64(n) >= blocks {
				return placement.Model{}, fmt.Errorf("model %s: tensor %s is outside blocks 0..%d", path, t.Name, blocks-1)
			}
			m.LayerBytes[n] += size
		case t.Name == "token_embd.weight":
			embd = size
			m.InputBytes += size
		case t.Name == "output.weight":
			tied = false
			m.OutputBytes += size
		case strings.HasPrefix(t.Name, "output"):
			m.OutputBytes += size
		default:
			// Small shared tensors (rope frequencies): every stage maps them, the first counts them.
			m.InputBytes += size
		}
	}
	if tied {
		m.OutputBytes += embd // the last stage projects with the embedding matrix
	}
	heads, _ := f.Uint(key("attention.head_count"))
	kvHeads, ok := f.Uint(key("attention.head_count_kv"))
	if !ok {
		kvHeads = heads
	}
	width, _ := f.Uint(key("embedding_length"))
	kLen, ok := f.Uint(key("attention.key_length"))
	if !ok && heads > 0 {
		kLen = width / heads
	}
	vLen, ok := f.Uint(key("attention.value_length"))
	if !ok {
		vLen = kLen
	}
	// The KV cache is kept in F16: two bytes per element.
	m.KVBytesPerToken = kvHeads * (kLen + vLen) * 2
	if c, ok := f.Uint(key("context_length")); ok {
		m.ContextLength = int(c)
	}
	m.HiddenBytes = width * 4
	return m, nil
}

// modelCache keeps parsed model metadata by path and modification time.
type modelCache struct {
	mu      sync.Mutex
	entries map[string]cachedModel
}

type cachedModel struct {
	mod  time.Time
	size int64
	info placement.Model
}

func (c *modelCache) get(path string) (placement.Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return placement.Model{}, fmt.Errorf("%w: %s", ErrModelNotFound, path)
		}
		return placement.Model{}, err
	}
	c.mu.Lock()
	e, ok := c.entries[path]
	c.mu.Unlock()
	if ok && e.mod.Equal(st.ModTime()) && e.size == st.Size() {
		return e.info, nil
	}
	info, err := modelInfo(path)
	if err != nil {
		return placement.Model{}, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cachedModel{}
	}
	c.entries[path] = cachedModel{mod: st.ModTime(), size: st.Size(), info: info}
	c.mu.Unlock()
	return info, nil
}
