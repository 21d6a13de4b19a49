// Package hubtest is a stand-in for the Hugging Face hub in tests: an HTTPS server laid out
// like the hub (/{repo}/resolve/{revision}/{file}, LFS redirects with X-Linked-Etag and
// X-Linked-Size, /api/models listings, Range requests), with counters of the bytes it serves
// and faults to inject: flipped bytes, stalls, failing requests.
package hubtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Commit is the revision the fake hub reports in X-Repo-Commit.
const Commit = "0123456789abcdef0123456789abcdef01234567"

// Request is one data request the server answered.
type Request struct {
	Path  string
	Range string
	Auth  string // the Authorization header received
}

// Server is a fake hub. Start one with New.
type Server struct {
	*httptest.Server
	// Token, when set, is required as "Authorization: Bearer <Token>" on every hub request.
	Token string

	mu          sync.Mutex
	files       map[string][]byte // "org/repo/path" → bytes
	bySHA       map[string][]byte
	served      int64
	requests    []Request
	inflight    int
	maxInflight int
	flips       map[int64]int // file offsets to flip: how many more responses (<0: always)
	flipSHA     string
	budget      int64 // bytes to serve before stalling; <0: no limit
	release     chan struct{}
	failNext    int
	failCode    int
	noRanges    bool
	plain       map[string][]byte
	noHead      bool
	digest      bool
}

// New starts a TLS fake hub.
func New() *Server {
	s := &Server{files: map[string][]byte{}, bySHA: map[string][]byte{}, budget: -1, release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/models/", s.listing)
	mux.HandleFunc("/cdn/", s.cdn)
	mux.HandleFunc("/files/", s.plainFile)
	mux.HandleFunc("/", s.resolve)
	s.Server = httptest.NewUnstartedServer(mux)
	// Clients that cancel or die mid-handshake are what some tests do on purpose.
	s.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Server.StartTLS()
	return s
}

// Endpoint is the value for HF_ENDPOINT.
func (s *Server) Endpoint() string { return s.URL }

// CertPEM is the server's certificate, for clients (SSL_CERT_FILE) that must trust it.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// Add publishes data as repo's file (revision "main" and any other).
func (s *Server) Add(repo, file string, data []byte) string {
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[repo+"/"+file] = data
	s.bySHA[h] = data
	return h
}

// AddFile publishes a file from disk.
func (s *Server) AddFile(repo, file, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return s.Add(repo, file, data), nil
}

// AddPlain serves data at /files/name as an ordinary web server would: no hub headers.
func (s *Server) AddPlain(name string, data []byte) string {
	sum := sha256.Sum256(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plain == nil {
		s.plain = map[string][]byte{}
	}
	s.plain[name] = data
	s.bySHA[hex.EncodeToString(sum[:])] = data
	return s.URL + "/files/" + name
}

// PlainOptions change how /files/ answers: refuse HEAD (as pre-signed object-store URLs do),
// and state the SHA-256 in a Repr-Digest header.
func (s *Server) PlainOptions(noHead, digest bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noHead, s.digest = noHead, digest
}

// Served is the number of file bytes sent so far (response bodies of data requests).
func (s *Server) Served() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

// Requests lists the data requests answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// MaxConcurrent is the most data requests that were in flight at once.
func (s *Server) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInflight
}

// InFlight is the number of data requests being answered now.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight
}

// Reset clears the counters.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.served, s.requests, s.maxInflight = 0, nil, 0
}

// FlipOnce corrupts the byte at offset of the file with the given SHA-256 the next time a
// response covers it; later responses are correct again.
func (s *Server) FlipOnce(sha string, offset int64) { s.flip(sha, offset, 1) }

// Corrupt flips the byte at offset in every response from now on: the file no longer matches
// the hash the hub states.
func (s *Server) Corrupt(sha string, offset int64) { s.flip(sha, offset, -1) }

func (s *Server) flip(sha string, offset int64, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flips == nil || s.flipSHA != sha {
		s.flips = map[int64]int{}
	}
	s.flipSHA = sha
	s.flips[offset] = times
}

// StallAfter lets n more file bytes out, then holds every data response until Release.
func (s *Server) StallAfter(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.budget = n
	s.release = make(chan struct{})
}

// Release ends a stall and lifts the limit.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.budget = -1
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// FailNext answers the next n data requests with HTTP code.
func (s *Server) FailNext(n, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failCode = n, code
}

// IgnoreRanges makes data requests answer the whole file (200) whatever their Range header.
func (s *Server) IgnoreRanges(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRanges = v
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.Token == "" || r.Header.Get("Authorization") == "Bearer "+s.Token {
		return true
	}
	w.Header().Set("X-Error-Code", "GatedRepo")
	http.Error(w, "Access to this repository is restricted.", http.StatusUnauthorized)
	return false
}

