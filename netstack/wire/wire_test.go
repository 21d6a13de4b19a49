package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	x := make([]float32, 3*64)
	for i := range x {
		x[i] = float32(i)*0.25 - 7
	}
	h := Header{
		Kind: KindActivations, DType: F32, Instance: "inst-7b-0001", Request: 1<<40 + 3, Step: 17,
		Positions: []int32{5, 6, 7}, Shape: []uint32{3, 64},
	}
	var buf bytes.Buffer
	w := Writer{W: &buf}
	if err := w.WriteFrame(&h, F32Bytes(x)); err != nil {
		t.Fatal(err)
	}
	tok := Header{Kind: KindTokens, DType: I32, Instance: "inst-7b-0001", Request: 9, Step: 18, Shape: []uint32{2}}
	if err := w.WriteFrame(&tok, I32Bytes([]int32{-1, 151935})); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.Len(), h.HeaderSize()+len(x)*4+tok.HeaderSize()+8; got != want {
		t.Fatalf("encoded %d bytes, want %d", got, want)
	}
	r := Reader{R: &buf}
	var got Header
	payload, err := r.ReadFrame(&got, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.PayloadLen = uint64(4 * len(x))
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("header\n got %+v\nwant %+v", got, h)
	}
	back, ok := F32View(payload)
	if !ok || !reflect.DeepEqual(back, x) {
		t.Fatalf("payload differs (view ok=%v)", ok)
	}
	payload, err = r.ReadFrame(&got, payload)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := DecodeI32(payload, nil)
	if err != nil || !reflect.DeepEqual(ids, []int32{-1, 151935}) || got.Kind != KindTokens || got.Step != 18 {
		t.Fatalf("tokens frame: %+v %v %v", got, ids, err)
	}
	if _, err := r.ReadFrame(&got, nil); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestLargePayloadWrittenFromCallerSlice(t *testing.T) {
	// A payload above the coalescing limit must reach the writer as the caller's own slice.
	x := make([]float32, 64<<10)
	rec := &recordingWriter{}
	h := Header{Kind: KindActivations, DType: F32, Shape: []uint32{1, uint32(len(x))}}
	if err := WriteFrame(rec, &h, F32Bytes(x)); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 2 || &rec.writes[1][0] != &F32Bytes(x)[0] {
		t.Fatalf("want header write then the caller's payload slice, got %d writes", len(rec.writes))
	}
	small := Header{Kind: KindActivations, DType: F32, Shape: []uint32{1, 1024}}
	rec.writes = nil
	if err := WriteFrame(rec, &small, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 1 {
		t.Fatalf("a 4 KB activation should go out in one write with its header, took %d", len(rec.writes))
	}
}

type recordingWriter struct{ writes [][]byte }

func (r *recordingWriter) Write(p []byte) (int, error) {
	r.writes = append(r.writes, p)
	return len(p), nil
}

func TestHeaderErrors(t *testing.T) {
	good := func() []byte {
		var b bytes.Buffer
		h := Header{Kind: KindActivations, DType: F16, Shape: []uint32{2, 32}, Positions: []int32{0, 1}}
		if err := WriteFrame(&b, &h, make([]byte, 128)); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		want   string
	}{
		{"magic", func(b []byte) []byte { copy(b, "HTTP"); return b }, `magic "HTTP"`},
		{"version", func(b []byte) []byte { b[4] = 2; return b }, "peer speaks exo wire format v2, this node speaks v1"},
		{"kind", func(b []byte) []byte { b[6] = 99; return b }, "unknown frame kind 99"},
		{"dtype", func(b []byte) []byte { b[7] = 77; return b }, "unknown dtype 77"},
		{"payload length", func(b []byte) []byte { b[32] = 100; return b }, "needs 128 payload bytes, has 100"},
		{"header length", func(b []byte) []byte { b[8]++; return b }, "header length field"},
		{"dims", func(b []byte) []byte { b[13] = 200; return b }, "200 dims"},
		{"truncated header", func(b []byte) []byte { return b[:20] }, "unexpected EOF"},
		{"truncated payload", func(b []byte) []byte { return b[:len(b)-1] }, "unexpected EOF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h Header
			_, err := ReadFrame(bytes.NewReader(c.mutate(good())), &h, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	var ve *VersionError
	b := good()
	b[4] = 9
	if _, err := ReadFrame(bytes.NewReader(b), &Header{}, nil); !errors.As(err, &ve) || ve.Remote != 9 || ve.Local != Version {
		t.Fatalf("version mismatch: %v", err)
	}
	// Writers refuse what readers would refuse.
	bad := Header{Kind: KindActivations, DType: Q8_0, Shape: []uint32{1, 33}}
	if err := WriteFrame(io.Discard, &bad, make([]byte, 34)); err == nil || !strings.Contains(err.Error(), "multiple of 32") {
		t.Fatalf("Q8_0 with 33 columns: %v", err)
	}
	short := Header{Kind: KindActivations, DType: F32, Shape: []uint32{4}}
	if err := WriteFrame(io.Discard, &short, make([]byte, 12)); err == nil || !strings.Contains(err.Error(), "needs 16 payload bytes, has 12") {
		t.Fatalf("short payload: %v", err)
	}
	striped := Header{Kind: KindActivations, DType: Bytes, Shape: []uint32{100}, Parts: []uint64{60, 40}}
	var sb bytes.Buffer
	if err := WriteFrame(&sb, &striped, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if sb.Len() != striped.HeaderSize()+60 {
		t.Fatalf("striped frame wrote %d bytes, want header + first part (%d)", sb.Len(), striped.HeaderSize()+60)
	}
	if _, err := ReadFrame(&sb, &Header{}, nil); !errors.Is(err, ErrStriped) {
		t.Fatalf("striped frame on a single stream: %v", err)
	}
}

func TestF16AllValuesRoundTrip(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		if math.IsNaN(float64(f)) {
			if F32ToF16(f)&0x7c00 != 0x7c00 || F32ToF16(f)&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, F32ToF16(f))
			}
			continue
		}
		if back := F32ToF16(f); back != h {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, back)
		}
	}
}

func TestF16RoundsToNearestEven(t *testing.T) {
	known := map[float32]uint16{1: 0x3c00, -2: 0xc000, 65504: 0x7bff, 65520: 0x7c00, 1e9: 0x7c00,
		0.1: 0x2e66, 5.960464477539063e-08: 0x0001, 2.980232238769531e-08: 0x0000, 3e-08: 0x0001,
		6.097555160522461e-05: 0x03ff, float32(math.Inf(-1)): 0xfc00}
	for f, want := range known {
		if got := F32ToF16(f); got != want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", f, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		// Uniform over float32 bit patterns inside the F16 range, including subnormals.
		f := math.Float32frombits(rng.Uint32() & 0x477fffff)
		if f >= 65520 {
			continue // rounds to infinity, checked with the known values
		}
		if rng.IntN(2) == 0 {
			f = -f
		}
		h := F32ToF16(f)
		got := float64(F16ToF32(h))
		// Neighbouring halves must not be closer; at a tie the even one wins.
		for _, n := range []uint16{h - 1, h + 1} {
			if n&0x7c00 == 0x7c00 || (n^h)&0x8000 != 0 {
				continue
			}
			other := float64(F16ToF32(n))
			dg, do := math.Abs(float64(f)-got), math.Abs(float64(f)-other)
			if do < dg || (do == dg && h&1 == 1) {
				t.Fatalf("F32ToF16(%g) = %#04x (%g); %#04x (%g) is nearer or the even tie", f, h, got, n, other)
			}
		}
	}
}

func TestQ8_0Blocks(t *testing.T) {
	x := make([]float32, 64)
	for i := range x {
		x[i] = float32(i - 20)
	}
	x[63] = 127 // second block's scale becomes exactly 1
	enc, err := Encode(Q8_0, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != 68 {
		t.Fatalf("2 blocks encode to %d bytes, want 68", len(enc))
	}
	if d := F16ToF32(uint16(enc[34]) | uint16(enc[35])<<8); d != 1 {
		t.Fatalf("second block scale %g, want 1", d)
	}
	dec, err := Decode(Q8_0, enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 32; i < 64; i++ {
		if dec[i] != x[i] {
			t.Fatalf("integers up to 127 with scale 1 must survive: x[%d]=%g got %g", i, x[i], dec[i])
		}
	}
	// Halves round away from zero, as ggml's roundf does: 2.5 -> 3, -2.5 -> -3 at scale 1.
	blk := make([]float32, 32)
	blk[0], blk[1], blk[2] = 127, 2.5, -2.5
	enc, _ = Encode(Q8_0, blk, nil)
	if int8(enc[3]) != 3 || int8(enc[4]) != -3 {
		t.Fatalf("2.5 -> %d, -2.5 -> %d; want 3, -3", int8(enc[3]), int8(enc[4]))
	}
	zero, _ := Encode(Q8_0, make([]float32, 32), nil)
	if dz, _ := Decode(Q8_0, zero, nil); dz[5] != 0 {
		t.Fatal("an all-zero block must decode to zeros")
	}
	if _, err := Encode(Q8_0, make([]float32, 33), nil); err == nil {
		t.Fatal("33 values cannot be Q8_0")
	}
}

// realisticActivations imitates the hidden states between transformer layers: most channels are
// roughly Gaussian with per-channel scales spread over a decade, a few "massive" channels carry
// values two orders of magnitude larger, and the residual stream grows with depth. The errors of
// F16 and Q8_0 below depend on exactly that shape: Q8_0 blocks that hold a massive channel lose
// precision on their other 31 values.
func realisticActivations(tokens, embd int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 99))
	scale := make([]float64, embd)
	for i := range scale {
		scale[i] = math.Exp(rng.NormFloat64() * 0.6)
	}
	massive := map[int]float64{}
	for len(massive) < 3 {
		massive[rng.IntN(embd)] = 80 + 200*rng.Float64()
	}
	x := make([]float32, tokens*embd)
	for t := 0; t < tokens; t++ {
		for c := 0; c < embd; c++ {
			v := rng.NormFloat64() * scale[c]
			if m, ok := massive[c]; ok {
				v = m * (0.8 + 0.4*rng.Float64())
				if c%2 == 1 {
					v = -v
				}
			}
			x[t*embd+c] = float32(v)
		}
	}
	return x
}

type encodingError struct{ maxAbs, maxRelRow, rmsRel float64 }

func measure(t testing.TB, dt DType, x []float32, embd int) encodingError {
	enc, err := Encode(dt, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := Decode(dt, enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	var e encodingError
	var se, sx float64
	for r := 0; r < len(x)/embd; r++ {
		var amax, emax float64
		for c := 0; c < embd; c++ {
			d := math.Abs(float64(x[r*embd+c]) - float64(dec[r*embd+c]))
			amax = max(amax, math.Abs(float64(x[r*embd+c])))
			emax = max(emax, d)
			se += d * d
			sx += float64(x[r*embd+c]) * float64(x[r*embd+c])
		}
		e.maxAbs = max(e.maxAbs, emax)
		e.maxRelRow = max(e.maxRelRow, emax/amax)
	}
	e.rmsRel = math.Sqrt(se / sx)
	return e
}

func TestEncodingErrorOnRealisticActivations(t *testing.T) {
	const tokens, embd = 16, 2048
	x := realisticActivations(tokens, embd, 7)
	if e := measure(t, F32, x, embd); e.maxAbs != 0 {
		t.Fatalf("F32 must be exact, max abs error %g", e.maxAbs)
	}
	f16 := measure(t, F16, x, embd)
	q8 := measure(t, Q8_0, x, embd)
	t.Logf("F16:  max abs error %.3g, max error / row max |x| %.3g, RMS error / RMS x %.3g", f16.maxAbs, f16.maxRelRow, f16.rmsRel)
	t.Logf("Q8_0: max abs error %.3g, max error / row max |x| %.3g, RMS error / RMS x %.3g", q8.maxAbs, q8.maxRelRow, q8.rmsRel)
	// F16 keeps 11 significant bits: relative error at most 2^-11 of each value.
	if f16.maxRelRow > 1.0/2048 || f16.rmsRel > 1.0/2048 {
		t.Errorf("F16 error above its 2^-11 bound: %+v", f16)
	}
	// Per element, Q8_0 errs by at most half a step of its block's scale plus the F16 rounding of
	// that scale (127 steps × 2^-11): 0.562 × blockmax/127.
	enc, _ := Encode(Q8_0, x, nil)
	dec, _ := Decode(Q8_0, enc, nil)
	for b := 0; b < len(x)/Q8Block; b++ {
		var amax float64
		for _, v := range x[b*Q8Block : (b+1)*Q8Block] {
			amax = max(amax, math.Abs(float64(v)))
		}
		for j := b * Q8Block; j < (b+1)*Q8Block; j++ {
			if d := math.Abs(float64(x[j] - dec[j])); d > 0.5625*amax/127 {
				t.Fatalf("Q8_0 element %d: error %g above bound %g", j, d, 0.5625*amax/127)
			}
		}
	}
	if q8.rmsRel < f16.rmsRel {
		t.Errorf("Q8_0 (%g) should lose more than F16 (%g)", q8.rmsRel, f16.rmsRel)
	}
}

func BenchmarkEncode(b *testing.B) {
	const tokens, embd = 1, 2048
	x := realisticActivations(tokens, embd, 3)
	for _, dt := range []DType{F32, F16, Q8_0} {
		b.Run(dt.String(), func(b *testing.B) {
			var buf []byte
			var out []float32
			e := measure(b, dt, x, embd)
			size, _ := EncodedSize(dt, len(x))
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				buf, _ = Encode(dt, x, buf)
				out, _ = Decode(dt, buf, out)
			}
			b.ReportMetric(float64(size), "wire-bytes")
			b.ReportMetric(e.maxAbs, "max-abs-err")
			b.ReportMetric(e.rmsRel, "rms-rel-err")
		})
	}
}
