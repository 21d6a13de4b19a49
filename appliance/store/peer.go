package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Peer sharing: every node serves the models it holds to cluster peers, over mutual TLS with
// the cluster's certificates, and a node that needs a model asks its peers before the hub.
//
//	GET /exo/v1/models               the models this node serves (PeerModel list)
//	GET /exo/v1/models/{id}/manifest the model's Manifest: whole-file, header and tensor hashes
//	GET /exo/v1/models/{id}/file     the file, with HTTP Range support
const peerPath = "/exo/v1/models"

// PeerModel is one model in a peer's listing.
type PeerModel struct {
	ID   string `json:"id"`
	File string `json:"file"`
	Size int64  `json:"size"`
	// SHA256 and Origin are known when the peer has the model's manifest at hand (pulled
	// models always do); the manifest endpoint computes it otherwise.
	SHA256 string `json:"sha256,omitempty"`
	Origin string `json:"origin,omitempty"`
	Stage  *Stage `json:"stage,omitempty"`
}

// PeerHandler serves this node's models to peers. Mount it on a server whose TLS
// configuration requires client certificates signed by the cluster CA
// (tls.RequireAndVerifyClientCert); the handler refuses any request without a verified one.
func (s *Store) PeerHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+peerPath, s.servePeerList)
	mux.HandleFunc("GET "+peerPath+"/{id}/manifest", s.servePeerManifest)
	mux.HandleFunc("GET "+peerPath+"/{id}/file", s.servePeerFile)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "model sharing needs a client certificate of the cluster (mutual TLS)", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Store) servePeerList(w http.ResponseWriter, _ *http.Request) {
	models, _ := s.cat.List()
	out := make([]PeerModel, 0, len(models))
	for _, m := range models {
		pm := PeerModel{ID: m.ID, File: filepath.Base(m.Path), Size: m.Size, Stage: m.Stage}
		if man := s.manifests.cached(m.Path); man != nil {
			pm.SHA256, pm.Origin = man.SHA256, man.Origin
		}
		out = append(out, pm)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"models": out})
}

