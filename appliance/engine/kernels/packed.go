package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// Packed weights: a Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or Q8_0 matrix rearranged once, at load time, so
// that the kernels work on 16 rows at a time with one row per 32-bit lane. A block's products
// then need no horizontal sums and no per-row scale gathering: for each 4-byte group of its 16 quant bytes, one
// 64-byte load holds that group of all 16 rows, and one VPDPBUSD with the matching four
// activation quants (broadcast) advances all 16 rows' sums. Decoding runs about twice as fast
// per weight byte as on the file's layout, prompt batches and concurrent sequences (several
// activation rows per pass) nearly three times. Every type has AVX-512 VNNI kernels and AVX2
// ones (eight rows to a 256-bit register, VPMADDUBSW and VPMADDWD for VPDPBUSD), which on CPUs
// without AVX-512 run prompts 1.2-2.7 times as fast as the file layout's kernels and decode
// 1.1-2.8 times. On CPUs with AVX-VNNI (VPDPBUSD and VPDPWSSD on 256-bit registers) but no
// AVX-512, every type's four-column kernel uses it (packed_amd64.go): prompts 1.1-2.3 times
// and batches 1.1-2.4 times as fast as AVX2 alone.
//
// Q4_0 layout, per panel of 16 rows (the last padded with zero rows), in groups of eight blocks
// (legacyOffsets): the quants of each block of the group (256 bytes each: for each group q < 4
// of four quant bytes, row r's bytes 4q..4q+3 at 64q+4r), then their fp16 scales (32 bytes
// each, row r at 2r). Panels start on 64-byte boundaries.
//
// Every output of a packed Q4_0 product has one arithmetic, whatever the batch (dotPackedQ4_0
// is its Go twin): per block b, the exact integer dot s = Σ (q-8)·y of its 32 quants, then
// acc = fma(float32(s), dx·yd, acc) in block order, dx·yd rounded to float32 first. The other
// types have their own layouts and arithmetic (packedq50.go, packedq1.go, packedq2k.go,
// packedq3k.go, packedq4k.go, packedq5k.go, packedq6k.go, packedq8.go).

var le = binary.LittleEndian

const (
	panelRows = 16
	// packedAct is the prepared activation block of packed products: the 32 quants, the scale
	// as float32, and -8 times the sum of the quants (the nibble offset, exact in int32).
	packedAct = 40
)

// Packed is a weight matrix in the packed layout (see Pack).
type Packed struct {
	t          ggml.Type
	f          *packedFormat
	rows, cols int
	nb         int // blocks per row
	stride     int // bytes per panel
	data       []byte
}

// packedDot1 is an assembly kernel of one column: out[16p+i] = row 16p+i · y for the panels
// p < panels of stride bytes, nb blocks a row.
type packedDot1 func(w *byte, stride int, panels int, nb int, y *byte, out *float32)

// packedDot1Runs2 is packedDot1 over two runs of panels in step: panels p < panels at w and
// their twins dist bytes on, whose results go to out2.
type packedDot1Runs2 func(w *byte, stride int, panels int, nb int, y *byte, out *float32, dist int, out2 *float32)

// decodeForm is the form of a type's one-column kernel that dot runs.
type decodeForm int32

const (
	formAhead  decodeForm = iota // software prefetches ahead of the reads
	formStream                   // no software prefetches
	formRuns2                    // two runs of panels in step (AVX2: no software prefetches; AVX-512 VNNI: with them)
)

// has reports whether k's one-column kernel comes in form f.
func (k *packedKernelSet) has(f decodeForm) bool {
	switch f {
	case formStream:
		return k.dotStream != nil
	case formRuns2:
		return k.dotRuns2 != nil
	}
	return true
}

// tunable reports whether k's one-column kernel comes in more than one form.
func (k *packedKernelSet) tunable() bool { return k.has(formStream) || k.has(formRuns2) }

