// Package cluster is a node's control plane: its identity and cluster credentials, the join
// exchange, gossip membership (serf), and on masters the raft-replicated control state with
// the leader's placement and reconciliation.
//
// The data directory holds, per node:
//
//	identity/  node ID and key (bound to machine-id)
//	cluster/   CA certificate, node certificate, gossip key; on masters the CA key and secret
//	raft/      raft log (bolt) and snapshots, masters only
//	serf/      member snapshot for rejoining after a restart
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/exo-nix/exo/appliance/cluster/discovery"
	"github.com/exo-nix/exo/appliance/cluster/identity"
	"github.com/exo-nix/exo/appliance/cluster/membership"
	"github.com/exo-nix/exo/appliance/cluster/pki"
	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/config"
)

// Options configure a Node. They come from the node's configuration.
type Options struct {
	Name          string
	Roles         []string
	DataDir       string
	GossipAddr    string
	RaftAddr      string
	APIAddr       string
	TransportAddr string
	Join          []string
	Token         string
	TokenFile     string
	// Discovery is "mdns" to announce this node on the local network and, with a token but
	// no Join address, to find the token's cluster there; "" or "none" for neither.
	Discovery string
	ModelDirs []string
	// Memory is what the node offers to models in bytes; 0 means its available memory.
	Memory      uint64
	Accelerator string
	Log         *slog.Logger
	// MachineIDPaths and MemInfoPath are for tests; nil/empty mean the system's.
	MachineIDPaths []string
	MemInfoPath    string
	// OnChange is told when membership ("members") or the replicated state ("instances")
	// changed, so that dashboards can re-read them; it must not block.
	OnChange func(kind string)
	// Links, when set, returns what the tensor transport measured of the paths to peers (by
	// node id); the figures go to the placement leader in gossip tags.
	Links func() map[string]LinkFigure
}

// OptionsFromConfig maps the node configuration onto Options.
func OptionsFromConfig(cfg config.Config, log *slog.Logger) (Options, error) {
	o := Options{
		Name: cfg.Node.Name, Roles: cfg.Roles, DataDir: cfg.DataDir, GossipAddr: cfg.Gossip.Addr, RaftAddr: cfg.Raft.Addr,
		APIAddr: cfg.API.Addr, TransportAddr: cfg.Transport.Addr, Join: cfg.Cluster.Join, Token: cfg.Cluster.Token,
		TokenFile: cfg.Cluster.TokenFile, Discovery: cfg.Cluster.Discovery, ModelDirs: cfg.Models.Dirs, Accelerator: cfg.Accelerator, Log: log,
	}
	if cfg.Node.Memory != "" {
		v, err := ParseBytes(cfg.Node.Memory)
		if err != nil || v == 0 {
			return o, &config.Error{Key: "node.memory", Source: "configuration", Value: cfg.Node.Memory, Reason: "want a positive size such as 8GiB or 512MiB"}
		}
		o.Memory = v
	}
	return o, nil
}

// Phases of a node's life in the cluster, shown in readiness details.
const (
	phaseStarting   = "starting"
	phaseJoining    = "joining"
	phaseMember     = "member"
	phaseStandalone = "standalone"
	phaseFailed     = "failed"
)

