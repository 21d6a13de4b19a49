package accel

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/exo-nix/exo/netstack/iface/ifacetest"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.json from the current output")

// machines are the fake trees in testdata/machines, one per acceptance scenario.
var machines = []string{
	"nvidia-roce-bond", "amd-instinct-radeon", "intel-arc-xe", "thunderbolt-pair",
	"arm-rpi5", "apple-m1max-asahi", "cpu-vm-cgroup",
}

// machine unpacks a fake machine and returns options that read it, and its root.
func machine(t *testing.T, name string) (Options, string) {
	t.Helper()
	root := ifacetest.Extract(t, filepath.Join("testdata", "machines", name+".txtar"))
	o := Options{SysfsRoot: filepath.Join(root, "sys"), ProcfsRoot: filepath.Join(root, "proc")}
	if dt := filepath.Join(root, "proc", "device-tree"); isDir(dt) {
		o.DevtreeRoot = dt
	}
	return o, root
}

func detectMachine(t *testing.T, name string) (*Report, []byte) {
	t.Helper()
	o, root := machine(t, name)
	rep, err := Detect(o)
	if err != nil {
		t.Fatalf("Detect(%s): %v", name, err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	// Warnings name files under the temporary root; the golden files say $ROOT.
	js = bytes.ReplaceAll(js, []byte(root), []byte("$ROOT"))
	return rep, append(js, '\n')
}

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

// validate checks a JSON document against the embedded schema.
func validate(t *testing.T, doc []byte) {
	t.Helper()
	schemaOnce.Do(func() {
		s, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if schemaErr = c.AddResource("detect.schema.json", s); schemaErr != nil {
			return
		}
		schema, schemaErr = c.Compile("detect.schema.json")
	})
	if schemaErr != nil {
		t.Fatalf("schema: %v", schemaErr)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}
	if err := schema.Validate(inst); err != nil {
		t.Fatalf("output does not match detect.schema.json: %v", err)
	}
}

func TestMachinesGolden(t *testing.T) {
	for _, name := range machines {
		t.Run(name, func(t *testing.T) {
			_, js := detectMachine(t, name)
			validate(t, js)
			golden := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, js, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(js, want) {
				t.Errorf("%s differs from the output; diff:\n%s", golden, lineDiff(string(want), string(js)))
			}
		})
	}
}

// lineDiff lists the lines that differ, enough to see what changed without a diff library.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	n := max(len(w), len(g))
	shown := 0
	for i := 0; i < n && shown < 40; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestDetectEmptyRoots: with nothing to read, Detect still answers, schema-valid, and says why.
func TestDetectEmptyRoots(t *testing.T) {
	dir := t.TempDir()
	rep, err := Detect(Options{SysfsRoot: dir, ProcfsRoot: dir})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(rep)
	validate(t, js)
	if rep.SelectedBackend != BackendCPU {
		t.Errorf("selected %q, want cpu", rep.SelectedBackend)
	}
	for _, want := range []string{"CPU: open " + filepath.Join(dir, "cpuinfo"), "memory: open " + filepath.Join(dir, "meminfo"), "PCI: ", "network: network interfaces"} {
		if !hasWarning(rep, want) {
			t.Errorf("no warning containing %q in %q", want, rep.Warnings)
		}
	}
}

func TestDetectBadRoot(t *testing.T) {
	_, err := Detect(Options{SysfsRoot: filepath.Join(t.TempDir(), "nope")})
	if err == nil || !strings.Contains(err.Error(), "sysfs root") {
		t.Fatalf("err = %v, want one naming the sysfs root", err)
	}
}

func hasWarning(r *Report, sub string) bool {
	for _, w := range r.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}
