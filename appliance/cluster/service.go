package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/exo-nix/exo/appliance/cluster/membership"
	"github.com/exo-nix/exo/appliance/cluster/pki"
	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/config"
	"github.com/exo-nix/exo/appliance/placement"
)

// stageOverhead is the memory reserved per stage beyond weights and KV cache (compute
// buffers, activations of a batch).
const stageOverhead = 16 << 20

// NodeRef names a node.
type NodeRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// MemoryInfo are a node's memory figures in bytes.
type MemoryInfo struct {
	Total     uint64 `json:"total"`
	Available uint64 `json:"available"`
	// Offered is what the node gives to models (node.memory, else its available memory).
	Offered uint64 `json:"offered"`
	// Reserved is what placed stages hold of it (known on masters).
	Reserved uint64 `json:"reserved"`
}

// NodeInfo is one node as GET /api/v1/nodes shows it.
type NodeInfo struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Roles        []string   `json:"roles"`
	Status       string     `json:"status"`
	Leader       bool       `json:"leader"`
	Self         bool       `json:"self"`
	Addr         string     `json:"addr"`
	API          string     `json:"api,omitempty"`
	Transport    string     `json:"transport,omitempty"`
	Raft         string     `json:"raft,omitempty"`
	Memory       MemoryInfo `json:"memory"`
	CPUs         int        `json:"cpus"`
	Accelerators string     `json:"accelerators,omitempty"`
	// SpeedGBs is the measured weight streaming speed; 0 until measured.
	SpeedGBs float64  `json:"speed_gbs"`
	Models   []string `json:"models,omitempty"`
	// TransportPaths are further addresses of the transport (multipath), host:port.
	TransportPaths []string `json:"transport_paths,omitempty"`
}

// RaftInfo is the local raft view of a master.
type RaftInfo struct {
	State       string   `json:"state"`
	Term        uint64   `json:"term"`
	LastIndex   uint64   `json:"last_index"`
	CommitIndex uint64   `json:"commit_index"`
	Voters      []string `json:"voters"`
	NonVoters   []string `json:"non_voters,omitempty"`
}

// ClusterInfo is GET /api/v1/cluster.
type ClusterInfo struct {
	ID      string    `json:"id"` // CA fingerprint
	Phase   string    `json:"phase"`
	Detail  string    `json:"detail,omitempty"`
	Self    NodeRef   `json:"self"`
	Roles   []string  `json:"roles"`
	Leader  *NodeRef  `json:"leader"`
	Members int       `json:"members"`
	Alive   int       `json:"alive"`
	Masters int       `json:"masters"`
	Raft    *RaftInfo `json:"raft,omitempty"`
	// Instances is the number of desired instances (-1 when no master answered).
	Instances int `json:"instances"`
}

// InstanceRequest creates an instance.
type InstanceRequest struct {
	Model    string   `json:"model"`
	MinNodes int      `json:"min_nodes,omitempty"`
	Nodes    []string `json:"nodes,omitempty"`
	Context  int      `json:"context,omitempty"`
	// TensorParallel > 1 runs every stage on a group of that many nodes, each holding a share
	// of the stage's matrices.
	TensorParallel int `json:"tensor_parallel,omitempty"`
}

// requestOf is the request an instance was created with, for placing it again.
func requestOf(in state.Instance) InstanceRequest {
	return InstanceRequest{Model: in.Model, MinNodes: in.MinNodes, Nodes: in.Nodes, Context: in.Context, TensorParallel: in.TensorParallel}
}

func (r InstanceRequest) validate() error {
	switch {
	case r.Model == "":
		return errorf(http.StatusBadRequest, "model is required")
	case r.MinNodes < 0 || r.MinNodes > 256:
		return errorf(http.StatusBadRequest, "min_nodes %d out of range 0-256", r.MinNodes)
	case r.Context < 0 || r.Context > 1<<24:
		return errorf(http.StatusBadRequest, "context %d out of range 0-16777216", r.Context)
	case r.TensorParallel < 0 || r.TensorParallel > placement.MaxTensorParallel:
		return errorf(http.StatusBadRequest, "tensor_parallel %d out of range 0-%d", r.TensorParallel, placement.MaxTensorParallel)
	case slices.Contains(r.Nodes, ""):
		return errorf(http.StatusBadRequest, "nodes holds an empty name")
	}
	return validModelID(r.Model)
}

