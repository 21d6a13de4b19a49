package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// File names next to a model being fetched: the bytes so far, and what they are.
const (
	partialSuffix = ".partial"
	stateSuffix   = ".partial.json"
)

// partialState is the resume record of a fetch. It is saved after the bytes it counts were
// written, so after a crash it never claims more than the partial file holds.
type partialState struct {
	Version   int    `json:"version"`
	Identity  string `json:"identity"`
	Size      int64  `json:"size"`
	ChunkSize int64  `json:"chunk_size,omitempty"`
	// Done counts, per chunk of a whole-file download, the bytes written from the chunk's start.
	Done []int64 `json:"done,omitempty"`
	// Tensors lists the tensors of a stage fetch that are written and verified.
	Tensors map[string]bool `json:"tensors,omitempty"`
}

// partialFile is a ".partial" download with its resume record, locked against other processes.
type partialFile struct {
	f         *os.File
	path      string
	statePath string

	mu    sync.Mutex
	st    partialState
	saved []byte
}

// openPartial opens (or starts) the partial file of final. An existing one is kept only when
// its record says it holds the same content (identity) at the same size; otherwise it starts
// empty.
func openPartial(final, identity string, size, chunk int64) (*partialFile, error) {
	p := &partialFile{path: final + partialSuffix, statePath: final + stateSuffix}
	f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p.path, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is being written by another exo process: %w", p.path, err)
	}
	p.f = f
	fresh := partialState{Version: 1, Identity: identity, Size: size, ChunkSize: chunk}
	if chunk > 0 {
		fresh.Done = make([]int64, (size+chunk-1)/chunk)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", p.path, err)
	}
	var old partialState
	data, rerr := os.ReadFile(p.statePath)
	if rerr == nil && json.Unmarshal(data, &old) == nil && old.Version == 1 && old.Identity == identity &&
		old.Size == size && st.Size() == size && old.ChunkSize == chunk && len(old.Done) == len(fresh.Done) {
		p.st = old
		p.saved = data
		return p, nil
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("reset %s: %w", p.path, err)
	}
	p.st = fresh
	return p, nil
}

// resumed is how many bytes an earlier attempt left.
func (p *partialFile) resumed() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, d := range p.st.Done {
		n += d
	}
	return n
}

// chunkRange is what chunk k still needs: [off, end).
func (p *partialFile) chunkRange(k int) (off, end int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := int64(k) * p.st.ChunkSize
	return start + p.st.Done[k], min(start+p.st.ChunkSize, p.st.Size)
}

func (p *partialFile) advance(k int, n int64) {
	p.mu.Lock()
	p.st.Done[k] += n
	p.mu.Unlock()
}

// save writes the resume record when it changed.
func (p *partialFile) save() error {
	p.mu.Lock()
	data, err := json.Marshal(p.st)
	if err != nil || string(data) == string(p.saved) {
		p.mu.Unlock()
		return err
	}
	p.saved = data
	p.mu.Unlock()
	if err := writeFileAtomic(p.statePath, data); err != nil {
		return fmt.Errorf("save download state %s: %w", p.statePath, err)
	}
	return nil
}

func (p *partialFile) close() { p.f.Close() }

// closeOrDiscard keeps a partial file that holds something worth resuming.
func (p *partialFile) closeOrDiscard() {
	p.mu.Lock()
	empty := len(p.saved) == 0
	p.mu.Unlock()
	if empty {
		p.discard()
		return
	}
	p.close()
}

// discard removes the partial file and its record. Both go while the lock is held, so that
// no other process opens them in between.
func (p *partialFile) discard() {
	os.Remove(p.path)
	os.Remove(p.statePath)
	p.f.Close()
}

// finish makes the partial file the model file: synced, renamed atomically (under the lock),
// record removed.
func (p *partialFile) finish(final string) error {
	defer p.f.Close()
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p.path, err)
	}
	if err := os.Rename(p.path, final); err != nil {
		return fmt.Errorf("rename %s: %w", p.path, err)
	}
	os.Remove(p.statePath)
	if d, err := os.Open(filepath.Dir(final)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// identity names the content a partial file holds: its SHA-256 when the source states one.
func identity(rem Remote) string {
	if rem.SHA256 != "" {
		return "sha256:" + rem.SHA256
	}
	return fmt.Sprintf("origin:%s size:%d", rem.Origin, rem.Size)
}

// VerifyError is a fetched file or tensor whose SHA-256 differs from what its source states.
type VerifyError struct {
	What      string
	Want, Got string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s: SHA-256 mismatch: expected %s, got %s", e.What, e.Want, e.Got)
}

// localError is a failure on this machine (disk write), never worth retrying on another source.
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }

