package model

import (
	"fmt"
	"os"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// matrix is a 2-D weight read in place from the file: rows of cols values of type typ.
type matrix struct {
	name       string
	typ        ggml.Type
	rows, cols int
	rowBytes   int
	// A sharded stage's matrix holds rows [off, off+rows) of the file's full rows.
	off, full int
	data      []byte // slice of the memory map; nil when packed holds the weights
	// packed is the interleaved copy of the weights that the packed kernels read (kernels.Pack),
	// made at load where the CPU has them.
	packed *kernels.Packed
}

// row returns the bytes of row r.
func (m *matrix) row(r int) []byte { return m.data[r*m.rowBytes : (r+1)*m.rowBytes] }

// rowF32 dequantizes row r into dst: the embedding lookup, exact in every compute mode like
// ggml_get_rows.
func (m *matrix) rowF32(r int, dst []float32) {
	if m.packed != nil {
		if err := m.packed.DequantizeRow(r, dst); err != nil {
			panic(fmt.Sprintf("model: dequantize %s row %d: %v", m.name, r, err))
		}
		return
	}
	if err := kernels.Dequantize(m.typ, m.row(r), dst); err != nil {
		// Shapes and types were validated at load; a failure here is a bug.
		panic(fmt.Sprintf("model: dequantize %s row %d: %v", m.name, r, err))
	}
}

// loader looks tensors up and checks their shapes, recording what the stage references.
type loader struct {
	pack bool // copy the weights into the packed layout where kernels.Pack takes their type
	// loaded are the matrices read so far, to pack or copy (placeAll) once all are known.
	loaded []*matrix
	f      *gguf.File
	// shard of shards: which rows of its matrices a tensor-parallel stage holds (part).
	shard, shards int
	bytes         int64 // total bytes of the tensors referenced
	names         []string
}

func (l *loader) info(name string) (*gguf.TensorInfo, error) {
	t, ok := l.f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %s", l.f.Path, name)
	}
	if !t.Type.Known() {
		return nil, fmt.Errorf("%s: tensor %s has unsupported type %s", l.f.Path, name, t.Type)
	}
	return t, nil
}

func shapeErr(f *gguf.File, name string, got []uint64, want ...int) error {
	return fmt.Errorf("%s: tensor %s has shape %v, want %v", f.Path, name, got, want)
}

// matrix returns the 2-D tensor name, which must hold rows rows of cols values.
func (l *loader) matrix(name string, cols, rows int) (*matrix, error) {
	t, err := l.info(name)
	if err != nil {
		return nil, err
	}
	if len(t.Dims) != 2 || t.Dims[0] != uint64(cols) || t.Dims[1] != uint64(rows) {
		return nil, shapeErr(l.f, name, t.Dims, cols, rows)
	}
	if t.Type == ggml.Q8_1 || t.Type == ggml.Q8_K {
		// These exist only as activation formats in llama.cpp; no weight matrix uses them.
		return nil, fmt.Errorf("%s: tensor %s has type %s, which is not a weight type", l.f.Path, name, t.Type)
	}
	rb, err := t.Type.RowSize(int64(cols))
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", l.f.Path, name, err)
	}
	data := l.f.TensorData(t)
	if int64(len(data)) != rb*int64(rows) {
		return nil, fmt.Errorf("%s: tensor %s holds %d bytes, want %d for %s [%d %d]", l.f.Path, name, len(data), rb*int64(rows), t.Type, cols, rows)
	}
	l.bytes += int64(len(data))
	// A shard's classifier is a second reference to token_embd beside the lookup table.
	if !slices.Contains(l.names, name) {
		l.names = append(l.names, name)
	}
	m := &matrix{name: name, typ: t.Type, rows: rows, cols: cols, rowBytes: int(rb), data: data, full: rows}
	l.loaded = append(l.loaded, m)
	return m, nil
}

// part returns this shard's rows of the 2-D tensor name (all of them on an unsharded stage).
func (l *loader) part(name string, cols, rows int) (*matrix, error) {
	m, err := l.matrix(name, cols, rows)
	if err != nil || l.shards <= 1 {
		return m, err
	}
	lo, hi := ShardRows(rows, l.shard, l.shards)
	l.bytes -= int64((rows - (hi - lo)) * m.rowBytes)
	m.data = m.data[lo*m.rowBytes : hi*m.rowBytes]
	m.off, m.rows = lo, hi-lo
	return m, nil
}

// placeAll moves the stage's weights out of the file mapping into one buffer
// (kernels.WeightBytes), where huge pages cover them whole: the types with packed kernels in
// their packed layout, the others as they are (decode streams those too, and on the file's
// 4 KiB pages it pays a TLB miss every 4 KiB). lookup, a matrix only read a row at a time
// (the token embedding of a stage that does not also produce logits with it), stays mapped, so
// that only the rows used are resident. Nothing moves where l.pack is off. It returns the
// packed matrices.
func (l *loader) placeAll(lookup *matrix) []*kernels.Packed {
	if !l.pack {
		return nil
	}
	size := func(m *matrix) int {
		if m == lookup {
			return 0
		}
		if n := kernels.PackedSize(m.typ, m.rows, m.cols); n > 0 {
			return n
		}
		return len(m.data)
	}
	total := 0
	for _, m := range l.loaded {
		total += (size(m) + 63) &^ 63
	}
	if total == 0 {
		return nil
	}
	var packed []*kernels.Packed
	buf := kernels.WeightBytes(total)
	for _, m := range l.loaded {
		n := size(m)
		if n == 0 {
			continue
		}
		mapped := m.data
		if kernels.PackedSize(m.typ, m.rows, m.cols) > 0 {
			m.packed = kernels.PackInto(m.typ, mapped, m.rows, m.cols, buf[:n])
			m.data = nil
			packed = append(packed, m.packed)
		} else {
			copy(buf[:n], mapped)
			m.data = buf[:n:n]
		}
		// The copy replaces the mapped bytes: give their pages back so that the weights are
		// resident once, not twice.
		dropPages(mapped)
		buf = buf[(n+63)&^63:]
	}
	l.loaded = nil
	return packed
}

// dropPages tells the kernel that the whole pages inside b (a slice of a read-only file
// mapping) are not needed; they are read from the file again if touched.
func dropPages(b []byte) {
	if len(b) == 0 {
		return
	}
	ps := os.Getpagesize()
	off := (ps - int(uintptr(unsafe.Pointer(&b[0])))%ps) % ps
	if off >= len(b) {
		return
	}
	n := (len(b) - off) &^ (ps - 1)
	if n == 0 {
		return
	}
	_ = unix.Madvise(b[off:off+n], unix.MADV_DONTNEED)
}

// vector converts the 1-D tensor name of n values to float32; norm weights and biases are tiny,
// so a heap copy is cheaper than dequantizing them on every use.
func (l *loader) vector(name string, n int) ([]float32, error) {
	t, err := l.info(name)
	if err != nil {
		return nil, err
	}
	if len(t.Dims) != 1 || t.Dims[0] != uint64(n) {
		return nil, shapeErr(l.f, name, t.Dims, n)
	}
	data := l.f.TensorData(t)
	out := make([]float32, n)
	if err := kernels.Dequantize(t.Type, data, out); err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", l.f.Path, name, err)
	}
	l.bytes += int64(len(data))
	l.names = append(l.names, name)
	return out, nil
}
