package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exo-nix/exo/appliance/cluster"
	"github.com/exo-nix/exo/appliance/cluster/membership"
	"github.com/exo-nix/exo/appliance/cluster/pki"
	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/serving"
	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// Cluster is the control plane as the pipeline uses it (implemented by *cluster.Node).
type Cluster interface {
	ID() string
	// Credentials are nil until the node is a member.
	Credentials() *pki.Credentials
	Nodes(ctx context.Context) ([]cluster.NodeInfo, error)
	Instances(ctx context.Context) ([]state.Instance, error)
}

// Options configure a node's distributed inference.
type Options struct {
	NodeName string
	// Worker hosts stages: the node listens on Listen (transport.addr). Without it the node
	// only drives requests (an API-only node) and dials out.
	Worker bool
	Listen string
	Mode   transport.Mode
	// DType encodes activations (default F32).
	DType   wire.DType
	Engine  model.Options
	Cluster Cluster
	// Store fetches stage files (peers first) and is shared with peers over the transport.
	Store *store.Store
	// SyncInterval is how often placement and membership are read (default 1s).
	SyncInterval time.Duration
	Registerer   prometheus.Registerer
	Logger       *slog.Logger
}

// Service is a node's distributed inference: its tensor endpoint, the stage host (workers) and
// the driver (every node; the API uses it).
type Service struct {
	opt Options
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	net       *Net
	host      *Host
	driver    *Driver
	err       error
	instances []state.Instance
	addrs     map[string]string // node id → transport address, live nodes only
	names     map[string]string // node id → name
}

