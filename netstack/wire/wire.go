// Package wire is the versioned frame format that carries activations, tokens and control messages
// between nodes. A frame is a small little-endian header followed by its payload:
//
//	off  size  field
//	  0     4  magic "EXOT"
//	  4     2  version (Version)
//	  6     1  kind (Kind)
//	  7     1  dtype (DType)
//	  8     4  header length in bytes, this fixed part and the variable part below
//	 12     1  instance id length (bytes)
//	 13     1  number of shape dims (at most MaxDims)
//	 14     1  number of parts (0: the payload follows on this stream; see Header.Parts)
//	 15     1  flags (zero in version 1)
//	 16     8  request id
//	 24     4  step
//	 28     4  number of token positions
//	 32     8  payload length in bytes
//	 40        instance id, shape dims (uint32 each), positions (int32 each), parts (uint64 each)
//
// The payload is written straight from the caller's slice (WriteFrame) and read straight into the
// caller's buffer (ReadFrame), so an F32 activation crosses the wire without being marshalled.
// Nodes speaking another version are refused with a *VersionError that names both versions.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the wire format this build speaks. Bump it on any incompatible change.
const Version uint16 = 1

// Magic starts every frame; a stream that does not start with it is not an exo tensor stream.
var Magic = [4]byte{'E', 'X', 'O', 'T'}

// Limits that protect a reader from a corrupt or hostile header.
const (
	FixedHeaderSize = 40
	MaxDims         = 8
	MaxParts        = 16
	MaxInstanceLen  = 255
	// MaxPositions bounds the position list (a prompt of this many tokens in one frame).
	MaxPositions = 1 << 20
	// MaxPayload bounds one frame's payload (4 GiB): larger transfers are split by the sender.
	MaxPayload = 1 << 32
	// coalesceLimit: payloads up to this size are copied behind the header and sent with one
	// write, because one packet beats two for a decode-step activation (a few KB); larger ones
	// are written from the caller's slice.
	coalesceLimit = 16 << 10
)

// Kind says what a frame carries.
type Kind uint8

// Frame kinds.
const (
	// KindActivations: hidden states flowing from one pipeline stage to the next.
	KindActivations Kind = 1
	// KindTokens: sampled token ids (DType I32) going round the ring or to the API node.
	KindTokens Kind = 2
	// KindControl: an opaque control message for the layer above (DType Bytes).
	KindControl Kind = 3
	// KindAbort: the sender gave up on this stream; the payload is a UTF-8 reason (DType Bytes).
	KindAbort Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindActivations:
		return "activations"
	case KindTokens:
		return "tokens"
	case KindControl:
		return "control"
	case KindAbort:
		return "abort"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindActivations && k <= KindAbort }

// DType is the element encoding of a payload.
type DType uint8

// Payload encodings. F32 is the default: a split model then computes exactly what one node does.
const (
	F32 DType = 1
	// F16: IEEE 754 binary16, round to nearest even; halves the bytes.
	F16 DType = 2
	// Q8_0: blocks of 32 values as a binary16 scale followed by 32 int8 (ggml's block_q8_0 layout);
	// 34 bytes per 32 values. The innermost dimension must be a multiple of 32.
	Q8_0 DType = 3
	// I32: little-endian int32 (token ids).
	I32 DType = 4
	// Bytes: opaque bytes; shape is [length].
	Bytes DType = 5
)

// Q8Block is the number of values in one Q8_0 block.
const Q8Block = 32

func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case Q8_0:
		return "Q8_0"
	case I32:
		return "I32"
	case Bytes:
		return "BYTES"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// ParseDType accepts the names String returns (case-sensitive, as config files spell them).
