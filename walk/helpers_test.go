package walk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	nreg "github.com/nestattest/nestattest/registry"
)

// memRegistry starts go-containerregistry's in-memory registry and returns
// its host.
func memRegistry(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func remoteFetcher() Fetcher {
	return nreg.NewClient(nreg.Options{Retries: -1})
}

// memFetcher serves raw manifests from a map keyed by repository@digest or
// repository:tag, counting fetches and the most fetches in flight at once.
type memFetcher struct {
	mu       sync.Mutex
	m        map[string][]byte
	fetches  map[string]int
	inFlight atomic.Int32
	peak     atomic.Int32
}

func newMemFetcher() *memFetcher {
	return &memFetcher{m: map[string][]byte{}, fetches: map[string]int{}}
}

// put stores a JSON document in repo and returns its descriptor.
func (f *memFetcher) put(t testing.TB, repo string, doc any, tags ...string) v1.Descriptor {
	t.Helper()
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return f.putRaw(repo, raw, tags...)
}

func (f *memFetcher) putRaw(repo string, raw []byte, tags ...string) v1.Descriptor {
	sum := sha256.Sum256(raw)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[repo+"@"+h.String()] = raw
	for _, tag := range tags {
		f.m[repo+":"+tag] = raw
	}
	var probe struct{ MediaType types.MediaType }
	_ = json.Unmarshal(raw, &probe)
	return v1.Descriptor{MediaType: probe.MediaType, Digest: h, Size: int64(len(raw))}
}

func (f *memFetcher) GetManifest(ctx context.Context, ref name.Reference, limit int64) (*nreg.Manifest, error) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	k := ref.Context().Name() + sep + ref.Identifier()
	f.mu.Lock()
	raw, ok := f.m[k]
	f.fetches[k]++
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", nreg.ErrNotFound, k)
	}
	if int64(len(raw)) > limit {
		return nil, nreg.ErrTooLarge
	}
	sum := sha256.Sum256(raw)
	return &nreg.Manifest{Raw: raw, Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}, nil
}

func (f *memFetcher) fetchCount() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.fetches {
		out[k] = v
	}
	return out
}

// image returns an OCI image manifest document with a config of a given
// media type.
func image(seed string) map[string]any {
	return map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"config":        desc(types.OCIConfigJSON, seed),
		"layers":        []any{desc(types.OCILayer, seed+"-layer")},
	}
}

func desc(mt types.MediaType, seed string) v1.Descriptor {
	sum := sha256.Sum256([]byte(seed))
	return v1.Descriptor{MediaType: mt, Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, Size: int64(len(seed))}
}

func index(entries ...v1.Descriptor) map[string]any {
	if entries == nil {
		entries = []v1.Descriptor{}
	}
	return map[string]any{"schemaVersion": 2, "mediaType": types.OCIImageIndex, "manifests": entries}
}

// scoped returns d annotated into a scoped repository.
func scoped(d v1.Descriptor, path string) v1.Descriptor {
	d.Annotations = map[string]string{AnnotationRepository: path}
	return d
}

func platform(d v1.Descriptor, os, arch string) v1.Descriptor {
	d.Platform = &v1.Platform{OS: os, Architecture: arch}
	return d
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// summary renders a tree as one line per node: depth, path, kind, platform.
func summary(tree *Tree) []string {
	var out []string
	for _, n := range tree.Nodes {
		out = append(out, fmt.Sprintf("%d %s %s %s", n.Depth, n.Path(), n.Kind, n.Platform()))
	}
	return out
}
