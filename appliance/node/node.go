// Package node wires a node together: it opens the data directory, starts the enabled roles,
// tells systemd when they are up, and stops them in order on shutdown.
package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exo-nix/exo/appliance/accel"
	"github.com/exo-nix/exo/appliance/api"
	"github.com/exo-nix/exo/appliance/apikeys"
	"github.com/exo-nix/exo/appliance/buildinfo"
	"github.com/exo-nix/exo/appliance/cluster"
	"github.com/exo-nix/exo/appliance/config"
	"github.com/exo-nix/exo/appliance/datadir"
	"github.com/exo-nix/exo/appliance/engine/model"
	"github.com/exo-nix/exo/appliance/pipeline"
	"github.com/exo-nix/exo/appliance/serving"
	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/appliance/tlscert"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// Role is a component with the node's common lifecycle.
type Role interface {
	Name() string
	// Start brings the role up; it returns once the role is serving or has failed. Failures after
	// start are reported on the node's error channel through the report function.
	Start(ctx context.Context, report func(error)) error
	// Ready reports whether the role can do its work now, with a human-readable detail.
	Ready() (bool, string)
	// Stop ends the role within the context's deadline.
	Stop(ctx context.Context) error
}

// Node is a running exo node.
type Node struct {
	cfg    config.Config
	log    *slog.Logger
	dir    *datadir.Dir
	roles  []Role
	api    *apiRole
	notify Notifier
	errs   chan error

	// cluster is the control plane (identity, membership, raft on masters); one per process,
	// shared by the roles.
	cluster *cluster.Node

	detection      *accel.Report
	store          *store.Store
	registry       *prometheus.Registry
	serving        *serving.Manager
	servingMetrics *serving.Metrics
	// pipeline is distributed inference: the tensor transport, the stage host (workers) and
	// the driver the API routes placed instances through; nil on a master-only node.
	pipeline *pipeline.Service

	stopOnce sync.Once
}

// Assets are files built into the binary.
type Assets struct {
	Dashboard fs.FS
}

// New prepares a node: it takes the data directory lock and builds the enabled roles, but
// starts nothing.
func New(cfg config.Config, log *slog.Logger, assets Assets, notify Notifier) (*Node, error) {
	kvType, err := model.ParseKVType(cfg.Engine.KVType)
	if err != nil {
		return nil, fmt.Errorf("engine.kv_type: %w", err)
	}
	// Local serving and pipeline stages compute alike, so a pipeline answers like one node.
	engine := model.Options{Threads: cfg.Engine.Threads, KVType: kvType}
	dir, err := datadir.Open(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, dir: dir, notify: notify, errs: make(chan error, 8), registry: prometheus.NewRegistry()}
	report, backend, err := detect(cfg.Accelerator)
	if err != nil {
		dir.Close()
		return nil, err
	}
	n.detection = report
	log.Info("hardware detected", "backend", backend, "cpus", report.CPU.LogicalCores,
		"memory_bytes", report.Memory.TotalBytes, "accelerators", len(report.Accelerators), "warnings", len(report.Warnings))
	if backend != accel.BackendCPU {
		// Said once, plainly: the backend shows in the cluster view, and an operator with a
		// GPU would otherwise take the speed they see for the GPU's.
		log.Warn("the engine has no GPU kernels yet: models run on the CPU cores", "backend", backend)
	}
	copt, err := cluster.OptionsFromConfig(cfg, log)
	if err != nil {
		dir.Close()
		return nil, err
	}
	copt.Accelerator = accelSummary(backend, report)
	copt.OnChange = func(kind string) {
		if n.api != nil {
			// "member.changed" and "instance.changed": the dashboard re-reads what changed.
			n.api.srv.Events().Publish(api.Event{Type: strings.TrimSuffix(kind, "s") + ".changed"})
		}
	}
	// Placement weighs links by what the tensor transport measured (pipeline below).
	copt.Links = func() map[string]cluster.LinkFigure {
		if n.pipeline == nil {
			return nil
		}
		return n.pipeline.LinkFigures()
	}
	if n.cluster, err = cluster.New(copt); err != nil {
		dir.Close()
		return nil, err
	}
	publish := func(typ string, data any) {
		if n.api != nil {
			n.api.srv.Events().Publish(api.Event{Type: typ, Data: data})
		}
	}
	storeMetrics, err := store.NewMetrics(n.registry)
	if err != nil {
		dir.Close()
		return nil, err
	}
	worker, apiRole := slices.Contains(cfg.Roles, config.RoleWorker), slices.Contains(cfg.Roles, config.RoleAPI)
	sopt := store.Options{
		Dirs: cfg.Models.Dirs, Hub: store.HubFromEnv(os.Getenv), Metrics: storeMetrics, Logger: log, Publish: publish,
	}
	if worker || apiRole {
		// Models come from peers first, over the tensor transport's mutual TLS.
		sopt.Peers = func() []string { return n.pipeline.PeerAddrs() }
		sopt.PeerClient = store.NewPeerClientDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return n.pipeline.DialModels(ctx, addr)
		})
	}
	n.store = store.New(sopt)
	if worker || apiRole {
		n.pipeline = pipeline.New(pipeline.Options{
			NodeName: cfg.Node.Name, Worker: worker, Listen: cfg.Transport.Addr,
			Mode: transport.Mode(cfg.Transport.Mode), DType: wireDType(cfg.Transport.DType),
			Engine: engine, Cluster: n.cluster, Store: n.store,
			Registerer: n.registry, Logger: log,
		})
	}
	if slices.Contains(cfg.Roles, config.RoleWorker) {
		n.servingMetrics = serving.NewMetrics(n.registry)
		n.serving = serving.New(serving.Options{
			Catalog:    n.store.Catalog(),
			MaxQueue:   cfg.API.MaxQueue,
			Engine:     engine,
			IdleUnload: cfg.Models.IdleUnload,
			Logger:     log,
			Metrics:    n.servingMetrics,
			Publish:    publish,
		})
	}
	for _, name := range config.AllRoles {
		if !slices.Contains(cfg.Roles, name) {
			continue
		}
		switch name {
		case config.RoleMaster:
			n.roles = append(n.roles, &clusterRole{name: config.RoleMaster, ready: n.cluster.MasterReady})
		case config.RoleWorker:
			n.roles = append(n.roles, &clusterRole{name: config.RoleWorker, ready: n.workerReady})
		case config.RoleAPI:
			r, err := n.newAPIRole(assets)
			if err != nil {
				dir.Close()
				return nil, err
			}
			n.api = r
			n.roles = append(n.roles, r)
		}
	}
	return n, nil
}

