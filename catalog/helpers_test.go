package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// fakeRegistry is go-containerregistry's in-memory registry made to behave
// like distribution where it matters here: blobs belong to repositories, a
// mount from a repository that holds the blob answers 201 (unless mounts
// are off), and with strict an image manifest whose blobs are not in its
// repository is refused with 400 MANIFEST_BLOB_UNKNOWN. It counts requests
// and the bytes uploaded into blobs.
type fakeRegistry struct {
	host    string
	blobs   *repoBlobs
	handler http.Handler

	mounts bool
	strict bool
	sparse atomic.Bool // accept indexes whose children are elsewhere
	// catalog, when set, serves GET /v2/_catalog.
	catalog http.HandlerFunc

	mu       sync.Mutex
	requests map[string]int    // "METHOD kind" → count
	types    map[string]string // digest → media type of sparse indexes
	uploaded atomic.Int64
}

func newFakeRegistry(t testing.TB, mounts, strict bool) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{
		blobs:  &repoBlobs{data: map[string][]byte{}, links: map[string]bool{}},
		mounts: mounts, strict: strict, requests: map[string]int{}, types: map[string]string{},
	}
	f.handler = ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)), ggcr.WithBlobHandler(f.blobs))
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	f.host = strings.TrimPrefix(s.URL, "http://")
	return f
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	f.count(req)
	repo, kind, _ := split(req.URL.Path)
	if req.Body != nil && kind == "blobs" && req.Method != http.MethodGet {
		req.Body = countBody{req.Body, &f.uploaded}
	}
	switch {
	case kind == "_catalog" && f.catalog != nil:
		f.catalog(w, req)
		return
	case req.Method == http.MethodPost && kind == "blobs" && req.URL.Query().Get("mount") != "" && f.mounts:
		d, from := req.URL.Query().Get("mount"), req.URL.Query().Get("from")
		if f.blobs.link(from, repo, d) {
			w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d)
			w.Header().Set("Docker-Content-Digest", d)
			w.WriteHeader(http.StatusCreated)
			return
		}
	case req.Method == http.MethodPut && kind == "manifests":
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if missing := f.missingBlobs(repo, body); f.strict && missing != "" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":%q}]}`, missing)
			return
		}
		if ct := req.Header.Get("Content-Type"); f.sparse.Load() && types.MediaType(ct).IsIndex() {
			h, _, _ := v1.SHA256(bytes.NewReader(body))
			f.mu.Lock()
			f.types[h.String()] = ct
			f.mu.Unlock()
			req.Header.Set("Content-Type", "application/vnd.test.sparse") // not an index: unchecked
		}
	case kind == "manifests":
		w = &typeFixer{ResponseWriter: w, f: f}
	}
	f.handler.ServeHTTP(w, req)
}

// typeFixer serves a sparse index with its media type.
type typeFixer struct {
	http.ResponseWriter
	f *fakeRegistry
}

func (t *typeFixer) WriteHeader(code int) {
	t.f.mu.Lock()
	ct, ok := t.f.types[t.Header().Get("Docker-Content-Digest")]
	t.f.mu.Unlock()
	if ok {
		t.Header().Set("Content-Type", ct)
	}
	t.ResponseWriter.WriteHeader(code)
}

// missingBlobs names a config or layer of an image manifest that is not in
// repo.
func (f *fakeRegistry) missingBlobs(repo string, body []byte) string {
	var m walk.Manifest
	if json.Unmarshal(body, &m) != nil || m.Config == nil {
		return ""
	}
	for _, d := range append([]v1.Descriptor{*m.Config}, m.Layers...) {
		if !f.blobs.has(repo, d.Digest.String()) {
			return d.Digest.String()
		}
	}
	return ""
}

func (f *fakeRegistry) count(req *http.Request) {
	_, kind, _ := split(req.URL.Path)
	f.mu.Lock()
	f.requests[req.Method+" "+kind]++
	f.mu.Unlock()
}

// counts returns the requests so far and forgets them, with the bytes
// uploaded into blobs.
func (f *fakeRegistry) counts() (map[string]int, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.requests
	f.requests = map[string]int{}
	return out, f.uploaded.Swap(0)
}

// split cuts /v2/<repo>/<kind>/<target>; kind is "manifests", "blobs",
// "tags", "_catalog" or "".
func split(p string) (repo, kind, target string) {
	p = strings.TrimPrefix(p, "/v2/")
	for _, k := range []string{"/manifests/", "/blobs/uploads/", "/blobs/", "/tags/"} {
		if i := strings.LastIndex(p, k); i >= 0 {
			return p[:i], strings.Trim(strings.TrimSuffix(k, "uploads/"), "/"), p[i+len(k):]
		}
	}
	if p == "_catalog" {
		return "", "_catalog", ""
	}
	return "", "", ""
}

type countBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// repoBlobs stores blobs once and links them into repositories.
type repoBlobs struct {
	mu    sync.Mutex
	data  map[string][]byte
	links map[string]bool // repo@digest
}

func (b *repoBlobs) has(repo, d string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.links[repo+"@"+d]
}

func (b *repoBlobs) link(from, to, d string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.links[from+"@"+d] {
		return false
	}
	b.links[to+"@"+d] = true
	return true
}

