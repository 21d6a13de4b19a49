package model

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

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
	// f32ref), F16 (attention computed like llama.cpp's default F16 cache + flash attention) or
	// Q8_0 (keys and values as Q8_0 blocks, about half the memory of F16; see kvQ8).
	KVType ggml.Type
	// Threads is the number of cores the stage's matrix products and attention use; 0 means
	// kernels.DefaultThreads() (the physical cores). Stages with the same count share one pool.
	Threads int
	// Shards > 1 loads shard Shard of a tensor-parallel stage (shard.go): only its share of
	// every matrix's rows; the shards swap their parts through the stage's Exchanger.
	Shard, Shards int
}

func (o *Options) sharded() bool { return o.Shards > 1 }

func (o *Options) normalize() error {
	switch o.Compute {
	case "":
		o.Compute = ComputeNative
	case ComputeNative, ComputeF32:
	default:
		return fmt.Errorf("model: compute %q is not supported (native, f32 are)", o.Compute)
	}
	switch o.KVType {
	case ggml.F32, ggml.F16, ggml.Q8_0:
	default:
		return fmt.Errorf("model: KV cache type %s is not supported (F32, F16, Q8_0 are)", o.KVType)
	}
	if o.Threads < 0 {
		return fmt.Errorf("model: threads = %d is negative", o.Threads)
	}
	if o.Shards < 0 || o.Shard < 0 || (o.Shards > 1 && o.Shard >= o.Shards) || (o.Shards <= 1 && o.Shard != 0) {
		return fmt.Errorf("model: shard %d of %d is not a shard (0 <= shard < shards)", o.Shard, o.Shards)
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
	// kvK and kvV lay out a position's keys and values in a Q8_0 cache.
	kvK, kvV kvQ8

	weightBytes int64
	tensors     []string

	ex Exchanger // a sharded stage's link to its other shards
	// mirror (shard 0 of a group) hears of every sequence and batch first (shard.go); group
	// orders a sharded stage's passes and announcements, groupErr is the first failure to
	// announce, after which the group is out of step.
	mirror   Mirror
	group    sync.Mutex
	groupErr error
	nextID   atomic.Uint64

	pool   *kernels.Pool
	wsMu   sync.Mutex
	wsFree []*workspace // idle workspaces of ForwardBatch calls
}

// packWeights lets native compute move the weights out of the file mapping (loader.placeAll):
// the quantized types into the packed layout where the CPU has their kernels (kernels.Pack),
// the others as they are. Tests turn it off to compare with the file's own layout and mapping.
var packWeights = true

// LoadStage prepares layers [first, last) of f. It references only the tensors of that range
// (plus token_embd on the first stage and output_norm/output on the last), in place in the
// memory map; only 1-D norm and bias vectors are converted to float32 on the heap, and, in
// native compute on CPUs with the packed kernels, matrices of the packed types are copied into the
// packed layout (their mapped pages are dropped, so they are resident once).
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
	l := &loader{f: f, pack: packWeights && opts.Compute == ComputeNative, shard: opts.Shard, shards: opts.Shards}
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
			func() (e error) { ly.wq, e = l.part(p+"attn_q.weight", c.NEmbd, qDim); return },
			func() (e error) { ly.wk, e = l.part(p+"attn_k.weight", c.NEmbd, kvDimK); return },
			func() (e error) { ly.wv, e = l.part(p+"attn_v.weight", c.NEmbd, kvDimV); return },
			func() (e error) { ly.wo, e = l.part(p+"attn_output.weight", c.NHead*c.HeadDimV, c.NEmbd); return },
			func() (e error) { ly.ffnNorm, e = l.vector(p+"ffn_norm.weight", c.NEmbd); return },
			func() (e error) { ly.gate, e = l.part(p+"ffn_gate.weight", c.NEmbd, c.NFF); return },
			func() (e error) { ly.up, e = l.part(p+"ffn_up.weight", c.NEmbd, c.NFF); return },
			func() (e error) { ly.down, e = l.part(p+"ffn_down.weight", c.NFF, c.NEmbd); return },
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
		// A shard's classifier is its rows of token_embd, apart from the whole lookup table.
		if s.embd != nil && c.TiedEmbeddings && !opts.sharded() {
			s.output = s.embd
		} else if s.output, err = l.part(name, c.NEmbd, c.NVocab); err != nil {
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
	lookup := s.embd
	if s.output == s.embd {
		lookup = nil
	}
	packed := l.placeAll(lookup)
	s.kvK, s.kvV = newKVQ8(c.NHeadKV, c.HeadDimK), newKVQ8(c.NHeadKV, c.HeadDimV)
	s.weightBytes, s.tensors = l.bytes, l.names
	s.pool = kernels.SharedPool(opts.Threads)
	// Which form of a one-column kernel decodes faster here, and whether two or three
	// sequences decoding together share one padded pass of the four-column kernel, is
	// measured on the first model that holds enough of a type (kernels.TuneStreams, then
	// kernels.TunePadding, whose passes of one row each use the form chosen); results are the
	// same either way.
	kernels.TuneStreams(s.pool, packed)
	kernels.TunePadding(s.pool, packed)
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

	// Per layer, NHeadKV runs of ctxLen positions each (headAt): KV head h's position p at
	// (h·ctxLen + p) head widths. Attention reads one head's keys and values over all
	// positions, so each is one sequential run from memory; with a position's heads side by
	// side instead, every read strode past the other heads' (at a depth of 4096, from memory,
	// a head's keys and values took 2.5x as long: kernels' BenchmarkF16RowsDepth).
	kF32, vF32 [][]float32
	kF16, vF16 [][]uint16
	kQ8, vQ8   [][]byte // head widths of kvQ8.headBytes

	// Results of ForwardBatch, reused from call to call.
	hidOut, logOut []float32

	id    uint64 // unique within the stage: how a Mirror names the sequence
	freed bool
}

// NewSequence allocates a KV cache of ctxLen positions for the stage's layers. ctxLen <= 0 means
// the model's training context length.
func (s *Stage) NewSequence(ctxLen int) *Seq {
	if ctxLen <= 0 {
		ctxLen = s.Config.ContextLength
	}
	q := s.newSeq(ctxLen)
	s.announce(func(m Mirror) error { return m.NewSequence(q.id, ctxLen) })
	return q
}

func (s *Stage) newSeq(ctxLen int) *Seq {
	c := s.Config
	q := &Seq{stage: s, ctxLen: ctxLen, id: s.nextID.Add(1)}
	kd, vd := c.NHeadKV*c.HeadDimK, c.NHeadKV*c.HeadDimV
	for range s.layers {
		switch s.opts.KVType {
		case ggml.F16:
			q.kF16 = append(q.kF16, make([]uint16, ctxLen*kd))
			q.vF16 = append(q.vF16, make([]uint16, ctxLen*vd))
		case ggml.Q8_0:
			q.kQ8 = append(q.kQ8, make([]byte, ctxLen*s.kvK.rowBytes))
			q.vQ8 = append(q.vQ8, make([]byte, ctxLen*s.kvV.rowBytes))
		default:
			q.kF32 = append(q.kF32, make([]float32, ctxLen*kd))
			q.vF32 = append(q.vF32, make([]float32, ctxLen*vd))
		}
	}
	return q
}

// Len is the number of positions held in the cache (the next position to process).
func (q *Seq) Len() int { return q.n }

// Extend returns a sequence of ctxLen positions whose cache holds q's first keep positions,
// copied (a new request continuing an earlier one's tokens needs no prefill of them, even
// where it needs a longer context than q was made for). q is left as it was.
func (q *Seq) Extend(ctxLen, keep int) (*Seq, error) {
	if keep < 0 || keep > q.n || keep > ctxLen {
		return nil, fmt.Errorf("model: keep %d of %d cached positions in a context of %d", keep, q.n, ctxLen)
	}
	if q.freed {
		return nil, errFreed
	}
	r := q.stage.newSeq(ctxLen)
	q.stage.announce(func(m Mirror) error { return m.Extend(q.id, r.id, ctxLen, keep) })
	st := q.stage
	c := st.Config
	for li := range q.kF16 {
		copyHeads(r.kF16[li], q.kF16[li], c.NHeadKV, c.HeadDimK, r.ctxLen, q.ctxLen, keep)
		copyHeads(r.vF16[li], q.vF16[li], c.NHeadKV, c.HeadDimV, r.ctxLen, q.ctxLen, keep)
	}
	for li := range q.kQ8 {
		copyHeads(r.kQ8[li], q.kQ8[li], c.NHeadKV, st.kvK.headBytes, r.ctxLen, q.ctxLen, keep)
		copyHeads(r.vQ8[li], q.vQ8[li], c.NHeadKV, st.kvV.headBytes, r.ctxLen, q.ctxLen, keep)
	}
	for li := range q.kF32 {
		copyHeads(r.kF32[li], q.kF32[li], c.NHeadKV, c.HeadDimK, r.ctxLen, q.ctxLen, keep)
		copyHeads(r.vF32[li], q.vF32[li], c.NHeadKV, c.HeadDimV, r.ctxLen, q.ctxLen, keep)
	}
	r.n = keep
	return r, nil
}

// headAt is where KV head h's position pos starts in a layer's cache of ctxLen positions, in
// units of a head's width (see Seq).
func headAt(h, pos, ctxLen int) int { return h*ctxLen + pos }

// copyHeads copies the first keep positions of each of heads runs of width elements from a
// layer's cache of srcLen positions to one of dstLen.
func copyHeads[E any](dst, src []E, heads, width, dstLen, srcLen, keep int) {
	for h := 0; h < heads; h++ {
		d, s := headAt(h, 0, dstLen)*width, headAt(h, 0, srcLen)*width
		copy(dst[d:d+keep*width], src[s:s+keep*width])
	}
}

// ID names the sequence among its stage's.
func (q *Seq) ID() uint64 { return q.id }

// Free drops the sequence's cache; it may not be used again. Dropping a Seq without Free is
// enough on one node, but the other shards of a group (Stage.SetMirror) keep theirs until told.
func (q *Seq) Free() {
	if q.freed {
		return
	}
	q.freed = true
	q.kF32, q.vF32, q.kF16, q.vF16, q.kQ8, q.vQ8 = nil, nil, nil, nil, nil, nil
	q.stage.announce(func(m Mirror) error { return m.Free(q.id) })
}

var errFreed = fmt.Errorf("model: the sequence was freed")

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
// tail, as after Truncate). The whole batch goes through each layer together (one pass over the
// weights for all its tokens); every token's result equals its token-by-token evaluation.
func (s *Stage) Forward(seq *Seq, in Batch) (Out, error) {
	var outs [1]Out
	if err := s.ForwardBatch([]SeqBatch{{Seq: seq, Batch: in}}, outs[:]); err != nil {
		return Out{}, err
	}
	// Forward's results belong to the caller; ForwardBatch's stay with the sequence.
	return Out{Hidden: append([]float32(nil), outs[0].Hidden...), Logits: append([]float32(nil), outs[0].Logits...)}, nil
}

// check validates one sequence's batch and returns its number of positions.
func (s *Stage) check(seq *Seq, in Batch) (int, error) {
	c := s.Config
	if seq == nil || seq.stage != s {
		return 0, fmt.Errorf("model: sequence does not belong to this stage")
	}
	if seq.freed {
		return 0, errFreed
	}
	var n int
	if s.IsFirst() {
		if in.Hidden != nil {
			return 0, fmt.Errorf("model: first stage takes tokens, got hidden states")
		}
		n = len(in.Tokens)
		for i, t := range in.Tokens {
			if t < 0 || int(t) >= c.NVocab {
				return 0, fmt.Errorf("model: token %d at batch index %d is outside the vocabulary of %d", t, i, c.NVocab)
			}
		}
	} else {
		if in.Tokens != nil {
			return 0, fmt.Errorf("model: stage [%d,%d) takes hidden states, got tokens", s.First, s.Last)
		}
		if len(in.Hidden)%c.NEmbd != 0 {
			return 0, fmt.Errorf("model: hidden state length %d is not a multiple of n_embd %d", len(in.Hidden), c.NEmbd)
		}
		n = len(in.Hidden) / c.NEmbd
	}
	if n == 0 {
		return 0, fmt.Errorf("model: empty batch")
	}
	if in.Pos < 0 || in.Pos > seq.n {
		return 0, fmt.Errorf("model: batch starts at position %d but the sequence holds %d positions", in.Pos, seq.n)
	}
	if in.Pos+n > seq.ctxLen {
		return 0, fmt.Errorf("model: context full: positions %d..%d exceed the context length %d", in.Pos, in.Pos+n-1, seq.ctxLen)
	}
	return n, nil
}

// KVTypes names the KV cache types, as configuration and flags spell them.
var KVTypes = map[string]ggml.Type{"f16": ggml.F16, "f32": ggml.F32, "q8_0": ggml.Q8_0}

// ParseKVType reads a KV cache type name (f16, f32, q8_0; any case).
func ParseKVType(s string) (ggml.Type, error) {
	if t, ok := KVTypes[strings.ToLower(s)]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("KV cache type %q is not supported (f16, f32, q8_0 are)", s)
}
