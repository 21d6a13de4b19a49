package gguf

import (
	"bytes"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

func openT(t testing.TB, path string) *File {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// tinyModel builds a small but structurally complete llama-style GGUF in memory: every value
// type, a nested array, 1-D and 2-D tensors of several types.
func tinyModel(t testing.TB) []byte {
	t.Helper()
	w := NewWriter()
	w.AddKV("general.architecture", Str("llama"))
	w.AddKV("llama.block_count", U32(2))
	w.AddKV("llama.embedding_length", U32(32))
	w.AddKV("llama.attention.head_count", U32(2))
	w.AddKV("llama.context_length", U64(128))
	w.AddKV("llama.feed_forward_length", I32(64))
	w.AddKV("k.u8", U8(7))
	w.AddKV("k.i8", I8(-7))
	w.AddKV("k.u16", U16(700))
	w.AddKV("k.i16", I16(-700))
	w.AddKV("k.i64", I64(-1<<40))
	w.AddKV("k.f32", F32(0.5))
	w.AddKV("k.f64", F64(-2.25))
	w.AddKV("k.bool", Boolean(true))
	w.AddKV("k.strs", Strs([]string{"a", "", "ü"}))
	w.AddKV("k.f32s", F32s([]float32{1, 2, 3}))
	w.AddKV("k.bools", ArrayOf(Bool, []bool{true, false}))
	w.AddKV("k.u64s", ArrayOf(Uint64, []uint64{1 << 60}))
	w.AddKV("k.nested", Arrays([]Value{I32s([]int32{1, 2}), I32s(nil), Arrays([]Value{Strs([]string{"x"})})}))
	add := func(name string, typ ggml.Type, dims ...uint64) {
		size, err := TensorSize(typ, dims)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(len(name) + i*7)
		}
		if err := w.AddTensor(name, typ, dims, data); err != nil {
			t.Fatal(err)
		}
	}
	add("token_embd.weight", ggml.Q8_0, 32, 10)
	for b := 0; b < 2; b++ {
		p := "blk." + string(rune('0'+b)) + "."
		add(p+"attn_norm.weight", ggml.F32, 32)
		add(p+"attn_q.weight", ggml.F16, 32, 32)
		add(p+"ffn_down.weight", ggml.Q4_0, 64, 32)
	}
	add("output_norm.weight", ggml.F32, 32)
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
