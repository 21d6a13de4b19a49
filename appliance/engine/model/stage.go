package model

import (
	"fmt"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/gguf"
	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// Compute selects how matrix products are evaluated.
type Compute string

const (
	// ComputeNative mirrors llama.cpp's CPU backend: activations are quantized to the type the
	// weights pair with (Q8_0/Q8_K for quantized weights, F16 for F16 weights) before the dot.
	ComputeNative Compute = "native"
	// ComputeF32 dequantizes each weight row exactly and does all arithmetic in fp32; it matches
	// llama.cpp on an F32 copy of the same weights.
	ComputeF32 Compute = "f32"
)

// Options configure a Stage.
type Options struct {
	Compute Compute // "" means ComputeNative
	// KVType is the KV cache type: F32 (the zero value; fp32 attention like the goldens'
	// f32ref) or F16 (attention computed like llama.cpp's default F16 cache + flash attention).
	KVType ggml.Type
}

func (o *Options) normalize() error {
	switch o.Compute {
	case "":
		o.Compute = ComputeNative
	case ComputeNative, ComputeF32:
	default:
		return fmt.Errorf("model: compute %q is not supported (native, f32 are)", o.Compute)
	}
	if o.KVType != ggml.F32 && o.KVType != ggml.F16 {
		return fmt.Errorf("model: KV cache type %s is not supported (F32, F16 are)", o.KVType)
	}
	return nil
}

type layer struct {
	attnNorm       []float32
	wq, wk, wv, wo *matrix
	bq, bk, bv     []float32 // qwen2
	qNorm, kNorm   []float32 // qwen3
	ffnNorm        []float32
	gate, up, down *matrix
}

// Stage runs the layers [First, Last) of a model. The first stage also embeds tokens, the last
// also computes logits. A Stage is read-only after loading and may serve many sequences
// concurrently; each sequence's state lives in its Seq.
type Stage struct {
	Config      Config
	First, Last int

	opts    Options
	embd    *matrix // first stage
	layers  []layer
	outNorm []float32 // last stage
	output  *matrix   // last stage (token_embd when tied)

	rope kernels.Rope

	weightBytes int64
	tensors     []string
}

// LoadStage prepares layers [first, last) of f. It references only the tensors of that range
// (plus token_embd on the first stage and output_norm/output on the last), in place in the
// memory map; only 1-D norm and bias vectors are converted to float32 on the heap.
func LoadStage(f *gguf.File, first, last int, opts Options) (*Stage, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	cfg, err := ConfigFromGGUF(f)
	if err != nil {
		return nil, err
	}
	if first < 0 || last > cfg.NLayer || first >= last {
		return nil, fmt.Errorf("%s: layer range [%d,%d) is not within the model's %d layers", f.Path, first, last, cfg.NLayer)
	}
	s := &Stage{Config: cfg, First: first, Last: last, opts: opts}
	l := &loader{f: f}
	c := cfg
	if first == 0 {
		if s.embd, err = l.matrix("token_embd.weight", c.NEmbd, c.NVocab); err != nil {
			return nil, err
		}
	}
	qDim, kvDimK, kvDimV := c.NHead*c.HeadDimK, c.NHeadKV*c.HeadDimK, c.NHeadKV*c.HeadDimV
	for i := first; i < last; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		var ly layer
		steps := []func() error{
			func() (e error) { ly.attnNorm, e = l.vector(p+"attn_norm.weight", c.NEmbd); return },
			func() (e error) { ly.wq, e = l.matrix(p+"attn_q.weight", c.NEmbd, qDim); return },
			func() (e error) { ly.wk, e = l.matrix(p+"attn_k.weight", c.NEmbd, kvDimK); return },
			func() (e error) { ly.wv, e = l.matrix(p+"attn_v.weight", c.NEmbd, kvDimV); return },
			func() (e error) { ly.wo, e = l.matrix(p+"attn_output.weight", c.NHead*c.HeadDimV, c.NEmbd); return },
			func() (e error) { ly.ffnNorm, e = l.vector(p+"ffn_norm.weight", c.NEmbd); return },
			func() (e error) { ly.gate, e = l.matrix(p+"ffn_gate.weight", c.NEmbd, c.NFF); return },
			func() (e error) { ly.up, e = l.matrix(p+"ffn_up.weight", c.NEmbd, c.NFF); return },
			func() (e error) { ly.down, e = l.matrix(p+"ffn_down.weight", c.NFF, c.NEmbd); return },
		}
		if c.QKVBias {
			steps = append(steps,
				func() (e error) { ly.bq, e = l.vector(p+"attn_q.bias", qDim); return },
				func() (e error) { ly.bk, e = l.vector(p+"attn_k.bias", kvDimK); return },
				func() (e error) { ly.bv, e = l.vector(p+"attn_v.bias", kvDimV); return },
			)
		}
		if c.QKNorm {
			steps = append(steps,
				func() (e error) { ly.qNorm, e = l.vector(p+"attn_q_norm.weight", c.HeadDimK); return },
				func() (e error) { ly.kNorm, e = l.vector(p+"attn_k_norm.weight", c.HeadDimK); return },
			)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, err
			}
		}
		s.layers = append(s.layers, ly)
	}
	if last == cfg.NLayer {
		if s.outNorm, err = l.vector("output_norm.weight", c.NEmbd); err != nil {
			return nil, err
		}
		name := "output.weight"
		if c.TiedEmbeddings {
			name = "token_embd.weight"
		}
		if s.embd != nil && c.TiedEmbeddings {
			s.output = s.embd
		} else if s.output, err = l.matrix(name, c.NEmbd, c.NVocab); err != nil {
			return nil, err
		}
	}
	s.rope = kernels.Rope{Mode: kernels.RopeNorm, Dims: c.RopeDims, Base: c.RopeBase, FreqScale: c.RopeFreqScale}
	if c.RopeType == RopeNeox {
		s.rope.Mode = kernels.RopeNeox
	}
	// Llama 3.1-style scaling: converters store the per-pair frequency divisors as rope_freqs;
	// files that only carry the rope.scaling.* keys get the same factors computed here.
	if _, ok := f.Tensor("rope_freqs.weight"); ok {
		if s.rope.Factors, err = l.vector("rope_freqs.weight", c.RopeDims/2); err != nil {
			return nil, err
		}
	} else if r := c.RopeScaling; r != nil {
		s.rope.Factors = kernels.Llama3RopeFactors(c.RopeDims, c.RopeBase, float32(r.Factor),
			float32(r.LowFreqFactor), float32(r.HighFreqFactor), r.OrigContext)
	}
	s.weightBytes, s.tensors = l.bytes, l.names
	return s, nil
}