// Run starts every role, reports readiness to systemd, and blocks until ctx is cancelled (a
// signal) or a role fails; then it stops the roles within the shutdown timeout.
func (n *Node) Run(ctx context.Context) error {
	defer n.dir.Close()
	bi := buildinfo.Get()
	n.log.Info("starting exo node", "node", n.cfg.Node.Name, "version", bi.Version, "commit", bi.Commit,
		"roles", n.cfg.Roles, "data_dir", n.cfg.DataDir, "node_id", n.cluster.ID())
	// The control plane comes first: roles build on membership.
	if err := n.cluster.Start(ctx, n.report); err != nil {
		n.stop()
		return fmt.Errorf("start cluster membership: %w", err)
	}
	if n.pipeline != nil {
		if err := n.pipeline.Start(ctx, n.report); err != nil {
			n.stop()
			return fmt.Errorf("start tensor transport: %w", err)
		}
	}
	for _, r := range n.roles {
		if err := r.Start(ctx, n.report); err != nil {
			n.stop()
			return fmt.Errorf("start %s role: %w", r.Name(), err)
		}
	}
	if err := n.notify.Ready(fmt.Sprintf("node %s up: %v", n.cfg.Node.Name, n.cfg.Roles)); err != nil {
		n.log.Warn("systemd notification failed", "err", err)
	}
	stopWatchdog := n.notify.StartWatchdog(n.log)
	defer stopWatchdog()

	var runErr error
	select {
	case <-ctx.Done():
		n.log.Info("shutting down", "reason", context.Cause(ctx))
	case runErr = <-n.errs:
		n.log.Error("role failed; shutting down", "err", runErr)
	}
	if err := n.stop(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

func (n *Node) report(err error) {
	select {
	case n.errs <- err:
	default:
	}
}

// stop ends the roles in reverse start order, sharing one drain deadline.
func (n *Node) stop() error {
	var err error
	n.stopOnce.Do(func() {
		_ = n.notify.Stopping()
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.API.ShutdownTimeout)
		defer cancel()
		start := time.Now()
		for i := len(n.roles) - 1; i >= 0; i-- {
			if e := n.roles[i].Stop(ctx); e != nil {
				n.log.Warn("role did not stop cleanly", "role", n.roles[i].Name(), "err", e)
				err = errors.Join(err, e)
			}
		}
		if n.pipeline != nil {
			if e := n.pipeline.Stop(ctx); e != nil {
				n.log.Warn("tensor transport did not stop cleanly", "err", e)
			}
		}
		if n.serving != nil {
			n.serving.Close()
		}
		n.store.Close()
		if e := n.cluster.Stop(ctx); e != nil {
			n.log.Warn("cluster membership did not stop cleanly", "err", e)
			err = errors.Join(err, e)
		}
		n.log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	})
	return err
}

// workerReady: the worker is in the cluster and its tensor transport listens.
func (n *Node) workerReady() (bool, string) {
	ok, detail := n.cluster.WorkerReady()
	if !ok || n.pipeline == nil {
		return ok, detail
	}
	pok, pdetail := n.pipeline.Ready()
	if !pok {
		if n.cluster.Credentials() == nil {
			return true, detail // stand-alone: no cluster, nothing to listen for
		}
		return false, pdetail
	}
	return true, detail + "; " + pdetail
}

// Readiness reports every role.
func (n *Node) Readiness() map[string]api.RoleStatus {
	out := make(map[string]api.RoleStatus, len(n.roles))
	for _, r := range n.roles {
		ok, detail := r.Ready()
		out[r.Name()] = api.RoleStatus{Ready: ok, Detail: detail}
	}
	return out
}

// Reload re-reads what can change without a restart (the TLS certificate).
func (n *Node) Reload() {
	if n.api != nil {
		n.api.reload(n.log)
	}
}

func (n *Node) newAPIRole(assets Assets) (*apiRole, error) {
	keys := append([]string(nil), n.cfg.API.Keys...)
	if n.cfg.API.KeyFile != "" {
		fileKeys, err := readKeyFile(n.cfg.API.KeyFile)
		if err != nil {
			return nil, err
		}
		keys = append(keys, fileKeys...)
	}
	store := apikeys.Open(n.dir.Path)
	stored, err := store.Digests()
	if err != nil {
		return nil, err
	}
	if !config.IsLoopback(n.cfg.API.Addr) && len(keys) == 0 && len(stored) == 0 && !n.cfg.API.Insecure {
		return nil, fmt.Errorf("api.addr %s listens beyond loopback but no API key exists: create one with `exo keys create --data-dir %s` (or set api.insecure: true to serve an open API)", n.cfg.API.Addr, n.cfg.DataDir)
	}
	if n.cfg.API.Insecure && !config.IsLoopback(n.cfg.API.Addr) && len(keys) == 0 && len(stored) == 0 {
		n.log.Warn("API listens beyond loopback without authentication (api.insecure)", "addr", n.cfg.API.Addr)
	}
	r := &apiRole{}
	opt := api.Options{
		Addr: n.cfg.API.Addr, NodeName: n.cfg.Node.Name, Keys: keys, StoredKeys: store.Digests,
		CORSOrigins: n.cfg.API.CORSOrigins, MaxBodyBytes: n.cfg.API.MaxBodyBytes,
		Readiness: n.Readiness, Dashboard: assets.Dashboard, Logger: n.log, Registry: n.registry,
		Serving: n.serving, ServingMetrics: n.servingMetrics, Cluster: n.cluster,
		Detection: func() any { return n.detection }, Models: n.store,
	}
	if n.cfg.API.TLS {
		var err error
		if n.cfg.API.TLSCert != "" {
			r.cert, err = tlscert.Load(n.cfg.API.TLSCert, n.cfg.API.TLSKey)
		} else {
			r.cert, err = tlscert.SelfSigned(n.dir.Path, n.cfg.Node.Name)
		}
		if err != nil {
			return nil, err
		}
		opt.TLS = r.cert.ServerConfig()
		n.log.Info("TLS enabled", "fingerprint_sha256", r.cert.Fingerprint(), "self_signed", n.cfg.API.TLSCert == "")
	}
	if n.pipeline != nil {
		opt.Pipelines = n.pipeline
	}
	srv, err := api.New(opt)
	if err != nil {
		return nil, err
	}
	r.srv = srv
	r.log = n.log
	return r, nil
}

func readKeyFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read api.key_file: %w", err)
	}
	var keys []string
	for _, line := range splitLines(string(data)) {
		if line != "" && line[0] != '#' {
			keys = append(keys, line)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("api.key_file %s holds no keys", path)
	}
	return keys, nil
}

// wireDType maps transport.dtype (validated by config) to the wire encoding.
func wireDType(name string) wire.DType {
	switch name {
	case "f16":
		return wire.F16
	case "q8_0":
		return wire.Q8_0
	}
	return wire.F32
}
