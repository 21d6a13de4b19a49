// Package api is the node's HTTP server: health, readiness, metrics, the event stream and the
// dashboard today; the OpenAI and cluster endpoints grow here.
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/cors"
	"github.com/gofiber/fiber/v3/middleware/recover"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/exo-nix/exo/appliance/buildinfo"
	"github.com/exo-nix/exo/appliance/serving"
	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/netstack/portbind"
)

// RoleStatus is one role's readiness as reported on /readyz.
type RoleStatus struct {
	Ready  bool   `json:"ready"`
	Detail string `json:"detail,omitempty"`
}

// Options configure a Server.
type Options struct {
	Addr     string
	NodeName string
	// TLS, when set, serves HTTPS with this configuration (certificates may change per connection).
	TLS *tls.Config
	// Keys are bearer API keys from configuration; StoredKeys returns the digests of keys made
	// with `exo keys create`. With none at all the API is open (the node allows that only on
	// loopback).
	Keys       []string
	StoredKeys func() ([][32]byte, error)
	// CORSOrigins are the browser origins allowed to call the API (none by default).
	CORSOrigins []string
	// MaxBodyBytes limits request bodies (default 4 MiB).
	MaxBodyBytes int
	// Readiness reports every enabled role; /readyz is 200 only when all are ready.
	Readiness func() map[string]RoleStatus
	// Dashboard is the built frontend served at /.
	Dashboard fs.FS
	Logger    *slog.Logger
	Registry  *prometheus.Registry
	// Serving runs the OpenAI endpoints on models loaded here; nil when this node has no
	// worker role.
	Serving *serving.Manager
	// Pipelines runs requests for models whose instance is placed across nodes; nil when the
	// node is not in a cluster.
	Pipelines      Pipelines
	ServingMetrics *serving.Metrics
	// Cluster serves the cluster endpoints (/api/v1/cluster, nodes, instances, placement); nil
	// leaves them out.
	Cluster Cluster
	// Detection returns this node's hardware report for GET /api/v1/node.
	Detection func() any
	// Models serves /api/v1/models (list, pull, remove); nil leaves it out.
	Models *store.Store
}

// Server is the HTTP server. Start it with Serve, stop it with Shutdown.
type Server struct {
	opt    Options
	app    *fiber.App
	ln     net.Listener
	events *Broker

	drainOnce sync.Once
	draining  chan struct{}
}

// New builds the server and its routes; it does not listen yet.
func New(opt Options) (*Server, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	if opt.MaxBodyBytes <= 0 {
		opt.MaxBodyBytes = 4 << 20
	}
	s := &Server{opt: opt, draining: make(chan struct{}), events: NewBroker()}
	s.app = fiber.New(fiber.Config{
		AppName:      "exo",
		ReadTimeout:  60 * time.Second,
		IdleTimeout:  120 * time.Second,
		BodyLimit:    opt.MaxBodyBytes,
		ErrorHandler: errorHandler,
	})
	m, err := newMetrics(opt.Registry)
	if err != nil {
		return nil, err
	}
	s.app.Use(s.accessLog(m))
	// A bug in one handler must cost one request a 500, not the node.
	s.app.Use(recover.New())
	if len(opt.CORSOrigins) > 0 {
		s.app.Use(cors.New(cors.Config{
			AllowOrigins: opt.CORSOrigins,
			AllowHeaders: []string{fiber.HeaderAuthorization, fiber.HeaderContentType},
			AllowMethods: []string{fiber.MethodGet, fiber.MethodPost, fiber.MethodDelete, fiber.MethodOptions},
		}))
	}
	s.app.Use(authenticate(opt.Keys, opt.StoredKeys, opt.Logger))
	s.routes(m)
	return s, nil
}

// Events is the broker behind /api/v1/events; other components publish state changes to it.
func (s *Server) Events() *Broker { return s.events }

// Listen binds the address. Separate from Serve so that callers learn about a busy port before
// they report readiness.
func (s *Server) Listen() (net.Addr, error) {
	ln, err := portbind.Bind(s.opt.Addr, func() (net.Listener, error) { return net.Listen("tcp", s.opt.Addr) })
	if err != nil {
		return nil, fmt.Errorf("listen on api.addr %s: %w", s.opt.Addr, err)
	}
	if s.opt.TLS != nil {
		ln = tls.NewListener(ln, s.opt.TLS)
	}
	s.ln = ln
	return ln.Addr(), nil
}

// Serve answers requests until Shutdown. It returns nil after a clean shutdown.
func (s *Server) Serve() error {
	if s.ln == nil {
		return errors.New("api: Serve before Listen")
	}
	err := s.app.Listener(s.ln, fiber.ListenConfig{DisableStartupMessage: true})
	select {
	case <-s.draining:
		return nil
	default:
		return err
	}
}

// Draining is closed when shutdown starts; long-lived streams end themselves when it closes.
func (s *Server) Draining() <-chan struct{} { return s.draining }

// Shutdown stops accepting connections, lets in-flight requests and finite streams finish, ends
// event streams, and waits up to the context's deadline before dropping what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drainOnce.Do(func() { close(s.draining); s.events.Close() })
	err := s.app.ShutdownWithContext(ctx)
	if errors.Is(err, fiber.ErrNotRunning) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
}

func (s *Server) routes(m *metrics) {
	s.app.Get("/healthz", s.healthz)
	s.app.Get("/readyz", s.readyz)
	s.app.Get("/metrics", m.handler())
	s.app.Get("/api/v1/events", s.eventStream)
	s.app.Get("/api/v1/node", s.localNode)
	s.openAIRoutes()
	s.clusterRoutes()
	s.modelRoutes()
	s.app.All("/api/*", notFound)
	s.app.All("/v1/*", notFound)
	s.mountDashboard()
}

func (s *Server) healthz(c fiber.Ctx) error {
	bi := buildinfo.Get()
	return c.JSON(fiber.Map{"status": "ok", "node": s.opt.NodeName, "version": bi.Version, "commit": bi.Commit})
}

func (s *Server) readyz(c fiber.Ctx) error {
	roles := map[string]RoleStatus{}
	if s.opt.Readiness != nil {
		roles = s.opt.Readiness()
	}
	ready := len(roles) > 0
	for _, r := range roles {
		ready = ready && r.Ready
	}
	select {
	case <-s.draining:
		ready = false
	default:
	}
	status := fiber.StatusOK
	if !ready {
		status = fiber.StatusServiceUnavailable
	}
	return c.Status(status).JSON(fiber.Map{"ready": ready, "roles": roles})
}

// apiError is the OpenAI error shape, used for every JSON error of the server.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func writeError(c fiber.Ctx, status int, typ, msg string) error {
	return c.Status(status).JSON(fiber.Map{"error": apiError{Message: msg, Type: typ}})
}

func notFound(c fiber.Ctx) error {
	return writeError(c, fiber.StatusNotFound, "not_found_error", fmt.Sprintf("no route for %s %s", c.Method(), c.Path()))
}

func errorHandler(c fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		return writeError(c, fe.Code, "invalid_request_error", fe.Message)
	}
	return writeError(c, fiber.StatusInternalServerError, "server_error", "internal error")
}