// IsFirst reports whether the stage embeds tokens (takes Batch.Tokens).
func (s *Stage) IsFirst() bool { return s.First == 0 }

// IsLast reports whether the stage produces logits.
func (s *Stage) IsLast() bool { return s.Last == s.Config.NLayer }

// Options returns the options the stage was loaded with (normalized).
func (s *Stage) Options() Options { return s.opts }

// WeightBytes is the total size of the tensors the stage references in the file.
func (s *Stage) WeightBytes() int64 { return s.weightBytes }

// Tensors lists the names of the tensors the stage references.
func (s *Stage) Tensors() []string { return append([]string(nil), s.tensors...) }

// Seq is one sequence's state in a stage: the KV cache of the stage's layers and scratch
// buffers. A Seq is used by one goroutine at a time.
type Seq struct {
	stage  *Stage
	ctxLen int
	n      int // positions held in the cache

	kF32, vF32 [][]float32 // per layer, ctxLen × (NHeadKV·HeadDim)
	kF16, vF16 [][]uint16

	sc scratch
}

// NewSequence allocates a KV cache of ctxLen positions for the stage's layers. ctxLen <= 0 means
// the model's training context length.
func (s *Stage) NewSequence(ctxLen int) *Seq {
	if ctxLen <= 0 {
		ctxLen = s.Config.ContextLength
	}
	c := s.Config
	q := &Seq{stage: s, ctxLen: ctxLen}
	kd, vd := c.NHeadKV*c.HeadDimK, c.NHeadKV*c.HeadDimV
	for range s.layers {
		if s.opts.KVType == ggml.F16 {
			q.kF16 = append(q.kF16, make([]uint16, ctxLen*kd))
			q.vF16 = append(q.vF16, make([]uint16, ctxLen*vd))
		} else {
			q.kF32 = append(q.kF32, make([]float32, ctxLen*kd))
			q.vF32 = append(q.vF32, make([]float32, ctxLen*vd))
		}
	}
	q.sc = newScratch(c, ctxLen)
	return q
}

