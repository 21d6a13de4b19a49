package store

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/exo-nix/exo/appliance/buildinfo"
)

// DefaultHubEndpoint is Hugging Face; HF_ENDPOINT overrides it (mirrors, tests).
const DefaultHubEndpoint = "https://huggingface.co"

// Hub reaches a Hugging Face compatible hub.
type Hub struct {
	// Endpoint is the hub's base URL (HF_ENDPOINT), DefaultHubEndpoint when empty.
	Endpoint string
	// Token (HF_TOKEN) is sent as a bearer token to the endpoint's host only: never to other
	// URLs, and Go's HTTP client drops it on redirects to other hosts such as the hub's CDN.
	Token string
}

// HubFromEnv reads HF_ENDPOINT and HF_TOKEN.
func HubFromEnv(getenv func(string) string) Hub {
	return Hub{Endpoint: getenv("HF_ENDPOINT"), Token: strings.TrimSpace(getenv("HF_TOKEN"))}
}

func (h Hub) endpoint() string {
	if h.Endpoint == "" {
		return DefaultHubEndpoint
	}
	return strings.TrimRight(h.Endpoint, "/")
}

// fileURL is where the hub serves a file: {endpoint}/{repo}/resolve/{revision}/{file}.
func (h Hub) fileURL(r Ref) string {
	segs := strings.Split(r.File, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return h.endpoint() + "/" + r.Repo + "/resolve/" + url.PathEscape(r.Revision) + "/" + strings.Join(segs, "/")
}

// hubRef recognises a URL that points into the hub, so that it gets the hub's token and hash
// handling rather than being treated as an anonymous URL.
func (h Hub) hubRef(raw string) (Ref, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return Ref{}, false
	}
	base, err := url.Parse(h.endpoint())
	if err != nil || u.Scheme != base.Scheme || u.Host != base.Host {
		return Ref{}, false
	}
	p := strings.TrimPrefix(u.Path, strings.TrimRight(base.Path, "/"))
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 5)
	if len(parts) != 5 || parts[2] != "resolve" {
		return Ref{}, false
	}
	r, err := ParseRef(parts[0] + "/" + parts[1] + "@" + parts[3] + ":" + parts[4])
	if err != nil {
		return Ref{}, false
	}
	return r, true
}

var splitShard = regexp.MustCompile(`-\d{5}-of-\d{5}\.gguf$`)