// New prepares the service; Start brings it up once the node has cluster credentials.
func New(opt Options) *Service {
	if opt.SyncInterval <= 0 {
		opt.SyncInterval = time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	s := &Service{opt: opt, log: opt.Logger.With("component", "pipeline"), addrs: map[string]string{}, names: map[string]string{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Start waits in the background for the node's cluster credentials, then listens (workers)
// and follows placement. A transport that cannot start is reported (it stops the node).
func (s *Service) Start(_ context.Context, report func(error)) error {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var creds *pki.Credentials
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for creds = s.opt.Cluster.Credentials(); creds == nil; creds = s.opt.Cluster.Credentials() {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
		}
		if err := s.up(creds); err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			s.log.Error("tensor transport failed to start", "err", err)
			report(err)
			return
		}
		s.follow()
	}()
	return nil
}

func (s *Service) up(creds *pki.Credentials) error {
	cert := creds.TLS()
	cfg := NetConfig{
		NodeID:    s.opt.Cluster.ID(),
		ServerTLS: pki.ServerTLS(creds.CA, cert), ClientTLS: pki.ClientTLS(creds.CA, cert, transport.ALPN),
		Mode: s.opt.Mode, Registerer: s.opt.Registerer, Logger: s.log,
		// A stage whose node dies fails its requests when the connection times out: 5 s of
		// silence (keep-alives go every 1.25 s) instead of the transport's default 10.
		Transport: transport.Config{IdleTimeout: 5 * time.Second},
	}
	if s.opt.Worker {
		cfg.Listen = s.opt.Listen
	}
	n, err := NewNet(cfg)
	if err != nil {
		return err
	}
	self := s.opt.Cluster.ID()
	d := NewDriver(DriverConfig{NodeID: self, Net: n, Placement: s.placement, LocalFile: s.localFile, DType: s.opt.DType, Logger: s.log})
	var h *Host
	if s.opt.Worker {
		h = NewHost(HostConfig{NodeID: self, NodeName: s.opt.NodeName, Net: n, Engine: s.opt.Engine, Resolve: s.resolve, Addr: s.addrOf, Logger: s.log})
		n.Handle(h.Handle)
		if s.opt.Registerer != nil {
			if err := s.opt.Registerer.Register(newStageCollector(h)); err != nil {
				n.Close()
				return fmt.Errorf("pipeline: register stage metrics: %w", err)
			}
		}
		if s.opt.Store != nil {
			n.ServeModels(s.opt.Store.PeerHandler())
		}
		s.log.Info("tensor transport listening", "addr", n.Addr(), "mode", modeName(s.opt.Mode), "dtype", d.cfg.DType)
	}
	s.mu.Lock()
	s.net, s.host, s.driver = n, h, d
	s.mu.Unlock()
	return nil
}

func modeName(m transport.Mode) transport.Mode {
	if m == "" {
		return transport.ModeAuto
	}
	return m
}

// follow reads membership and placement every SyncInterval: the host loads and unloads its
// stages, the driver routes with the latest placement, and every live peer gets probed.
func (s *Service) follow() {
	t := time.NewTicker(s.opt.SyncInterval)
	defer t.Stop()
	for {
		s.sync()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) sync() {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	self := s.opt.Cluster.ID()
	if nodes, err := s.opt.Cluster.Nodes(ctx); err == nil {
		addrs, names := map[string]string{}, map[string]string{}
		var peers []Peer
		for _, n := range nodes {
			names[n.ID] = n.Name
			if n.Transport == "" || (n.Status != membership.StatusAlive && n.Status != membership.StatusSuspect) {
				continue
			}
			addrs[n.ID] = n.Transport
			if n.ID != self {
				peers = append(peers, Peer{Node: n.ID, Name: n.Name, Addrs: append([]string{n.Transport}, n.TransportPaths...)})
			}
		}
		s.mu.Lock()
		s.addrs, s.names = addrs, names
		nt := s.net
		s.mu.Unlock()
		nt.SetPeers(s.ctx, peers)
	}
	list, err := s.opt.Cluster.Instances(ctx)
	if err != nil {
		s.log.Debug("placement unavailable", "err", err)
		return
	}
	s.mu.Lock()
	s.instances = list
	h := s.host
	s.mu.Unlock()
	if h != nil {
		h.Sync(list)
	}
}

// addrOf is a live node's transport address ("" when unknown).
func (s *Service) addrOf(node string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[node]
}

func (s *Service) placement() ([]state.Instance, map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.instances, s.addrs
}

// localFile finds a file of the model in this node's catalog: the model, or a stage of it.
func (s *Service) localFile(id string) (string, bool) {
	if s.opt.Store == nil {
		return "", false
	}
	cat := s.opt.Store.Catalog()
	if m, err := cat.Get(id); err == nil {
		return m.Path, true
	}
	models, _ := cat.List()
	for _, m := range models {
		if m.Stage != nil && strings.HasPrefix(m.ID, id+".layers-") {
			return m.Path, true
		}
	}
	return "", false
}

// resolve returns the file that holds layers [first, last) of a model here, fetching a stage
// file when the node holds neither the model nor that stage: from peers first, and from the
// model's origin (the hub) only for what no peer has.
func (s *Service) resolve(ctx context.Context, id string, first, last int, progress func(store.Progress)) (string, error) {
	if s.opt.Store == nil {
		return "", errors.New("this node has no model store")
	}
	src := s.origin(ctx, id)
	m, err := s.opt.Store.Pull(ctx, store.PullRequest{Source: src, Layers: &store.Stage{First: first, Last: last}}, progress)
	if err != nil {
		return "", fmt.Errorf("fetch layers [%d,%d) of %s from %s: %w", first, last, id, src, err)
	}
	return m.Path, nil
}

// origin is where a model came from (its hub reference) as a peer that holds it reports, so
// that a stage fetch can fall back to the hub; the bare id (peers only) when no peer knows.
func (s *Service) origin(ctx context.Context, id string) string {
	if _, err := s.opt.Store.Catalog().Get(id); err == nil {
		return id
	}
	n := s.tensorNet()
	if n == nil {
		return id
	}
	client := store.NewPeerClientDialer(n.DialModels)
	for _, addr := range s.PeerAddrs() {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := client.List(lctx, addr)
		cancel()
		if err != nil {
			continue
		}
		for _, pm := range list {
			if pm.ID == id && pm.Origin != "" {
				return pm.Origin
			}
		}
	}
	return id
}

func (s *Service) tensorNet() *Net {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.net
}

// PeerAddrs are the transport addresses of the live peers (for the store's peer sharing).
func (s *Service) PeerAddrs() []string {
	self := s.opt.Cluster.ID()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, a := range s.addrs {
		if id != self {
			out = append(out, a)
		}
	}
	return out
}

// DialModels opens a model-sharing connection to a peer (store.NewPeerClientDialer).
func (s *Service) DialModels(ctx context.Context, addr string) (net.Conn, error) {
	n := s.tensorNet()
	if n == nil {
		return nil, errors.New("the tensor transport is not up yet (the node has no cluster credentials)")
	}
	return n.DialModels(ctx, addr)
}

// Ready reports whether the transport is up.
func (s *Service) Ready() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return false, s.err.Error()
	case s.net == nil:
		return false, "tensor transport waiting for cluster credentials"
	case s.opt.Worker:
		return true, "tensor transport on " + s.net.Addr().String()
	}
	return true, "tensor transport dialling out"
}

// Acquire routes a request for model to its pipeline; (nil, nil) when no instance of it is
// placed across nodes.
func (s *Service) Acquire(ctx context.Context, model string) (serving.Generator, error) {
	s.mu.Lock()
	d := s.driver
	s.mu.Unlock()
	if d == nil {
		return nil, nil
	}
	return d.Acquire(ctx, model)
}

// Models lists the models of the placed instances.
func (s *Service) Models() []string {
	instances, _ := s.placement()
	var out []string
	for _, in := range instances {
		if in.Status == state.StatusPlaced && !slices.Contains(out, in.Model) {
			out = append(out, in.Model)
		}
	}
	return out
}

// Links lists this node's tensor connections to its peers.
func (s *Service) Links() []Link {
	n := s.tensorNet()
	if n == nil {
		return []Link{}
	}
	return n.Links()
}

// LinkFigures are this node's measurements of its links to peers, by node id: the probe's RTT
// and the bandwidth of all the link's paths together. Placement reads them (through gossip).
func (s *Service) LinkFigures() map[string]cluster.LinkFigure {
	out := map[string]cluster.LinkFigure{}
	for _, l := range s.Links() {
		f := cluster.LinkFigure{Bandwidth: l.Bandwidth()}
		if l.Probe != nil {
			f.RTT = l.Probe.RTT
		}
		out[l.Node] = f
	}
	return out
}

// Host is the stage host (nil before Start completed or without the worker role).
func (s *Service) Host() *Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host
}

