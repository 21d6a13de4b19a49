package store

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
)

// Ref names a model to fetch, as a user writes it:
//
//	org/repo                 the repository's only GGUF file (or its Q4_K_M one)
//	org/repo:file.gguf       one file of a Hugging Face repository
//	org/repo@rev:file.gguf   the same at a branch, tag or commit
//	hf://org/repo/file.gguf  (hf://org/repo@rev/dir/file.gguf)
//	https://host/path.gguf   any URL
//	model-id                 a model the cluster's peers already hold
type Ref struct {
	Kind     RefKind
	Repo     string // org/repo (hub)
	Revision string // hub revision; "main" unless given
	File     string // path inside the repository; empty: choose from the listing
	URL      string // KindURL
	ID       string // KindPeer: the model id to ask peers for
}

// RefKind says where a Ref points.
type RefKind int

// The kinds of Ref.
const (
	KindHub RefKind = iota
	KindURL
	KindPeer
)

// DefaultRevision is the hub revision used when a ref names none.
const DefaultRevision = "main"

// ErrBadRef marks a model reference that cannot be parsed.
var ErrBadRef = errors.New("bad model reference")

// ParseRef parses a user's model reference.
func ParseRef(s string) (Ref, error) {
	s = strings.TrimSpace(s)
	bad := func(format string, args ...any) (Ref, error) {
		return Ref{}, fmt.Errorf("%w %q: %s", ErrBadRef, s, fmt.Sprintf(format, args...))
	}
	switch {
	case s == "":
		return bad("empty")
	case strings.HasPrefix(s, "https://"), strings.HasPrefix(s, "http://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return bad("not a valid URL")
		}
		if u.User != nil {
			return bad("credentials in URLs are not accepted (they would end up in logs); use HF_TOKEN for the hub")
		}
		return Ref{Kind: KindURL, URL: u.String()}, nil
	case strings.HasPrefix(s, "hf://"):
		rest := strings.TrimPrefix(s, "hf://")
		parts := strings.SplitN(rest, "/", 3)
		if len(parts) < 2 {
			return bad("want hf://org/repo/file.gguf")
		}
		r := Ref{Kind: KindHub, Repo: parts[0] + "/" + parts[1], Revision: DefaultRevision}
		if len(parts) == 3 {
			r.File = parts[2]
		}
		return r.withRevision(bad)
	case strings.Contains(s, "/"):
		repo, file, _ := strings.Cut(s, ":")
		r := Ref{Kind: KindHub, Repo: repo, File: file, Revision: DefaultRevision}
		if strings.Count(strings.Split(repo, "@")[0], "/") != 1 {
			return bad("want org/repo[:file.gguf]")
		}
		return r.withRevision(bad)
	default:
		if strings.ContainsAny(s, `:\`) || s == "." || s == ".." {
			return bad("want org/repo[:file.gguf], hf://org/repo/file.gguf, an https URL or a model id")
		}
		return Ref{Kind: KindPeer, ID: strings.TrimSuffix(s, ".gguf")}, nil
	}
}

// withRevision splits "org/repo@rev" and checks the parts.
func (r Ref) withRevision(bad func(string, ...any) (Ref, error)) (Ref, error) {
	if repo, rev, ok := strings.Cut(r.Repo, "@"); ok {
		if rev == "" {
			return bad("empty revision after @")
		}
		r.Repo, r.Revision = repo, rev
	}
	org, name, _ := strings.Cut(r.Repo, "/")
	for _, p := range []string{org, name} {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, " \\?#%") {
			return bad("repository %q is not org/repo", r.Repo)
		}
	}
	if r.File != "" {
		clean := path.Clean(r.File)
		if clean != r.File || strings.HasPrefix(clean, "/") || strings.HasPrefix(clean, "../") || clean == ".." {
			return bad("file %q is not a clean relative path", r.File)
		}
		if !strings.HasSuffix(r.File, ".gguf") {
			return bad("file %q is not a .gguf file", r.File)
		}
	}
	return r, nil
}

// String is the canonical form of the reference, recorded as a pulled model's origin.
func (r Ref) String() string {
	switch r.Kind {
	case KindURL:
		return r.URL
	case KindPeer:
		return r.ID
	}
	repo := r.Repo
	if r.Revision != "" && r.Revision != DefaultRevision {
		repo += "@" + r.Revision
	}
	if r.File == "" {
		return "hf://" + repo
	}
	return "hf://" + repo + "/" + r.File
}

// FileName is the name the fetched file gets on disk, when the reference determines it.
func (r Ref) FileName() string {
	switch r.Kind {
	case KindHub:
		if r.File == "" {
			return ""
		}
		return path.Base(r.File)
	case KindURL:
		u, err := url.Parse(r.URL)
		if err != nil {
			return ""
		}
		return path.Base(u.Path)
	}
	return r.ID + ".gguf"
}

// ModelID is the id the fetched model gets: its file name without ".gguf".
func (r Ref) ModelID() string { return strings.TrimSuffix(r.FileName(), ".gguf") }
