package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/exo-nix/exo/appliance/engine/gguf"
)

// Options configure a Store. Zero values take the defaults noted.
type Options struct {
	// Dirs are the model directories ("PATH" or "PATH:ro"); the first writable one receives
	// pulls and imports.
	Dirs []string
	// Hub is the Hugging Face endpoint and token (see HubFromEnv).
	Hub Hub
	// Client fetches from the hub and URLs (default: a client with connect and header timeouts,
	// no overall timeout since downloads take long).
	Client *http.Client
	// Peers lists the cluster peers that serve models (PeerHandler), asked before the hub.
	Peers func() []string
	// PeerClient reaches them over mutual TLS; required when Peers is set.
	PeerClient *PeerClient
	// Parallel is how many ranges are fetched at once (default 4).
	Parallel int
	// ChunkSize is the unit of parallel, resumable download (default 16 MiB).
	ChunkSize int64
	// Retries is how many consecutive transient failures of one range are retried (default 6).
	Retries int
	// Backoff is the first retry delay, doubling up to MaxBackoff (defaults 500ms, 30s).
	Backoff, MaxBackoff time.Duration
	// StallTimeout fails a read that delivers nothing for this long (default 60s).
	StallTimeout time.Duration
	// ProgressInterval is how often progress is published and the resume record saved
	// (default 500ms).
	ProgressInterval time.Duration
	// HeaderProbe is the first read of a stage fetch's GGUF header (default 1 MiB); it doubles
	// until the header fits.
	HeaderProbe int64
	// Reserve is space a pull must leave free on the target file system.
	Reserve int64
	// FreeSpace reports the bytes available in a directory (default: the file system's
	// statistics); tests and quotas may substitute a limit.
	FreeSpace func(dir string) (int64, error)
	// VerifyAttempts is how many times a download whose SHA-256 does not match is fetched
	// before the pull fails (default 2).
	VerifyAttempts int
	// Publish receives EventPull events (data: Progress) for /api/v1/events.
	Publish func(typ string, data any)
	Metrics *Metrics
	Logger  *slog.Logger
}

// Store manages the model directories: listing, pulls, imports, removals, peer serving.
type Store struct {
	opt       Options
	cat       *Catalog
	log       *slog.Logger
	metrics   *Metrics
	manifests manifests

	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	pulls map[string]*Pull
}

// New returns a store over opt.Dirs.
func New(opt Options) *Store {
	if opt.Parallel <= 0 {
		opt.Parallel = 4
	}
	if opt.ChunkSize <= 0 {
		opt.ChunkSize = 16 << 20
	}
	if opt.Retries <= 0 {
		opt.Retries = 6
	}
	if opt.Backoff <= 0 {
		opt.Backoff = 500 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 30 * time.Second
	}
	if opt.StallTimeout <= 0 {
		opt.StallTimeout = 60 * time.Second
	}
	if opt.ProgressInterval <= 0 {
		opt.ProgressInterval = 500 * time.Millisecond
	}
	if opt.HeaderProbe <= 0 {
		opt.HeaderProbe = 1 << 20
	}
	if opt.FreeSpace == nil {
		opt.FreeSpace = diskFree
	}
	if opt.VerifyAttempts <= 0 {
		opt.VerifyAttempts = 2
	}
	if opt.Client == nil {
		opt.Client = defaultClient()
	}
	s := &Store{opt: opt, cat: NewCatalog(opt.Dirs), log: opt.Logger, metrics: opt.Metrics, pulls: map[string]*Pull{}}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.metrics == nil {
		s.metrics = newMetrics()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

func defaultClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 60 * time.Second
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: tr}
}

// Close cancels every pull in progress (their partial files stay for a later resume) and
// waits for them to end.
func (s *Store) Close() {
	s.cancel()
	s.mu.Lock()
	pulls := make([]*Pull, 0, len(s.pulls))
	for _, p := range s.pulls {
		pulls = append(pulls, p)
	}
	s.mu.Unlock()
	for _, p := range pulls {
		<-p.done
	}
}

// Catalog lists the models of the store's directories.
func (s *Store) Catalog() *Catalog { return s.cat }

// Dirs describes the model directories.
func (s *Store) Dirs() []Dir { return s.cat.DirInfo() }

// Manifest returns the hashes of a model, computing them on first use.
func (s *Store) Manifest(id string) (*Manifest, error) {
	m, err := s.cat.Get(id)
	if err != nil {
		return nil, err
	}
	return s.manifests.get(m.Path, !m.ReadOnly)
}

