package nixtest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Exposure limits of `systemd-analyze security` (0 = locked down, 10 = unprotected). GPU variants
// give up PrivateDevices, PrivateUsers and MemoryDenyWriteExecute for the vendor runtimes and still
// stay within the bar set for the CPU variant.
var exposureLimit = map[string]float64{"cpu": 2.0, "cuda": 2.0, "rocm": 2.0, "opencl": 2.0}

// Keys newer than the systemd on the test machine (Debian 12 has 252; RestartSteps= and
// RestartMaxDelaySec= came with 254). Any other complaint about the unit files fails the test.
var newerKeys = regexp.MustCompile(`Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\], ignoring\.$`)

var exposureLine = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)

// writeUnits renders every unit of a plan (and exo.target) into dir as systemd would find them.
func writeUnits(t *testing.T, dir string, p Plan) []string {
	t.Helper()
	var names []string
	for name, u := range p.Units {
		writeFile(t, filepath.Join(dir, name+".service"), u.Text, 0o644)
		names = append(names, name+".service")
	}
	writeFile(t, filepath.Join(dir, "exo.target"), p.Target, 0o644)
	return names
}

func systemdAnalyze(t *testing.T, dir string, args ...string) (string, string, error) {
	t.Helper()
	tool := requireTool(t, "systemd-analyze", "systemd")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = dir
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// unexpectedWarnings returns the diagnostic lines other than the known newer keys.
func unexpectedWarnings(stderr string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if line != "" && !newerKeys.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

// TestUnitSecurityScore renders the units for every accelerator variant with the real binary as
// ExecStart and scores each with `systemd-analyze security --offline=true`: the three roles and,
// as no operator token is given, the exo-join-token oneshot that mints theirs.
func TestUnitSecurityScore(t *testing.T) {
	requireTool(t, "systemd-analyze", "systemd")
	for acc, limit := range exposureLimit {
		t.Run(acc, func(t *testing.T) {
			dir := t.TempDir()
			p := evalPlan(t, map[string]any{
				"exe":         exo(t),
				"roles":       rolesMap("master", "worker", "api"),
				"accelerator": acc,
			})
			units := writeUnits(t, dir, p)
			if !slices.Contains(units, "exo-join-token.service") {
				t.Fatalf("no exo-join-token unit to score among %v", units)
			}
			for _, unit := range units {
				stdout, stderr, err := systemdAnalyze(t, dir, "security", "--offline=true", "--no-pager", "./"+unit)
				if err != nil {
					t.Fatalf("systemd-analyze security %s: %v\n%s%s", unit, err, stdout, stderr)
				}
				if w := unexpectedWarnings(stderr); len(w) > 0 {
					t.Errorf("%s: systemd-analyze complains:\n%s", unit, strings.Join(w, "\n"))
				}
				m := exposureLine.FindStringSubmatch(stdout)
				if m == nil || m[1] != unit {
					t.Fatalf("%s: no overall exposure line in:\n%s", unit, stdout)
				}
				score, err := strconv.ParseFloat(m[2], 64)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s (%s): exposure %.1f", unit, acc, score)
				if score > limit {
					t.Errorf("%s (%s): exposure %.1f above %.1f; what is still open:\n%s", unit, acc, score, limit, openItems(stdout))
				}
			}
		})
	}
}

// openItems lists the lines of the security table that cost exposure.
func openItems(table string) string {
	var out []string
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "✗") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestUnitFilesVerify runs `systemd-analyze verify` over the rendered units and target: every key
// is known (beyond the newer ones above), every value parses, the ExecStart binary exists. The
// CUDA variant takes the join token from an operator's file, the others have exo-join-token mint it.
func TestUnitFilesVerify(t *testing.T) {
	requireTool(t, "systemd-analyze", "systemd")
	for _, acc := range []string{"cpu", "cuda", "rocm", "opencl"} {
		t.Run(acc, func(t *testing.T) {
			dir := t.TempDir()
			opts := map[string]any{
				"exe":         exo(t),
				"roles":       rolesMap("master", "worker", "api"),
				"accelerator": acc,
				"apiKeyFile":  "/run/secrets/exo-keys",
				"api":         map[string]any{"host": "0.0.0.0", "tls": map[string]any{"enable": true}},
				"modelsDirs":  []string{"/srv/models"},
			}
			if acc == "cuda" {
				opts["joinTokenFile"] = "/run/secrets/exo-token"
				opts["join"] = []string{"10.0.0.9:52416"}
			}
			if acc == "rocm" {
				opts["networkNamespace"] = "exo"
			}
			p := evalPlan(t, opts)
			if _, minted := p.Units["exo-join-token"]; minted == (acc == "cuda") {
				t.Fatalf("exo-join-token in the plan: %v, want it exactly without an operator token", minted)
			}
			units := writeUnits(t, dir, p)
			if acc == "rocm" {
				// BindsTo= names the namespace unit; give verify one to find.
				writeFile(t, filepath.Join(dir, "exo-netns.service"), "[Service]\nType=oneshot\nExecStart=/bin/true\n", 0o644)
			}
			args := append([]string{"verify", "--man=no"}, prefixed(units)...)
			stdout, stderr, err := systemdAnalyze(t, dir, args...)
			if err != nil {
				t.Fatalf("systemd-analyze verify: %v\n%s%s", err, stdout, stderr)
			}
			if w := unexpectedWarnings(stderr + stdout); len(w) > 0 {
				t.Errorf("systemd-analyze verify complains:\n%s", strings.Join(w, "\n"))
			}
		})
	}
}

func prefixed(units []string) []string {
	out := make([]string, len(units))
	for i, u := range units {
		out[i] = "./" + u
	}
	return out
}

// Guard against a silently empty table: the plan for the score test must hold the three role units
// (Type=notify) and the token oneshot.
func TestSecurityPlanShape(t *testing.T) {
	p := evalPlan(t, map[string]any{"exe": "/bin/true", "roles": rolesMap("master", "worker", "api")})
	if len(p.Units) != 4 {
		t.Fatalf("plan has %d units, want 4: %v", len(p.Units), p.UnitNames)
	}
	for name, u := range p.Units {
		typ := "notify"
		if name == "exo-join-token" {
			typ = "oneshot"
		}
		if !strings.Contains(u.Text, "Type="+typ+"\n") || !strings.Contains(u.Text, fmt.Sprintf("SyslogIdentifier=%s\n", name)) {
			t.Errorf("%s: unit text lacks Type=%s or its SyslogIdentifier:\n%s", name, typ, u.Text)
		}
	}
}
