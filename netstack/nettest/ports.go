package nettest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Ports FreePort handed out in this process: never twice.
var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// FreePort returns a loopback address ("127.0.0.1:port") nobody listens on right now, for TCP
// and UDP both (gossip and the tensor transport bind both). The port is drawn below the
// kernel's ephemeral range (32768 and up), where other processes' port-0 binds do not land
// between this check and the caller's own bind, and it is never handed out twice in one test
// process: a port just closed can come back from the kernel's next port-0 bind, and two of a
// node's addresses once collided that way.
func FreePort(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = u.Close()
		portsGiven[port] = true
		return addr
	}
	t.Fatal("no free loopback port (TCP and UDP) in 20000-31999 after 1000 tries")
	return ""
}