// Node is one node's control plane.
type Node struct {
	opt    Options
	log    *slog.Logger
	id     *identity.Identity
	token  string
	master bool

	credsMu sync.RWMutex
	creds   *pki.Credentials

	phase     atomic.Value // string
	detail    atomic.Value // string
	members   *membership.Membership
	raft      *raftNode
	fsm       *state.FSM
	models    modelCache
	leaderOps sync.Mutex // serialises the leader's read-plan-write cycles
	// leaderApplied is set once this leader has applied what earlier leaders committed; a
	// restarted master replays its log only then, so reads before it may miss entries.
	leaderApplied atomic.Bool

	// bootstrapped is set when this start created the cluster.
	bootstrapped bool
	// seeds are the members that discovery found when this start joined the cluster; gossip
	// joins them first.
	seeds     []string
	announcer *discovery.Announcer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New loads the node identity and any stored credentials; it binds nothing.
func New(opt Options) (*Node, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	n := &Node{opt: opt, log: opt.Log.With("component", "cluster"), master: slices.Contains(opt.Roles, config.RoleMaster)}
	n.setPhase(phaseStarting, "")
	id, err := identity.Load(filepath.Join(opt.DataDir, "identity"), opt.MachineIDPaths)
	if err != nil {
		return nil, err
	}
	n.id = id
	switch id.Regenerated {
	case "new":
		n.log.Info("new node identity", "node_id", id.ID)
	case "cloned":
		n.log.Warn("cloned disk detected: machine-id differs from the one this identity was made on; new node ID issued and old cluster state set aside",
			"node_id", id.ID, "previous_node_id", id.PreviousID)
		if err := n.setAsideClusterState(id.PreviousID); err != nil {
			return nil, err
		}
	}
	n.token = opt.Token
	if opt.TokenFile != "" {
		data, err := os.ReadFile(opt.TokenFile)
		if err != nil {
			return nil, &config.Error{Key: "cluster.token_file", Source: "configuration", Value: opt.TokenFile, Reason: err.Error()}
		}
		n.token = strings.TrimSpace(string(data))
	}
	if n.token != "" {
		if _, err := pki.ParseToken(n.token); err != nil {
			return nil, &config.Error{Key: "cluster.token", Source: "configuration", Reason: err.Error()}
		}
	}
	creds, err := pki.LoadCredentials(n.credDir(), id.Key)
	if err != nil {
		return nil, err
	}
	if creds != nil && n.token != "" {
		tok, _ := pki.ParseToken(n.token)
		if tok.Fingerprint() != creds.CA.Fingerprint() {
			return nil, fmt.Errorf("data directory %s belongs to cluster %.16s…, the token to cluster %.16s…: remove %s to move this node to the other cluster",
				opt.DataDir, creds.CA.Fingerprint(), tok.Fingerprint(), n.credDir())
		}
	}
	n.creds = creds
	return n, nil
}

// ID is the node's stable ID.
func (n *Node) ID() string { return n.id.ID }

func (n *Node) credDir() string { return filepath.Join(n.opt.DataDir, "cluster") }
func (n *Node) raftDir() string { return filepath.Join(n.opt.DataDir, "raft") }
func (n *Node) serfDir() string { return filepath.Join(n.opt.DataDir, "serf") }

// setAsideClusterState renames the cloned node's cluster directories so that the new identity
// does not present another node's certificate or raft log.
func (n *Node) setAsideClusterState(prev string) error {
	for _, d := range []string{n.credDir(), n.raftDir(), n.serfDir()} {
		if _, err := os.Stat(d); err != nil {
			continue
		}
		to := d + ".cloned-" + prev[:8]
		if err := os.Rename(d, to); err != nil {
			return fmt.Errorf("set aside cloned cluster state %s: %w", d, err)
		}
	}
	return nil
}

// Credentials are the node's cluster certificates, nil until it is a member (a joining node
// gets them in the background).
func (n *Node) Credentials() *pki.Credentials { return n.credentials() }

func (n *Node) credentials() *pki.Credentials {
	n.credsMu.RLock()
	defer n.credsMu.RUnlock()
	return n.creds
}

func (n *Node) setPhase(p, detail string) {
	n.phase.Store(p)
	n.detail.Store(detail)
}

func (n *Node) currentPhase() (string, string) {
	return n.phase.Load().(string), n.detail.Load().(string)
}

// live reports whether gossip (and raft on masters) are up. The phase is stored after they
// are, so a true answer also makes n.members and n.raft safe to read from any goroutine.
func (n *Node) live() bool {
	p, _ := n.currentPhase()
	return p == phaseMember
}

// Start brings the control plane up. A node with credentials, or the first master, is up when
// Start returns; a node that still has to join does that in the background (readiness says
// so) and reports a refusal through report, which stops the node.
func (n *Node) Start(ctx context.Context, report func(error)) error {
	n.ctx, n.cancel = context.WithCancel(context.Background())
	switch {
	case n.credentials() != nil:
		return n.startMember()
	case n.token != "" || len(n.opt.Join) > 0:
		if len(n.opt.Join) == 0 && n.mdns() {
			tok, _ := pki.ParseToken(n.token)
			n.setPhase(phaseJoining, fmt.Sprintf("looking for cluster %.16s… by mDNS", tok.Fingerprint()))
		} else {
			n.setPhase(phaseJoining, "joining via "+strings.Join(n.opt.Join, ","))
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.acquire(); err != nil {
				n.setPhase(phaseFailed, err.Error())
				if n.ctx.Err() == nil {
					report(err)
				}
				return
			}
			if err := n.startMember(); err != nil {
				n.setPhase(phaseFailed, err.Error())
				report(err)
			}
		}()
		return nil
	case n.master:
		creds, err := pki.Bootstrap(n.opt.Name, n.id.ID, n.opt.Roles, n.id.Key)
		if err != nil {
			return err
		}
		_ = os.Remove(n.admittedPath())
		if err := creds.Save(n.credDir()); err != nil {
			return err
		}
		n.credsMu.Lock()
		n.creds = creds
		n.credsMu.Unlock()
		n.bootstrapped = true
		n.log.Info("created a new cluster", "cluster_id", creds.CA.Fingerprint(), "hint", "run `exo cluster token` to let other nodes join")
		return n.startMember()
	default:
		n.setPhase(phaseStandalone, "not in a cluster: start with --join and --token to join one")
		n.log.Info("no cluster credentials, token or join address: running stand-alone")
		return nil
	}
}

func (n *Node) mdns() bool { return n.opt.Discovery == "mdns" }

// admittedPath marks a data directory whose credentials came from a join rather than from
// creating the cluster, so that a master restarted before it wrote its raft log does not
// bootstrap a raft cluster of its own.
func (n *Node) admittedPath() string { return filepath.Join(n.credDir(), "admitted") }

func (n *Node) admitted() bool {
	_, err := os.Stat(n.admittedPath())
	return err == nil
}

// acquire runs the join exchange against the join addresses (or, without any, the members
// that mDNS finds) until it gets credentials. A refusal ends it; unreachable peers are retried
// with backoff.
func (n *Node) acquire() error {
	discover := len(n.opt.Join) == 0 && n.mdns()
	if len(n.opt.Join) == 0 && !discover {
		return &config.Error{Key: "cluster.join", Source: "configuration", Reason: "a token is given but no member address to join (--join, or --discovery mdns to find one on the local network)"}
	}
	var fingerprint string
	if tok, err := pki.ParseToken(n.token); err == nil {
		fingerprint = tok.Fingerprint()
	}
	req := pki.JoinRequest{Token: n.token, NodeID: n.id.ID, Name: n.opt.Name, Roles: n.opt.Roles, Key: n.id.Key}
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		peers := n.opt.Join
		var lastErr error
		if discover {
			if peers = n.browse(fingerprint); len(peers) == 0 {
				lastErr = fmt.Errorf("no member of cluster %.16s… answered on mDNS", fingerprint)
			}
		}
		queue := slices.Clone(peers)
		for hops := 0; len(queue) > 0 && hops < 8; hops++ {
			addr := queue[0]
			queue = queue[1:]
			creds, err := pki.Join(n.ctx, addr, req)
			var refused *pki.RefusedError
			var redirect *pki.RedirectError
			switch {
			case err == nil:
				if err := os.MkdirAll(n.credDir(), 0o700); err != nil {
					return fmt.Errorf("create %s: %w", n.credDir(), err)
				}
				if err := os.WriteFile(n.admittedPath(), []byte(addr+"\n"), 0o600); err != nil {
					return fmt.Errorf("write %s: %w", n.admittedPath(), err)
				}
				if err := creds.Save(n.credDir()); err != nil {
					return err
				}
				if discover {
					n.seeds = peers
				}
				n.credsMu.Lock()
				n.creds = creds
				n.credsMu.Unlock()
				n.log.Info("admitted to cluster", "cluster_id", creds.CA.Fingerprint(), "via", addr, "can_sign", creds.CanSign())
				return nil
			case errors.As(err, &refused) && discover && refused.WrongCluster:
				// Anyone can announce any fingerprint prefix; the pin caught an impostor (or a
				// prefix collision) before the token was sent. The real cluster may be next.
				n.log.Warn("mDNS peer is not of the token's cluster; skipped", "peer", addr, "err", err)
				lastErr = err
			case errors.As(err, &refused):
				return fmt.Errorf("cannot join the cluster: %w", err)
			case errors.As(err, &redirect):
				queue = append(redirect.Masters, queue...)
				lastErr = err
			default:
				lastErr = err
			}
		}
		if n.token == "" {
			// Without a token there is nothing to wait for: the exchange above told the
			// cluster that we tried, and no member would admit us.
			return fmt.Errorf("cannot join the cluster: no token given (cluster.token, --token-file or EXO_JOIN_TOKEN); last attempt: %v", lastErr)
		}
		if discover {
			n.log.Warn("no member of the token's cluster reachable by mDNS yet; retrying", "cluster_id", fingerprint, "found", peers, "attempt", attempt, "retry_in", delay, "err", lastErr)
		} else {
			n.log.Warn("cannot reach the cluster to join; retrying", "peers", n.opt.Join, "attempt", attempt, "retry_in", delay, "err", lastErr)
		}
		select {
		case <-n.ctx.Done():
			return n.ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// startMember starts gossip and, on masters, raft.
func (n *Node) startMember() error {
	creds := n.credentials()
	gossipHost, _, _ := net.SplitHostPort(n.opt.GossipAddr)
	adv, err := membership.AdvertiseIP(gossipHost)
	if err != nil {
		return fmt.Errorf("gossip.addr %s: %w", n.opt.GossipAddr, err)
	}
	if err := os.MkdirAll(n.serfDir(), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", n.serfDir(), err)
	}
	tags, err := n.initialTags()
	if err != nil {
		return err
	}
	js := &pki.JoinServer{Creds: n.credentials, Masters: n.masterGossipAddrs, Log: n.log}
	m, err := membership.Start(membership.Config{
		NodeID: n.id.ID, Bind: n.opt.GossipAddr, Advertise: adv, Key: creds.GossipKey, Tags: tags,
		SnapshotPath: filepath.Join(n.serfDir(), "snapshot"), JoinHandler: js.Serve, Log: n.log,
	})
	if err != nil {
		return err
	}
	n.members = m
	if n.master {
		n.fsm = state.NewFSM(func() { n.changed("instances") })
		if n.raft, err = n.startRaft(); err != nil {
			_ = m.Shutdown()
			n.members = nil
			return err
		}
	}
	if n.mdns() {
		a, err := discovery.Announce(discovery.Advert{NodeID: n.id.ID, Fingerprint: creds.CA.Fingerprint(), Addr: m.Addr()}, n.log)
		if err != nil {
			// Discovery is a convenience; members given --join still find this node.
			n.log.Warn("cannot announce this node by mDNS", "err", err)
		} else {
			n.announcer = a
			n.log.Info("announcing this node by mDNS", "service", discovery.Service, "addr", m.Addr(), "cluster_id", creds.CA.Fingerprint()[:discovery.PrefixLen])
		}
	}
	switch {
	case len(n.opt.Join) > 0:
		n.wg.Add(1)
		go func() { defer n.wg.Done(); m.JoinLoop(n.ctx, n.opt.Join) }()
	case n.mdns():
		if len(n.seeds) == 0 {
			// A member before this start (or the cluster's creator): it is up on its own and
			// looks for the others in the background.
			m.MarkAlone()
		}
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.discoveryJoin(m, n.seeds) }()
	default:
		m.MarkAlone()
	}
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.refreshTags() }()
	changes := m.Subscribe()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-changes:
				n.changed("members")
			}
		}
	}()
	if n.master {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.masterLoop() }()
	}
	n.setPhase(phaseMember, "cluster "+creds.CA.Fingerprint()[:16])
	n.log.Info("cluster member up", "node_id", n.id.ID, "gossip", m.Addr(), "cluster_id", creds.CA.Fingerprint(), "master", n.master)
	return nil
}

