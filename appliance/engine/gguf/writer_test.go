package gguf

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

func TestWriterRoundTrip(t *testing.T) {
	w := NewWriter()
	kvs := []KV{
		{"general.architecture", Str("llama")},
		{"a.u8", U8(255)}, {"a.i8", I8(-128)}, {"a.u16", U16(65535)}, {"a.i16", I16(-32768)},
		{"a.u32", U32(1 << 31)}, {"a.i32", I32(-5)}, {"a.f32", F32(3.5)}, {"a.bool", Boolean(false)},
		{"a.str", Str("héllo\x00world")}, {"a.u64", U64(1<<64 - 1)}, {"a.i64", I64(-1 << 63)}, {"a.f64", F64(1e300)},
		{"b.u8s", ArrayOf(Uint8, []uint8{1, 2})}, {"b.i8s", ArrayOf(Int8, []int8{-1})}, {"b.u16s", ArrayOf(Uint16, []uint16{9})},
		{"b.i16s", ArrayOf(Int16, []int16{-9})}, {"b.u32s", U32s([]uint32{7, 8})}, {"b.i32s", I32s([]int32{-7})},
		{"b.f32s", F32s([]float32{0.25})}, {"b.bools", ArrayOf(Bool, []bool{true})}, {"b.strs", Strs([]string{"x", "yy"})},
		{"b.u64s", ArrayOf(Uint64, []uint64{1})}, {"b.i64s", ArrayOf(Int64, []int64{-1})}, {"b.f64s", ArrayOf(Float64, []float64{2})},
		{"b.empty", Strs([]string{})},
		{"c.nested", Arrays([]Value{Arrays([]Value{F32s([]float32{1})}), Strs([]string{"z"})})},
	}
	for _, kv := range kvs {
		w.AddKV(kv.Key, kv.Value)
	}
	tensors := map[string][]byte{}
	add := func(name string, typ ggml.Type, dims ...uint64) {
		size, err := TensorSize(typ, dims)
		if err != nil {
			t.Fatal(err)
		}
		d := make([]byte, size)
		for i := range d {
			d[i] = byte(i*31 + len(name))
		}
		tensors[name] = d
		if err := w.AddTensor(name, typ, dims, d); err != nil {
			t.Fatal(err)
		}
	}
	add("t.f32", ggml.F32, 3)       // 12 bytes: the next tensor must be padded to 32
	add("t.q4k", ggml.Q4_K, 256, 2) // K-quant block
	add("t.bf16", ggml.BF16, 5, 1, 1, 2)
	add("t.q80", ggml.Q8_0, 64)

	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	f, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 {
		t.Errorf("version %d", f.Version)
	}
	// Empty arrays come back as empty, non-nil slices; compare through the writer's input.
	if !reflect.DeepEqual(f.KVs, kvs) {
		for i := range kvs {
			if i < len(f.KVs) && !reflect.DeepEqual(f.KVs[i], kvs[i]) {
				t.Errorf("kv %d: got %#v, want %#v", i, f.KVs[i], kvs[i])
			}
		}
		t.Fatalf("KVs differ (%d vs %d)", len(f.KVs), len(kvs))
	}
	for name, want := range tensors {
		ti, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("missing %s", name)
		}
		if ti.Offset%32 != 0 || !bytes.Equal(f.TensorData(ti), want) {
			t.Errorf("%s: offset %d, data differs", name, ti.Offset)
		}
	}
	if got := f.Tensors[1].Offset; got != 32 {
		t.Errorf("second tensor at %d, want 32 (12 bytes padded)", got)
	}
	// Writing what was read gives the same bytes again.
	if again := rewrite(t, f); !bytes.Equal(again, buf.Bytes()) {
		t.Error("re-serialising the parsed file changed it")
	}
}