func (s *Store) servePeerManifest(w http.ResponseWriter, r *http.Request) {
	m, err := s.Manifest(r.PathValue("id"))
	if err != nil {
		peerError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

func (s *Store) servePeerFile(w http.ResponseWriter, r *http.Request) {
	m, err := s.cat.Get(r.PathValue("id"))
	if err != nil {
		peerError(w, err)
		return
	}
	f, err := os.Open(m.Path)
	if err != nil {
		peerError(w, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		peerError(w, err)
		return
	}
	if man := s.manifests.cached(m.Path); man != nil {
		w.Header().Set("X-Exo-Sha256", man.SHA256)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(&countingWriter{ResponseWriter: w, add: s.metrics.served.Add}, r, "", st.ModTime(), f)
}

func peerError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}

type countingWriter struct {
	http.ResponseWriter
	add func(float64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.add(float64(n))
	return n, err
}

// cached returns the manifest of path if it is at hand (sidecar or memory) without hashing.
func (ms *manifests) cached(path string) *Manifest {
	if m, err := ReadManifest(path); err == nil {
		return m
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.byPath[path]
	if m == nil {
		return nil
	}
	if st, err := os.Stat(path); err != nil || st.Size() != m.Size || st.ModTime().UnixNano() != m.ModTimeNS {
		return nil
	}
	return m
}

// PeerClient fetches models from peers over TLS.
type PeerClient struct {
	client *http.Client
}

// NewPeerClient returns a client that presents the node's certificate and trusts the cluster
// CA, both in tlsConf.
func NewPeerClient(tlsConf *tls.Config) *PeerClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf.Clone()
	tr.ResponseHeaderTimeout = 60 * time.Second
	tr.MaxIdleConnsPerHost = 16
	tr.Proxy = nil // peers are on the cluster's own network
	return &PeerClient{client: &http.Client{Transport: tr}}
}

// NewPeerClientDialer returns a client whose connections come from dial, which must return a
// connection that is already mutually authenticated with the cluster's certificates (a stream
// of the cluster's tensor transport): requests go over it as they would over TLS.
func NewPeerClientDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) *PeerClient {
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, addr)
		},
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
	return &PeerClient{client: &http.Client{Transport: tr}}
}

func peerURL(addr string, parts ...string) string {
	u := "https://" + addr + peerPath
	for _, p := range parts {
		u += "/" + url.PathEscape(p)
	}
	return u
}

// List asks a peer which models it serves.
func (c *PeerClient) List(ctx context.Context, addr string) ([]PeerModel, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(addr), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, &SourceError{Source: "peer " + addr, Op: "list models", Temporary: true, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError("peer "+addr, "list models", resp)
	}
	var body struct {
		Models []PeerModel `json:"models"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&body); err != nil {
		return nil, &SourceError{Source: "peer " + addr, Op: "list models", Err: err}
	}
	return body.Models, nil
}

// Source returns the model id of the peer at addr as a source.
func (c *PeerClient) Source(addr, id string) *PeerSource {
	return &PeerSource{c: c, addr: addr, id: id}
}

// PeerSource is one model on one peer. It provides per-tensor hashes (ManifestSource).
type PeerSource struct {
	c    *PeerClient
	addr string
	id   string

	mu       sync.Mutex
	manifest *Manifest
}

func (p *PeerSource) String() string { return "peer " + p.addr + " " + p.id }

// Kind is "peer".
func (p *PeerSource) Kind() string { return "peer" }

// Manifest fetches the peer's manifest of the model once.
func (p *PeerSource) Manifest(ctx context.Context) (*Manifest, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.manifest != nil {
		return p.manifest, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(p.addr, p.id, "manifest"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.c.client.Do(req)
	if err != nil {
		return nil, &SourceError{Source: p.String(), Op: "manifest", Temporary: true, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(p.String(), "manifest", resp)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&m); err != nil {
		return nil, &SourceError{Source: p.String(), Op: "manifest", Err: err}
	}
	if !sha256Hex.MatchString(m.SHA256) || m.Size <= 0 {
		return nil, &SourceError{Source: p.String(), Op: "manifest", Err: fmt.Errorf("manifest without size or SHA-256")}
	}
	p.manifest = &m
	return &m, nil
}

// Stat describes the peer's file from its manifest.
func (p *PeerSource) Stat(ctx context.Context) (Remote, error) {
	m, err := p.Manifest(ctx)
	if err != nil {
		return Remote{}, err
	}
	return Remote{Name: m.File, Size: m.Size, SHA256: m.SHA256, Origin: m.Origin, Commit: m.Commit, Ranges: true}, nil
}

// ReadRange reads bytes [off, off+n) of the peer's file.
func (p *PeerSource) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(p.addr, p.id, "file"), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := p.c.client.Do(req)
	if err != nil {
		return nil, &SourceError{Source: p.String(), Op: "GET", Temporary: true, Err: err}
	}
	size := int64(-1)
	p.mu.Lock()
	if p.manifest != nil {
		size = p.manifest.Size
	}
	p.mu.Unlock()
	return rangeBody(p.String(), resp, off, n, size)
}

var stageSuffix = regexp.MustCompile(`\.layers-\d+-\d+$`)

// baseID strips the stage suffix from a stage file's id.
func baseID(id string) string { return stageSuffix.ReplaceAllString(id, "") }

// peerTimeout bounds asking one peer for its listing and manifest.
const peerTimeout = 15 * time.Second

// peerSources finds the peers that hold what ref (and layers) asks for: peers are matched by
// the origin recorded when they pulled the model (or by id for a bare model id), and must
// agree on its SHA-256. Full files come first, since they hold every tensor.
func (s *Store) peerSources(ctx context.Context, ref Ref, layers *Stage) ([]Source, Remote) {
	if s.opt.Peers == nil || s.opt.PeerClient == nil {
		return nil, Remote{}
	}
	addrs := s.opt.Peers()
	type cand struct {
		src  *PeerSource
		pm   PeerModel
		man  *Manifest
		full bool
	}
	var (
		mu    sync.Mutex
		cands []cand
		wg    sync.WaitGroup
	)
	matches := func(pm PeerModel) bool {
		switch ref.Kind {
		case KindPeer:
			return baseID(pm.ID) == ref.ID
		case KindURL:
			return pm.Origin == ref.URL
		}
		if ref.File == "" {
			return strings.HasPrefix(pm.Origin, ref.String()+"/")
		}
		return pm.Origin == ref.String()
	}
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, peerTimeout)
			defer cancel()
			models, err := s.opt.PeerClient.List(pctx, addr)
			if err != nil {
				s.log.Debug("peer listing failed", "peer", addr, "err", err)
				return
			}
			for _, pm := range models {
				if !matches(pm) {
					continue
				}
				full := pm.Stage == nil
				if !full && (layers == nil || pm.Stage.First > layers.First || pm.Stage.Last < layers.Last) {
					continue
				}
				src := s.opt.PeerClient.Source(addr, pm.ID)
				man, err := src.Manifest(pctx)
				if err != nil {
					s.log.Debug("peer manifest failed", "peer", addr, "id", pm.ID, "err", err)
					continue
				}
				mu.Lock()
				cands = append(cands, cand{src: src, pm: pm, man: man, full: full})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(cands) == 0 {
		return nil, Remote{}
	}
	// Full files must agree on their hash: take the largest group, then stage files whose
	// origin matches it.
	groups := map[string][]cand{}
	for _, c := range cands {
		if c.full {
			groups[c.man.SHA256] = append(groups[c.man.SHA256], c)
		}
	}
	var best []cand
	for _, g := range groups {
		if len(g) > len(best) || (len(g) == len(best) && g[0].man.SHA256 < best[0].man.SHA256) {
			best = g
		}
	}
	var rem Remote
	if len(best) > 0 {
		m := best[0].man
		rem = Remote{Name: m.File, Size: m.Size, SHA256: m.SHA256, Origin: m.Origin, Commit: m.Commit, Ranges: true}
	} else if layers == nil {
		return nil, Remote{}
	} else {
		m := cands[0].man
		rem = Remote{Name: baseID(cands[0].pm.ID) + ".gguf", Origin: m.Origin, Ranges: true}
	}
	srcs := make([]Source, 0, len(cands))
	for _, c := range best {
		srcs = append(srcs, c.src)
	}
	if layers != nil {
		var stages []cand
		for _, c := range cands {
			if !c.full && (rem.Origin == "" || c.man.Origin == rem.Origin) {
				stages = append(stages, c)
			}
		}
		sort.Slice(stages, func(i, j int) bool { return stages[i].src.String() < stages[j].src.String() })
		for _, c := range stages {
			srcs = append(srcs, c.src)
		}
	}
	sort.SliceStable(srcs[:len(best)], func(i, j int) bool { return srcs[i].String() < srcs[j].String() })
	return srcs, rem
}
