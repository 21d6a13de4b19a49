// Package nettest builds networks for tests: Linux network namespaces joined by veth pairs, with
// tc rate limits and nftables rules (root only), or a loopback stand-in with the same API for
// quick unprivileged runs, plus a throwaway certificate authority.
//
// Namespaced tests skip with the reason when not root or when a tool is missing, except under
// CI=true, where that is a failure: CI runs as root and must run them. Everything created is
// removed in t.Cleanup, and leftovers of killed test processes are swept on the next New.
package nettest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// skipOrFail skips a test whose environment cannot run it, or fails it under CI=true.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: namespaced network tests must run)", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips (or under CI fails) unless the test runs as root with iproute2 installed.
func RequireRoot(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		skipOrFail(t, "network namespaces need Linux, this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "network namespace tests need root (euid is %d)", os.Geteuid())
	}
	RequireTool(t, "ip", "iproute2")
}

// RequireTool skips (or under CI fails) unless the program is installed.
func RequireTool(t testing.TB, program, debianPackage string) {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		skipOrFail(t, "%s not found (apt-get install %s)", program, debianPackage)
	}
}

// Network is a set of hosts and the links between them.
type Network struct {
	t        testing.TB
	loopback bool
	prefix   string

	mu    sync.Mutex
	hosts []*Host
	links int
}

// Host is one machine of a Network: a network namespace, or the test's own namespace in the
// loopback variant.
type Host struct {
	Name string
	// NS is the namespace name (ip netns), empty in the loopback variant.
	NS  string
	net *Network
}

// Link is a point-to-point connection: a veth pair whose ends have addresses in their own /24.
type Link struct {
	A, B         *Host
	ADev, BDev   string
	AAddr, BAddr netip.Addr
}

var seq struct {
	sync.Mutex
	n int
}

// New creates an empty namespaced network, removed when the test ends. It requires root.
func New(t testing.TB) *Network {
	t.Helper()
	RequireRoot(t)
	sweepStale()
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	nw := &Network{t: t, prefix: fmt.Sprintf("exot%d-%d", os.Getpid(), n)}
	t.Cleanup(nw.destroy)
	return nw
}

// Loopback creates a network whose hosts all live in the test's own namespace and whose links
// are pairs of loopback addresses (127.0.k.1 ↔ 127.0.k.2). It needs no privileges; rate limits
// and packet filters are not available on it.
func Loopback(t testing.TB) *Network {
	return &Network{t: t, loopback: true}
}

// IsLoopback reports whether this is the loopback variant.
func (n *Network) IsLoopback() bool { return n.loopback }

// Host adds a host (a new network namespace with its loopback up).
func (n *Network) Host(name string) *Host {
	n.t.Helper()
	h := &Host{Name: name, net: n}
	if !n.loopback {
		h.NS = fmt.Sprintf("%s-%d", n.prefix, len(n.hosts))
		n.run("ip", "netns", "add", h.NS)
		n.mu.Lock()
		n.hosts = append(n.hosts, h)
		n.mu.Unlock()
		n.run("ip", "-n", h.NS, "link", "set", "lo", "up")
		// As the NixOS module does on a host: exo's fixed ports (defaults 52415-52418, and
		// the 525xx set tests give a second node) lie in the ephemeral range, where an
		// outgoing socket (an mDNS query, a dial) of another node in the namespace could take
		// one just before its owner binds it.
		n.run("ip", "netns", "exec", h.NS, "sh", "-c", "echo "+ReservedPorts+" > /proc/sys/net/ipv4/ip_local_reserved_ports")
	}
	return h
}

// ReservedPorts are kept from the kernel's automatic port choice in every namespaced host.
const ReservedPorts = "52400-52599"

// Link joins a and b with a veth pair: a gets 198.18.k.1/24, b gets 198.18.k.2/24 (the RFC 2544
// benchmarking range, which no real network routes). In the loopback variant the addresses are
// 127.0.k.1 and 127.0.k.2 and no device is created.
func (n *Network) Link(a, b *Host) *Link {
	n.t.Helper()
	n.mu.Lock()
	n.links++
	k := n.links
	n.mu.Unlock()
	if k > 250 {
		n.t.Fatalf("nettest: at most 250 links per network")
	}
	if n.loopback {
		return &Link{A: a, B: b, ADev: "lo", BDev: "lo",
			AAddr: netip.AddrFrom4([4]byte{127, 0, byte(k), 1}), BAddr: netip.AddrFrom4([4]byte{127, 0, byte(k), 2})}
	}
	// Device names are unique machine-wide while in the root namespace and at most 15 bytes.
	l := &Link{A: a, B: b,
		ADev: fmt.Sprintf("ex%06x%da", os.Getpid(), k), BDev: fmt.Sprintf("ex%06x%db", os.Getpid(), k),
		AAddr: netip.AddrFrom4([4]byte{198, 18, byte(k), 1}), BAddr: netip.AddrFrom4([4]byte{198, 18, byte(k), 2})}
	if len(l.ADev) > 15 {
		n.t.Fatalf("nettest: device name %q too long", l.ADev)
	}
	n.run("ip", "link", "add", l.ADev, "type", "veth", "peer", "name", l.BDev)
	n.run("ip", "link", "set", l.ADev, "netns", a.NS)
	n.run("ip", "link", "set", l.BDev, "netns", b.NS)
	n.run("ip", "-n", a.NS, "addr", "add", l.AAddr.String()+"/24", "dev", l.ADev)
	n.run("ip", "-n", b.NS, "addr", "add", l.BAddr.String()+"/24", "dev", l.BDev)
	n.run("ip", "-n", a.NS, "link", "set", l.ADev, "up")
	n.run("ip", "-n", b.NS, "link", "set", l.BDev, "up")
	return l
}

