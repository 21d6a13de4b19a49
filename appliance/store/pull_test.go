package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testRepo = "exo-test/stories260K-GGUF"
	q8File   = "stories260K-Q8_0.gguf"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPullFromHub(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	sum := hub.Add(testRepo, q8File, data)
	dirs := []string{filepath.Join(t.TempDir(), "models")}
	st := newStore(t, hub, dirs, nil)

	// Hold every response until four ranges are in flight at once.
	hub.StallAfter(0)
	p, err := st.Start(PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 parallel range requests", func() bool { return hub.MaxConcurrent() == 4 })
	hub.Release()
	m, err := p.Wait(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "stories260K-Q8_0" || m.Dir != dirs[0] || m.Layers != 5 || m.Size != int64(len(data)) {
		t.Fatalf("model %+v", m)
	}
	got, err := os.ReadFile(m.Path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("pulled file differs from the hub's (%v)", err)
	}
	// Every byte crossed the wire once, in parallel ranges of one chunk each.
	if hub.Served() != int64(len(data)) {
		t.Errorf("hub served %d bytes for a %d byte file", hub.Served(), len(data))
	}
	chunks := (len(data) + 64<<10 - 1) / (64 << 10)
	if reqs := hub.Requests(); len(reqs) != chunks {
		t.Errorf("%d data requests, want one per chunk (%d)", len(reqs), chunks)
	}
	for _, r := range hub.Requests() {
		if !strings.HasPrefix(r.Range, "bytes=") {
			t.Errorf("request without a range: %+v", r)
		}
	}
	if hub.MaxConcurrent() != 4 {
		t.Errorf("%d ranges in flight at once, want Parallel (4)", hub.MaxConcurrent())
	}
	man, err := ReadManifest(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	if man.SHA256 != sum || !man.Verified || man.Origin != "hf://"+testRepo+"/"+q8File || len(man.Tensors) == 0 {
		t.Errorf("manifest %+v", man)
	}
	for _, leftover := range []string{m.Path + partialSuffix, m.Path + stateSuffix} {
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", leftover)
		}
	}
	last := st.lastEvent()
	if last.State != StateDone || last.Done != last.Total || last.Total != int64(len(data)) || !last.Verified || last.From != "hub" {
		t.Errorf("last progress event %+v", last)
	}
	if got := st.counter("exo_model_pull_bytes_total", "source", "hub"); got != float64(len(data)) {
		t.Errorf("bytes metric %v", got)
	}
	if got := st.counter("exo_model_pulls_total", "result", "done"); got != 1 {
		t.Errorf("pulls metric %v", got)
	}
	if got := st.counter("exo_model_pull_remaining_bytes"); got != 0 {
		t.Errorf("remaining-bytes gauge %v after the pull", got)
	}

	// A second pull finds the model and fetches nothing.
	hub.Reset()
	if _, err := st.Pull(ctxT(t), PullRequest{Source: "hf://" + testRepo + "/" + q8File}, nil); err != nil {
		t.Fatal(err)
	}
	if hub.Served() != 0 {
		t.Errorf("a present model was fetched again (%d bytes)", hub.Served())
	}
}

// TestResumeAfterInterruption: a pull cut off mid-way leaves a partial file; the next pull
// fetches only the missing bytes.
func TestResumeAfterInterruption(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	hub.Add(testRepo, q8File, data)
	dir := t.TempDir()
	st := newStore(t, hub, []string{dir}, nil)
	final := filepath.Join(dir, q8File)

	cut := int64(len(data))/2 + 12345 // not on a chunk boundary
	hub.StallAfter(cut)
	p, err := st.Start(PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resume record to count every byte served", func() bool {
		s, ok := readState(t, final)
		return ok && doneBytes(s) == cut
	})
	p.Cancel()
	if _, err := p.Wait(ctxT(t)); err == nil {
		t.Fatal("cancelled pull reported success")
	}
	if pr := p.Progress(); pr.State != StateCancelled {
		t.Fatalf("state %q after cancel", pr.State)
	}
	if _, err := os.Stat(final + partialSuffix); err != nil {
		t.Fatalf("partial file gone after cancel: %v", err)
	}
	if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a cancelled pull produced the model file")
	}
	waitFor(t, "the cancelled requests to end", func() bool { return hub.InFlight() == 0 })
	if hub.Served() != cut {
		t.Fatalf("hub served %d, stall was at %d", hub.Served(), cut)
	}

	hub.Release()
	hub.Reset()
	var resumed int64
	m, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, func(pr Progress) {
		if pr.Resumed > 0 {
			resumed = pr.Resumed
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := hub.Served(); got != int64(len(data))-cut {
		t.Errorf("resumed pull fetched %d bytes, want only the missing %d", got, int64(len(data))-cut)
	}
	if resumed != cut {
		t.Errorf("progress reported %d resumed bytes, want %d", resumed, cut)
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, data) {
		t.Fatal("resumed file differs")
	}
}

// TestResumeDiscardsOtherContent: a partial file of another version of the file (different
// hash) is not reused.
func TestResumeDiscardsOtherContent(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	dir := t.TempDir()
	final := filepath.Join(dir, q8File)
	p, err := openPartial(final, "sha256:"+strings.Repeat("0", 64), int64(len(data)), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	p.st.Done[0] = 1000
	if err := p.f.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := p.save(); err != nil {
		t.Fatal(err)
	}
	p.close()
	hub.Add(testRepo, q8File, data)
	st := newStore(t, hub, []string{dir}, nil)
	if _, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil); err != nil {
		t.Fatal(err)
	}
	if hub.Served() != int64(len(data)) {
		t.Errorf("served %d, want the whole file", hub.Served())
	}
}

func TestFlippedByteIsDetectedAndRefetched(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	sum := hub.Add(testRepo, q8File, data)
	hub.FlipOnce(sum, int64(len(data))/3)
	st := newStore(t, hub, []string{t.TempDir()}, nil)
	m, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, data) {
		t.Fatal("the corrupted download was kept")
	}
	if hub.Served() != 2*int64(len(data)) {
		t.Errorf("served %d, want the file twice (%d)", hub.Served(), 2*len(data))
	}
	if got := st.counter("exo_model_pull_verify_failures_total"); got != 1 {
		t.Errorf("verify failures metric %v", got)
	}
}

func TestPersistentCorruptionFails(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	sum := hub.Add(testRepo, q8File, data)
	hub.Corrupt(sum, 100)
	dir := t.TempDir()
	st := newStore(t, hub, []string{dir}, nil)
	_, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Want != sum {
		t.Fatalf("err %v, want a SHA-256 mismatch against %s", err, sum)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left %d files behind: %v", len(entries), entries)
	}
	if st.lastEvent().State != StateFailed || !strings.Contains(st.lastEvent().Error, "SHA-256 mismatch") {
		t.Errorf("last event %+v", st.lastEvent())
	}
}

func TestFreeSpaceCheckedBeforeDownloading(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	hub.Add(testRepo, q8File, data)
	dir := t.TempDir()
	free := int64(len(data)) - 1
	st := newStore(t, hub, []string{dir}, func(o *Options) {
		o.FreeSpace = func(string) (int64, error) { return free, nil }
	})
	_, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	var se *SpaceError
	if !errors.As(err, &se) || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("err %v, want a free-space error", err)
	}
	for _, n := range []string{"454656", "454655", dir} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %s", err, n)
		}
	}
	if hub.Served() != 0 || len(hub.Requests()) != 0 {
		t.Errorf("%d bytes fetched before the space check", hub.Served())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}

	// The reserve counts too: plenty free, but not beyond what must stay free.
	st2 := newStore(t, hub, []string{dir}, func(o *Options) {
		o.FreeSpace = func(string) (int64, error) { return 10 << 20, nil }
		o.Reserve = 10<<20 - 1000
	})
	_, err = st2.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "reserve") || !strings.Contains(err.Error(), "1000 bytes") {
		t.Fatalf("err %v", err)
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	hub.Add(testRepo, q8File, data)
	hub.FailNext(3, 503)
	st := newStore(t, hub, []string{t.TempDir()}, nil)
	m, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, data) {
		t.Fatal("file differs")
	}
	if got := st.counter("exo_model_pull_retries_total"); got != 3 {
		t.Errorf("retries metric %v, want 3", got)
	}

	// A source that keeps failing is given up on, with the cause.
	hub.FailNext(1000, 502)
	st2 := newStore(t, hub, []string{t.TempDir()}, func(o *Options) { o.Retries = 2 })
	_, err = st2.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 502") || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("err %v", err)
	}
}

