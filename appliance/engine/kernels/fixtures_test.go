package kernels_test

// The fixture tests live in an external test package because package gguf itself uses the
// kernels (to synthesise quantized files), so the kernels' internal tests cannot import it.

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/kernels"
	"github.com/exo-nix/exo/appliance/testfixtures"
)

func openGGUF(t *testing.T, rel string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(testfixtures.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// requantizeMatches quantizes every quantized tensor of dst's file again from the same tensor of
// src (an F32 or F16 file holding the original weights) and demands the very bytes
// llama-quantize wrote. Under the race detector only an evenly spaced subset of rows is checked,
// to keep the run short; the full check runs in a normal test run.
func requantizeMatches(t *testing.T, srcRel, dstRel string, wantTypes ...ggml.Type) {
	src, dst := openGGUF(t, srcRel), openGGUF(t, dstRel)
	seen := map[ggml.Type]int{}
	for i := range dst.Tensors {
		ti := &dst.Tensors[i]
		if ti.Type == ggml.F32 || ti.Type == ggml.F16 {
			continue
		}
		si, ok := src.Tensor(ti.Name)
		if !ok {
			t.Fatalf("%s: tensor %s missing from %s", dstRel, ti.Name, srcRel)
		}
		cols, rows := int(ti.Dims[0]), int(ti.Elements()/int64(ti.Dims[0]))
		srcRow, err := si.Type.RowSize(int64(cols))
		if err != nil {
			t.Fatal(err)
		}
		dstRow, err := ti.Type.RowSize(int64(cols))
		if err != nil {
			t.Fatal(err)
		}
		sdata, ddata := src.TensorData(si), dst.TensorData(ti)
		step := 1
		if kernels.RaceEnabled && rows > 64 {
			step = rows / 64
		}
		x := make([]float32, cols)
		got := make([]byte, dstRow)
		for r := 0; r < rows; r += step {
			if err := kernels.Dequantize(si.Type, sdata[int64(r)*srcRow:], x); err != nil {
				t.Fatalf("%s row %d: %v", ti.Name, r, err)
			}
			if err := kernels.QuantizeInto(ti.Type, x, got); err != nil {
				t.Fatalf("%s row %d: %v", ti.Name, r, err)
			}
			want := ddata[int64(r)*dstRow : int64(r+1)*dstRow]
			if !bytes.Equal(got, want) {
				t.Fatalf("%s (%s, %dx%d) row %d differs from llama-quantize: %s", ti.Name, ti.Type, rows, cols, r, firstBlockDiff(ti.Type, got, want))
			}
		}
		seen[ti.Type]++
	}
	for _, ty := range wantTypes {
		if seen[ty] == 0 {
			t.Errorf("%s has no %s tensor to check (types seen: %v)", dstRel, ty, seen)
		}
	}
	t.Logf("%s: byte-identical tensors per type: %v", dstRel, seen)
}

func firstBlockDiff(ty ggml.Type, got, want []byte) string {
	bs := ty.TypeSize()
	for b := 0; b*bs < len(got); b++ {
		g, w := got[b*bs:(b+1)*bs], want[b*bs:(b+1)*bs]
		if !bytes.Equal(g, w) {
			for i := range g {
				if g[i] != w[i] {
					return fmt.Sprintf("block %d, byte %d of %d: got %#02x want %#02x\n got  %x\n want %x", b, i, bs, g[i], w[i], g, w)
				}
			}
		}
	}
	return "equal"
}

func TestRequantizeStories260KQ8_0(t *testing.T) {
	requantizeMatches(t, "stories260K/stories260K-F32.gguf", "stories260K/stories260K-Q8_0.gguf", ggml.Q8_0)
}

func TestRequantizeStories260KQ4_0(t *testing.T) {
	requantizeMatches(t, "stories260K/stories260K-F32.gguf", "stories260K/stories260K-Q4_0.gguf", ggml.Q4_0, ggml.Q8_0)
}

func TestRequantizeSyntheticQ8_0(t *testing.T) {
	requantizeMatches(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-F16.gguf",
		"synthetic/llama-spm32k-e256/llama-spm32k-e256-Q8_0.gguf", ggml.Q8_0)
}

// The Q4_K_M file proves the K-quant reference quantizers (make_qkx2_quants for Q4_K and
// make_qx_quants for Q6_K) bit for bit.
func TestRequantizeSyntheticQ4_K_M(t *testing.T) {
	requantizeMatches(t, "synthetic/llama-spm32k-e256/llama-spm32k-e256-F16.gguf",
		"synthetic/llama-spm32k-e256/llama-spm32k-e256-Q4_K_M.gguf", ggml.Q4_K, ggml.Q6_K)
}

// A shipped Q8_0 tensor dequantizes to within the format's error of the original weights, and
// quantizing the dequantized values again reproduces the shipped bytes (they lie on the grid).
func TestDequantizeShippedTensors(t *testing.T) {
	f := openGGUF(t, "stories260K/stories260K-Q8_0.gguf")
	ref := openGGUF(t, "stories260K/stories260K-F32.gguf")
	for _, name := range []string{"blk.0.attn_q.weight", "token_embd.weight", "blk.4.ffn_up.weight"} {
		ti, ok1 := f.Tensor(name)
		ri, ok2 := ref.Tensor(name)
		if !ok1 || !ok2 || ti.Type != ggml.Q8_0 {
			t.Fatalf("%s: not a Q8_0 tensor in both files", name)
		}
		n := int(ti.Elements())
		got := make([]float32, n)
		if err := kernels.Dequantize(ti.Type, f.TensorData(ti), got); err != nil {
			t.Fatal(err)
		}
		orig := make([]float32, n)
		if err := kernels.Dequantize(ri.Type, ref.TensorData(ri), orig); err != nil {
			t.Fatal(err)
		}
		// Half a step of d = amax/127, plus up to 127 steps times the half-precision rounding of d.
		for b := 0; b < n/32; b++ {
			var amax float32
			for _, v := range orig[b*32 : b*32+32] {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			bound := amax/254 + amax/2048
			for i := b * 32; i < b*32+32; i++ {
				if d := float32(math.Abs(float64(got[i] - orig[i]))); d > bound {
					t.Fatalf("%s element %d: dequantized %g, original %g, error %g > %g", name, i, got[i], orig[i], d, bound)
				}
			}
		}
		again, err := kernels.Quantize(ggml.Q8_0, got)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, f.TensorData(ti)) {
			t.Fatalf("%s: requantizing the dequantized tensor changed it: %s", name, firstBlockDiff(ggml.Q8_0, again, f.TensorData(ti)))
		}
	}
}
