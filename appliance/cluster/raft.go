package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/exo-nix/exo/appliance/cluster/membership"
	"github.com/exo-nix/exo/appliance/cluster/pki"
	"github.com/exo-nix/exo/appliance/config"
	"github.com/exo-nix/exo/netstack/portbind"
)

// maxVoters caps the raft voters: 3 or 5 masters tolerate 1 or 2 failures; more voters only
// slow commits down. Further masters follow as non-voters.
const maxVoters = 5

// Raft timing for a LAN: a follower that misses the leader for 1-2 s starts an election.
const (
	raftHeartbeat = 1000 * time.Millisecond
	raftElection  = 1000 * time.Millisecond
	raftLease     = 500 * time.Millisecond
)

type raftNode struct {
	r      *raft.Raft
	store  *raftboltdb.BoltStore
	stream *streamLayer
	trans  *raft.NetworkTransport
}

func (rn *raftNode) shutdown() error {
	err := rn.r.Shutdown().Error()
	if cerr := rn.trans.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if cerr := rn.store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// startRaft opens the raft log and starts the raft node over mutual TLS. The first master of
// a new cluster bootstraps a configuration with itself as the only voter; other masters wait
// for the leader to add them when gossip shows them.
func (n *Node) startRaft() (*raftNode, error) {
	creds := n.credentials()
	adv, err := membership.AdvertiseAddr(n.opt.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("raft.addr %s: %w", n.opt.RaftAddr, err)
	}
	advAddr, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil {
		return nil, fmt.Errorf("raft.addr %s: %w", n.opt.RaftAddr, err)
	}
	ln, err := portbind.Bind(n.opt.RaftAddr, func() (net.Listener, error) { return net.Listen("tcp", n.opt.RaftAddr) })
	if err != nil {
		return nil, fmt.Errorf("listen on raft.addr %s: %w", n.opt.RaftAddr, err)
	}
	if advAddr.Port == 0 {
		advAddr.Port = ln.Addr().(*net.TCPAddr).Port
	}
	sl := &streamLayer{
		ln:        ln,
		server:    pki.ServerTLS(creds.CA, creds.TLS(), pki.ALPNRaft, pki.ALPNRPC),
		client:    pki.ClientTLS(creds.CA, creds.TLS(), pki.ALPNRaft),
		advertise: advAddr,
		raftCh:    make(chan net.Conn),
		done:      make(chan struct{}),
		rpc:       n.serveRPC,
		log:       n.log,
	}
	go sl.acceptLoop()

	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: membership.NewLogWriter(n.log, "raft"), Level: hclog.Info, DisableTime: true})
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: sl, MaxPool: 3, Timeout: 5 * time.Second, Logger: hl})
	if err := os.MkdirAll(n.raftDir(), 0o700); err != nil {
		trans.Close()
		return nil, fmt.Errorf("create %s: %w", n.raftDir(), err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.raftDir(), "raft.db")})
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("open raft log %s: %w", filepath.Join(n.raftDir(), "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.raftDir(), 2, hl)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, fmt.Errorf("open raft snapshots in %s: %w", n.raftDir(), err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.id.ID)
	rc.HeartbeatTimeout = raftHeartbeat
	rc.ElectionTimeout = raftElection
	rc.LeaderLeaseTimeout = raftLease
	rc.CommitTimeout = 20 * time.Millisecond
	rc.SnapshotThreshold = 1024
	rc.SnapshotInterval = 60 * time.Second
	rc.TrailingLogs = 1024
	rc.Logger = hl
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, store, store, snaps, trans)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	// Bootstrap only a brand-new cluster, or a first master that crashed between creating the
	// cluster and writing its raft log (it holds the CA, was told to join nobody, and was not
	// admitted by a join: a master found by mDNS has no --join either).
	if !existing && (n.bootstrapped || (creds.CanSign() && len(n.opt.Join) == 0 && !n.admitted())) {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(advAddr.String())}}}
		if err := r.BootstrapCluster(cfg).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = r.Shutdown().Error()
			store.Close()
			trans.Close()
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
		n.log.Info("raft bootstrapped", "voter", n.id.ID, "addr", advAddr.String())
	}
	return &raftNode{r: r, store: store, stream: sl, trans: trans}, nil
}

// streamLayer is raft's transport over mutual TLS. Connections that negotiate the RPC protocol
// instead of raft go to the control RPC handler.
type streamLayer struct {
	ln        net.Listener
	server    *tls.Config
	client    *tls.Config
	advertise net.Addr
	raftCh    chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	rpc       func(*tls.Conn)
	log       interface {
		Warn(msg string, args ...any)
	}
}

func (s *streamLayer) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			s.log.Warn("raft accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go s.handshake(c)
	}
}