func TestTokenSentToHubOnlyAndNeverLogged(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	hub.Add(testRepo, q8File, data)
	const token = "hf_SECRETsecretSECRET"
	hub.Token = token

	st := newStore(t, hub, []string{t.TempDir()}, nil)
	_, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("without token: %v", err)
	}

	st2 := newStore(t, hub, []string{t.TempDir()}, func(o *Options) { o.Hub.Token = token })
	if _, err := st2.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{st.log.String(), st2.log.String()} {
		if strings.Contains(out, token) || strings.Contains(out, "secret-signature") {
			t.Errorf("log reveals a credential:\n%s", out)
		}
	}
	for _, e := range append(st.events, st2.events...) {
		if strings.Contains(e.Error+e.Note+e.Source, token) {
			t.Errorf("progress event reveals the token: %+v", e)
		}
	}
}

func TestCancelAndRemoveDuringPull(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	hub.Add(testRepo, q8File, data)
	dir := t.TempDir()
	st := newStore(t, hub, []string{dir}, nil)
	hub.StallAfter(100 << 10)
	p, err := st.Start(PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bytes to arrive", func() bool { return p.Progress().Done > 0 })
	if again, err := st.Start(PullRequest{Source: "hf://" + testRepo + "/" + q8File}, nil); err != nil || again != p {
		t.Fatalf("a second pull of the same file did not join the first (%v)", err)
	}
	r, err := st.Remove("stories260K-Q8_0")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Cancelled || len(r.Files) != 2 {
		t.Fatalf("removed %+v, want the pull cancelled and its partial files deleted", r)
	}
	if pr := p.Progress(); pr.State != StateCancelled {
		t.Fatalf("state %q", pr.State)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
	if _, err := st.Remove("stories260K-Q8_0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing a missing model: %v", err)
	}
}

func TestReadOnlyDirectories(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	hub.Add(testRepo, q8File, data)
	ro := fixtureDir(t)
	rw := filepath.Join(t.TempDir(), "pulls")
	st := newStore(t, hub, []string{ro + ReadOnlySuffix, rw}, nil)

	// Already present in the read-only directory: nothing to fetch.
	m, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err != nil || m.Dir != ro || !m.ReadOnly || hub.Served() != 0 {
		t.Fatalf("model %+v, err %v, served %d", m, err, hub.Served())
	}
	if _, err := st.Remove(m.ID); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("removing from a read-only directory: %v", err)
	}
	if _, err := os.Stat(m.Path); err != nil {
		t.Fatal(err)
	}
	// New models go to the first writable directory.
	hub.Add(testRepo, "other.gguf", data)
	m, err = st.Pull(ctxT(t), PullRequest{Source: testRepo + ":other.gguf"}, nil)
	if err != nil || m.Dir != rw || m.ReadOnly {
		t.Fatalf("model %+v, err %v", m, err)
	}
	dirs := st.Dirs()
	if len(dirs) != 2 || !dirs[0].ReadOnly || !dirs[0].Marked || dirs[0].Models != 4 || dirs[1].ReadOnly || dirs[1].Models != 1 || dirs[1].Free <= 0 {
		t.Errorf("dirs %+v", dirs)
	}

	// With only read-only directories a pull fails before fetching anything.
	hub.Reset()
	only := newStore(t, hub, []string{ro + ReadOnlySuffix}, nil)
	hub.Add(testRepo, "third.gguf", data)
	if _, err := only.Pull(ctxT(t), PullRequest{Source: testRepo + ":third.gguf"}, nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("err %v", err)
	}
	if hub.Served() != 0 {
		t.Error("fetched into nowhere")
	}
}

