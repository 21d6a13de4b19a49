package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sort"
	"strings"

	mmap "github.com/edsrzf/mmap-go"
	"github.com/exo-nix/exo/appliance/engine/ggml"
)

const (
	// Magic is "GGUF" read as a little-endian uint32.
	Magic = 0x46554747
	// DefaultAlignment applies when general.alignment is absent.
	DefaultAlignment = 32
	// KeyAlignment is the metadata key that overrides the alignment of the data section.
	KeyAlignment = "general.alignment"
	// MaxDims is the most dimensions a ggml tensor can have (GGML_MAX_DIMS).
	MaxDims = 4
	// MaxNameLen is the longest tensor name ggml can hold (GGML_MAX_NAME - 1 bytes + NUL).
	MaxNameLen = 63
	// maxArrayDepth bounds nested arrays; the spec allows nesting but no real file needs more
	// than a couple of levels, and the bound keeps recursion shallow on hostile input.
	maxArrayDepth = 32
	// preallocCap bounds capacity reserved from a header count: even a count that passes the
	// remaining-bytes check reserves no more than this up front, and the rest grows as entries
	// are actually read.
	preallocCap = 4096
)

// Minimum encoded sizes, used to reject counts the remaining bytes cannot possibly hold before
// anything is allocated for them.
const (
	minKVSize     = 8 + 4 + 1         // key length, value type, smallest value
	minTensorSize = 8 + 4 + 8 + 4 + 8 // name length, n_dims, one dimension, type, offset
	minArraySize  = 4 + 8             // element type, count
	minStringSize = 8                 // length
)

// TensorInfo describes one tensor. Dims[0] is the row length (ggml ne[0]).
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   ggml.Type
	Offset uint64 // relative to the data section
	Size   int64  // bytes
}

// Elements is the number of values the tensor holds.
func (t *TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= int64(d)
	}
	return n
}

// Rows is the number of rows (all dimensions but the first).
func (t *TensorInfo) Rows() int64 {
	if len(t.Dims) == 0 {
		return 0
	}
	return t.Elements() / int64(t.Dims[0])
}

// KV is one metadata entry, in file order.
type KV struct {
	Key   string
	Value Value
}

// File is an opened GGUF file. Tensor bytes stay in the memory map until Close.
type File struct {
	Path       string
	Version    uint32
	Alignment  uint64
	KVs        []KV
	Tensors    []TensorInfo
	DataOffset int64 // absolute offset of the (aligned) tensor data section

	data     []byte
	mm       mmap.MMap
	kvIndex  map[string]int
	tenIndex map[string]int
}

// FormatError reports a malformed file: what is wrong, where, and which key or tensor it concerns.
type FormatError struct {
	Offset    int64  // byte offset in the file where the problem was found
	Key       string // metadata key, when known
	Tensor    string // tensor name, when known
	Msg       string
	Truncated bool // the file ends before the structure it promises
}

func (e *FormatError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "offset %d (0x%x)", e.Offset, e.Offset)
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %q", e.Key)
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %q", e.Tensor)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Truncated {
		b.WriteString(" (file truncated)")
	}
	return b.String()
}

// Is lets errors.Is(err, ErrTruncated) single out files that simply end too early, such as an
// interrupted download, from files that are corrupt.
func (e *FormatError) Is(target error) bool { return target == ErrTruncated && e.Truncated }

// ErrTruncated matches (errors.Is) every error caused by the file ending early.
var ErrTruncated = errors.New("file truncated")

