package membership

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/coordinate"
	"github.com/hashicorp/serf/serf"
)

// Member statuses as the API reports them.
const (
	StatusAlive   = "alive"
	StatusSuspect = "suspect"
	StatusFailed  = "failed"
	StatusLeft    = "left"
)

// Failure detection for a LAN: a node is probed roughly every ProbeInterval × cluster size,
// declared suspect when a probe and the indirect probes fail, and dead SuspicionMult probe
// intervals later unless it refutes. With these figures a killed node of a small cluster is
// declared failed in about 2-4 s, while a busy node (the CI runs five nodes on two cores
// under the race detector) still answers in time.
const (
	probeInterval  = 500 * time.Millisecond
	probeTimeout   = 400 * time.Millisecond
	suspicionMult  = 3
	gossipInterval = 100 * time.Millisecond
	pushPull       = 10 * time.Second
	reconnect      = 5 * time.Second
)

// Config configures a Membership.
type Config struct {
	NodeID string // serf member name: stable across restarts, unique per node
	Bind   string // gossip.addr
	// Advertise is the IP other members reach this node at.
	Advertise net.IP
	Key       []byte // AES-256 gossip key
	Tags      map[string]string
	// SnapshotPath keeps the member list across restarts so that a restarted node rejoins the
	// members it knew even when its --join peers are gone.
	SnapshotPath string
	JoinHandler  func(net.Conn)
	Log          *slog.Logger
}

// Member is one cluster member as seen from this node.
type Member struct {
	ID     string            `json:"id"`
	Addr   string            `json:"addr"`
	Status string            `json:"status"`
	Tags   map[string]string `json:"tags"`
}

// Membership is the node's serf agent.
type Membership struct {
	serf      *serf.Serf
	transport *Transport
	log       *slog.Logger
	events    chan serf.Event

	mu   sync.Mutex
	tags map[string]string
	subs []chan struct{}

	joined   atomic.Bool
	stopOnce sync.Once
	done     chan struct{}
}

