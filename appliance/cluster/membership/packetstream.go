package membership

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// Where UDP between two members is blocked (a firewall that lets only TCP through),
// memberlist still probes over TCP when a UDP probe fails, but its gossip (suspicions,
// refutations, tag changes) rides on UDP alone, so a node whose TCP probe came back a little
// late was suspected and declared failed with nobody able to tell it, and tag changes waited
// for the next push-pull (10 s). The transport therefore watches, per peer, whether UDP comes
// back, and while it does not it sends every packet for that peer over a TCP connection as
// well: one per peer, opened with packetStreamByte and the sender's gossip address, then
// length-prefixed packets, which the receiver hands to memberlist as if they came by UDP.
// A firewall may drop UDP one way only: the side that hears nothing falls back to TCP and marks
// its packets so (deafFlag), and the other learns from them that its own UDP does not arrive
// and sends over TCP too for as long as they come. Its own packets are not marked, so the two
// do not keep each other on TCP once UDP is back.
// Packets stay encrypted with the cluster key as memberlist made them; a duplicate (both
// copies arriving) is harmless to memberlist, which treats a repeated ack or broadcast as
// already seen.
const packetStreamByte = 0xEF

// deafFlag, in a packet's length word, says the sender hears no UDP from the receiver.
const deafFlag = 1 << 31

const (
	// udpSilence is how long packets to a peer go unanswered by any UDP packet from it before
	// they go over TCP too. Members probe one another several times a second in a small cluster.
	udpSilence = 2 * time.Second
	// unansweredSends must also have gone out in that time, so that one gossip send to a
	// quiet peer of a large cluster does not open a connection.
	unansweredSends = 3
	// streamIdle closes a peer's packet connection nobody used for this long.
	streamIdle = 30 * time.Second
	// streamDialTimeout bounds the dial; a failed dial is not retried within redialAfter.
	streamDialTimeout  = time.Second
	redialAfter        = time.Second
	streamWriteTimeout = 2 * time.Second
	// streamReadIdle closes a received packet connection silent for this long.
	streamReadIdle = 2 * streamIdle
	// tcpEcho is how long a peer's last packet over TCP keeps ours going over TCP too.
	tcpEcho = 5 * time.Second
	// peerForget drops the UDP bookkeeping of an address not written to for this long.
	peerForget = 10 * time.Minute
	// maxPeers bounds the entries that packets over TCP alone may make.
	maxPeers = 4096
)

// udpPeer is what the transport knows about UDP to and from one gossip address.
type udpPeer struct {
	lastActive time.Time
	// unansweredSince is the first send after the last UDP packet heard from the peer; zero
	// when nothing has been sent since.
	unansweredSince time.Time
	unanswered      int
	overTCP         bool
	// tcpHeard is when the peer last sent a packet marked deaf: it does not hear our UDP.
	tcpHeard time.Time
	echo     bool
}

// packetStream is the sending side of one peer's packet connection.
type packetStream struct {
	ch chan queued
}

type queued struct {
	b    []byte
	deaf bool
}

// noteSent records a UDP send to addr and reports whether the packet should also go over TCP,
// and whether because no UDP comes from addr.
func (t *Transport) noteSent(addr string, now time.Time) (tcp, deaf bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peer(addr, now)
	p.lastActive = now
	if p.unansweredSince.IsZero() {
		p.unansweredSince = now
	}
	p.unanswered++
	if !p.overTCP && p.unanswered >= unansweredSends && now.Sub(p.unansweredSince) >= udpSilence {
		p.overTCP = true
		t.log.Info("gossip to a peer goes over TCP too: no UDP packet from it since packets to it began", "peer", addr, "for", now.Sub(p.unansweredSince).Round(time.Millisecond))
	}
	echo := now.Sub(p.tcpHeard) < tcpEcho
	if echo && !p.echo {
		t.log.Info("gossip to a peer goes over TCP too: it sends over TCP, so our UDP does not reach it", "peer", addr)
	}
	p.echo = echo
	return p.overTCP || echo, p.overTCP
}

// peer returns addr's entry, making it; t.mu is held.
func (t *Transport) peer(addr string, now time.Time) *udpPeer {
	p := t.peers[addr]
	if p == nil {
		t.forgetPeers(now)
		p = &udpPeer{lastActive: now}
		t.peers[addr] = p
	}
	return p
}

// noteTCPHeard records a packet from addr over TCP marked deaf. The address is what the
// connection claims (its packets are checked by memberlist, not here), so a stranger's claims
// make no new entries beyond maxPeers.
func (t *Transport) noteTCPHeard(addr string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[addr]; p != nil {
		p.tcpHeard = now
		return
	}
	if t.forgetPeers(now); len(t.peers) < maxPeers {
		t.peer(addr, now).tcpHeard = now
	}
}