// Len is the number of positions held in the cache (the next position to process).
func (q *Seq) Len() int { return q.n }

// Cap is the context length of the sequence.
func (q *Seq) Cap() int { return q.ctxLen }

// Truncate forgets positions from n on, so they can be recomputed (for example after a
// rejected continuation).
func (q *Seq) Truncate(n int) error {
	if n < 0 || n > q.n {
		return fmt.Errorf("model: truncate to %d outside [0,%d]", n, q.n)
	}
	q.n = n
	return nil
}

// Batch is the input of one Forward call: n consecutive positions starting at Pos.
type Batch struct {
	Pos    int
	Tokens []int32   // first stage: token ids
	Hidden []float32 // other stages: n × NEmbd hidden states from the previous stage
	// AllLogits asks the last stage for logits at every position instead of only the last.
	AllLogits bool
}

// Out is the result of Forward.
type Out struct {
	Hidden []float32 // non-last stages: n × NEmbd, input of the next stage
	Logits []float32 // last stage: NVocab (last position) or n × NVocab (AllLogits)
}

// Forward runs the batch through the stage's layers, appending its keys and values to seq's
// cache. Positions must continue the sequence: Pos <= seq.Len() (a smaller Pos overwrites the
// tail, as after Truncate).
func (s *Stage) Forward(seq *Seq, in Batch) (Out, error) {
	c := s.Config
	if seq == nil || seq.stage != s {
		return Out{}, fmt.Errorf("model: sequence does not belong to this stage")
	}
	var n int
	if s.IsFirst() {
		if in.Hidden != nil {
			return Out{}, fmt.Errorf("model: first stage takes tokens, got hidden states")
		}
		n = len(in.Tokens)
		for i, t := range in.Tokens {
			if t < 0 || int(t) >= c.NVocab {
				return Out{}, fmt.Errorf("model: token %d at batch index %d is outside the vocabulary of %d", t, i, c.NVocab)
			}
		}
	} else {
		if in.Tokens != nil {
			return Out{}, fmt.Errorf("model: stage [%d,%d) takes hidden states, got tokens", s.First, s.Last)
		}
		if len(in.Hidden)%c.NEmbd != 0 {
			return Out{}, fmt.Errorf("model: hidden state length %d is not a multiple of n_embd %d", len(in.Hidden), c.NEmbd)
		}
		n = len(in.Hidden) / c.NEmbd
	}
	if n == 0 {
		return Out{}, fmt.Errorf("model: empty batch")
	}
	if in.Pos < 0 || in.Pos > seq.n {
		return Out{}, fmt.Errorf("model: batch starts at position %d but the sequence holds %d positions", in.Pos, seq.n)
	}
	if in.Pos+n > seq.ctxLen {
		return Out{}, fmt.Errorf("model: context full: positions %d..%d exceed the context length %d", in.Pos, in.Pos+n-1, seq.ctxLen)
	}

	var out Out
	if !s.IsLast() {
		out.Hidden = make([]float32, n*c.NEmbd)
	} else if in.AllLogits {
		out.Logits = make([]float32, n*c.NVocab)
	} else {
		out.Logits = make([]float32, c.NVocab)
	}
	x := seq.sc.x
	// Tokens go through one at a time: the result per position equals a batched evaluation up
	// to fp32 summation order, and batching is a separate optimisation.
	for i := 0; i < n; i++ {
		pos := in.Pos + i
		if s.IsFirst() {
			s.embd.rowF32(int(in.Tokens[i]), x)
		} else {
			copy(x, in.Hidden[i*c.NEmbd:(i+1)*c.NEmbd])
		}
		s.rope.Cache(pos, seq.sc.rope)
		for li := range s.layers {
			s.layer(seq, li, pos, x)
		}
		seq.n = pos + 1
		switch {
		case !s.IsLast():
			copy(out.Hidden[i*c.NEmbd:], x)
		case in.AllLogits:
			s.logits(seq, x, out.Logits[i*c.NVocab:(i+1)*c.NVocab])
		case i == n-1:
			s.logits(seq, x, out.Logits)
		}
	}
	return out, nil
}

