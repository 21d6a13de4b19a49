// Package discovery finds members of a cluster on the local network with multicast DNS
// (DNS-SD over mDNS, RFC 6762/6763), so that a node holding a join token needs no member
// address (cluster.discovery = mdns).
//
// Every member announces its gossip address as an instance of Service, named by its node ID,
// with TXT fields that name the cluster by a prefix of its CA fingerprint. Nothing secret is
// announced: the fingerprint is what any TLS handshake with a member shows anyway, and a joiner
// still pins the full fingerprint from its token before it sends the token, so an impostor that
// announces the same prefix learns nothing.
package discovery

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/mdns"
)

// Service is the DNS-SD service type members announce. The join exchange and gossip's stream
// side are TCP, on the announced port.
const Service = "_exo._tcp"

// PrefixLen is how many hex digits of the CA fingerprint an announcement carries: 64 bits, so
// that two clusters on one network do not collide by chance, and short enough for one TXT
// string. The joiner checks all 256 bits during the join exchange.
const PrefixLen = 16

// TXT field names.
const (
	txtVersion = "v"
	txtCluster = "cluster"
	txtID      = "id"
	version    = "1"
)

// Advert is what a member announces.
type Advert struct {
	NodeID string
	// Fingerprint is the cluster CA's SHA-256 fingerprint in hex; only PrefixLen digits leave
	// the node.
	Fingerprint string
	// Addr is the gossip address other members reach this node at (IP:port).
	Addr string
}

// Peer is an announcement heard on the network.
type Peer struct {
	NodeID        string
	ClusterPrefix string
	Addr          string // IP:port
}

// TXT is the TXT record of an announcement.
func TXT(a Advert) []string {
	return []string{txtVersion + "=" + version, txtCluster + "=" + prefix(a.Fingerprint), txtID + "=" + a.NodeID}
}

func prefix(fingerprint string) string {
	fingerprint = strings.ToLower(fingerprint)
	if len(fingerprint) > PrefixLen {
		return fingerprint[:PrefixLen]
	}
	return fingerprint
}

// ParsePeer reads an announcement from its TXT fields and address; ok is false for
// announcements that are not exo's (another version, or fields missing).
func ParsePeer(txt []string, ip net.IP, zone string, port int) (Peer, bool) {
	fields := map[string]string{}
	for _, f := range txt {
		if k, v, found := strings.Cut(f, "="); found {
			fields[k] = v
		}
	}
	p := Peer{NodeID: fields[txtID], ClusterPrefix: strings.ToLower(fields[txtCluster])}
	if fields[txtVersion] != version || p.NodeID == "" || len(p.ClusterPrefix) != PrefixLen || ip == nil || port <= 0 || port > 65535 {
		return Peer{}, false
	}
	host := ip.String()
	if zone != "" && ip.To4() == nil {
		host += "%" + zone
	}
	p.Addr = net.JoinHostPort(host, strconv.Itoa(port))
	return p, true
}

// Select returns the gossip addresses of the peers that announce the cluster whose CA has the
// given fingerprint, other than the node self, without duplicates and in a stable order.
func Select(peers []Peer, fingerprint, self string) []string {
	want := prefix(fingerprint)
	var out []string
	if len(want) != PrefixLen {
		return nil
	}
	for _, p := range peers {
		if p.ClusterPrefix == want && p.NodeID != self && !slices.Contains(out, p.Addr) {
			out = append(out, p.Addr)
		}
	}
	slices.Sort(out)
	return out
}

// Announcer answers mDNS queries for one member until closed.
type Announcer struct {
	server *mdns.Server
}

