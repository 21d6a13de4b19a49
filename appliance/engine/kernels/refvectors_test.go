package kernels

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"testing"

	"github.com/exo-nix/exo/appliance/engine/ggml"
)

// refInput returns n test values built with integer arithmetic and exact power-of-two scaling
// only, so every platform produces the same floats: roughly normal values (a sum of four
// uniforms) whose 32-blocks sit at scales from 2^-6 to 2^4, with all-zero blocks, constant
// blocks and single large outliers mixed in — the cases where scale searches and rounding
// decisions differ most.
func refInput(seed uint64, n int) []float32 {
	s := seed*0x9E3779B97F4A7C15 | 1
	next := func() uint64 {
		s ^= s >> 12
		s ^= s << 25
		s ^= s >> 27
		return s * 0x2545F4914F6CDD1D
	}
	x := make([]float32, n)
	for b := 0; b < n/32; b++ {
		exp := int(next()%11) - 6
		kind := next() % 16
		for i := b * 32; i < b*32+32; i++ {
			sum := int64(0)
			for k := 0; k < 4; k++ {
				sum += int64(next()>>44) - 1<<19
			}
			v := float32(math.Ldexp(float64(sum), exp-20))
			switch {
			case kind == 0:
				v = 0
			case kind == 1:
				v = float32(math.Ldexp(3, exp))
			case next()%200 == 0:
				v *= 64
			}
			x[i] = v
		}
	}
	return x
}

// Known answers from llama.cpp's own C code (ggml-quants.c quantize_row_*_ref, the generic
// ggml_vec_dot_*_q8_* of ggml-cpu/quants.c, and the AVX2 quantize_row_q8_0/q8_1 of
// ggml-cpu/arch/x86/quants.c; source of mid-August 2026, built with GCC 12 at -O3), run on the
// refInput vectors below. The sha256 sums cover the quantized bytes of refInput(1, 16384) and
// the float32 bits of 16 row dots of Quantize(t, refInput(2, 16×1024)) with
// QuantizeActivations(t, refInput(3, 1024)). Llama.cpp has no Q8_1 or Q8_K weight dot, so those
// have no dot answer.
var refAnswers = map[ggml.Type]struct{ quant, dot string }{
	ggml.Q4_0: {"941a7bc8ddbf915c70eba8e81e2fe529152898cd846e90c84ce333706eac55b5", "88a13c89547fd77ec76466fc980d5a0f000579666528a6d09220d3a06a8a5fdd"},
	ggml.Q4_1: {"d07ad2a7888471e2d59fa8e598e6850aa817a6f1c0fc18bb516d14d804b1be07", "62c6e98453e49eda991eda121c3bf48db321bda7bbd08f8b3b79639933c46dd4"},
	ggml.Q5_0: {"eacfb9413e71794532a984ff3854e262d52ab748403f496ae78f249c5b9af3c0", "36355339b24e62b25dd5c7e412b7185fc5e8b6b9b1efb2bd6037a76cda33c1de"},
	ggml.Q5_1: {"43ad69f2f7369e28f7ed6930c9c378f01dfb90d77be15b3b29004bde60b8b60d", "d3eea45e2aa9c931b25961b9207120dd94557243eab21cda0e6f4e68f63f2eb0"},
	ggml.Q8_0: {"8dbaa83144dcf0fd06d49cc3dfb46c31b03f9c77e2f30b3521966cab6edd47d2", "18cfcf3a00dfcfe6ee3ecb269935ae51cb9da2a2ad6d1750a9a05cbff143230a"},
	ggml.Q8_1: {"f469c74e9bebcbf4d6794f8f414a35b5639d4a5d6ad3e78c02d9bd48761373f6", ""},
	ggml.Q2_K: {"ece9118c825683548d9f5207ec43d42ddf4b5b2bebd775a80921aedeeb76d54d", "7dacdd5984d43ce176172ba68263590ff81d6c75e73558be4580d11eed278ea4"},
	ggml.Q3_K: {"a6a41f2d56b9986e434373a828e477aa82967f5aa8ffe48bb3127e6a6f5f1d69", "dfb0c5dd29928db0569dd93734a55797a2b5099b64393b761fd75727a5984456"},
	ggml.Q4_K: {"78c1e63015728e7da745cfdd80d9c4f01876310ac8729ee75efb5f3584b095d3", "7c0842a2ddd1161b18beee877a6ed2de17f69a53c960141c3f3f25c371cfc31e"},
	ggml.Q5_K: {"ad7a7a083dbfd4202b446c62b6619d28ce863296ac5c553d17f4e31b50cadf12", "d8e2b981c2a00c72a670c409a6919a2de93ce0ca09b9a63561e0e4ca020b9dc4"},
	ggml.Q6_K: {"ddc988c091002fdfda698c5551cbd37fbeddc5003207313ac04a41358a9488f5", "ff5d5cc8421c13523a57d1cfdfd0318268fcc1dc57eb6f8c834f891f7ec126ff"},
	ggml.Q8_K: {"c27306bcc4b7e04a14efd85c823c14ddfdec51324f132c66fbd1810f8d413847", ""},
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestQuantizeMatchesLlamaCppReference(t *testing.T) {
	x := refInput(1, 64*ggml.QK_K)
	for ty, want := range refAnswers {
		q, err := Quantize(ty, x)
		if err != nil {
			t.Fatal(err)
		}
		if got := sha(q); got != want.quant {
			t.Errorf("%s: quantized bytes hash to %s, llama.cpp's to %s", ty, got, want.quant)
		}
	}
}

func TestDotMatchesLlamaCppReference(t *testing.T) {
	const rows, cols = 16, 1024
	for ty, want := range refAnswers {
		if want.dot == "" {
			continue
		}
		w, err := Quantize(ty, refInput(2, rows*cols))
		if err != nil {
			t.Fatal(err)
		}
		act := QuantizeActivations(ty, refInput(3, cols), nil)
		rb, _ := ty.RowSize(cols)
		out := make([]byte, 4*rows)
		for r := 0; r < rows; r++ {
			binary.LittleEndian.PutUint32(out[4*r:], math.Float32bits(Dot(ty, w[int64(r)*rb:int64(r+1)*rb], act, cols)))
		}
		if got := sha(out); got != want.dot {
			t.Errorf("%s: dot results hash to %s, llama.cpp's to %s", ty, got, want.dot)
		}
	}
}

// The activation quantizers against llama.cpp's AVX2 quantize_row_q8_0 / q8_1, on data whose
// first block holds exact ties (amax 127, so d = 1 and x.5 values round to even).
func TestActivationsMatchLlamaCppSIMD(t *testing.T) {
	x := refInput(5, 64*ggml.QK_K)
	for i := 0; i < 32; i++ {
		x[i] = float32(i) - 15.5
	}
	x[0] = 127
	for ty, want := range map[ggml.Type]string{
		ggml.Q4_0: "a05353901137501168d6c80908986064d0d2975f74b6c237a057ce96b75c03ad", // Q8_0 activations
		ggml.Q4_1: "35995a980fec868798117faddd8ae9f5ba6f4d5fea7b806e267d3b33217f4569", // Q8_1 activations
	} {
		if got := sha(QuantizeActivations(ty, x, nil)); got != want {
			t.Errorf("%s activations hash to %s, llama.cpp's to %s", VecDotType(ty), got, want)
		}
	}
}
