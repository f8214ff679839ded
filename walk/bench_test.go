package walk

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// rawManifest is a manifest to put as it is.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// putDoc puts a JSON manifest into repo by digest and returns its
// descriptor.
func putDoc(tb testing.TB, repo name.Repository, doc map[string]any, tags ...string) v1.Descriptor {
	raw, err := json.Marshal(doc)
	if err != nil {
		tb.Fatal(err)
	}
	d := newMemFetcher().putRaw(repo.Name(), raw)
	refs := []name.Reference{repo.Digest(d.Digest.String())}
	for _, t := range tags {
		refs = append(refs, repo.Tag(t))
	}
	for _, ref := range refs {
		if err := remote.Put(ref, rawManifest{raw, d.MediaType}); err != nil {
			tb.Fatal(err)
		}
	}
	return d
}

// wideTree pushes a tree of 1 + children*(1+leaves) nodes to an in-memory
// registry: a parent index in org/big listing children scoped indexes
// org/big/cNNN, each listing leaves image manifests. Manifests only: the
// walk reads no blobs.
func wideTree(tb testing.TB, children, leaves int) name.Tag {
	host := memRegistry(tb)
	parent, err := name.NewRepository(host + "/org/big")
	if err != nil {
		tb.Fatal(err)
	}
	var entries []v1.Descriptor
	for c := range children {
		repo := parent.Registry.Repo("org", "big", fmt.Sprintf("c%03d", c))
		var imgs []v1.Descriptor
		for l := range leaves {
			doc := image(fmt.Sprint(c, "/", l))
			putDoc(tb, parent, doc) // the in-memory registry checks that an index's children exist
			imgs = append(imgs, platform(putDoc(tb, repo, doc), "linux", fmt.Sprint("arch", l)))
		}
		idx := index(imgs...)
		d := putDoc(tb, repo, idx)
		putDoc(tb, parent, idx)
		entries = append(entries, scoped(d, fmt.Sprintf("c%03d", c)))
	}
	putDoc(tb, parent, index(entries...), "latest")
	return parent.Tag("latest")
}

// peakHeap samples the in-use heap until stop is closed.
func peakHeap(stop <-chan struct{}) *atomic.Uint64 {
	var peak atomic.Uint64
	go func() {
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return &peak
}

var (
	bigOnce sync.Once
	bigTag  name.Tag
)

// BenchmarkWalk10k walks a 10,001-node tree (1 parent, 100 scoped child
// indexes, 9,900 image manifests) over HTTP from go-containerregistry's
// in-memory registry, at --jobs 1 and 8, reporting nodes per second and
// the peak in-use heap of the process (registry included).
func BenchmarkWalk10k(b *testing.B) {
	bigOnce.Do(func() { bigTag = wideTree(b, 100, 99) })
	for _, jobs := range []int{1, 8} {
		b.Run(fmt.Sprintf("jobs=%d", jobs), func(b *testing.B) {
			runtime.GC()
			stop := make(chan struct{})
			peak := peakHeap(stop)
			var tree *Tree
			for b.Loop() {
				var err error
				if tree, err = Collect(context.Background(), bigTag, Options{Fetcher: remoteFetcher(), Jobs: jobs}); err != nil {
					b.Fatal(err)
				}
			}
			close(stop)
			nodes := len(tree.Nodes)
			b.ReportMetric(retained(&tree)/(1<<20), "tree-MiB")
			b.ReportMetric(float64(nodes*b.N)/b.Elapsed().Seconds(), "nodes/s")
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
			if nodes != 10_001 {
				b.Fatalf("%d nodes", nodes)
			}
		})
	}
}

// retained measures the heap a value keeps alive: the live heap with it,
// less the live heap once *p is dropped.
func retained(p **Tree) float64 {
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	*p = nil
	runtime.GC()
	runtime.ReadMemStats(&without)
	return float64(with.HeapAlloc) - float64(without.HeapAlloc)
}