func ParseDType(s string) (DType, error) {
	for _, d := range []DType{F32, F16, Q8_0, I32, Bytes} {
		if d.String() == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("wire: unknown dtype %q (want F32, F16, Q8_0, I32 or BYTES)", s)
}

// Size is the payload size in bytes of a tensor of this dtype and shape.
func (d DType) Size(shape []uint32) (uint64, error) {
	n := uint64(1)
	for _, s := range shape {
		n *= uint64(s)
		if n > MaxPayload {
			return 0, fmt.Errorf("wire: shape %v too large", shape)
		}
	}
	switch d {
	case F32, I32:
		return 4 * n, nil
	case F16:
		return 2 * n, nil
	case Bytes:
		return n, nil
	case Q8_0:
		if len(shape) == 0 || shape[len(shape)-1]%Q8Block != 0 {
			return 0, fmt.Errorf("wire: Q8_0 needs an innermost dimension that is a multiple of %d, shape is %v", Q8Block, shape)
		}
		return n / Q8Block * (2 + Q8Block), nil
	}
	return 0, fmt.Errorf("wire: unknown dtype %d", uint8(d))
}

// Header describes one frame. Slices are reused by ReadHeader when they have capacity.
type Header struct {
	Kind  Kind
	DType DType
	// Instance is the model instance the frame belongs to (the cluster's instance id).
	Instance string
	// Request identifies one client request within the instance.
	Request uint64
	// Step counts decode steps of the request (0 for the prompt).
	Step uint32
	// Positions are the token positions of the rows, one per row of an activation.
	Positions []int32
	// Shape is outermost first: an activation is [tokens, n_embd].
	Shape []uint32
	// PayloadLen is set by WriteFrame from the payload and by ReadHeader from the wire.
	PayloadLen uint64
	// Parts is set only by a multipath sender: the payload is split over len(Parts) streams, the
	// first Parts[0] bytes follow this header and Parts[i] bytes come on the bundle's i-th stream.
	Parts []uint64
}

// VersionError is returned when a peer speaks another wire version.
type VersionError struct {
	Local, Remote uint16
	Peer          string // optional: who the peer is
}

func (e *VersionError) Error() string {
	who := "peer"
	if e.Peer != "" {
		who = "peer " + e.Peer
	}
	return fmt.Sprintf("wire version mismatch: %s speaks exo wire format v%d, this node speaks v%d; upgrade the older node", who, e.Remote, e.Local)
}

// MagicError is returned when a stream does not start with Magic.
type MagicError struct{ Got [4]byte }

func (e *MagicError) Error() string {
	return fmt.Sprintf("wire: not an exo tensor frame: magic %q (% x), want %q", e.Got[:], e.Got[:], Magic[:])
}

// ErrStriped is returned when a frame split over several streams is read from a single stream.
var ErrStriped = errors.New("wire: frame is striped over several paths and must be read through its multipath bundle")

// Validate checks the header against the payload length it announces (or will announce).
func (h *Header) Validate() error {
	if !h.Kind.valid() {
		return fmt.Errorf("wire: unknown frame kind %d", uint8(h.Kind))
	}
	if len(h.Instance) > MaxInstanceLen {
		return fmt.Errorf("wire: instance id is %d bytes, at most %d", len(h.Instance), MaxInstanceLen)
	}
	if len(h.Shape) > MaxDims {
		return fmt.Errorf("wire: %d shape dims, at most %d", len(h.Shape), MaxDims)
	}
	if len(h.Positions) > MaxPositions {
		return fmt.Errorf("wire: %d positions, at most %d", len(h.Positions), MaxPositions)
	}
	if len(h.Parts) > MaxParts {
		return fmt.Errorf("wire: %d parts, at most %d", len(h.Parts), MaxParts)
	}
	want, err := h.DType.Size(h.Shape)
	if err != nil {
		return err
	}
	if h.PayloadLen != want {
		return fmt.Errorf("wire: %s frame of dtype %s and shape %v needs %d payload bytes, has %d", h.Kind, h.DType, h.Shape, want, h.PayloadLen)
	}
	if len(h.Parts) > 0 {
		var sum uint64
		for _, p := range h.Parts {
			sum += p
		}
		if sum != h.PayloadLen {
			return fmt.Errorf("wire: parts %v add up to %d bytes, payload is %d", h.Parts, sum, h.PayloadLen)
		}
	}
	return nil
}

// HeaderSize is the encoded size of h.
func (h *Header) HeaderSize() int {
	return FixedHeaderSize + len(h.Instance) + 4*len(h.Shape) + 4*len(h.Positions) + 8*len(h.Parts)
}

// AppendHeader validates h and appends its encoding to dst.
func AppendHeader(dst []byte, h *Header) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return dst, err
	}
	le := binary.LittleEndian
	dst = append(dst, Magic[:]...)
	dst = le.AppendUint16(dst, Version)
	dst = append(dst, byte(h.Kind), byte(h.DType))
	dst = le.AppendUint32(dst, uint32(h.HeaderSize()))
	dst = append(dst, byte(len(h.Instance)), byte(len(h.Shape)), byte(len(h.Parts)), 0)
	dst = le.AppendUint64(dst, h.Request)
	dst = le.AppendUint32(dst, h.Step)
	dst = le.AppendUint32(dst, uint32(len(h.Positions)))
	dst = le.AppendUint64(dst, h.PayloadLen)
	dst = append(dst, h.Instance...)
	for _, s := range h.Shape {
		dst = le.AppendUint32(dst, s)
	}
	for _, p := range h.Positions {
		dst = le.AppendUint32(dst, uint32(p))
	}
	for _, p := range h.Parts {
		dst = le.AppendUint64(dst, p)
	}
	return dst, nil
}

