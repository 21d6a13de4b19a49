package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/exo-nix/exo/appliance/config"
	"github.com/exo-nix/exo/appliance/logging"
	"github.com/exo-nix/exo/appliance/node"
)

func init() {
	addCommand(func() *cobra.Command { return newServeCmd("serve", nil) })
	addCommand(func() *cobra.Command { return newServeCmd(config.RoleMaster, []string{config.RoleMaster}) })
	addCommand(func() *cobra.Command { return newServeCmd(config.RoleWorker, []string{config.RoleWorker}) })
	addCommand(func() *cobra.Command { return newServeCmd(config.RoleAPI, []string{config.RoleAPI}) })
}

var roleHelp = map[string]string{
	"serve":           "Run a node with all roles (master, worker, api), or those chosen with --roles",
	config.RoleMaster: "Run only the master role (membership, replicated control state, placement)",
	config.RoleWorker: "Run only the worker role (loads layer ranges and runs pipeline stages)",
	config.RoleAPI:    "Run only the API role (OpenAI and cluster HTTP API, dashboard, metrics)",
}

// configFlags are the flags every node command shares, each bound to one configuration key.
var configFlags = []struct {
	name, key, usage string
	kind             string // "string", "bool", "list", "array"
}{
	{"node-name", "node.name", "display name of this node (default: hostname)", "string"},
	{"node-memory", "node.memory", "memory this node offers to models, e.g. 8GiB (default: its available memory)", "string"},
	{"api-addr", "api.addr", "HTTP API and dashboard listen address (default 127.0.0.1:52415)", "string"},
	{"gossip-addr", "gossip.addr", "gossip (serf) listen address, tcp+udp (default :52416)", "string"},
	{"transport-addr", "transport.addr", "tensor transport listen address (default :52417)", "string"},
	{"transport-mode", "transport.mode", "tensor transport: auto (QUIC, TCP when UDP is blocked), quic or tcp", "string"},
	{"transport-dtype", "transport.dtype", "activation encoding between stages: f32 (exact), f16 or q8_0 (for slow links)", "string"},
	{"raft-addr", "raft.addr", "raft listen address, masters only (default :52418)", "string"},
	{"join", "cluster.join", "gossip addresses of cluster members to join, comma separated", "list"},
	{"token", "cluster.token", "cluster join token (prefer --token-file or EXO_JOIN_TOKEN: flags are visible in ps)", "string"},
	{"token-file", "cluster.token_file", "file holding the cluster join token", "string"},
	{"discovery", "cluster.discovery", "LAN discovery: none, or mdns (announce this node; with a token and no --join, find the cluster by multicast DNS)", "string"},
	{"models-dir", "models.dirs", "model directory (repeatable; the first writable one receives pulls)", "array"},
	{"accelerator", "accelerator", "compute backend: auto, cpu, cuda, rocm, intel, opencl", "string"},
	{"data-dir", "data_dir", "data directory (default: $STATE_DIRECTORY, else $XDG_DATA_HOME/exo)", "string"},
	{"tls", "api.tls", "serve the API over HTTPS (self-signed certificate unless --tls-cert/--tls-key)", "bool"},
	{"tls-cert", "api.tls_cert", "TLS certificate file (PEM); reloaded on SIGHUP", "string"},
	{"tls-key", "api.tls_key", "TLS private key file (PEM); reloaded on SIGHUP", "string"},
	{"api-key-file", "api.key_file", "file with bearer API keys, one per line", "string"},
	{"shutdown-timeout", "api.shutdown_timeout", "how long in-flight requests may drain on shutdown (default 30s)", "string"},
	{"log-format", "log.format", "log format: auto (journal when under systemd, else text), text, json", "string"},
	{"log-level", "log.level", "log level: debug, info, warn, error", "string"},
	{"threads", "engine.threads", "compute threads (0: one per core)", "string"},
	{"kv-type", "engine.kv_type", "KV cache type of loaded models: f16 (default), f32 or q8_0 (half of f16's memory)", "string"},
}

func addConfigFlags(fs *pflag.FlagSet, withRoles bool) {
	fs.String("config", "", "YAML config file (default "+config.DefaultFile+" when present)")
	for _, f := range configFlags {
		switch f.kind {
		case "bool":
			fs.Bool(f.name, false, f.usage)
		case "list":
			fs.StringSlice(f.name, nil, f.usage)
		case "array":
			fs.StringArray(f.name, nil, f.usage)
		default:
			fs.String(f.name, "", f.usage)
		}
	}
	if withRoles {
		fs.StringSlice("roles", nil, "roles to run: master,worker,api (default all)")
	}
}

// loadConfig merges defaults, file, environment and the flags the user set.
func loadConfig(cmd *cobra.Command, roles []string) (*config.Loaded, error) {
	keys := map[string]string{"roles": "roles"}
	for _, f := range configFlags {
		keys[f.name] = f.key
	}
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		path = os.Getenv("EXO_CONFIG")
	}
	environ := os.Environ()
	if roles != nil {
		// A single-role command fixes the role set whatever the file or environment says.
		environ = append(environ, "EXO_ROLES="+joinComma(roles))
	}
	return config.Load(config.Sources{File: path, Environ: environ, Flags: cmd.Flags(), FlagKeys: keys})
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

func newServeCmd(use string, roles []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: roleHelp[use],
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loaded, err := loadConfig(cmd, roles)
			if err != nil {
				return err
			}
			cfg := loaded.Config
			log, err := logging.New(os.Stderr, logging.Options{Format: cfg.Log.Format, Level: cfg.Log.Level})
			if err != nil {
				return err
			}
			if loaded.File != "" {
				log.Info("config file read", "path", loaded.File)
			}
			n, err := node.New(cfg, log, assets, node.Systemd{})
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
			defer signal.Stop(sigs)
			go func() {
				for sig := range sigs {
					if sig == syscall.SIGHUP {
						n.Reload()
						continue
					}
					cancel(fmt.Errorf("signal %s", sig))
					return
				}
			}()
			if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	addConfigFlags(cmd.Flags(), roles == nil)
	return cmd
}
