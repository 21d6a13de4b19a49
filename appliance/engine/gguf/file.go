package gguf

import (
	"fmt"
)

// Get returns the metadata value stored under key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KVs[i].Value, true
}

// String returns a string-typed value.
func (f *File) String(key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return "", false
	}
	s, ok := v.V.(string)
	return s, ok
}

// Uint returns an integer value of any width or signedness, provided it is not negative.
func (f *File) Uint(key string) (uint64, bool) {
	v, ok := f.Get(key)
	if !ok || v.Type == Array {
		return 0, false
	}
	return v.asUint()
}

// Int returns an integer value of any width or signedness that fits an int64.
func (f *File) Int(key string) (int64, bool) {
	v, ok := f.Get(key)
	if !ok || v.Type == Array {
		return 0, false
	}
	return v.asInt()
}

// Float returns a float32 or float64 value.
func (f *File) Float(key string) (float64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	switch x := v.V.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// Bool returns a bool value.
func (f *File) Bool(key string) (bool, bool) {
	v, ok := f.Get(key)
	if !ok {
		return false, false
	}
	b, ok := v.V.(bool)
	return b, ok
}

// Strings returns an array of strings.
func (f *File) Strings(key string) ([]string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false
	}
	s, ok := v.V.([]string)
	return s, ok
}

// Float32s returns an array of float32.
func (f *File) Float32s(key string) ([]float32, bool) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false
	}
	s, ok := v.V.([]float32)
	return s, ok
}

// Int32s returns an array of int32.
func (f *File) Int32s(key string) ([]int32, bool) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false
	}
	s, ok := v.V.([]int32)
	return s, ok
}

// Arch is general.architecture, or "" when absent.
func (f *File) Arch() string {
	s, _ := f.String("general.architecture")
	return s
}

// Tensor looks a tensor up by name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tenIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorData returns the tensor's bytes inside the mapped file (no copy; read-only memory, so
// writing to it faults). It returns nil after Close or for a tensor outside this file.
func (f *File) TensorData(t *TensorInfo) []byte {
	if t == nil || f.data == nil {
		return nil
	}
	start := uint64(f.DataOffset) + t.Offset
	end := start + uint64(t.Size)
	if start < t.Offset || end < start || end > uint64(len(f.data)) {
		return nil
	}
	return f.data[start:end:end]
}

// Require fails naming the first key that is missing.
func (f *File) Require(keys ...string) error {
	for _, k := range keys {
		if _, ok := f.Get(k); !ok {
			return fmt.Errorf("gguf: %s: missing required metadata key %q", f.name(), k)
		}
	}
	return nil
}

// archRequired lists, per supported architecture, the hyperparameters without which the model
// cannot be built; the {arch} prefix is filled in by ValidateArch.
var archRequired = map[string][]string{
	"llama": llamaLikeKeys,
	"qwen2": llamaLikeKeys,
	"qwen3": llamaLikeKeys,
}

var llamaLikeKeys = []string{
	"block_count",
	"embedding_length",
	"attention.head_count",
	"context_length",
	"feed_forward_length",
}

// ValidateArch checks that general.architecture is set and, for the architectures this program
// runs, that the hyperparameters the model needs are present.
func (f *File) ValidateArch() error {
	arch, ok := f.String("general.architecture")
	if !ok || arch == "" {
		if _, present := f.Get("general.architecture"); present {
			return fmt.Errorf("gguf: %s: general.architecture is not a non-empty string", f.name())
		}
		return fmt.Errorf("gguf: %s: missing required metadata key %q", f.name(), "general.architecture")
	}
	suffixes, known := archRequired[arch]
	if !known {
		return nil
	}
	for _, s := range suffixes {
		key := arch + "." + s
		if _, ok := f.Uint(key); !ok {
			if v, present := f.Get(key); present {
				return fmt.Errorf("gguf: %s: %s must be a non-negative integer, got %s %s", f.name(), key, v.Type, v.Format(4))
			}
			return fmt.Errorf("gguf: %s: architecture %s: missing required metadata key %q", f.name(), arch, key)
		}
	}
	return nil
}

// SupportedArchs lists the architectures ValidateArch knows the required keys of.
func SupportedArchs() []string { return []string{"llama", "qwen2", "qwen3"} }

func (f *File) name() string {
	if f.Path == "" {
		return "<memory>"
	}
	return f.Path
}
