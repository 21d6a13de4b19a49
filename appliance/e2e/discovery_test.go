package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
)

// lan is one Ethernet segment: a bridge in a namespace of its own, with each host's veth end
// plugged into it and addressed 198.19.0.<i+1>/24 (198.18.0.0/15 is the benchmarking range, and
// nettest's point-to-point links use 198.18.k.0/24).
type lan struct {
	hosts []*nettest.Host
	ips   []string
	devs  []string
}

func newLAN(t *testing.T, n int, defaultRoute func(i int) bool) *lan {
	t.Helper()
	nw := nettest.New(t) // skips without root, fails under CI=true
	sw := nw.Host("switch")
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("-n", sw.NS, "link", "add", "br0", "type", "bridge")
	ip("-n", sw.NS, "link", "set", "br0", "up")
	l := &lan{}
	for i := 0; i < n; i++ {
		h := nw.Host("h" + strconv.Itoa(i+1))
		link := nw.Link(sw, h)
		ip("-n", sw.NS, "addr", "flush", "dev", link.ADev)
		ip("-n", sw.NS, "link", "set", link.ADev, "master", "br0")
		addr := "198.19.0." + strconv.Itoa(i+1)
		ip("-n", h.NS, "-4", "addr", "flush", "dev", link.BDev) // keeps the IPv6 link-local address
		ip("-n", h.NS, "addr", "add", addr+"/24", "dev", link.BDev)
		if defaultRoute(i) {
			ip("-n", h.NS, "route", "add", "default", "dev", link.BDev)
		}
		l.hosts, l.ips, l.devs = append(l.hosts, h), append(l.ips, addr), append(l.devs, link.BDev)
	}
	return l
}

// nsNode is an exo process inside a namespace, on the default ports there.
type nsNode struct {
	*proc
	name   string
	host   *nettest.Host
	client *http.Client
}

// startInNamespace runs `exo serve` inside h with default listen addresses (each namespace has
// its own ports), so that gossip binds the wildcard address like an unconfigured node.
func startInNamespace(t *testing.T, h *nettest.Host, name string, args ...string) *nsNode {
	t.Helper()
	args = append([]string{"netns", "exec", h.NS, exoBin, "serve", "--node-name", name, "--log-format", "json",
		"--data-dir", filepath.Join(t.TempDir(), name)}, args...)
	// ip netns exec replaces itself with exo, so the PID is exo's.
	p := startCmd(t, name, exec.Command("ip", args...), cleanEnv(t))
	p.addr = "127.0.0.1:52415"
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := h.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	return &nsNode{proc: p, name: name, host: h, client: client}
}

func (n *nsNode) get(path string, out any) int {
	resp, err := n.client.Get("http://" + n.addr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(body, out)
	}
	return resp.StatusCode
}

func (n *nsNode) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// TestClusterMDNSDiscovery: three nodes in their own network namespaces on one bridged
// segment, next to the master of another cluster. The masters announce themselves by mDNS; the
// other two nodes are given a worker token and no member address, find the token's cluster by
// its CA fingerprint and join it. One joiner's
// namespace has no default route, where the IPv4 group join of the mDNS client fails and the
// query has to go over IPv6 (when the kernel has it).
func TestClusterMDNSDiscovery(t *testing.T) {
	routeless := -1
	l := newLAN(t, 3, func(i int) bool { return i != 2 })
	if out, err := l.hosts[2].Exec(context.Background(), "ip", "-6", "addr", "show", "dev", l.devs[2]); err == nil && strings.Contains(string(out), "fe80::") {
		routeless = 2
	} else if out, err := exec.Command("ip", "-n", l.hosts[2].NS, "route", "add", "default", "dev", l.devs[2]).CombinedOutput(); err != nil {
		t.Fatalf("add default route: %v\n%s", err, out)
	}
	t.Logf("host h3 without a default route (mDNS over IPv6): %v", routeless == 2)

	m1 := startInNamespace(t, l.hosts[0], "m1", "--discovery", "mdns")
	waitUntil(t, 30*time.Second, "m1 ready", func() bool { return !m1.exited() && m1.get("/readyz", nil) == 200 })
	tokOut, err := l.hosts[0].Exec(context.Background(), exoBin, "cluster", "token", "--api-addr", m1.addr, "--role", "worker")
	token := strings.TrimSpace(strings.SplitN(string(tokOut), "\n", 2)[0])
	if err != nil || !strings.HasPrefix(token, "exo1.") {
		t.Fatalf("exo cluster token in m1's namespace: %v\n%s", err, tokOut)
	}

	// A second cluster on the same segment, announcing too: the joiners must tell them apart
	// by the CA fingerprint. It shares h2 with w2, so it takes other ports.
	x1 := startInNamespace(t, l.hosts[1], "x1", "--discovery", "mdns", "--api-addr", "127.0.0.1:52515", "--gossip-addr", ":52516",
		"--raft-addr", ":52518", "--transport-addr", ":52517")
	x1.addr = "127.0.0.1:52515"
	waitUntil(t, 30*time.Second, "x1 ready", func() bool { return !x1.exited() && x1.get("/readyz", nil) == 200 })

	t0 := time.Now()
	w2 := startInNamespace(t, l.hosts[1], "w2", "--roles", "worker,api", "--discovery", "mdns", "--token", token)
	w3 := startInNamespace(t, l.hosts[2], "w3", "--roles", "worker,api", "--discovery", "mdns", "--token", token)
	nodes := []*nsNode{m1, w2, w3}
	waitUntil(t, 60*time.Second, "all three nodes see each other alive", func() bool {
		for _, n := range nodes {
			if n.exited() {
				t.Fatalf("%s exited: %v", n.name, n.err)
			}
			var doc nodesDoc
			if n.get("/api/v1/nodes", &doc) != 200 || len(doc.Nodes) != 3 {
				return false
			}
			for _, m := range doc.Nodes {
				if m.Status != "alive" {
					return false
				}
			}
		}
		return true
	})
	t.Logf("MEASURE two nodes found the cluster by mDNS and all agree %s after they started", time.Since(t0).Round(time.Millisecond))

	// Each joiner was admitted by the master at its LAN address, which only mDNS told it.
	for _, w := range []*nsNode{w2, w3} {
		log := w.output.String()
		if !strings.Contains(log, `"msg":"admitted to cluster"`) || !strings.Contains(log, `"via":"`+l.ips[0]+`:52416"`) {
			t.Fatalf("%s was not admitted via m1's announced address %s:52416", w.name, l.ips[0])
		}
		waitUntil(t, 30*time.Second, w.name+" ready", func() bool { return w.get("/readyz", nil) == 200 })
	}
	if log := m1.output.String(); !strings.Contains(log, `"msg":"announcing this node by mDNS"`) || strings.Count(log, `"msg":"join accepted"`) != 2 {
		t.Fatalf("m1 did not announce itself or did not admit both joiners")
	}
	var other nodesDoc
	if x1.get("/api/v1/nodes", &other) != 200 || len(other.Nodes) != 1 || strings.Contains(x1.output.String(), `"msg":"join accepted"`) {
		t.Fatalf("the neighbouring cluster was joined or contacted: %+v", other)
	}
	// The joiners announce themselves too, once they are members.
	for _, w := range []*nsNode{w2, w3} {
		if !strings.Contains(w.output.String(), `"msg":"announcing this node by mDNS"`) {
			t.Fatalf("%s does not announce itself", w.name)
		}
	}
}