var errStalled = errors.New("stalled")

// transfer runs ranged reads from a set of sources that serve the same bytes, with retries,
// backoff, stall detection and failover between sources.
type transfer struct {
	s       *Store
	tr      *tracker
	mu      sync.Mutex
	sources []Source
	dead    []bool
	lastErr error
}

func (s *Store) newTransfer(sources []Source, tr *tracker) *transfer {
	return &transfer{s: s, tr: tr, sources: sources, dead: make([]bool, len(sources))}
}

// pick returns the first live, eligible source at or after i (round robin), or -1.
func (t *transfer) pick(i int, eligible func(int) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.sources {
		j := (i + k) % len(t.sources)
		if !t.dead[j] && (eligible == nil || eligible(j)) {
			return j
		}
	}
	return -1
}

// index is the position of src in the transfer's sources.
func (t *transfer) index(src Source) int {
	for i, s := range t.sources {
		if s == src {
			return i
		}
	}
	return -1
}

func (t *transfer) drop(i int, err error) {
	t.mu.Lock()
	t.dead[i] = true
	t.lastErr = err
	t.mu.Unlock()
	t.s.log.Warn("model source dropped", "source", t.sources[i].String(), "err", err)
}

func (t *transfer) allFailed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lastErr == nil {
		return errors.New("no source holds these bytes")
	}
	return fmt.Errorf("no source left: %w", t.lastErr)
}

// copyRange streams src's bytes [off, off+n) to write, which receives them in order. A read
// that delivers nothing for the stall timeout fails as temporary.
func (t *transfer) copyRange(ctx context.Context, src Source, off, n int64, buf []byte, write func([]byte) error) (int64, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := t.s.opt.StallTimeout
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer timer.Stop()
	wrap := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(context.Cause(rctx), errStalled) {
			return &SourceError{Source: src.String(), Op: "range read", Temporary: true, Err: fmt.Errorf("no data for %s", stall)}
		}
		return err
	}
	body, err := src.ReadRange(rctx, off, n)
	if err != nil {
		return 0, wrap(err)
	}
	defer body.Close()
	var got int64
	for got < n {
		k, err := body.Read(buf[:min(int64(len(buf)), n-got)])
		if k > 0 {
			timer.Reset(stall)
			if werr := write(buf[:k]); werr != nil {
				return got, werr
			}
			got += int64(k)
			t.s.metrics.bytes.WithLabelValues(src.Kind()).Add(float64(k))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return got, wrap(err)
		}
	}
	if got < n {
		return got, &SourceError{Source: src.String(), Op: "range read", Temporary: true, Err: io.ErrUnexpectedEOF}
	}
	return got, nil
}

