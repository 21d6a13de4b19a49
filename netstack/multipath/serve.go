package multipath

import (
	"context"

	"github.com/exo-nix/exo/netstack/probe"
	"github.com/exo-nix/exo/netstack/transport"
)

// ServeConn accepts the streams of one connection until it ends: probes are answered, stripes
// join their bundles in acc, and each data stream or bundle is handed to handle in its own
// goroutine. Streams of other services are cancelled. It returns the connection's end.
func ServeConn(ctx context.Context, c transport.Conn, acc *Acceptor, handle func(transport.Conn, transport.FrameStream)) error {
	for {
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return err
		}
		switch s.Service() {
		case transport.ServiceProbe:
			go probe.Serve(s)
		case transport.ServiceStripe:
			go func() { _ = acc.Stripe(c, s) }()
		case transport.ServiceBundle:
			go func() {
				if b, err := acc.Bundle(c, s); err == nil {
					handle(c, b)
				}
			}()
		case transport.ServiceData:
			go handle(c, s)
		default:
			s.Cancel("unknown service " + s.Service().String())
		}
	}
}
