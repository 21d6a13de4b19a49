package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/store"
	"github.com/exo-nix/exo/appliance/store/hubtest"
)

const (
	pullRepo  = "exo-test/stories260K-GGUF"
	pullFile  = "stories260K-Q8_0.gguf"
	pullToken = "hf_e2eSECRETtoken"
)

// pullEnv starts a fake hub serving the Q8_0 fixture behind a token and returns it, the
// fixture's bytes and an environment that points exo at it (HF_ENDPOINT, HF_TOKEN, and
// SSL_CERT_FILE so the binary trusts the hub's test certificate).
func pullEnv(t *testing.T) (*hubtest.Server, []byte, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures(t), "stories260K", pullFile))
	if err != nil {
		t.Fatal(err)
	}
	hub := hubtest.New()
	t.Cleanup(func() { hub.Release(); hub.Close() })
	hub.Token = pullToken
	hub.Add(pullRepo, pullFile, data)
	ca := filepath.Join(t.TempDir(), "hub.pem")
	if err := os.WriteFile(ca, hub.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return hub, data, cleanEnv(t, "HF_ENDPOINT="+hub.Endpoint(), "HF_TOKEN="+pullToken, "SSL_CERT_FILE="+ca)
}

// stateDone reads how many bytes a partial download's resume record counts.
func stateDone(path string) int64 {
	data, err := os.ReadFile(path + ".partial.json")
	if err != nil {
		return -1
	}
	var st struct {
		Done []int64 `json:"done"`
	}
	if json.Unmarshal(data, &st) != nil {
		return -1
	}
	var n int64
	for _, d := range st.Done {
		n += d
	}
	return n
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func pollFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestModelsPullKilledAndResumed: a pull killed with SIGKILL, then one interrupted with
// SIGINT, each resume where the last stopped; the hub serves every byte exactly once.
func TestModelsPullKilledAndResumed(t *testing.T) {
	hub, data, env := pullEnv(t)
	dir := filepath.Join(t.TempDir(), "models")
	final := filepath.Join(dir, pullFile)
	args := []string{"models", "pull", pullRepo + ":" + pullFile, "--models-dir", dir}
	size := int64(len(data))

	cut1 := size/3 + 777
	hub.StallAfter(cut1)
	p := start(t, env, args...)
	pollFor(t, "the resume record to reach the first cut", func() bool { return stateDone(final) == cut1 })
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	pollFor(t, "the killed requests to end", func() bool { return hub.InFlight() == 0 })

	cut2 := size / 3
	hub.Release()
	hub.StallAfter(cut2)
	p = start(t, env, args...)
	pollFor(t, "the resume record to reach the second cut", func() bool { return stateDone(final) == cut1+cut2 })
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 10*time.Second); code != 1 || !strings.Contains(p.output.String(), "run the same command again to resume") {
		t.Fatalf("interrupted pull: exit %d\n%s", code, p.output.String())
	}
	pollFor(t, "the interrupted requests to end", func() bool { return hub.InFlight() == 0 })

	hub.Release()
	code, out := runExo(t, env, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if got := hub.Served(); got != size {
		t.Errorf("the hub served %d bytes over three runs for a %d byte file", got, size)
	}
	got, err := os.ReadFile(final)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("pulled file differs (%v)", err)
	}
	if !strings.Contains(out, `"id":"stories260K-Q8_0"`) || !strings.Contains(out, "resumed at") || !strings.Contains(out, "sha256 verified") {
		t.Errorf("output:\n%s", out)
	}
	if strings.Contains(out+p.output.String(), pullToken) {
		t.Error("the token was printed")
	}
	for _, r := range hub.Requests() {
		if r.Auth != "" && r.Auth != "Bearer "+pullToken {
			t.Errorf("unexpected Authorization %q", r.Auth)
		}
	}
}