// Writer writes frames to one stream, reusing its header buffer. It is not safe for concurrent
// use; a stream has one writer.
type Writer struct {
	W   io.Writer
	buf []byte
}

// WriteFrame sets h.PayloadLen from payload, validates h and writes the frame. With h.Parts set
// only the first part of payload (payload[:Parts[0]]) is written; the caller sends the others.
// Flow control of the underlying stream is the backpressure: WriteFrame blocks while the peer is
// not reading.
func (w *Writer) WriteFrame(h *Header, payload []byte) error {
	h.PayloadLen = uint64(len(payload))
	body := payload
	if len(h.Parts) > 0 {
		if h.Parts[0] > uint64(len(payload)) {
			return fmt.Errorf("wire: first part is %d bytes, payload is %d", h.Parts[0], len(payload))
		}
		body = payload[:h.Parts[0]]
	}
	var err error
	w.buf, err = AppendHeader(w.buf[:0], h)
	if err != nil {
		return err
	}
	if len(body) <= coalesceLimit {
		w.buf = append(w.buf, body...)
		body = nil
	}
	if _, err := w.W.Write(w.buf); err != nil {
		return fmt.Errorf("wire: write %s frame header (request %d step %d): %w", h.Kind, h.Request, h.Step, err)
	}
	if len(body) > 0 {
		if _, err := w.W.Write(body); err != nil {
			return fmt.Errorf("wire: write %s payload of %d bytes (request %d step %d): %w", h.Kind, len(body), h.Request, h.Step, err)
		}
	}
	if cap(w.buf) > 4*coalesceLimit {
		w.buf = nil // a prompt's position list made it big; do not pin that memory
	}
	return nil
}

// WriteFrame writes one frame with a fresh header buffer; use a Writer to reuse it.
func WriteFrame(w io.Writer, h *Header, payload []byte) error {
	return (&Writer{W: w}).WriteFrame(h, payload)
}

// Reader reads frames from one stream.
type Reader struct {
	R   io.Reader
	buf []byte
}