// packedKernels are this CPU's kernels for packed weights; nil where there are none, and then
// Pack declines.
type packedKernelSet struct {
	t    ggml.Type
	name string
	// dot: out[16p+i] = row 16p+i · the prepared activation row y, for panels p < panels.
	dot func(w []byte, stride, panels, nb int, y []byte, out []float32)
	// dotStream is dot's kernel without software prefetches and dotRuns2 the one that reads
	// two runs of panels in step, nil where the type lacks that form; dot runs the one that
	// form names (streamtune.go). Every form gives the same bits.
	dotStream func(w []byte, stride, panels, nb int, y []byte, out []float32)
	dotRuns2  func(w []byte, stride, panels, nb int, y []byte, out []float32)
	form      atomic.Int32 // a decodeForm
	// dot4: the same for four prepared activation rows ystride bytes apart, column c's results
	// at out[c*ostride:].
	dot4 func(w []byte, stride, panels, nb int, y []byte, ystride int, out []float32, ostride int)
	// dot8: dot4 for eight activation rows (nil where four columns a pass serve as well).
	dot8 func(w []byte, stride, panels, nb int, y []byte, ystride int, out []float32, ostride int)
	// pad4 is the fewest activation rows that run as one pass of dot4 rather than one pass
	// each (packedPass; 0: never). From memory, a pass of dot4 costs about as much as one of
	// dot where the kernels are wide (AVX-512: from two rows), and more where they are not.
	// It starts at padTable, the figure measured for the instruction set, and TunePadding
	// may set it from measurements on the machine.
	pad4     atomic.Int32
	padTable int
}

// packedFormat is one weight type's packed layout: its sizes, how a file block goes in and
// comes back out, how activations are prepared for it, its Go twin, and this CPU's kernels
// (set by the architecture's init; nil: none, and Pack declines the type).
type packedFormat struct {
	t         ggml.Type
	block     int // bytes of one block (super-block) of a panel
	fileBlock int // bytes of one block of a row in the file
	act       int // bytes of one prepared activation block
	// put writes block b of the panel's row i (of nb blocks a row) from the file's bytes x.
	put func(panel []byte, nb, i, b int, x []byte)
	// unpack returns block b of the panel's row i in the file's layout (fileBlock bytes of
	// it): by value, so that a caller's buffer does not escape through the indirect call.
	unpack  func(panel []byte, nb, i, b int) fileBlockBytes
	prep    func(act []byte, nb int, dst []byte)
	twin    func(panel []byte, nb int, prep []byte, out *[panelRows]float32)
	kernels *packedKernelSet
}

// fileBlockBytes holds a block of any packed type in the file's layout (Q6_K's is the largest).
type fileBlockBytes [210]byte

// packedVariants are every packed kernel set this CPU can run, by type, in the order
// installed (the last is the type's kernels): tests check each against the Go twin.
var packedVariants = map[ggml.Type][]*packedKernelSet{}

// usePacked installs k as its type's packed kernels, in place of any installed before.
func usePacked(k *packedKernelSet) {
	packedFormats[k.t].kernels = k
	packedVariants[k.t] = append(packedVariants[k.t], k)
}

// packedFormats are the types that have a packed layout.
var packedFormats = map[ggml.Type]*packedFormat{
	ggml.Q4_0: {t: ggml.Q4_0, block: 288, fileBlock: 18, act: packedAct,
		put: putQ4_0, unpack: unpackQ4_0, prep: prepPackedAct, twin: dotPackedQ4_0},
	ggml.Q5_0: {t: ggml.Q5_0, block: q5Block + 32, fileBlock: 22, act: packedAct,
		put: putQ5_0, unpack: unpackQ5_0, prep: prepPackedAct5, twin: dotPackedQ5_0},
	ggml.Q4_1: {t: ggml.Q4_1, block: 256 + 64, fileBlock: 20, act: packedAct,
		put: putQ4_1, unpack: unpackQ4_1, prep: prepPackedAct1, twin: dotPackedQ4_1},
	ggml.Q5_1: {t: ggml.Q5_1, block: q5Block + 64, fileBlock: 24, act: packedAct,
		put: putQ5_1, unpack: unpackQ5_1, prep: prepPackedAct1, twin: dotPackedQ5_1},
	ggml.Q8_0: {t: ggml.Q8_0, block: packedBlock8, fileBlock: 34, act: packedAct,
		put: putQ8_0, unpack: unpackQ8_0, prep: prepPackedAct8, twin: dotPackedQ8_0},
	ggml.Q2_K: {t: ggml.Q2_K, block: q2kBlock, fileBlock: 84, act: packedAct2,
		put: putQ2K, unpack: unpackQ2K, prep: prepPackedAct2, twin: dotPackedQ2K},
	ggml.Q3_K: {t: ggml.Q3_K, block: q3kBlock, fileBlock: 110, act: packedAct6,
		put: putQ3K, unpack: unpackQ3K, prep: prepPackedAct3, twin: dotPackedQ3K},
	ggml.Q4_K: {t: ggml.Q4_K, block: packedBlockK, fileBlock: 144, act: packedActK,
		put: superBlocks(packedBlockK, putBlockQ4K), unpack: superBlockUnpack(packedBlockK, unpackBlockQ4K),
		prep: prepPackedActK, twin: dotPackedQ4K},
	ggml.Q5_K: {t: ggml.Q5_K, block: packedBlock5, fileBlock: 176, act: packedActK,
		put: superBlocks(packedBlock5, putBlockQ5K), unpack: superBlockUnpack(packedBlock5, unpackBlockQ5K),
		prep: prepPackedActK, twin: dotPackedQ5K},
	ggml.Q6_K: {t: ggml.Q6_K, block: packedBlock6, fileBlock: 210, act: packedAct6,
		put: superBlocks(packedBlock6, putBlockQ6K), unpack: superBlockUnpack(packedBlock6, unpackBlockQ6K),
		prep: prepPackedAct6, twin: dotPackedQ6K},
}

