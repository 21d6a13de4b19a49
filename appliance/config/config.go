// Package config defines the node's one typed configuration and loads it from built-in defaults,
// a YAML file, EXO_ environment variables and command-line flags, in that order of precedence.
//
// Every value remembers where it came from, so that a bad value is reported with its key, its
// source (file, environment variable or flag) and the value itself.
package config

import (
	"time"
)

// Config is the effective configuration of one node. The koanf tags are the configuration keys
// documented in ARCHITECTURE.md; the NixOS module, tests and operators rely on these names.
type Config struct {
	Node        Node      `koanf:"node"`
	API         API       `koanf:"api"`
	Gossip      Listen    `koanf:"gossip"`
	Transport   Transport `koanf:"transport"`
	Raft        Listen    `koanf:"raft"`
	Cluster     Cluster   `koanf:"cluster"`
	Models      Models    `koanf:"models"`
	Accelerator string    `koanf:"accelerator"`
	DataDir     string    `koanf:"data_dir"`
	Roles       []string  `koanf:"roles"`
	Log         Log       `koanf:"log"`
	Engine      EngineCfg `koanf:"engine"`
}

// Node holds the node's identity as shown to operators.
type Node struct {
	Name string `koanf:"name"`
	// Memory caps what the node offers to models (e.g. "8GiB"); empty means its available memory.
	Memory string `koanf:"memory"`
}

// API configures the HTTP server (OpenAI API, cluster API, dashboard, health, metrics).
type API struct {
	Addr string `koanf:"addr"`
	// TLS turns on HTTPS; without TLSCert/TLSKey a self-signed certificate is kept in the data directory.
	TLS     bool   `koanf:"tls"`
	TLSCert string `koanf:"tls_cert"`
	TLSKey  string `koanf:"tls_key"`
	// Keys are bearer API keys; KeyFile names a file with one key per line. Either is mandatory
	// when Addr is not a loopback address.
	Keys    []string `koanf:"keys" secret:"true"`
	KeyFile string   `koanf:"key_file"`
	// ShutdownTimeout bounds how long in-flight requests and streams may drain on SIGTERM.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// Insecure allows listening beyond loopback with no API key at all (an explicit opt-out).
	Insecure bool `koanf:"insecure"`
	// CORSOrigins lists browser origins allowed to call the API; empty allows none.
	CORSOrigins []string `koanf:"cors_origins"`
	// MaxBodyBytes limits a request body.
	MaxBodyBytes int `koanf:"max_body_bytes"`
	// MaxQueue is how many requests may wait per model before new ones get 429.
	MaxQueue int `koanf:"max_queue"`
}

// Listen is a host:port a plane listens on.
type Listen struct {
	Addr string `koanf:"addr"`
}

// Transport configures the tensor transport between pipeline stages.
type Transport struct {
	Addr string `koanf:"addr"`
	// Mode is auto (QUIC, falling back to TCP when UDP does not get through), quic or tcp.
	Mode string `koanf:"mode"`
	// DType encodes activations on the wire: f32 (exactly what one node computes), or f16 and
	// q8_0 for slow links.
	DType string `koanf:"dtype"`
}

// Cluster says how the node joins a cluster.
type Cluster struct {
	Join      []string `koanf:"join"`
	Token     string   `koanf:"token" secret:"true"`
	TokenFile string   `koanf:"token_file"`
	// Discovery finds members on the local network: "none", or "mdns" (announce this node,
	// and with a token but no join address, find the token's cluster by multicast DNS).
	Discovery string `koanf:"discovery"`
}

// Discovery methods accepted by cluster.discovery.
var Discoveries = []string{"none", "mdns"}

// Models lists the model directories; the first writable one receives pulls.
type Models struct {
	Dirs []string `koanf:"dirs"`
	// IdleUnload frees a loaded model after this long without requests; 0 keeps it loaded.
	IdleUnload time.Duration `koanf:"idle_unload"`
}

// Log selects the log format and level.
type Log struct {
	Format string `koanf:"format"`
	Level  string `koanf:"level"`
}

// EngineCfg tunes the inference engine.
type EngineCfg struct {
	// Threads is the number of compute threads; 0 picks the number of cores.
	Threads int `koanf:"threads"`
	// KVType is the KV cache type of the models this node runs: f16 (llama.cpp's default),
	// f32, or q8_0 (about half of f16's memory, slightly less exact).
	KVType string `koanf:"kv_type"`
}

// KVTypes are the values engine.kv_type accepts.
var KVTypes = []string{"f16", "f32", "q8_0"}

// Roles a node can run.
const (
	RoleMaster = "master"
	RoleWorker = "worker"
	RoleAPI    = "api"
)

// AllRoles is the role set of `exo serve`.
var AllRoles = []string{RoleMaster, RoleWorker, RoleAPI}

// Accelerators accepted by the accelerator key.
var Accelerators = []string{"auto", "cpu", "cuda", "rocm", "intel", "opencl"}

// Defaults returns the built-in configuration. Values that depend on the machine (node name,
// data directory, model directory) are filled in by Resolve after loading.
func Defaults() map[string]any {
	return map[string]any{
		"node.name":            "",
		"node.memory":          "",
		"api.addr":             "127.0.0.1:52415",
		"api.tls":              false,
		"api.tls_cert":         "",
		"api.tls_key":          "",
		"api.keys":             []string{},
		"api.key_file":         "",
		"api.shutdown_timeout": "30s",
		"api.insecure":         false,
		"api.cors_origins":     []string{},
		"api.max_body_bytes":   4 << 20,
		"api.max_queue":        256,
		"models.idle_unload":   "15m",
		"gossip.addr":          ":52416",
		"transport.addr":       ":52417",
		"transport.mode":       "auto",
		"transport.dtype":      "f32",
		"raft.addr":            ":52418",
		"cluster.join":         []string{},
		"cluster.token":        "",
		"cluster.token_file":   "",
		"cluster.discovery":    "none",
		"models.dirs":          []string{},
		"accelerator":          "auto",
		"data_dir":             "",
		"roles":                append([]string(nil), AllRoles...),
		"log.format":           "auto",
		"log.level":            "info",
		"engine.threads":       0,
		"engine.kv_type":       "f16",
	}
}
