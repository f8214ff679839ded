package plan

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// fixture is a wide tree in go-containerregistry's in-memory registry.
type fixture struct {
	client *registry.Client
	tag    name.Tag
	tree   *walk.Tree
}

// newFixture pushes sample.Wide(children, leaves) into ns of a new
// in-memory registry and walks it.
func newFixture(t testing.TB, children, leaves int) *fixture {
	t.Helper()
	s := httptest.NewServer(ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "http://")
	idx, err := sample.Wide(walk.AnnotationRepository, "ns", children, leaves)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(host + "/org/wide")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (sample.Pusher{Annotation: walk.AnnotationRepository, MirrorManifests: true}).Push(repo, idx, "latest"); err != nil {
		t.Fatal(err)
	}
	f := &fixture{client: registry.NewClient(registry.Options{Retries: -1}), tag: repo.Tag("latest")}
	if f.tree, err = walk.Collect(context.Background(), f.tag, walk.Options{Fetcher: f.client}); err != nil {
		t.Fatal(err)
	}
	return f
}

// push plans the fixture's tree in shards and pushes the plan.
func (f *fixture) push(t testing.TB, shards int) (*Plan, name.Digest) {
	t.Helper()
	p, err := New(f.tree, shards, Walk{MaxDepth: walk.DefaultMaxDepth, MaxNodes: walk.DefaultMaxNodes})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ref, _, err := Push(context.Background(), f.client, f.tree.Root.Repository, enc, 4)
	if err != nil {
		t.Fatal(err)
	}
	return p, ref
}

// counted returns a context whose requests c counts.
func counted() (context.Context, *registry.Counter) {
	c := &registry.Counter{}
	return registry.WithCounter(context.Background(), c), c
}

// memFetcher serves a sample tree's manifests from memory.
type memFetcher map[string]*registry.Manifest

func (m memFetcher) GetManifest(_ context.Context, ref name.Reference, _ int64) (*registry.Manifest, error) {
	if f, ok := m[ref.String()]; ok {
		return f, nil
	}
	return nil, registry.ErrNotFound
}

// put stores idx, tagged, and everything below it in repo, following the
// scoping annotation.
func (m memFetcher) put(t testing.TB, repo name.Repository, idx v1.ImageIndex, tag string) {
	t.Helper()
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	mf := &registry.Manifest{Raw: raw, MediaType: types.OCIImageIndex, Digest: d}
	m[repo.Digest(d.String()).String()] = mf
	if tag != "" {
		m[repo.Tag(tag).String()] = mf
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range im.Manifests {
		child, err := walk.ChildRepository(repo, e.Annotations)
		if err != nil {
			t.Fatal(err)
		}
		if e.MediaType.IsIndex() {
			sub, err := idx.ImageIndex(e.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m.put(t, child, sub, "")
			continue
		}
		img, err := idx.Image(e.Digest)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		m[child.Digest(e.Digest.String()).String()] = &registry.Manifest{Raw: raw, MediaType: e.MediaType, Digest: e.Digest}
	}
}

// memTree walks sample.Wide(children, leaves) in memory, as if it were in
// registry.test/org/wide.
func memTree(t testing.TB, children, leaves int) *walk.Tree {
	t.Helper()
	idx, err := sample.Wide(walk.AnnotationRepository, "ns", children, leaves)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository("registry.test/org/wide")
	if err != nil {
		t.Fatal(err)
	}
	m := memFetcher{}
	m.put(t, repo, idx, "latest")
	tree, err := walk.Collect(context.Background(), repo.Tag("latest"), walk.Options{Fetcher: m})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}
