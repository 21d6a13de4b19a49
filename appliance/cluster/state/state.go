// Package state is the cluster's replicated control state: desired model instances with their
// placements and status, API keys and cluster settings. It is a raft FSM: the leader proposes
// commands, every master applies them in log order, and snapshots carry the whole state.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Instance statuses.
const (
	// StatusPlaced: the leader wrote a placement that fits the live nodes.
	StatusPlaced = "placed"
	// StatusDegraded: a node of the placement is gone and no new placement fits (yet).
	StatusDegraded = "degraded"
)

// Instance is one desired model instance and where it runs.
type Instance struct {
	ID       string    `json:"id"`
	Model    string    `json:"model"`
	Status   string    `json:"status"`
	Stages   []Stage   `json:"stages"`
	MinNodes int       `json:"min_nodes"`
	Nodes    []string  `json:"nodes,omitempty"` // allowed nodes; empty means any worker
	Context  int       `json:"context"`
	Reason   string    `json:"reason,omitempty"` // why the status last changed
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	// Placements counts how often the instance was (re)placed; 1 after creation.
	Placements int `json:"placements"`
	// PredictedTokenMs is the planner's predicted time per token of the current placement.
	PredictedTokenMs float64 `json:"predicted_token_ms,omitempty"`
	// TensorParallel is the size of the node groups that share every stage's layers (tensor
	// parallelism); 0 or 1 means each stage runs on one node.
	TensorParallel int `json:"tensor_parallel,omitempty"`
}

// Stage is one pipeline stage: a node runs layers [Layers[0], Layers[1]).
type Stage struct {
	Node     string `json:"node"`
	NodeName string `json:"node_name,omitempty"`
	Layers   [2]int `json:"layers"`
	// MemoryBytes is what the stage needs on its node (weights and KV cache); the planner
	// subtracts it from the node's budget when placing other instances.
	MemoryBytes uint64 `json:"memory_bytes"`
	// Shards are the other nodes of a tensor-parallel stage: shard i+1 of the stage's layers
	// runs on Shards[i], shard 0 on Node, which is the stage as the pipeline sees it. Each holds
	// MemoryBytes.
	Shards []Shard `json:"shards,omitempty"`
}

// Shard is a node that holds a share of a tensor-parallel stage.
type Shard struct {
	Node     string `json:"node"`
	NodeName string `json:"node_name,omitempty"`
}

// Nodes lists the stage's nodes, shard 0 first.
func (s *Stage) Nodes() []string {
	out := []string{s.Node}
	for _, sh := range s.Shards {
		out = append(out, sh.Node)
	}
	return out
}

// Describe names the stage's nodes (shard 0 first, joined by "+") and its layers, as
// "a+b[0,16)"; a node without a name goes by the start of its ID.
func (s *Stage) Describe() string {
	short := func(name, id string) string {
		if name != "" {
			return name
		}
		return id[:min(8, len(id))]
	}
	names := []string{short(s.NodeName, s.Node)}
	for _, sh := range s.Shards {
		names = append(names, short(sh.NodeName, sh.Node))
	}
	return fmt.Sprintf("%s[%d,%d)", strings.Join(names, "+"), s.Layers[0], s.Layers[1])
}

// HasNode reports whether a stage of the instance, or a shard of one, runs on node.
func (in *Instance) HasNode(node string) bool {
	return slices.ContainsFunc(in.Stages, func(s Stage) bool { return slices.Contains(s.Nodes(), node) })
}

// APIKey is a bearer key known by its hash only.
type APIKey struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// State is the whole replicated state.
type State struct {
	Instances map[string]*Instance `json:"instances"`
	APIKeys   map[string]*APIKey   `json:"api_keys"`
	Settings  map[string]string    `json:"settings"`
}

func newState() State {
	return State{Instances: map[string]*Instance{}, APIKeys: map[string]*APIKey{}, Settings: map[string]string{}}
}

// Command operations.
const (
	OpPutInstance    = "put_instance"
	OpDeleteInstance = "delete_instance"
	OpPutAPIKey      = "put_api_key"
	OpDeleteAPIKey   = "delete_api_key"
	OpSetSetting     = "set_setting"
)

// Command is one log entry.
type Command struct {
	Op       string    `json:"op"`
	Instance *Instance `json:"instance,omitempty"`
	APIKey   *APIKey   `json:"api_key,omitempty"`
	ID       string    `json:"id,omitempty"`
	Key      string    `json:"key,omitempty"`
	Value    string    `json:"value,omitempty"`
	// IfPlacements makes a put_instance conditional: it applies only while the stored instance
	// has this many placements, so that a stale leader decision cannot overwrite a newer one.
	IfPlacements *int `json:"if_placements,omitempty"`
}

// Encode serialises a command for raft.Apply.
func (c Command) Encode() ([]byte, error) { return json.Marshal(c) }

