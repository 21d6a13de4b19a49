package api

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/exo-nix/exo/appliance/apikeys"
	"github.com/exo-nix/exo/appliance/buildinfo"
)

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	bi := buildinfo.Get()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "exo_build_info", Help: "Build of the running exo binary; always 1.",
	}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exo_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "exo_http_request_duration_seconds", Help: "Time to produce the response head and body (streams: until the handler returns).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route", "method"}),
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build, m.requests, m.latency,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
}

// accessLog records one structured line and the request metrics per request. The route label is
// the matched pattern, never the raw path, so that label cardinality stays bounded.
func (s *Server) accessLog(m *metrics) fiber.Handler {
	return func(c fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		if err != nil {
			if herr := s.app.ErrorHandler(c, err); herr != nil {
				return herr
			}
		}
		status := c.Response().StatusCode()
		route := "unmatched"
		if r := c.Route(); r != nil && r.Path != "" && status != fiber.StatusNotFound {
			route = r.Path
		}
		elapsed := time.Since(start)
		m.requests.WithLabelValues(route, c.Method(), strconv.Itoa(status)).Inc()
		m.latency.WithLabelValues(route, c.Method()).Observe(elapsed.Seconds())
		level := slog.LevelInfo
		if route == "/healthz" || route == "/readyz" || route == "/metrics" {
			level = slog.LevelDebug
		}
		s.opt.Logger.LogAttrs(c.Context(), level, "http request",
			slog.String("method", c.Method()), slog.String("path", c.Path()), slog.Int("status", status),
			slog.Duration("duration", elapsed), slog.String("remote", c.IP()))
		return nil
	}
}

// cacheScopeKey holds, in a request's locals, the scope of its key (cacheScope): requests
// reuse each other's cached prompt starts only within one scope.
const cacheScopeKey = "exo.cacheScope"

// cacheScope names the key's scope without the key: a hash of its digest, kept in memory only.
func cacheScope(key string) string {
	d := apikeys.Digest(key)
	s := sha256.Sum256(d[:])
	return hex.EncodeToString(s[:16])
}

// authenticate demands a bearer key on everything but health checks and the dashboard's static
// files, as soon as any key exists (configured or created with `exo keys create`). With no key
// at all the API is open, which config validation allows only on loopback.
func authenticate(static []string, stored func() ([][32]byte, error), log *slog.Logger) fiber.Handler {
	fixed := make([][32]byte, len(static))
	for i, k := range static {
		fixed[i] = apikeys.Digest(k)
	}
	return func(c fiber.Ctx) error {
		p := c.Path()
		if p == "/healthz" || p == "/readyz" || !(p == "/metrics" || strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/api/")) {
			return c.Next()
		}
		digests := fixed
		if stored != nil {
			more, err := stored()
			if err != nil {
				// Fail closed: an unreadable key file must not open the API.
				log.Error("API key store unreadable", "err", err)
				return writeError(c, fiber.StatusServiceUnavailable, "server_error", "API key store unreadable; see the node's log")
			}
			digests = append(append([][32]byte(nil), fixed...), more...)
		}
		if len(digests) == 0 {
			return c.Next()
		}
		token, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
		if ok && apikeys.Match(strings.TrimSpace(token), digests) {
			c.Locals(cacheScopeKey, cacheScope(strings.TrimSpace(token)))
			return c.Next()
		}
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="exo"`)
		return writeError(c, fiber.StatusUnauthorized, "authentication_error", "missing or invalid API key (send Authorization: Bearer <key>)")
	}
}