// PlacementPreview is GET /api/v1/placement: what creating the instance would do now.
type PlacementPreview struct {
	Model    string `json:"model"`
	Context  int    `json:"context"`
	MinNodes int    `json:"min_nodes"`
	// TensorParallel is the requested group size of every stage (0: one node a stage).
	TensorParallel int             `json:"tensor_parallel,omitempty"`
	Plan           *placement.Plan `json:"plan"`
	// Baseline is exo's memory-proportional placement on the same nodes, for comparison; it
	// ignores the KV cache, so it may not fit.
	Baseline         *placement.Plan `json:"baseline,omitempty"`
	BaselineFits     bool            `json:"baseline_fits"`
	ModelWeightBytes uint64          `json:"model_weight_bytes"`
	// Links are the figures the plan's hops were predicted from.
	Links []LinkView `json:"links"`
}

// TokenInfo is a freshly issued join token.
type TokenInfo struct {
	Token     string    `json:"token"`
	Expires   time.Time `json:"expires"`
	ClusterID string    `json:"cluster_id"`
	// Role is the most privileged role the token admits: api, worker (also api) or master (any).
	Role string `json:"role"`
}

// RebalanceResult lists instances whose placement changed.
type RebalanceResult struct {
	Moved     []string         `json:"moved"`
	Instances []state.Instance `json:"instances"`
}

// Status describes the cluster from this node's point of view.
func (n *Node) Status(ctx context.Context) (*ClusterInfo, error) {
	phase, detail := n.currentPhase()
	info := &ClusterInfo{Phase: phase, Detail: detail, Self: NodeRef{ID: n.id.ID, Name: n.opt.Name}, Roles: n.opt.Roles, Instances: -1}
	if c := n.credentials(); c != nil {
		info.ID = c.CA.Fingerprint()
	}
	if !n.live() {
		return info, nil
	}
	nodes := n.nodeInfos()
	for _, ni := range nodes {
		info.Members++
		if ni.Status == membership.StatusAlive || ni.Status == membership.StatusSuspect {
			info.Alive++
			if slices.Contains(ni.Roles, config.RoleMaster) {
				info.Masters++
			}
		}
		if ni.Leader {
			info.Leader = &NodeRef{ID: ni.ID, Name: ni.Name}
		}
	}
	if n.raft != nil {
		info.Raft = n.raftInfo()
		info.Instances = len(n.fsm.Instances())
	} else if list, err := n.Instances(ctx); err == nil {
		info.Instances = len(list)
	}
	return info, nil
}

func (n *Node) raftInfo() *RaftInfo {
	r := n.raft.r
	st := r.Stats()
	ri := &RaftInfo{State: r.State().String(), LastIndex: r.LastIndex(), CommitIndex: r.AppliedIndex()}
	ri.Term, _ = strconv.ParseUint(st["term"], 10, 64)
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				ri.Voters = append(ri.Voters, string(s.ID))
			} else {
				ri.NonVoters = append(ri.NonVoters, string(s.ID))
			}
		}
	}
	return ri
}

// Nodes lists every member this node knows, itself included.
func (n *Node) Nodes(context.Context) ([]NodeInfo, error) {
	if !n.live() {
		return nil, ErrNotInCluster
	}
	return n.nodeInfos(), nil
}

