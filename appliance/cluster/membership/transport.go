// Package membership runs the node's gossip membership (hashicorp/serf over memberlist):
// encrypted with the cluster key, tuned to notice a dead node within seconds on a LAN, with the
// join exchange sharing the gossip port.
package membership

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exo-nix/exo/netstack/portbind"
	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// tlsHandshakeByte starts every TLS connection (a handshake record). memberlist's own stream
// messages start with a message type below 0x16, so the first byte tells the two apart and
// the join exchange can live on the gossip port that joiners already know.
const tlsHandshakeByte = 0x16

const udpBufSize = 65536

// Transport is a memberlist transport over one TCP and one UDP socket on the gossip port.
// TCP connections that open with a TLS handshake go to the join handler instead of memberlist.
type Transport struct {
	tcp       *net.TCPListener
	udp       *net.UDPConn
	advertise net.IP
	port      int
	join      func(net.Conn)
	log       *slog.Logger

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	shutdown atomic.Bool
	done     chan struct{}
	wg       sync.WaitGroup

	// UDP watch and the TCP packet path (packetstream.go).
	mu             sync.Mutex
	closing        bool
	self           string // the gossip address memberlist advertises
	peers          map[string]*udpPeer
	streams        map[string]*packetStream
	incoming       map[*peekedConn]struct{}
	tcpPacketsSent atomic.Int64
	// dropUDPIn and dropUDPOut make tests see what a firewall dropping UDP does.
	dropUDPIn, dropUDPOut atomic.Bool
}

// NewTransport binds addr (host:port; port 0 picks one) for TCP and UDP.
func NewTransport(addr string, advertise net.IP, join func(net.Conn), log *slog.Logger) (*Transport, error) {
	tcpAddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gossip.addr %s: %w", addr, err)
	}
	type sockets struct {
		tcp *net.TCPListener
		udp *net.UDPConn
	}
	s, err := portbind.Bind(addr, func() (sockets, error) {
		tcp, err := net.ListenTCP("tcp", tcpAddr)
		if err != nil {
			return sockets{}, fmt.Errorf("listen on gossip.addr %s (tcp): %w", addr, err)
		}
		port := tcp.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: tcpAddr.IP, Port: port})
		if err != nil {
			tcp.Close()
			return sockets{}, fmt.Errorf("listen on gossip.addr %s (udp port %d): %w", addr, port, err)
		}
		return sockets{tcp, udp}, nil
	})
	if err != nil {
		return nil, err
	}
	tcp, udp := s.tcp, s.udp
	port := tcp.Addr().(*net.TCPAddr).Port
	// A large receive buffer rides out bursts of gossip while the process is busy.
	_ = udp.SetReadBuffer(2 << 20)
	t := &Transport{tcp: tcp, udp: udp, advertise: advertise, port: port, join: join, log: log,
		packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn), done: make(chan struct{}),
		peers: map[string]*udpPeer{}, streams: map[string]*packetStream{}, incoming: map[*peekedConn]struct{}{}}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.readLoop()
	return t, nil
}

// Port is the bound port.
func (t *Transport) Port() int { return t.port }

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	adv := t.advertise
	if ip != "" {
		if adv = net.ParseIP(ip); adv == nil {
			return nil, 0, fmt.Errorf("advertise address %q is not an IP", ip)
		}
	}
	if adv == nil {
		return nil, 0, errors.New("no advertise address for gossip")
	}
	if port == 0 {
		port = t.port
	}
	t.mu.Lock()
	t.self = net.JoinHostPort(adv.String(), fmt.Sprint(port))
	t.mu.Unlock()
	return adv, port, nil
}

// WriteTo implements memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return time.Time{}, err
	}
	now := time.Now()
	key := ua.String()
	if tcp, deaf := t.noteSent(key, now); tcp {
		t.sendOverTCP(key, b, deaf)
	}
	if t.dropUDPOut.Load() {
		return now, nil
	}
	_, err = t.udp.WriteTo(b, ua)
	return now, err
}

func (t *Transport) selfAddr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.self == "" {
		return net.JoinHostPort(t.advertise.String(), fmt.Sprint(t.port))
	}
	return t.self
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// PacketCh implements memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
}

// StreamCh implements memberlist.Transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport.
func (t *Transport) Shutdown() error {
	if t.shutdown.Swap(true) {
		return nil
	}
	t.mu.Lock()
	t.closing = true
	for c := range t.incoming {
		c.Close()
	}
	t.mu.Unlock()
	close(t.done)
	t.tcp.Close()
	t.udp.Close()
	t.wg.Wait()
	return nil
}

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	delay := 5 * time.Millisecond
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.log.Warn("gossip accept failed", "err", err)
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		go t.route(c)
	}
}

// route reads the first byte off a new connection and hands it to the join handler or to
// memberlist.
func (t *Transport) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	if first[0] == packetStreamByte {
		t.servePacketStream(pc)
		return
	}
	if first[0] == tlsHandshakeByte {
		if t.join == nil {
			c.Close()
			return
		}
		t.join(pc)
		return
	}
	select {
	case t.streamCh <- pc:
	case <-t.done:
		c.Close()
	}
}

func (t *Transport) readLoop() {
	defer t.wg.Done()
	for {
		buf := make([]byte, udpBufSize)
		n, addr, err := t.udp.ReadFrom(buf)
		ts := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.log.Warn("gossip packet read failed", "err", err)
			continue
		}
		if n < 1 || t.dropUDPIn.Load() {
			continue
		}
		t.noteHeard(addr.String(), ts)
		select {
		case t.packetCh <- &memberlist.Packet{Buf: buf[:n], From: addr, Timestamp: ts}:
		case <-t.done:
			return
		}
	}
}

// peekedConn is a connection whose first bytes were read into r already.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// AdvertiseIP picks the address other members reach a listener bound to host at: the host
// itself when it is a specific address, else a private address of this machine (as memberlist
// does), else any global unicast address, else loopback (a one-machine cluster).
func AdvertiseIP(host string) (net.IP, error) {
	if host != "" {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return ip, nil
		}
		if net.ParseIP(host) == nil {
			ips, err := net.LookupIP(host)
			if err != nil || len(ips) == 0 {
				return nil, fmt.Errorf("resolve %q to advertise it: %v", host, err)
			}
			return ips[0], nil
		}
	}
	if s, err := sockaddr.GetPrivateIP(); err == nil && s != "" {
		if ip := net.ParseIP(strings.Fields(s)[0]); ip != nil {
			return ip, nil
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
			return ipn.IP, nil
		}
	}
	return net.IPv4(127, 0, 0, 1), nil
}

// AdvertiseAddr is AdvertiseIP for a host:port, keeping the port.
func AdvertiseAddr(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	ip, err := AdvertiseIP(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), port), nil
}
