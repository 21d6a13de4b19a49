package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"

	"github.com/exo-nix/exo/appliance/syncbuf"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

var exoBin string

func TestMain(m *testing.M) {
	if v := os.Getenv(stageProcEnv); v != "" {
		// A benchmark's stage process (stageproc_test.go), not a test run.
		if err := runStageProc(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "exo-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// EXO_E2E_BIN tests a binary built elsewhere (a package, or a machine with no Go toolchain).
	if exoBin = os.Getenv("EXO_E2E_BIN"); exoBin != "" {
		if _, err := exec.LookPath(exoBin); err != nil {
			fmt.Fprintln(os.Stderr, "EXO_E2E_BIN:", err)
			os.Exit(1)
		}
	} else {
		exoBin = filepath.Join(dir, "exo")
		build := exec.Command("go", "build", "-o", exoBin, "github.com/exo-nix/exo")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build exo:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := testfixtures.RepoRoot()
	if err != nil {
		t.Fatal("go.mod not found above the test directory")
	}
	return root
}

type proc struct {
	cmd    *exec.Cmd
	addr   string
	output *syncbuf.Buffer
	done   chan struct{}
	err    error
}

// cleanEnv is a minimal environment: no EXO_ variables or systemd sockets of the test runner leak
// into the node under test.
func cleanEnv(t testing.TB, extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	return append(env, extra...)
}

// start runs exo with args and env; it does not wait for readiness.
func start(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, strings.Join(args, " "), exec.Command(exoBin, args...), env)
}

// startCmd runs a command that runs exo (under ip netns exec, taskset, ...).
func startCmd(t testing.TB, name string, cmd *exec.Cmd, env []string) *proc {
	t.Helper()
	p := &proc{output: &syncbuf.Buffer{}, done: make(chan struct{}), cmd: cmd}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("exo %s output:\n%s", name, p.output.String())
		}
	})
	return p
}

// serve starts a node on a free API port with its own data directory and waits until /readyz
// answers 200.
func serve(t testing.TB, env []string, scheme string, args ...string) *proc {
	t.Helper()
	addr := nettest.FreePort(t)
	args = append([]string{"serve", "--api-addr", addr, "--log-format", "json"}, args...)
	if !hasFlag(args, "--data-dir") {
		args = append(args, "--data-dir", filepath.Join(t.TempDir(), "data"))
	}
	// A master binds gossip and raft ports; the defaults would collide with any other exo on
	// this machine.
	for _, f := range []string{"--gossip-addr", "--raft-addr", "--transport-addr"} {
		if !hasFlag(args, f) {
			args = append(args, f, nettest.FreePort(t))
		}
	}
	p := start(t, env, args...)
	p.addr = addr
	waitReady(t, p, scheme)
	return p
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f {
			return true
		}
	}
	return false
}

var insecureClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
}

func waitReady(t testing.TB, p *proc, scheme string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("exo exited before ready: %v\n%s", p.err, p.output.String())
		default:
		}
		resp, err := insecureClient.Get(scheme + "://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("exo not ready within 30s\n%s", p.output.String())
}

// stop sends SIGTERM and waits for the exit status.
func (p *proc) stop(t *testing.T, within time.Duration) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(t, within)
}

func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("exo did not exit within %s\n%s", within, p.output.String())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return -1
}

// runExo runs a short exo command and returns its exit code and combined output.
func runExo(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	p := start(t, env, args...)
	code := p.wait(t, 30*time.Second)
	return code, p.output.String()
}

func execCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(exoBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	return cmd
}

func itoa(n int) string { return strconv.Itoa(n) }
