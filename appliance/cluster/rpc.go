package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/exo-nix/exo/appliance/cluster/pki"
)

// Control RPC: members that are not the raft leader (API nodes, workers, followers) ask a
// master over mutual TLS on its raft port (ALPN exo-rpc/1). One JSON request line, one JSON
// response line per connection: control calls are rare and small.
type rpcRequest struct {
	Method string          `json:"method"`
	Body   json.RawMessage `json:"body,omitempty"`
	// Forwarded marks a call a follower passed on to the leader, so that it is not passed on
	// again while leadership moves.
	Forwarded bool `json:"forwarded,omitempty"`
}

type rpcResponse struct {
	Status     int             `json:"status,omitempty"`
	Error      string          `json:"error,omitempty"`
	ShortBytes uint64          `json:"short_bytes,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
}

const rpcTimeout = 15 * time.Second

// rpcCaller is the member at the other end of a control RPC, from its certificate; dispatch
// finds it in the context of remote calls (local calls have none).
type rpcCaller struct {
	id    string
	roles []string
}

type rpcCallerKey struct{}

func callerOf(conn *tls.Conn) rpcCaller {
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return rpcCaller{}
	}
	return rpcCaller{id: certs[0].Subject.CommonName, roles: pki.CertRoles(certs[0])}
}

// serveRPC runs one exchange on an accepted, authenticated connection.
func (n *Node) serveRPC(conn *tls.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(rpcTimeout + 5*time.Second))
	line, err := bufio.NewReaderSize(conn, 1<<20).ReadBytes('\n')
	if err != nil {
		return
	}
	var req rpcRequest
	var resp rpcResponse
	if err := json.Unmarshal(line, &req); err != nil {
		resp = rpcResponse{Status: http.StatusBadRequest, Error: "malformed rpc request"}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		ctx = context.WithValue(ctx, rpcCallerKey{}, callerOf(conn))
		out, err := n.dispatch(ctx, req)
		cancel()
		if err != nil {
			ce := classify(err).(*Error)
			resp = rpcResponse{Status: ce.Status, Error: ce.Msg, ShortBytes: ce.ShortBytes}
		} else if resp.Body, err = json.Marshal(out); err != nil {
			resp = rpcResponse{Status: http.StatusInternalServerError, Error: "encode rpc response: " + err.Error()}
		}
	}
	data, _ := json.Marshal(resp)
	_, _ = conn.Write(append(data, '\n'))
}

// call runs method on the master at addr (a raft address).
func (n *Node) call(ctx context.Context, addr, method string, body, out any, forwarded bool) error {
	creds := n.credentials()
	if creds == nil {
		return ErrNotInCluster
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: pki.ClientTLS(creds.CA, creds.TLS(), pki.ALPNRPC)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return &unreachableError{addr: addr, err: err}
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req, _ := json.Marshal(rpcRequest{Method: method, Body: raw, Forwarded: forwarded})
	if _, err := c.Write(append(req, '\n')); err != nil {
		return &unreachableError{addr: addr, err: err}
	}
	line, err := bufio.NewReaderSize(c, 1<<20).ReadBytes('\n')
	if err != nil {
		return &unreachableError{addr: addr, err: err}
	}
	var resp rpcResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("rpc %s at %s: malformed response: %w", method, addr, err)
	}
	if resp.Error != "" {
		return &Error{Status: resp.Status, Msg: resp.Error, ShortBytes: resp.ShortBytes}
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return fmt.Errorf("rpc %s at %s: decode response: %w", method, addr, err)
		}
	}
	return nil
}

// unreachableError says a master could not be reached; the caller may try another.
type unreachableError struct {
	addr string
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("master %s unreachable: %v", e.addr, e.err)
}
func (e *unreachableError) Unwrap() error { return e.err }

// callMasters runs method on a master: the leader first, then the others, skipping those that
// cannot be reached.
func (n *Node) callMasters(ctx context.Context, method string, body, out any) error {
	addrs := n.masterRaftAddrs()
	if len(addrs) == 0 {
		return errorf(http.StatusServiceUnavailable, "no live master known to this node")
	}
	var errs []error
	for _, a := range addrs {
		err := n.call(ctx, a, method, body, out, false)
		var ue *unreachableError
		if errors.As(err, &ue) {
			errs = append(errs, err)
			continue
		}
		return err
	}
	return errorf(http.StatusServiceUnavailable, "no master reachable: %v", errors.Join(errs...))
}