func (n *Node) nodeInfos() []NodeInfo {
	leaderID := ""
	if n.raft != nil {
		_, id := n.raft.r.LeaderWithID()
		leaderID = string(id)
	}
	reserved := map[string]uint64{}
	if n.fsm != nil {
		for _, in := range n.fsm.Instances() {
			for _, s := range in.Stages {
				for _, id := range s.Nodes() {
					reserved[id] += s.MemoryBytes
				}
			}
		}
	}
	var out []NodeInfo
	for _, m := range n.members.Members() {
		t := m.Tags
		u := func(k string) uint64 { v, _ := strconv.ParseUint(t[k], 10, 64); return v }
		cpus, _ := strconv.Atoi(t[tagCPUs])
		speed, _ := strconv.ParseFloat(t[tagSpeed], 64)
		ni := NodeInfo{
			ID: m.ID, Name: t[tagName], Roles: splitList(t[tagRoles]), Status: m.Status, Self: m.ID == n.id.ID,
			Addr: m.Addr, API: t[tagAPI], Transport: t[tagTransport], TransportPaths: pathAddrs(t[tagTransportPaths], t[tagTransport]), Raft: t[tagRaft],
			Memory: MemoryInfo{Total: u(tagMemTotal), Available: u(tagMemAvail), Offered: u(tagMemOffer), Reserved: reserved[m.ID]},
			CPUs:   cpus, Accelerators: t[tagAccel], SpeedGBs: speed, Models: splitList(t[tagModels]),
		}
		alive := m.Status == membership.StatusAlive || m.Status == membership.StatusSuspect
		if leaderID != "" {
			ni.Leader = m.ID == leaderID
		} else {
			ni.Leader = alive && t[tagLeader] == "1"
		}
		out = append(out, ni)
	}
	return out
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Instances lists the desired instances.
func (n *Node) Instances(ctx context.Context) ([]state.Instance, error) {
	var out []state.Instance
	err := n.do(ctx, "instances.list", nil, &out)
	return out, err
}

// CreateInstance places and records a new instance.
func (n *Node) CreateInstance(ctx context.Context, req InstanceRequest) (state.Instance, error) {
	var out state.Instance
	if err := req.validate(); err != nil {
		return out, classify(err)
	}
	err := n.do(ctx, "instances.create", req, &out)
	return out, err
}

// DeleteInstance removes an instance.
func (n *Node) DeleteInstance(ctx context.Context, id string) error {
	return n.do(ctx, "instances.delete", map[string]string{"id": id}, nil)
}

// Rebalance re-plans one instance (or all with id "") on the current nodes.
func (n *Node) Rebalance(ctx context.Context, id string) (*RebalanceResult, error) {
	var out RebalanceResult
	err := n.do(ctx, "instances.rebalance", map[string]string{"id": id}, &out)
	return &out, err
}

// Placement previews a placement without creating anything.
func (n *Node) Placement(ctx context.Context, req InstanceRequest) (*PlacementPreview, error) {
	if err := req.validate(); err != nil {
		return nil, classify(err)
	}
	var out PlacementPreview
	err := n.do(ctx, "placement.preview", req, &out)
	return &out, err
}

// CreateToken issues a join token valid for ttl that admits nodes up to role (api, worker or
// master; empty means worker, the least privilege that still adds compute).
func (n *Node) CreateToken(ctx context.Context, ttl time.Duration, role string) (*TokenInfo, error) {
	if ttl <= 0 || ttl > 366*24*time.Hour {
		return nil, errorf(http.StatusBadRequest, "ttl %s out of range (0, 8784h]", ttl)
	}
	if role == "" {
		role = config.RoleWorker
	}
	if _, err := pki.ParseTokenRole(role); err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	var out TokenInfo
	err := n.do(ctx, "token.issue", map[string]string{"ttl": ttl.String(), "role": role}, &out)
	return &out, err
}

// do runs a control operation: on a master through the local dispatcher (which forwards to
// the leader where needed), elsewhere by RPC to a master.
func (n *Node) do(ctx context.Context, method string, body, out any) error {
	if !n.live() {
		return ErrNotInCluster
	}
	if !n.master {
		return classify(n.callMasters(ctx, method, body, out))
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	res, err := n.dispatch(ctx, rpcRequest{Method: method, Body: raw})
	if err != nil {
		return classify(err)
	}
	if out == nil {
		return nil
	}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// dispatch runs an RPC method on this master.
func (n *Node) dispatch(ctx context.Context, req rpcRequest) (any, error) {
	if !n.live() || n.raft == nil {
		return nil, errorf(http.StatusServiceUnavailable, "node %s is not a master", n.opt.Name)
	}
	var ids struct {
		ID   string `json:"id"`
		TTL  string `json:"ttl"`
		Role string `json:"role"`
	}
	var ir InstanceRequest
	switch req.Method {
	case "instances.create", "placement.preview":
		if err := json.Unmarshal(req.Body, &ir); err != nil {
			return nil, errorf(http.StatusBadRequest, "malformed request: %v", err)
		}
		if err := ir.validate(); err != nil {
			return nil, err
		}
	case "instances.delete", "instances.rebalance", "token.issue":
		if len(req.Body) > 0 && string(req.Body) != "null" {
			if err := json.Unmarshal(req.Body, &ids); err != nil {
				return nil, errorf(http.StatusBadRequest, "malformed request: %v", err)
			}
		}
	}
	switch req.Method {
	case "instances.list":
		// Read on the leader, so that a write acknowledged a moment ago is seen; a follower's
		// copy may lag by a few milliseconds. Without a leader, the local copy is the best answer.
		if n.raft.r.State() != raft.Leader && !req.Forwarded {
			if out, err := n.onLeader(ctx, req, func() (any, error) { return n.fsm.Instances(), nil }); err == nil {
				return out, nil
			}
		}
		return n.fsm.Instances(), nil
	case "placement.preview":
		return n.preview(ir)
	case "token.issue":
		creds := n.credentials()
		ttl, err := time.ParseDuration(ids.TTL)
		if err != nil || ttl <= 0 {
			return nil, errorf(http.StatusBadRequest, "ttl %q is not a positive duration", ids.TTL)
		}
		if ids.Role == "" {
			ids.Role = config.RoleWorker
		}
		role, err := pki.ParseTokenRole(ids.Role)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "%v", err)
		}
		if caller, remote := ctx.Value(rpcCallerKey{}).(rpcCaller); remote {
			// A member asking over RPC gets no more than it was admitted with; otherwise a
			// worker token could join an API node that then mints master tokens.
			if most, ok := pki.MaxTokenRole(caller.roles); !ok || role > most {
				n.log.Warn("join token refused", "caller", caller.id, "caller_roles", caller.roles, "role", role.String())
				return nil, errorf(http.StatusForbidden, "node %s (roles %s) may not issue a %s token; ask a master's API for it",
					caller.id, strings.Join(caller.roles, ","), role)
			}
		}
		s, tok, err := creds.CA.IssueToken(ttl, role)
		if err != nil {
			return nil, err
		}
		n.log.Info("join token issued", "token_id", tok.IDHex(), "role", role.String(), "expires", tok.Expires)
		return TokenInfo{Token: s, Expires: tok.Expires, ClusterID: creds.CA.Fingerprint(), Role: role.String()}, nil
	case "instances.create":
		return n.onLeader(ctx, req, func() (any, error) { return n.leaderCreate(ir) })
	case "instances.delete":
		return n.onLeader(ctx, req, func() (any, error) { return map[string]string{"deleted": ids.ID}, n.leaderDelete(ids.ID) })
	case "instances.rebalance":
		return n.onLeader(ctx, req, func() (any, error) { return n.leaderRebalance(ids.ID) })
	}
	return nil, errorf(http.StatusNotFound, "unknown control method %q", req.Method)
}

// onLeader runs fn here when this master leads, else passes the call to the leader once.
func (n *Node) onLeader(ctx context.Context, req rpcRequest, fn func() (any, error)) (any, error) {
	if n.raft.r.State() == raft.Leader {
		return fn()
	}
	addr, _ := n.raft.r.LeaderWithID()
	if req.Forwarded || addr == "" {
		return nil, errNoLeader
	}
	var out json.RawMessage
	if err := n.call(ctx, string(addr), req.Method, req.Body, &out, true); err != nil {
		var ue *unreachableError
		if errors.As(err, &ue) {
			return nil, errNoLeader
		}
		return nil, err
	}
	return out, nil
}

// apply writes a command through raft; only the leader calls it.
func (n *Node) apply(c state.Command) error {
	data, err := c.Encode()
	if err != nil {
		return err
	}
	f := n.raft.r.Apply(data, 5*time.Second)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return errNoLeader
		}
		return fmt.Errorf("raft apply %s: %w", c.Op, err)
	}
	if res, ok := f.Response().(error); ok && res != nil {
		return res
	}
	return nil
}

