// Package probe measures each path to a peer: round-trip time with small pings and bandwidth with
// a bulk transfer timed by the receiver. A Prober measures a path when it is added, then pings it
// in the background and re-measures bandwidth rarely; its estimates feed multipath striping,
// placement, /api/v1/cluster and /metrics.
//
// Probes run on their own ServiceProbe stream of the path's connection; the peer answers them
// with Serve.
package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/exo-nix/exo/netstack/transport"
)

// Probe messages (client → server), each answered before the next is sent:
//
//	'P' seq[8]               → 'P' seq[8]
//	'B' n[8] then n bytes    → 'B' n[8] measuredBytes[8] measuredNanos[8]
//
// The receiver times a bulk transfer from the arrival of its header to the arrival of its last
// byte; the sender times it from its first write to the answer, less one round trip. The longer
// of the two counts: the receiver's clock alone overestimates over TCP, where yamux holds a stream
// while it receives a whole window-sized frame, so the header is seen only with the payload.
const (
	opPing = 'P'
	opBulk = 'B'
)

// maxBulk bounds what a peer may ask Serve to swallow in one bulk message.
const maxBulk = 1 << 30

// Serve answers probes on a ServiceProbe stream until the prober closes it.
func Serve(s transport.Stream) {
	clean := false
	defer func() {
		if clean {
			_ = s.CloseWrite()
		} else {
			s.Cancel("probe: malformed or broken probe")
		}
	}()
	var hdr [9]byte
	buf := make([]byte, 256<<10)
	for {
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			clean = err == io.EOF
			return
		}
		switch hdr[0] {
		case opPing:
			if _, err := s.Write(hdr[:]); err != nil {
				return
			}
		case opBulk:
			n := binary.LittleEndian.Uint64(hdr[1:])
			if n == 0 || n > maxBulk {
				return
			}
			t0 := time.Now()
			var got uint64
			for got < n {
				k, err := s.Read(buf[:min(uint64(len(buf)), n-got)])
				got += uint64(k)
				if err != nil {
					return
				}
			}
			elapsed := time.Since(t0)
			var ans [25]byte
			ans[0] = opBulk
			binary.LittleEndian.PutUint64(ans[1:], n)
			binary.LittleEndian.PutUint64(ans[9:], n)
			binary.LittleEndian.PutUint64(ans[17:], uint64(elapsed.Nanoseconds()))
			if _, err := s.Write(ans[:]); err != nil {
				return
			}
		default:
			return
		}
	}
}

// Session is a probe stream to one peer over one connection.
type Session struct {
	s       transport.Stream
	peer    string
	seq     uint64
	bulk    []byte
	lastRTT time.Duration
}

// Open starts a probe session on conn.
func Open(ctx context.Context, conn transport.Conn) (*Session, error) {
	s, err := conn.OpenStream(ctx, transport.ServiceProbe)
	if err != nil {
		return nil, fmt.Errorf("probe: open stream to %s: %w", conn.RemoteAddr(), err)
	}
	return &Session{s: s, peer: conn.RemoteAddr().String()}, nil
}

// Close ends the session.
func (p *Session) Close() error { return p.s.CloseWrite() }

func (p *Session) deadline(ctx context.Context, fallback time.Duration) func() {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(fallback)
	}
	_ = p.s.SetDeadline(d)
	stop := context.AfterFunc(ctx, func() { _ = p.s.SetDeadline(time.Now()) })
	return func() {
		stop()
		_ = p.s.SetDeadline(time.Time{})
	}
}

// RTT sends n pings one after another and returns the median round trip.
func (p *Session) RTT(ctx context.Context, n int) (time.Duration, error) {
	if n <= 0 {
		n = 1
	}
	defer p.deadline(ctx, 10*time.Second)()
	var msg, ans [9]byte
	rtts := make([]time.Duration, 0, n)
	for range n {
		p.seq++
		msg[0] = opPing
		binary.LittleEndian.PutUint64(msg[1:], p.seq)
		start := time.Now()
		if _, err := p.s.Write(msg[:]); err != nil {
			return 0, fmt.Errorf("probe: ping %s: %w", p.peer, err)
		}
		if _, err := io.ReadFull(p.s, ans[:]); err != nil {
			return 0, fmt.Errorf("probe: ping %s: %w", p.peer, err)
		}
		rtts = append(rtts, time.Since(start))
		if ans != msg {
			return 0, fmt.Errorf("probe: %s answered ping %d with % x", p.peer, p.seq, ans)
		}
	}
	slices.Sort(rtts)
	p.lastRTT = rtts[0]
	return rtts[len(rtts)/2], nil
}