// noteHeard records a UDP packet from addr: UDP works between the two again.
func (t *Transport) noteHeard(addr string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[addr]
	if p == nil {
		return
	}
	if p.overTCP {
		t.log.Info("UDP from a peer again: its gossip goes over UDP alone", "peer", addr)
	}
	p.unansweredSince, p.unanswered, p.overTCP = time.Time{}, 0, false
}

// forgetPeers drops peers not written to within peerForget; t.mu is held.
func (t *Transport) forgetPeers(now time.Time) {
	for a, p := range t.peers {
		if now.Sub(p.lastActive) > peerForget {
			delete(t.peers, a)
		}
	}
}

// sendOverTCP queues a copy of b on addr's packet connection, starting it if needed. A full
// queue drops the packet, as a full socket buffer drops a datagram.
func (t *Transport) sendOverTCP(addr string, b []byte, deaf bool) {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return
	}
	s := t.streams[addr]
	if s == nil {
		s = &packetStream{ch: make(chan queued, 128)}
		t.streams[addr] = s
		t.wg.Add(1)
		go t.runStream(addr, s)
	}
	t.mu.Unlock()
	select {
	case s.ch <- queued{append([]byte(nil), b...), deaf}:
		t.tcpPacketsSent.Add(1)
	default:
	}
}

// runStream writes the packets queued for addr on one TCP connection, redialling after an
// error, until the transport shuts down or nothing was queued for streamIdle.
func (t *Transport) runStream(addr string, s *packetStream) {
	defer t.wg.Done()
	var conn net.Conn
	var w *bufio.Writer
	var lastFail time.Time
	closeConn := func() {
		if conn != nil {
			conn.Close()
			conn, w = nil, nil
		}
	}
	defer closeConn()
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-idle.C:
			t.mu.Lock()
			if len(s.ch) == 0 {
				delete(t.streams, addr)
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
			idle.Reset(streamIdle)
		case q := <-s.ch:
			idle.Reset(streamIdle)
			if conn == nil {
				if time.Since(lastFail) < redialAfter {
					continue
				}
				c, err := t.dialPacketStream(addr)
				if err != nil {
					lastFail = time.Now()
					t.log.Debug("gossip packet connection failed", "peer", addr, "err", err)
					continue
				}
				conn, w = c, bufio.NewWriter(c)
			}
			if err := t.writePacket(conn, w, q, s.ch); err != nil {
				t.log.Debug("gossip packet connection broke", "peer", addr, "err", err)
				closeConn()
			}
		}
	}
}

func (t *Transport) dialPacketStream(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, streamDialTimeout)
	if err != nil {
		return nil, err
	}
	self := t.selfAddr()
	hdr := append([]byte{packetStreamByte, byte(len(self))}, self...)
	_ = c.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// writePacket writes q and whatever else is queued already, then flushes.
func (t *Transport) writePacket(c net.Conn, w *bufio.Writer, q queued, more chan queued) error {
	_ = c.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	var n [4]byte
	for {
		word := uint32(len(q.b))
		if q.deaf {
			word |= deafFlag
		}
		binary.BigEndian.PutUint32(n[:], word)
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(q.b); err != nil {
			return err
		}
		select {
		case q = <-more:
			continue
		default:
		}
		return w.Flush()
	}
}

// readPackets hands the packets of an incoming packet connection to memberlist.
func (t *Transport) readPackets(c net.Conn, r *bufio.Reader) error {
	_ = c.SetReadDeadline(time.Now().Add(streamReadIdle))
	if _, err := r.ReadByte(); err != nil { // packetStreamByte, already peeked
		return err
	}
	n, err := r.ReadByte()
	if err != nil {
		return err
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return fmt.Errorf("read sender address: %w", err)
	}
	ap, err := netip.ParseAddrPort(string(name))
	if err != nil {
		return fmt.Errorf("sender address %q: %w", name, err)
	}
	from := net.UDPAddrFromAddrPort(ap)
	key := from.String()
	var hdr [4]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(streamReadIdle))
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		word := binary.BigEndian.Uint32(hdr[:])
		size := word &^ deafFlag
		if size == 0 || size > udpBufSize {
			return fmt.Errorf("packet of %d bytes from %s (at most %d)", size, from, udpBufSize)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		if word&deafFlag != 0 {
			t.noteTCPHeard(key, time.Now())
		}
		select {
		case t.packetCh <- &memberlist.Packet{Buf: buf, From: from, Timestamp: time.Now()}:
		case <-t.done:
			return nil
		}
	}
}

// servePacketStream runs readPackets on an accepted connection, closing it on shutdown.
func (t *Transport) servePacketStream(pc *peekedConn) {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		pc.Close()
		return
	}
	t.incoming[pc] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.incoming, pc)
		t.mu.Unlock()
		pc.Close()
		t.wg.Done()
	}()
	if err := t.readPackets(pc.Conn, pc.r); err != nil && !t.shutdown.Load() {
		t.log.Debug("gossip packet connection ended", "remote", pc.RemoteAddr(), "err", err)
	}
}
