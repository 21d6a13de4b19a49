package nixtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/syncbuf"
)

// option sets in the shape the NixOS module hands to nix/lib's plan.
type optionCase struct {
	name string
	// opts builds the options; files it needs live under dir.
	opts func(t *testing.T, dir string) map[string]any
	// start says whether the units are started, not only parsed. Cases on the default ports are
	// parsed only, so that they never collide with a node running on the test machine.
	start bool
}

func rolesMap(roles ...string) map[string]bool {
	m := map[string]bool{}
	for _, r := range roles {
		m[r] = true
	}
	return m
}

// loopback gives every listener a free loopback port, as a real host gives each unit its own.
func loopback(t *testing.T, roles ...string) map[string]any {
	gossip := map[string]int{}
	for _, r := range roles {
		gossip[r] = freePort(t)
	}
	return map[string]any{
		"roles":         rolesMap(roles...),
		"nodeName":      "nixtest",
		"listenAddress": "127.0.0.1",
		"gossipPorts":   gossip,
		"ports":         map[string]int{"raft": freePort(t), "transport": freePort(t)},
		"api":           map[string]any{"host": "127.0.0.1", "port": freePort(t)},
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// selfSignedPEM writes a certificate and key for 127.0.0.1.
func selfSignedPEM(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "nixtest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath = writeFile(t, filepath.Join(dir, "secrets", "cert.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	keyPath = writeFile(t, filepath.Join(dir, "secrets", "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})), 0o600)
	return certPath, keyPath
}

// Option sets whose units run on their own are started, and so is a host with every role whose
// co-located units join its master with the token exo-join-token mints. The other multi-role sets
// are parsed only: their operator token is a placeholder, or they use the default ports.
var optionCases = []optionCase{
	{
		name:  "master alone, config file, two model directories",
		start: true,
		opts: func(t *testing.T, dir string) map[string]any {
			o := loopback(t, "master")
			o["configFile"] = writeFile(t, filepath.Join(dir, "config.yaml"), "log:\n  level: debug\nengine:\n  threads: 2\n", 0o644)
			o["modelsDirs"] = []string{filepath.Join(dir, "models-a"), filepath.Join(dir, "models-b")}
			o["accelerator"] = "cpu"
			return o
		},
	},
	{
		name:  "worker joining a cluster with a token credential",
		start: true,
		opts: func(t *testing.T, dir string) map[string]any {
			o := loopback(t, "worker")
			seed := seedCluster(t)
			o["join"] = []string{seed.gossip}
			o["joinTokenFile"] = writeFile(t, filepath.Join(dir, "secrets", "token"), seed.token+"\n", 0o600)
			return o
		},
	},
	{
		name:  "api with TLS (self-signed) and an API key credential",
		start: true,
		opts: func(t *testing.T, dir string) map[string]any {
			o := loopback(t, "api")
			o["api"].(map[string]any)["tls"] = map[string]any{"enable": true}
			o["apiKeyFile"] = writeFile(t, filepath.Join(dir, "secrets", "keys"), "key-one\nkey-two\n", 0o600)
			return o
		},
	},
	{
		name:  "api with TLS from given certificate credentials",
		start: true,
		opts: func(t *testing.T, dir string) map[string]any {
			o := loopback(t, "api")
			cert, key := selfSignedPEM(t, dir)
			o["api"].(map[string]any)["tls"] = map[string]any{"enable": true, "certFile": cert, "keyFile": key}
			return o
		},
	},
	{
		name:  "api beyond loopback with keys, joining with a token",
		start: true,
		opts: func(t *testing.T, dir string) map[string]any {
			o := loopback(t, "api")
			seed := seedCluster(t)
			o["api"].(map[string]any)["host"] = "0.0.0.0"
			o["apiKeyFile"] = writeFile(t, filepath.Join(dir, "secrets", "keys"), "key-one\n", 0o600)
			o["join"] = []string{seed.gossip}
			o["joinTokenFile"] = writeFile(t, filepath.Join(dir, "secrets", "token"), seed.token+"\n", 0o600)
			return o
		},
	},
	{
		name:  "all roles on one host, join token minted by exo-join-token",
		start: true,
		opts: func(t *testing.T, dir string) map[string]any {
			o := loopback(t, "master", "worker", "api")
			o["modelsDirs"] = []string{filepath.Join(dir, "models")}
			return o
		},
	},
	{
		name:  "master and API on one host, an API-only token minted",
		start: true,
		opts: func(t *testing.T, dir string) map[string]any {
			return loopback(t, "master", "api")
		},
	},
	{
		name: "all roles on one host, loopback, secrets",
		opts: func(t *testing.T, dir string) map[string]any {
			o := loopback(t, "master", "worker", "api")
			o["joinTokenFile"] = writeFile(t, filepath.Join(dir, "secrets", "token"), "exo1.not-checked-by-config-show\n", 0o600)
			o["apiKeyFile"] = writeFile(t, filepath.Join(dir, "secrets", "keys"), "key-one\n", 0o600)
			o["modelsDirs"] = []string{filepath.Join(dir, "models")}
			return o
		},
	},
	{
		name: "default ports, every role",
		opts: func(t *testing.T, dir string) map[string]any {
			return map[string]any{"roles": rolesMap("master", "worker", "api"), "nodeName": "defaults"}
		},
	},
	{
		name: "IPv6 listeners, GPU accelerators",
		opts: func(t *testing.T, dir string) map[string]any {
			return map[string]any{
				"roles":         rolesMap("master", "worker", "api"),
				"listenAddress": "::1",
				"api":           map[string]any{"host": "::1"},
				"accelerator":   "cuda",
			}
		},
	},
	{
		name: "rocm worker in a network namespace",
		opts: func(t *testing.T, dir string) map[string]any {
			return map[string]any{"roles": rolesMap("worker"), "accelerator": "rocm", "networkNamespace": "exo"}
		},
	},
	{
		name: "opencl master and worker with extra arguments",
		opts: func(t *testing.T, dir string) map[string]any {
			return map[string]any{
				"roles":       rolesMap("master", "worker"),
				"accelerator": "opencl",
				"extraArgs":   []string{"--log-level", "warn"},
			}
		},
	},
}

// seed is a running one-process cluster (`exo serve`) that units under test join.
type seed struct {
	api    string
	gossip string
	token  string
}

// seeds maps a seed's gossip address to its API address, so that a test can ask the cluster a
// unit joined whether it was admitted.
var (
	seedsMu sync.Mutex
	seeds   = map[string]string{}
)

// seedCluster starts `exo serve` on loopback ports and asks its API for a join token with the
// CLI operators use (`exo cluster token`).
func seedCluster(t *testing.T) seed {
	t.Helper()
	api := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := seed{api: api, gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	seedsMu.Lock()
	seeds[s.gossip] = api
	seedsMu.Unlock()
	env := baseEnv(t)
	cmd := exec.Command(exo(t), "serve", "--node-name", "seed", "--api-addr", api, "--gossip-addr", s.gossip,
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--transport-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--data-dir", filepath.Join(t.TempDir(), "seed"), "--accelerator", "cpu")
	cmd.Env = env
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("seed node output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, tokOut := run(t, env, exo(t), "cluster", "token", "--api-addr", api, "--ttl", "10m")
		if code == 0 {
			s.token = strings.TrimSpace(strings.SplitN(tokOut, "\n", 2)[0])
			if strings.HasPrefix(s.token, "exo1.") {
				return s
			}
		}
		select {
		case err := <-done:
			t.Fatalf("seed node exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no join token from the seed node within 30s; last answer (exit %d):\n%s", code, tokOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// host is what systemd prepares for one unit under dir, which stands in for the machine's
// roots (/var/lib, /run): its state directories (exported as $STATE_DIRECTORY, several entries
// separated by colons), its runtime directories ($RUNTIME_DIRECTORY), and its credentials
// directory (%d) with a private copy of each LoadCredential= file.
type host struct {
	roots
	stateDirs   []string
	runtimeDirs []string
}

func prepareHost(t *testing.T, dir string, u Unit) host {
	t.Helper()
	h := host{roots: roots{
		state:   filepath.Join(dir, "var-lib"),
		runtime: filepath.Join(dir, "run"),
		cred:    filepath.Join(dir, "credentials", u.Name+".service"),
	}}
	mkdirs := func(root, key string, mode os.FileMode) []string {
		var out []string
		for _, d := range strs(u.Sections["Service"][key]) {
			p := filepath.Join(root, d)
			if err := os.MkdirAll(p, mode); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	h.stateDirs = mkdirs(h.state, "StateDirectory", 0o750)
	h.runtimeDirs = mkdirs(h.runtime, "RuntimeDirectory", 0o700)
	if err := os.MkdirAll(h.cred, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range u.Credentials {
		src := c.Path
		if c.Runtime != "" {
			src = filepath.Join(h.runtime, c.Runtime)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("%s: LoadCredential=%s:%s (here %s): %v", u.Name, c.ID, c.Path, src, err)
		}
		writeFile(t, filepath.Join(h.cred, c.ID), string(data), 0o400)
	}
	return h
}

func (h host) env(t *testing.T, extra ...string) []string {
	var env []string
	if len(h.stateDirs) > 0 {
		env = append(env, "STATE_DIRECTORY="+strings.Join(h.stateDirs, ":"))
	}
	if len(h.runtimeDirs) > 0 {
		env = append(env, "RUNTIME_DIRECTORY="+strings.Join(h.runtimeDirs, ":"))
	}
	env = append(env, "CREDENTIALS_DIRECTORY="+h.cred)
	return baseEnv(t, append(env, extra...)...)
}

func resolveArgs(args []Arg, r roots) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a.Resolve(r)
	}
	return out
}

// startOrder lists the plan's units in the order systemd starts them: each after the units its
// After= names and those that name it in their Before=.
func startOrder(t *testing.T, p Plan) []string {
	t.Helper()
	before := map[string][]string{}
	for _, name := range p.UnitNames {
		u, ok := p.Units[name]
		if !ok {
			t.Fatalf("unitNames lists %s, which the plan's units lack", name)
		}
		for _, a := range strs(u.Sections["Unit"]["After"]) {
			before[name] = append(before[name], strings.TrimSuffix(a, ".service"))
		}
		for _, b := range strs(u.Sections["Unit"]["Before"]) {
			later := strings.TrimSuffix(b, ".service")
			before[later] = append(before[later], name)
		}
	}
	var order []string
	state := map[string]int{} // 1: being visited, 2: placed
	var visit func(string)
	visit = func(name string) {
		switch state[name] {
		case 1:
			t.Fatalf("ordering cycle through %s", name)
		case 2:
			return
		}
		state[name] = 1
		for _, dep := range before[name] {
			if _, ok := p.Units[dep]; ok {
				visit(dep)
			}
		}
		state[name] = 2
		order = append(order, name)
	}
	for _, name := range p.UnitNames {
		visit(name)
	}
	return order
}

// tokenOutputs are the files a oneshot's arguments name under the runtime root.
func tokenOutputs(u Unit, r roots) []string {
	var out []string
	for _, a := range u.Argv {
		if a.Runtime != "" {
			out = append(out, a.Resolve(r))
		}
	}
	return out
}

func get(cfg map[string]any, key string) any {
	var cur any = cfg
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

var listenerKey = map[string]string{"gossip": "gossip.addr", "raft": "raft.addr", "transport": "transport.addr", "api": "api.addr"}

// TestArgvAcceptedByBinary: for every option set and every unit, exo's own flag parser and config
// loader accept the generated arguments (`exo config show` takes the same flags as the role
// commands), and each option lands on the config key it is documented to set.
func TestArgvAcceptedByBinary(t *testing.T) {
	for _, tc := range optionCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := tc.opts(t, dir)
			opts["exe"] = "/run/current-system/sw/bin/exo"
			p := evalPlan(t, opts)
			if len(p.Problems) > 0 {
				t.Fatalf("plan reports problems for a valid option set: %v", p.Problems)
			}
			if len(p.Units) != len(p.UnitNames) || len(p.Roles) == 0 {
				t.Fatalf("plan has units %v for roles %v", p.UnitNames, p.Roles)
			}
			for _, role := range p.Roles {
				if _, ok := p.Units["exo-"+role]; !ok {
					t.Fatalf("plan lacks the unit of role %s: %v", role, p.UnitNames)
				}
			}
			for _, name := range startOrder(t, p) {
				u := p.Units[name]
				h := prepareHost(t, dir, u)
				argv := resolveArgs(u.Argv, h.roots)
				if u.Role == "" {
					checkTokenUnitWithoutCA(t, u, h, argv)
					// The units after it load the token; config show does not judge it.
					for _, out := range tokenOutputs(u, h.roots) {
						writeFile(t, out, "exo1.not-checked-by-config-show\n", 0o600)
					}
					continue
				}
				if argv[0] != opts["exe"] || argv[1] != u.Role {
					t.Fatalf("%s: argv starts %q, want the exe and the role %s", u.Name, argv[:2], u.Role)
				}
				args := append([]string{"config", "show", "--json", "--roles", u.Role}, argv[2:]...)
				code, out := run(t, h.env(t), exo(t), args...)
				if code != 0 {
					t.Fatalf("%s: exo %s: exit %d\n%s", u.Name, strings.Join(args, " "), code, out)
				}
				var cfg map[string]any
				if err := json.Unmarshal([]byte(out), &cfg); err != nil {
					t.Fatalf("%s: config show output: %v\n%s", u.Name, err, out)
				}
				checkEffective(t, u, opts, argv, h, cfg)
			}
		})
	}
}

func checkEffective(t *testing.T, u Unit, opts map[string]any, argv []string, h host, cfg map[string]any) {
	t.Helper()
	expect := func(key string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: config key %s = %v, want %v (argv %q)", u.Name, key, got, want, argv)
		}
	}
	expect("roles", strs(get(cfg, "roles")), []string{u.Role})
	// No --data-dir: the node's data directory is the unit's StateDirectory, the first entry.
	expect("data_dir", get(cfg, "data_dir"), h.stateDirs[0])
	for _, l := range u.Listeners {
		expect(listenerKey[l.Name], get(cfg, listenerKey[l.Name]), l.Addr)
	}
	if name, ok := opts["nodeName"].(string); ok {
		want := name
		if len(opts["roles"].(map[string]bool)) > 1 {
			want = name + "-" + u.Role
		}
		expect("node.name", get(cfg, "node.name"), want)
	}
	if dirs, ok := opts["modelsDirs"].([]string); ok {
		expect("models.dirs", strs(get(cfg, "models.dirs")), dirs)
	}
	if acc, ok := opts["accelerator"].(string); ok {
		expect("accelerator", get(cfg, "accelerator"), acc)
	}
	join := strs(get(cfg, "cluster.join"))
	for _, j := range append([]string{}, optStrings(opts["join"])...) {
		if !slices.Contains(join, j) {
			t.Errorf("%s: cluster.join %v lacks %s", u.Name, join, j)
		}
	}
	if opts["roles"].(map[string]bool)["master"] && u.Role != "master" && len(join) == 0 {
		t.Errorf("%s: does not join the master on its own host", u.Name)
	}
	hasCred := func(id string) bool {
		return slices.ContainsFunc(u.Credentials, func(c Credential) bool { return c.ID == id })
	}
	if hasCred("join-token") {
		expect("cluster.token_file", get(cfg, "cluster.token_file"), filepath.Join(h.cred, "join-token"))
	} else if tf, _ := get(cfg, "cluster.token_file").(string); tf != "" {
		t.Errorf("%s: cluster.token_file %s without a join-token credential", u.Name, tf)
	}
	// Units next to a master join it, always with a token: the operator's, or the minted one.
	if opts["roles"].(map[string]bool)["master"] && u.Role != "master" && !hasCred("join-token") {
		t.Errorf("%s: joins the master on its own host without a join-token credential", u.Name)
	}
	if u.Role == "api" {
		if opts["apiKeyFile"] != nil {
			expect("api.key_file", get(cfg, "api.key_file"), filepath.Join(h.cred, "api-keys"))
		}
		api, _ := opts["api"].(map[string]any)
		tlsOpt, _ := api["tls"].(map[string]any)
		expect("api.tls", get(cfg, "api.tls"), tlsOpt["enable"] == true)
		if tlsOpt["certFile"] != nil {
			expect("api.tls_cert", get(cfg, "api.tls_cert"), filepath.Join(h.cred, "tls-cert"))
			expect("api.tls_key", get(cfg, "api.tls_key"), filepath.Join(h.cred, "tls-key"))
		}
	} else if hasCred("api-keys") || hasCred("tls-key") {
		t.Errorf("%s: API secrets handed to a unit without the API role: %v", u.Name, u.Credentials)
	}
	if opts["configFile"] != nil {
		expect("log.level", get(cfg, "log.level"), "debug")
		expect("engine.threads", get(cfg, "engine.threads"), 2)
	}
}

// checkTokenUnitWithoutCA runs the token oneshot before its master ever ran: exo's flag parser
// takes the arguments, and the run fails the way Restart=on-failure retries (not status 2, which
// RestartPreventExitStatus= leaves alone), naming the CA file it lacks.
func checkTokenUnitWithoutCA(t *testing.T, u Unit, h host, argv []string) {
	t.Helper()
	if len(argv) < 3 || argv[1] != "cluster" || argv[2] != "token" {
		t.Fatalf("%s: argv %q is not `exo cluster token`", u.Name, argv)
	}
	code, out := run(t, h.env(t), exo(t), argv[1:]...)
	want := filepath.Join(h.state, "exo", "master", "cluster", "ca.crt")
	if code == 0 || code == 2 || !strings.Contains(out, want) {
		t.Fatalf("%s without a CA: exit %d (want a failure other than 2, naming %s)\n%s", u.Name, code, want, out)
	}
	for _, f := range tokenOutputs(u, h.roots) {
		if _, err := os.Stat(f); err == nil {
			t.Fatalf("%s wrote %s without a CA", u.Name, f)
		}
	}
}

func optStrings(v any) []string {
	s, _ := v.([]string)
	return s
}

// TestExecStartRoundTrip: the ExecStart line, once split and unescaped the way systemd does it,
// gives back exactly the argument list (credentials as %d/<id>).
func TestExecStartRoundTrip(t *testing.T) {
	opts := map[string]any{
		"exe":        "/nix/store/x-exo/bin/exo",
		"roles":      rolesMap("master", "worker", "api"),
		"nodeName":   `odd "name" with %n and $HOME`,
		"modelsDirs": []string{"/srv/models with space", `/srv/back\slash`},
		"apiKeyFile": "/run/secrets/keys",
		"api":        map[string]any{"host": "0.0.0.0"},
	}
	// Without an operator token the plan holds the token oneshot too; with one, it does not.
	for _, token := range []any{nil, "/run/secrets/token"} {
		opts["joinTokenFile"] = token
		p := evalPlan(t, opts)
		want := 3
		if token == nil {
			want = 4
		}
		if len(p.Units) != want {
			t.Fatalf("joinTokenFile %v: %d units, want %d: %v", token, len(p.Units), want, p.UnitNames)
		}
		for _, u := range p.Units {
			words, err := splitExecStart(u.ExecStart)
			if err != nil {
				t.Fatalf("%s: %v in %s", u.Name, err, u.ExecStart)
			}
			want := resolveArgs(u.Argv, roots{state: "%S", runtime: "%t", cred: "%d"})
			if !slices.Equal(words, want) {
				t.Errorf("%s: ExecStart splits into\n%q\nwant\n%q", u.Name, words, want)
			}
			if !strings.Contains(u.Text, "\nExecStart="+u.ExecStart+"\n") {
				t.Errorf("%s: unit text lacks the ExecStart line", u.Name)
			}
		}
	}
}

// splitExecStart undoes the helper's quoting: every word is a double-quoted string with C escapes
// (JSON's are a subset), % doubled except in specifiers, $ doubled.
func splitExecStart(line string) ([]string, error) {
	var words []string
	rest := strings.TrimSpace(line)
	for rest != "" {
		if rest[0] != '"' {
			return nil, fmt.Errorf("word not quoted at %q", rest)
		}
		end := 1
		for ; end < len(rest); end++ {
			if rest[end] == '\\' {
				end++
				continue
			}
			if rest[end] == '"' {
				break
			}
		}
		if end >= len(rest) {
			return nil, fmt.Errorf("unterminated word %q", rest)
		}
		word, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return nil, fmt.Errorf("word %s: %w", rest[:end+1], err)
		}
		word = strings.ReplaceAll(word, "$$", "$")
		// %% is a literal percent; a leading %d, %S or %t stays a specifier for systemd to expand
		// (credentials directory, state root, runtime root).
		word = strings.ReplaceAll(word, "%%", "\x00")
		spec := strings.HasPrefix(word, "%d/") || strings.HasPrefix(word, "%S/") || strings.HasPrefix(word, "%t/")
		if strings.Contains(word, "%") && (!spec || strings.Contains(word[1:], "%")) {
			return nil, fmt.Errorf("word %q holds an unescaped specifier", word)
		}
		words = append(words, strings.ReplaceAll(word, "\x00", "%"))
		rest = strings.TrimSpace(rest[end+1:])
	}
	return words, nil
}

// TestUnitsStartUnderSystemdProtocol starts the units of the loopback option sets the way systemd
// would (state, runtime and credentials directories, notify socket, watchdog), one after the other
// in their After=/Before= order: each notify unit reaches READY=1 before the next starts, a oneshot
// (exo-join-token) runs to completion and its file becomes the next units' credential. The API
// answers /readyz, units that join a cluster are listed in it as alive, and SIGTERM ends each with
// status 0 after STOPPING=1.
func TestUnitsStartUnderSystemdProtocol(t *testing.T) {
	for _, tc := range optionCases {
		if !tc.start {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := tc.opts(t, dir)
			opts["exe"] = exo(t)
			p := evalPlan(t, opts)
			type running struct {
				unit Unit
				cmd  *exec.Cmd
				out  *syncbuf.Buffer
				msgs <-chan string
				done chan error
			}
			var procs []*running
			for _, name := range startOrder(t, p) {
				u := p.Units[name]
				h := prepareHost(t, dir, u)
				argv := resolveArgs(u.Argv, h.roots)
				if u.Sections["Service"]["Type"] == "oneshot" {
					runOneshot(t, u, h, argv)
					continue
				}
				sock, msgs := notifySocket(t)
				r := &running{unit: u, out: &syncbuf.Buffer{}, msgs: msgs, done: make(chan error, 1)}
				r.cmd = exec.Command(argv[0], argv[1:]...)
				r.cmd.Env = h.env(t, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=2000000", "WATCHDOG_PID=")
				r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
				if err := r.cmd.Start(); err != nil {
					t.Fatal(err)
				}
				go func() { r.done <- r.cmd.Wait() }()
				t.Cleanup(func() {
					_ = r.cmd.Process.Kill()
					if t.Failed() {
						t.Logf("%s output:\n%s", r.unit.Name, r.out.String())
					}
				})
				procs = append(procs, r)
				// Type=notify: units ordered after this one start once it is READY.
				waitNotify(t, r.unit.Name, r.msgs, r.done, "READY=1", 30*time.Second)
			}
			for _, r := range procs {
				if r.unit.Role == "api" {
					checkReadyz(t, r.unit, opts)
				}
				for _, j := range optStrings(opts["join"]) {
					seedsMu.Lock()
					api, ok := seeds[j]
					seedsMu.Unlock()
					if ok {
						waitMember(t, api, opts["nodeName"].(string))
					}
				}
			}
			// Every unit of a host with a master and the API is admitted to the master's cluster,
			// the co-located ones with the token they were handed as a credential.
			if slices.Contains(p.Roles, "master") && slices.Contains(p.Roles, "api") && len(p.Roles) > 1 {
				api := fmt.Sprintf("127.0.0.1:%d", opts["api"].(map[string]any)["port"])
				for _, role := range p.Roles {
					waitMember(t, api, opts["nodeName"].(string)+"-"+role)
				}
			}
			for i := len(procs) - 1; i >= 0; i-- {
				r := procs[i]
				_ = r.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case err := <-r.done:
					if err != nil {
						t.Errorf("%s: exit after SIGTERM: %v", r.unit.Name, err)
					}
				case <-time.After(45 * time.Second):
					t.Fatalf("%s did not stop within TimeoutStopSec", r.unit.Name)
				}
				waitNotify(t, r.unit.Name, r.msgs, nil, "STOPPING=1", 5*time.Second)
			}
		})
	}
}

// runOneshot runs a Type=oneshot unit's command to completion, as systemd does before starting
// the units ordered after it, and checks the files it writes under its runtime directory: present,
// private to the service user (0600), and holding a join token.
func runOneshot(t *testing.T, u Unit, h host, argv []string) {
	t.Helper()
	code, out := run(t, h.env(t), argv[0], argv[1:]...)
	if code != 0 {
		t.Fatalf("%s: %q: exit %d\n%s", u.Name, argv, code, out)
	}
	outputs := tokenOutputs(u, h.roots)
	if len(outputs) == 0 {
		t.Fatalf("%s writes nothing under its runtime directory: %q", u.Name, argv)
	}
	for _, f := range outputs {
		if !slices.ContainsFunc(h.runtimeDirs, func(d string) bool { return strings.HasPrefix(f, d+string(filepath.Separator)) }) {
			t.Errorf("%s writes %s outside its RuntimeDirectory %v", u.Name, f, h.runtimeDirs)
		}
		st, err := os.Stat(f)
		if err != nil {
			t.Fatalf("%s: %v", u.Name, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %s has mode %v, want 0600", u.Name, f, st.Mode().Perm())
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "exo1.") {
			t.Errorf("%s: %s does not hold a join token: %.40q", u.Name, f, data)
		}
	}
}

func waitNotify(t *testing.T, unit string, msgs <-chan string, done <-chan error, want string, within time.Duration) {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("%s: notify socket closed before %s", unit, want)
			}
			if slices.Contains(strings.Split(m, "\n"), want) {
				return
			}
		case err := <-done:
			t.Fatalf("%s exited before %s: %v", unit, want, err)
		case <-timeout:
			t.Fatalf("%s: no %s within %s", unit, want, within)
		}
	}
}

// waitMember waits until the cluster behind api lists a member of that name as alive: the unit
// was admitted with the token it got as a credential.
func waitMember(t *testing.T, api, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + api + "/api/v1/nodes")
		if err == nil {
			var doc struct {
				Nodes []struct {
					Name   string `json:"name"`
					Status string `json:"status"`
				} `json:"nodes"`
			}
			err = json.NewDecoder(resp.Body).Decode(&doc)
			resp.Body.Close()
			if err == nil {
				for _, n := range doc.Nodes {
					if n.Name == name && n.Status == "alive" {
						return
					}
				}
				last = fmt.Sprint(doc.Nodes)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s never listed as an alive member of the cluster at %s; last: %s", name, api, last)
}

func checkReadyz(t *testing.T, u Unit, opts map[string]any) {
	t.Helper()
	api := opts["api"].(map[string]any)
	scheme := "http"
	if tlsOpt, ok := api["tls"].(map[string]any); ok && tlsOpt["enable"] == true {
		scheme = "https"
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
	}
	url := fmt.Sprintf("%s://127.0.0.1:%d/readyz", scheme, api["port"])
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", u.Name, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: GET %s: %s", u.Name, url, resp.Status)
	}
}
