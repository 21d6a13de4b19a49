package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/exo-nix/exo/netstack/transport"
	"github.com/exo-nix/exo/netstack/wire"
)

// stageInput is where a stage's frames come from. A middle or last stage reads its one input
// stream. The first stage takes the prompt from the driver's stream and every further token
// from the ring: the last stage's loop stream, or its own sampler when it is the only stage.
// Its two streams are each read ahead one frame by a goroutine of their own; the driver's
// stays watched throughout, since the driver ending it is what ends the request.
type stageInput struct {
	r   *request
	buf []byte // direct reads

	up, loop       chan inFrame
	upAck, loopAck chan struct{}
	ack            chan struct{} // of the frame handed out last: its buffer may be reused

	// The only stage's next token, sampled by itself.
	self     bool
	selfHdr  wire.Header
	selfTok  [4]byte
	selfPosn [1]int32
	selfShp  [1]uint32
}

// errEnded is next's answer once the request has ended (failed) elsewhere.
var errEnded = errors.New("pipeline: request ended")

type inFrame struct {
	hd  wire.Header
	p   []byte
	err error
}

// newStageInput sets up the input of r's stage; h is needed by a first stage of several,
// which waits for the last stage's loop stream.
func newStageInput(h *Host, r *request) *stageInput {
	in := &stageInput{r: r}
	if r.o.Stage != 0 {
		return in
	}
	in.up, in.upAck = make(chan inFrame), make(chan struct{}, 1)
	go in.pump(r.up, in.up, in.upAck)
	if len(r.o.Stages) > 1 {
		in.loop, in.loopAck = make(chan inFrame), make(chan struct{}, 1)
		go func() {
			rs, ok := h.claim(r.o.Request, opLoop, r.finished)
			if !ok {
				if !r.done() {
					r.fail(fmt.Sprintf("%s: the last stage's token stream did not arrive", stageName(r.o)))
				}
				return
			}
			if r.setLoop(rs.s) {
				in.pump(rs.s, in.loop, in.loopAck)
			}
		}()
	}
	return in
}

// pump reads s one frame ahead into out; after each frame it waits for ack, since the frame's
// buffer is reused for the next. Once the request has ended cleanly it drains what s still
// carries, so that the stream is released on both sides; a failed request's streams are
// cancelled with the reason instead, which closing s first would turn into a bare reset.
func (in *stageInput) pump(s transport.FrameStream, out chan<- inFrame, ack <-chan struct{}) {
	var buf []byte
	release := func() {
		if !in.r.failed.Load() {
			_ = s.CloseWrite()
			drainTokens(s)
		}
	}
	for {
		var f inFrame
		f.p, f.err = s.ReadFrame(&f.hd, buf)
		if f.err != nil && in.r.done() {
			return
		}
		select {
		case out <- f:
		case <-in.r.finished:
			if f.err == nil {
				release()
			}
			return
		}
		if f.err != nil {
			return
		}
		select {
		case <-ack:
		case <-in.r.finished:
			release()
			return
		}
		buf = f.p
	}
}

// next returns the stage's next input frame; fromRing is set for a token that came round the
// ring rather than from the driver.
func (in *stageInput) next(hd *wire.Header) (p []byte, fromRing bool, err error) {
	if in.up == nil {
		p, err = in.r.up.ReadFrame(hd, in.buf)
		in.buf = p
		return p, false, err
	}
	if in.ack != nil {
		in.ack <- struct{}{}
		in.ack = nil
	}
	if in.self {
		// The driver's stream first: it may have ended the request.
		select {
		case f := <-in.up:
			in.ack = in.upAck
			*hd = f.hd
			return f.p, false, f.err
		default:
		}
		in.self = false
		*hd = in.selfHdr
		return in.selfTok[:], true, nil
	}
	select {
	case f := <-in.up:
		in.ack = in.upAck
		*hd = f.hd
		return f.p, false, f.err
	case <-in.r.finished:
		return nil, false, errEnded
	case f := <-in.loop:
		in.ack = in.loopAck
		*hd = f.hd
		if errors.Is(f.err, io.EOF) {
			// The last stage ends the loop only after the request's end reached it, which
			// starts at the driver's stream: wait for that.
			in.loop = nil
			return in.next(hd)
		}
		return f.p, true, f.err
	}
}

// feedSelf queues the token the only stage sampled as its next input, at position pos.
func (in *stageInput) feedSelf(inst string, req uint64, step uint32, tok int32, pos int) {
	in.self = true
	in.selfPosn[0], in.selfShp[0] = int32(pos), 1
	binary.LittleEndian.PutUint32(in.selfTok[:], uint32(tok))
	in.selfHdr = wire.Header{Kind: wire.KindTokens, DType: wire.I32, Instance: inst, Request: req, Step: step,
		Positions: in.selfPosn[:], Shape: in.selfShp[:]}
}
