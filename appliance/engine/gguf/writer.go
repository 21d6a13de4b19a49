package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Writer assembles a GGUF v3 file: metadata in the order added, then tensors in the order added,
// each tensor's data aligned. Tensor data is either held (AddTensor) or produced while writing
// (AddTensorFunc), so a multi-gigabyte model never has to sit in memory at once.
type Writer struct {
	kvs     []KV
	kvIndex map[string]int
	tensors []wtensor
	names   map[string]bool
}

type wtensor struct {
	info TensorInfo
	data []byte
	fill func(io.Writer) error
}

// NewWriter returns an empty writer (alignment 32 unless general.alignment is set).
func NewWriter() *Writer {
	return &Writer{kvIndex: map[string]int{}, names: map[string]bool{}}
}

// AddKV sets a metadata value. Setting a key again replaces the value in its original position,
// which lets a copy of another file's metadata be amended without reordering it. Mistyped values
// are reported by WriteTo.
func (w *Writer) AddKV(key string, v Value) {
	if i, ok := w.kvIndex[key]; ok {
		w.kvs[i].Value = v
		return
	}
	w.kvIndex[key] = len(w.kvs)
	w.kvs = append(w.kvs, KV{Key: key, Value: v})
}

// SetAlignment records general.alignment; tensor offsets are aligned to it.
func (w *Writer) SetAlignment(a uint32) { w.AddKV(KeyAlignment, U32(a)) }

// AddTensor adds a tensor whose bytes are data. The slice is kept, not copied, until WriteTo.
func (w *Writer) AddTensor(name string, typ ggml.Type, dims []uint64, data []byte) error {
	ti, err := w.addInfo(name, typ, dims)
	if err != nil {
		return err
	}
	if int64(len(data)) != ti.Size {
		return fmt.Errorf("gguf writer: tensor %q: %s %v needs %d bytes, got %d", name, typ, dims, ti.Size, len(data))
	}
	w.tensors = append(w.tensors, wtensor{info: ti, data: data})
	return nil
}

// AddTensorFunc adds a tensor whose bytes fill writes during WriteTo; it must write exactly the
// tensor's size.
func (w *Writer) AddTensorFunc(name string, typ ggml.Type, dims []uint64, fill func(io.Writer) error) error {
	ti, err := w.addInfo(name, typ, dims)
	if err != nil {
		return err
	}
	w.tensors = append(w.tensors, wtensor{info: ti, fill: fill})
	return nil
}

func (w *Writer) addInfo(name string, typ ggml.Type, dims []uint64) (TensorInfo, error) {
	size, err := TensorSize(typ, dims)
	if err != nil {
		return TensorInfo{}, fmt.Errorf("gguf writer: tensor %q: %w", name, err)
	}
	switch {
	case name == "":
		return TensorInfo{}, errors.New("gguf writer: empty tensor name")
	case len(name) > MaxNameLen:
		return TensorInfo{}, fmt.Errorf("gguf writer: tensor name %q is longer than %d bytes", name, MaxNameLen)
	case w.names[name]:
		return TensorInfo{}, fmt.Errorf("gguf writer: duplicate tensor %q", name)
	}
	w.names[name] = true
	return TensorInfo{Name: name, Type: typ, Dims: append([]uint64(nil), dims...), Size: size}, nil
}

// TensorSize is the byte size of a tensor of the given type and shape, checking the same rules
// the reader enforces (1..4 non-zero dimensions, whole blocks per row, no overflow).
func TensorSize(typ ggml.Type, dims []uint64) (int64, error) {
	if !typ.Known() {
		return 0, fmt.Errorf("unknown tensor type %d", uint32(typ))
	}
	if len(dims) == 0 || len(dims) > MaxDims {
		return 0, fmt.Errorf("dimension count %d is outside 1..%d", len(dims), MaxDims)
	}
	elems := uint64(1)
	for i, d := range dims {
		if d == 0 {
			return 0, fmt.Errorf("dimension %d is zero", i)
		}
		hi, lo := bits.Mul64(elems, d)
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("element count of %v overflows", dims)
		}
		elems = lo
	}
	row, err := typ.RowSize(int64(dims[0]))
	if err != nil {
		return 0, err
	}
	hi, size := bits.Mul64(uint64(row), elems/dims[0])
	if hi != 0 || size > math.MaxInt64 {
		return 0, fmt.Errorf("byte size of %s %v overflows", typ, dims)
	}
	return int64(size), nil
}