// ErrReadOnly is returned for writes to read-only model directories.
var ErrReadOnly = errors.New("read-only model directory")

// ErrNoSpace matches (errors.Is) a SpaceError.
var ErrNoSpace = errors.New("not enough free space")

// SpaceError is a pull that does not fit the free space of its target directory.
type SpaceError struct {
	Dir     string
	Need    int64 // bytes the pull still has to write
	Free    int64 // bytes free on the file system
	Reserve int64 // bytes the store must leave free
}

func (e *SpaceError) Error() string {
	msg := fmt.Sprintf("not enough free space in %s: needs %s (%d bytes), %s (%d bytes) available",
		e.Dir, HumanBytes(e.Need), e.Need, HumanBytes(max(e.Free-e.Reserve, 0)), max(e.Free-e.Reserve, 0))
	if e.Reserve > 0 {
		msg += fmt.Sprintf(" after keeping %s (%d bytes) of the %d free bytes in reserve", HumanBytes(e.Reserve), e.Reserve, e.Free)
	}
	return msg
}

// Is makes errors.Is(err, ErrNoSpace) true.
func (e *SpaceError) Is(target error) bool { return target == ErrNoSpace }

func (s *Store) checkSpace(dir string, need int64) error {
	free, err := s.opt.FreeSpace(dir)
	if err != nil {
		return err
	}
	if free < 0 {
		return nil
	}
	if need > free-s.opt.Reserve {
		return &SpaceError{Dir: dir, Need: need, Free: free, Reserve: s.opt.Reserve}
	}
	return nil
}

// HumanBytes formats n with binary units: 1.5 GiB.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// writableDir is the first model directory exo may write, created when missing.
func (s *Store) writableDir() (string, error) {
	var tried []string
	for _, d := range s.cat.dirs {
		if s.cat.readOnly[d] {
			tried = append(tried, d+" (marked :ro)")
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", d, err))
			continue
		}
		f, err := os.CreateTemp(d, ".exo-probe-*")
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", d, err))
			continue
		}
		f.Close()
		os.Remove(f.Name())
		return d, nil
	}
	return "", fmt.Errorf("%w: no model directory can receive models: %s", ErrReadOnly, strings.Join(tried, "; "))
}

// validFileName accepts a plain GGUF file name that is safe to create in a model directory.
func validFileName(name string) error {
	switch {
	case name == "" || name != path.Base(name) || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, "."):
		return fmt.Errorf("%w: file name %q is not a plain file name", ErrBadRef, name)
	case !strings.HasSuffix(name, ".gguf"):
		return fmt.Errorf("%w: %q is not a .gguf file", ErrBadRef, name)
	case splitShard.MatchString(name):
		return fmt.Errorf("%w: %q is one shard of a split GGUF; split models are not supported yet (merge them with llama-gguf-split --merge)", ErrBadRef, name)
	}
	return nil
}

// Import copies (or, with move, renames) a GGUF file into the first writable model directory.
func (s *Store) Import(src string, move bool) (Model, error) {
	f, err := gguf.Open(src)
	if err != nil {
		return Model{}, fmt.Errorf("import: %w", err)
	}
	f.Close()
	name := filepath.Base(src)
	if err := validFileName(name); err != nil {
		return Model{}, fmt.Errorf("import %s: %w", src, err)
	}
	id := strings.TrimSuffix(name, ".gguf")
	if m, err := s.cat.Get(id); err == nil {
		return Model{}, fmt.Errorf("import %s: model %q already exists at %s", src, id, m.Path)
	}
	dir, err := s.writableDir()
	if err != nil {
		return Model{}, err
	}
	final := filepath.Join(dir, name)
	if move {
		if err := os.Rename(src, final); err == nil {
			return s.finishImport(src, final)
		}
		// A rename across file systems fails; copy then remove instead.
	}
	st, err := os.Stat(src)
	if err != nil {
		return Model{}, err
	}
	if err := s.checkSpace(dir, st.Size()); err != nil {
		return Model{}, err
	}
	if err := copyFile(src, final); err != nil {
		return Model{}, err
	}
	if move {
		if err := os.Remove(src); err != nil {
			s.log.Warn("imported model copied but the original was not removed", "file", src, "err", err)
		}
	}
	return s.finishImport(src, final)
}

