package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// MirrorRepository says where the mirrored copy of a node stands: catalog
// mirrors every node below a composed parent into the parent's repository,
// the root of the tree. ok is false for a node that lives there already.
// It is the one statement of the mirroring rule; attest signs the copies
// where it says they are.
func MirrorRepository(n *walk.Node) (repo name.Repository, ok bool) {
	root := n.Root().Repository
	return root, n.Repository.Name() != root.Name()
}

// MirrorStats say what mirroring one child did in the parent repository.
type MirrorStats struct {
	// ManifestsPushed and ManifestsPresent count the child's manifests,
	// itself and every manifest below it, pushed by digest or found there.
	ManifestsPushed  int `json:"manifestsPushed"`
	ManifestsPresent int `json:"manifestsPresent"`
	// BlobsMounted, BlobsUploaded and BlobsPresent count configs and layers
	// mounted from the child's repository, uploaded because the registry
	// would not mount them, or found there.
	BlobsMounted  int `json:"blobsMounted"`
	BlobsUploaded int `json:"blobsUploaded"`
	BlobsPresent  int `json:"blobsPresent"`
	// BytesUploaded is what the uploads sent.
	BytesUploaded int64 `json:"bytesUploaded"`
	// Requests counts the requests made, retries included.
	Requests int `json:"requests"`
}

// mirror makes every manifest the parent needs resolvable in the parent
// repository: each child's manifest and every manifest below it, found by
// walking the child with the run's walk options, pushed by digest without
// tags, children before their index, configs and layers mounted from the
// repository they live in. A manifest already there is not walked below.
// Manifests and blobs met under several children are mirrored once.
func (r *run) mirror(ctx context.Context, res []*resolved, out *Result) error {
	m := &mirrorer{run: r}
	stats := make([]*mirrorCounter, len(res))
	errs := make([]error, len(res))
	var wg sync.WaitGroup
	for i, c := range res {
		stats[i] = &mirrorCounter{}
		wg.Go(func() {
			ctx := registry.WithCounter(ctx, &stats[i].requests)
			errs[i] = m.child(ctx, stats[i], c)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%w: %s (%s): %w", ErrMirror, c.Path, c.Source, errs[i])
			}
		})
	}
	wg.Wait()
	out.Mirrored = true
	for i := range res {
		s := stats[i].stats()
		out.Children[i].Mirror, out.Children[i].Mirrored = &s, errs[i] == nil
		out.Children[i].Requests += s.Requests
		out.Requests += s.Requests
	}
	return errors.Join(errs...)
}

type mirrorer struct {
	*run
	manifests flights
	blobs     flights
}