// Open memory-maps and validates a GGUF file.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("gguf: %s: not a regular file", path)
	}
	if st.Size() == 0 {
		// mmap refuses empty files; report them like any other short file.
		_, err := Parse(nil)
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	m, err := mmap.Map(fh, mmap.RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: mmap: %w", path, err)
	}
	f, err := Parse(m)
	if err != nil {
		_ = m.Unmap()
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	f.Path = path
	f.mm = m
	return f, nil
}

// Close releases the memory map. Slices returned by TensorData must not be used afterwards.
func (f *File) Close() error {
	f.data = nil
	if f.mm == nil {
		return nil
	}
	m := f.mm
	f.mm = nil
	if err := m.Unmap(); err != nil {
		return fmt.Errorf("gguf: %s: munmap: %w", f.Path, err)
	}
	return nil
}

// Parse validates a whole GGUF image held in memory. The returned File refers to data for its
// tensor bytes (no copy); metadata strings and arrays are copied out.
func Parse(data []byte) (*File, error) {
	r := &reader{buf: data, size: int64(len(data))}
	f, err := r.file()
	if err != nil {
		return nil, err
	}
	f.data = data
	return f, nil
}

// ParseHeader validates the metadata and tensor table of a GGUF file of fileSize bytes from
// prefix, the file's first bytes, so that a download can learn a model's layout from a Range
// request without fetching its tensors. Tensor extents are checked against fileSize. An error
// matching ErrTruncated means prefix ends inside the header: read more and try again. The
// result holds no tensor data (TensorData returns nil).
func ParseHeader(prefix []byte, fileSize int64) (*File, error) {
	if fileSize < int64(len(prefix)) {
		return nil, fmt.Errorf("gguf: header prefix of %d bytes is longer than the file size %d", len(prefix), fileSize)
	}
	r := &reader{buf: prefix, size: fileSize}
	return r.file()
}

type reader struct {
	buf  []byte
	size int64 // size of the whole file; more than len(buf) when only a header prefix is held
	off  int64
	key  string // key being read, for error context
	ten  string // tensor being read, for error context
}

func (r *reader) errAt(off int64, format string, args ...any) error {
	return &FormatError{Offset: off, Key: r.key, Tensor: r.ten, Msg: fmt.Sprintf(format, args...)}
}

func (r *reader) remaining() int64 { return int64(len(r.buf)) - r.off }

func (r *reader) truncAt(off int64, format string, args ...any) error {
	return &FormatError{Offset: off, Key: r.key, Tensor: r.ten, Msg: fmt.Sprintf(format, args...), Truncated: true}
}

// need fails when fewer than n bytes are left.
func (r *reader) need(n int64, what string) error {
	if n < 0 || r.remaining() < n {
		return r.truncAt(r.off, "%s needs %d bytes but only %d remain", what, n, r.remaining())
	}
	return nil
}

func (r *reader) u32(what string) (uint32, error) {
	if err := r.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) u64(what string) (uint64, error) {
	if err := r.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v, nil
}

// count reads a uint64 element count and rejects it unless each element, needing at least
// minSize bytes, can fit in what is left of the file.
func (r *reader) count(what string, minSize int64) (int, error) {
	at := r.off
	n, err := r.u64(what)
	if err != nil {
		return 0, err
	}
	if limit := uint64(r.remaining()) / uint64(minSize); n > limit {
		return 0, r.truncAt(at, "%s %d cannot fit: %d bytes remain and each entry needs at least %d", what, n, r.remaining(), minSize)
	}
	return int(n), nil
}

func (r *reader) str(what string) (string, error) {
	at := r.off
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(r.remaining()) {
		return "", r.truncAt(at, "%s of length %d overruns the file (%d bytes remain)", what, n, r.remaining())
	}
	s := string(r.buf[r.off : r.off+int64(n)])
	r.off += int64(n)
	return s, nil
}

func (r *reader) file() (*File, error) {
	if err := r.need(4, "magic"); err != nil {
		return nil, err
	}
	if m := binary.LittleEndian.Uint32(r.buf); m != Magic {
		return nil, r.errAt(0, "bad magic %q (0x%08x), not a GGUF file", printable(r.buf[:4]), m)
	}
	r.off = 4
	version, err := r.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version == 1:
		return nil, r.errAt(4, "GGUF version 1 is not supported (32-bit counts, pre-2023 files); convert the model again with a current llama.cpp")
	case version == 2 || version == 3:
	case version&0xffff == 0 && bits.ReverseBytes32(version) >= 1 && bits.ReverseBytes32(version) <= 3:
		return nil, r.errAt(4, "big-endian GGUF (version %d) is not supported", bits.ReverseBytes32(version))
	default:
		return nil, r.errAt(4, "unsupported GGUF version %d (want 2 or 3)", version)
	}
	f := &File{Version: version, Alignment: DefaultAlignment}

	// Both counts are read before either section, so each is bounded by the whole remainder; the
	// per-entry checks below then catch anything the rough bound lets through.
	nTensors, err := r.count("tensor count", minTensorSize)
	if err != nil {
		return nil, err
	}
	nKV, err := r.count("metadata count", minKVSize)
	if err != nil {
		return nil, err
	}

	f.KVs = make([]KV, 0, min(nKV, preallocCap))
	f.kvIndex = make(map[string]int, min(nKV, preallocCap))
	alignAt := int64(0)
	for i := 0; i < nKV; i++ {
		at := r.off
		r.key = ""
		key, err := r.str(fmt.Sprintf("metadata key #%d", i))
		if err != nil {
			return nil, err
		}
		r.key = key
		if key == "" {
			return nil, r.errAt(at, "metadata key #%d is empty", i)
		}
		if _, dup := f.kvIndex[key]; dup {
			return nil, r.errAt(at, "duplicate metadata key")
		}
		if key == KeyAlignment {
			alignAt = r.off + 4 // the value, after its type tag
		}
		v, err := r.value(0)
		if err != nil {
			return nil, err
		}
		f.kvIndex[key] = len(f.KVs)
		f.KVs = append(f.KVs, KV{Key: key, Value: v})
	}
	r.key = ""

	if i, ok := f.kvIndex[KeyAlignment]; ok {
		v := f.KVs[i].Value
		a, ok := v.asUint()
		if !ok || v.Type == Array {
			r.key = KeyAlignment
			return nil, r.errAt(alignAt, "alignment must be an unsigned integer, got %s %s", v.Type, v.Format(4))
		}
		if a == 0 || a&(a-1) != 0 || a > 1<<30 {
			r.key = KeyAlignment
			return nil, r.errAt(alignAt, "alignment %d is not a power of two between 1 and 2^30", a)
		}
		f.Alignment = a
	}

	f.Tensors = make([]TensorInfo, 0, min(nTensors, preallocCap))
	f.tenIndex = make(map[string]int, min(nTensors, preallocCap))
	for i := 0; i < nTensors; i++ {
		at := r.off
		t, err := r.tensorInfo(i, f.Alignment)
		if err != nil {
			return nil, err
		}
		if _, dup := f.tenIndex[t.Name]; dup {
			r.ten = t.Name
			return nil, r.errAt(at, "duplicate tensor name")
		}
		f.tenIndex[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	r.ten = ""

	headerEnd := r.off
	dataStart := alignUp(uint64(headerEnd), f.Alignment)
	f.DataOffset = int64(dataStart)
	if len(f.Tensors) == 0 {
		// A vocabulary-only file may end right after its metadata, without padding.
		return f, nil
	}
	if dataStart > uint64(r.size) {
		return nil, &FormatError{Offset: headerEnd, Truncated: true,
			Msg: fmt.Sprintf("data section starts at %d but the file has %d bytes", dataStart, r.size)}
	}
	dataLen := uint64(r.size) - dataStart
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset > dataLen || uint64(t.Size) > dataLen-t.Offset {
			return nil, &FormatError{Offset: int64(dataStart), Tensor: t.Name, Truncated: true,
				Msg: fmt.Sprintf("data [%d, %d) of the data section lies outside the file (data section holds %d bytes)",
					t.Offset, t.Offset+uint64(t.Size), dataLen)}
		}
	}
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	for k := 1; k < len(order); k++ {
		prev, cur := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		if prev.Offset+uint64(prev.Size) > cur.Offset {
			return nil, &FormatError{Offset: int64(dataStart + cur.Offset), Tensor: cur.Name,
				Msg: fmt.Sprintf("data [%d, %d) overlaps tensor %q at [%d, %d)", cur.Offset, cur.Offset+uint64(cur.Size),
					prev.Name, prev.Offset, prev.Offset+uint64(prev.Size))}
		}
	}
	return f, nil
}

func (r *reader) tensorInfo(i int, alignment uint64) (TensorInfo, error) {
	start := r.off
	r.ten = ""
	name, err := r.str(fmt.Sprintf("name of tensor #%d", i))
	if err != nil {
		return TensorInfo{}, err
	}
	r.ten = name
	if name == "" {
		return TensorInfo{}, r.errAt(start, "tensor #%d has an empty name", i)
	}
	if len(name) > MaxNameLen {
		return TensorInfo{}, r.errAt(start, "tensor name is %d bytes long, more than the %d ggml allows", len(name), MaxNameLen)
	}
	at := r.off
	nDims, err := r.u32("dimension count")
	if err != nil {
		return TensorInfo{}, err
	}
	if nDims == 0 || nDims > MaxDims {
		return TensorInfo{}, r.errAt(at, "dimension count %d is outside 1..%d", nDims, MaxDims)
	}
	t := TensorInfo{Name: name, Dims: make([]uint64, nDims)}
	elems := uint64(1)
	for d := range t.Dims {
		at := r.off
		n, err := r.u64("dimension")
		if err != nil {
			return TensorInfo{}, err
		}
		if n == 0 {
			return TensorInfo{}, r.errAt(at, "dimension %d is zero", d)
		}
		hi, lo := bits.Mul64(elems, n)
		if hi != 0 || lo > math.MaxInt64 {
			return TensorInfo{}, r.errAt(at, "element count overflows at dimension %d (%d)", d, n)
		}
		elems = lo
		t.Dims[d] = n
	}
	at = r.off
	typ, err := r.u32("tensor type")
	if err != nil {
		return TensorInfo{}, err
	}
	t.Type = ggml.Type(typ)
	if !t.Type.Known() {
		return TensorInfo{}, r.errAt(at, "unknown tensor type %d", typ)
	}
	rowBytes, err := t.Type.RowSize(int64(t.Dims[0]))
	if err != nil {
		return TensorInfo{}, r.errAt(at, "%v", err)
	}
	hi, size := bits.Mul64(uint64(rowBytes), elems/t.Dims[0])
	if hi != 0 || size > math.MaxInt64 {
		return TensorInfo{}, r.errAt(at, "byte size overflows")
	}
	t.Size = int64(size)
	at = r.off
	if t.Offset, err = r.u64("tensor data offset"); err != nil {
		return TensorInfo{}, err
	}
	if t.Offset%alignment != 0 {
		return TensorInfo{}, r.errAt(at, "data offset %d is not a multiple of the alignment %d", t.Offset, alignment)
	}
	return t, nil
}

// value reads one typed value (type tag first).
func (r *reader) value(depth int) (Value, error) {
	at := r.off
	t, err := r.u32("value type")
	if err != nil {
		return Value{}, err
	}
	vt := ValueType(t)
	if !vt.Valid() {
		return Value{}, r.errAt(at, "unknown value type %d", t)
	}
	if vt == Array {
		return r.array(depth + 1)
	}
	return r.scalar(vt)
}

func (r *reader) scalar(t ValueType) (Value, error) {
	if t == String {
		s, err := r.str("string")
		return Str(s), err
	}
	n := int64(t.scalarSize())
	if err := r.need(n, t.String()+" value"); err != nil {
		return Value{}, err
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	le := binary.LittleEndian
	switch t {
	case Uint8:
		return U8(b[0]), nil
	case Int8:
		return I8(int8(b[0])), nil
	case Uint16:
		return U16(le.Uint16(b)), nil
	case Int16:
		return I16(int16(le.Uint16(b))), nil
	case Uint32:
		return U32(le.Uint32(b)), nil
	case Int32:
		return I32(int32(le.Uint32(b))), nil
	case Float32:
		return F32(math.Float32frombits(le.Uint32(b))), nil
	case Bool:
		if b[0] > 1 {
			return Value{}, r.errAt(r.off-1, "bool value %d is neither 0 nor 1", b[0])
		}
		return Boolean(b[0] == 1), nil
	case Uint64:
		return U64(le.Uint64(b)), nil
	case Int64:
		return I64(int64(le.Uint64(b))), nil
	case Float64:
		return F64(math.Float64frombits(le.Uint64(b))), nil
	}
	return Value{}, r.errAt(r.off-n, "unknown value type %d", uint32(t))
}

func (r *reader) array(depth int) (Value, error) {
	if depth > maxArrayDepth {
		return Value{}, r.errAt(r.off, "arrays nested deeper than %d levels", maxArrayDepth)
	}
	at := r.off
	et, err := r.u32("array element type")
	if err != nil {
		return Value{}, err
	}
	elem := ValueType(et)
	if !elem.Valid() {
		return Value{}, r.errAt(at, "unknown array element type %d", et)
	}
	minSize := int64(elem.scalarSize())
	switch elem {
	case String:
		minSize = minStringSize
	case Array:
		minSize = minArraySize
	}
	n, err := r.count("array length", minSize)
	if err != nil {
		return Value{}, err
	}
	v := Value{Type: Array, ElemType: elem}
	le := binary.LittleEndian
	switch elem {
	case String:
		s := make([]string, n)
		for i := range s {
			if s[i], err = r.str("string"); err != nil {
				return Value{}, err
			}
		}
		v.V = s
		return v, nil
	case Array:
		s := make([]Value, n)
		for i := range s {
			if s[i], err = r.array(depth + 1); err != nil {
				return Value{}, err
			}
		}
		v.V = s
		return v, nil
	}
	// Fixed-size elements: the count check above already guarantees the bytes are there.
	b := r.buf[r.off : r.off+int64(n)*minSize]
	switch elem {
	case Uint8:
		v.V = append([]uint8(nil), b...)
	case Int8:
		s := make([]int8, n)
		for i := range s {
			s[i] = int8(b[i])
		}
		v.V = s
	case Bool:
		s := make([]bool, n)
		for i := range s {
			if b[i] > 1 {
				return Value{}, r.errAt(r.off+int64(i), "bool element %d is %d, neither 0 nor 1", i, b[i])
			}
			s[i] = b[i] == 1
		}
		v.V = s
	case Uint16:
		s := make([]uint16, n)
		for i := range s {
			s[i] = le.Uint16(b[2*i:])
		}
		v.V = s
	case Int16:
		s := make([]int16, n)
		for i := range s {
			s[i] = int16(le.Uint16(b[2*i:]))
		}
		v.V = s
	case Uint32:
		s := make([]uint32, n)
		for i := range s {
			s[i] = le.Uint32(b[4*i:])
		}
		v.V = s
	case Int32:
		s := make([]int32, n)
		for i := range s {
			s[i] = int32(le.Uint32(b[4*i:]))
		}
		v.V = s
	case Float32:
		s := make([]float32, n)
		for i := range s {
			s[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
		v.V = s
	case Uint64:
		s := make([]uint64, n)
		for i := range s {
			s[i] = le.Uint64(b[8*i:])
		}
		v.V = s
	case Int64:
		s := make([]int64, n)
		for i := range s {
			s[i] = int64(le.Uint64(b[8*i:]))
		}
		v.V = s
	case Float64:
		s := make([]float64, n)
		for i := range s {
			s[i] = math.Float64frombits(le.Uint64(b[8*i:]))
		}
		v.V = s
	}
	r.off += int64(len(b))
	return v, nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}