// StageStatus asks each node hosting a stage of the instances for its stages' states.
func (s *Service) StageStatus(ctx context.Context, instances []state.Instance) map[string][]StageStatus {
	n := s.tensorNet()
	out := map[string][]StageStatus{}
	if n == nil {
		return out
	}
	_, addrs := s.placement()
	nodes := map[string]bool{}
	for _, in := range instances {
		for _, st := range in.Stages {
			for _, id := range st.Nodes() {
				nodes[id] = true
			}
		}
	}
	var mu sync.Mutex
	reports := map[string][]StageStatus{}
	var wg sync.WaitGroup
	for id := range nodes {
		addr := addrs[id]
		if addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			list, err := queryStatus(ctx, n, addr)
			if err == nil {
				mu.Lock()
				reports[id] = list
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, in := range instances {
		live := make([]StageStatus, len(in.Stages))
		for i, st := range in.Stages {
			find := func(node, name string, shard int) StageStatus {
				out := StageStatus{Instance: in.ID, Model: in.Model, Node: node, Name: name, Layers: st.Layers, State: StageUnreachable}
				if len(st.Shards) > 0 {
					out.Shard, out.Shards = shard, len(st.Shards)+1
				}
				for _, r := range reports[node] {
					if r.Instance == in.ID && r.Layers == st.Layers && r.Shard == shard {
						out = r
					}
				}
				return out
			}
			live[i] = find(st.Node, st.NodeName, 0)
			for j, sh := range st.Shards {
				live[i].OtherShards = append(live[i].OtherShards, find(sh.Node, sh.NodeName, j+1))
			}
		}
		out[in.ID] = live
	}
	return out
}

func queryStatus(ctx context.Context, n *Net, addr string) ([]StageStatus, error) {
	st, err := n.OpenStream(ctx, addr, transport.ServiceData)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { st.Cancel("timed out") })
	defer stop()
	if err := writeJSON(st, 0, openMsg{Op: opStatus, Proto: protoVersion}); err != nil {
		return nil, err
	}
	var list []StageStatus
	if err := readJSON(st, &list); err != nil {
		return nil, err
	}
	_ = st.CloseWrite()
	return list, nil
}

// Stop ends the service: loads are cancelled, connections closed (requests in flight fail).
func (s *Service) Stop(context.Context) error {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	h, n := s.host, s.net
	s.mu.Unlock()
	if h != nil {
		h.Close()
	}
	if n != nil {
		return n.Close()
	}
	return nil
}
