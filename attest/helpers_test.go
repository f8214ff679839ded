package attest

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// testRegistry is go-containerregistry's in-memory registry behind a
// handler that counts writes and can refuse them for one repository.
type testRegistry struct {
	host string

	mu      sync.Mutex
	writes  int
	refused string // refuse writes to this repository path ("org/x")
}

func newTestRegistry(t testing.TB) *testRegistry { return newTestRegistryReferrers(t, false) }

// newTestRegistryReferrers is newTestRegistry serving the OCI 1.1 referrers
// API or not.
func newTestRegistryReferrers(t testing.TB, referrers bool) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)), ggcrregistry.WithReferrersSupport(referrers))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			r.mu.Lock()
			rest, inRepo := strings.CutPrefix(req.URL.Path, "/v2/"+r.refused+"/")
			refuse := r.refused != "" && inRepo && (strings.HasPrefix(rest, "blobs/") || strings.HasPrefix(rest, "manifests/"))
			if !refuse {
				r.writes++
			}
			r.mu.Unlock()
			if refuse {
				w.WriteHeader(http.StatusForbidden)
				_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"writes refused by the test"}]}`))
				return
			}
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(s.Close)
	r.host = strings.TrimPrefix(s.URL, "http://")
	return r
}

func (r *testRegistry) writeCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}

func (r *testRegistry) refuseWrites(repoPath string) {
	r.mu.Lock()
	r.refused = repoPath
	r.mu.Unlock()
}

// pushKo pushes the ko-shaped sample and returns its tree.
func pushKo(t testing.TB, r *testRegistry, c *registry.Client) *walk.Tree {
	t.Helper()
	children, err := sample.KoChildren(walk.AnnotationRepository)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(r.host + "/org/ko-build")
	if err != nil {
		t.Fatal(err)
	}
	p := sample.Pusher{Annotation: walk.AnnotationRepository, MirrorManifests: true}
	if _, err := p.Push(repo, sample.Parent(walk.AnnotationRepository, children), "latest"); err != nil {
		t.Fatal(err)
	}
	tree, err := walk.Collect(context.Background(), repo.Tag("latest"), walk.Options{Fetcher: c})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// testKey writes a cosign key pair into a temporary directory and returns
// the prefix and password.
func testKey(t testing.TB) (dir string, password []byte) {
	t.Helper()
	dir = t.TempDir()
	password = []byte("correct horse")
	if _, _, err := GenerateKeyPair(filepath.Join(dir, "cosign"), func(bool) ([]byte, error) { return password, nil }); err != nil {
		t.Fatal(err)
	}
	return dir, password
}

func loadTestKey(t testing.TB) *KeySigner {
	t.Helper()
	dir, pass := testKey(t)
	s, err := LoadKey(context.Background(), filepath.Join(dir, "cosign.key"), func() ([]byte, error) { return pass, nil })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushSame pushes a parent whose n children are one two-platform index in
// n repositories, and returns its tree.
func pushSame(t testing.TB, r *testRegistry, c *registry.Client, n int) *walk.Tree {
	t.Helper()
	idx, err := sample.Index("same")
	if err != nil {
		t.Fatal(err)
	}
	var children []sample.Child
	for i := range n {
		children = append(children, sample.Child{Path: fmt.Sprintf("c%02d", i), Index: idx})
	}
	repo, err := name.NewRepository(r.host + "/org/same")
	if err != nil {
		t.Fatal(err)
	}
	p := sample.Pusher{Annotation: walk.AnnotationRepository, MirrorManifests: true}
	if _, err := p.Push(repo, sample.Parent(walk.AnnotationRepository, children), "latest"); err != nil {
		t.Fatal(err)
	}
	tree, err := walk.Collect(context.Background(), repo.Tag("latest"), walk.Options{Fetcher: c})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}
