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

// Option sets whose units run on their own are started; those with a master and other roles on
// one host are parsed only: the local units join that master with a join token, and a master
// without the API role cannot issue one yet (see the module's notes on co-located roles).
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
	out := &syncBuffer{}
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

// host is what systemd prepares for one unit: its state directory (exported as
// $STATE_DIRECTORY, several entries separated by colons) and its credentials directory (%d) with
// a private copy of each LoadCredential= file.
type host struct {
	stateDirs []string
	credDir   string
}

func prepareHost(t *testing.T, dir string, u Unit) host {
	t.Helper()
	var h host
	for _, sd := range u.Sections["Service"]["StateDirectory"].([]any) {
		p := filepath.Join(dir, "var-lib", sd.(string))
		if err := os.MkdirAll(p, 0o750); err != nil {
			t.Fatal(err)
		}
		h.stateDirs = append(h.stateDirs, p)
	}
	h.credDir = filepath.Join(dir, "credentials", u.Name+".service")
	if err := os.MkdirAll(h.credDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range u.Credentials {
		data, err := os.ReadFile(c.Path)
		if err != nil {
			t.Fatalf("%s: LoadCredential=%s:%s: %v", u.Name, c.ID, c.Path, err)
		}
		writeFile(t, filepath.Join(h.credDir, c.ID), string(data), 0o400)
	}
	return h
}

func (h host) env(t *testing.T, extra ...string) []string {
	return baseEnv(t, append([]string{"STATE_DIRECTORY=" + strings.Join(h.stateDirs, ":"), "CREDENTIALS_DIRECTORY=" + h.credDir}, extra...)...)
}

func resolveArgs(args []Arg, credDir string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a.Resolve(credDir)
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
			if len(p.Units) != len(p.Roles) || len(p.Units) == 0 {
				t.Fatalf("plan has %d units for roles %v", len(p.Units), p.Roles)
			}
			for _, u := range p.Units {
				h := prepareHost(t, dir, u)
				argv := resolveArgs(u.Argv, h.credDir)
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
	if opts["joinTokenFile"] != nil {
		expect("cluster.token_file", get(cfg, "cluster.token_file"), filepath.Join(h.credDir, "join-token"))
	}
	if u.Role == "api" {
		if opts["apiKeyFile"] != nil {
			expect("api.key_file", get(cfg, "api.key_file"), filepath.Join(h.credDir, "api-keys"))
		}
		api, _ := opts["api"].(map[string]any)
		tlsOpt, _ := api["tls"].(map[string]any)
		expect("api.tls", get(cfg, "api.tls"), tlsOpt["enable"] == true)
		if tlsOpt["certFile"] != nil {
			expect("api.tls_cert", get(cfg, "api.tls_cert"), filepath.Join(h.credDir, "tls-cert"))
			expect("api.tls_key", get(cfg, "api.tls_key"), filepath.Join(h.credDir, "tls-key"))
		}
	} else if hasCred("api-keys") || hasCred("tls-key") {
		t.Errorf("%s: API secrets handed to a unit without the API role: %v", u.Name, u.Credentials)
	}
	if opts["configFile"] != nil {
		expect("log.level", get(cfg, "log.level"), "debug")
		expect("engine.threads", get(cfg, "engine.threads"), 2)
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
		"exe":           "/nix/store/x-exo/bin/exo",
		"roles":         rolesMap("master", "worker", "api"),
		"nodeName":      `odd "name" with %n and $HOME`,
		"modelsDirs":    []string{"/srv/models with space", `/srv/back\slash`},
		"joinTokenFile": "/run/secrets/token",
		"apiKeyFile":    "/run/secrets/keys",
		"api":           map[string]any{"host": "0.0.0.0"},
	}
	p := evalPlan(t, opts)
	for _, u := range p.Units {
		words, err := splitExecStart(u.ExecStart)
		if err != nil {
			t.Fatalf("%s: %v in %s", u.Name, err, u.ExecStart)
		}
		want := resolveArgs(u.Argv, "%d")
		if !slices.Equal(words, want) {
			t.Errorf("%s: ExecStart splits into\n%q\nwant\n%q", u.Name, words, want)
		}
		if !strings.Contains(u.Text, "\nExecStart="+u.ExecStart+"\n") {
			t.Errorf("%s: unit text lacks the ExecStart line", u.Name)
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
		// %% is a literal percent; a lone %d stays a specifier for systemd to expand.
		word = strings.ReplaceAll(word, "%%", "\x00")
		if strings.Contains(word, "%") && !strings.HasPrefix(word, "%d/") {
			return nil, fmt.Errorf("word %q holds an unescaped specifier", word)
		}
		words = append(words, strings.ReplaceAll(word, "\x00", "%"))
		rest = strings.TrimSpace(rest[end+1:])
	}
	return words, nil
}

// TestUnitsStartUnderSystemdProtocol starts the units of the loopback option sets the way systemd
// would (state and credentials directories, notify socket, watchdog): each reaches READY=1, the API
// answers /readyz, and SIGTERM ends each with status 0 after STOPPING=1.
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
				out  *syncBuffer
				msgs <-chan string
				done chan error
			}
			var procs []*running
			// Start in the order the units are ordered (master first), as systemd does.
			for _, role := range p.Roles {
				u := p.Units["exo-"+role]
				h := prepareHost(t, dir, u)
				sock, msgs := notifySocket(t)
				argv := resolveArgs(u.Argv, h.credDir)
				r := &running{unit: u, out: &syncBuffer{}, msgs: msgs, done: make(chan error, 1)}
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
			}
			for _, r := range procs {
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