// superBlocks is the put of a layout that keeps each super-block of a panel in one run of
// size bytes, given how one row's super-block goes into it.
func superBlocks(size int, put func(blk []byte, i int, x []byte)) func(panel []byte, nb, i, b int, x []byte) {
	return func(panel []byte, _, i, b int, x []byte) { put(panel[b*size:], i, x) }
}

// superBlockUnpack is the unpack of such a layout.
func superBlockUnpack(size int, unpack func(blk []byte, i int, x []byte)) func(panel []byte, nb, i, b int) fileBlockBytes {
	return func(panel []byte, _, i, b int) (x fileBlockBytes) {
		unpack(panel[b*size:], i, x[:])
		return x
	}
}

// Pack rearranges a rows×cols matrix w of type t into the packed layout, for MatMulOp.Packed.
// It returns nil where packing does not pay or is not possible: for types without a packed
// layout (packedFormats), and on CPUs without packed kernels for t (packedVariants).
// The result does not reference w, so the caller may release w's memory (for a memory-mapped
// file, drop its pages) once every reader uses the packed copy: Packed.DequantizeRow replaces
// row lookups in w.
func Pack(t ggml.Type, w []byte, rows, cols int) *Packed { return PackInto(t, w, rows, cols, nil) }

// PackedSize is the number of bytes of Pack's copy of a rows×cols matrix of type t: 0 where
// Pack returns nil.
func PackedSize(t ggml.Type, rows, cols int) int {
	if !packable(t, rows, cols) {
		return 0
	}
	nb := cols / t.BlockSize()
	return (rows + panelRows - 1) / panelRows * packedFormats[t].stride(nb)
}

// PackInto is Pack with the copy in dst (at least PackedSize bytes, 64-byte aligned; nil: a
// buffer of its own), so that a model's matrices can share one buffer, huge pages and all
// (see WeightBytes).
func PackInto(t ggml.Type, w []byte, rows, cols int, dst []byte) *Packed {
	if !packable(t, rows, cols) {
		return nil
	}
	return packAs(t, w, rows, cols, dst)
}

// packable reports whether Pack packs a rows×cols matrix of type t on this CPU.
func packable(t ggml.Type, rows, cols int) bool {
	if rows <= 0 || cols <= 0 || !t.Known() || cols%t.BlockSize() != 0 {
		return false
	}
	f := packedFormats[t]
	return f != nil && f.kernels != nil
}

// stride is the bytes of one panel of nb blocks a row: a multiple of 64, so that panels stay
// cache-line aligned.
func (f *packedFormat) stride(nb int) int { return (f.block*nb + 63) &^ 63 }

// packAs is PackInto without the check of kernel availability (the twins run everywhere);
// t must have a packed layout.
func packAs(t ggml.Type, w []byte, rows, cols int, dst []byte) *Packed {
	f := packedFormats[t]
	nb := cols / t.BlockSize()
	stride := f.stride(nb)
	n := (rows + panelRows - 1) / panelRows * stride
	switch {
	case dst == nil:
		dst = WeightBytes(n)
	case len(dst) < n || uintptr(unsafe.Pointer(&dst[0]))%64 != 0:
		panic(fmt.Sprintf("kernels: packed %s %dx%d into %d bytes at %p, want %d, 64-byte aligned", t, rows, cols, len(dst), dst, n))
	default:
		// The padding (rows of a last partial panel, a panel's tail) is not written below:
		// zero it, as in a buffer of its own.
		clear(dst[:n])
	}
	p := &Packed{t: t, f: f, rows: rows, cols: cols, nb: nb, stride: stride, data: dst[:n:n]}
	if len(w) < rows*nb*f.fileBlock {
		panic(fmt.Sprintf("kernels: pack %s %dx%d from %d bytes", t, rows, cols, len(w)))
	}
	for r := 0; r < rows; r++ {
		panel := p.data[r/panelRows*stride:]
		row := w[r*nb*f.fileBlock:]
		for b := 0; b < nb; b++ {
			f.put(panel, nb, r%panelRows, b, row[b*f.fileBlock:(b+1)*f.fileBlock])
		}
	}
	return p
}

