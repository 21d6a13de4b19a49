package cluster

import (
	"net"
	"net/netip"
	"strings"

	"github.com/exo-nix/exo/netstack/iface"
)

// tagTransportPaths lists the node's other addresses its tensor transport accepts on (IPs,
// comma separated, same port as tagTransport): peers reachable over several of them open a
// connection per path (multipath). Serf's tag budget bounds the list.
const tagTransportPaths = "trp"

const maxPathsTag = 100 // bytes

// transportPaths returns the tag value for a transport listening on listen and advertised as
// primary (host:port): every usable local address but the primary's, when the listener is bound
// to all of them; empty when it listens on one address only.
func transportPaths(listen, primary string, prefixes []netip.Prefix) string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if host != "" {
		if ip, err := netip.ParseAddr(host); err != nil || !ip.IsUnspecified() {
			return "" // bound to one address (or a name that resolves to one)
		}
	}
	ph, _, _ := net.SplitHostPort(primary)
	pip, _ := netip.ParseAddr(ph)
	var list []string
	used := 0
	for _, p := range prefixes {
		a := p.Addr()
		if a == pip.Unmap() {
			continue
		}
		if used+len(a.String())+1 > maxPathsTag {
			break
		}
		list = append(list, a.String())
		used += len(a.String()) + 1
	}
	return strings.Join(list, ",")
}

// localTransportPaths is transportPaths over this machine's usable addresses.
func localTransportPaths(listen, primary string) string {
	prefixes, err := iface.UsablePrefixes()
	if err != nil {
		return ""
	}
	return transportPaths(listen, primary, prefixes)
}

// pathAddrs turns a tagTransportPaths value into transport addresses (host:port) using the
// primary's port.
func pathAddrs(tag, primary string) []string {
	_, port, err := net.SplitHostPort(primary)
	if tag == "" || err != nil {
		return nil
	}
	var out []string
	for _, ip := range strings.Split(tag, ",") {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, net.JoinHostPort(a.String(), port))
		}
	}
	return out
}