// browse asks the local network for members of the cluster with the given CA fingerprint.
func (n *Node) browse(fingerprint string) []string {
	peers, err := discovery.Browse(n.ctx, 1500*time.Millisecond, n.log)
	if err != nil {
		n.log.Warn("mDNS query failed", "err", err)
		return nil
	}
	addrs := discovery.Select(peers, fingerprint, n.id.ID)
	n.log.Debug("mDNS answers", "heard", len(peers), "of_this_cluster", addrs)
	return addrs
}

// discoveryJoin joins gossip with members found by mDNS (seeds first), retrying with backoff
// until another member is alive in this node's view, whichever side made the contact.
func (n *Node) discoveryJoin(m *membership.Membership, seeds []string) {
	fingerprint := n.credentials().CA.Fingerprint()
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if m.AliveOthers() > 0 {
			return
		}
		addrs := seeds
		seeds = nil
		if len(addrs) == 0 {
			addrs = n.browse(fingerprint)
		}
		if len(addrs) > 0 {
			contacted, err := m.Join(addrs)
			if contacted > 0 {
				n.log.Info("joined members found by mDNS", "peers", addrs, "contacted", contacted, "attempt", attempt)
				return
			}
			n.log.Warn("gossip join with members found by mDNS failed; retrying", "peers", addrs, "attempt", attempt, "retry_in", delay, "err", err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(delay):
		}
		// Lone members keep listening at a slow pace: a cluster's first master waits here
		// for the others, which find it themselves.
		delay = min(2*delay, 30*time.Second)
	}
}

