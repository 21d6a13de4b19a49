package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// resolve fills in the values that depend on the machine: node name, data directory and model
// directory. An explicit data_dir wins over systemd's STATE_DIRECTORY, which wins over XDG.
func (l *Loaded) resolve(environ []string) {
	c := &l.Config
	getenv := func(name string) string {
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name {
				return v
			}
		}
		return ""
	}
	if c.Node.Name == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Node.Name = h
		} else {
			c.Node.Name = "exo"
		}
		l.Origin["node.name"] = "default (hostname)"
	}
	if c.DataDir == "" {
		switch {
		case getenv("STATE_DIRECTORY") != "":
			// systemd may list several directories separated by colons; the first is ours.
			c.DataDir, _, _ = strings.Cut(getenv("STATE_DIRECTORY"), ":")
			l.Origin["data_dir"] = "env STATE_DIRECTORY"
		case getenv("XDG_DATA_HOME") != "":
			c.DataDir = filepath.Join(getenv("XDG_DATA_HOME"), "exo")
			l.Origin["data_dir"] = "env XDG_DATA_HOME"
		default:
			home := getenv("HOME")
			if home == "" {
				home, _ = os.UserHomeDir()
			}
			c.DataDir = filepath.Join(home, ".local", "share", "exo")
			l.Origin["data_dir"] = "default ($HOME/.local/share/exo)"
		}
	}
	if len(c.Models.Dirs) == 0 {
		c.Models.Dirs = []string{filepath.Join(c.DataDir, "models")}
		l.Origin["models.dirs"] = "default (<data_dir>/models)"
	}
}

// validate checks ranges and combinations once, naming the key and where its value came from.
func (l *Loaded) validate() error {
	c := &l.Config
	bad := func(key string, val any, format string, args ...any) error {
		return &Error{Key: key, Source: l.Origin[key], Value: val, Reason: fmt.Sprintf(format, args...)}
	}
	for key, addr := range map[string]string{
		"api.addr": c.API.Addr, "gossip.addr": c.Gossip.Addr,
		"transport.addr": c.Transport.Addr, "raft.addr": c.Raft.Addr,
	} {
		if err := checkHostPort(addr); err != nil {
			return bad(key, addr, "%v", err)
		}
	}
	for _, j := range c.Cluster.Join {
		if err := checkHostPort(j); err != nil {
			return bad("cluster.join", j, "%v", err)
		}
	}
	if !slices.Contains(Discoveries, c.Cluster.Discovery) {
		return bad("cluster.discovery", c.Cluster.Discovery, "must be one of %s", strings.Join(Discoveries, ", "))
	}
	if !slices.Contains([]string{"auto", "quic", "tcp"}, c.Transport.Mode) {
		return bad("transport.mode", c.Transport.Mode, "must be auto, quic or tcp")
	}
	if !slices.Contains([]string{"f32", "f16", "q8_0"}, c.Transport.DType) {
		return bad("transport.dtype", c.Transport.DType, "must be f32, f16 or q8_0")
	}
	if !slices.Contains(Accelerators, c.Accelerator) {
		return bad("accelerator", c.Accelerator, "must be one of %s", strings.Join(Accelerators, ", "))
	}
	if len(c.Roles) == 0 {
		return bad("roles", strings.Join(c.Roles, ","), "at least one role is needed (%s)", strings.Join(AllRoles, ", "))
	}
	seen := map[string]bool{}
	for _, r := range c.Roles {
		if !slices.Contains(AllRoles, r) {
			return bad("roles", r, "unknown role; roles are %s", strings.Join(AllRoles, ", "))
		}
		if seen[r] {
			return bad("roles", r, "role listed twice")
		}
		seen[r] = true
	}
	if !slices.Contains([]string{"auto", "text", "json"}, c.Log.Format) {
		return bad("log.format", c.Log.Format, "must be auto, text or json")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		return bad("log.level", c.Log.Level, "must be debug, info, warn or error")
	}
	if c.API.ShutdownTimeout <= 0 || c.API.ShutdownTimeout > time.Hour {
		return bad("api.shutdown_timeout", c.API.ShutdownTimeout.String(), "must be between 1ns and 1h")
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		return bad("api.tls_cert", c.API.TLSCert, "api.tls_cert and api.tls_key must be given together")
	}
	if c.API.TLSCert != "" && !c.API.TLS {
		return bad("api.tls", c.API.TLS, "api.tls_cert is set but TLS is off; set api.tls (--tls) too")
	}
	if c.Engine.Threads < 0 || c.Engine.Threads > 4096 {
		return bad("engine.threads", c.Engine.Threads, "must be between 0 (auto) and 4096")
	}
	if !slices.Contains(KVTypes, c.Engine.KVType) {
		return bad("engine.kv_type", c.Engine.KVType, "must be one of %s", strings.Join(KVTypes, ", "))
	}
	if c.Cluster.Token != "" && c.Cluster.TokenFile != "" {
		return bad("cluster.token_file", c.Cluster.TokenFile, "give cluster.token or cluster.token_file, not both")
	}
	if c.API.MaxBodyBytes < 1024 || c.API.MaxBodyBytes > 1<<30 {
		return bad("api.max_body_bytes", c.API.MaxBodyBytes, "must be between 1024 and 1073741824")
	}
	if c.API.MaxQueue < 1 || c.API.MaxQueue > 1<<20 {
		return bad("api.max_queue", c.API.MaxQueue, "must be between 1 and 1048576")
	}
	if c.Models.IdleUnload < 0 {
		return bad("models.idle_unload", c.Models.IdleUnload.String(), "must not be negative (0 keeps models loaded)")
	}
	if !filepath.IsAbs(c.DataDir) {
		return bad("data_dir", c.DataDir, "must be an absolute path")
	}
	return nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port (e.g. 127.0.0.1:52415 or :52416)")
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("port %q is not a number", port)
	}
	if n < 0 || n > 65535 {
		return fmt.Errorf("port %d is out of range 0-65535", n)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("host %q is not a host name or address", host)
	}
	return nil
}

// IsLoopback reports whether a host:port only listens on the loopback interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