// plannerNodes are the live workers with the memory they can still give, after the stages of
// other instances (all but exclude).
func (n *Node) plannerNodes(model, exclude string) []placement.Node {
	reserved := map[string]uint64{}
	for _, in := range n.fsm.Instances() {
		if in.ID == exclude {
			continue
		}
		for _, s := range in.Stages {
			for _, id := range s.Nodes() {
				reserved[id] += s.MemoryBytes
			}
		}
	}
	var out []placement.Node
	for _, m := range n.members.Members() {
		if (m.Status != membership.StatusAlive && m.Status != membership.StatusSuspect) || !hasRole(m.Tags, config.RoleWorker) {
			continue
		}
		offer, _ := strconv.ParseUint(m.Tags[tagMemOffer], 10, 64)
		mem := uint64(0)
		if offer > reserved[m.ID] {
			mem = offer - reserved[m.ID]
		}
		speed, _ := strconv.ParseFloat(m.Tags[tagSpeed], 64)
		out = append(out, placement.Node{ID: m.ID, Name: m.Tags[tagName], Memory: mem, Speed: speed * 1e9,
			HasModel: slices.Contains(splitList(m.Tags[tagModels]), model)})
	}
	return out
}

// links are the workers' links as the nodes' transports measured them (their tagLinks), with
// gossip's network coordinates where no probe did.
func (n *Node) links(nodes []placement.Node) placement.Links {
	ids := make([]string, len(nodes))
	for i, nd := range nodes {
		ids[i] = nd.ID
	}
	probes := map[string]map[string]placement.Probe{}
	for _, m := range n.members.Members() {
		if tag := m.Tags[tagLinks]; tag != "" && slices.Contains(ids, m.ID) {
			probes[m.ID] = decodeLinks(tag, ids)
		}
	}
	return placement.BuildLinks(ids, probes, n.members.Distance)
}