// ErrNotFound is returned for commands on instances or keys that do not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a conditional update lost a race.
var ErrConflict = errors.New("conflict: the instance changed meanwhile")

// FSM applies commands. It is safe for concurrent readers while raft applies.
type FSM struct {
	mu     sync.RWMutex
	st     State
	notify func()
}

// NewFSM returns an empty state machine. notify, if set, is called after every change (outside
// the lock) so that watchers such as the event stream can react.
func NewFSM(notify func()) *FSM { return &FSM{st: newState(), notify: notify} }

// Apply implements raft.FSM. The returned value is nil or an error.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c Command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("decode command at index %d: %w", l.Index, err)
	}
	err := f.apply(c, l.Index)
	if err == nil && f.notify != nil {
		f.notify()
	}
	return err
}

// ApplyCommand applies a command directly (tests and tools without raft).
func (f *FSM) ApplyCommand(c Command) error {
	data, err := c.Encode()
	if err != nil {
		return err
	}
	if res := f.Apply(&raft.Log{Type: raft.LogCommand, Data: data}); res != nil {
		return res.(error)
	}
	return nil
}

func (f *FSM) apply(c Command, index uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c.Op {
	case OpPutInstance:
		in := c.Instance
		if in == nil || in.ID == "" {
			return errors.New("put_instance without an instance ID")
		}
		if c.IfPlacements != nil {
			cur, ok := f.st.Instances[in.ID]
			if !ok {
				return fmt.Errorf("instance %s: %w", in.ID, ErrNotFound)
			}
			if cur.Placements != *c.IfPlacements {
				return fmt.Errorf("instance %s has %d placements, update expected %d: %w", in.ID, cur.Placements, *c.IfPlacements, ErrConflict)
			}
		}
		cp := *in
		cp.Stages = slices.Clone(in.Stages)
		cp.Nodes = slices.Clone(in.Nodes)
		f.st.Instances[in.ID] = &cp
	case OpDeleteInstance:
		if _, ok := f.st.Instances[c.ID]; !ok {
			return fmt.Errorf("instance %s: %w", c.ID, ErrNotFound)
		}
		delete(f.st.Instances, c.ID)
	case OpPutAPIKey:
		if c.APIKey == nil || c.APIKey.ID == "" || len(c.APIKey.SHA256) != 64 {
			return errors.New("put_api_key needs an ID and a 64-hex SHA-256")
		}
		k := *c.APIKey
		f.st.APIKeys[k.ID] = &k
	case OpDeleteAPIKey:
		if _, ok := f.st.APIKeys[c.ID]; !ok {
			return fmt.Errorf("api key %s: %w", c.ID, ErrNotFound)
		}
		delete(f.st.APIKeys, c.ID)
	case OpSetSetting:
		if c.Key == "" {
			return errors.New("set_setting without a key")
		}
		if c.Value == "" {
			delete(f.st.Settings, c.Key)
		} else {
			f.st.Settings[c.Key] = c.Value
		}
	default:
		return fmt.Errorf("unknown command %q", c.Op)
	}
	return nil
}

// Instances returns copies of all instances, ordered by creation time then ID.
func (f *FSM) Instances() []Instance {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Instance, 0, len(f.st.Instances))
	for _, in := range f.st.Instances {
		cp := *in
		cp.Stages = slices.Clone(in.Stages)
		cp.Nodes = slices.Clone(in.Nodes)
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Instance returns a copy of one instance.
func (f *FSM) Instance(id string) (Instance, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	in, ok := f.st.Instances[id]
	if !ok {
		return Instance{}, false
	}
	cp := *in
	cp.Stages = slices.Clone(in.Stages)
	cp.Nodes = slices.Clone(in.Nodes)
	return cp, true
}

// APIKeys returns the stored keys, ordered by ID.
func (f *FSM) APIKeys() []APIKey {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]APIKey, 0, len(f.st.APIKeys))
	for _, id := range slices.Sorted(maps.Keys(f.st.APIKeys)) {
		out = append(out, *f.st.APIKeys[id])
	}
	return out
}

// Setting returns one cluster setting.
func (f *FSM) Setting(key string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.st.Settings[key]
	return v, ok
}

// Snapshot implements raft.FSM: it serialises the state under the read lock so that Persist
// can write it while new entries are applied.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	data, err := json.Marshal(f.st)
	if err != nil {
		return nil, fmt.Errorf("encode state snapshot: %w", err)
	}
	return snapshot(data), nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st := newState()
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("decode state snapshot: %w", err)
	}
	if st.Instances == nil {
		st.Instances = map[string]*Instance{}
	}
	if st.APIKeys == nil {
		st.APIKeys = map[string]*APIKey{}
	}
	if st.Settings == nil {
		st.Settings = map[string]string{}
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	if f.notify != nil {
		f.notify()
	}
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write state snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() {}
