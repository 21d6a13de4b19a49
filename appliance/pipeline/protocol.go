package pipeline

import (
	"encoding/json"
	"fmt"

	"github.com/exo-nix/exo/appliance/engine/sampler"
	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// Transport services of this package (netstack leaves 16 and up to the layers above).
const (
	// ServiceModels carries peer sharing of model files: HTTP/1.1 on the stream.
	ServiceModels transport.Service = 16
)

// Ops of the open message, the first frame of every data stream.
const (
	opForward = "forward" // a stage's input: tokens (first stage) or activations
	opReturn  = "return"  // the driver's stream to the last stage, which writes sampled tokens
	opLoop    = "loop"    // the last stage's stream to the first: each token the completion goes on with
	opHeader  = "header"  // asks for a model's GGUF header (tokenizer, template, config)
	opStatus  = "status"  // asks for the state of the stages this node hosts
)

// StageRef is one stage of the pipeline as the open message carries it.
type StageRef struct {
	Node   string `json:"node"`
	Name   string `json:"name,omitempty"`
	Addr   string `json:"addr"`
	Layers [2]int `json:"layers"`
}

func (s StageRef) String() string {
	name := s.Name
	if name == "" {
		name = s.Node
	}
	return fmt.Sprintf("%s [%d,%d)", name, s.Layers[0], s.Layers[1])
}

// protoVersion is the pipeline protocol this build speaks; an open message of another version
// is refused, so that nodes running different exo versions fail a request with a clear error
// instead of misreading each other (version 2: the last stage sends tokens round the ring).
// Version 3: requests keep their sequences and reuse kept ones (Keep, Reuse; prefix.go).
const protoVersion = 3

// openMsg is the first frame of a data stream.
type openMsg struct {
	Op       string     `json:"op"`
	Proto    int        `json:"proto"`
	Instance string     `json:"instance,omitempty"`
	Model    string     `json:"model,omitempty"`
	Request  uint64     `json:"request,omitempty"`
	Stage    int        `json:"stage,omitempty"`
	Stages   []StageRef `json:"stages,omitempty"`
	// CtxLen is the KV cache size of the request on every stage.
	CtxLen int `json:"ctx,omitempty"`
	// Prompt is the number of prompt tokens: the last stage samples once a frame reaches it.
	Prompt int `json:"prompt,omitempty"`
	// DType is the encoding of activations between stages.
	DType   string          `json:"dtype,omitempty"`
	Sampler *sampler.Params `json:"sampler,omitempty"`
	// EndTokens and MaxTokens (return stream) tell the last stage when a sampled token ends
	// the completion, so that it sends on round the ring only the tokens that continue it:
	// the end-of-generation ids (none when they are ignored) and the token limit (0: none).
	EndTokens []int32 `json:"end_tokens,omitempty"`
	MaxTokens int     `json:"max_tokens,omitempty"`
	// Shard is the shard of a tensor-parallel stage the stream is for (0: the stage itself);
	// Group lists the stage's nodes in shard order, and From is the shard that opened an
	// exchange stream.
	Shard int        `json:"shard,omitempty"`
	Group []StageRef `json:"group,omitempty"`
	From  int        `json:"from,omitempty"`
	// Keep names the request's sequence for later requests: every stage keeps it after a
	// clean end. Reuse names a kept sequence whose first ReuseLen positions the request
	// starts from; Release (= Reuse) lets the stages free that one once copied (prefix.go).
	Keep     uint64 `json:"keep,omitempty"`
	Reuse    uint64 `json:"reuse,omitempty"`
	ReuseLen int    `json:"reuse_len,omitempty"`
	Release  uint64 `json:"release,omitempty"`
}

// headerMsg answers opHeader; the header bytes follow in a Bytes frame.
type headerMsg struct {
	File string `json:"file"`
	Size int64  `json:"size"`
}

// logprobMsg precedes a token frame when the request asked for log-probabilities.
type logprobMsg struct {
	Logprob float32                `json:"logprob"`
	Top     []sampler.TokenLogprob `json:"top,omitempty"`
}

func writeJSON(s transport.FrameStream, req uint64, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h := wire.Header{Kind: wire.KindControl, DType: wire.Bytes, Request: req, Shape: []uint32{uint32(len(b))}}
	return s.WriteFrame(&h, b)
}

// readJSON reads one control frame into v.
func readJSON(s transport.FrameStream, v any) error {
	var h wire.Header
	p, err := s.ReadFrame(&h, nil)
	if err != nil {
		return err
	}
	if h.Kind != wire.KindControl {
		return fmt.Errorf("pipeline: expected a control frame, got %s", h.Kind)
	}
	if err := json.Unmarshal(p, v); err != nil {
		return fmt.Errorf("pipeline: malformed control message: %w", err)
	}
	return nil
}

// positions lists pos, pos+1, … pos+n-1.
func positions(pos, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(pos + i)
	}
	return out
}

// contiguous checks a frame's positions and returns the first one.
func contiguous(h *wire.Header, n int) (int, error) {
	if len(h.Positions) != n || n == 0 {
		return 0, fmt.Errorf("pipeline: frame of %d tokens carries %d positions", n, len(h.Positions))
	}
	for i, p := range h.Positions {
		if p != h.Positions[0]+int32(i) {
			return 0, fmt.Errorf("pipeline: frame positions %v are not consecutive", h.Positions)
		}
	}
	return int(h.Positions[0]), nil
}
