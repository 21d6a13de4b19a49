package kernels

import (
	"math/rand/v2"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// packedMats packs n random rows×cols matrices of type ty; it returns them and their bytes.
func packedMats(t *testing.T, r *rand.Rand, ty ggml.Type, n, rows, cols int) ([]*Packed, int64) {
	t.Helper()
	var mats []*Packed
	var bytes int64
	for range n {
		p := Pack(ty, q4Matrix(t, r, ty, rows, cols), rows, cols)
		mats = append(mats, p)
		bytes += int64(len(p.data))
	}
	return mats, bytes
}

// A matrix's head panels are a matrix of their own: the same products as its first rows.
func TestHeadPanels(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 9))
	const rows, cols = 100, 256
	p := packAs(ggml.Q4_0, q4Matrix(t, r, ggml.Q4_0, rows, cols), rows, cols, nil)
	for _, c := range []struct {
		bytes int64
		rows  int
	}{
		{int64(p.stride) * 3, 48}, {int64(p.stride)*3 - 1, 32}, {1, 16}, {int64(len(p.data)), rows}, {1 << 40, rows},
	} {
		h := p.headPanels(c.bytes)
		if h.Rows() != c.rows || len(h.data) != (c.rows+panelRows-1)/panelRows*p.stride && h != p {
			t.Fatalf("headPanels(%d): %d rows, %d bytes; want %d rows", c.bytes, h.Rows(), len(h.data), c.rows)
		}
		act := QuantizeActivations(ggml.Q4_0, randVec(r, cols, 1), nil)
		for i := 0; i < h.Rows(); i++ {
			if h.Dot(i, act) != p.Dot(i, act) {
				t.Fatalf("headPanels(%d): row %d differs", c.bytes, i)
			}
		}
	}
	if p.headPanels(1) == p || p.headPanels(1<<40) != p {
		t.Fatal("headPanels copies a whole matrix or returns one cut short")
	}
}
