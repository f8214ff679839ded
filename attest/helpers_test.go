package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	"github.com/sigstore/sigstore/pkg/signature"

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

// testSigner signs with a fresh ECDSA P-256 key, as a cosign key signs:
// the Signer of a run in these tests (package identity, which holds the
// real ones, imports attest).
type testSigner struct {
	sv  signature.SignerVerifier
	pub crypto.PublicKey
}

func loadTestKey(t testing.TB) *testSigner {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{sv: sv, pub: priv.Public()}
}

func (s *testSigner) Sign(_ context.Context, message []byte) ([]byte, Material, error) {
	sig, err := s.sv.SignMessage(bytes.NewReader(message))
	return sig, Material{PublicKey: s.pub}, err
}

func (s *testSigner) Trust() Trust       { return Trust{Key: s.pub} }
func (s *testSigner) Identity() Identity { return Identity{Key: s.pub, KeyRef: "test"} }

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