// layer runs transformer block li on the hidden state x (updated in place) at position pos.
func (s *Stage) layer(seq *Seq, li, pos int, x []float32) {
	c, ly, sc := s.Config, &s.layers[li], &seq.sc
	comp := s.opts.Compute

	kernels.RMSNorm(sc.h, x, ly.attnNorm, c.RMSEps)
	ly.wq.mulVec(comp, sc.h, sc.q)
	ly.wk.mulVec(comp, sc.h, sc.k)
	ly.wv.mulVec(comp, sc.h, sc.v)
	if ly.bq != nil {
		kernels.Add(sc.q, sc.q, ly.bq)
		kernels.Add(sc.k, sc.k, ly.bk)
		kernels.Add(sc.v, sc.v, ly.bv)
	}
	if ly.qNorm != nil {
		for h := 0; h < c.NHead; h++ {
			qh := sc.q[h*c.HeadDimK : (h+1)*c.HeadDimK]
			kernels.RMSNorm(qh, qh, ly.qNorm, c.RMSEps)
		}
		for h := 0; h < c.NHeadKV; h++ {
			kh := sc.k[h*c.HeadDimK : (h+1)*c.HeadDimK]
			kernels.RMSNorm(kh, kh, ly.kNorm, c.RMSEps)
		}
	}
	s.rope.Apply(sc.q, c.HeadDimK, sc.rope)
	s.rope.Apply(sc.k, c.HeadDimK, sc.rope)
	seq.store(li, pos, sc.k, sc.v)
	s.attention(seq, li, pos, sc.q, sc.att)
	ly.wo.mulVec(comp, sc.att, sc.h)
	kernels.Add(x, x, sc.h)

	kernels.RMSNorm(sc.h, x, ly.ffnNorm, c.RMSEps)
	ly.gate.mulVec(comp, sc.h, sc.gate)
	ly.up.mulVec(comp, sc.h, sc.up)
	kernels.SiLU(sc.gate, sc.gate)
	kernels.Mul(sc.gate, sc.gate, sc.up)
	ly.down.mulVec(comp, sc.gate, sc.h)
	kernels.Add(x, x, sc.h)
}

// attention computes causal grouped-query attention of q over positions [0,pos] into out.
func (s *Stage) attention(seq *Seq, li, pos int, q, out []float32) {
	if seq.kF16 != nil {
		s.attentionF16(seq, li, pos, q, out)
		return
	}
	c, sc := s.Config, &seq.sc
	group := c.NHead / c.NHeadKV
	scale := float32(1 / math.Sqrt(float64(c.HeadDimK)))
	kd, vd := c.NHeadKV*c.HeadDimK, c.NHeadKV*c.HeadDimV
	scores := sc.scores[:pos+1]
	for h := 0; h < c.NHead; h++ {
		kvh := h / group
		qh := q[h*c.HeadDimK : (h+1)*c.HeadDimK]
		for t := 0; t <= pos; t++ {
			scores[t] = kernels.DotF32(qh, seq.key(li, t*kd+kvh*c.HeadDimK, c.HeadDimK, sc.kvRow)) * scale
		}
		kernels.Softmax(scores)
		oh := out[h*c.HeadDimV : (h+1)*c.HeadDimV]
		clear(oh)
		for t := 0; t <= pos; t++ {
			axpy(oh, scores[t], seq.value(li, t*vd+kvh*c.HeadDimV, c.HeadDimV, sc.kvRow))
		}
	}
}

