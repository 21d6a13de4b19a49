package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// StageFileName is the file a stage-only fetch of layers [first, last) of model id writes.
func StageFileName(id string, first, last int) string {
	return fmt.Sprintf("%s.layers-%d-%d.gguf", id, first, last)
}

// remoteHeader is a source's GGUF header, read with Range requests.
type remoteHeader struct {
	file  *gguf.File // header only: no tensor data
	bytes []byte     // the file's first bytes, at least up to the data section
}

// readHeader reads a GGUF header over Range requests: a first probe, then doubling reads of
// only the bytes not held yet, until the header parses.
func (s *Store) readHeader(ctx context.Context, t *transfer, src Source, size int64) (*remoteHeader, error) {
	var buf bytes.Buffer
	want := min(s.opt.HeaderProbe, size)
	for {
		if err := s.readPrefix(ctx, t, src, &buf, want); err != nil {
			return nil, err
		}
		f, err := gguf.ParseHeader(buf.Bytes(), size)
		if err == nil {
			return &remoteHeader{file: f, bytes: buf.Bytes()[:f.DataOffset:f.DataOffset]}, nil
		}
		if !errors.Is(err, gguf.ErrTruncated) || want >= size {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		want = min(2*want, size)
	}
}

// readPrefix extends buf, the first bytes of src's file, to want bytes.
func (s *Store) readPrefix(ctx context.Context, t *transfer, src Source, buf *bytes.Buffer, want int64) error {
	have := int64(buf.Len())
	if want <= have {
		return nil
	}
	return t.attempt(ctx, t.index(src), func(j int) bool { return t.sources[j] == src }, func(Source) (bool, error) {
		buf.Truncate(int(have))
		n, err := t.copyRange(ctx, src, have, want-have, make([]byte, 64<<10), func(b []byte) error {
			buf.Write(b)
			t.tr.add(int64(len(b)))
			return nil
		})
		return n > 0, err
	})
}

// readVerifiedHeader reads the header of a source that has a manifest: exactly the bytes
// before its data section, checked against the manifest before they are parsed, and read
// again after a mismatch as a corrupted range would be.
func (s *Store) readVerifiedHeader(ctx context.Context, t *transfer, src Source, m *Manifest) (*remoteHeader, error) {
	if m.DataOffset <= 0 || m.DataOffset > m.Size {
		return nil, fmt.Errorf("%s: manifest data offset %d is outside the file (%d bytes)", src, m.DataOffset, m.Size)
	}
	for attempt := 1; ; attempt++ {
		var buf bytes.Buffer
		if err := s.readPrefix(ctx, t, src, &buf, m.DataOffset); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(buf.Bytes())
		if got := hex.EncodeToString(sum[:]); got != m.HeaderSHA256 {
			s.metrics.verifyFailures.Inc()
			verr := &VerifyError{What: "GGUF header from " + src.String(), Want: m.HeaderSHA256, Got: got}
			if attempt > s.opt.Retries {
				return nil, verr
			}
			s.log.Warn("header failed verification; reading it again", "err", verr)
			continue
		}
		f, err := gguf.ParseHeader(buf.Bytes(), m.Size)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		return &remoteHeader{file: f, bytes: buf.Bytes()}, nil
	}
}

// stageLayout is the stage file to write: its header bytes and where each tensor goes.
type stageLayout struct {
	header  []byte
	tensors []*gguf.TensorInfo // source tensors, in output order
	offsets []int64            // absolute offset in the output of each tensor
	size    int64
}

var errHeaderOnly = errors.New("header written")

// layoutStage lays out the stage file exactly as gguf.Extract writes it (same metadata order,
// stage keys, tensor order and alignment); the stage-fetch tests compare the bytes.
func layoutStage(src *gguf.File, first, last int) (*stageLayout, error) {
	ts, err := gguf.StageTensors(src, first, last)
	if err != nil {
		return nil, err
	}
	_, _, total, _ := src.LayerRange()
	w := gguf.NewWriter()
	for _, kv := range src.KVs {
		w.AddKV(kv.Key, kv.Value)
	}
	w.AddKV(gguf.KeyStageFirst, gguf.U32(uint32(first)))
	w.AddKV(gguf.KeyStageLast, gguf.U32(uint32(last)))
	w.AddKV(gguf.KeyStageSourceCount, gguf.U32(uint32(total)))
	for _, t := range ts {
		if err := w.AddTensorFunc(t.Name, t.Type, t.Dims, func(io.Writer) error { return errHeaderOnly }); err != nil {
			return nil, err
		}
	}
	var hdr bytes.Buffer
	if _, err := w.WriteTo(&hdr); !errors.Is(err, errHeaderOnly) {
		return nil, fmt.Errorf("lay out stage header: %v", err)
	}
	l := &stageLayout{header: hdr.Bytes(), tensors: ts}
	align := int64(src.Alignment)
	off := int64(len(l.header))
	for _, t := range ts {
		l.offsets = append(l.offsets, off)
		off = (off + t.Size + align - 1) / align * align
	}
	l.size = off
	return l, nil
}

// fetchStage writes a stage file of layers [first, last) from sources, fetching only the
// header and the stage's tensors. Each tensor is checked against the SHA-256 of a peer's
// manifest when one is available; the hub gives no per-tensor hashes, so a stage cut from the
// hub is recorded as unverified (its whole-file hash can only be checked by a full download).
func (s *Store) fetchStage(ctx context.Context, sources []Source, rem Remote, first, last int, final string, tr *tracker) (*Manifest, error) {
	t := s.newTransfer(sources, tr)

	// The layout and the tensor hashes come from the first source that offers a manifest whose
	// header hash matches the header it serves; failing that, from the first source at all.
	var (
		primary  int
		hdr      *remoteHeader
		manifest *Manifest
		err      error
	)
	var offered error // why sources that offer hashes could not be used
	for i, src := range sources {
		ms, ok := src.(ManifestSource)
		if !ok {
			continue
		}
		m, merr := ms.Manifest(ctx)
		if merr != nil {
			offered = merr
			s.log.Warn("peer manifest unavailable", "source", src.String(), "err", merr)
			continue
		}
		h, herr := s.readVerifiedHeader(ctx, t, src, m)
		if herr != nil {
			offered = herr
			s.log.Warn("peer header unusable", "source", src.String(), "err", herr)
			continue
		}
		primary, hdr, manifest = i, h, m
		break
	}
	if hdr == nil {
		if offered != nil {
			// Sources that offer hashes must deliver verified bytes: never fall back to
			// unverified ones because the verification failed.
			return nil, fmt.Errorf("no source delivered a verified header: %w", offered)
		}
		if hdr, err = s.readHeader(ctx, t, sources[0], rem.Size); err != nil {
			return nil, err
		}
	}
	layout, err := layoutStage(hdr.file, first, last)
	if err != nil {
		return nil, err
	}
	for _, ti := range layout.tensors {
		if manifest != nil && !sha256Hex.MatchString(manifest.Tensors[ti.Name]) {
			return nil, fmt.Errorf("%s: manifest has no hash for tensor %q", sources[primary], ti.Name)
		}
	}

	headerSum := sha256.Sum256(layout.header)
	id := "stage:" + hex.EncodeToString(headerSum[:])
	if rem.SHA256 != "" {
		id += " source:" + rem.SHA256
	}
	p, err := openPartial(final, id, layout.size, 0)
	if err != nil {
		return nil, err
	}
	if p.st.Tensors == nil {
		p.st.Tensors = map[string]bool{}
	}
	var resumed int64
	var todo []int
	for i, ti := range layout.tensors {
		if p.st.Tensors[ti.Name] {
			resumed += ti.Size
		} else {
			todo = append(todo, i)
		}
	}
	done := int64(len(layout.header)) + resumed
	if err := s.checkSpace(filepath.Dir(final), layout.size-done); err != nil {
		p.closeOrDiscard()
		return nil, err
	}
	if err := p.f.Truncate(layout.size); err != nil {
		p.close()
		return nil, fmt.Errorf("size %s: %w", p.path, err)
	}
	if _, err := p.f.WriteAt(layout.header, 0); err != nil {
		p.close()
		return nil, fmt.Errorf("write %s: %w", p.path, err)
	}
	tr.start(layout.size, done, resumed)

	// Other sources may be laid out differently (a peer holding another stage): read each
	// one's header once, and take a tensor only from sources that hold it.
	headers := make([]*remoteHeader, len(sources))
	headers[primary] = hdr
	for i, src := range sources {
		if headers[i] != nil {
			continue
		}
		r, err := src.Stat(ctx)
		if err == nil {
			headers[i], err = s.readHeader(ctx, t, src, r.Size)
		}
		if err != nil {
			if ctx.Err() != nil {
				p.close()
				return nil, ctx.Err()
			}
			t.drop(i, err)
		}
	}
	holds := func(want *gguf.TensorInfo) func(int) bool {
		return func(j int) bool {
			st, ok := headers[j].file.Tensor(want.Name)
			return ok && st.Type == want.Type && st.Size == want.Size
		}
	}

	stopSaving := saveLoop(p, s.opt.ProgressInterval)
	err = runParallel(ctx, s.opt.Parallel, todo, func(ctx context.Context, w, i int) error {
		want := layout.tensors[i]
		buf := make([]byte, 256<<10)
		return t.attempt(ctx, primary+w, holds(want), func(src Source) (bool, error) {
			h := headers[t.index(src)]
			st, _ := h.file.Tensor(want.Name)
			hash := sha256.New()
			pos := layout.offsets[i]
			n, err := t.copyRange(ctx, src, h.file.DataOffset+int64(st.Offset), st.Size, buf, func(b []byte) error {
				if _, err := p.f.WriteAt(b, pos); err != nil {
					return localError{fmt.Errorf("write %s: %w", p.path, err)}
				}
				hash.Write(b)
				pos += int64(len(b))
				tr.add(int64(len(b)))
				return nil
			})
			if err != nil {
				tr.add(-n)
				return n > 0, err
			}
			if manifest != nil {
				if got := hex.EncodeToString(hash.Sum(nil)); got != manifest.Tensors[want.Name] {
					s.metrics.verifyFailures.Inc()
					tr.add(-n)
					return false, &VerifyError{What: fmt.Sprintf("tensor %q from %s", want.Name, src), Want: manifest.Tensors[want.Name], Got: got}
				}
			}
			p.mu.Lock()
			p.st.Tensors[want.Name] = true
			p.mu.Unlock()
			return true, nil
		})
	})
	if err := p.settle(err, stopSaving, tr); err != nil {
		return nil, err
	}
	m, err := ComputeManifest(p.path)
	if err != nil {
		p.discard()
		return nil, fmt.Errorf("stage file of %s is invalid: %w", rem.Origin, err)
	}
	if manifest != nil {
		for name, sum := range m.Tensors {
			if manifest.Tensors[name] != sum {
				p.discard()
				return nil, &VerifyError{What: "stage tensor " + name, Want: manifest.Tensors[name], Got: sum}
			}
		}
	}
	if err := p.finish(final); err != nil {
		return nil, err
	}
	m.File, m.Origin, m.Commit, m.Verified = filepath.Base(final), rem.Origin, rem.Commit, manifest != nil
	if manifest != nil && m.Origin == "" {
		m.Origin = manifest.Origin
	}
	if err := s.manifests.put(final, m); err != nil {
		s.log.Warn("model manifest not saved", "file", final, "err", err)
	}
	return m, nil
}