func TestPullByURL(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	sum := hub.Add(testRepo, q8File, data)
	url := hub.URL + "/cdn/" + sum + "?name=x"
	st := newStore(t, hub, []string{t.TempDir()}, nil)

	// The CDN path names no .gguf file: refused before fetching.
	if _, err := st.Pull(ctxT(t), PullRequest{Source: url}, nil); !errors.Is(err, ErrBadRef) {
		t.Fatalf("err %v", err)
	}

	// A hub URL is recognised as the hub (hash checked, token sent).
	hubURL := hub.URL + "/" + testRepo + "/resolve/main/" + q8File
	m, err := st.Pull(ctxT(t), PullRequest{Source: hubURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if man, _ := ReadManifest(m.Path); man == nil || !man.Verified || man.Origin != "hf://"+testRepo+"/"+q8File {
		t.Errorf("manifest %+v", man)
	}
}

func TestServerWithoutRanges(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	hub.Add(testRepo, q8File, data)
	hub.IgnoreRanges(true)
	st := newStore(t, hub, []string{t.TempDir()}, nil)
	// The hub always honours ranges; one that does not is reported, not silently misread.
	_, err := st.Pull(ctxT(t), PullRequest{Source: testRepo + ":" + q8File}, nil)
	if err == nil || !strings.Contains(err.Error(), "ignores HTTP Range") {
		t.Fatalf("err %v", err)
	}
	// A plain web server that says so is read as one stream.
	url := hub.AddPlain("plain.gguf", data)
	m, err := st.Pull(ctxT(t), PullRequest{Source: url, SHA256: sha(data)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, data) {
		t.Fatal("file differs")
	}
	var plain []string
	for _, r := range hub.Requests() {
		if strings.HasPrefix(r.Path, "/files/") {
			plain = append(plain, r.Range)
		}
	}
	if len(plain) != 1 || plain[0] != fmt.Sprintf("bytes=0-%d", len(data)-1) {
		t.Errorf("requests to the plain server: %v, want one for the whole file", plain)
	}
}

func TestPullPlainURL(t *testing.T) {
	data := fixtureBytes(t, "stories260K/"+q8File)
	hub := newHub(t)
	url := hub.AddPlain("model.gguf", data)

	// No hash stated: the download is kept but marked unverified.
	st := newStore(t, hub, []string{t.TempDir()}, nil)
	m, err := st.Pull(ctxT(t), PullRequest{Source: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if man, _ := ReadManifest(m.Path); man == nil || man.Verified || man.Origin != url {
		t.Errorf("manifest %+v", man)
	}
	if ev := st.lastEvent(); ev.Verified || !strings.Contains(ev.Note, "cannot be verified") || ev.From != "url" {
		t.Errorf("progress %+v", ev)
	}

	// A hash given by the user is checked.
	st = newStore(t, hub, []string{t.TempDir()}, nil)
	bad := strings.Repeat("ab", 32)
	if _, err := st.Pull(ctxT(t), PullRequest{Source: url, SHA256: bad}, nil); !errors.As(err, new(*VerifyError)) {
		t.Fatalf("wrong --sha256: %v", err)
	}
	if _, err := st.Pull(ctxT(t), PullRequest{Source: url, SHA256: "xyz"}, nil); !errors.Is(err, ErrBadRef) {
		t.Fatalf("malformed --sha256: %v", err)
	}

	// A server that refuses HEAD but states a Repr-Digest: probed with a one-byte range,
	// verified against the digest.
	hub.PlainOptions(true, true)
	st = newStore(t, hub, []string{t.TempDir()}, nil)
	m, err = st.Pull(ctxT(t), PullRequest{Source: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if man, _ := ReadManifest(m.Path); man == nil || !man.Verified || man.SHA256 != sha(data) {
		t.Errorf("manifest %+v", man)
	}
	if _, err := st.Pull(ctxT(t), PullRequest{Source: hub.URL + "/files/missing.gguf"}, nil); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("missing URL: %v", err)
	}
}

func TestChooseFileFromListing(t *testing.T) {
	hub := newHub(t)
	hub.Add("a/one", "model-Q8_0.gguf", []byte("x"))
	hub.Add("a/many", "m-Q8_0.gguf", []byte("x"))
	hub.Add("a/many", "m-Q4_K_M.gguf", []byte("x"))
	hub.Add("a/many", "mmproj-m-f16.gguf", []byte("x"))
	hub.Add("a/amb", "m-Q8_0.gguf", []byte("x"))
	hub.Add("a/amb", "m-F16.gguf", []byte("x"))
	h := Hub{Endpoint: hub.Endpoint()}
	for src, want := range map[string]string{"a/one": "model-Q8_0.gguf", "a/many": "m-Q4_K_M.gguf", "a/many@v2": "m-Q4_K_M.gguf"} {
		ref, _ := ParseRef(src)
		got, err := h.chooseFile(ctxT(t), hub.Client(), ref)
		if err != nil || got.File != want {
			t.Errorf("%s: %q %v, want %q", src, got.File, err, want)
		}
	}
	ref, _ := ParseRef("a/amb")
	if _, err := h.chooseFile(ctxT(t), hub.Client(), ref); err == nil || !strings.Contains(err.Error(), "m-F16.gguf, m-Q8_0.gguf") {
		t.Errorf("ambiguous repo: %v", err)
	}
	ref, _ = ParseRef("a/none")
	if _, err := h.chooseFile(ctxT(t), hub.Client(), ref); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("missing repo: %v", err)
	}
}

func TestParseRef(t *testing.T) {
	ok := map[string]string{
		"org/repo":                            "hf://org/repo",
		"org/repo:file.gguf":                  "hf://org/repo/file.gguf",
		"org/repo@v1:sub/file.gguf":           "hf://org/repo@v1/sub/file.gguf",
		"hf://org/repo/file.gguf":             "hf://org/repo/file.gguf",
		"hf://org/repo@abc/dir/file.gguf":     "hf://org/repo@abc/dir/file.gguf",
		"hf://org/repo@main/file.gguf":        "hf://org/repo/file.gguf",
		"https://example.com/x/m.gguf?dl=1":   "https://example.com/x/m.gguf?dl=1",
		"stories260K-F32":                     "stories260K-F32",
		"stories260K-F32.gguf":                "stories260K-F32",
		" org/repo:file.gguf ":                "hf://org/repo/file.gguf",
		"hf://org/repo@refs%2Fpr%2F1/a.gguf":  "hf://org/repo@refs%2Fpr%2F1/a.gguf",
		"hf://org/repo/a.gguf/../../b.gguf":   "",
		"org/repo:../x.gguf":                  "",
		"org/repo:file.bin":                   "",
		"https://user:pw@example.com/m.gguf":  "",
		"a/b/c":                               "",
		"org/repo@:f.gguf":                    "",
		"":                                    "",
		"C:\\models\\x.gguf":                  "",
		"/abs/path.gguf":                      "",
		"org/ /x.gguf":                        "",
		"hf://org":                            "",
		"org/repo:dir//x.gguf":                "",
		"https://example.com/m.gguf#fragment": "https://example.com/m.gguf#fragment",
	}
	for in, want := range ok {
		r, err := ParseRef(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q accepted as %s", in, r)
			} else if !errors.Is(err, ErrBadRef) {
				t.Errorf("%q: error %v does not wrap ErrBadRef", in, err)
			}
			continue
		}
		if err != nil || r.String() != want {
			t.Errorf("%q: %q %v, want %q", in, r.String(), err, want)
		}
	}
	r, _ := ParseRef("org/repo@v1:sub/file.gguf")
	if r.Repo != "org/repo" || r.Revision != "v1" || r.File != "sub/file.gguf" || r.ModelID() != "file" {
		t.Errorf("%+v", r)
	}
}