func (w *Writer) alignment() (uint64, error) {
	i, ok := w.kvIndex[KeyAlignment]
	if !ok {
		return DefaultAlignment, nil
	}
	v := w.kvs[i].Value
	a, ok := v.asUint()
	if !ok || v.Type == Array || a == 0 || a&(a-1) != 0 || a > 1<<30 {
		return 0, fmt.Errorf("gguf writer: %s must be a power of two up to 2^30, got %s", KeyAlignment, v.Format(4))
	}
	return a, nil
}

// countWriter tracks the stream position so padding can be computed without seeking.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

var zeros [4096]byte

func (c *countWriter) pad(a uint64) {
	n := int64(alignUp(uint64(c.n), a)) - c.n
	for n > 0 && c.err == nil {
		k := min(n, int64(len(zeros)))
		_, _ = c.Write(zeros[:k])
		n -= k
	}
}

// WriteTo writes the file. It implements io.WriterTo.
func (w *Writer) WriteTo(dst io.Writer) (int64, error) {
	align, err := w.alignment()
	if err != nil {
		return 0, err
	}
	for _, kv := range w.kvs {
		if kv.Key == "" {
			return 0, errors.New("gguf writer: empty metadata key")
		}
		if err := kv.Value.check(); err != nil {
			return 0, fmt.Errorf("gguf writer: key %q: %w", kv.Key, err)
		}
	}
	var off uint64
	for i := range w.tensors {
		t := &w.tensors[i].info
		t.Offset = off
		off = alignUp(off+uint64(t.Size), align)
	}

	c := &countWriter{w: dst}
	e := &encoder{w: c}
	e.u32(Magic)
	e.u32(3)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	for _, t := range w.tensors {
		e.str(t.info.Name)
		e.u32(uint32(len(t.info.Dims)))
		for _, d := range t.info.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.info.Type))
		e.u64(t.info.Offset)
	}
	c.pad(align)
	if c.err != nil {
		return c.n, fmt.Errorf("gguf writer: header: %w", c.err)
	}
	dataStart := c.n
	for _, t := range w.tensors {
		before := c.n
		if t.fill != nil {
			if err := t.fill(c); err != nil {
				return c.n, fmt.Errorf("gguf writer: tensor %q: %w", t.info.Name, err)
			}
		} else {
			_, _ = c.Write(t.data)
		}
		if c.err != nil {
			return c.n, fmt.Errorf("gguf writer: tensor %q: %w", t.info.Name, c.err)
		}
		if got := c.n - before; got != t.info.Size {
			return c.n, fmt.Errorf("gguf writer: tensor %q: wrote %d bytes, want %d", t.info.Name, got, t.info.Size)
		}
		if uint64(before-dataStart) != t.info.Offset {
			return c.n, fmt.Errorf("gguf writer: tensor %q landed at %d, want %d", t.info.Name, before-dataStart, t.info.Offset)
		}
		c.pad(align)
	}
	if c.err != nil {
		return c.n, fmt.Errorf("gguf writer: %w", c.err)
	}
	return c.n, nil
}

// WriteFile writes the file to path through a temporary file in the same directory, renamed into
// place only when complete, so a reader never maps a half-written model.
func (w *Writer) WriteFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("gguf writer: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if _, err := w.WriteTo(bw); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("gguf writer: %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("gguf writer: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("gguf writer: %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("gguf writer: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("gguf writer: %w", err)
	}
	ok = true
	return nil
}

type encoder struct {
	w   *countWriter
	buf [8]byte
}

func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:4], v)
	_, _ = e.w.Write(e.buf[:4])
}

func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:8], v)
	_, _ = e.w.Write(e.buf[:8])
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	_, _ = io.WriteString(e.w, s)
}

// value writes v without its type tag (the caller writes the tag; array elements have none).
func (e *encoder) value(v Value) {
	le := binary.LittleEndian
	switch x := v.V.(type) {
	case uint8:
		_, _ = e.w.Write([]byte{x})
	case int8:
		_, _ = e.w.Write([]byte{byte(x)})
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		_, _ = e.w.Write([]byte{b})
	case uint16:
		le.PutUint16(e.buf[:2], x)
		_, _ = e.w.Write(e.buf[:2])
	case int16:
		le.PutUint16(e.buf[:2], uint16(x))
		_, _ = e.w.Write(e.buf[:2])
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case string:
		e.str(x)
	default:
		// An array: element type, count, then the elements without tags.
		e.u32(uint32(v.ElemType))
		n := v.Len()
		e.u64(uint64(n))
		for i := 0; i < n; i++ {
			e.value(v.elem(i))
		}
	}
}
