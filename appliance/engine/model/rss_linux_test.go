//go:build linux

package model

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/testfixtures"
)

// mappedRSS sums the resident bytes of every mapping of path in this process (/proc/self/smaps).
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		abs = p
	}
	fh, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer fh.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && !strings.HasSuffix(fields[0], ":") {
			// A mapping header: "start-end perms offset dev inode [path]".
			in = len(fields) >= 6 && strings.Join(fields[5:], " ") == abs
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			total += kb * 1024
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// A stage touches only its own tensors: the resident part of the file mapping after a forward
// pass stays within the stage's tensors plus the metadata header (and the kernel's fault-around
// of neighbouring pages), and a stage of half the layers keeps well under the whole model. Where
// the weights move out of the mapping (native compute), they are resident once: the mapping
// keeps only what lookups touch and the heap grows by the moved weights.
func TestStageResidentWeights(t *testing.T) {
	const rel = "synthetic/llama-spm32k-e256/llama-spm32k-e256-F16.gguf"
	path := testfixtures.Path(t, rel)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fileSize := st.Size()
	prompt := loadGolden(t, "synthetic/llama-spm32k-e256/golden/llama-spm32k-e256-F16.json").Prompts[0].PromptIDs
	const slack = 1 << 20 // fault-around maps up to 64 KiB next to each touched range

	ranges := [][2]int{{0, 2}, {1, 3}, {2, 4}, {0, 4}}
	rss := map[[2]int]int64{}
	packWeights = false // the weights stay in the mapping
	defer func() { packWeights = true }()
	for _, r := range ranges {
		f := openFixture(t, rel)
		before := mappedRSS(t, path)
		s, err := LoadStage(f, r[0], r[1], Options{})
		if err != nil {
			t.Fatal(err)
		}
		seq := s.NewSequence(len(prompt))
		in := Batch{Tokens: prompt}
		if !s.IsFirst() {
			in = Batch{Hidden: make([]float32, len(prompt)*s.Config.NEmbd)}
			for i := range in.Hidden {
				in.Hidden[i] = float32(i%7) - 3
			}
		}
		if _, err := s.Forward(seq, in); err != nil {
			t.Fatal(err)
		}
		after := mappedRSS(t, path)
		rss[r] = after
		// Embedding rows are looked up, not read whole: count each distinct prompt token's row,
		// and the fault-around the kernel maps beside it, since the rows are scattered over the
		// table and each lookup can fault in its own window.
		refBytes := s.WeightBytes()
		if s.IsFirst() && !s.IsLast() {
			refBytes -= int64(s.Config.NEmbd*s.Config.NVocab*2) - embeddingLookupBytes(prompt, s.Config.NEmbd*2)
		}
		bound := f.DataOffset + refBytes + slack
		t.Logf("stage [%d,%d): references %.2f MB of tensors; file mapping RSS %.2f MB before load, %.2f MB after a forward pass (file %.2f MB)",
			r[0], r[1], float64(s.WeightBytes())/1e6, float64(before)/1e6, float64(after)/1e6, float64(fileSize)/1e6)
		if after > bound {
			t.Errorf("stage [%d,%d): %d bytes resident, more than header %d + touched tensors %d + slack", r[0], r[1], after, f.DataOffset, refBytes)
		}
		f.Close()
	}
	if rss[[2]int{0, 2}] > rss[[2]int{0, 4}]/2 || rss[[2]int{1, 3}] > rss[[2]int{0, 4}]/4 {
		t.Errorf("half-model stages are not much smaller than the whole: %v", rss)
	}

	packWeights = true
	for _, r := range [][2]int{{0, 2}, {2, 4}} {
		f := openFixture(t, rel)
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		s, err := LoadStage(f, r[0], r[1], Options{})
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		if _, err := s.Forward(s.NewSequence(len(prompt)), Batch{Tokens: prompt}); err != nil && s.IsFirst() {
			t.Fatal(err)
		}
		after := mappedRSS(t, path)
		moved := s.WeightBytes()
		lookups := int64(0)
		if s.IsFirst() && !s.IsLast() { // the embedding table stays mapped
			moved -= int64(s.Config.NEmbd * s.Config.NVocab * 2)
			lookups = embeddingLookupBytes(prompt, s.Config.NEmbd*2)
		}
		grew := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
		t.Logf("stage [%d,%d) moved out of the mapping: heap +%.2f MB for %.2f MB of weights; file mapping RSS %.2f MB", r[0], r[1], float64(grew)/1e6, float64(moved)/1e6, float64(after)/1e6)
		if after > f.DataOffset+lookups+slack {
			t.Errorf("stage [%d,%d): %d bytes of the file mapping resident, more than header %d + lookups %d + slack", r[0], r[1], after, f.DataOffset, lookups)
		}
		if grew < moved || grew > moved+slack {
			t.Errorf("stage [%d,%d): the heap grew by %d bytes for %d bytes of moved weights", r[0], r[1], grew, moved)
		}
		runtime.KeepAlive(s)
		f.Close()
	}
}

// faultAround is the most a read fault maps beside the faulting page (Linux's default
// fault_around_bytes).
const faultAround = 64 << 10

// embeddingLookupBytes bounds what looking up the prompt's rows of a rowBytes-wide table can make
// resident: each distinct row plus a fault-around window.
func embeddingLookupBytes(prompt []int32, rowBytes int) int64 {
	distinct := map[int32]bool{}
	for _, id := range prompt {
		distinct[id] = true
	}
	return int64(len(distinct)) * int64(rowBytes+faultAround)
}
