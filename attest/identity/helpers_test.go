package identity

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"

	"github.com/nestattest/nestattest/attest/internal/attesttest"
)

const (
	testIdentity = "builder@example.test"
	testIssuer   = "https://issuer.example.test"
)

// testKey writes a cosign key pair into a temporary directory and returns
// the directory and password.
func testKey(t testing.TB) (dir string, password []byte) {
	t.Helper()
	dir = t.TempDir()
	password = []byte("correct horse")
	if _, _, err := GenerateKeyPair(filepath.Join(dir, "cosign"), func(bool) ([]byte, error) { return password, nil }); err != nil {
		t.Fatal(err)
	}
	return dir, password
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testRegistry is go-containerregistry's in-memory registry, its writes
// counted.
type testRegistry struct {
	host   string
	writes atomic.Int32
}

func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			r.writes.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(s.Close)
	r.host = strings.TrimPrefix(s.URL, "http://")
	return r
}

func (r *testRegistry) writeCount() int { return int(r.writes.Load()) }

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

// signOpts sign in both layouts, where mirrored too, without the final
// confirmation.
func signOpts(t testing.TB, c *registry.Client, s attest.Signer) attest.Options {
	t.Helper()
	stores, err := attest.Stores(attest.LayoutLegacy, attest.LayoutBundle)
	if err != nil {
		t.Fatal(err)
	}
	return attest.Options{Signer: s, Stores: stores, BindRoot: true, Mirrors: true, Client: c, Jobs: 4, Settle: -1,
		Predicates: attest.Provenance{BuilderID: "https://example.test/builder", StartedOn: time.Now()}}
}

// treeRequirements are what the tests require of a signed tree: provenance,
// every node bound to the root.
func treeRequirements() attest.Requirements {
	return attest.Requirements{Types: []string{"slsaprovenance1"}, RequireRoot: true}
}

// verifyOpts read the layouts given, in that order.
func verifyOpts(t testing.TB, c *registry.Client, tr attest.Trust, r attest.Requirements, layouts ...attest.Layout) attest.VerifyOptions {
	t.Helper()
	stores, err := attest.Stores(layouts...)
	if err != nil {
		t.Fatal(err)
	}
	return attest.VerifyOptions{Trust: tr, Require: r, Stores: stores, Client: c}
}

// failures returns path: reasons of every failed node.
func failures(rep *attest.VerifyReport) []string {
	var out []string
	for _, v := range rep.Verdicts {
		if !v.Passed() {
			out = append(out, v.Node.Path()+" "+v.Node.Descriptor.Digest.String()+": "+v.Reasons())
		}
	}
	return out
}

// newShortCA is an in-process certificate authority whose certificates
// end life after they are issued and name testIssuer.
func newShortCA(t *testing.T, life time.Duration) *attesttest.ShortCA {
	t.Helper()
	return attesttest.NewShortCA(t, life, testIssuer)
}

// virtualTSA countersigns with sigstore-go's in-process timestamp
// authority, slowly, so a run outlives its certificates.
type virtualTSA struct {
	vs    *ca.VirtualSigstore
	delay time.Duration
	n     atomic.Int32
}

func (v *virtualTSA) Require(t *attest.Trust, _ attest.Layout) { t.UseSignedTimestamps = true }

func (v *virtualTSA) Witness(_ context.Context, s *attest.Signed) error {
	time.Sleep(v.delay)
	ts, err := v.vs.TimestampResponse(s.Signature)
	if err != nil {
		return err
	}
	s.Material.Timestamps = append(s.Material.Timestamps, ts)
	v.n.Add(1)
	if s.DSSE() { // the legacy layout timestamps the envelope
		env, err := s.Envelope()
		if err != nil {
			return err
		}
		if ts, err = v.vs.TimestampResponse(env); err != nil {
			return err
		}
		s.Material.EnvelopeTimestamps = append(s.Material.EnvelopeTimestamps, ts)
	}
	return nil
}