// Announce starts answering queries for a. It listens on the interface that holds the
// announced address, because that is the network on which peers can reach it; when no
// interface holds it (an address translated on the way), on the system's default multicast
// interface.
func Announce(a Advert, log *slog.Logger) (*Announcer, error) {
	host, portStr, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return nil, fmt.Errorf("mdns announce: gossip address %q: %w", a.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 {
		return nil, fmt.Errorf("mdns announce: gossip address %q has no port", a.Addr)
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("mdns announce: gossip address %q is not a specific IP", a.Addr)
	}
	if len(prefix(a.Fingerprint)) != PrefixLen {
		return nil, fmt.Errorf("mdns announce: cluster fingerprint %q is too short", a.Fingerprint)
	}
	// The host name only has to be unique; several nodes may share a machine name (or a
	// container image's), never a node ID.
	svc, err := mdns.NewMDNSService(a.NodeID, Service, "", a.NodeID+".local.", port, []net.IP{ip}, TXT(a))
	if err != nil {
		return nil, fmt.Errorf("mdns announce: %w", err)
	}
	iface := interfaceOf(ip)
	srv, err := mdns.NewServer(&mdns.Config{Zone: svc, Iface: iface, Logger: libLogger(log)})
	if err != nil {
		name := "the default multicast interface"
		if iface != nil {
			name = iface.Name
		}
		return nil, fmt.Errorf("mdns announce on %s: %w", name, err)
	}
	return &Announcer{server: srv}, nil
}

// Close stops answering.
func (a *Announcer) Close() error {
	if a == nil || a.server == nil {
		return nil
	}
	return a.server.Shutdown()
}

// interfaceOf finds the interface holding ip.
func interfaceOf(ip net.IP) *net.Interface {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for i := range ifaces {
		addrs, err := ifaces[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(ip) {
				return &ifaces[i]
			}
		}
	}
	return nil
}

// browseInterfaces are those a query goes out on: up, multicast-capable and not loopback
// (multicast over loopback is not delivered on most systems), with an address.
func browseInterfaces() []net.Interface {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []net.Interface
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagMulticast == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if addrs, err := ifc.Addrs(); err == nil && len(addrs) > 0 {
			out = append(out, ifc)
		}
	}
	return out
}

// Browse asks every suitable interface for announcements and collects the answers that
// arrive within wait. It fails only when no query could be sent at all.
func Browse(ctx context.Context, wait time.Duration, log *slog.Logger) ([]Peer, error) {
	ifaces := browseInterfaces()
	var mu sync.Mutex
	var peers []Peer
	var errs []string
	query := func(ifc *net.Interface) {
		entries := make(chan *mdns.ServiceEntry, 64)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for e := range entries {
				ip, zone := e.AddrV4, ""
				if ip == nil && e.AddrV6IPAddr != nil {
					ip, zone = e.AddrV6IPAddr.IP, e.AddrV6IPAddr.Zone
				}
				if p, ok := ParsePeer(e.InfoFields, ip, zone, e.Port); ok {
					mu.Lock()
					peers = append(peers, p)
					mu.Unlock()
				}
			}
		}()
		// The library gives up on a whole query when one address family fails: IPv4 needs a
		// route for 224.0.0.251 (any default route) to join the group, and sending over IPv6
		// fails on an interface without it. Setup and sending fail at once, before any wait,
		// so trying both families, then each alone, costs nothing where the first works.
		var err error
		for _, fam := range [][2]bool{{false, false}, {false, true}, {true, false}} {
			params := &mdns.QueryParam{Service: Service, Domain: "local", Timeout: wait, Interface: ifc, Entries: entries,
				DisableIPv4: fam[0], DisableIPv6: fam[1], Logger: libLogger(log)}
			if err = mdns.QueryContext(ctx, params); err == nil || ctx.Err() != nil {
				break
			}
		}
		close(entries)
		<-done
		if err != nil {
			name := "default interface"
			if ifc != nil {
				name = ifc.Name
			}
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	if len(ifaces) == 0 {
		query(nil)
	}
	for i := range ifaces {
		wg.Add(1)
		go func() { defer wg.Done(); query(&ifaces[i]) }()
	}
	wg.Wait()
	if len(errs) > 0 && len(errs) >= max(len(ifaces), 1) {
		return nil, fmt.Errorf("mdns query failed on every interface: %s", strings.Join(errs, "; "))
	}
	if len(errs) > 0 && log != nil {
		log.Debug("mdns query failed on some interfaces", "errors", errs)
	}
	return peers, nil
}

// libLogger turns the mdns library's log lines into debug records: its complaints (an
// interface without IPv6, a stray packet) are routine on a real network, and what matters is
// reported by the callers.
func libLogger(l *slog.Logger) *log.Logger {
	if l == nil {
		l = slog.Default()
	}
	return log.New(debugWriter{l}, "", 0)
}

type debugWriter struct{ l *slog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)), "lib", "mdns")
	return len(p), nil
}

var _ io.Writer = debugWriter{}