func (s *Store) finishImport(src, final string) (Model, error) {
	m, err := ComputeManifest(final)
	if err != nil {
		return Model{}, err
	}
	abs, _ := filepath.Abs(src)
	m.Origin = "file://" + abs
	if err := s.manifests.put(final, m); err != nil {
		s.log.Warn("model manifest not saved", "file", final, "err", err)
	}
	return s.describe(final)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	tmp.Close()
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// describe summarises a file the store just wrote, with its directory.
func (s *Store) describe(path string) (Model, error) {
	m, err := Describe(path)
	if err != nil {
		return Model{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return Model{}, err
	}
	m.Size, m.Modified, m.Dir = st.Size(), st.ModTime(), filepath.Dir(path)
	m.ReadOnly = s.cat.isReadOnly(m.Dir)
	return m, nil
}

// Removed is what Remove did.
type Removed struct {
	ID        string   `json:"id"`
	Files     []string `json:"files,omitempty"`
	Cancelled bool     `json:"cancelled"`
}

// Remove cancels a pull of id in progress and deletes the model's file, its manifest and any
// partial download. Models in read-only directories are refused.
func (s *Store) Remove(id string) (Removed, error) {
	r := Removed{ID: id}
	r.Cancelled = s.Cancel(id)
	m, err := s.cat.Get(id)
	if err == nil && m.ReadOnly {
		return r, fmt.Errorf("%w: model %q is in %s, which exo does not write", ErrReadOnly, id, m.Dir)
	}
	var paths []string
	if err == nil {
		paths = append(paths, m.Path, m.Path+ManifestSuffix)
	}
	for _, d := range s.cat.dirs {
		if s.cat.readOnly[d] {
			continue
		}
		base := filepath.Join(d, id+".gguf")
		paths = append(paths, base+partialSuffix, base+stateSuffix)
	}
	for _, p := range paths {
		if rerr := os.Remove(p); rerr == nil {
			r.Files = append(r.Files, p)
		} else if !errors.Is(rerr, os.ErrNotExist) {
			return r, fmt.Errorf("remove %s: %w", p, rerr)
		}
	}
	if len(r.Files) == 0 && !r.Cancelled {
		return r, fmt.Errorf("%w: %q is in none of %s", ErrNotFound, id, strings.Join(s.cat.dirs, ", "))
	}
	return r, nil
}

// PullRequest asks for a model.
type PullRequest struct {
	// Source is a model reference (see ParseRef).
	Source string `json:"source"`
	// Layers, when set, fetches only the tensors of layers [First, Last) into a stage file.
	Layers *Stage `json:"layers,omitempty"`
	// SHA256 is the expected hash of a URL whose server states none.
	SHA256 string `json:"sha256,omitempty"`
}

// Pull is a pull in progress or finished.
type Pull struct {
	key    string
	req    PullRequest
	tr     *tracker
	cancel context.CancelFunc
	done   chan struct{}
	model  Model
	err    error
}

// Progress returns the pull's current state.
func (p *Pull) Progress() Progress { return p.tr.snapshot() }

// Cancel stops the pull; its partial file stays for a later resume.
func (p *Pull) Cancel() { p.cancel() }

// Done is closed when the pull has ended.
func (p *Pull) Done() <-chan struct{} { return p.done }

// Wait blocks until the pull ends or ctx is done.
func (p *Pull) Wait(ctx context.Context) (Model, error) {
	select {
	case <-p.done:
		return p.model, p.err
	case <-ctx.Done():
		return Model{}, ctx.Err()
	}
}

// Pulls lists the pulls in progress and those that ended recently.
func (s *Store) Pulls() []Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Progress, 0, len(s.pulls))
	for _, p := range s.pulls {
		out = append(out, p.Progress())
	}
	slices.SortFunc(out, func(a, b Progress) int { return a.Started.Compare(b.Started) })
	return out
}

// Cancel stops the running pulls of a model id (or pull key); it reports whether there was one.
func (s *Store) Cancel(idOrKey string) bool {
	s.mu.Lock()
	var hit []*Pull
	for _, p := range s.pulls {
		pr := p.Progress()
		if !pr.Finished() && (pr.Key == idOrKey || pr.ID == idOrKey || strings.TrimSuffix(pr.File, ".gguf") == idOrKey) {
			hit = append(hit, p)
		}
	}
	s.mu.Unlock()
	for _, p := range hit {
		p.cancel()
		<-p.done
	}
	return len(hit) > 0
}