func (n *Node) changed(kind string) {
	if n.opt.OnChange != nil {
		n.opt.OnChange(kind)
	}
}

// Tag names carried by gossip. Serf caps all tags of a member at 512 bytes, so names are short.
const (
	tagName      = "name"
	tagRoles     = "roles"
	tagAPI       = "api"
	tagTransport = "tr"
	tagRaft      = "raft"
	tagMemTotal  = "mem"
	tagMemAvail  = "mema"
	tagMemOffer  = "memo"
	tagCPUs      = "cpu"
	tagAccel     = "acc"
	tagSpeed     = "spd"
	tagModels    = "models"
	tagLeader    = "leader"
)

func (n *Node) initialTags() (map[string]string, error) {
	tags := map[string]string{
		tagName:  n.opt.Name,
		tagRoles: strings.Join(n.opt.Roles, ","),
		tagCPUs:  strconv.Itoa(runtime.NumCPU()),
		tagAccel: n.opt.Accelerator,
	}
	if slices.Contains(n.opt.Roles, config.RoleAPI) && n.opt.APIAddr != "" {
		a, err := membership.AdvertiseAddr(n.opt.APIAddr)
		if err != nil {
			return nil, fmt.Errorf("api.addr %s: %w", n.opt.APIAddr, err)
		}
		tags[tagAPI] = a
	}
	if slices.Contains(n.opt.Roles, config.RoleWorker) && n.opt.TransportAddr != "" {
		a, err := membership.AdvertiseAddr(n.opt.TransportAddr)
		if err != nil {
			return nil, fmt.Errorf("transport.addr %s: %w", n.opt.TransportAddr, err)
		}
		tags[tagTransport] = a
		if paths := localTransportPaths(n.opt.TransportAddr, a); paths != "" {
			tags[tagTransportPaths] = paths
		}
	}
	if n.master {
		a, err := membership.AdvertiseAddr(n.opt.RaftAddr)
		if err != nil {
			return nil, fmt.Errorf("raft.addr %s: %w", n.opt.RaftAddr, err)
		}
		tags[tagRaft] = a
	}
	for k, v := range n.dynamicTags() {
		if v != "" {
			tags[k] = v
		}
	}
	return tags, nil
}