// child mirrors one child and everything below it.
func (m *mirrorer) child(ctx context.Context, st *mirrorCounter, c *resolved) error {
	opts := m.opts.Walk
	opts.AllowMissing, opts.KeepManifests = false, true
	opts.Root = &registry.Manifest{Raw: c.raw, MediaType: c.desc.MediaType, Digest: c.desc.Digest}
	var mu sync.Mutex
	present := map[*walk.Node]bool{}
	tree, err := walk.Walk(ctx, c.Ref.Context().Digest(c.desc.Digest.String()), opts, func(ctx context.Context, n *walk.Node, err error) error {
		if err != nil {
			return err
		}
		ok, err := m.opts.Client.HasManifest(ctx, m.parent.Context(), n.Descriptor)
		if err != nil || !ok {
			return err
		}
		mu.Lock()
		present[n] = true
		mu.Unlock()
		return walk.SkipChildren
	})
	if err != nil {
		return err
	}
	for _, level := range byDepth(tree, present) {
		errs := make([]error, len(level))
		pool.ForEach(len(level), opts.Jobs, func(i int) { errs[i] = m.manifest(ctx, st, level[i]) })
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	st.add(func(s *MirrorStats) { s.ManifestsPresent += len(present) })
	return nil
}

// byDepth groups the nodes to mirror, deepest first, so children are pushed
// before the indexes that list them.
func byDepth(tree *walk.Tree, present map[*walk.Node]bool) [][]*walk.Node {
	var levels [][]*walk.Node
	for _, n := range tree.Nodes {
		if present[n] || below(n, present) {
			continue
		}
		for len(levels) <= n.Depth {
			levels = append(levels, nil)
		}
		levels[n.Depth] = append(levels[n.Depth], n)
	}
	slices.Reverse(levels)
	return levels
}

// below reports whether an ancestor of n is present: the walk skipped
// its children, so n is there too.
func below(n *walk.Node, present map[*walk.Node]bool) bool {
	for p := n.Parent; p != nil; p = p.Parent {
		if present[p] {
			return true
		}
	}
	return false
}

// manifest mirrors one node, its blobs first, once per digest.
func (m *mirrorer) manifest(ctx context.Context, st *mirrorCounter, n *walk.Node) error {
	return m.manifests.do(n.Descriptor.Digest.String(), func() error {
		man, err := walk.Decode(n.Raw, string(n.Descriptor.MediaType))
		if err != nil {
			return err
		}
		if !man.IsIndex() {
			blobs := append([]v1.Descriptor{*man.Config}, man.Layers...)
			errs := make([]error, len(blobs))
			pool.ForEach(len(blobs), m.opts.Walk.Jobs, func(i int) { errs[i] = m.blob(ctx, st, n.Repository, blobs[i]) })
			if err := errors.Join(errs...); err != nil {
				return err
			}
		}
		if _, err := m.opts.Client.PutManifest(ctx, m.parent.Context().Digest(n.Descriptor.Digest.String()), n.Descriptor.MediaType, n.Raw); err != nil {
			return fmt.Errorf("push %s into %s: %w", n.Digest(), m.parent.Context(), err)
		}
		st.add(func(s *MirrorStats) { s.ManifestsPushed++ })
		return nil
	})
}

// blob makes a config or layer of src present in the parent repository,
// once: mounted, or uploaded where the registry will not mount it.
func (m *mirrorer) blob(ctx context.Context, st *mirrorCounter, src name.Repository, d v1.Descriptor) error {
	if !d.MediaType.IsDistributable() && len(d.URLs) > 0 {
		return nil // a foreign layer: registries do not hold it
	}
	return m.blobs.do(d.Digest.String(), func() error {
		ok, err := m.opts.Client.HasBlob(ctx, m.parent.Context(), d.Digest)
		if err != nil {
			return err
		}
		if ok {
			st.add(func(s *MirrorStats) { s.BlobsPresent++ })
			return nil
		}
		sent, err := m.opts.Client.Mount(ctx, m.parent.Context(), src, d)
		if err != nil {
			return err
		}
		st.add(func(s *MirrorStats) {
			if sent > 0 {
				s.BlobsUploaded++
				s.BytesUploaded += sent
			} else {
				s.BlobsMounted++
			}
		})
		return nil
	})
}

// flights runs a function once per key; later callers wait for the first
// and share its error.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	err  error
}

func (f *flights) do(key string, fn func() error) error {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	if fl, ok := f.m[key]; ok {
		f.mu.Unlock()
		<-fl.done
		return fl.err
	}
	fl := &flight{done: make(chan struct{})}
	f.m[key] = fl
	f.mu.Unlock()
	fl.err = fn()
	close(fl.done)
	return fl.err
}

// mirrorCounter collects MirrorStats from concurrent requests.
type mirrorCounter struct {
	mu       sync.Mutex
	s        MirrorStats
	requests registry.Counter
}

func (c *mirrorCounter) add(f func(*MirrorStats)) {
	c.mu.Lock()
	f(&c.s)
	c.mu.Unlock()
}

func (c *mirrorCounter) stats() MirrorStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.Requests = c.requests.Count()
	return s
}
