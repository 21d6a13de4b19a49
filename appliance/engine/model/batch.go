package model

import (
	"fmt"
	"math"

	"github.com/exo-nix/exo/appliance/engine/ggml"
	"github.com/exo-nix/exo/appliance/engine/kernels"
)

// SeqBatch is one sequence's part of a ForwardBatch call: positions Batch.Pos.. of Seq.
type SeqBatch struct {
	Seq *Seq
	Batch
}

// maxStepTokens bounds the tokens evaluated together in one pass. Longer batches are cut into
// passes of this size: the work buffers stay a few tens of MB, and a pass over the weights
// already serves enough tokens that the weights are read from cache, not memory.
const maxStepTokens = 256

// ForwardBatch evaluates several sequences in one pass over the weights: all their positions go
// through each layer together (continuous batching of decode steps, batched prompt evaluation,
// or both at once), each with its own KV cache and positions. outs[i] receives item i's result
// as Forward would return it, but its slices belong to item i's sequence and stay valid until
// that sequence's next Forward or ForwardBatch; no allocation happens once the sequences and the
// stage have served a batch of the same size.
//
// Every item is validated before anything runs; a sequence may appear only once. Each token's
// result is bit-identical to evaluating it alone: batching changes the order of work, not the
// arithmetic.
func (s *Stage) ForwardBatch(items []SeqBatch, outs []Out) error {
	if len(outs) < len(items) {
		return fmt.Errorf("model: %d outputs for %d batches", len(outs), len(items))
	}
	if len(items) == 0 {
		return fmt.Errorf("model: empty batch")
	}
	if s.Sharded() && s.ex == nil {
		return fmt.Errorf("model: shard %d of %d has no exchanger", s.opts.Shard, s.opts.Shards)
	}
	if s.Sharded() || s.mirror != nil {
		// A group's passes and announcements go in one order on every shard.
		s.group.Lock()
		defer s.group.Unlock()
		if s.groupErr != nil {
			return s.groupErr
		}
	}
	ws := s.getWorkspace()
	defer s.putWorkspace(ws)
	ws.err = nil
	var err error
	if ws.n, err = s.checkBatch(items, ws.n[:0]); err != nil {
		return err
	}
	if s.mirror != nil {
		if err := s.mirror.Forward(items); err != nil {
			s.groupErr = fmt.Errorf("model: tell the other shards: %w", err)
			return s.groupErr
		}
	}
	c := s.Config
	for i := range items {
		it, n := &items[i], ws.n[i]
		switch {
		case !s.IsLast():
			it.Seq.hidOut = grow(it.Seq.hidOut, n*c.NEmbd)
			outs[i] = Out{Hidden: it.Seq.hidOut}
		case it.AllLogits:
			it.Seq.logOut = grow(it.Seq.logOut, n*c.NVocab)
			outs[i] = Out{Logits: it.Seq.logOut}
		default:
			it.Seq.logOut = grow(it.Seq.logOut, c.NVocab)
			outs[i] = Out{Logits: it.Seq.logOut}
		}
	}
	// Passes of at most maxStepTokens: every item contributes its next positions in order.
	ws.done = grow(ws.done, len(items))
	clear(ws.done)
	for {
		ws.toks = ws.toks[:0]
		budget := maxStepTokens
		for i := range items {
			k := min(ws.n[i]-ws.done[i], budget)
			for j := 0; j < k; j++ {
				ws.toks = append(ws.toks, tokRef{item: i, idx: ws.done[i] + j, pos: items[i].Pos + ws.done[i] + j})
			}
			budget -= k
		}
		if len(ws.toks) == 0 {
			return nil
		}
		s.pass(ws, items, outs)
		if ws.err != nil {
			s.groupErr = ws.err // the shards are out of step now
			return ws.err
		}
		for _, tk := range ws.toks {
			ws.done[tk.item] = tk.idx + 1
		}
	}
}

