package attesttest

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// Registry is go-containerregistry's in-memory registry behind a handler
// that counts writes and can refuse them for one repository.
type Registry struct {
	// Host is the registry's host:port.
	Host string

	mu      sync.Mutex
	writes  int
	reads   map[string]int // GET and HEAD requests by path
	refused string         // refuse writes to this repository path ("org/x")
}

// NewRegistry starts a Registry, serving the OCI 1.1 referrers API or
// not, stopped when t ends.
func NewRegistry(t testing.TB, referrers bool) *Registry {
	t.Helper()
	r := &Registry{reads: map[string]int{}}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)), ggcrregistry.WithReferrersSupport(referrers))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			r.mu.Lock()
			r.reads[req.URL.Path]++
			r.mu.Unlock()
		} else {
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
	r.Host = strings.TrimPrefix(s.URL, "http://")
	return r
}

// Writes returns how many writes the registry took.
func (r *Registry) Writes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}

// Reads returns how often each path was read (GET or HEAD) since the
// registry started or Reads was last called, and starts counting anew.
func (r *Registry) Reads() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	reads := r.reads
	r.reads = map[string]int{}
	return reads
}

// RefuseWrites refuses every later write to the repository at repoPath
// ("org/x") with 403 DENIED.
func (r *Registry) RefuseWrites(repoPath string) {
	r.mu.Lock()
	r.refused = repoPath
	r.mu.Unlock()
}

// PushKo pushes the ko-shaped sample to org/ko-build:latest and returns
// its tree, walked through c.
func (r *Registry) PushKo(t testing.TB, c *registry.Client) *walk.Tree {
	t.Helper()
	children, err := sample.KoChildren(walk.AnnotationRepository)
	if err != nil {
		t.Fatal(err)
	}
	return r.push(t, c, "org/ko-build", children)
}

// PushSame pushes to org/same:latest a parent whose n children are one
// two-platform index in n repositories, and returns its tree.
func (r *Registry) PushSame(t testing.TB, c *registry.Client, n int) *walk.Tree {
	t.Helper()
	idx, err := sample.Index("same")
	if err != nil {
		t.Fatal(err)
	}
	var children []sample.Child
	for i := range n {
		children = append(children, sample.Child{Path: fmt.Sprintf("c%02d", i), Index: idx})
	}
	return r.push(t, c, "org/same", children)
}

func (r *Registry) push(t testing.TB, c *registry.Client, path string, children []sample.Child) *walk.Tree {
	t.Helper()
	repo, err := name.NewRepository(r.Host + "/" + path)
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
