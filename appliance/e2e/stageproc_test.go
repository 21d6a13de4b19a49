package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/model"
)

// The benchmarks' stage processes: this test binary, started again with stageProcEnv set, loads
// a model's layers [first, last) with one thread and runs decode passes without any node,
// network or API around them. Two of them hand each pass on to the other through a pair of
// pipes, as a 2-stage pipeline's nodes do through the transport; one alone runs the whole model.
// Their rates against each other are what the machine itself allows two one-core processes
// that alternate, which BenchmarkPipelineVsOneNode reports beside the nodes' figures.
const stageProcEnv = "EXO_E2E_STAGE_PROC"

// stageProcSpec is what a stage process runs; it travels in stageProcEnv as its fields'
// values separated by commas.
type stageProcSpec struct {
	model       string
	first, last int
	steps       int
	lead        bool // drives: starts each step, measures; the other answers
	alone       bool // lead with no partner
}

func (s stageProcSpec) String() string {
	return fmt.Sprintf("%s,%d,%d,%d,%t,%t", s.model, s.first, s.last, s.steps, s.lead, s.alone)
}

func parseStageProc(v string) (stageProcSpec, error) {
	f := strings.Split(v, ",")
	if len(f) != 6 {
		return stageProcSpec{}, fmt.Errorf("%s=%q: want model,first,last,steps,lead,alone", stageProcEnv, v)
	}
	var s stageProcSpec
	var err error
	s.model = f[0]
	for i, p := range []*int{&s.first, &s.last, &s.steps} {
		if *p, err = strconv.Atoi(f[1+i]); err != nil {
			return s, fmt.Errorf("%s=%q: field %d: %w", stageProcEnv, v, 2+i, err)
		}
	}
	for i, p := range []*bool{&s.lead, &s.alone} {
		if *p, err = strconv.ParseBool(f[4+i]); err != nil {
			return s, fmt.Errorf("%s=%q: field %d: %w", stageProcEnv, v, 5+i, err)
		}
	}
	return s, nil
}

// runStageProc is a stage process's whole life (called from TestMain); the lead writes its
// steps per second to stderr as "rate R".
func runStageProc(v string) error {
	spec, err := parseStageProc(v)
	if err != nil {
		return err
	}
	f, err := gguf.Open(spec.model)
	if err != nil {
		return err
	}
	st, err := model.LoadStage(f, spec.first, spec.last, model.Options{Threads: 1})
	if err != nil {
		return err
	}
	seq := st.NewSequence(spec.steps + 1)
	hidden := make([]float32, st.Config.NEmbd)
	// ForwardBatch, as the nodes run it: its results stay with the sequence, nothing is copied.
	items, outs := make([]model.SeqBatch, 1), make([]model.Out, 1)
	tok := make([]int32, 1)
	pass := func(pos int) error {
		items[0] = model.SeqBatch{Seq: seq, Batch: model.Batch{Pos: pos, Hidden: hidden}}
		if st.IsFirst() {
			tok[0] = int32(1 + pos%100)
			items[0].Batch = model.Batch{Pos: pos, Tokens: tok}
		}
		return st.ForwardBatch(items, outs)
	}
	one := make([]byte, 1)
	// The partner's stdin is this one's stdout: a byte hands over a step.
	handOver := func() error { _, err := os.Stdout.Write(one); return err }
	await := func() error { _, err := io.ReadFull(os.Stdin, one); return err }
	if !spec.lead {
		if err := handOver(); err != nil { // loaded
			return err
		}
		for pos := 0; ; pos++ {
			if err := await(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			if err := pass(pos); err != nil {
				return err
			}
			if err := handOver(); err != nil {
				return err
			}
		}
	}
	if !spec.alone {
		if err := await(); err != nil { // the partner has loaded
			return err
		}
	}
	start := time.Now()
	for pos := 0; pos < spec.steps; pos++ {
		if err := pass(pos); err != nil {
			return err
		}
		if spec.alone {
			continue
		}
		if err := handOver(); err != nil {
			return err
		}
		if err := await(); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "rate %g\n", float64(spec.steps)/time.Since(start).Seconds())
	return nil
}

// stageProcRate runs stage processes pinned to cores (one per stage, in order; a single one is
// the whole model alone) over steps decode steps and returns the steps per second.
func stageProcRate(b *testing.B, path string, stages [][2]int, cores []string, steps int) float64 {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	if len(stages) != len(cores) || len(stages) < 1 || len(stages) > 2 {
		b.Fatalf("stage processes: %d stages on %d cores", len(stages), len(cores))
	}
	var cmds []*exec.Cmd
	errs := make([]bytes.Buffer, len(stages))
	var toLead, fromLead [2]*os.File // pipes between the two processes
	if len(stages) == 2 {
		r1, w1, err1 := os.Pipe()
		r2, w2, err2 := os.Pipe()
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		toLead, fromLead = [2]*os.File{r1, w1}, [2]*os.File{r2, w2}
	}
	for i, st := range stages {
		spec := stageProcSpec{model: path, first: st[0], last: st[1], steps: steps, lead: i == 0, alone: len(stages) == 1}
		cmd := exec.Command("taskset", "-c", cores[i], self)
		cmd.Env = append(os.Environ(), stageProcEnv+"="+spec.String(), "GOMAXPROCS=1")
		cmd.Stderr = &errs[i]
		if len(stages) == 2 {
			if i == 0 {
				cmd.Stdin, cmd.Stdout = toLead[0], fromLead[1]
			} else {
				cmd.Stdin, cmd.Stdout = fromLead[0], toLead[1]
			}
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, f := range append(toLead[:], fromLead[:]...) {
		if f != nil {
			f.Close() // the processes hold their ends
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			b.Fatalf("stage process %d (layers %v): %v\n%s", i, stages[i], err, errs[i].String())
		}
	}
	var rate float64
	if _, err := fmt.Sscanf(strings.TrimSpace(errs[0].String()), "rate %g", &rate); err != nil || rate <= 0 {
		b.Fatalf("stage process: no rate in %q", errs[0].String())
	}
	return rate
}

func TestStageProcSpecRoundTrip(t *testing.T) {
	want := stageProcSpec{model: "/m/l.gguf", first: 3, last: 9, steps: 48, lead: true}
	got, err := parseStageProc(want.String())
	if err != nil || got != want {
		t.Fatalf("parse(%q) = %+v, %v; want %+v", want.String(), got, err, want)
	}
	for _, bad := range []string{"", "m,1,2,3,true", "m,x,2,3,true,false", "m,1,2,3,yes,false"} {
		if _, err := parseStageProc(bad); err == nil || !strings.Contains(err.Error(), stageProcEnv) {
			t.Errorf("parse(%q): %v, want an error naming %s", bad, err, stageProcEnv)
		}
	}
}