// kernels returns the packed kernels of p's type on this CPU (nil: none, use the twin).
func (p *Packed) kernels() *packedKernelSet { return p.f.kernels }

// actBytes is the size of one prepared activation row for p (prep).
func (p *Packed) actBytes() int { return p.f.act * p.nb }

// prep writes the prepared form of an activation row for p's kernels to dst (actBytes).
func (p *Packed) prep(act, dst []byte) { p.f.prep(act, p.nb, dst) }

// twin is the Go twin of p's kernels for one panel.
func (p *Packed) twin(panel []byte, prep []byte, out *[panelRows]float32) {
	p.f.twin(panel, p.nb, prep, out)
}

// legacyOffsets returns where block b of a panel of nb blocks of a 32-element type (Q4_0,
// Q5_0) lies: its quants (size bytes for the panel's 16 rows) and its 16 fp16 scales. The
// blocks go in groups of eight, each group's quants then their scales, so that a panel is
// one run of memory that the kernels read in order (two runs, all quants then all scales,
// streamed slower: see the commit that grouped them).
func legacyOffsets(size, nb, b int) (quants, scales int) { return legacyOffsetsH(size, 32, 8, nb, b) }

// legacyOffsetsH is legacyOffsets for groups of per blocks with hdr bytes of scales each.
func legacyOffsetsH(size, hdr, per, nb, b int) (quants, scales int) {
	g, k := b/per, b%per
	base := per * (size + hdr) * g
	head := (hdr*min(per, nb-per*g) + 63) &^ 63
	return base + head + size*k, base + hdr*k
}

// putQ4_0 writes a Q4_0 block into its panel.
func putQ4_0(panel []byte, nb, i, b int, x []byte) {
	qo, so := legacyOffsets(256, nb, b)
	le.PutUint16(panel[so+2*i:], le.Uint16(x))
	for q := 0; q < 4; q++ {
		le.PutUint32(panel[qo+64*q+4*i:], le.Uint32(x[2+4*q:]))
	}
}

// unpackQ4_0 returns block b of row i of a Q4_0 panel in the file's layout.
func unpackQ4_0(panel []byte, nb, i, b int) (x fileBlockBytes) {
	qo, so := legacyOffsets(256, nb, b)
	copy(x[:2], panel[so+2*i:])
	for q := 0; q < 4; q++ {
		copy(x[2+4*q:6+4*q], panel[qo+64*q+4*i:])
	}
	return x
}

// Type, Rows and Cols describe the matrix; Size is the bytes the packed copy holds.
func (p *Packed) Type() ggml.Type { return p.t }
func (p *Packed) Rows() int       { return p.rows }
func (p *Packed) Cols() int       { return p.cols }
func (p *Packed) Size() int       { return len(p.data) }

// RowBytes writes row r in the file's layout (the bytes Pack read) to dst, which must hold a
// row, and returns the row.
func (p *Packed) RowBytes(r int, dst []byte) []byte {
	rb := p.rowBytes()
	if r < 0 || r >= p.rows || len(dst) < rb {
		panic(fmt.Sprintf("kernels: row %d of a packed %dx%d matrix into %d bytes", r, p.rows, p.cols, len(dst)))
	}
	panel, fb := p.data[r/panelRows*p.stride:], p.f.fileBlock
	for b := 0; b < p.nb; b++ {
		x := p.f.unpack(panel, p.nb, r%panelRows, b)
		copy(dst[b*fb:(b+1)*fb], x[:fb])
	}
	return dst[:rb]
}

// rowBytes is the size of a row in the file's layout.
func (p *Packed) rowBytes() int { return p.f.fileBlock * p.nb }

// DequantizeRow converts row r to float32 exactly as Dequantize converts the original row
// (the embedding lookup of a packed matrix).
func (p *Packed) DequantizeRow(r int, dst []float32) error {
	if len(dst) != p.cols {
		return fmt.Errorf("dequantize row %d of a packed %s %dx%d matrix into %d values", r, p.t, p.rows, p.cols, len(dst))
	}
	var buf [34 * 256]byte // a row of up to 8192 columns of any packed type, off the heap
	row := buf[:]
	if p.rowBytes() > len(buf) {
		row = make([]byte, p.rowBytes())
	}
	return Dequantize(p.t, p.RowBytes(r, row), dst)
}

