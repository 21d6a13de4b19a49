package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/kernels"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

// allFixtureGGUFs lists every .gguf under the fixture directory.
func allFixtureGGUFs(t *testing.T) []string {
	var out []string
	root := testfixtures.Dir(t)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".gguf") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("found only %d GGUF fixtures under %s", len(out), root)
	}
	return out
}

func TestOpenEveryFixture(t *testing.T) {
	for _, p := range allFixtureGGUFs(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f := openT(t, p)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 {
				t.Errorf("version %d alignment %d data offset %d", f.Version, f.Alignment, f.DataOffset)
			}
			if f.Arch() == "" {
				t.Error("no general.architecture")
			}
			if toks, ok := f.Strings("tokenizer.ggml.tokens"); !ok || len(toks) < 256 {
				t.Errorf("tokenizer.ggml.tokens: %d entries, ok=%v", len(toks), ok)
			}
			var sum int64
			for i := range f.Tensors {
				ti := &f.Tensors[i]
				d := f.TensorData(ti)
				if int64(len(d)) != ti.Size || ti.Size == 0 {
					t.Errorf("%s: data %d bytes, size %d", ti.Name, len(d), ti.Size)
				}
				if ti.Rows()*int64(ti.Dims[0]) != ti.Elements() {
					t.Errorf("%s: rows inconsistent", ti.Name)
				}
				sum += ti.Size
			}
			if len(f.Tensors) == 0 {
				if !strings.Contains(p, "tokenizer") {
					t.Error("model without tensors")
				}
				return
			}
			// Tensors are packed back to back with at most alignment-1 bytes of padding each.
			data := st.Size() - f.DataOffset
			if sum > data || data-sum >= int64(len(f.Tensors))*32 {
				t.Errorf("tensor bytes %d do not account for the %d-byte data section", sum, data)
			}
			if err := f.ValidateArch(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestStories260K(t *testing.T) {
	f := openT(t, testfixtures.Path(t, "stories260K/stories260K-F32.gguf"))
	if len(f.Tensors) != 5*9+2 {
		t.Errorf("%d tensors, want 47", len(f.Tensors))
	}
	for b := 0; b < 5; b++ {
		for _, n := range []string{"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"} {
			name := "blk." + string(rune('0'+b)) + "." + n + ".weight"
			ti, ok := f.Tensor(name)
			if !ok {
				t.Errorf("missing %s", name)
				continue
			}
			if ti.Type != ggml.F32 {
				t.Errorf("%s is %s", name, ti.Type)
			}
		}
	}
	if _, ok := f.Tensor("blk.5.attn_q.weight"); ok {
		t.Error("unexpected blk.5")
	}
	if _, ok := f.Tensor("output.weight"); ok {
		t.Error("stories260K is tied and must have no output.weight")
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || !reflect.DeepEqual(emb.Dims, []uint64{64, 512}) || emb.Size != 64*512*4 {
		t.Fatalf("token_embd: %+v", emb)
	}
	q, _ := f.Tensor("blk.0.attn_k.weight")
	if !reflect.DeepEqual(q.Dims, []uint64{64, 32}) {
		t.Errorf("attn_k dims %v, want [64 32] (4 kv heads of 8)", q.Dims)
	}
	for key, want := range map[string]uint64{"llama.block_count": 5, "llama.embedding_length": 64, "llama.feed_forward_length": 172,
		"llama.attention.head_count": 8, "llama.attention.head_count_kv": 4, "llama.context_length": 512, "tokenizer.ggml.bos_token_id": 1} {
		if got, ok := f.Uint(key); !ok || got != want {
			t.Errorf("%s = %d (%v), want %d", key, got, ok, want)
		}
	}
	if eps, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || math.Abs(eps-1e-5) > 1e-12 {
		t.Errorf("eps %v %v", eps, ok)
	}
	if b, ok := f.Bool("tokenizer.ggml.add_bos_token"); !ok || !b {
		t.Error("add_bos_token")
	}
	if typ, ok := f.Int32s("tokenizer.ggml.token_type"); !ok || len(typ) != 512 || typ[0] != 2 || typ[1] != 3 || typ[3] != 6 {
		t.Errorf("token types %v", typ[:4])
	}
	if sc, ok := f.Float32s("tokenizer.ggml.scores"); !ok || len(sc) != 512 {
		t.Error("scores")
	}

	// The F16 file holds the same weights rounded: if either data offset were wrong the values
	// would not line up.
	h := openT(t, testfixtures.Path(t, "stories260K/stories260K-F16.gguf"))
	he, _ := h.Tensor("token_embd.weight")
	if he.Type != ggml.F16 {
		t.Fatalf("F16 token_embd is %s", he.Type)
	}
	a := make([]float32, 64*512)
	b := make([]float32, 64*512)
	if err := kernels.Dequantize(ggml.F32, f.TensorData(emb), a); err != nil {
		t.Fatal(err)
	}
	if err := kernels.Dequantize(ggml.F16, h.TensorData(he), b); err != nil {
		t.Fatal(err)
	}
	var nonzero int
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-3*(1+math.Abs(float64(a[i]))) {
			t.Fatalf("element %d: F32 %v vs F16 %v", i, a[i], b[i])
		}
		if a[i] != 0 {
			nonzero++
		}
	}
	if nonzero < len(a)/2 {
		t.Errorf("only %d non-zero embedding values", nonzero)
	}

	q8 := openT(t, testfixtures.Path(t, "stories260K/stories260K-Q8_0.gguf"))
	for name, want := range map[string]ggml.Type{"token_embd.weight": ggml.Q8_0, "blk.0.ffn_down.weight": ggml.F32, "blk.0.attn_q.weight": ggml.Q8_0, "blk.0.attn_norm.weight": ggml.F32} {
		if ti, ok := q8.Tensor(name); !ok || ti.Type != want {
			t.Errorf("Q8_0 file: %s type %v, want %s", name, ti, want)
		}
	}
}

func TestTensorDataIsInPlace(t *testing.T) {
	f := openT(t, testfixtures.Path(t, "stories260K/stories260K-Q4_0.gguf"))
	ti, _ := f.Tensor("blk.2.attn_q.weight")
	d := f.TensorData(ti)
	base := uintptr(unsafe.Pointer(&f.mm[0]))
	p := uintptr(unsafe.Pointer(&d[0]))
	if p != base+uintptr(f.DataOffset)+uintptr(ti.Offset) {
		t.Errorf("tensor data is not the mapped bytes")
	}
	if cap(d) != len(d) {
		t.Errorf("cap %d lets appends write into the next tensor", cap(d))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f.TensorData(ti) != nil {
		t.Error("TensorData after Close must be nil")
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	f, err := Parse(tinyModel(t))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Uint("llama.feed_forward_length"); !ok || v != 64 {
		t.Errorf("Uint(int32) = %d %v", v, ok)
	}
	if v, ok := f.Uint("llama.context_length"); !ok || v != 128 {
		t.Errorf("Uint(uint64) = %d %v", v, ok)
	}
	if _, ok := f.Uint("k.i8"); ok {
		t.Error("Uint of a negative value must fail")
	}
	if v, ok := f.Int("k.i64"); !ok || v != -1<<40 {
		t.Errorf("Int = %d %v", v, ok)
	}
	if v, ok := f.Int("k.u16"); !ok || v != 700 {
		t.Errorf("Int(uint16) = %d %v", v, ok)
	}
	if _, ok := f.Uint("k.f32"); ok {
		t.Error("Uint of a float must fail")
	}
	if _, ok := f.Float("k.u8"); ok {
		t.Error("Float of an integer must fail")
	}
	if v, ok := f.Float("k.f64"); !ok || v != -2.25 {
		t.Errorf("Float = %v", v)
	}
	if s, ok := f.Strings("k.strs"); !ok || !reflect.DeepEqual(s, []string{"a", "", "ü"}) {
		t.Errorf("Strings = %q", s)
	}
	if _, ok := f.Strings("k.f32s"); ok {
		t.Error("Strings of a float array must fail")
	}
	if _, ok := f.String("missing"); ok {
		t.Error("missing key found")
	}
	v, _ := f.Get("k.nested")
	want := "[[1, 2], [], [[\"x\"]]]"
	if got := v.Format(-1); got != want {
		t.Errorf("nested: %s, want %s", got, want)
	}
	strs, _ := f.Get("k.strs")
	if got := strs.Format(1); got != `["a", … (3 string)]` {
		t.Errorf("truncated format %s", got)
	}
	if f.Arch() != "llama" {
		t.Error(f.Arch())
	}
}

func TestValidateArch(t *testing.T) {
	f, err := Parse(tinyModel(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ValidateArch(); err != nil {
		t.Fatal(err)
	}
	if err := f.Require("llama.block_count", "nope.key"); err == nil || !strings.Contains(err.Error(), `"nope.key"`) {
		t.Errorf("Require: %v", err)
	}
	for _, drop := range []string{"general.architecture", "llama.block_count", "llama.embedding_length", "llama.attention.head_count", "llama.context_length", "llama.feed_forward_length"} {
		w := NewWriter()
		for _, kv := range f.KVs {
			if kv.Key != drop {
				w.AddKV(kv.Key, kv.Value)
			}
		}
		g := roundTrip(t, w)
		err := g.ValidateArch()
		if err == nil || !strings.Contains(err.Error(), drop) {
			t.Errorf("without %s: %v", drop, err)
		}
	}
	w := NewWriter()
	w.AddKV("general.architecture", Str("qwen3"))
	w.AddKV("qwen3.block_count", Str("two"))
	if err := roundTrip(t, w).ValidateArch(); err == nil || !strings.Contains(err.Error(), "qwen3.block_count") {
		t.Errorf("string block_count: %v", err)
	}
	w = NewWriter()
	w.AddKV("general.architecture", Str("mamba"))
	if err := roundTrip(t, w).ValidateArch(); err != nil {
		t.Errorf("unknown arch needs only general.architecture: %v", err)
	}
}

func roundTrip(t *testing.T, w *Writer) *File {
	t.Helper()
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// raw assembles header bytes by hand so tests can write what the Writer refuses to.
type raw struct{ bytes.Buffer }

func (r *raw) u32(v uint32) *raw { _ = binary.Write(&r.Buffer, binary.LittleEndian, v); return r }
func (r *raw) u64(v uint64) *raw { _ = binary.Write(&r.Buffer, binary.LittleEndian, v); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.WriteString(s); return r }
func (r *raw) pad(n int) *raw    { r.Write(make([]byte, n)); return r }

func header(nTensors, nKV uint64) *raw {
	r := &raw{}
	r.WriteString("GGUF")
	return r.u32(3).u64(nTensors).u64(nKV)
}

// tensor writes one tensor info.
func (r *raw) tensor(name string, typ ggml.Type, offset uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(offset)
}

func TestMalformed(t *testing.T) {
	kvU32 := func(r *raw, key string, v uint32) *raw { return r.str(key).u32(uint32(Uint32)).u32(v) }
	// A header of one F32 [8] tensor named "a", with its 32 data bytes appended by finish.
	oneTensor := func(name string, typ ggml.Type, off uint64, dims ...uint64) *raw {
		return header(1, 0).tensor(name, typ, off, dims...)
	}
	finish := func(r *raw, data int) []byte {
		n := r.Len()
		r.pad(int(alignUp(uint64(n), 32)) - n + data)
		return r.Bytes()
	}
	cases := []struct {
		name      string
		data      []byte
		want      string // substring of the message
		offset    int64  // expected FormatError offset; -1: don't check
		truncated bool
	}{
		{"empty", nil, "magic needs 4 bytes", 0, true},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), "bad magic \"GGML\"", 0, false},
		{"version 1", (&raw{}).u32(Magic).u32(1).u64(0).u64(0).Bytes(), "version 1 is not supported", 4, false},
		{"version 4", (&raw{}).u32(Magic).u32(4).u64(0).u64(0).Bytes(), "unsupported GGUF version 4", 4, false},
		{"version 0", (&raw{}).u32(Magic).u32(0).u64(0).u64(0).Bytes(), "unsupported GGUF version 0", 4, false},
		{"big endian", append([]byte("GGUF"), 0, 0, 0, 3), "big-endian", 4, false},
		{"short header", []byte("GGUF\x03\x00\x00\x00\x01"), "tensor count needs 8 bytes", 8, true},
		{"huge tensor count", header(1<<40, 0).Bytes(), "tensor count 1099511627776 cannot fit", 8, true},
		{"huge kv count", header(0, 1<<62).Bytes(), "metadata count", 16, true},
		{"key overruns", header(0, 1).u64(1 << 50).pad(16).Bytes(), "overruns the file", 24, true},
		{"empty key", header(0, 1).str("").u32(uint32(Uint8)).pad(1).Bytes(), "key #0 is empty", 24, false},
		{"unknown value type", header(0, 1).str("k").u32(13).pad(8).Bytes(), "unknown value type 13", 33, false},
		{"truncated scalar", header(0, 1).str("k").u32(uint32(Uint64)).pad(3).Bytes(), "uint64 value needs 8 bytes", 37, true},
		{"bad bool", header(0, 1).str("k").u32(uint32(Bool)).u32(2).Bytes(), "neither 0 nor 1", 37, false},
		{"array 2^60", header(0, 1).str("k").u32(uint32(Array)).u32(uint32(Uint32)).u64(1 << 60).pad(64).Bytes(), "array length 1152921504606846976 cannot fit", 41, true},
		{"string array too long", header(0, 1).str("k").u32(uint32(Array)).u32(uint32(String)).u64(9).pad(64).Bytes(), "array length 9 cannot fit", 41, true},
		{"unknown element type", header(0, 1).str("k").u32(uint32(Array)).u32(99).u64(0).Bytes(), "unknown array element type 99", 37, false},
		{"nested too deep", func() []byte {
			r := header(0, 1).str("k").u32(uint32(Array))
			for i := 0; i < 40; i++ {
				r.u32(uint32(Array)).u64(1)
			}
			return r.pad(400).Bytes()
		}(), "nested deeper", -1, false},
		{"duplicate key", kvU32(kvU32(header(0, 2), "k", 1), "k", 2).Bytes(), "duplicate metadata key", 41, false},
		{"alignment zero", kvU32(header(0, 1), KeyAlignment, 0).Bytes(), "not a power of two", 53, false},
		{"alignment three", kvU32(header(0, 1), KeyAlignment, 3).Bytes(), "alignment 3", 53, false},
		{"alignment string", header(0, 1).str(KeyAlignment).u32(uint32(String)).str("32").Bytes(), "must be an unsigned integer", 53, false},
		{"no dims", finish(oneTensor("a", ggml.F32, 0), 32), "dimension count 0", 33, false},
		{"five dims", finish(oneTensor("a", ggml.F32, 0, 1, 1, 1, 1, 1), 32), "dimension count 5", 33, false},
		{"zero dim", finish(oneTensor("a", ggml.F32, 0, 8, 0), 32), "dimension 1 is zero", 45, false},
		{"element overflow", finish(oneTensor("a", ggml.F32, 0, 1<<32, 1<<32), 32), "element count overflows", 45, false},
		{"byte overflow", finish(oneTensor("a", ggml.F32, 0, 1<<31, 1<<31), 32), "byte size overflows", 53, false},
		{"unknown tensor type", finish(oneTensor("a", ggml.Type(4), 0, 8), 32), "unknown tensor type 4", 45, false},
		{"partial block", finish(oneTensor("a", ggml.Q4_0, 0, 33), 32), "not a multiple of the block size 32", 45, false},
		{"misaligned", finish(oneTensor("a", ggml.F32, 16, 8), 64), "not a multiple of the alignment 32", 49, false},
		{"outside file", finish(oneTensor("a", ggml.F32, 0, 9), 32), "lies outside the file", 64, true},
		{"offset past end", finish(oneTensor("a", ggml.F32, 1<<40, 8), 32), "lies outside the file", 64, true},
		{"no data section", oneTensor("a", ggml.F32, 0, 8).Bytes(), "data section starts at 64", 57, true},
		{"long name", finish(oneTensor(strings.Repeat("n", 64), ggml.F32, 0, 8), 32), "more than the 63", 24, false},
		{"duplicate tensor", finish(header(2, 0).tensor("a", ggml.F32, 0, 8).tensor("a", ggml.F32, 32, 8), 64), "duplicate tensor name", 57, false},
		{"overlap", finish(header(2, 0).tensor("a", ggml.F32, 0, 16).tensor("b", ggml.F32, 32, 8), 96), `overlaps tensor "a"`, -1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse(c.data)
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%v is not a FormatError", err)
			}
			if c.offset >= 0 && fe.Offset != c.offset {
				t.Errorf("offset %d, want %d (%v)", fe.Offset, c.offset, err)
			}
			if errors.Is(err, ErrTruncated) != c.truncated {
				t.Errorf("truncated = %v, want %v (%v)", !c.truncated, c.truncated, err)
			}
		})
	}
}

func TestErrorNamesKeyAndTensor(t *testing.T) {
	_, err := Parse(header(0, 1).str("my.key").u32(77).Bytes())
	if err == nil || !strings.Contains(err.Error(), `key "my.key"`) {
		t.Errorf("%v", err)
	}
	r := header(1, 0).tensor("blk.0.ffn_up.weight", ggml.Q4_K, 0, 100, 2)
	_, err = Parse(r.pad(512).Bytes())
	if err == nil || !strings.Contains(err.Error(), `tensor "blk.0.ffn_up.weight"`) {
		t.Errorf("%v", err)
	}
}

func TestVersion2(t *testing.T) {
	b := tinyModel(t)
	binary.LittleEndian.PutUint32(b[4:], 2)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 2 || len(f.Tensors) != 8 {
		t.Errorf("v2: version %d, %d tensors", f.Version, len(f.Tensors))
	}
}

// Every proper prefix of a valid file must be rejected as truncated, never accepted or panicking.
func TestEveryPrefixIsTruncated(t *testing.T) {
	b := tinyModel(t)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	last := f.Tensors[len(f.Tensors)-1]
	end := int(f.DataOffset) + int(last.Offset) + int(last.Size)
	for n := 0; n < end; n++ {
		_, err := Parse(b[:n:n])
		if err == nil {
			t.Fatalf("prefix of %d bytes accepted", n)
		}
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix of %d bytes: %v is not a truncation error", n, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.gguf")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty.gguf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(empty); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty file: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	bad := filepath.Join(dir, "bad.gguf")
	if err := os.WriteFile(bad, []byte("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "offset 16") {
		t.Errorf("bad file: %v", err)
	}
}

func TestSyntheticFixtureShapes(t *testing.T) {
	cases := []struct {
		rel     string
		tensors int
		types   map[string]ggml.Type
	}{
		{"synthetic/llama-spm32k-e256/llama-spm32k-e256-F16.gguf", 4*9 + 2, map[string]ggml.Type{"token_embd.weight": ggml.F16, "blk.3.ffn_down.weight": ggml.F16, "output_norm.weight": ggml.F32}},
		{"synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf", 4*9 + 2, map[string]ggml.Type{"token_embd.weight": ggml.Q8_0, "blk.0.attn_q.weight": ggml.Q8_0}},
		// Q4_K_M: Q4_K, with Q6_K for token_embd and for attn_v/ffn_down of the last two layers.
		{"synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf", 4*9 + 2, map[string]ggml.Type{"token_embd.weight": ggml.Q6_K,
			"blk.0.attn_v.weight": ggml.Q4_K, "blk.2.attn_v.weight": ggml.Q6_K, "blk.3.ffn_down.weight": ggml.Q6_K, "blk.1.ffn_up.weight": ggml.Q4_K}},
		{"synthetic/llama-bpe128k-e32/llama-bpe128k-e32-F16.gguf", 4*9 + 2, nil},
		{"synthetic/qwen2-e32/qwen2-e32-F16.gguf", 4*12 + 2, map[string]ggml.Type{"blk.3.attn_v.bias": ggml.F32}},
		{"synthetic/qwen3-e32/qwen3-e32-F16.gguf", 4*11 + 2, map[string]ggml.Type{"blk.3.attn_k_norm.weight": ggml.F32}},
	}
	for _, c := range cases {
		f := openT(t, testfixtures.Path(t, c.rel))
		if len(f.Tensors) != c.tensors {
			t.Errorf("%s: %d tensors, want %d", c.rel, len(f.Tensors), c.tensors)
		}
		if _, ok := f.Tensor("output.weight"); ok {
			t.Errorf("%s: synthetic models are tied", c.rel)
		}
		for name, typ := range c.types {
			if ti, ok := f.Tensor(name); !ok || ti.Type != typ {
				t.Errorf("%s: %s is %v, want %s", c.rel, name, ti, typ)
			}
		}
		emb, _ := f.Tensor("token_embd.weight")
		n, _ := f.Uint(f.Arch() + ".embedding_length")
		toks, _ := f.Strings("tokenizer.ggml.tokens")
		if emb == nil || emb.Dims[0] != n || emb.Dims[1] != uint64(len(toks)) {
			t.Errorf("%s: token_embd %v vs n_embd %d and %d tokens", c.rel, emb, n, len(toks))
		}
	}
}