// checkBatch validates every item and appends each one's number of positions to n.
func (s *Stage) checkBatch(items []SeqBatch, n []int) ([]int, error) {
	for i := range items {
		k, err := s.check(items[i].Seq, items[i].Batch)
		if err != nil {
			if len(items) > 1 {
				return n, fmt.Errorf("batch item %d: %w", i, err)
			}
			return n, err
		}
		for j := 0; j < i; j++ {
			if items[j].Seq == items[i].Seq {
				return n, fmt.Errorf("model: batch items %d and %d use the same sequence", j, i)
			}
		}
		n = append(n, k)
	}
	return n, nil
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// tokRef is one position of a pass: batch item, index within the item's batch, position.
type tokRef struct{ item, idx, pos int }

// workspace holds the activations of one pass; a Stage keeps idle ones for reuse.
type workspace struct {
	n, done []int
	toks    []tokRef
	all     []tokRef // the whole pass while toks holds the last layer's kept tokens

	x, h, q, k, v, att, gate, up []float32   // tokens × width
	rope                         []float32   // tokens × RopeDims
	kvPad                        [][]float32 // per pool worker: one head padded to whole blocks (Q8_0 cache)
	acts                         [ggml.BF16 + 1][]byte
	actOK                        [ggml.BF16 + 1]bool // acts[t] holds the current group's input

	mm    kernels.MatMul
	quant quantJob
	attn  attnJob
	elem  elemJob
	seqs  []*Seq
	logit []float32 // logit rows of one output chunk
	outR  []int     // token of each logit row

	// A sharded stage's products of the current group and its exchange buffers (shard.go).
	parts         []shardPart
	send          []float32
	recv, recvBuf [][]float32
	err           error // the pass's first failure (an exchange)
}

func (s *Stage) getWorkspace() *workspace {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	if n := len(s.wsFree); n > 0 {
		ws := s.wsFree[n-1]
		s.wsFree = s.wsFree[:n-1]
		return ws
	}
	return &workspace{}
}

func (s *Stage) putWorkspace(ws *workspace) {
	ws.seqs = ws.seqs[:0]
	s.wsMu.Lock()
	s.wsFree = append(s.wsFree, ws)
	s.wsMu.Unlock()
}

// size makes every buffer fit nt tokens.
func (ws *workspace) size(c Config, nt, threads int) {
	ws.x = grow(ws.x, nt*c.NEmbd)
	ws.h = grow(ws.h, nt*c.NEmbd)
	ws.q = grow(ws.q, nt*c.NHead*c.HeadDimK)
	ws.k = grow(ws.k, nt*c.NHeadKV*c.HeadDimK)
	ws.v = grow(ws.v, nt*c.NHeadKV*c.HeadDimV)
	ws.att = grow(ws.att, nt*c.NHead*c.HeadDimV)
	ws.gate = grow(ws.gate, nt*c.NFF)
	ws.up = grow(ws.up, nt*c.NFF)
	ws.rope = grow(ws.rope, nt*c.RopeDims)
	ws.kvPad = grow(ws.kvPad, threads)
	for w := range ws.kvPad {
		ws.kvPad[w] = grow(ws.kvPad[w], max(c.HeadDimK, c.HeadDimV)+q8Elems)
	}
}

// logitRows is how many logit rows one output product computes at once: enough to share a
// pass over the classifier among a decode batch, few enough that AllLogits over a long prompt
// needs no vocabulary-sized buffer per token.
const logitRows = 16

// pass runs the tokens in ws.toks through the stage.
func (s *Stage) pass(ws *workspace, items []SeqBatch, outs []Out) {
	s.pool.Hold()
	defer s.pool.Release()
	c := s.Config
	nt := len(ws.toks)
	ws.size(c, nt, s.pool.Threads())
	ws.seqs = ws.seqs[:0]
	for i := range items {
		ws.seqs = append(ws.seqs, items[i].Seq)
	}
	for t, tk := range ws.toks {
		x := ws.x[t*c.NEmbd : (t+1)*c.NEmbd]
		in := &items[tk.item].Batch
		if s.IsFirst() {
			s.embd.rowF32(int(in.Tokens[tk.idx]), x)
		} else {
			copy(x, in.Hidden[tk.idx*c.NEmbd:(tk.idx+1)*c.NEmbd])
		}
		s.rope.Cache(tk.pos, ws.rope[t*c.RopeDims:(t+1)*c.RopeDims])
	}
	// Tokens are in position order per item, so each sequence ends at its last one (a batch that
	// starts before the end rewrites the tail, as after Truncate).
	for _, tk := range ws.toks {
		items[tk.item].Seq.n = tk.pos + 1
	}
	for li := range s.layers {
		if s.layerBatch(ws, items, li); ws.err != nil {
			return
		}
	}
	if !s.IsLast() {
		for t, tk := range ws.toks {
			copy(outs[tk.item].Hidden[tk.idx*c.NEmbd:], ws.x[t*c.NEmbd:(t+1)*c.NEmbd])
		}
		return
	}
	// Logits for the tokens that need them, logitRows at a time.
	ws.outR = ws.outR[:0]
	for t, tk := range ws.toks {
		if ws.needsLogits(items, tk) {
			ws.outR = append(ws.outR, t)
		}
	}
	for lo := 0; lo < len(ws.outR); lo += logitRows {
		rows := ws.outR[lo:min(lo+logitRows, len(ws.outR))]
		nr := len(rows)
		h := ws.h[:nr*c.NEmbd]
		for r, t := range rows {
			kernels.RMSNorm(h[r*c.NEmbd:(r+1)*c.NEmbd], ws.x[t*c.NEmbd:(t+1)*c.NEmbd], s.outNorm, c.RMSEps)
		}
		ws.logit = grow(ws.logit, nr*c.NVocab)
		ws.begin()
		s.addProduct(ws, s.output, h, nr, ws.logit)
		ws.mm.Run(s.pool)
		if !s.exchange(ws, nr, 0) {
			return
		}
		for r, t := range rows {
			tk := ws.toks[t]
			dst := outs[tk.item].Logits
			if items[tk.item].AllLogits {
				dst = dst[tk.idx*c.NVocab:]
			}
			copy(dst[:c.NVocab], ws.logit[r*c.NVocab:(r+1)*c.NVocab])
		}
	}
	if len(ws.all) > 0 {
		// The last layer kept only the tokens that need logits (keepOutputTokens); the caller
		// advances every item by the whole pass.
		ws.toks, ws.all = ws.all, ws.toks[:0]
	}
}

// needsLogits reports whether the last stage returns logits for token tk: every position of an
// AllLogits item, else only an item's last.
func (ws *workspace) needsLogits(items []SeqBatch, tk tokRef) bool {
	return items[tk.item].AllLogits || tk.idx == ws.n[tk.item]-1
}

// keepOutputTokens drops from the pass the tokens whose last-layer output nobody reads: on the
// last stage's last layer, once their keys and values are in the cache, only the tokens that
// need logits go on through attention, the output projection and the feed-forward block. For a
// prompt that is all but one of its tokens: a 128-token prompt spends one layer's worth of
// products less (llama.cpp does the same with its output ids). Each kept token's rows move to
// the front of x and q; ws.all keeps the whole pass for the caller. It returns the tokens left.
func (ws *workspace) keepOutputTokens(c Config, items []SeqBatch) int {
	nt := len(ws.toks)
	kept := 0
	for _, tk := range ws.toks {
		if ws.needsLogits(items, tk) {
			kept++
		}
	}
	if kept == nt {
		return nt
	}
	ws.all = append(ws.all[:0], ws.toks...)
	E, qd := c.NEmbd, c.NHead*c.HeadDimK
	ws.toks = ws.toks[:0]
	for t, tk := range ws.all {
		if !ws.needsLogits(items, tk) {
			continue
		}
		if k := len(ws.toks); k != t {
			copy(ws.x[k*E:(k+1)*E], ws.x[t*E:(t+1)*E])
			copy(ws.q[k*qd:(k+1)*qd], ws.q[t*qd:(t+1)*qd])
		}
		ws.toks = append(ws.toks, tk)
	}
	return kept
}

// begin starts a group of products over one input.
func (ws *workspace) begin() {
	ws.mm.Ops = ws.mm.Ops[:0]
	ws.parts = ws.parts[:0]
	ws.actOK = [ggml.BF16 + 1]bool{}
}

// addProduct queues out = m · x for nt rows of x (m.cols wide) in ws.mm. In native compute the
// rows are converted to m's activation type once per group (ws.actOK), so products of a group
// that share a type (q, k, v; gate, up) share the conversion. All products of a group take the
// same x.
//
// A sharded stage's matrix computes its own rows of out (m.off on) and is listed in ws.parts for
// the exchange.
func (s *Stage) addProduct(ws *workspace, m *matrix, x []float32, nt int, out []float32) {
	if s.Sharded() {
		ws.parts = append(ws.parts, shardPart{out: out, full: m.full})
		if m.rows == 0 {
			return
		}
	}
	op := kernels.MatMulOp{Type: m.typ, W: m.data, Packed: m.packed, Rows: m.rows, Cols: m.cols, N: nt, Out: out[m.off:], OutStride: m.full}
	if s.opts.Compute == ComputeF32 {
		op.X, op.XStride = x, m.cols
	} else {
		at := kernels.VecDotType(m.typ)
		stride := rowSize(at, m.cols)
		if !ws.actOK[at] {
			ws.acts[at] = grow(ws.acts[at], nt*stride)
			ws.quant = quantJob{t: m.typ, x: x, cols: m.cols, dst: ws.acts[at], stride: stride}
			s.pool.For(nt, 1, &ws.quant)
			ws.actOK[at] = true
		}
		op.Act, op.ActStride = ws.acts[at], stride
	}
	ws.mm.Ops = append(ws.mm.Ops, op)
}

func rowSize(t ggml.Type, n int) int {
	rb, err := t.RowSize(int64(n))
	if err != nil {
		panic(fmt.Sprintf("model: %v", err)) // shapes were validated at load
	}
	return int(rb)
}

// quantJob converts rows of activations in parallel.
type quantJob struct {
	t      ggml.Type
	x      []float32
	cols   int
	dst    []byte
	stride int
}

func (j *quantJob) Range(_, lo, hi int) {
	for r := lo; r < hi; r++ {
		kernels.QuantizeActivations(j.t, j.x[r*j.cols:(r+1)*j.cols], j.dst[r*j.stride:(r+1)*j.stride:(r+1)*j.stride])
	}
}

// layerBatch runs transformer block li over every token of the pass.
func (s *Stage) layerBatch(ws *workspace, items []SeqBatch, li int) {
	c, ly := s.Config, &s.layers[li]
	nt := len(ws.toks)
	E := c.NEmbd
	h := ws.h[:nt*E]

	s.elementwise(ws, li, elemAttnNorm, nt)
	ws.begin()
	s.addProduct(ws, ly.wq, h, nt, ws.q)
	s.addProduct(ws, ly.wk, h, nt, ws.k)
	s.addProduct(ws, ly.wv, h, nt, ws.v)
	ws.mm.Run(s.pool)
	if !s.exchange(ws, nt, -1) {
		return
	}
	s.elementwise(ws, li, elemQKV, nt)
	if s.IsLast() && li == len(s.layers)-1 {
		if nt = ws.keepOutputTokens(c, items); nt == 0 {
			return // a pass of a prompt's first tokens: only their keys and values count
		}
	}
	ws.attn.prepare(s, ws, li)
	s.pool.For(ws.attn.units(), 0, &ws.attn)

	ws.begin()
	s.addProduct(ws, ly.wo, ws.att[:nt*c.NHead*c.HeadDimV], nt, ws.h[:nt*E])
	ws.mm.Run(s.pool)
	if !s.exchange(ws, nt, -1) {
		return
	}
	s.elementwise(ws, li, elemAdd, nt)

	s.elementwise(ws, li, elemFFNNorm, nt)
	ws.begin()
	gate, up := ws.gate[:nt*c.NFF], ws.up[:nt*c.NFF]
	s.addProduct(ws, ly.gate, ws.h[:nt*E], nt, gate)
	s.addProduct(ws, ly.up, ws.h[:nt*E], nt, up)
	ws.mm.Run(s.pool)
	if s.Sharded() {
		s.shardGLU(ws, nt)
		ws.parts = ws.parts[:1] // gate, which holds the activation now
		if !s.exchange(ws, nt, -1) {
			return
		}
	} else {
		s.elementwise(ws, li, elemGLU, nt)
	}
	ws.begin()
	s.addProduct(ws, ly.down, gate, nt, ws.h[:nt*E])
	ws.mm.Run(s.pool)
	if !s.exchange(ws, nt, -1) {
		return
	}
	s.elementwise(ws, li, elemAdd, nt)
}

// The per-token and per-element steps of a block (elementwise): the norms before attention
// and the feed-forward block; the queries' and keys' bias, norms and rotation and the cache
// write; the residual add; the gated activation of the feed-forward block.
const (
	elemAttnNorm = iota
	elemQKV
	elemAdd
	elemFFNNorm
	elemGLU
)

// elemChunk is how many elements one unit of the residual add and the gated activation takes
// (a multiple of every SIMD width, so each element is computed as in one call over all).
const elemChunk = 4096

// elemParallelMin is the pass size (tokens) from which elementwise steps run on the pool: done
// by one core, they cost a few percent of a prompt pass at one thread and a fifth of it at
// sixteen; a decode step's are too small to hand out, except the gated activation's below.
const elemParallelMin = 16

// A smaller pass runs its gated activation on the pool, in units of gluDecodeChunk elements,
// once the pool has gluParallelThreads workers. Its inputs are the gate and up products, which
// the workers left in their own caches: one core pulling them over took 23 µs a layer (4.5% of
// a decode step) on a 16-thread Xeon, where a For costs about 5 µs.
const (
	gluDecodeChunk     = 512
	gluParallelThreads = 4
)

// elemJob is one elementwise step of layer li over the pass's first nt tokens.
type elemJob struct {
	s      *Stage
	ws     *workspace
	li, op int
	nt     int
	chunk  int // elements per unit of the add and the gated activation
}

// elementwise runs step op of layer li over the pass's first nt tokens, on the pool when the
// pass is large. Each token's and element's arithmetic is the same however the work is split.
func (s *Stage) elementwise(ws *workspace, li, op, nt int) {
	ws.elem = elemJob{s: s, ws: ws, li: li, op: op, nt: nt, chunk: elemChunk}
	parallel := nt >= elemParallelMin
	if op == elemGLU && !parallel && s.pool.Threads() >= gluParallelThreads {
		ws.elem.chunk, parallel = gluDecodeChunk, true
	}
	units := nt
	switch op {
	case elemAdd:
		units = (nt*s.Config.NEmbd + ws.elem.chunk - 1) / ws.elem.chunk
	case elemGLU:
		units = (nt*s.Config.NFF + ws.elem.chunk - 1) / ws.elem.chunk
	}
	if !parallel {
		ws.elem.Range(0, 0, units)
		return
	}
	s.pool.For(units, 1, &ws.elem)
}

func (j *elemJob) Range(worker, lo, hi int) {
	s, ws := j.s, j.ws
	c, ly := s.Config, &s.layers[j.li]
	E := c.NEmbd
	switch j.op {
	case elemAttnNorm, elemFFNNorm:
		w := ly.attnNorm
		if j.op == elemFFNNorm {
			w = ly.ffnNorm
		}
		for t := lo; t < hi; t++ {
			kernels.RMSNorm(ws.h[t*E:(t+1)*E], ws.x[t*E:(t+1)*E], w, c.RMSEps)
		}
	case elemQKV:
		for t := lo; t < hi; t++ {
			s.qkvToken(ws, ly, j.li, t, ws.kvPad[worker])
		}
	case elemAdd:
		a, b := lo*j.chunk, min(hi*j.chunk, j.nt*E)
		kernels.Add(ws.x[a:b], ws.x[a:b], ws.h[a:b])
	case elemGLU:
		a, b := lo*j.chunk, min(hi*j.chunk, j.nt*c.NFF)
		gate, up := ws.gate[a:b], ws.up[a:b]
		if s.opts.Compute == ComputeF32 {
			kernels.SiLU(gate, gate)
		} else {
			// ggml's own SiLU uses a vectorised float32 exp, not a correctly rounded one.
			kernels.SiLUFast(gate, gate)
		}
		kernels.Mul(gate, gate, up)
	}
}

// qkvToken finishes token t's query, key and value after their products (bias, norms,
// rotation) and writes the key and value to its sequence's cache.
func (s *Stage) qkvToken(ws *workspace, ly *layer, li, t int, pad []float32) {
	c := s.Config
	qd, kd, vd := c.NHead*c.HeadDimK, c.NHeadKV*c.HeadDimK, c.NHeadKV*c.HeadDimV
	q, k, v := ws.q[t*qd:(t+1)*qd], ws.k[t*kd:(t+1)*kd], ws.v[t*vd:(t+1)*vd]
	if ly.bq != nil {
		kernels.Add(q, q, ly.bq)
		kernels.Add(k, k, ly.bk)
		kernels.Add(v, v, ly.bv)
	}
	if ly.qNorm != nil {
		for hh := 0; hh < c.NHead; hh++ {
			qh := q[hh*c.HeadDimK : (hh+1)*c.HeadDimK]
			kernels.RMSNorm(qh, qh, ly.qNorm, c.RMSEps)
		}
		for hh := 0; hh < c.NHeadKV; hh++ {
			kh := k[hh*c.HeadDimK : (hh+1)*c.HeadDimK]
			kernels.RMSNorm(kh, kh, ly.kNorm, c.RMSEps)
		}
	}
	rc := ws.rope[t*c.RopeDims : (t+1)*c.RopeDims]
	s.rope.Apply(q, c.HeadDimK, rc)
	s.rope.Apply(k, c.HeadDimK, rc)
	tk := ws.toks[t]
	ws.seqs[tk.item].store(li, tk.pos, k, v, pad)
}

// store writes the key and value of position pos of layer li (all KV heads of each, head after
// head) into the cache's runs by head (see Seq); pad is scratch for the Q8_0 cache.
func (q *Seq) store(li, pos int, k, v, pad []float32) {
	c := q.stage.Config
	if q.kQ8 != nil {
		q.stage.kvK.store(q.kQ8[li], q.ctxLen, pos, k, pad)
		q.stage.kvV.store(q.vQ8[li], q.ctxLen, pos, v, pad)
		return
	}
	dk, dv := c.HeadDimK, c.HeadDimV
	for h := 0; h < c.NHeadKV; h++ {
		ko, vo := headAt(h, pos, q.ctxLen)*dk, headAt(h, pos, q.ctxLen)*dv
		if q.kF16 != nil {
			kernels.ToF16(q.kF16[li][ko:ko+dk], k[h*dk:(h+1)*dk])
			kernels.ToF16(q.vF16[li][vo:vo+dv], v[h*dv:(h+1)*dv])
			continue
		}
		copy(q.kF32[li][ko:ko+dk], k[h*dk:(h+1)*dk])
		copy(q.vF32[li][vo:vo+dv], v[h*dv:(h+1)*dv])
	}
}

// attnJob computes causal grouped-query attention for (token, head) units of one layer, or for
// (token, group of heads) units where the F16 or Q8_0 cache's group kernels serve several
// query heads that share a KV head with one pass over its keys and values (group > 1).
type attnJob struct {
	s     *Stage
	ws    *workspace
	li    int
	scale float32
	group int           // query heads a unit takes
	work  []attnScratch // per pool worker
}

type attnScratch struct {
	scores  []float32
	expw    []float32 // a block's softmax factors (softmaxFactors), then its weights
	rescale []float32 // a block's rescaling factors of the value sum
	q16     []uint16  // a unit's query heads in F16
	acc16   []uint16  // their value sums
	// Q8_0 cache: the padded query head, its Q8_0 blocks, the float32 value sum.
	pad   []float32
	q8    []byte
	acc32 []float32
}

func (j *attnJob) prepare(s *Stage, ws *workspace, li int) {
	c := s.Config
	j.s, j.ws, j.li = s, ws, li
	j.scale = float32(1 / math.Sqrt(float64(c.HeadDimK)))
	// Scores are sized for the longest context of the pass's sequences, not its positions, so a
	// decoding sequence does not grow them step by step.
	maxPos := 0
	for _, q := range ws.seqs {
		maxPos = max(maxPos, q.ctxLen)
	}
	// Groups of heads only where there are units enough to keep every thread busy (a decode
	// step on many threads keeps one head a unit).
	j.group = 1
	g := 1
	switch s.opts.KVType {
	case ggml.F16:
		g = kernels.F16Group()
	case ggml.Q8_0:
		g = kernels.Q8Group()
	}
	if groupHeads && g > 1 && g <= maxHeadGroup && (c.NHead/c.NHeadKV)%g == 0 && len(ws.toks)*c.NHead/g >= 2*s.pool.Threads() {
		j.group = g
	}
	for len(j.work) < s.pool.Threads() {
		j.work = append(j.work, attnScratch{})
	}
	for w := range j.work {
		sc := &j.work[w]
		sc.scores = grow(sc.scores, max(maxPos, j.group*attnBlock))
		sc.expw = grow(sc.expw, j.group*attnBlock)
		sc.rescale = grow(sc.rescale, j.group*attnBlock)
		sc.q16 = grow(sc.q16, j.group*c.HeadDimK)
		sc.acc16 = grow(sc.acc16, j.group*c.HeadDimV)
		if s.opts.KVType == ggml.Q8_0 {
			sc.pad = grow(sc.pad, s.kvK.padded())
			sc.q8 = grow(sc.q8, j.group*s.kvK.headBytes)
			sc.acc32 = grow(sc.acc32, j.group*c.HeadDimV)
		}
	}
}

// units is the number of units of the job's pass.
func (j *attnJob) units() int { return len(j.ws.toks) * j.s.Config.NHead / j.group }

func (j *attnJob) Range(worker, lo, hi int) {
	c := j.s.Config
	ws := j.ws
	if g := j.group; g > 1 {
		per := c.NHead / g
		for u := lo; u < hi; u++ {
			t, h := u/per, u%per*g
			tk := ws.toks[t]
			qo, oo := (t*c.NHead+h)*c.HeadDimK, (t*c.NHead+h)*c.HeadDimV
			seq, qs, outs := ws.seqs[tk.item], ws.q[qo:qo+g*c.HeadDimK], ws.att[oo:oo+g*c.HeadDimV]
			if seq.kQ8 != nil {
				j.headsQ8(&j.work[worker], seq, h, g, tk.pos, qs, outs)
			} else {
				j.headsF16(&j.work[worker], seq, h, g, tk.pos, qs, outs)
			}
		}
		return
	}
	for u := lo; u < hi; u++ {
		t, h := u/c.NHead, u%c.NHead
		tk := ws.toks[t]
		seq := ws.seqs[tk.item]
		q := ws.q[t*c.NHead*c.HeadDimK+h*c.HeadDimK : t*c.NHead*c.HeadDimK+(h+1)*c.HeadDimK]
		out := ws.att[t*c.NHead*c.HeadDimV+h*c.HeadDimV : t*c.NHead*c.HeadDimV+(h+1)*c.HeadDimV]
		switch {
		case seq.kQ8 != nil:
			j.headQ8(&j.work[worker], seq, h, tk.pos, q, out)
		case seq.kF16 != nil:
			j.headF16(&j.work[worker], seq, h, tk.pos, q, out)
		default:
			j.headF32(&j.work[worker], seq, h, tk.pos, q, out)
		}
	}
}

// headF32 is attention over the F32 cache with ggml's fp32 arithmetic (the goldens' f32ref):
// scores, a softmax summed in float64, and the weighted sum of values.
func (j *attnJob) headF32(sc *attnScratch, seq *Seq, h, pos int, q, out []float32) {
	c, li := j.s.Config, j.li
	kvh := h / (c.NHead / c.NHeadKV)
	scores := sc.scores[:pos+1]
	keys, vals := seq.kF32[li], seq.vF32[li]
	for t := 0; t <= pos; t++ {
		o := headAt(kvh, t, seq.ctxLen) * c.HeadDimK
		scores[t] = kernels.DotF32(q, keys[o:o+c.HeadDimK]) * j.scale
	}
	kernels.Softmax(scores)
	clear(out)
	for t := 0; t <= pos; t++ {
		o := headAt(kvh, t, seq.ctxLen) * c.HeadDimV
		axpy(out, scores[t], vals[o:o+c.HeadDimV])
	}
}

// headF16 is attention over the F16 cache computed the way llama.cpp's CPU flash attention
// does (its default configuration): the query is rounded to F16, scores are F16 dot products
// with float32 sums, and the softmax is computed online with the value sum accumulated in F16.
// Only its exponentials differ: ExpFast's, a block of positions at a time (softmaxFactors).
// attnBlock is how many positions attention scores at a time, so that their exponentials are
// computed together by ExpFast instead of one math.Exp per position, which cost a third of
// the time of a decode step at a depth of 2048. Each block costs a few calls and the queries'
// widening besides: 128 positions a block took four heads over 1024 positions 1.03-1.05x
// faster than 64 (BenchmarkAttentionHead/F16/group), 256 no faster than 128. The block does not
// change the arithmetic, which runs position by position.
const attnBlock = 128

// softmaxFactors prepares a block of scores s for the online softmax's sequential update, with
// m the running maximum before the block: e[i] becomes exp(max_before_i - s[i]) where s[i]
// raises the running maximum (the factor that rescales what was summed so far), and
// exp(s[i] - max_before_i) otherwise (the position's weight). Below exp(-87) a factor is
// exp(-87), which adds nothing beside the weight 1 of the maximum.
func softmaxFactors(s, e []float32, m float32) {
	e = e[:len(s)]
	// Most blocks past the first raise no maximum: then every factor is a weight, v - m.
	if !kernels.SubBelow(e, s, m) {
		for i, v := range s {
			if v > m {
				e[i], m = m-v, v
			} else {
				e[i] = v - m
			}
		}
	}
	kernels.ExpFast(e, e)
}

// onlineWeights turns a block of scores s into the online softmax's steps, with m and sum the
// running maximum and weight sum before the block: w[i] becomes position i's weight and ms[i]
// the factor that rescales what was summed before it (1 unless s[i] raised the maximum). It
// returns the maximum and sum after the block.
func onlineWeights(s, w, ms []float32, m, sum float32) (float32, float32) {
	softmaxFactors(s, w, m)
	for i, v := range s {
		m, sum = onlineStep(v, &w[i], &ms[i], m, sum)
	}
	return m, sum
}

// onlineStep is onlineWeights' step for one position of score v, its softmax factor at w.
func onlineStep(v float32, w, ms *float32, m, sum float32) (float32, float32) {
	if v > m {
		*ms, *w = *w, 1
		return v, sum*(*ms) + *w
	}
	// sum·1 + w, without the multiply's latency in the chain of adds.
	*ms = 1
	return m, sum + *w
}

// onlineWeights4 is onlineWeights for four queries' blocks of n scores (query j's at
// s[j*n:(j+1)*n], its weights and factors likewise in w and ms, its running maximum and sum
// in m[j] and sum[j]). Each query's arithmetic is onlineWeights'; taking the four side by side
// lets their chains of adds overlap, where one query after another waited on each add.
func onlineWeights4(n int, s, w, ms []float32, m, sum *[maxHeadGroup]float32) {
	for j := 0; j < 4; j++ {
		softmaxFactors(s[j*n:(j+1)*n], w[j*n:(j+1)*n], m[j])
	}
	s0, s1, s2, s3 := s[:n], s[n:2*n], s[2*n:3*n], s[3*n:4*n]
	w0, w1, w2, w3 := w[:n], w[n:2*n], w[2*n:3*n], w[3*n:4*n]
	f0, f1, f2, f3 := ms[:n], ms[n:2*n], ms[2*n:3*n], ms[3*n:4*n]
	m0, m1, m2, m3 := m[0], m[1], m[2], m[3]
	u0, u1, u2, u3 := sum[0], sum[1], sum[2], sum[3]
	for i := range s0 {
		m0, u0 = onlineStep(s0[i], &w0[i], &f0[i], m0, u0)
		m1, u1 = onlineStep(s1[i], &w1[i], &f1[i], m1, u1)
		m2, u2 = onlineStep(s2[i], &w2[i], &f2[i], m2, u2)
		m3, u3 = onlineStep(s3[i], &w3[i], &f3[i], m3, u3)
	}
	*m = [maxHeadGroup]float32{m0, m1, m2, m3}
	*sum = [maxHeadGroup]float32{u0, u1, u2, u3}
}

func (j *attnJob) headF16(sc *attnScratch, seq *Seq, h, pos int, q, out []float32) {
	c, li := j.s.Config, j.li
	kvh := h / (c.NHead / c.NHeadKV)
	keys, vals := seq.kF16[li], seq.vF16[li]
	q16, acc := sc.q16, sc.acc16
	kernels.ToF16(q16, q)
	clear(acc)
	m, sum := float32(math.Inf(-1)), float32(0)
	for t0 := 0; t0 <= pos; t0 += attnBlock {
		n := min(attnBlock, pos+1-t0)
		s, e, ms := sc.scores[:n], sc.expw[:n], sc.rescale[:n]
		ko := headAt(kvh, t0, seq.ctxLen) * c.HeadDimK
		kernels.DotF16Rows(s, q16, keys[ko:], c.HeadDimK, j.scale)
		m, sum = onlineWeights(s, e, ms, m, sum)
		vo := headAt(kvh, t0, seq.ctxLen) * c.HeadDimV
		kernels.MadF16Rows(acc, vals[vo:], c.HeadDimV, ms, e)
	}
	kernels.FromF16(out, acc[:len(out)])
	kernels.Scale(out, 1/sum)
}

// headsF16 is headF16 for the g query heads h0.. of one KV head at once (their queries in qs,
// their outputs to outs, head after head): each block of keys and values is read once for all
// of them (kernels.DotF16RowsGroup, MadF16RowsGroup), and each head's arithmetic is headF16's.
func (j *attnJob) headsF16(sc *attnScratch, seq *Seq, h0, g, pos int, qs, outs []float32) {
	c, li := j.s.Config, j.li
	kvh := h0 / (c.NHead / c.NHeadKV)
	keys, vals := seq.kF16[li], seq.vF16[li]
	q16, acc := sc.q16[:g*c.HeadDimK], sc.acc16[:g*c.HeadDimV]
	kernels.ToF16(q16, qs)
	clear(acc)
	sum := groupBlocks(sc, g, pos, func(s []float32, t0 int) {
		kernels.DotF16RowsGroup(s, g, q16, keys[headAt(kvh, t0, seq.ctxLen)*c.HeadDimK:], c.HeadDimK, j.scale)
	}, func(ms, e []float32, t0 int) {
		kernels.MadF16RowsGroup(acc, g, vals[headAt(kvh, t0, seq.ctxLen)*c.HeadDimV:], c.HeadDimV, ms, e)
	})
	// The value sums widened at once (a table lookup each cost 2% of a step of eight sequences
	// at short contexts), then scaled: the same products as one value at a time.
	kernels.FromF16(outs[:g*c.HeadDimV], acc)
	for i := 0; i < g; i++ {
		kernels.Scale(outs[i*c.HeadDimV:(i+1)*c.HeadDimV], 1/sum[i])
	}
}

// groupBlocks runs a group of g query heads' online softmax over positions 0..pos a block at
// a time: score fills the block's g·n scores (query after query) for the block at t0, add
// takes its rescaling factors and weights into the value sums. It returns each query's sum of
// weights.
func groupBlocks(sc *attnScratch, g, pos int, score func(s []float32, t0 int), add func(ms, e []float32, t0 int)) [maxHeadGroup]float32 {
	var m, sum [maxHeadGroup]float32
	for i := range m {
		m[i] = float32(math.Inf(-1))
	}
	for t0 := 0; t0 <= pos; t0 += attnBlock {
		n := min(attnBlock, pos+1-t0)
		s, e, ms := sc.scores[:g*n], sc.expw[:g*n], sc.rescale[:g*n]
		score(s, t0)
		groupWeights(g, n, s, e, ms, &m, &sum)
		add(ms, e, t0)
	}
	return sum
}

// groupWeights is onlineWeights for each of g queries' blocks of n scores (laid out as
// onlineWeights4 takes them), four at once where g is 4.
func groupWeights(g, n int, s, w, ms []float32, m, sum *[maxHeadGroup]float32) {
	if g == 4 {
		onlineWeights4(n, s, w, ms, m, sum)
		return
	}
	for i := 0; i < g; i++ {
		m[i], sum[i] = onlineWeights(s[i*n:(i+1)*n], w[i*n:(i+1)*n], ms[i*n:(i+1)*n], m[i], sum[i])
	}
}

// maxHeadGroup bounds the query heads headsF16 and headsQ8 take (kernels.F16Group, Q8Group).
const maxHeadGroup = 4

// groupHeads lets attention take a KV head's query heads together (tests turn it off to
// compare with one head at a time).
var groupHeads = true
