package node

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/exo-nix/exo/appliance/api"
	"github.com/exo-nix/exo/appliance/tlscert"
)

// apiRole runs the HTTP server.
type apiRole struct {
	srv   *api.Server
	cert  *tlscert.Source
	log   *slog.Logger
	ready atomic.Bool
	addr  string
}

func (r *apiRole) Name() string { return "api" }

func (r *apiRole) Start(ctx context.Context, report func(error)) error {
	addr, err := r.srv.Listen()
	if err != nil {
		return err
	}
	r.addr = addr.String()
	go func() {
		if err := r.srv.Serve(); err != nil {
			report(fmt.Errorf("api server: %w", err))
		}
	}()
	r.ready.Store(true)
	r.log.Info("api listening", "addr", r.addr, "tls", r.cert != nil)
	return nil
}

func (r *apiRole) Ready() (bool, string) {
	if !r.ready.Load() {
		return false, "not listening"
	}
	return true, "listening on " + r.addr
}

func (r *apiRole) Stop(ctx context.Context) error {
	r.ready.Store(false)
	return r.srv.Shutdown(ctx)
}

func (r *apiRole) reload(log *slog.Logger) {
	if r.cert == nil {
		return
	}
	if err := r.cert.Reload(); err != nil {
		log.Error("TLS reload failed; keeping the previous certificate", "err", err)
		return
	}
	log.Info("TLS certificate reloaded", "fingerprint_sha256", r.cert.Fingerprint())
}

func splitLines(s string) []string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines
}