// dynamicTags are the figures that change while the node runs.
func (n *Node) dynamicTags() map[string]string {
	tags := map[string]string{}
	path := n.opt.MemInfoPath
	if path == "" {
		path = "/proc/meminfo"
	}
	total, avail, err := memInfo(path)
	if err != nil {
		n.log.Debug("memory figures unavailable", "err", err)
	} else {
		tags[tagMemTotal] = strconv.FormatUint(total, 10)
		tags[tagMemAvail] = strconv.FormatUint(avail, 10)
	}
	offer := n.opt.Memory
	if offer == 0 {
		offer = avail
	}
	tags[tagMemOffer] = strconv.FormatUint(offer, 10)
	if slices.Contains(n.opt.Roles, config.RoleWorker) {
		// Model IDs up to a budget that keeps all tags under serf's 512-byte limit.
		var list []string
		used := 0
		for _, id := range listModels(n.opt.ModelDirs) {
			if used+len(id)+1 > 160 {
				break
			}
			list = append(list, id)
			used += len(id) + 1
		}
		tags[tagModels] = strings.Join(list, ",")
	}
	if n.opt.Links != nil {
		tags[tagLinks] = encodeLinks(n.opt.Links())
	}
	return tags
}

func (n *Node) refreshTags() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			tags := n.dynamicTags()
			err := n.members.SetTags(tags)
			if err != nil && tags[tagLinks] != "" {
				// The link figures are the first to give way when the tags outgrow serf's
				// limit: placement then falls back to gossip's coordinates.
				tags[tagLinks] = ""
				err = n.members.SetTags(tags)
			}
			if err != nil {
				n.log.Warn("cannot update gossip tags", "err", err)
			}
		}
	}
}

