// Package portbind binds a node's fixed listening ports and rides out the moment in which an
// outgoing socket holds one. exo's default ports (52415-52418) lie inside Linux's default
// ephemeral range (32768-60999), from which the kernel picks the local port of every outgoing
// connection and unbound UDP socket: an mDNS query, a QUIC dial or an HTTP request of any
// process in the network namespace can own the port for a moment just when exo binds it. The
// lasting fix is to reserve the ports (net.ipv4.ip_local_reserved_ports; the NixOS module
// does); without it, Bind waits a few seconds for such a socket to go, and then names the
// cause in its error.
package portbind

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Wait is how long Bind keeps trying a port that an outgoing socket may hold. Short-lived
// holders (a DNS or mDNS query, a failed dial) are gone well within it.
var Wait = 3 * time.Second

// retryEvery is the pause between tries.
const retryEvery = 100 * time.Millisecond

// Range is an inclusive range of ports.
type Range struct{ Low, High int }

// Policy is the kernel's choice of automatic local ports: the ephemeral range and the ports
// reserved from it.
type Policy struct {
	Ephemeral Range
	Reserved  []Range
}

// Exposed reports whether the kernel may hand port to an outgoing socket: it lies in the
// ephemeral range and is not reserved.
func (p Policy) Exposed(port int) bool {
	if port < p.Ephemeral.Low || port > p.Ephemeral.High {
		return false
	}
	for _, r := range p.Reserved {
		if port >= r.Low && port <= r.High {
			return false
		}
	}
	return true
}

// DefaultSysctlDir holds the kernel's IPv4 settings of the caller's network namespace.
const DefaultSysctlDir = "/proc/sys/net/ipv4"

// ReadPolicy reads ip_local_port_range and ip_local_reserved_ports from dir (DefaultSysctlDir
// on Linux).
func ReadPolicy(dir string) (Policy, error) {
	var p Policy
	path := filepath.Join(dir, "ip_local_port_range")
	b, err := os.ReadFile(path)
	if err != nil {
		return p, fmt.Errorf("read %s: %w", path, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return p, fmt.Errorf("%s: want two ports, got %q", path, strings.TrimSpace(string(b)))
	}
	lo, err1 := parsePort(f[0])
	hi, err2 := parsePort(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	p.Ephemeral = Range{lo, hi}
	path = filepath.Join(dir, "ip_local_reserved_ports")
	if b, err = os.ReadFile(path); err != nil {
		return p, fmt.Errorf("read %s: %w", path, err)
	}
	if p.Reserved, err = ParseList(string(b)); err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ParseList parses the kernel's port list syntax ("8080,52415-52418"; empty for none).
func ParseList(s string) ([]Range, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []Range
	for _, item := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(item), "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("port list item %q: %w", item, err)
		}
		r := Range{a, a}
		if isRange {
			if r.High, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("port list item %q: %w", item, err)
			}
			if r.High < r.Low {
				return nil, fmt.Errorf("port list item %q: range ends before it starts", item)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	return n, nil
}

// Bind calls bind, which binds addr (host:port), and returns its result. When the port is busy
// and the kernel may have given it to an outgoing socket, Bind tries again for up to Wait;
// should the port stay busy, the error says why that can happen and how to prevent it. A port
// outside the ephemeral range (or reserved) that is busy has a listener on it, so that error
// comes back at once.
func Bind[T any](addr string, bind func() (T, error)) (T, error) {
	v, err := bind()
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return v, err
	}
	_, ps, splitErr := net.SplitHostPort(addr)
	port, portErr := strconv.Atoi(ps)
	if splitErr != nil || portErr != nil || port == 0 {
		return v, err
	}
	pol, polErr := ReadPolicy(DefaultSysctlDir)
	if polErr != nil || !pol.Exposed(port) {
		return v, err
	}
	// Every exo port has a TCP listener; when one is there already, this is a second program
	// configured with the same port (another exo, say), not a passing socket.
	if ListeningTCP(DefaultProcNetDir, port) {
		return v, fmt.Errorf("%w (a program listens on TCP port %d)", err, port)
	}
	for deadline := time.Now().Add(Wait); time.Now().Before(deadline); {
		time.Sleep(retryEvery)
		if v, err = bind(); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			return v, err
		}
	}
	return v, fmt.Errorf("%w (still, after %s: port %d lies in the kernel's ephemeral port range %d-%d and is not reserved, so an outgoing socket may hold it; add it to the sysctl net.ipv4.ip_local_reserved_ports, as the NixOS module does for its units)",
		err, Wait, port, pol.Ephemeral.Low, pol.Ephemeral.High)
}

// DefaultProcNetDir holds the socket tables of the caller's network namespace.
const DefaultProcNetDir = "/proc/net"

// tcpListen is the state column's value for a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// ListeningTCP reports whether the socket tables (tcp and tcp6 in dir) hold a listening socket
// on port. Unreadable tables count as none.
func ListeningTCP(dir string, port int) bool {
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != tcpListen {
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
				return true
			}
		}
	}
	return false
}