// rewrite copies every KV and tensor of f through a Writer.
func rewrite(t testing.TB, f *File) []byte {
	t.Helper()
	w := NewWriter()
	for _, kv := range f.KVs {
		w.AddKV(kv.Key, kv.Value)
	}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, f.TensorData(ti)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gguf-py lays files out exactly as this writer does, so copying a real model through it must
// reproduce the file byte for byte.
func TestWriterReproducesFixture(t *testing.T) {
	for _, rel := range []string{"stories260K/stories260K-F32.gguf", "stories260K/stories260K-Q4_0.gguf", "synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf"} {
		p := testfixtures.Path(t, rel)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f := openT(t, p)
		if got := rewrite(t, f); !bytes.Equal(got, orig) {
			i := 0
			for i < len(got) && i < len(orig) && got[i] == orig[i] {
				i++
			}
			t.Errorf("%s: rewritten file differs at byte %d (sizes %d, %d)", rel, i, len(got), len(orig))
		}
	}
}

func TestWriterAlignment(t *testing.T) {
	w := NewWriter()
	w.SetAlignment(64)
	for _, name := range []string{"a", "b"} {
		if err := w.AddTensor(name, ggml.F32, []uint64{3}, make([]byte, 12)); err != nil {
			t.Fatal(err)
		}
	}
	f := roundTrip(t, w)
	if f.Alignment != 64 || f.DataOffset%64 != 0 || f.Tensors[1].Offset != 64 {
		t.Errorf("alignment %d, data at %d, second tensor at %d", f.Alignment, f.DataOffset, f.Tensors[1].Offset)
	}
	w.SetAlignment(48)
	if _, err := w.WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), "power of two") {
		t.Errorf("alignment 48: %v", err)
	}
}

func TestWriterRejects(t *testing.T) {
	w := NewWriter()
	checks := []struct {
		err  error
		want string
	}{
		{w.AddTensor("", ggml.F32, []uint64{1}, make([]byte, 4)), "empty tensor name"},
		{w.AddTensor(strings.Repeat("x", 64), ggml.F32, []uint64{1}, make([]byte, 4)), "longer than 63"},
		{w.AddTensor("a", ggml.F32, []uint64{2}, make([]byte, 4)), "needs 8 bytes, got 4"},
		{w.AddTensor("b", ggml.Q4_0, []uint64{48}, make([]byte, 100)), "not a multiple of the block size"},
		{w.AddTensor("c", ggml.Type(99), []uint64{1}, nil), "unknown tensor type 99"},
		{w.AddTensor("d", ggml.F32, []uint64{1, 1, 1, 1, 1}, nil), "dimension count 5"},
		{w.AddTensor("e", ggml.F32, []uint64{1, 0}, nil), "dimension 1 is zero"},
		{w.AddTensor("f", ggml.F32, []uint64{1 << 40, 1 << 40}, nil), "overflows"},
	}
	for _, c := range checks {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("got %v, want %q", c.err, c.want)
		}
	}
	if err := w.AddTensor("ok", ggml.F32, []uint64{1}, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("ok", ggml.F32, []uint64{1}, make([]byte, 4)); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate: %v", err)
	}

	for _, v := range []Value{{Type: Uint32, V: 1}, {Type: Array, ElemType: Float32, V: []float64{1}}, {Type: 42, V: 1}, {Type: Array, ElemType: Array, V: []Value{U8(1)}}} {
		w := NewWriter()
		w.AddKV("bad", v)
		if _, err := w.WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), `"bad"`) {
			t.Errorf("value %#v: %v", v, err)
		}
	}

	w = NewWriter()
	if err := w.AddTensorFunc("short", ggml.F32, []uint64{4}, func(dst io.Writer) error {
		_, err := dst.Write(make([]byte, 12))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), "wrote 12 bytes, want 16") {
		t.Errorf("short fill: %v", err)
	}
}

func TestWriterReplaceKVKeepsOrder(t *testing.T) {
	w := NewWriter()
	w.AddKV("x", U32(1))
	w.AddKV("y", U32(2))
	w.AddKV("x", Str("again"))
	f := roundTrip(t, w)
	if len(f.KVs) != 2 || f.KVs[0].Key != "x" || f.KVs[0].Value.V != "again" {
		t.Errorf("%+v", f.KVs)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter()
	w.AddKV("general.architecture", Str("llama"))
	if err := w.AddTensorFunc("t", ggml.F16, []uint64{4}, func(dst io.Writer) error {
		_, err := dst.Write([]byte{0, 0x3c, 0, 0x40, 0, 0x42, 0, 0x44})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "m.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f := openT(t, path)
	ti, _ := f.Tensor("t")
	if !bytes.Equal(f.TensorData(ti), []byte{0, 0x3c, 0, 0x40, 0, 0x42, 0, 0x44}) {
		t.Error("data")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	// A failing fill leaves neither the target nor a temporary file.
	w = NewWriter()
	_ = w.AddTensorFunc("t", ggml.F32, []uint64{1}, func(io.Writer) error { return os.ErrInvalid })
	bad := filepath.Join(dir, "bad.gguf")
	if err := w.WriteFile(bad); err == nil {
		t.Fatal("failing fill succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("failed write left files: %v", entries)
	}
}
