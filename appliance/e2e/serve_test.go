package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := insecureClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServeFreshNode(t *testing.T) {
	env := cleanEnv(t)
	p := serve(t, env, "http", "--node-name", "e2e-node")
	base := "http://" + p.addr

	code, body := get(t, base+"/healthz")
	var health map[string]string
	if code != 200 || json.Unmarshal([]byte(body), &health) != nil || health["status"] != "ok" || health["node"] != "e2e-node" {
		t.Fatalf("/healthz %d %s", code, body)
	}
	code, body = get(t, base+"/readyz")
	var ready struct {
		Ready bool
		Roles map[string]struct{ Ready bool }
	}
	if code != 200 || json.Unmarshal([]byte(body), &ready) != nil || !ready.Ready || len(ready.Roles) != 3 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	code, body = get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "exo_build_info{") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics %d lacks exo_build_info or go_goroutines:\n%.500s", code, body)
	}
	if !strings.Contains(body, `exo_http_requests_total{code="200",method="GET",route="/healthz"}`) {
		t.Errorf("request counter by route missing:\n%s", grepLines(body, "exo_http_requests_total"))
	}

	if _, err := os.Stat(filepath.Join(repoRoot(t), "frontend", "dist", "index.html")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("frontend/dist/index.html missing under CI: the test command must build the frontend first")
		}
		t.Skip("dashboard not built (run `make build`); skipping the page check")
	}
	code, body = get(t, base+"/")
	if code != 200 || !strings.Contains(body, "<title>exo</title>") {
		t.Fatalf("/ %d: %.300s", code, body)
	}
	// A client-side route falls back to the page; an unknown API path is a JSON 404.
	if code, body = get(t, base+"/nodes"); code != 200 || !strings.Contains(body, "<title>exo</title>") {
		t.Errorf("SPA fallback %d", code)
	}
	if code, body = get(t, base+"/v1/nothing"); code != 404 || !strings.Contains(body, `"error"`) {
		t.Errorf("unknown API route %d %s", code, body)
	}
	if rc := p.stop(t, 20*time.Second); rc != 0 {
		t.Fatalf("exit status %d after SIGTERM", rc)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestSingleRoleCommands(t *testing.T) {
	env := cleanEnv(t)
	addr := nettest.FreePort(t)
	p := start(t, env, "api", "--api-addr", addr, "--data-dir", filepath.Join(t.TempDir(), "d"))
	p.addr = addr
	waitReady(t, p, "http")
	_, body := get(t, "http://"+addr+"/readyz")
	var ready struct{ Roles map[string]any }
	if err := json.Unmarshal([]byte(body), &ready); err != nil || len(ready.Roles) != 1 || ready.Roles["api"] == nil {
		t.Fatalf("exo api runs roles %s", body)
	}
	p.stop(t, 20*time.Second)

	// --roles picks a subset for serve.
	p = serve(t, env, "http", "--roles", "api,worker")
	_, body = get(t, "http://"+p.addr+"/readyz")
	if err := json.Unmarshal([]byte(body), &ready); err != nil || len(ready.Roles) != 2 || ready.Roles["master"] != nil {
		t.Fatalf("serve --roles api,worker runs %s", body)
	}
}

func TestConfigErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(file, []byte("node:\n  nmae: oops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		env   []string
		args  []string
		parts []string
	}{
		{"misspelled key in file", nil, []string{"serve", "--config", file}, []string{"node.nmae", "file " + file, "unknown key"}},
		{"non-number port in env", []string{"EXO_API__ADDR=127.0.0.1:http"}, []string{"serve"}, []string{"api.addr", "env EXO_API__ADDR", "not a number"}},
		{"flag out of range", nil, []string{"serve", "--gossip-addr", ":99999"}, []string{"gossip.addr", "flag --gossip-addr", "out of range"}},
		{"validate command", nil, []string{"config", "validate", file}, []string{"node.nmae", "unknown key"}},
		{"unknown flag", nil, []string{"serve", "--no-such-flag"}, []string{"no-such-flag"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--data-dir", filepath.Join(t.TempDir(), "d"))
			if tc.args[0] == "config" {
				args = tc.args
			}
			code, out := runExo(t, cleanEnv(t, tc.env...), args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; output:\n%s", code, out)
			}
			for _, part := range tc.parts {
				if !strings.Contains(out, part) {
					t.Errorf("message lacks %q:\n%s", part, out)
				}
			}
		})
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("node:\n  name: fine\napi:\n  addr: 127.0.0.1:8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runExo(t, cleanEnv(t), "config", "validate", good); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("valid file: exit %d %s", code, out)
	}
}

func TestConfigShowRedactsSecrets(t *testing.T) {
	code, out := runExo(t, cleanEnv(t, "EXO_CLUSTER__TOKEN=supersecret-token"), "config", "show", "--json", "--node-name", "n1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if strings.Contains(out, "supersecret") || !strings.Contains(out, "<redacted>") || !strings.Contains(out, `"n1"`) {
		t.Fatalf("config show: %s", out)
	}
}

func TestSecondNodeOnSameDataDir(t *testing.T) {
	env := cleanEnv(t)
	data := filepath.Join(t.TempDir(), "shared")
	first := serve(t, env, "http", "--data-dir", data)
	code, out := runExo(t, env, "serve", "--api-addr", nettest.FreePort(t), "--data-dir", data)
	if code == 0 {
		t.Fatalf("second node on the same data directory started:\n%s", out)
	}
	pid := strconv.Itoa(first.cmd.Process.Pid)
	if !strings.Contains(out, "pid "+pid) {
		t.Fatalf("error does not name the first node's pid %s:\n%s", pid, out)
	}
	if c, _ := get(t, "http://"+first.addr+"/healthz"); c != http.StatusOK {
		t.Fatal("first node harmed by the second")
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, out := runExo(t, cleanEnv(t), "version", "--json")
	var v struct {
		Version     string
		GoVersion   string   `json:"go_version"`
		CPUFeatures []string `json:"cpu_features"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Version == "" {
		t.Fatalf("version: %d %s", code, out)
	}
	for _, cmd := range [][]string{{"--help"}, {"serve", "--help"}, {"master", "--help"}, {"worker", "--help"}, {"api", "--help"}, {"config", "show", "--help"}, {"config", "validate", "--help"}, {"version", "--help"}} {
		code, out := runExo(t, cleanEnv(t), cmd...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d\n%s", cmd, code, out)
		}
	}
	_, out = runExo(t, cleanEnv(t), "serve", "--help")
	for _, flag := range []string{"--node-name", "--api-addr", "--gossip-addr", "--transport-addr", "--raft-addr", "--join", "--token", "--models-dir", "--accelerator", "--data-dir", "--roles", "--tls"} {
		if !strings.Contains(out, flag) {
			t.Errorf("serve --help lacks %s", flag)
		}
	}
}

func TestAPIKeysLifecycle(t *testing.T) {
	env := cleanEnv(t)
	data := filepath.Join(t.TempDir(), "data")
	// Beyond loopback with no key at all: refused, with the way out in the message.
	code, out := runExo(t, env, "serve", "--api-addr", "0.0.0.0:0", "--data-dir", data)
	if code == 0 || !strings.Contains(out, "exo keys create") {
		t.Fatalf("open public API started or unhelpful error (exit %d):\n%s", code, out)
	}
	p := serve(t, env, "http", "--data-dir", data)
	base := "http://" + p.addr
	if c, _ := get(t, base+"/metrics"); c != 200 {
		t.Fatalf("loopback API without keys should be open, got %d", c)
	}
	// A key created while the node runs turns authentication on.
	code, out = runExo(t, env, "keys", "create", "--name", "ci", "--json", "--data-dir", data)
	var created struct{ Key, ID string }
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil || !strings.HasPrefix(created.Key, "exo-") {
		t.Fatalf("keys create: %d %s", code, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _ := get(t, base+"/metrics")
		if c == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new key not enforced, /metrics %d", c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+created.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("with key: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, out := runExo(t, env, "keys", "list", "--data-dir", data); !strings.Contains(out, created.ID) || strings.Contains(out, created.Key) {
		t.Fatalf("keys list:\n%s", out)
	}
	if code, out := runExo(t, env, "keys", "revoke", created.ID, "--data-dir", data); code != 0 {
		t.Fatalf("revoke: %s", out)
	}
	if strings.Contains(p.output.String(), created.Key) {
		t.Fatal("the key appears in the node's log")
	}
}

func TestUnloadableAcceleratorStopsStart(t *testing.T) {
	if _, err := os.Stat("/dev/nvidiactl"); err == nil {
		t.Skip("this machine has an NVIDIA driver; the refusal needs a machine without CUDA")
	}
	code, out := runExo(t, cleanEnv(t), "serve", "--accelerator", "cuda", "--api-addr", nettest.FreePort(t),
		"--gossip-addr", nettest.FreePort(t), "--raft-addr", nettest.FreePort(t), "--data-dir", filepath.Join(t.TempDir(), "d"))
	if code == 0 || !strings.Contains(out, "libcuda") || !strings.Contains(out, "accelerator") {
		t.Fatalf("exit %d; a CUDA request without CUDA must stop the node naming the library:\n%s", code, out)
	}
}

// A node whose CUDA loads (here the stand-in libcuda of the accel tests, with two devices)
// selects the cuda backend, and says at start that its models still run on the CPU.
func TestGPUBackendNodeSaysItComputesOnCPU(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gcc is needed to build the stand-in libcuda: %v", err)
		}
		t.Skipf("gcc not found (%v); the stand-in libcuda cannot be built", err)
	}
	dir := t.TempDir()
	src := filepath.Join(repoRoot(t), "appliance", "accel", "testdata", "fakelib", "runtimes.c")
	if b, err := exec.Command(gcc, "-shared", "-fPIC", "-O1", "-DCUDA_OK", "-o", filepath.Join(dir, "libcuda.so.1"), src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	p := serve(t, cleanEnv(t, "LD_LIBRARY_PATH="+dir), "http", "--accelerator", "cuda")
	waitFor(t, 10*time.Second, "the start-up warning", func() bool {
		return strings.Contains(p.output.String(), "the engine has no GPU kernels yet")
	})
	out := p.output.String()
	if !strings.Contains(out, `"backend":"cuda"`) {
		t.Fatalf("the node did not select cuda:\n%s", out)
	}
}

func TestLocalNodeReportsDetection(t *testing.T) {
	p := serve(t, cleanEnv(t), "http")
	code, body := get(t, "http://"+p.addr+"/api/v1/node")
	var node struct {
		Name      string
		Detection struct {
			CPU struct {
				LogicalCores int `json:"logical_cores"`
			}
			SelectedBackend string `json:"selected_backend"`
		}
	}
	if code != 200 || json.Unmarshal([]byte(body), &node) != nil || node.Detection.CPU.LogicalCores < 1 || node.Detection.SelectedBackend == "" {
		t.Fatalf("/api/v1/node %d: %.400s", code, body)
	}
}
