package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// smallModel is a compact valid file for fuzz seeds: a few KVs of assorted types and two tensors.
func smallModel(t testing.TB, align uint32) []byte {
	w := NewWriter()
	w.AddKV("general.architecture", Str("llama"))
	if align != 0 {
		w.SetAlignment(align)
	}
	w.AddKV("llama.block_count", U32(1))
	w.AddKV("s", Strs([]string{"a", "bc"}))
	w.AddKV("f", F32s([]float32{1, -1}))
	w.AddKV("n", Arrays([]Value{ArrayOf(Bool, []bool{true}), I32s([]int32{3})}))
	w.AddKV("d", F64(0.5))
	if err := w.AddTensor("blk.0.w", ggml.F16, []uint64{4, 2}, make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("token_embd.weight", ggml.Q4_0, []uint64{32}, make([]byte, 18)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fuzzSeeds are the in-code seeds; testdata/fuzz/FuzzParse holds the same plus what fuzzing found.
func fuzzSeeds(t testing.TB) map[string][]byte {
	m := smallModel(t, 0)
	seeds := map[string][]byte{
		"valid":          m,
		"valid_align64":  smallModel(t, 64),
		"valid_v2":       append([]byte(nil), m...),
		"truncated_hdr":  m[:20],
		"truncated_kv":   m[:60],
		"truncated_data": m[:len(m)-5],
		"empty_file":     {},
		"vocab_only":     header(0, 1).str("tokenizer.ggml.tokens").u32(uint32(Array)).u32(uint32(String)).u64(2).str("a").str("b").Bytes(),
		"huge_array":     header(0, 1).str("k").u32(uint32(Array)).u32(uint32(Uint64)).u64(1 << 60).pad(16).Bytes(),
	}
	binary.LittleEndian.PutUint32(seeds["valid_v2"][4:], 2)
	for i, off := range []int{8, 16, 24, 40, 60, 100} {
		if off < len(m) {
			b := append([]byte(nil), m...)
			b[off] ^= 0xff
			seeds[fmt.Sprintf("flip_%d", i)] = b
		}
	}
	return seeds
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzParse/seed_* when GGUF_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("GGUF_WRITE_CORPUS") != "1" {
		t.Skip("set GGUF_WRITE_CORPUS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, "seed_"+name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParse checks that no input panics, that allocation stays proportional to the input, and
// that whatever parses survives a write/read round trip unchanged.
func FuzzParse(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		file, err := Parse(data)
		runtime.ReadMemStats(&after)
		// Bookkeeping (slice headers, map entries, append growth) costs a bounded multiple of
		// the bytes that describe it; what must never happen is an allocation sized by a count
		// the file cannot back.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64*uint64(len(data))+1<<20 {
			t.Fatalf("parsing %d bytes allocated %d", len(data), alloc)
		}
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error %T is not a *FormatError: %v", err, err)
			}
			return
		}
		for i := range file.Tensors {
			ti := &file.Tensors[i]
			if d := file.TensorData(ti); int64(len(d)) != ti.Size {
				t.Fatalf("%s: %d data bytes, size %d", ti.Name, len(d), ti.Size)
			}
		}
		for _, kv := range file.KVs {
			_ = kv.Value.Format(3)
			if v, ok := file.Get(kv.Key); !ok || v.Type != kv.Value.Type {
				t.Fatalf("Get(%q) disagrees with KVs", kv.Key)
			}
		}
		_ = file.ValidateArch()
		once := rewrite(t, file)
		again, err := Parse(once)
		if err != nil {
			t.Fatalf("re-reading the writer's output: %v", err)
		}
		if twice := rewrite(t, again); !bytes.Equal(once, twice) {
			t.Fatal("write/read/write is not stable")
		}
	})
}