func (b *repoBlobs) Stat(_ context.Context, repo string, h v1.Hash) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.links[repo+"@"+h.String()] {
		return 0, ggcr.ErrNotFound
	}
	return int64(len(b.data[h.String()])), nil
}

func (b *repoBlobs) Get(ctx context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	if _, err := b.Stat(ctx, repo, h); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return io.NopCloser(bytes.NewReader(b.data[h.String()])), nil
}

func (b *repoBlobs) Put(_ context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	repo = strings.TrimSuffix(repo, "/blobs") // go-containerregistry's name for a chunked upload's repository
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data[h.String()] = data
	b.links[repo+"@"+h.String()] = true
	return nil
}

func testClient() *registry.Client {
	return registry.NewClient(registry.Options{Retries: -1})
}

// koSample pushes the ko-shaped sample below host/org/ko-build: app1, app2
// (listing app2/plugins) and app3, each a two-platform index tagged latest,
// and tool, a single-platform image tagged latest. It returns the parent
// repository.
func koSample(t testing.TB, reg *fakeRegistry) name.Repository {
	t.Helper()
	host := reg.host
	reg.sparse.Store(true)
	defer reg.sparse.Store(false)
	parent, err := name.NewRepository(host + "/org/ko-build")
	if err != nil {
		t.Fatal(err)
	}
	children, err := sample.KoChildren(walk.AnnotationRepository)
	if err != nil {
		t.Fatal(err)
	}
	p := sample.Pusher{Annotation: walk.AnnotationRepository}
	for _, c := range children {
		if _, err := p.Push(parent.Registry.Repo(parent.RepositoryStr(), c.Path), c.Index, "latest"); err != nil {
			t.Fatal(err)
		}
	}
	img, err := sample.Image("tool", v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(parent.Registry.Repo(parent.RepositoryStr(), "tool").Tag("latest"), img); err != nil {
		t.Fatal(err)
	}
	return parent
}

// koChildren names the sample's children explicitly, by tag.
func koChildren(t testing.TB, parent name.Repository) []Child {
	t.Helper()
	var out []Child
	for _, p := range []string{"app1", "app2", "app3", "tool"} {
		c, err := ParseChild(parent, p+"=:latest")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// scopedIndex is a parent index whose children are read from the
// repositories their walk.AnnotationRepository annotations name, so that
// validate.Index checks a composed tree wherever its children live.
type scopedIndex struct {
	idx  v1.ImageIndex
	repo name.Repository
}

func (s scopedIndex) MediaType() (types.MediaType, error)       { return s.idx.MediaType() }
func (s scopedIndex) Digest() (v1.Hash, error)                  { return s.idx.Digest() }
func (s scopedIndex) Size() (int64, error)                      { return s.idx.Size() }
func (s scopedIndex) IndexManifest() (*v1.IndexManifest, error) { return s.idx.IndexManifest() }
func (s scopedIndex) RawManifest() ([]byte, error)              { return s.idx.RawManifest() }

func (s scopedIndex) child(h v1.Hash) (name.Digest, error) {
	m, err := s.IndexManifest()
	if err != nil {
		return name.Digest{}, err
	}
	for _, d := range m.Manifests {
		if d.Digest == h {
			repo, err := walk.ChildRepository(s.repo, d.Annotations)
			return repo.Digest(h.String()), err
		}
	}
	return name.Digest{}, fmt.Errorf("no child %s", h)
}

func (s scopedIndex) Image(h v1.Hash) (v1.Image, error) {
	ref, err := s.child(h)
	if err != nil {
		return nil, err
	}
	return remote.Image(ref)
}

func (s scopedIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	ref, err := s.child(h)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Index(ref)
	if err != nil {
		return nil, err
	}
	return scopedIndex{idx: idx, repo: ref.Context()}, nil
}

// validateScoped runs validate.Index on a composed parent, reading its
// children, every manifest, config and layer, from their scoped
// repositories.
func validateScoped(t testing.TB, idx v1.ImageIndex, parent name.Repository) {
	t.Helper()
	if err := validate.Index(scopedIndex{idx: idx, repo: parent}); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
}

// validateInParent runs validate.Index on the parent as the registry
// serves it from the parent repository alone, as a plain client reads it.
func validateInParent(t testing.TB, ref name.Reference) {
	t.Helper()
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index of %s read from its own repository: %v", ref, err)
	}
}

// pagedCatalog serves names as distribution does: sorted, n at a time from
// after last, with a Link to the next page while more remain.
func pagedCatalog(names []string) http.HandlerFunc {
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	return func(w http.ResponseWriter, req *http.Request) {
		n, err := strconv.Atoi(req.URL.Query().Get("n"))
		if err != nil || n <= 0 {
			n = 1000
		}
		last := req.URL.Query().Get("last")
		i, _ := slices.BinarySearch(sorted, last)
		for i < len(sorted) && sorted[i] <= last {
			i++
		}
		page := sorted[i:min(i+n, len(sorted))]
		if i+n < len(sorted) {
			w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?last=%s&n=%d>; rel="next"`, url.QueryEscape(page[len(page)-1]), n))
		}
		_ = json.NewEncoder(w).Encode(map[string][]string{"repositories": page})
	}
}