// LogPullEnded is the message of the log record of a pull that failed or was cancelled.
const LogPullEnded = "model pull ended"

// finishedRetention is how long a finished pull stays in Pulls for dashboards to show.
const finishedRetention = 10 * time.Minute

// Start begins a pull in the background, or returns the one already running for the same
// reference and layers. onProgress, when set, receives this pull's progress.
func (s *Store) Start(req PullRequest, onProgress func(Progress)) (*Pull, error) {
	ref, err := ParseRef(req.Source)
	if err != nil {
		return nil, err
	}
	if ref.Kind == KindURL {
		if hr, ok := s.opt.Hub.hubRef(ref.URL); ok {
			ref = hr
		}
	}
	if req.SHA256 != "" {
		req.SHA256 = strings.ToLower(req.SHA256)
		if !sha256Hex.MatchString(req.SHA256) {
			return nil, fmt.Errorf("%w: sha256 %q is not 64 hex digits", ErrBadRef, req.SHA256)
		}
	}
	if l := req.Layers; l != nil && (l.First < 0 || l.Last <= l.First) {
		return nil, fmt.Errorf("%w: layer range [%d, %d) is empty or negative", ErrBadRef, l.First, l.Last)
	}
	if name := ref.FileName(); name != "" {
		if err := validFileName(name); err != nil {
			return nil, err
		}
	}
	key := ref.String()
	if req.Layers != nil {
		key += fmt.Sprintf("#layers=%d-%d", req.Layers.First, req.Layers.Last)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, errors.New("model store is closed")
	}
	for k, p := range s.pulls {
		if pr := p.Progress(); pr.Finished() && time.Since(pr.Updated) > finishedRetention {
			delete(s.pulls, k)
		}
	}
	if p, ok := s.pulls[key]; ok && !p.Progress().Finished() {
		p.tr.listen(onProgress)
		return p, nil
	}
	ctx, cancel := context.WithCancel(s.ctx)
	p := &Pull{key: key, req: req, cancel: cancel, done: make(chan struct{}),
		tr: newTracker(key, ref.String(), s.opt.ProgressInterval, s.metrics)}
	p.tr.update(func(pr *Progress) {
		pr.ID = ref.ModelID()
		pr.Stage = req.Layers
		if req.Layers != nil && pr.ID != "" {
			pr.ID = strings.TrimSuffix(StageFileName(pr.ID, req.Layers.First, req.Layers.Last), ".gguf")
		}
	})
	if s.opt.Publish != nil {
		p.tr.listen(func(pr Progress) { s.opt.Publish(EventPull, pr) })
	}
	p.tr.listen(onProgress)
	s.pulls[key] = p
	s.metrics.active.Inc()
	go func() {
		defer close(p.done)
		defer cancel()
		m, err := s.run(ctx, p, ref)
		p.model, p.err = m, err
		result := StateDone
		switch {
		case err != nil && ctx.Err() != nil:
			result = StateCancelled
		case err != nil:
			result = StateFailed
		}
		s.metrics.active.Dec()
		s.metrics.pulls.WithLabelValues(result).Inc()
		p.tr.update(func(pr *Progress) {
			pr.State = result
			if err != nil {
				pr.Error = err.Error()
			}
			if m.ID != "" {
				pr.ID = m.ID
			}
		})
		if err != nil {
			s.log.Warn(LogPullEnded, "source", key, "state", result, "err", err)
		} else {
			s.log.Info("model pulled", "source", key, "id", m.ID, "path", m.Path)
		}
	}()
	return p, nil
}

// Pull fetches a model and waits for it. Cancelling ctx cancels the pull (its partial file
// stays for a later resume).
func (s *Store) Pull(ctx context.Context, req PullRequest, onProgress func(Progress)) (Model, error) {
	p, err := s.Start(req, onProgress)
	if err != nil {
		return Model{}, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.cancel()
		<-p.done
	}
	return p.model, p.err
}

