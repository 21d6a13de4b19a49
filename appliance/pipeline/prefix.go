package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/model"
)

// Reused prompt starts. A conversation sends its whole history with every turn; without reuse
// every stage would compute the history's keys and values again. The driver decides what the
// stages keep and reuse, since only it knows every token of a finished request (middle stages
// see activations, not tokens):
//
//   - every request's open message carries Keep, a key (the request id): on a clean end every
//     stage keeps the request's sequence under it instead of freeing it;
//   - the driver remembers, per instance, the tokens each kept sequence holds for certain (the
//     prompt and every sampled token but the last: each of those went through every stage);
//   - a new request whose prompt starts with enough of a kept sequence's tokens names it
//     (Reuse, ReuseLen): every stage starts from a copy of its first ReuseLen positions (and
//     frees the kept one when the new request continues all of it, Release), and the driver
//     sends the prompt from there.
//
// A stage that no longer holds the sequence (it evicted it, or loaded again) fails the request
// with errPrefixMiss's text before any token comes back; the driver forgets the entry and runs
// the request again without reuse. A stage keeps at most maxKept sequences of an instance and
// at most one context's worth of positions (what the placement reserved; kept sequences are
// copied to their length), dropping the least recently used.

// prefixMiss starts the reason a stage fails a request whose kept sequence it does not hold.
const prefixMiss = "prefix miss:"

// maxKept bounds the sequences a stage keeps per instance, and the entries a driver remembers.
const maxKept = 8

// minReuse is the shortest prompt start worth reusing.
const minReuse = 8

// keptWait bounds how long a request waits for the sequence it reuses to be kept: the driver
// knows a request ended before every stage has seen the end.
const keptWait = 2 * time.Second

// keptSeq is a finished request's sequence a stage keeps for later requests.
type keptSeq struct {
	mu   sync.Mutex // held while copying from seq, and to free it
	seq  *model.Seq
	used uint64
}

// startSequence returns the sequence a request starts from: a fresh one, or a copy of the kept
// sequence it reuses.
func (h *Host) startSequence(sl *slot, o *openMsg) (*model.Seq, error) {
	if o.Reuse == 0 {
		return sl.stage.NewSequence(o.CtxLen), nil
	}
	if o.ReuseLen <= 0 || o.ReuseLen >= o.Prompt || o.ReuseLen > o.CtxLen {
		return nil, fmt.Errorf("reuse of %d positions for a prompt of %d in a context of %d", o.ReuseLen, o.Prompt, o.CtxLen)
	}
	var k *keptSeq
	_ = h.waitFor(context.Background(), keptWait, func() (bool, <-chan struct{}) {
		k = sl.kept[o.Reuse]
		if k != nil {
			h.keptTick++
			k.used = h.keptTick
			if o.Release == o.Reuse {
				delete(sl.kept, o.Reuse)
				sl.keptCap -= k.seq.Cap()
			}
		}
		return k != nil, sl.keptChanged
	})
	if k == nil {
		return nil, fmt.Errorf("%s node %s does not hold sequence %x", prefixMiss, h.cfg.NodeName, o.Reuse)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seq.Len() < o.ReuseLen {
		return nil, fmt.Errorf("%s node %s holds %d positions of sequence %x, not %d", prefixMiss, h.cfg.NodeName, k.seq.Len(), o.Reuse, o.ReuseLen)
	}
	seq, err := k.seq.Extend(o.CtxLen, o.ReuseLen)
	if err != nil {
		// Dropped meanwhile (the sequence was freed): the driver runs the whole prompt.
		return nil, fmt.Errorf("%s node %s: %v", prefixMiss, h.cfg.NodeName, err)
	}
	if o.Release == o.Reuse {
		k.seq.Free()
	}
	sl.reused.Add(uint64(o.ReuseLen))
	return seq, nil
}

// keepSequence keeps a finished request's sequence under key, copied into one of its length
// (a request's sequence has room for its whole context, which would let one kept sequence
// take the whole budget); it returns the sequence the caller still owns, and false when the
// stage does not keep it (it is being unloaded, or the sequence alone exceeds the budget).
func (h *Host) keepSequence(sl *slot, key uint64, seq *model.Seq) (*model.Seq, bool) {
	if n := seq.Len(); n > 0 && n < seq.Cap() {
		if c, err := seq.Extend(n, n); err == nil {
			seq.Free()
			seq = c
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	budget := sl.keptBudget()
	if sl.retired || seq.Cap() > budget || sl.kept[key] != nil {
		return seq, false
	}
	h.keptTick++
	sl.kept[key] = &keptSeq{seq: seq, used: h.keptTick}
	sl.keptCap += seq.Cap()
	for sl.keptCap > budget || len(sl.kept) > maxKept {
		oldest := slices.MinFunc(slices.Collect(maps.Keys(sl.kept)), func(a, b uint64) int {
			return cmp.Compare(sl.kept[a].used, sl.kept[b].used)
		})
		h.dropKept(sl, oldest)
	}
	close(sl.keptChanged)
	sl.keptChanged = make(chan struct{})
	return seq, true
}

// dropKept frees a kept sequence (h.mu held).
func (h *Host) dropKept(sl *slot, key uint64) {
	k := sl.kept[key]
	delete(sl.kept, key)
	sl.keptCap -= k.seq.Cap()
	k.mu.Lock()
	k.seq.Free()
	k.mu.Unlock()
}

// keptBudget is the most positions (by capacity) a stage keeps for the instance: one context.
func (sl *slot) keptBudget() int {
	if sl.inst.Context > 0 {
		return sl.inst.Context
	}
	return sl.stage.Config.ContextLength
}
