package pki

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"
)

// ALPNJoin is the protocol of the join exchange, served on the gossip port.
const ALPNJoin = "exo-join/1"

// joinTimeout bounds one join exchange on either side.
const joinTimeout = 10 * time.Second

// The join exchange: after a TLS handshake in which only the server authenticates, the joiner
// sends one JSON request line and reads one JSON response line.
type joinRequest struct {
	Token  string   `json:"token,omitempty"`
	NodeID string   `json:"node_id"`
	Name   string   `json:"name"`
	Roles  []string `json:"roles"`
	CSR    []byte   `json:"csr"`
}

type joinResponse struct {
	Error     string   `json:"error,omitempty"`
	Redirect  []string `json:"redirect,omitempty"`
	CA        []byte   `json:"ca,omitempty"`
	Cert      []byte   `json:"cert,omitempty"`
	GossipKey []byte   `json:"gossip_key,omitempty"`
	CAKey     []byte   `json:"ca_key,omitempty"`
	Secret    []byte   `json:"secret,omitempty"`
}

// JoinServer admits nodes that present a valid token. Every member runs one; members that
// cannot sign check the token and then point the joiner at the masters.
type JoinServer struct {
	Creds   func() *Credentials
	Masters func() []string // gossip addresses of live masters, for redirects
	Log     *slog.Logger
	Now     func() time.Time
	// Admitted is called after a node was given credentials (for logging and metrics).
	Admitted func(nodeID, name string, roles []string)
}

// Serve runs one join exchange on a connection that starts with a TLS ClientHello.
func (s *JoinServer) Serve(raw net.Conn) {
	defer raw.Close()
	remote := raw.RemoteAddr().String()
	creds := s.Creds()
	if creds == nil {
		s.Log.Warn("join refused", "remote", remote, "reason", "this node is not a cluster member yet")
		return
	}
	_ = raw.SetDeadline(time.Now().Add(joinTimeout))
	conn := tls.Server(raw, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{creds.TLS()},
		NextProtos:   []string{ALPNJoin},
	})
	if err := conn.Handshake(); err != nil {
		// A joiner whose token names another CA aborts the handshake itself.
		s.Log.Warn("join refused", "remote", remote, "reason", "TLS handshake failed (wrong cluster or not an exo join)", "err", err)
		return
	}
	var req joinRequest
	line, err := bufio.NewReaderSize(conn, 64<<10).ReadBytes('\n')
	if err != nil {
		s.Log.Warn("join refused", "remote", remote, "reason", "no request", "err", err)
		return
	}
	if err := json.Unmarshal(line, &req); err != nil {
		s.Log.Warn("join refused", "remote", remote, "reason", "malformed request", "err", err)
		s.reply(conn, joinResponse{Error: "malformed join request"})
		return
	}
	refuse := func(reason string, attrs ...any) {
		s.Log.Warn("join refused", append([]any{"remote", remote, "node_id", req.NodeID, "name", req.Name, "reason", reason}, attrs...)...)
		// The joiner learns that it was refused and a coarse reason, nothing about the cluster.
		s.reply(conn, joinResponse{Error: "join refused: " + reason})
	}
	if req.Token == "" {
		refuse("no token")
		return
	}
	tok, err := ParseToken(req.Token)
	if err != nil {
		refuse("malformed token")
		return
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	if err := tok.Verify(creds.CA, now); err != nil {
		reason := "invalid token"
		switch {
		case errors.Is(err, ErrTokenExpired):
			reason = "token expired"
		case errors.Is(err, ErrTokenCluster):
			reason = "token of another cluster"
		}
		refuse(reason, "token_id", tok.IDHex(), "err", err)
		return
	}
	if denied := tok.Role.Denied(req.Roles); len(denied) > 0 {
		// Checked before a redirect too, so that a joiner learns at once that its token is
		// too weak, and no master address is revealed for a join that cannot succeed.
		refuse(fmt.Sprintf("a %s token does not admit the %s role", tok.Role, strings.Join(denied, ",")),
			"token_id", tok.IDHex(), "token_role", tok.Role.String(), "roles", req.Roles)
		return
	}
	if !creds.CanSign() {
		masters := s.Masters()
		if len(masters) == 0 {
			refuse("no master reachable to sign")
			return
		}
		s.Log.Info("join redirected to masters", "remote", remote, "node_id", req.NodeID, "masters", masters)
		s.reply(conn, joinResponse{Redirect: masters})
		return
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || csr.CheckSignature() != nil {
		refuse("bad certificate request")
		return
	}
	if csr.Subject.CommonName != req.NodeID || len(req.NodeID) != 32 {
		refuse("certificate request does not match node ID")
		return
	}
	cert, err := creds.CA.Sign(NodeCertRequest{NodeID: req.NodeID, Name: req.Name, Roles: req.Roles, Public: csr.PublicKey})
	if err != nil {
		refuse("signing failed", "err", err)
		return
	}
	resp := joinResponse{CA: EncodeCert(creds.CA.Cert), Cert: EncodeCert(cert), GossipKey: creds.GossipKey}
	if slices.Contains(req.Roles, "master") {
		// Every master can admit nodes and take over as leader, so each holds the CA key. The
		// role check above means only a master token gets here.
		if resp.CAKey, err = EncodeKey(creds.CA.Key); err != nil {
			refuse("encoding failed", "err", err)
			return
		}
		resp.Secret = creds.Secret
	}
	s.Log.Info("join accepted", "remote", remote, "node_id", req.NodeID, "name", req.Name, "roles", req.Roles, "token_id", tok.IDHex(), "token_role", tok.Role.String())
	s.reply(conn, resp)
	if s.Admitted != nil {
		s.Admitted(req.NodeID, req.Name, req.Roles)
	}
}

func (s *JoinServer) reply(conn net.Conn, r joinResponse) {
	data, _ := json.Marshal(r)
	_, _ = conn.Write(append(data, '\n'))
}

// JoinRequest is what a joining node presents.
type JoinRequest struct {
	Token  string // may be empty: the exchange then only tells the cluster side that we tried
	NodeID string
	Name   string
	Roles  []string
	Key    *ecdsa.PrivateKey
}

// RefusedError says the cluster refused to admit the node; retrying does not help.
type RefusedError struct {
	Addr   string
	Reason string
	// WrongCluster says the member at Addr is not of the token's cluster (its CA differs), so
	// nothing was sent; another address may still be the right one.
	WrongCluster bool
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s refused the join: %s", e.Addr, e.Reason)
}

// RedirectError says the contacted member cannot sign and names masters to ask instead.
type RedirectError struct{ Masters []string }

func (e *RedirectError) Error() string {
	return fmt.Sprintf("join redirected to masters %v", e.Masters)
}

// Join runs the join exchange with the member at addr (a gossip address). With a token the
// member must prove that the token's CA signed its certificate before anything is sent.
func Join(ctx context.Context, addr string, req JoinRequest) (*Credentials, error) {
	var tok *Token
	if req.Token != "" {
		var err error
		if tok, err = ParseToken(req.Token); err != nil {
			return nil, err
		}
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{ALPNJoin},
		InsecureSkipVerify: true, // the CA pin below replaces host-name verification
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if tok == nil {
				return nil // nothing secret is sent without a token
			}
			return verifyPinned(raw, tok.Fingerprint())
		},
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var pin *pinError
		if errors.As(err, &pin) {
			return nil, &RefusedError{Addr: addr, Reason: pin.Error(), WrongCluster: true}
		}
		return nil, fmt.Errorf("join via %s: %w", addr, err)
	}
	conn := c.(*tls.Conn)
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: req.NodeID}}, req.Key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	body, _ := json.Marshal(joinRequest{Token: req.Token, NodeID: req.NodeID, Name: req.Name, Roles: req.Roles, CSR: csr})
	if _, err := conn.Write(append(body, '\n')); err != nil {
		return nil, fmt.Errorf("join via %s: send request: %w", addr, err)
	}
	line, err := bufio.NewReaderSize(conn, 64<<10).ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("join via %s: read answer: %w", addr, err)
	}
	var resp joinResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("join via %s: malformed answer: %w", addr, err)
	}
	if resp.Error != "" {
		return nil, &RefusedError{Addr: addr, Reason: resp.Error}
	}
	if len(resp.Redirect) > 0 {
		return nil, &RedirectError{Masters: resp.Redirect}
	}
	return credsFromResponse(addr, resp, req, tok)
}