// BandwidthOptions shape a bandwidth measurement.
type BandwidthOptions struct {
	// Target is how long the final transfer should take to give a steady rate (default 250 ms).
	Target time.Duration
	// Initial is the first transfer's size (default 1 MiB); later ones grow towards Target.
	Initial int
	// Max bounds one transfer (default 64 MiB), and so the cost of a probe on a fast link.
	Max int
}

func (o BandwidthOptions) withDefaults() BandwidthOptions {
	if o.Target <= 0 {
		o.Target = 250 * time.Millisecond
	}
	if o.Initial <= 0 {
		o.Initial = 1 << 20
	}
	if o.Max <= 0 {
		o.Max = 64 << 20
	}
	return o
}

// Bandwidth measures the rate in bytes per second from here to the peer. Transfers start at
// opts.Initial and grow until one lasts opts.Target (or reaches opts.Max); that one and one more
// of its size count, because the first ones mostly measure slow start.
func (p *Session) Bandwidth(ctx context.Context, opts BandwidthOptions) (float64, error) {
	opts = opts.withDefaults()
	if p.lastRTT == 0 {
		if _, err := p.RTT(ctx, 3); err != nil {
			return 0, err
		}
	}
	defer p.deadline(ctx, 30*time.Second)()
	size := min(opts.Initial, opts.Max)
	for {
		bytes, elapsed, err := p.bulk1(size)
		if err != nil {
			return 0, err
		}
		if elapsed >= opts.Target || size >= opts.Max {
			// One more transfer of the same size, and the better of the two counts: a single
			// loss that cost a retransmission timeout says little about the link's capacity.
			bytes2, elapsed2, err := p.bulk1(size)
			if err != nil {
				return 0, err
			}
			if elapsed <= 0 || elapsed2 <= 0 {
				return 0, fmt.Errorf("probe: bandwidth to %s: a %d-byte transfer took no measurable time; raise Max", p.peer, size)
			}
			return max(float64(bytes)/elapsed.Seconds(), float64(bytes2)/elapsed2.Seconds()), nil
		}
		grow := 16.0
		if elapsed > 0 {
			grow = min(16, max(2, 1.3*opts.Target.Seconds()/elapsed.Seconds()))
		}
		size = min(opts.Max, int(float64(size)*grow))
	}
}

func (p *Session) bulk1(size int) (uint64, time.Duration, error) {
	if cap(p.bulk) < size {
		p.bulk = make([]byte, size)
	}
	var hdr [9]byte
	hdr[0] = opBulk
	binary.LittleEndian.PutUint64(hdr[1:], uint64(size))
	start := time.Now()
	if _, err := p.s.Write(hdr[:]); err != nil {
		return 0, 0, fmt.Errorf("probe: bandwidth to %s: %w", p.peer, err)
	}
	if _, err := p.s.Write(p.bulk[:size]); err != nil {
		return 0, 0, fmt.Errorf("probe: bandwidth to %s: %w", p.peer, err)
	}
	var ans [25]byte
	if _, err := io.ReadFull(p.s, ans[:]); err != nil {
		return 0, 0, fmt.Errorf("probe: bandwidth to %s: %w", p.peer, err)
	}
	wall := time.Since(start) - p.lastRTT
	if ans[0] != opBulk || binary.LittleEndian.Uint64(ans[1:]) != uint64(size) {
		return 0, 0, fmt.Errorf("probe: %s answered a %d-byte transfer with % x", p.peer, size, ans[:9])
	}
	return binary.LittleEndian.Uint64(ans[9:]), max(wall, time.Duration(binary.LittleEndian.Uint64(ans[17:]))), nil
}

// ErrUnknownPath is returned for a path id the Prober does not have.
var ErrUnknownPath = errors.New("probe: unknown path")
