package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func baseEnv(t *testing.T) []string {
	return []string{"HOME=" + t.TempDir()}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	env := baseEnv(t)
	l, err := Load(Sources{NoFile: true, Environ: env})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.API.Addr != "127.0.0.1:52415" || c.Gossip.Addr != ":52416" || c.Transport.Addr != ":52417" || c.Raft.Addr != ":52418" {
		t.Errorf("default addresses: %+v", c)
	}
	if c.Accelerator != "auto" || len(c.Roles) != 3 || c.API.ShutdownTimeout != 30*time.Second || c.Cluster.Discovery != "none" {
		t.Errorf("defaults: %+v", c)
	}
	home := strings.TrimPrefix(env[0], "HOME=")
	if c.DataDir != filepath.Join(home, ".local/share/exo") || c.Models.Dirs[0] != filepath.Join(c.DataDir, "models") {
		t.Errorf("data dir %q models %v", c.DataDir, c.Models.Dirs)
	}
	if c.Node.Name == "" {
		t.Error("node name empty")
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	p := writeFile(t, "node:\n  name: from-file\napi:\n  addr: 127.0.0.1:1000\ngossip:\n  addr: :2000\nmodels:\n  dirs: [/m1, /m2]\n")
	env := append(baseEnv(t), "EXO_API__ADDR=127.0.0.1:1001", "EXO_NODE__NAME=from-env", "EXO_FIXTURES=/ignored")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("node-name", "", "")
	fs.StringArray("models-dir", nil, "")
	if err := fs.Parse([]string{"--node-name", "from-flag", "--models-dir", "/a", "--models-dir", "/b"}); err != nil {
		t.Fatal(err)
	}
	l, err := Load(Sources{File: p, Environ: env, Flags: fs, FlagKeys: map[string]string{"node-name": "node.name", "models-dir": "models.dirs"}})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.Node.Name != "from-flag" || c.API.Addr != "127.0.0.1:1001" || c.Gossip.Addr != ":2000" {
		t.Errorf("precedence wrong: %+v", c)
	}
	if strings.Join(c.Models.Dirs, ",") != "/a,/b" {
		t.Errorf("models.dirs = %v", c.Models.Dirs)
	}
	if l.Origin["api.addr"] != "env EXO_API__ADDR" || l.Origin["gossip.addr"] != "file "+p || l.Origin["node.name"] != "flag --node-name" {
		t.Errorf("origins: %v", l.Origin)
	}
}

func TestErrorsNameKeyAndSource(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		flags      []string
		wantParts  []string
	}{
		{name: "misspelled file key", file: "api:\n  adr: 127.0.0.1:1\n", wantParts: []string{"api.adr", "file ", "unknown key", "api.addr"}},
		{name: "wrong type in file", file: "api:\n  tls: \"yes\"\n", wantParts: []string{"api.tls", "file ", "true or false"}},
		{name: "section given a scalar", file: "api: 5\n", wantParts: []string{"api", "section"}},
		{name: "env non-number port", env: []string{"EXO_API__ADDR=127.0.0.1:abc"}, wantParts: []string{"api.addr", "env EXO_API__ADDR", "not a number"}},
		{name: "env unknown key", env: []string{"EXO_GOSIP__ADDR=:1"}, wantParts: []string{"gosip.addr", "env EXO_GOSIP__ADDR", "unknown key"}},
		{name: "flag port out of range", flags: []string{"--api-addr", "127.0.0.1:70000"}, wantParts: []string{"api.addr", "flag --api-addr", "out of range"}},
		{name: "bad accelerator", env: []string{"EXO_ACCELERATOR=tpu"}, wantParts: []string{"accelerator", "tpu", "one of"}},
		{name: "bad discovery", env: []string{"EXO_CLUSTER__DISCOVERY=bonjour"}, wantParts: []string{"cluster.discovery", "bonjour", "none, mdns", "EXO_CLUSTER__DISCOVERY"}},
		{name: "bad role", flags: []string{"--roles", "master,cook"}, wantParts: []string{"roles", "cook", "unknown role"}},
		{name: "queue out of range", env: []string{"EXO_API__MAX_QUEUE=0"}, wantParts: []string{"api.max_queue", "env EXO_API__MAX_QUEUE", "between"}},
		{name: "bad kv type", env: []string{"EXO_ENGINE__KV_TYPE=q4_0"}, wantParts: []string{"engine.kv_type", "env EXO_ENGINE__KV_TYPE", "q4_0", "f16, f32, q8_0"}},
		{name: "bad duration", env: []string{"EXO_API__SHUTDOWN_TIMEOUT=soon"}, wantParts: []string{"api.shutdown_timeout", "duration"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := Sources{NoFile: true, Environ: append(baseEnv(t), tc.env...)}
			if tc.file != "" {
				src.File, src.NoFile = writeFile(t, tc.file), false
			}
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			fs.String("api-addr", "", "")
			fs.StringSlice("roles", nil, "")
			if err := fs.Parse(tc.flags); err != nil {
				t.Fatal(err)
			}
			src.Flags, src.FlagKeys = fs, map[string]string{"api-addr": "api.addr", "roles": "roles"}
			_, err := Load(src)
			if err == nil {
				t.Fatal("accepted")
			}
			if !IsConfigError(err) {
				t.Fatalf("not a config error: %v", err)
			}
			for _, part := range tc.wantParts {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q lacks %q", err, part)
				}
			}
		})
	}
}

func TestStateDirectoryAndRedaction(t *testing.T) {
	env := append(baseEnv(t), "STATE_DIRECTORY=/var/lib/exo:/var/lib/other", "EXO_CLUSTER__TOKEN=s3cret", "EXO_API__KEYS=k1,k2")
	l, err := Load(Sources{NoFile: true, Environ: env})
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.DataDir != "/var/lib/exo" {
		t.Errorf("data dir %q", l.Config.DataDir)
	}
	if l.Config.Cluster.Token != "s3cret" || len(l.Config.API.Keys) != 2 {
		t.Errorf("secrets not loaded: %+v", l.Config.Cluster)
	}
	red := l.Redacted()
	out := strings.ReplaceAll(strings.ReplaceAll(fmtMap(red), "\n", " "), "  ", " ")
	if strings.Contains(out, "s3cret") || strings.Contains(out, "k1") {
		t.Errorf("secret leaked: %s", out)
	}
	if !strings.Contains(out, "<redacted>") || !strings.Contains(out, "/var/lib/exo") {
		t.Errorf("redacted view incomplete: %s", out)
	}
}

func TestJoinTokenAlias(t *testing.T) {
	l, err := Load(Sources{NoFile: true, Environ: append(baseEnv(t), "EXO_JOIN_TOKEN=abc")})
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Cluster.Token != "abc" {
		t.Errorf("token %q", l.Config.Cluster.Token)
	}
}

func fmtMap(m map[string]any) string {
	var b strings.Builder
	for k, v := range m {
		b.WriteString(k)
		b.WriteString("=")
		if sub, ok := v.(map[string]any); ok {
			b.WriteString("{" + fmtMap(sub) + "}")
		} else {
			b.WriteString(fmt.Sprint(v))
		}
		b.WriteString(" ")
	}
	return b.String()
}