func (s *streamLayer) handshake(c net.Conn) {
	tc := tls.Server(c, s.server)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		s.log.Warn("raft port: refused connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	switch tc.ConnectionState().NegotiatedProtocol {
	case pki.ALPNRaft:
		// Any member's certificate passes the handshake; only masters take part in raft.
		if peer := tc.ConnectionState().PeerCertificates; len(peer) == 0 || !slices.Contains(pki.CertRoles(peer[0]), config.RoleMaster) {
			id, roles := "", []string(nil)
			if len(peer) > 0 {
				id, roles = peer[0].Subject.CommonName, pki.CertRoles(peer[0])
			}
			s.log.Warn("raft port: refused raft connection from a member without the master role", "remote", c.RemoteAddr().String(), "node_id", id, "roles", roles)
			tc.Close()
			return
		}
		select {
		case s.raftCh <- tc:
		case <-s.done:
			tc.Close()
		}
	case pki.ALPNRPC:
		s.rpc(tc)
	default:
		tc.Close()
	}
}

// Accept implements net.Listener for raft.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftCh:
		return c, nil
	case <-s.done:
		return nil, errors.New("raft transport closed")
	}
}

// Close implements net.Listener.
func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.done); s.ln.Close() })
	return nil
}

// Addr implements net.Listener: the advertised address, which raft puts in its configuration.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial implements raft.StreamLayer.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, "tcp", string(address))
}

func countVoters(cfg raft.Configuration) int {
	v := 0
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			v++
		}
	}
	return v
}

// manageServers runs on the leader: masters that gossip shows alive and that raft does not
// know yet become voters (non-voters past maxVoters); masters that left gracefully are
// removed. Failed masters stay, since they usually come back and removing them would shrink
// the quorum under a partition.
func (n *Node) manageServers() {
	r := n.raft.r
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	cfg := f.Configuration()
	known := map[raft.ServerID]raft.Server{}
	for _, s := range cfg.Servers {
		known[s.ID] = s
	}
	voters := countVoters(cfg)
	for _, m := range n.members.Members() {
		if !hasRole(m.Tags, config.RoleMaster) || m.Tags[tagRaft] == "" {
			continue
		}
		id := raft.ServerID(m.ID)
		addr := raft.ServerAddress(m.Tags[tagRaft])
		s, inConfig := known[id]
		switch {
		case m.Status == membership.StatusLeft && inConfig && m.ID != n.id.ID:
			if err := r.RemoveServer(id, 0, 5*time.Second).Error(); err != nil {
				n.log.Warn("cannot remove departed master from raft", "node_id", m.ID, "err", err)
				continue
			}
			n.log.Info("removed departed master from raft", "node_id", m.ID, "name", m.Tags[tagName])
		case m.Status != membership.StatusAlive:
		case !inConfig || s.Address != addr:
			var fut raft.IndexFuture
			kind := "voter"
			if voters < maxVoters || (inConfig && s.Suffrage == raft.Voter) {
				fut = r.AddVoter(id, addr, 0, 5*time.Second)
				voters++
			} else {
				kind = "non-voter"
				fut = r.AddNonvoter(id, addr, 0, 5*time.Second)
			}
			if err := fut.Error(); err != nil {
				n.log.Warn("cannot add master to raft", "node_id", m.ID, "as", kind, "err", err)
				continue
			}
			n.log.Info("added master to raft", "node_id", m.ID, "name", m.Tags[tagName], "addr", addr, "as", kind)
		}
	}
}

// masterLoop keeps the leader tag in gossip current and, while leader, manages raft servers
// and reconciles instances with membership.
func (n *Node) masterLoop() {
	changes := n.members.Subscribe()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	wasLeader := false
	dirty := true
	var last time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-changes:
			dirty = true
		case <-tick.C:
		}
		leader := n.raft.r.State() == raft.Leader
		if leader != wasLeader {
			v := ""
			if leader {
				v = "1"
				// Apply everything the previous leader committed before acting on it.
				if err := n.raft.r.Barrier(5 * time.Second).Error(); err != nil {
					n.log.Warn("raft barrier failed after election", "err", err)
					continue
				}
				n.log.Info("became raft leader", "instances", len(n.fsm.Instances()))
			}
			n.leaderApplied.Store(leader)
			if err := n.members.SetTags(map[string]string{tagLeader: v}); err != nil {
				n.log.Warn("cannot update leader tag", "err", err)
			}
			wasLeader = leader
			dirty = true
		}
		if leader && (dirty || time.Since(last) > 2*time.Second) {
			n.manageServers()
			n.reconcile()
			dirty, last = false, time.Now()
		}
	}
}