// attempt runs fetch (one ranged read of some unit of work) until it succeeds, retrying
// temporary failures with backoff on the next source and dropping sources that fail for good.
// fetch reports whether it made progress, which resets the failure count. eligible, when set,
// limits the sources to those that hold the unit.
func (t *transfer) attempt(ctx context.Context, first int, eligible func(int) bool, fetch func(src Source) (progressed bool, err error)) error {
	failures := 0
	i := first
	for {
		j := t.pick(i, eligible)
		if j < 0 {
			return t.allFailed()
		}
		progressed, err := fetch(t.sources[j])
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var le localError
		if errors.As(err, &le) {
			return le.err
		}
		i = j + 1
		if progressed {
			failures = 0
		}
		var ve *VerifyError
		if !temporary(err) && !errors.As(err, &ve) {
			t.drop(j, err)
			continue
		}
		failures++
		if failures > t.s.opt.Retries {
			return fmt.Errorf("%w (gave up after %d attempts)", err, failures)
		}
		t.s.metrics.retries.Inc()
		wait := t.s.backoff(failures)
		t.s.log.Debug("model fetch retry", "source", t.sources[j].String(), "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// backoff doubles from Backoff up to MaxBackoff, with jitter so that parallel ranges that
// failed together do not retry in lockstep.
func (s *Store) backoff(failures int) time.Duration {
	d := s.opt.Backoff << min(failures-1, 20)
	if d > s.opt.MaxBackoff || d <= 0 {
		d = s.opt.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// runParallel runs work(w, item) on up to n workers over items; the first error stops all.
func runParallel[T any](ctx context.Context, n int, items []T, work func(ctx context.Context, w int, item T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan T)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < min(n, len(items)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for item := range queue {
				if err := work(ctx, w, item); err != nil {
					once.Do(func() { first = err; cancel(err) })
					return
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case queue <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(queue)
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}

// saveLoop saves the resume record every interval until the returned stop function is
// called; stop returns once no save is running any more.
func saveLoop(p *partialFile, every time.Duration) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				_ = p.save()
			}
		}
	}()
	return func() { close(quit); <-done }
}

// settle ends the parallel copy into p, whose outcome is err: it stops the periodic saves and
// saves the record once more. On failure it closes p, which stays for a resume; on success it
// syncs the file for verification.
func (p *partialFile) settle(err error, stopSaving func(), tr *tracker) error {
	stopSaving()
	if serr := p.save(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		p.close()
		return err
	}
	tr.update(func(pr *Progress) { pr.State = StateVerifying })
	if err := p.f.Sync(); err != nil {
		p.close()
		return fmt.Errorf("sync %s: %w", p.path, err)
	}
	return nil
}

// fetchFile downloads a whole file from sources into final, resuming a partial download of the
// same content, and verifies it against rem.SHA256. It returns the file's manifest.
func (s *Store) fetchFile(ctx context.Context, sources []Source, rem Remote, final string, tr *tracker) (*Manifest, error) {
	chunk := s.opt.ChunkSize
	parallel := s.opt.Parallel
	if !rem.Ranges {
		// One stream from the start; an interrupted download starts over.
		chunk, parallel = max(rem.Size, 1), 1
	}
	p, err := openPartial(final, identity(rem), rem.Size, chunk)
	if err != nil {
		return nil, err
	}
	if !rem.Ranges && p.resumed() > 0 {
		p.discard()
		if p, err = openPartial(final, identity(rem), rem.Size, chunk); err != nil {
			return nil, err
		}
	}
	resumed := p.resumed()
	if err := s.checkSpace(filepath.Dir(final), rem.Size-resumed); err != nil {
		p.closeOrDiscard()
		return nil, err
	}
	if err := p.f.Truncate(rem.Size); err != nil {
		p.close()
		return nil, fmt.Errorf("size %s: %w", p.path, err)
	}
	tr.start(rem.Size, resumed, resumed)
	if resumed > 0 {
		s.log.Info("resuming model download", "file", filepath.Base(final), "have", resumed, "size", rem.Size)
	}

	var todo []int
	for k := range p.st.Done {
		if off, end := p.chunkRange(k); off < end {
			todo = append(todo, k)
		}
	}
	t := s.newTransfer(sources, tr)
	stopSaving := saveLoop(p, s.opt.ProgressInterval)
	err = runParallel(ctx, parallel, todo, func(ctx context.Context, w, k int) error {
		buf := make([]byte, 256<<10)
		return t.attempt(ctx, w, nil, func(src Source) (bool, error) {
			off, end := p.chunkRange(k)
			if off >= end {
				return false, nil
			}
			pos := off
			n, err := t.copyRange(ctx, src, off, end-off, buf, func(b []byte) error {
				if _, err := p.f.WriteAt(b, pos); err != nil {
					return localError{fmt.Errorf("write %s: %w", p.path, err)}
				}
				pos += int64(len(b))
				p.advance(k, int64(len(b)))
				tr.add(int64(len(b)))
				return nil
			})
			return n > 0, err
		})
	})
	if err := p.settle(err, stopSaving, tr); err != nil {
		return nil, err
	}
	m, merr := ComputeManifest(p.path)
	got := ""
	if merr == nil {
		got = m.SHA256
	} else if got, err = fileSHA256(p.path); err != nil {
		p.close()
		return nil, err
	}
	if rem.SHA256 != "" && got != rem.SHA256 {
		s.metrics.verifyFailures.Inc()
		p.discard()
		return nil, &VerifyError{What: "download of " + rem.Origin, Want: rem.SHA256, Got: got}
	}
	if merr != nil {
		p.discard()
		return nil, fmt.Errorf("%s is not a usable GGUF model: %w", rem.Origin, merr)
	}
	if err := p.finish(final); err != nil {
		return nil, err
	}
	m.File, m.Origin, m.Commit, m.Verified = filepath.Base(final), rem.Origin, rem.Commit, rem.SHA256 != ""
	if err := s.manifests.put(final, m); err != nil {
		s.log.Warn("model manifest not saved", "file", final, "err", err)
	}
	return m, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
