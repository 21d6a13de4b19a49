package nixtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exo-nix/exo/netstack/nettest"
)

var (
	buildOnce sync.Once
	exoBin    string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// exo builds the binary once, on first use: when the tools are missing every test skips before
// needing it, and the build is not paid for.
func exo(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "exo-nixtest-")
		if buildErr != nil {
			return
		}
		exoBin = filepath.Join(binDir, "exo")
		build := exec.Command("go", "build", "-o", exoBin, "github.com/exo-nix/exo")
		var out bytes.Buffer
		build.Stdout, build.Stderr = &out, &out
		if err := build.Run(); err != nil {
			buildErr = fmt.Errorf("go build github.com/exo-nix/exo: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return exoBin
}

// requireTool finds a host tool the tests depend on. A developer machine without it skips with
// the reason; CI must have it.
func requireTool(t *testing.T, name, debPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found (Debian package %s): %v", name, debPackage, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// Plan mirrors what nix/lib's `plan` returns.
type Plan struct {
	Roles []string `json:"roles"`
	// UnitNames lists every unit: the roles' and, next to a master, exo-join-token.
	UnitNames []string        `json:"unitNames"`
	Units     map[string]Unit `json:"units"`
	Target    string          `json:"target"`
	Firewall  struct {
		TCP []int `json:"tcp"`
		UDP []int `json:"udp"`
	} `json:"firewall"`
	Problems []string `json:"problems"`
	Warnings []string `json:"warnings"`
}

// Unit is one systemd unit of a plan.
type Unit struct {
	Name string `json:"name"`
	// Role is empty for the join token oneshot.
	Role        string                    `json:"role"`
	Argv        []Arg                     `json:"argv"`
	ExecStart   string                    `json:"execStart"`
	Credentials []Credential              `json:"credentials"`
	Listeners   []Listener                `json:"listeners"`
	Text        string                    `json:"text"`
	Sections    map[string]map[string]any `json:"sections"`
}

// Arg is an ExecStart argument: a literal, a file in the unit's credentials directory (%d), or a
// path under the state (%S) or runtime (%t) root.
type Arg struct {
	Literal    string
	Credential string
	State      string
	Runtime    string
}

func (a *Arg) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &a.Literal)
	}
	var c struct {
		Credential string `json:"credential"`
		State      string `json:"state"`
		Runtime    string `json:"runtime"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("argument %s: %w", b, err)
	}
	set := 0
	for _, v := range []string{c.Credential, c.State, c.Runtime} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("argument %s is not a string, a credential, a state path or a runtime path", b)
	}
	a.Credential, a.State, a.Runtime = c.Credential, c.State, c.Runtime
	return nil
}

// roots are the directories systemd expands in a unit's arguments: %S (/var/lib for system
// units), %t (/run) and %d (the unit's credentials directory). A test stands in its own.
type roots struct {
	state, runtime, cred string
}

// Resolve turns the argument into what the process receives.
func (a Arg) Resolve(r roots) string {
	switch {
	case a.Credential != "":
		return filepath.Join(r.cred, a.Credential)
	case a.State != "":
		return filepath.Join(r.state, a.State)
	case a.Runtime != "":
		return filepath.Join(r.runtime, a.Runtime)
	}
	return a.Literal
}

// Credential is a LoadCredential= entry. Runtime is set for a file another unit of the plan writes
// (the minted join token): its path relative to the runtime root.
type Credential struct {
	ID      string `json:"id"`
	Path    string `json:"path"`
	Runtime string `json:"runtime"`
}

// Listener is one address a unit listens on.
type Listener struct {
	Name string `json:"name"`
	Flag string `json:"flag"`
	Addr string `json:"addr"`
	Port int    `json:"port"`
	TCP  bool   `json:"tcp"`
	UDP  bool   `json:"udp"`
	Open bool   `json:"open"`
}

// evalPlan evaluates nix/lib's plan for the given options (passed as JSON, as the NixOS module
// passes plain data).
func evalPlan(t *testing.T, opts map[string]any) Plan {
	t.Helper()
	var p Plan
	evalNix(t, "l.plan p", opts, &p)
	return p
}

// evalNix evaluates expr with `l` bound to nix/lib and `p` to params. The dummy store keeps the
// evaluation away from any Nix daemon or store state: the helpers are pure.
func evalNix(t *testing.T, expr string, params any, out any) {
	t.Helper()
	nixInstantiate := requireTool(t, "nix-instantiate", "nix-bin")
	js, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(repoRoot(t), "nix", "lib")
	full := fmt.Sprintf("{ params }: let l = import %s; p = builtins.fromJSON params; in %s", lib, expr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nixInstantiate, "--store", "dummy://", "--eval", "--strict", "--json",
		"--argstr", "params", string(js), "-E", full)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nix-instantiate %s with %s: %v\n%s", expr, js, err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("nix-instantiate %s: output is not the expected JSON: %v\n%.2000s", expr, err, stdout.String())
	}
}

// freePort is nettest.FreePort's port number (the module's options take ports, not addresses).
func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(nettest.FreePort(t))
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// run executes a short command and returns its exit status and combined output.
func run(t *testing.T, env []string, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	return -1, ""
}

// baseEnv is a minimal environment: nothing of the test runner's EXO_ variables or systemd
// sockets leaks into the process under test.
func baseEnv(t *testing.T, extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, extra...)
}

// notifySocket listens like systemd's notification socket and collects the datagrams.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "exo-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 64)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}