func (n *Node) plan(req InstanceRequest, exclude string) (*placement.Plan, placement.Model, []placement.Node, placement.Links, error) {
	path, err := resolveModel(n.opt.ModelDirs, req.Model)
	if err != nil {
		return nil, placement.Model{}, nil, nil, err
	}
	info, err := n.models.get(path)
	if err != nil {
		return nil, placement.Model{}, nil, nil, err
	}
	info.Name = req.Model
	nodes := n.plannerNodes(req.Model, exclude)
	links := n.links(nodes)
	p, err := placement.Place(nodes, links, placement.Request{Model: info, Context: req.Context, MinNodes: req.MinNodes, Nodes: req.Nodes, StageOverhead: stageOverhead, TensorParallel: req.TensorParallel})
	return p, info, nodes, links, err
}

func (n *Node) preview(req InstanceRequest) (*PlacementPreview, error) {
	p, info, nodes, links, err := n.plan(req, "")
	if err != nil {
		return nil, err
	}
	out := &PlacementPreview{Model: req.Model, Context: p.Context, MinNodes: req.MinNodes, TensorParallel: req.TensorParallel, Plan: p, ModelWeightBytes: info.WeightBytes(),
		Links: linkViews(nodes, links)}
	if b, err := placement.Baseline(nodes, links, placement.Request{Model: info, Context: req.Context, MinNodes: req.MinNodes, Nodes: req.Nodes, StageOverhead: stageOverhead, TensorParallel: req.TensorParallel}); err == nil {
		out.Baseline = b
		out.BaselineFits = true
		for _, s := range b.Stages {
			for _, nd := range nodes {
				if nd.ID == s.Node && s.MemoryBytes > nd.Memory {
					out.BaselineFits = false
				}
			}
		}
	}
	return out, nil
}

func stagesOf(p *placement.Plan) []state.Stage {
	out := make([]state.Stage, len(p.Stages))
	for i, s := range p.Stages {
		out[i] = state.Stage{Node: s.Node, NodeName: s.Name, Layers: [2]int{s.Start, s.End}, MemoryBytes: s.MemoryBytes}
		for _, m := range s.Shards {
			out[i].Shards = append(out[i].Shards, state.Shard{Node: m.Node, NodeName: m.Name})
		}
	}
	return out
}

func newInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "i-" + hex.EncodeToString(b[:])
}

func (n *Node) leaderCreate(req InstanceRequest) (state.Instance, error) {
	n.leaderOps.Lock()
	defer n.leaderOps.Unlock()
	p, _, _, _, err := n.plan(req, "")
	if err != nil {
		return state.Instance{}, err
	}
	now := time.Now().UTC()
	in := state.Instance{ID: newInstanceID(), Model: req.Model, Status: state.StatusPlaced, Stages: stagesOf(p),
		MinNodes: req.MinNodes, Nodes: req.Nodes, Context: p.Context, Reason: "placed at creation", TensorParallel: req.TensorParallel,
		Created: now, Updated: now, Placements: 1, PredictedTokenMs: p.TokenMs}
	if err := n.apply(state.Command{Op: state.OpPutInstance, Instance: &in}); err != nil {
		return state.Instance{}, err
	}
	n.log.Info("instance created", "instance", in.ID, "model", in.Model, "stages", describeStages(in.Stages), "predicted_token_ms", round3(p.TokenMs))
	return in, nil
}

func (n *Node) leaderDelete(id string) error {
	n.leaderOps.Lock()
	defer n.leaderOps.Unlock()
	if err := n.apply(state.Command{Op: state.OpDeleteInstance, ID: id}); err != nil {
		return err
	}
	n.log.Info("instance deleted", "instance", id)
	return nil
}

func (n *Node) leaderRebalance(id string) (*RebalanceResult, error) {
	n.leaderOps.Lock()
	defer n.leaderOps.Unlock()
	res := &RebalanceResult{Moved: []string{}}
	found := false
	for _, in := range n.fsm.Instances() {
		if id != "" && in.ID != id {
			continue
		}
		found = true
		p, info, nodes, links, err := n.plan(requestOf(in), in.ID)
		if err != nil {
			n.log.Warn("rebalance: instance cannot be re-planned; left as is", "instance", in.ID, "err", err)
			continue
		}
		stages := stagesOf(p)
		if sameStages(stages, in.Stages) {
			continue
		}
		// Moving costs a reload; do it only for a clear gain, not for noise in the link
		// estimates.
		if cur, err := evaluateStages(in, info, nodes, links); err == nil && p.TokenMs > cur.TokenMs*(1-rebalanceGain) {
			continue
		}
		if err := n.replace(in, stages, p.TokenMs, "rebalanced on request"); err != nil {
			return nil, err
		}
		res.Moved = append(res.Moved, in.ID)
	}
	if id != "" && !found {
		return nil, fmt.Errorf("instance %s: %w", id, state.ErrNotFound)
	}
	res.Instances = n.fsm.Instances()
	return res, nil
}

// replace writes a new placement for an instance, conditional on nobody having re-placed it
// meanwhile.
func (n *Node) replace(in state.Instance, stages []state.Stage, tokenMs float64, reason string) error {
	cur := in.Placements
	next := in
	next.Stages = stages
	next.Status = state.StatusPlaced
	next.Reason = reason
	next.Updated = time.Now().UTC()
	next.Placements = cur + 1
	next.PredictedTokenMs = tokenMs
	if err := n.apply(state.Command{Op: state.OpPutInstance, Instance: &next, IfPlacements: &cur}); err != nil {
		return err
	}
	n.log.Info("instance placed", "instance", in.ID, "model", in.Model, "reason", reason, "stages", describeStages(stages), "predicted_token_ms", round3(tokenMs))
	return nil
}

// rebalanceGain is the fraction of predicted time per token a new placement must save before
// rebalance moves an instance.
const rebalanceGain = 0.05