// masterGossipAddrs lists live masters' gossip addresses (for join redirects).
func (n *Node) masterGossipAddrs() []string {
	if !n.live() {
		return nil
	}
	var out []string
	for _, m := range n.members.Members() {
		if m.Status == membership.StatusAlive && hasRole(m.Tags, config.RoleMaster) {
			out = append(out, m.Addr)
		}
	}
	return out
}

// masterRaftAddrs lists live masters' raft addresses, the leader first.
func (n *Node) masterRaftAddrs() []string {
	if !n.live() {
		return nil
	}
	var leader, others []string
	for _, m := range n.members.Members() {
		if m.Status != membership.StatusAlive || !hasRole(m.Tags, config.RoleMaster) || m.Tags[tagRaft] == "" {
			continue
		}
		if m.Tags[tagLeader] == "1" {
			leader = append(leader, m.Tags[tagRaft])
		} else {
			others = append(others, m.Tags[tagRaft])
		}
	}
	if n.raft != nil {
		if addr, _ := n.raft.r.LeaderWithID(); addr != "" {
			leader = append([]string{string(addr)}, leader...)
		}
	}
	return slices.Compact(append(leader, others...))
}

func hasRole(tags map[string]string, role string) bool {
	return slices.Contains(strings.Split(tags[tagRoles], ","), role)
}

// Stop leaves the cluster gracefully: leadership is handed over first, then gossip announces
// the departure, then raft and gossip stop.
func (n *Node) Stop(ctx context.Context) error {
	if n.cancel == nil {
		return nil
	}
	n.cancel()
	// The background join and the loops end with the context; after this, members and raft
	// are settled.
	n.wg.Wait()
	var errs []error
	if n.raft != nil && n.raft.r.State() == raft.Leader {
		if cfg := n.raft.r.GetConfiguration(); cfg.Error() == nil && countVoters(cfg.Configuration()) > 1 {
			if err := n.raft.r.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer failed", "err", err)
			}
		}
	}
	if err := n.announcer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("mdns: %w", err))
	}
	if n.members != nil {
		done := make(chan error, 1)
		go func() { done <- n.members.Leave() }()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("gossip leave: %w", ctx.Err()))
		}
	}
	if n.raft != nil {
		if err := n.raft.shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.members != nil {
		if err := n.members.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MembershipReady reports whether the node is in its cluster (or deliberately alone).
func (n *Node) MembershipReady() (bool, string) {
	phase, detail := n.currentPhase()
	switch phase {
	case phaseStandalone:
		return true, detail
	case phaseMember:
		if !n.members.Joined() {
			via := strings.Join(n.opt.Join, ",")
			if via == "" {
				via = "members found by mDNS: " + strings.Join(n.seeds, ",")
			}
			return false, "gossip: not joined yet (" + via + ")"
		}
		return true, fmt.Sprintf("%s; %d members", detail, len(n.members.Members()))
	}
	return false, phase + ": " + detail
}

// MasterReady reports whether the replicated state has a leader this master follows.
func (n *Node) MasterReady() (bool, string) {
	if ok, detail := n.MembershipReady(); !ok {
		return false, detail
	}
	if n.raft == nil {
		return false, "raft not started"
	}
	addr, id := n.raft.r.LeaderWithID()
	switch {
	case n.raft.r.State() == raft.Leader && !n.leaderApplied.Load():
		return false, "raft leader, applying the log"
	case n.raft.r.State() == raft.Leader:
		return true, "raft leader"
	case addr == "":
		return false, "raft: no leader (waiting to be added as a voter, or no quorum)"
	}
	return true, "raft follower of " + string(id)
}

// WorkerReady reports whether the worker can receive assignments.
func (n *Node) WorkerReady() (bool, string) {
	ok, detail := n.MembershipReady()
	if !ok {
		return false, detail
	}
	return true, detail
}

// errNoLeader is returned by leader-only operations on a node that is not the leader.
var errNoLeader = &Error{Status: http.StatusServiceUnavailable, Msg: "no raft leader right now; retry in a few seconds"}
