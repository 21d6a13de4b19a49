package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestOfflineTokenLetsSameHostRolesJoin: a worker unit on a master's host gets its token from
// the master's data directory at boot (the NixOS module's token unit), with no API involved.
func TestOfflineTokenLetsSameHostRolesJoin(t *testing.T) {
	master := startClusterNode(t, "m1", true, "--roles", "master,api")
	tokenFile := filepath.Join(t.TempDir(), "join-token")
	if code, out := runExo(t, cleanEnv(t), "cluster", "token", "--from-data-dir", master.data, "--role", "worker", "--out", tokenFile); code != 0 {
		t.Fatalf("offline token: exit %d\n%s", code, out)
	}
	st, err := os.Stat(tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v %v", st, err)
	}
	worker := startClusterNode(t, "w1", true, "--roles", "worker,api", "--join", master.gossip, "--token-file", tokenFile)
	waitUntil(t, 20*time.Second, "the worker admitted with an offline token", func() bool {
		return master.statuses(t)["w1"] == "alive" || worker.statuses(t)["m1"] == "alive"
	})
	// A data directory without the CA key cannot mint tokens.
	if code, out := runExo(t, cleanEnv(t), "cluster", "token", "--from-data-dir", worker.data); code == 0 {
		t.Fatalf("a worker's data directory minted a token:\n%s", out)
	}
}
