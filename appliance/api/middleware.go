package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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

// authenticate demands a bearer key on everything but health checks and the dashboard's static
// files. Keys are compared as SHA-256 digests in constant time.
func authenticate(keys []string) fiber.Handler {
	if len(keys) == 0 {
		return func(c fiber.Ctx) error { return c.Next() }
	}
	digests := make([][32]byte, len(keys))
	for i, k := range keys {
		digests[i] = sha256.Sum256([]byte(k))
	}
	return func(c fiber.Ctx) error {
		p := c.Path()
		if p == "/healthz" || p == "/readyz" || !(p == "/metrics" || strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/api/")) {
			return c.Next()
		}
		token, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
		if ok {
			d := sha256.Sum256([]byte(strings.TrimSpace(token)))
			for _, want := range digests {
				if subtle.ConstantTimeCompare(d[:], want[:]) == 1 {
					return c.Next()
				}
			}
		}
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="exo"`)
		return writeError(c, fiber.StatusUnauthorized, "authentication_error", "missing or invalid API key (send Authorization: Bearer <key>)")
	}
}