// run resolves the reference, finds the sources (peers first), and fetches.
func (s *Store) run(ctx context.Context, p *Pull, ref Ref) (Model, error) {
	p.tr.update(func(pr *Progress) { pr.State = StateResolving })
	layers := p.req.Layers

	// What the node holds already needs no fetch: the file itself, or for a stage the full
	// model or a stage file with exactly these layers.
	if id := ref.ModelID(); id != "" {
		if m, ok := s.local(id, layers); ok {
			p.tr.update(func(pr *Progress) {
				pr.Total, pr.Done, pr.File, pr.Dir, pr.Note = m.Size, m.Size, filepath.Base(m.Path), m.Dir, "already present"
			})
			return m, nil
		}
	}

	peers, peerRem := s.peerSources(ctx, ref, layers)
	if ctx.Err() != nil {
		return Model{}, ctx.Err()
	}
	if len(peers) > 0 {
		m, err := s.fetch(ctx, p, peers, peerRem, layers, "peer")
		if err == nil || ctx.Err() != nil || ref.Kind == KindPeer {
			return m, err
		}
		s.log.Warn("fetch from peers failed; trying the origin", "source", ref.String(), "err", err)
	}
	var src Source
	switch ref.Kind {
	case KindPeer:
		return Model{}, fmt.Errorf("%w: no peer holds model %q (pull it from the hub by org/repo:file)", ErrNotFound, ref.ID)
	case KindHub:
		if ref.File == "" {
			r, err := s.opt.Hub.chooseFile(ctx, s.opt.Client, ref)
			if err != nil {
				return Model{}, err
			}
			ref = r
			if err := validFileName(ref.FileName()); err != nil {
				return Model{}, err
			}
			if m, ok := s.local(ref.ModelID(), layers); ok {
				return m, nil
			}
		}
		hub := s.opt.Hub
		src = &httpFile{kind: "hub", url: hub.fileURL(ref), name: ref.FileName(), origin: ref.String(), hub: &hub, client: s.opt.Client}
	case KindURL:
		src = &httpFile{kind: "url", url: ref.URL, name: ref.FileName(), origin: ref.String(), client: s.opt.Client, sha256: p.req.SHA256}
	}
	rem, err := src.Stat(ctx)
	if err != nil {
		return Model{}, err
	}
	return s.fetch(ctx, p, []Source{src}, rem, layers, src.Kind())
}

// local finds a model the node already holds that satisfies the request.
func (s *Store) local(id string, layers *Stage) (Model, bool) {
	if m, err := s.cat.Get(id); err == nil && m.Stage == nil {
		return m, true
	}
	if layers != nil {
		if m, err := s.cat.Get(strings.TrimSuffix(StageFileName(id, layers.First, layers.Last), ".gguf")); err == nil {
			return m, true
		}
	}
	return Model{}, false
}

// fetch downloads from sources into the first writable directory, a whole file or a stage.
func (s *Store) fetch(ctx context.Context, p *Pull, sources []Source, rem Remote, layers *Stage, from string) (Model, error) {
	dir, err := s.writableDir()
	if err != nil {
		return Model{}, err
	}
	if err := validFileName(rem.Name); err != nil {
		return Model{}, err
	}
	name := rem.Name
	id := strings.TrimSuffix(name, ".gguf")
	if layers != nil {
		name = StageFileName(id, layers.First, layers.Last)
	}
	final := filepath.Join(dir, name)
	p.tr.update(func(pr *Progress) {
		pr.ID, pr.File, pr.Dir, pr.From = strings.TrimSuffix(name, ".gguf"), name, dir, from
		pr.Peers = 0
		if from == "peer" {
			pr.Peers = len(sources)
		}
		if rem.SHA256 == "" && layers == nil {
			pr.Note = "the source states no SHA-256: the download cannot be verified"
		}
	})
	var m *Manifest
	if layers != nil {
		m, err = s.fetchStage(ctx, sources, rem, layers.First, layers.Last, final, p.tr)
		if err == nil && !m.Verified {
			p.tr.update(func(pr *Progress) {
				pr.Note = "stage tensors unverified: the hub states only the whole file's SHA-256, which a stage fetch cannot check"
			})
		}
	} else {
		for attempt := 1; ; attempt++ {
			m, err = s.fetchFile(ctx, sources, rem, final, p.tr)
			var ve *VerifyError
			if !errors.As(err, &ve) || attempt >= s.opt.VerifyAttempts {
				break
			}
			s.log.Warn("download failed verification; fetching it again", "file", name, "err", err)
			p.tr.update(func(pr *Progress) { pr.Note = "SHA-256 mismatch; downloading again" })
		}
	}
	if err != nil {
		return Model{}, err
	}
	p.tr.update(func(pr *Progress) { pr.Verified = m.Verified; pr.Done = pr.Total })
	return s.describe(final)
}
