package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
)

// Remote describes a file a Source serves.
type Remote struct {
	Name   string // file name, e.g. "model-Q4_K_M.gguf"
	Size   int64
	SHA256 string // lowercase hex; empty when the source states no hash
	// Origin is the canonical reference the file came from (hf://…, a URL), recorded in the
	// model's manifest so that peers can recognise the same model later.
	Origin string
	// Commit is the hub revision the file was resolved at, when the hub says.
	Commit string
	// Ranges reports whether the source answers HTTP Range requests; without them a download
	// runs as one stream and cannot resume.
	Ranges bool
}

// Source serves the bytes of one file: the hub, a plain URL, or a cluster peer. Every source
// of one download must serve the same bytes; the SHA-256 check at the end proves they did.
type Source interface {
	// String names the source for logs and progress. It never includes credentials.
	String() string
	// Kind is "hub", "url" or "peer", the label of the download metrics.
	Kind() string
	// Stat describes the file.
	Stat(ctx context.Context) (Remote, error)
	// ReadRange returns the bytes [off, off+n) of the file.
	ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error)
}

// ManifestSource is a Source that also provides per-tensor hashes (exo peers do), which lets a
// stage-only fetch verify each tensor it takes.
type ManifestSource interface {
	Source
	Manifest(ctx context.Context) (*Manifest, error)
}

// SourceError is a failed request to a source. Temporary errors (network trouble, 5xx, 429)
// are retried with backoff; others (404, 401, a source that ignores ranges) are not.
type SourceError struct {
	Source    string
	Op        string
	Status    int // HTTP status, 0 when the request did not complete
	Temporary bool
	Err       error
}

func (e *SourceError) Error() string {
	msg := e.Source + ": " + e.Op
	if e.Status != 0 {
		msg += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *SourceError) Unwrap() error { return e.Err }

// temporary reports whether err is worth retrying.
func temporary(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var se *SourceError
	if errors.As(err, &se) {
		return se.Temporary
	}
	// Anything else that breaks a running transfer (connection reset, unexpected EOF) is
	// network trouble.
	return true
}

// statusError turns an unexpected HTTP status into a SourceError, with a hint for the statuses
// users meet most.
func statusError(src, op string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	detail := strings.TrimSpace(string(body))
	if len(detail) > 200 {
		detail = detail[:200] + "…"
	}
	var err error
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		err = errors.New("access denied: gated or private repositories need a token in HF_TOKEN with access to them")
	case http.StatusNotFound:
		err = errors.New("not found")
	case http.StatusRequestedRangeNotSatisfiable:
		err = errors.New("range not satisfiable: the file changed size")
	default:
		if detail != "" {
			err = errors.New(detail)
		}
	}
	tmp := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
	return &SourceError{Source: src, Op: op, Status: resp.StatusCode, Temporary: tmp, Err: err}
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// etagSHA256 returns the SHA-256 an ETag carries, as the hub's LFS ETags do ("<hex>" or
// W/"<hex>"), or "" for any other ETag (git blob SHA-1s of small files, opaque server tags).
func etagSHA256(etag string) string {
	etag = strings.TrimPrefix(strings.TrimSpace(etag), "W/")
	etag = strings.ToLower(strings.Trim(etag, `"`))
	if sha256Hex.MatchString(etag) {
		return etag
	}
	return ""
}

// rangeBody checks that resp holds exactly bytes [off, off+n) of the file and returns its body.
func rangeBody(src string, resp *http.Response, off, n, size int64) (io.ReadCloser, error) {
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var start, end, total int64
		cr := resp.Header.Get("Content-Range")
		if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &start, &end, &total); err != nil {
			// A total of "*" is allowed by the RFC; only start and end matter here.
			if _, err2 := fmt.Sscanf(cr, "bytes %d-%d/*", &start, &end); err2 != nil {
				resp.Body.Close()
				return nil, &SourceError{Source: src, Op: "range read", Status: resp.StatusCode, Err: fmt.Errorf("bad Content-Range %q", cr)}
			}
			total = size
		}
		if start != off || end != off+n-1 || (size > 0 && total != size) {
			resp.Body.Close()
			return nil, &SourceError{Source: src, Op: "range read", Status: resp.StatusCode,
				Err: fmt.Errorf("asked for bytes %d-%d of %d, got Content-Range %q", off, off+n-1, size, cr)}
		}
	case http.StatusOK:
		if off != 0 || n != size {
			resp.Body.Close()
			return nil, &SourceError{Source: src, Op: "range read", Status: resp.StatusCode,
				Err: errors.New("the server ignores HTTP Range requests")}
		}
	default:
		defer resp.Body.Close()
		return nil, statusError(src, "range read", resp)
	}
	return &exactReader{r: resp.Body, left: n, src: src}, nil
}

// exactReader fails a body that ends before its promised length, so that a cut connection is
// never mistaken for the end of a range.
type exactReader struct {
	r    io.ReadCloser
	left int64
	src  string
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, &SourceError{Source: e.src, Op: "range read", Temporary: true, Err: io.ErrUnexpectedEOF}
		}
		return n, io.EOF
	}
	return n, err
}

func (e *exactReader) Close() error { return e.r.Close() }
