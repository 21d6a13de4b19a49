package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/gofiber/fiber/v3"
)

// Event is one state change pushed to dashboards over /api/v1/events.
type Event struct {
	Type string `json:"type"`
	Data any    `json:"data,omitempty"`
}

// Broker fans events out to subscribers. A slow subscriber loses events rather than stalling
// the publisher; the dashboard re-reads full state on reconnect.
type Broker struct {
	mu     sync.Mutex
	subs   map[chan Event]struct{}
	closed bool
}

// NewBroker returns an empty broker.
func NewBroker() *Broker { return &Broker{subs: map[chan Event]struct{}{}} }

// Publish delivers e to every subscriber that has room for it.
func (b *Broker) Publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// Subscribe returns a channel of events and a function that ends the subscription. The channel
// is closed when the broker closes (shutdown).
func (b *Broker) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 64)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	b.subs[ch] = struct{}{}
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}
}

// Close ends every subscription.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}

// keepAlive is how often an idle event stream gets an SSE comment, so that proxies and clients
// see a live connection.
var keepAlive = 15 * time.Second

// eventStream serves Server-Sent Events. On shutdown it sends a final "shutdown" event and ends
// the response properly, so clients see a finished stream rather than a cut connection.
func (s *Server) eventStream(c fiber.Ctx) error {
	events, cancel := s.events.Subscribe()
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	node := s.opt.NodeName
	return c.SendStreamWriter(func(w *bufio.Writer) {
		defer cancel()
		tick := time.NewTicker(keepAlive)
		defer tick.Stop()
		if writeEvent(w, Event{Type: "hello", Data: map[string]string{"node": node}}) != nil {
			return
		}
		for {
			select {
			case e, ok := <-events:
				if !ok {
					_ = writeEvent(w, Event{Type: "shutdown", Data: map[string]string{"node": node}})
					return
				}
				if writeEvent(w, e) != nil {
					return
				}
			case <-tick.C:
				if _, err := w.WriteString(": keep-alive\n\n"); err != nil {
					return
				}
				if w.Flush() != nil {
					return
				}
			}
		}
	})
}

func writeEvent(w *bufio.Writer, e Event) error {
	data, err := json.Marshal(e.Data)
	if err != nil {
		data = []byte("null")
	}
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, data); err != nil {
		return err
	}
	return w.Flush()
}