// Dot returns row r · act for activations converted by QuantizeActivations(p.Type(), ...): the
// value MatMul computes for that row and activation row (prepared here per call; MatMul
// prepares each activation row once).
func (p *Packed) Dot(r int, act []byte) float32 {
	prep := make([]byte, p.actBytes())
	p.prep(act, prep)
	var out [panelRows]float32
	p.panelDots(r/panelRows, prep, &out)
	return out[r%panelRows]
}

// panelDots computes the 16 results of panel pi with the kernel (the twin where there is none).
func (p *Packed) panelDots(pi int, prep []byte, out *[panelRows]float32) {
	if k := p.kernels(); k != nil {
		k.dot(p.data[pi*p.stride:(pi+1)*p.stride], p.stride, 1, p.nb, prep, out[:])
		return
	}
	p.twin(p.data[pi*p.stride:], prep, out)
}

// prepPackedAct writes the prepared form of nb Q8_0 activation blocks (packedAct bytes each)
// for packed Q4_0 weights to dst: their quants meet nibbles stored with an offset of 8.
func prepPackedAct(act []byte, nb int, dst []byte) { prepPackedActBias(act, nb, dst, 8) }

// prepPackedActBias writes the prepared form of nb Q8_0 activation blocks to dst, for weights
// stored with an offset of bias: the 32 quants, the scale as float32, and -bias times the sum
// of the quants (exact in int32), which the kernels start each block's integer sum from.
func prepPackedActBias(act []byte, nb int, dst []byte, bias int32) {
	if len(act) < 34*nb || len(dst) < packedAct*nb {
		panic(fmt.Sprintf("kernels: packed activations of %d blocks from %d bytes into %d", nb, len(act), len(dst)))
	}
	if nb > 0 && prepActBias != nil {
		prepActBias(act, nb, dst, bias)
		return
	}
	prepPackedActBiasGo(act, nb, dst, bias)
}

// prepActBias is prepPackedActBias's loop in assembly where the CPU has it (AVX2; a batch of
// eight Q4_0 sequences spent 1.6% of a step in the Go loop, about 50 ns a block).
var prepActBias func(act []byte, nb int, dst []byte, bias int32)

// prepPackedActBiasGo is prepPackedActBias in Go: the twin the assembly is tested against.
func prepPackedActBiasGo(act []byte, nb int, dst []byte, bias int32) {
	for b := 0; b < nb; b++ {
		y, d := act[34*b:34*b+34], dst[packedAct*b:packedAct*(b+1)]
		copy(d[:32], y[2:])
		binary.LittleEndian.PutUint32(d[32:], math.Float32bits(getF16(y, 0)))
		binary.LittleEndian.PutUint32(d[36:], uint32(-bias*sumInt8x32(y[2:34])))
	}
}

// sumInt8x32 is the sum of the 32 signed bytes b, eight at a time: their unsigned values less
// 256 for each with its top bit set. Every activation row of a packed product passes here once
// a matrix (a batch of eight spent 2% of its time in the byte-by-byte loop before).
func sumInt8x32(b []byte) int32 {
	_ = b[31]
	const bytePairs = 0x00ff00ff00ff00ff
	var u uint64 // four 16-bit sums, none above 8·255
	neg := 0
	for i := 0; i < 32; i += 8 {
		w := le.Uint64(b[i:])
		u += w&bytePairs + w>>8&bytePairs
		neg += bits.OnesCount64(w & 0x8080808080808080)
	}
	u = u&0x0000ffff0000ffff + u>>16&0x0000ffff0000ffff
	u = u&0xffffffff + u>>32
	return int32(u) - 256*int32(neg)
}

// dotPackedQ4_0 is the packed kernels' arithmetic in Go, for one panel (nb blocks) and one
// prepared activation row.
func dotPackedQ4_0(panel []byte, nb int, prep []byte, out *[panelRows]float32) {
	for i := range out {
		var acc float32
		for b := 0; b < nb; b++ {
			y := prep[packedAct*b : packedAct*(b+1)]
			s := int32(binary.LittleEndian.Uint32(y[36:]))
			qo, so := legacyOffsets(256, nb, b)
			for q := 0; q < 4; q++ {
				for k := 0; k < 4; k++ {
					v := panel[qo+64*q+4*i+k]
					s += int32(v&0x0f)*int32(int8(y[4*q+k])) + int32(v>>4)*int32(int8(y[16+4*q+k]))
				}
			}
			dx := F16ToF32(binary.LittleEndian.Uint16(panel[so+2*i:]))
			d := float32(dx * math.Float32frombits(binary.LittleEndian.Uint32(y[32:])))
			acc = fma32x(float32(s), d, acc)
		}
		out[i] = acc
	}
}
