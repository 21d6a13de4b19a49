package gguf

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Metadata keys that Extract adds to a stage file.
const (
	KeyStageFirst       = "exo.stage.first_layer"        // first block held (inclusive)
	KeyStageLast        = "exo.stage.last_layer"         // end of the blocks held (exclusive)
	KeyStageSourceCount = "exo.stage.source_block_count" // {arch}.block_count of the whole model
)

// LayerRange reports the blocks [first, last) whose tensors the file holds and the block count of
// the whole model: the exo.stage.* keys of an extracted stage, or [0, block_count) otherwise.
func (f *File) LayerRange() (first, last, total int, err error) {
	arch := f.Arch()
	if arch == "" {
		return 0, 0, 0, fmt.Errorf("gguf: %s: missing general.architecture", f.name())
	}
	bc, ok := f.Uint(arch + ".block_count")
	if !ok {
		return 0, 0, 0, fmt.Errorf("gguf: %s: missing %s.block_count", f.name(), arch)
	}
	if bc > 1<<20 {
		return 0, 0, 0, fmt.Errorf("gguf: %s: %s.block_count %d is implausible", f.name(), arch, bc)
	}
	total = int(bc)
	first, last = 0, total
	if _, ok := f.Get(KeyStageFirst); ok {
		a, ok1 := f.Uint(KeyStageFirst)
		b, ok2 := f.Uint(KeyStageLast)
		s, ok3 := f.Uint(KeyStageSourceCount)
		if !ok1 || !ok2 || !ok3 || a >= b || b > s || s != bc {
			return 0, 0, 0, fmt.Errorf("gguf: %s: inconsistent stage keys (%s, %s, %s) for block count %d",
				f.name(), KeyStageFirst, KeyStageLast, KeyStageSourceCount, bc)
		}
		first, last = int(a), int(b)
	}
	return first, last, total, nil
}

// tensorRole sorts a tensor name into the stage that needs it.
type tensorRole int

const (
	roleGlobal tensorRole = iota // used by every layer, e.g. rope_freqs: every stage keeps it
	roleInput                    // token_embd*: the first stage
	roleOutput                   // output*, output_norm*: the last stage
	roleBlock                    // blk.N.*: the stage that runs block N
)

func classify(name string) (tensorRole, int) {
	if rest, ok := strings.CutPrefix(name, "blk."); ok {
		num, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(num); err == nil && n >= 0 {
			return roleBlock, n
		}
		return roleGlobal, 0
	}
	base, _, _ := strings.Cut(name, ".")
	switch {
	case strings.HasPrefix(base, "token_embd"):
		return roleInput, 0
	case base == "output" || strings.HasPrefix(base, "output_"):
		return roleOutput, 0
	}
	return roleGlobal, 0
}

// StageTensors lists, in file order, the tensors a pipeline stage running blocks [first, last)
// of src needs: its blocks, token_embd on the first stage, output_norm/output on the last (and
// token_embd there too when the output projection is tied to it), and tensors shared by all
// layers (such as rope_freqs) on every stage.
func StageTensors(src *File, first, last int) ([]*TensorInfo, error) {
	have0, have1, total, err := src.LayerRange()
	if err != nil {
		return nil, err
	}
	if first < 0 || first >= last || last > total {
		return nil, fmt.Errorf("gguf: %s: layer range [%d, %d) is not within the model's %d blocks", src.name(), first, last, total)
	}
	if first < have0 || last > have1 {
		return nil, fmt.Errorf("gguf: %s: layer range [%d, %d) is not within the blocks [%d, %d) this file holds", src.name(), first, last, have0, have1)
	}
	isFirst, isLast := first == 0, last == total
	_, hasOutput := src.Tensor("output.weight")
	var out []*TensorInfo
	for i := range src.Tensors {
		t := &src.Tensors[i]
		role, blk := classify(t.Name)
		keep := false
		switch role {
		case roleGlobal:
			keep = true
		case roleInput:
			keep = isFirst || (isLast && !hasOutput && t.Name == "token_embd.weight")
		case roleOutput:
			keep = isLast
		case roleBlock:
			keep = blk >= first && blk < last
		}
		if keep {
			out = append(out, t)
		}
	}
	for b := first; b < last; b++ {
		if !hasBlock(out, b) {
			return nil, fmt.Errorf("gguf: %s: no tensors for block %d", src.name(), b)
		}
	}
	if isFirst {
		if _, ok := src.Tensor("token_embd.weight"); !ok {
			return nil, fmt.Errorf("gguf: %s: first stage needs token_embd.weight, which the file lacks", src.name())
		}
	}
	if isLast && !hasOutput {
		if _, ok := src.Tensor("token_embd.weight"); !ok {
			return nil, fmt.Errorf("gguf: %s: last stage needs output.weight or a tied token_embd.weight; the file has neither", src.name())
		}
	}
	return out, nil
}

func hasBlock(ts []*TensorInfo, b int) bool {
	prefix := "blk." + strconv.Itoa(b) + "."
	for _, t := range ts {
		if strings.HasPrefix(t.Name, prefix) {
			return true
		}
	}
	return false
}

// Extract writes to w a GGUF holding the tensors of blocks [first, last) of src (see
// StageTensors) with all of src's metadata and the exo.stage.* keys recording the range. Block
// numbering is kept, so a stage loads its blk.N tensors under the same names as the full model.
func Extract(src *File, first, last int, w io.Writer) error {
	gw, err := extractWriter(src, first, last)
	if err != nil {
		return err
	}
	_, err = gw.WriteTo(w)
	return err
}

// ExtractFile is Extract into a file, written atomically.
func ExtractFile(src *File, first, last int, path string) error {
	gw, err := extractWriter(src, first, last)
	if err != nil {
		return err
	}
	return gw.WriteFile(path)
}

func extractWriter(src *File, first, last int) (*Writer, error) {
	ts, err := StageTensors(src, first, last)
	if err != nil {
		return nil, err
	}
	_, _, total, _ := src.LayerRange()
	gw := NewWriter()
	for _, kv := range src.KVs {
		gw.AddKV(kv.Key, kv.Value)
	}
	gw.AddKV(KeyStageFirst, U32(uint32(first)))
	gw.AddKV(KeyStageLast, U32(uint32(last)))
	gw.AddKV(KeyStageSourceCount, U32(uint32(total)))
	for _, t := range ts {
		data := src.TensorData(t)
		if data == nil {
			return nil, fmt.Errorf("gguf: %s: tensor %q: file is closed", src.name(), t.Name)
		}
		if err := gw.AddTensor(t.Name, t.Type, t.Dims, data); err != nil {
			return nil, err
		}
	}
	return gw, nil
}