func TestModelsPullFlippedByteAndFreeSpace(t *testing.T) {
	hub, data, env := pullEnv(t)
	dir := filepath.Join(t.TempDir(), "models")
	sum := sha256Hex(data)

	// Not enough space: refused before any byte is fetched, naming both numbers.
	code, out := runExo(t, env, "models", "pull", pullRepo+":"+pullFile, "--models-dir", dir, "--reserve", "1000000TiB")
	if code != 1 || !strings.Contains(out, "not enough free space") || !strings.Contains(out, "454656 bytes") || !strings.Contains(out, "0 bytes) available") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if hub.Served() != 0 {
		t.Fatalf("%d bytes fetched before the space check", hub.Served())
	}

	hub.FlipOnce(sum, 4242)
	code, out = runExo(t, env, "models", "pull", pullRepo+":"+pullFile, "--models-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, pullFile)); !bytes.Equal(got, data) {
		t.Fatal("the corrupted download was kept")
	}
	if hub.Served() != 2*int64(len(data)) {
		t.Errorf("served %d bytes, want the file twice", hub.Served())
	}
	if !strings.Contains(out, "SHA-256 mismatch") {
		t.Errorf("the re-fetch was not reported:\n%s", out)
	}

	// Without the token the hub refuses, and the error says what to do.
	env2 := []string{}
	for _, e := range env {
		if !strings.HasPrefix(e, "HF_TOKEN=") {
			env2 = append(env2, e)
		}
	}
	code, out = runExo(t, env2, "models", "pull", pullRepo+":other.gguf", "--models-dir", dir)
	if code != 1 || !strings.Contains(out, "HF_TOKEN") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// TestModelsListImportRmReadOnly: several directories, one marked read-only.
func TestModelsListImportRmReadOnly(t *testing.T) {
	_, data, env := pullEnv(t)
	ro := t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, pullFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	rw := filepath.Join(t.TempDir(), "rw")
	dirs := []string{"--models-dir", ro + ":ro", "--models-dir", rw}

	src := filepath.Join(t.TempDir(), "imported.gguf")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runExo(t, env, append([]string{"models", "import", src, "--json"}, dirs...)...)
	if code != 0 || !strings.Contains(out, filepath.Join(rw, "imported.gguf")) {
		t.Fatalf("import: exit %d\n%s", code, out)
	}

	code, out = runExo(t, env, append([]string{"models", "list", "--json"}, dirs...)...)
	if code != 0 {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	var list struct {
		Models []store.Model `json:"models"`
		Dirs   []store.Dir   `json:"dirs"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list output: %v\n%s", err, out)
	}
	if len(list.Models) != 2 || len(list.Dirs) != 2 || !list.Dirs[0].ReadOnly || list.Dirs[1].ReadOnly || list.Dirs[1].Models != 1 {
		t.Fatalf("list %+v", list)
	}
	for _, m := range list.Models {
		if (m.ID == "stories260K-Q8_0") != m.ReadOnly {
			t.Errorf("model %s read-only=%v", m.ID, m.ReadOnly)
		}
	}
	code, out = runExo(t, env, append([]string{"models", "list"}, dirs...)...)
	if code != 0 || !strings.Contains(out, "read-only (:ro)") || !strings.Contains(out, "imported") {
		t.Fatalf("list table: exit %d\n%s", code, out)
	}

	code, out = runExo(t, env, append([]string{"models", "rm", "stories260K-Q8_0"}, dirs...)...)
	if code != 1 || !strings.Contains(out, "read-only") {
		t.Fatalf("rm from a read-only dir: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(ro, pullFile)); err != nil {
		t.Fatal("a model in a read-only directory was removed")
	}
	code, out = runExo(t, env, append([]string{"models", "rm", "imported"}, dirs...)...)
	if code != 0 || !strings.Contains(out, "removed "+filepath.Join(rw, "imported.gguf")) {
		t.Fatalf("rm: exit %d\n%s", code, out)
	}

	// A stage-only pull writes just the layers asked for.
	// (Only into rw: a node holding the whole model needs no stage file.)
	code, out = runExo(t, env, "models", "pull", pullRepo+":"+pullFile, "--layers", "1-3", "--json", "--models-dir", rw)
	if code != 0 {
		t.Fatalf("stage pull: exit %d\n%s", code, out)
	}
	var m store.Model
	if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "{\"id\""):]), &m); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if m.Stage == nil || m.Stage.First != 1 || m.Stage.Last != 3 || m.Dir != rw || m.Size >= int64(len(data)) {
		t.Fatalf("stage model %+v", m)
	}
}