// attentionF16 is attention over the F16 cache computed the way llama.cpp's CPU flash
// attention does (its default configuration): the query is rounded to F16, scores are F16 dot
// products, and the softmax is computed online with the value sum accumulated in F16.
func (s *Stage) attentionF16(seq *Seq, li, pos int, q, out []float32) {
	c, sc := s.Config, &seq.sc
	group := c.NHead / c.NHeadKV
	scale := float32(1 / math.Sqrt(float64(c.HeadDimK)))
	kd, vd := c.NHeadKV*c.HeadDimK, c.NHeadKV*c.HeadDimV
	qr := sc.kvRow[:c.HeadDimK]
	acc := sc.acc16
	for h := 0; h < c.NHead; h++ {
		kvh := h / group
		for d, v := range q[h*c.HeadDimK : (h+1)*c.HeadDimK] {
			qr[d] = kernels.F16ToF32(kernels.F32ToF16(v))
		}
		clear(acc)
		m, sum := float32(math.Inf(-1)), float32(0)
		for t := 0; t <= pos; t++ {
			k := seq.kF16[li][t*kd+kvh*c.HeadDimK : t*kd+(kvh+1)*c.HeadDimK]
			var dot float64
			for d, kv := range k {
				dot += float64(kernels.F16ToF32(kv) * qr[d]) // exact product of two halves
			}
			sc := float32(dot) * scale
			ms, vs := float32(1), float32(1)
			if sc > m {
				ms = float32(math.Exp(float64(m - sc)))
				m = sc
				for d := range acc {
					acc[d] = kernels.F32ToF16(kernels.F16ToF32(acc[d]) * ms)
				}
			} else {
				vs = float32(math.Exp(float64(sc - m)))
			}
			v := seq.vF16[li][t*vd+kvh*c.HeadDimV : t*vd+(kvh+1)*c.HeadDimV]
			for d := range acc {
				acc[d] = kernels.F32ToF16(float32(math.FMA(float64(kernels.F16ToF32(v[d])), float64(vs), float64(kernels.F16ToF32(acc[d])))))
			}
			sum = sum*ms + vs
		}
		inv := 1 / sum
		oh := out[h*c.HeadDimV : (h+1)*c.HeadDimV]
		for d := range oh {
			oh[d] = kernels.F16ToF32(acc[d]) * inv
		}
	}
}

// logits applies the final norm and the classifier.
func (s *Stage) logits(seq *Seq, x, out []float32) {
	kernels.RMSNorm(seq.sc.h, x, s.outNorm, s.Config.RMSEps)
	s.output.mulVec(s.opts.Compute, seq.sc.h, out)
}

// store writes the key and value of position pos of layer li.
func (q *Seq) store(li, pos int, k, v []float32) {
	if q.kF16 != nil {
		f32ToF16(q.kF16[li][pos*len(k):(pos+1)*len(k)], k)
		f32ToF16(q.vF16[li][pos*len(v):(pos+1)*len(v)], v)
		return
	}
	copy(q.kF32[li][pos*len(k):], k)
	copy(q.vF32[li][pos*len(v):], v)
}

// key returns n cached key values of layer li from offset off, widening F16 into buf.
func (q *Seq) key(li, off, n int, buf []float32) []float32 {
	if q.kF16 != nil {
		f16ToF32(buf[:n], q.kF16[li][off:off+n])
		return buf[:n]
	}
	return q.kF32[li][off : off+n]
}

func (q *Seq) value(li, off, n int, buf []float32) []float32 {
	if q.vF16 != nil {
		f16ToF32(buf[:n], q.vF16[li][off:off+n])
		return buf[:n]
	}
	return q.vF32[li][off : off+n]
}

// scratch holds the per-token intermediate vectors of one sequence.
type scratch struct {
	x, h         []float32
	q, k, v, att []float32
	gate, up     []float32
	scores       []float32
	rope, kvRow  []float32
	acc16        []uint16
}

func newScratch(c Config, ctxLen int) scratch {
	return scratch{
		x:      make([]float32, c.NEmbd),
		h:      make([]float32, c.NEmbd),
		q:      make([]float32, c.NHead*c.HeadDimK),
		k:      make([]float32, c.NHeadKV*c.HeadDimK),
		v:      make([]float32, c.NHeadKV*c.HeadDimV),
		att:    make([]float32, c.NHead*c.HeadDimV),
		gate:   make([]float32, c.NFF),
		up:     make([]float32, c.NFF),
		scores: make([]float32, ctxLen),
		rope:   make([]float32, c.RopeDims),
		kvRow:  make([]float32, max(c.HeadDimK, c.HeadDimV)),
		acc16:  make([]uint16, c.HeadDimV),
	}
}