// evaluateStages predicts an instance's current placement on the current nodes; it fails when
// a node is gone or no longer has the memory.
func evaluateStages(in state.Instance, info placement.Model, nodes []placement.Node, links placement.Links) (*placement.Plan, error) {
	var groups [][]placement.Node
	var ranges [][2]int
	for _, s := range in.Stages {
		var g []placement.Node
		for _, id := range s.Nodes() {
			i := slices.IndexFunc(nodes, func(nd placement.Node) bool { return nd.ID == id })
			if i < 0 {
				return nil, fmt.Errorf("node %s is not a live worker", id)
			}
			g = append(g, nodes[i])
		}
		groups = append(groups, g)
		ranges = append(ranges, s.Layers)
	}
	req := placement.Request{Model: info, Context: in.Context, MinNodes: in.MinNodes, StageOverhead: stageOverhead, TensorParallel: in.TensorParallel}
	if in.TensorParallel > 1 {
		return placement.EvaluateGroups(groups, links, req, ranges)
	}
	order := make([]placement.Node, len(groups))
	for i, g := range groups {
		order[i] = g[0]
	}
	return placement.Evaluate(order, links, req, ranges)
}

func sameStages(a, b []state.Stage) bool {
	return slices.EqualFunc(a, b, func(x, y state.Stage) bool {
		return x.Layers == y.Layers && slices.Equal(x.Nodes(), y.Nodes())
	})
}

func describeStages(ss []state.Stage) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = s.Describe()
	}
	return strings.Join(parts, " ")
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// reconcile runs on the leader after membership changes: an instance that lost a node is
// marked degraded and re-placed on the live workers when it fits. Joining nodes move nothing.
func (n *Node) reconcile() {
	n.leaderOps.Lock()
	defer n.leaderOps.Unlock()
	status := map[string]string{}
	for _, m := range n.members.Members() {
		status[m.ID] = m.Status
	}
	for _, in := range n.fsm.Instances() {
		var lost []string
		for _, s := range in.Stages {
			names := append([]string{cmp.Or(s.NodeName, s.Node)}, make([]string, len(s.Shards))...)
			for j, sh := range s.Shards {
				names[j+1] = cmp.Or(sh.NodeName, sh.Node)
			}
			for j, id := range s.Nodes() {
				st := status[id]
				if st != membership.StatusAlive && st != membership.StatusSuspect {
					lost = append(lost, names[j]+" "+cmp.Or(st, "gone"))
				}
			}
		}
		if len(lost) == 0 {
			if in.Status == state.StatusDegraded {
				// Its nodes came back before a new placement fitted: keep the placement.
				if err := n.replace(in, in.Stages, in.PredictedTokenMs, "its nodes are live again"); err != nil {
					n.log.Warn("cannot restore instance", "instance", in.ID, "err", err)
				}
			}
			continue
		}
		reason := "lost node " + strings.Join(lost, ", ")
		if len(lost) > 0 && in.Status != state.StatusDegraded {
			deg := in
			deg.Status = state.StatusDegraded
			deg.Reason = reason
			deg.Updated = time.Now().UTC()
			cur := in.Placements
			if err := n.apply(state.Command{Op: state.OpPutInstance, Instance: &deg, IfPlacements: &cur}); err != nil {
				n.log.Warn("cannot mark instance degraded", "instance", in.ID, "err", err)
				continue
			}
			n.log.Warn("instance degraded", "instance", in.ID, "model", in.Model, "reason", reason)
			in = deg
		}
		p, _, _, _, err := n.plan(requestOf(in), in.ID)
		if err != nil {
			why := reason + "; cannot re-place: " + err.Error()
			if in.Reason != why {
				upd := in
				upd.Reason = why
				upd.Updated = time.Now().UTC()
				cur := in.Placements
				if aerr := n.apply(state.Command{Op: state.OpPutInstance, Instance: &upd, IfPlacements: &cur}); aerr != nil {
					n.log.Warn("cannot record re-placement failure", "instance", in.ID, "err", aerr)
				}
				n.log.Warn("instance stays degraded", "instance", in.ID, "reason", why)
			}
			continue
		}
		if err := n.replace(in, stagesOf(p), p.TokenMs, "re-placed after "+reason); err != nil {
			n.log.Warn("cannot re-place instance", "instance", in.ID, "err", err)
		}
	}
}