// chooseFile picks the GGUF of a repository when the reference names none: the only one, else
// the Q4_K_M one (the usual default), else an error listing the choices.
func (h Hub) chooseFile(ctx context.Context, client *http.Client, r Ref) (Ref, error) {
	api := h.endpoint() + "/api/models/" + r.Repo + "/revision/" + url.PathEscape(r.Revision)
	src := "hub " + r.Repo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api, nil)
	if err != nil {
		return r, err
	}
	h.authorize(req)
	resp, err := client.Do(req)
	if err != nil {
		return r, &SourceError{Source: src, Op: "list files", Temporary: true, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, statusError(src, "list files", resp)
	}
	var info struct {
		Siblings []struct {
			Name string `json:"rfilename"`
		} `json:"siblings"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&info); err != nil {
		return r, &SourceError{Source: src, Op: "list files", Err: fmt.Errorf("bad listing: %w", err)}
	}
	var ggufs []string
	for _, s := range info.Siblings {
		base := strings.ToLower(path.Base(s.Name))
		if strings.HasSuffix(base, ".gguf") && !strings.HasPrefix(base, "mmproj") {
			ggufs = append(ggufs, s.Name)
		}
	}
	sort.Strings(ggufs)
	pick := func(name string) (Ref, error) {
		r.File = name
		return r.withRevision(func(f string, a ...any) (Ref, error) {
			return Ref{}, fmt.Errorf("%w: hub listing of %s: %s", ErrBadRef, r.Repo, fmt.Sprintf(f, a...))
		})
	}
	switch {
	case len(ggufs) == 0:
		return r, fmt.Errorf("%w: %s@%s holds no .gguf file", ErrNotFound, r.Repo, r.Revision)
	case len(ggufs) == 1:
		return pick(ggufs[0])
	}
	var q4 []string
	for _, g := range ggufs {
		if strings.Contains(strings.ToUpper(g), "Q4_K_M") {
			q4 = append(q4, g)
		}
	}
	if len(q4) == 1 {
		return pick(q4[0])
	}
	return r, fmt.Errorf("%w: %s holds several GGUF files; name one as %s:FILE: %s",
		ErrBadRef, r.Repo, r.Repo, strings.Join(ggufs, ", "))
}

func (h Hub) authorize(req *http.Request) {
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
}

// httpFile is a file behind an HTTP(S) URL: a hub file or a plain URL.
type httpFile struct {
	kind   string // "hub" or "url"
	url    string
	name   string
	origin string
	hub    *Hub // set for hub files: the token goes to the hub only
	client *http.Client
	sha256 string // expected hash given by the user, for URLs without one
}

func (f *httpFile) String() string {
	if f.kind == "hub" {
		return "hub " + f.origin
	}
	return "url " + redactURL(f.url)
}

func (f *httpFile) Kind() string { return f.kind }

func (f *httpFile) newRequest(ctx context.Context, method string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, f.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "exo/"+buildinfo.Get().Version)
	if f.hub != nil {
		f.hub.authorize(req)
	}
	return req, nil
}

// Stat asks with HEAD. The hub answers an LFS file with a redirect to its CDN whose headers
// carry the file's SHA-256 (X-Linked-Etag) and size (X-Linked-Size); the redirect is therefore
// read before it is followed.
func (f *httpFile) Stat(ctx context.Context) (Remote, error) {
	rem := Remote{Name: f.name, Origin: f.origin, Size: -1}
	req, err := f.newRequest(ctx, http.MethodHead)
	if err != nil {
		return rem, err
	}
	noFollow := *f.client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Do(req)
	if err != nil {
		return rem, &SourceError{Source: f.String(), Op: "HEAD", Temporary: true, Err: err}
	}
	resp.Body.Close()
	if linked := resp.Header.Get("X-Linked-Etag"); linked != "" {
		rem.SHA256 = etagSHA256(linked)
	}
	if n, err := strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64); err == nil {
		rem.Size = n
	}
	rem.Commit = resp.Header.Get("X-Repo-Commit")
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		req, _ = f.newRequest(ctx, http.MethodHead)
		if resp, err = f.client.Do(req); err != nil {
			return rem, &SourceError{Source: f.String(), Op: "HEAD (after redirect)", Temporary: true, Err: err}
		}
		resp.Body.Close()
	}
	if resp.StatusCode != http.StatusOK && f.kind == "url" && resp.StatusCode != http.StatusNotFound && resp.StatusCode < 500 {
		// Some servers (pre-signed object-store URLs) answer GET only: ask for one byte.
		return f.probe(ctx, rem)
	}
	if resp.StatusCode != http.StatusOK {
		return rem, statusError(f.String(), "HEAD", resp)
	}
	if rem.Size < 0 {
		rem.Size = resp.ContentLength
	}
	if rem.Size < 0 {
		return rem, &SourceError{Source: f.String(), Op: "HEAD", Err: errors.New("the server states no file size")}
	}
	if rem.SHA256 == "" && f.kind == "hub" {
		rem.SHA256 = etagSHA256(resp.Header.Get("ETag"))
	}
	if rem.SHA256 == "" {
		rem.SHA256 = digestSHA256(resp.Header)
	}
	if f.sha256 != "" {
		if rem.SHA256 != "" && rem.SHA256 != f.sha256 {
			return rem, &SourceError{Source: f.String(), Op: "HEAD", Err: fmt.Errorf("the server states SHA-256 %s, but %s was expected", rem.SHA256, f.sha256)}
		}
		rem.SHA256 = f.sha256
	}
	rem.Ranges = f.kind == "hub" || strings.EqualFold(resp.Header.Get("Accept-Ranges"), "bytes")
	return rem, nil
}

// probe learns size and range support from a one-byte range GET.
func (f *httpFile) probe(ctx context.Context, rem Remote) (Remote, error) {
	req, err := f.newRequest(ctx, http.MethodGet)
	if err != nil {
		return rem, err
	}
	req.Header.Set("Range", "bytes=0-0")
	resp, err := f.client.Do(req)
	if err != nil {
		return rem, &SourceError{Source: f.String(), Op: "GET bytes=0-0", Temporary: true, Err: err}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var start, end int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &rem.Size); err != nil {
			return rem, &SourceError{Source: f.String(), Op: "GET bytes=0-0", Err: fmt.Errorf("bad Content-Range %q", resp.Header.Get("Content-Range"))}
		}
		rem.Ranges = true
	case http.StatusOK:
		rem.Size = resp.ContentLength
	default:
		return rem, statusError(f.String(), "GET bytes=0-0", resp)
	}
	if rem.Size < 0 {
		return rem, &SourceError{Source: f.String(), Op: "GET bytes=0-0", Err: errors.New("the server states no file size")}
	}
	if rem.SHA256 == "" {
		rem.SHA256 = digestSHA256(resp.Header)
	}
	if f.sha256 != "" {
		if rem.SHA256 != "" && rem.SHA256 != f.sha256 {
			return rem, &SourceError{Source: f.String(), Op: "GET bytes=0-0", Err: fmt.Errorf("the server states SHA-256 %s, but %s was expected", rem.SHA256, f.sha256)}
		}
		rem.SHA256 = f.sha256
	}
	return rem, nil
}

// digestSHA256 reads an RFC 9530 Repr-Digest (or RFC 3230 Digest) sha-256 value.
func digestSHA256(h http.Header) string {
	for _, name := range []string{"Repr-Digest", "Digest"} {
		for _, part := range strings.Split(h.Get(name), ",") {
			alg, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.EqualFold(alg, "sha-256") {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(strings.Trim(val, ":"))
			if err == nil && len(b) == 32 {
				return hex.EncodeToString(b)
			}
		}
	}
	return ""
}

// ReadRange always sends a Range header, even for the whole file: a server that ignores it
// answers 200, which rangeBody accepts only when the whole file was asked for.
func (f *httpFile) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	req, err := f.newRequest(ctx, http.MethodGet)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, &SourceError{Source: f.String(), Op: "GET", Temporary: true, Err: err}
	}
	size := int64(-1)
	if resp.StatusCode == http.StatusOK {
		size = resp.ContentLength
	}
	return rangeBody(f.String(), resp, off, n, size)
}

// redactURL drops the query (signed CDN URLs carry credentials there) and any user info.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<bad url>"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