func credsFromResponse(addr string, resp joinResponse, req JoinRequest, tok *Token) (*Credentials, error) {
	bad := func(what string, err error) error { return fmt.Errorf("join via %s: %s: %w", addr, what, err) }
	caCert, err := DecodeCert(resp.CA)
	if err != nil {
		return nil, bad("CA certificate", err)
	}
	ca := &CA{Cert: caCert}
	if tok != nil && ca.Fingerprint() != tok.Fingerprint() {
		return nil, bad("CA certificate", errors.New("fingerprint differs from the token's"))
	}
	cert, err := DecodeCert(resp.Cert)
	if err != nil {
		return nil, bad("node certificate", err)
	}
	if _, err := ca.VerifyNode(cert); err != nil {
		return nil, bad("node certificate", err)
	}
	if !publicKeysEqual(cert.PublicKey, &req.Key.PublicKey) || cert.Subject.CommonName != req.NodeID {
		return nil, bad("node certificate", errors.New("issued for another key or node ID"))
	}
	if len(resp.GossipKey) != 32 {
		return nil, bad("gossip key", fmt.Errorf("%d bytes, want 32", len(resp.GossipKey)))
	}
	c := &Credentials{CA: ca, NodeCert: cert, NodeKey: req.Key, GossipKey: resp.GossipKey}
	if len(resp.CAKey) > 0 {
		if ca.Key, err = DecodeKey(resp.CAKey); err != nil {
			return nil, bad("CA key", err)
		}
		if !publicKeysEqual(caCert.PublicKey, &ca.Key.PublicKey) {
			return nil, bad("CA key", errors.New("does not match the CA certificate"))
		}
		c.Secret = resp.Secret
		gk, err := GossipKey(c.Secret, ca.Fingerprint())
		if err != nil || string(gk) != string(c.GossipKey) {
			return nil, bad("cluster secret", errors.New("does not derive the gossip key"))
		}
	}
	return c, nil
}

type pinError struct{ want, got string }

func (e *pinError) Error() string {
	return fmt.Sprintf("the member's CA (fingerprint %.16s…) is not the token's (%.16s…): wrong cluster or wrong address", e.got, e.want)
}

// verifyPinned accepts a chain whose leaf is signed by a CA in the chain with the pinned
// fingerprint.
func verifyPinned(raw [][]byte, fingerprint string) error {
	if len(raw) < 2 {
		return &pinError{want: fingerprint, got: "none"}
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return err
	}
	got := ""
	for _, r := range raw[1:] {
		got = Fingerprint(r)
		if got != fingerprint {
			continue
		}
		caCert, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		_, err = (&CA{Cert: caCert}).VerifyNode(leaf)
		return err
	}
	return &pinError{want: fingerprint, got: got}
}