// Limit shapes traffic that host from sends over the link with a token bucket (tc tbf):
// rate in bits per second; the bucket holds 1/100 s of traffic (at least 32 KB) and the queue
// 50 ms more before packets drop (a shorter queue makes TCP lose whole retransmission timeouts
// to tail drops, which measures the emulation rather than the code under test).
func (l *Link) Limit(from *Host, bitsPerSecond int64) {
	n := from.net
	n.t.Helper()
	if n.loopback {
		n.t.Fatalf("nettest: rate limits need a namespaced network")
	}
	dev := l.ADev
	if from == l.B {
		dev = l.BDev
	}
	burst := max(32<<10, bitsPerSecond/8/100)
	n.run("tc", "-n", from.NS, "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.FormatInt(bitsPerSecond, 10)+"bit", "burst", strconv.FormatInt(burst, 10), "latency", "50ms")
}

// NFT loads an nftables script into the host's namespace (requires nft).
func (h *Host) NFT(script string) {
	n := h.net
	n.t.Helper()
	if n.loopback {
		n.t.Fatalf("nettest: packet filters need a namespaced network")
	}
	RequireTool(n.t, "nft", "nftables")
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nettest: nft in %s: %v\n%s\nscript:\n%s", h.NS, err, out, script)
	}
}

// DropUDP makes the host drop every UDP packet it receives (nftables), as a firewall that lets
// only TCP through would.
func (h *Host) DropUDP() {
	h.NFT(`table inet exotest {
	chain input {
		type filter hook input priority 0; policy accept;
		meta l4proto udp drop
	}
}
`)
}

// Exec runs a program inside the host's namespace and returns its combined output.
func (h *Host) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	var cmd *exec.Cmd
	if h.NS == "" {
		cmd = exec.CommandContext(ctx, name, args...)
	} else {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	}
	return cmd.CombinedOutput()
}

// Do runs fn with the calling thread inside the host's namespace, so that sockets fn creates
// (listeners, dials) belong to the host; they keep working from any goroutine afterwards.
// Goroutines fn starts do not inherit the namespace, so fn must create its sockets itself.
func (h *Host) Do(fn func() error) error {
	if h.NS == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Without an UnlockOSThread the thread is discarded when this goroutine ends, which is
		// the safe outcome if switching back fails.
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("nettest: open own namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", h.NS))
		if err != nil {
			errc <- fmt.Errorf("nettest: open namespace %s: %w", h.NS, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("nettest: enter namespace %s: %w", h.NS, err)
			return
		}
		ferr := fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func (n *Network) run(name string, args ...string) {
	n.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		n.t.Fatalf("nettest: %s %s: %v\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// destroy deletes the namespaces; their veth ends go with them.
func (n *Network) destroy() {
	n.mu.Lock()
	hosts := n.hosts
	n.hosts = nil
	n.mu.Unlock()
	for _, h := range hosts {
		if out, err := exec.Command("ip", "netns", "del", h.NS).CombinedOutput(); err != nil {
			n.t.Errorf("nettest: delete namespace %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
		}
	}
}

// sweepStale deletes namespaces and veth devices left by test processes that no longer exist
// (killed before their cleanup ran).
func sweepStale() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		var pid, k, i int
		if _, err := fmt.Sscanf(e.Name(), "exot%d-%d-%d", &pid, &k, &i); err != nil || alive(pid) {
			continue
		}
		_ = exec.Command("ip", "netns", "del", e.Name()).Run()
	}
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		dev, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if len(dev) < 10 || !strings.HasPrefix(dev, "ex") {
			continue
		}
		if pid, err := strconv.ParseInt(dev[2:8], 16, 64); err == nil && !alive(int(pid)) {
			_ = exec.Command("ip", "link", "del", dev).Run()
		}
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return unix.Kill(pid, 0) == nil || unix.Kill(pid, 0) == unix.EPERM
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