// resolve answers /{org}/{repo}/resolve/{rev}/{file}: HEAD and GET redirect to the CDN with
// the LFS headers, as the hub does for LFS files.
func (s *Server) resolve(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 5)
	if len(parts) != 5 || parts[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	if !s.authorized(w, r) {
		return
	}
	s.mu.Lock()
	data, ok := s.files[parts[0]+"/"+parts[1]+"/"+parts[4]]
	s.mu.Unlock()
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	w.Header().Set("X-Repo-Commit", Commit)
	w.Header().Set("X-Linked-Etag", `"`+h+`"`)
	w.Header().Set("X-Linked-Size", fmt.Sprint(len(data)))
	w.Header().Set("ETag", `"`+h+`"`)
	w.Header().Set("Location", "/cdn/"+h+"?X-Amz-Signature=secret-signature")
	w.WriteHeader(http.StatusFound)
}

func (s *Server) listing(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/api/models/")
	repo, _, _ := strings.Cut(rest, "/revision/")
	s.mu.Lock()
	var names []string
	for k := range s.files {
		if f, ok := strings.CutPrefix(k, repo+"/"); ok {
			names = append(names, f)
		}
	}
	s.mu.Unlock()
	if len(names) == 0 {
		http.Error(w, "Repository not found", http.StatusNotFound)
		return
	}
	sort.Strings(names)
	type sib struct {
		Name string `json:"rfilename"`
	}
	out := struct {
		ID       string `json:"id"`
		SHA      string `json:"sha"`
		Siblings []sib  `json:"siblings"`
	}{ID: repo, SHA: Commit}
	for _, n := range append([]string{"README.md", "config.json"}, names...) {
		out.Siblings = append(out.Siblings, sib{n})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *Server) plainFile(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	data, ok := s.plain[strings.TrimPrefix(r.URL.Path, "/files/")]
	noHead, digest := s.noHead, s.digest
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if noHead && r.Method == http.MethodHead {
		http.Error(w, "SignatureDoesNotMatch", http.StatusForbidden)
		return
	}
	sum := sha256.Sum256(data)
	if digest {
		w.Header().Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
	}
	s.serveData(w, r, hex.EncodeToString(sum[:]))
}

// cdn serves file bytes by SHA-256 with Range support, counting and faulting.
func (s *Server) cdn(w http.ResponseWriter, r *http.Request) {
	s.serveData(w, r, strings.TrimPrefix(r.URL.Path, "/cdn/"))
}

func (s *Server) serveData(w http.ResponseWriter, r *http.Request, h string) {
	s.mu.Lock()
	data, ok := s.bySHA[h]
	noRanges := s.noRanges
	fail := 0
	if r.Method == http.MethodGet && s.failNext > 0 {
		s.failNext--
		fail = s.failCode
	}
	var flips map[int64]int
	if s.flipSHA == h && len(s.flips) > 0 && r.Method == http.MethodGet {
		flips = s.flips
	}
	if r.Method == http.MethodGet {
		s.requests = append(s.requests, Request{Path: r.URL.Path, Range: r.Header.Get("Range"), Auth: r.Header.Get("Authorization")})
		s.inflight++
		s.maxInflight = max(s.maxInflight, s.inflight)
	}
	s.mu.Unlock()
	if r.Method == http.MethodGet {
		defer func() { s.mu.Lock(); s.inflight--; s.mu.Unlock() }()
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if fail != 0 {
		http.Error(w, "injected failure", fail)
		return
	}
	content := &flipReader{r: bytes.NewReader(data), s: s, flips: flips}
	if noRanges {
		// Whole file whatever was asked, as servers without range support answer.
		w.Header().Set("Accept-Ranges", "none")
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.Copy(&meter{ResponseWriter: w, s: s, r: r}, content)
		}
		return
	}
	http.ServeContent(&meter{ResponseWriter: w, s: s, r: r}, r, "", time.Unix(1700000000, 0), content)
}

// flipReader corrupts marked offsets once, as a bad disk or cable would.
type flipReader struct {
	r     *bytes.Reader
	s     *Server
	flips map[int64]int
}

func (f *flipReader) Read(p []byte) (int, error) {
	pos, _ := f.r.Seek(0, io.SeekCurrent)
	n, err := f.r.Read(p)
	if f.flips != nil {
		f.s.mu.Lock()
		for i := 0; i < n; i++ {
			if left, ok := f.flips[pos+int64(i)]; ok && left != 0 {
				p[i] ^= 0xff
				f.flips[pos+int64(i)] = left - 1
			}
		}
		f.s.mu.Unlock()
	}
	return n, err
}

func (f *flipReader) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }

// meter counts body bytes and enforces stalls.
type meter struct {
	http.ResponseWriter
	s *Server
	r *http.Request
}

var errStalled = errors.New("stalled")

func (m *meter) Write(p []byte) (int, error) {
	m.s.mu.Lock()
	n := len(p)
	if m.s.budget >= 0 {
		n = int(min(int64(n), m.s.budget))
		m.s.budget -= int64(n)
	}
	release := m.s.release
	m.s.mu.Unlock()
	w, err := m.ResponseWriter.Write(p[:n])
	m.s.mu.Lock()
	m.s.served += int64(w)
	m.s.mu.Unlock()
	if err != nil {
		return w, err
	}
	if n < len(p) {
		if f, ok := m.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-release:
			k, err := m.Write(p[n:])
			return n + k, err
		case <-m.r.Context().Done():
			return n, errStalled
		}
	}
	return n, nil
}