// ReadHeader reads the next header into h. It returns io.EOF when the stream ended cleanly before
// a frame began, and io.ErrUnexpectedEOF when it ended inside one.
func (r *Reader) ReadHeader(h *Header) error {
	if cap(r.buf) < FixedHeaderSize {
		r.buf = make([]byte, 256)
	}
	fixed := r.buf[:FixedHeaderSize]
	if _, err := io.ReadFull(r.R, fixed[:6]); err != nil {
		return err // io.EOF here is a clean end between frames
	}
	if [4]byte(fixed[:4]) != Magic {
		return &MagicError{Got: [4]byte(fixed[:4])}
	}
	le := binary.LittleEndian
	if v := le.Uint16(fixed[4:6]); v != Version {
		return &VersionError{Local: Version, Remote: v}
	}
	if _, err := io.ReadFull(r.R, fixed[6:]); err != nil {
		return unexpected(err, "frame header")
	}
	h.Kind = Kind(fixed[6])
	h.DType = DType(fixed[7])
	hlen := le.Uint32(fixed[8:12])
	ninst, ndims, nparts := int(fixed[12]), int(fixed[13]), int(fixed[14])
	if fixed[15] != 0 {
		return fmt.Errorf("wire: unknown header flags %#x", fixed[15])
	}
	h.Request = le.Uint64(fixed[16:24])
	h.Step = le.Uint32(fixed[24:28])
	npos := le.Uint32(fixed[28:32])
	h.PayloadLen = le.Uint64(fixed[32:40])
	if ndims > MaxDims || nparts > MaxParts || npos > MaxPositions {
		return fmt.Errorf("wire: header has %d dims, %d parts, %d positions (limits %d, %d, %d)", ndims, nparts, npos, MaxDims, MaxParts, MaxPositions)
	}
	if h.PayloadLen > MaxPayload {
		return fmt.Errorf("wire: payload length %d exceeds %d", h.PayloadLen, uint64(MaxPayload))
	}
	want := FixedHeaderSize + ninst + 4*ndims + 4*int(npos) + 8*nparts
	if int(hlen) != want {
		return fmt.Errorf("wire: header length field is %d, its counts need %d", hlen, want)
	}
	varLen := want - FixedHeaderSize
	if cap(r.buf) < varLen {
		r.buf = make([]byte, varLen)
	}
	v := r.buf[:varLen]
	if _, err := io.ReadFull(r.R, v); err != nil {
		return unexpected(err, "frame header")
	}
	if h.Instance != string(v[:ninst]) { // the same instance frame after frame: no allocation
		h.Instance = string(v[:ninst])
	}
	v = v[ninst:]
	h.Shape = h.Shape[:0]
	for i := 0; i < ndims; i++ {
		h.Shape = append(h.Shape, le.Uint32(v[4*i:]))
	}
	v = v[4*ndims:]
	h.Positions = h.Positions[:0]
	for i := 0; i < int(npos); i++ {
		h.Positions = append(h.Positions, int32(le.Uint32(v[4*i:])))
	}
	v = v[4*npos:]
	h.Parts = h.Parts[:0]
	for i := 0; i < nparts; i++ {
		h.Parts = append(h.Parts, le.Uint64(v[8*i:]))
	}
	if nparts == 0 {
		h.Parts = nil
	}
	if err := h.Validate(); err != nil {
		return err
	}
	if cap(r.buf) > 4*coalesceLimit {
		r.buf = nil
	}
	return nil
}

// ReadFrame reads the next frame: its header into h and its payload into buf, which is grown when
// too small. The returned slice aliases buf. A striped frame returns ErrStriped after its header.
func (r *Reader) ReadFrame(h *Header, buf []byte) ([]byte, error) {
	if err := r.ReadHeader(h); err != nil {
		return nil, err
	}
	if len(h.Parts) > 0 {
		return nil, ErrStriped
	}
	payload := Grow(buf, int(h.PayloadLen))
	if _, err := io.ReadFull(r.R, payload); err != nil {
		return nil, fmt.Errorf("wire: read %s payload of %d bytes (request %d step %d): %w", h.Kind, h.PayloadLen, h.Request, h.Step, unexpected(err, "payload"))
	}
	return payload, nil
}

// ReadFrame reads one frame with a fresh header buffer; use a Reader to reuse it.
func ReadFrame(r io.Reader, h *Header, buf []byte) ([]byte, error) {
	return (&Reader{R: r}).ReadFrame(h, buf)
}

// Grow returns buf resized to n bytes, reallocating only when its capacity is short.
func Grow(buf []byte, n int) []byte {
	if cap(buf) < n {
		return make([]byte, n)
	}
	return buf[:n]
}

func unexpected(err error, what string) error {
	if err == io.EOF { // only a bare EOF: a wrapped one carries its own story (a lost connection)
		return fmt.Errorf("wire: stream ended inside %s: %w", what, io.ErrUnexpectedEOF)
	}
	return err
}