// Start binds the gossip port and starts serf. It does not join anyone; see JoinLoop.
func Start(cfg Config) (*Membership, error) {
	if len(cfg.Key) != 32 {
		return nil, fmt.Errorf("gossip key is %d bytes, want 32", len(cfg.Key))
	}
	tr, err := NewTransport(cfg.Bind, cfg.Advertise, cfg.JoinHandler, cfg.Log)
	if err != nil {
		return nil, err
	}
	keyring, err := memberlist.NewKeyring(nil, cfg.Key)
	if err != nil {
		tr.Shutdown()
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	m := &Membership{transport: tr, log: cfg.Log, events: make(chan serf.Event, 256), tags: maps.Clone(cfg.Tags), done: make(chan struct{})}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.Transport = tr
	mc.AdvertiseAddr = cfg.Advertise.String()
	mc.AdvertisePort = tr.Port()
	mc.BindPort = tr.Port()
	mc.Keyring = keyring
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.ProbeInterval = probeInterval
	mc.ProbeTimeout = probeTimeout
	mc.SuspicionMult = suspicionMult
	mc.GossipInterval = gossipInterval
	mc.PushPullInterval = pushPull
	// A node restarted with the same ID on another address may take its name back soon.
	mc.DeadNodeReclaimTime = 10 * time.Second
	mc.Logger = log.New(&logBridge{log: cfg.Log, component: "memberlist"}, "", 0)

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeID
	sc.Tags = maps.Clone(cfg.Tags)
	sc.EventCh = m.events
	sc.MemberlistConfig = mc
	sc.SnapshotPath = cfg.SnapshotPath
	sc.RejoinAfterLeave = false
	sc.ReconnectInterval = reconnect
	sc.Logger = log.New(&logBridge{log: cfg.Log, component: "serf"}, "", 0)
	s, err := serf.Create(sc)
	if err != nil {
		tr.Shutdown()
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	m.serf = s
	go m.watch()
	if s.NumNodes() > 1 {
		// The snapshot rejoined earlier members.
		m.joined.Store(true)
	}
	return m, nil
}

// Addr is the advertised gossip address.
func (m *Membership) Addr() string {
	lm := m.serf.LocalMember()
	return net.JoinHostPort(lm.Addr.String(), strconv.Itoa(int(lm.Port)))
}

// Joined reports whether the node is in a cluster with at least one other member, or was told
// to stand alone.
func (m *Membership) Joined() bool { return m.joined.Load() }

// MarkAlone says that the node has nobody to join (the first master), so that it counts as
// joined.
func (m *Membership) MarkAlone() { m.joined.Store(true) }

// JoinLoop joins one of addrs, retrying with exponential backoff until one answers or ctx ends.
func (m *Membership) JoinLoop(ctx context.Context, addrs []string) {
	if len(addrs) == 0 {
		return
	}
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := m.serf.Join(addrs, true)
		if n > 0 {
			m.joined.Store(true)
			m.log.Info("joined cluster", "via", addrs, "contacted", n, "attempt", attempt)
			return
		}
		m.log.Warn("gossip join failed; retrying", "peers", addrs, "attempt", attempt, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-m.done:
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// Join contacts addrs once and returns how many answered.
func (m *Membership) Join(addrs []string) (int, error) {
	n, err := m.serf.Join(addrs, true)
	if n > 0 {
		m.joined.Store(true)
	}
	return n, err
}

// AliveOthers counts the members other than this node that gossip sees alive.
func (m *Membership) AliveOthers() int {
	self := m.serf.LocalMember().Name
	count := 0
	for _, sm := range m.serf.Members() {
		if sm.Name != self && sm.Status == serf.StatusAlive {
			count++
		}
	}
	return count
}

// Members lists every known member with its status; memberlist's suspect state is shown
// because serf folds it into alive.
func (m *Membership) Members() []Member {
	suspect := map[string]bool{}
	for _, n := range m.serf.Memberlist().Members() {
		if n.State == memberlist.StateSuspect {
			suspect[n.Name] = true
		}
	}
	var out []Member
	for _, sm := range m.serf.Members() {
		st := StatusAlive
		switch sm.Status {
		case serf.StatusFailed:
			st = StatusFailed
		case serf.StatusLeft, serf.StatusLeaving:
			st = StatusLeft
		case serf.StatusAlive:
			if suspect[sm.Name] {
				st = StatusSuspect
			}
		default:
			continue
		}
		out = append(out, Member{ID: sm.Name, Addr: net.JoinHostPort(sm.Addr.String(), strconv.Itoa(int(sm.Port))), Status: st, Tags: sm.Tags})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// LocalID is this node's member name.
func (m *Membership) LocalID() string { return m.serf.LocalMember().Name }

// SetTags merges updates into the advertised tags; an empty value removes a tag.
func (m *Membership) SetTags(updates map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := maps.Clone(m.tags)
	changed := false
	for k, v := range updates {
		old, had := next[k]
		if v == "" {
			if had {
				delete(next, k)
				changed = true
			}
			continue
		}
		if !had || old != v {
			next[k] = v
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := m.serf.SetTags(next); err != nil {
		return fmt.Errorf("update gossip tags: %w", err)
	}
	m.tags = next
	return nil
}

// Subscribe returns a channel that receives a signal (coalesced) after membership changes.
func (m *Membership) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs = append(m.subs, ch)
	m.mu.Unlock()
	return ch
}

func (m *Membership) watch() {
	for {
		select {
		case <-m.done:
			return
		case ev := <-m.events:
			me, ok := ev.(serf.MemberEvent)
			if !ok {
				continue
			}
			for _, mem := range me.Members {
				if mem.Name == m.serf.LocalMember().Name {
					continue
				}
				attrs := []any{"member", mem.Name, "name", mem.Tags["name"], "addr", net.JoinHostPort(mem.Addr.String(), strconv.Itoa(int(mem.Port)))}
				switch me.Type {
				case serf.EventMemberJoin:
					m.joined.Store(true)
					m.log.Info("member joined", attrs...)
				case serf.EventMemberFailed:
					m.log.Warn("member failed", attrs...)
				case serf.EventMemberLeave:
					m.log.Info("member left", attrs...)
				case serf.EventMemberReap:
					m.log.Info("member reaped", attrs...)
				}
			}
			m.mu.Lock()
			for _, ch := range m.subs {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			m.mu.Unlock()
		}
	}
}

// Leave announces a graceful departure, so that others see "left" rather than "failed".
func (m *Membership) Leave() error {
	if err := m.serf.Leave(); err != nil {
		return fmt.Errorf("gossip leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip.
func (m *Membership) Shutdown() error {
	var err error
	m.stopOnce.Do(func() {
		err = m.serf.Shutdown()
		close(m.done)
		_ = m.transport.Shutdown()
	})
	return err
}

// logBridge turns the "[LEVEL] component: message" lines of serf, memberlist and raft into
// structured log records, and names gossip traffic refused for a wrong key as such.
type logBridge struct {
	log       *slog.Logger
	component string
}

var levelRe = regexp.MustCompile(`^\s*(?:\S+\s+)?\[(TRACE|DEBUG|INFO|WARN|WARNING|ERR|ERROR)\]\s*(.*)$`)
var fromRe = regexp.MustCompile(`from=(\S+)`)

// Refusals of gossip from outside the cluster, as memberlist words them.
var refusedGossip = []string{"no installed keys could decrypt", "encryption is configured but remote state is not encrypted", "failed to decrypt", "decrypt packet failed"}

func (b *logBridge) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line == "" {
			continue
		}
		level, msg := slog.LevelInfo, line
		if mm := levelRe.FindStringSubmatch(line); mm != nil {
			msg = mm[2]
			switch mm[1] {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
		}
		for _, r := range refusedGossip {
			if strings.Contains(strings.ToLower(msg), r) {
				from := ""
				if fm := fromRe.FindStringSubmatch(msg); fm != nil {
					from = fm[1]
				}
				b.log.Warn("gossip refused: not encrypted with this cluster's key (another cluster or no token)", "remote", from, "detail", msg)
				return len(p), nil
			}
		}
		b.log.Log(context.Background(), level, msg, "lib", b.component)
	}
	return len(p), nil
}

// NewLogWriter returns a writer that forwards leveled library log lines to log.
func NewLogWriter(log *slog.Logger, component string) io.Writer {
	return &logBridge{log: log, component: component}
}

// Distance estimates the round trip between two members from serf's network coordinates.
func (m *Membership) Distance(a, b string) (time.Duration, bool) {
	coord := func(id string) *coordinate.Coordinate {
		if id == m.LocalID() {
			c, err := m.serf.GetCoordinate()
			if err != nil {
				return nil
			}
			return c
		}
		c, _ := m.serf.GetCachedCoordinate(id)
		return c
	}
	ca, cb := coord(a), coord(b)
	if ca == nil || cb == nil {
		return 0, false
	}
	return ca.DistanceTo(cb), true
}
