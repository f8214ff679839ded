package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

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
	// Requests counts the HEAD, GET, POST and PUT requests made.
	Requests int `json:"requests"`
}

// mirror makes every manifest the parent needs resolvable in the parent
// repository: each child's manifest and, through nested indexes and their
// scoped children, every manifest below it, pushed by digest without tags,
// children before their index, configs and layers mounted from the
// repository they live in. What is there already is left alone. Manifests
// and blobs met twice are mirrored once.
func (r *run) mirror(ctx context.Context, res []*resolved, out *Result) error {
	m, err := r.newMirrorer(ctx)
	if err != nil {
		return err
	}
	stats := make([]*mirrorCounter, len(res))
	errs := make([]error, len(res))
	var wg sync.WaitGroup
	for i, c := range res {
		stats[i] = &mirrorCounter{}
		wg.Go(func() {
			errs[i] = m.manifest(ctx, stats[i], c.Ref.Context(), c.desc, c.raw, 0)
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
	push      *http.Client
	manifests flights
	blobs     flights
	nodes     atomic.Int64
}

func (r *run) newMirrorer(ctx context.Context) (*mirrorer, error) {
	hc, err := r.opts.Client.HTTPClient(ctx, r.parent.Context(), registry.Push)
	if err != nil {
		return nil, err
	}
	return &mirrorer{run: r, push: hc}, nil
}

// manifest mirrors the manifest d of src, and everything below it, once.
// raw is its content when known.
func (m *mirrorer) manifest(ctx context.Context, st *mirrorCounter, src name.Repository, d v1.Descriptor, raw []byte, depth int) error {
	return m.manifests.do(d.Digest.String(), func() error {
		err := m.mirrorManifest(ctx, st, src, d, raw, depth)
		if err != nil {
			return fmt.Errorf("%w: %s@%s: %w", ErrMirror, src.Name(), d.Digest, err)
		}
		return nil
	})
}

func (m *mirrorer) mirrorManifest(ctx context.Context, st *mirrorCounter, src name.Repository, d v1.Descriptor, raw []byte, depth int) error {
	if depth > walk.DefaultMaxDepth {
		return fmt.Errorf("%w: nested deeper than %d indexes", walk.ErrTooDeep, walk.DefaultMaxDepth)
	}
	if m.nodes.Add(1) > walk.DefaultMaxNodes {
		return fmt.Errorf("%w: more than %d manifests to mirror", walk.ErrTooManyNodes, walk.DefaultMaxNodes)
	}
	if ok, err := m.exists(ctx, st, "manifests", d); err != nil || ok {
		if ok {
			st.add(func(s *MirrorStats) { s.ManifestsPresent++ })
		}
		return err
	}
	man, raw, err := m.fetch(ctx, st, src, d, raw)
	if err != nil {
		return err
	}
	if man.IsIndex() {
		err = m.each(len(man.Manifests), func(i int) error {
			e := man.Manifests[i]
			repo, err := walk.ChildRepository(src, e.Annotations)
			if err != nil {
				return fmt.Errorf("manifests[%d]: %w", i, err)
			}
			return m.manifest(ctx, st, repo, e, nil, depth+1)
		})
	} else {
		blobs := append([]v1.Descriptor{*man.Config}, man.Layers...)
		err = m.each(len(blobs), func(i int) error { return m.blob(ctx, st, src, blobs[i]) })
	}
	if err != nil {
		return err
	}
	return m.putManifest(ctx, st, d, raw)
}

// fetch gets a manifest below a child, checked against its descriptor.
func (m *mirrorer) fetch(ctx context.Context, st *mirrorCounter, src name.Repository, d v1.Descriptor, raw []byte) (*walk.Manifest, []byte, error) {
	if raw == nil {
		err := m.limit(ctx, func() error {
			st.request()
			f, err := m.fetcher.Fetch(ctx, src.Digest(d.Digest.String()), walk.MaxManifestBytes)
			if err == nil {
				raw = f.Raw
			}
			return err
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if int64(len(raw)) != d.Size {
		return nil, nil, fmt.Errorf("%w: the index entry gives size %d, the manifest is %d bytes", walk.ErrInvalidManifest, d.Size, len(raw))
	}
	man, err := walk.Decode(raw, string(d.MediaType))
	return man, raw, err
}

func (m *mirrorer) putManifest(ctx context.Context, st *mirrorCounter, d v1.Descriptor, raw []byte) error {
	return m.limit(ctx, func() error {
		st.request()
		_, err := putManifest(ctx, m.push, registry.URL(m.parent.Context())+"/manifests/"+d.Digest.String(), string(d.MediaType), raw)
		if err == nil {
			st.add(func(s *MirrorStats) { s.ManifestsPushed++ })
		}
		return err
	})
}

// blob makes a config or layer of src present in the parent repository,
// once: mounted, or uploaded where the registry will not mount it.
func (m *mirrorer) blob(ctx context.Context, st *mirrorCounter, src name.Repository, d v1.Descriptor) error {
	if !d.MediaType.IsDistributable() && len(d.URLs) > 0 {
		return nil // a foreign layer: registries do not hold it
	}
	return m.blobs.do(d.Digest.String(), func() error {
		ok, err := m.exists(ctx, st, "blobs", d)
		if err != nil || ok {
			if ok {
				st.add(func(s *MirrorStats) { s.BlobsPresent++ })
			}
			return err
		}
		location, err := m.mount(ctx, st, src, d)
		if err != nil || location == nil {
			return err
		}
		return m.upload(ctx, st, src, d, location)
	})
}

// exists HEADs a manifest or blob in the parent repository.
func (m *mirrorer) exists(ctx context.Context, st *mirrorCounter, kind string, d v1.Descriptor) (bool, error) {
	var found bool
	err := m.limit(ctx, func() error {
		st.request()
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, registry.URL(m.parent.Context())+"/"+kind+"/"+d.Digest.String(), nil)
		if err != nil {
			return err
		}
		if kind == "manifests" {
			req.Header.Set("Accept", string(d.MediaType))
		}
		resp, err := m.push.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		found = resp.StatusCode == http.StatusOK
		if found || resp.StatusCode == http.StatusNotFound {
			return nil
		}
		return transport.CheckError(resp, http.StatusOK)
	})
	return found, err
}

// mount asks the registry to mount a blob from src: nil when it did (201),
// the upload's location when it started an upload instead (202).
func (m *mirrorer) mount(ctx context.Context, st *mirrorCounter, src name.Repository, d v1.Descriptor) (*url.URL, error) {
	hc, err := m.opts.Client.ScopedHTTPClient(ctx, m.parent.Registry,
		m.parent.Context().Scope(transport.PushScope), src.Scope(transport.PullScope))
	if err != nil {
		return nil, err
	}
	var location *url.URL
	err = m.limit(ctx, func() error {
		st.request()
		u := registry.URL(m.parent.Context()) + "/blobs/uploads/?mount=" + url.QueryEscape(d.Digest.String()) + "&from=" + url.QueryEscape(src.RepositoryStr())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := transport.CheckError(resp, http.StatusCreated, http.StatusAccepted); err != nil {
			return err
		}
		if resp.StatusCode == http.StatusCreated {
			st.add(func(s *MirrorStats) { s.BlobsMounted++ })
			return nil
		}
		location, err = resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err == nil && resp.Header.Get("Location") == "" {
			err = errors.New("the registry started an upload without a Location")
		}
		return err
	})
	return location, err
}

// upload streams a blob from src into the upload at location.
func (m *mirrorer) upload(ctx context.Context, st *mirrorCounter, src name.Repository, d v1.Descriptor, location *url.URL) error {
	return m.limit(ctx, func() error {
		st.request()
		body, err := m.openBlob(ctx, src, d)
		if err != nil {
			return fmt.Errorf("read blob %s from %s: %w", d.Digest, src.Name(), err)
		}
		defer body.Close()
		q := location.Query()
		q.Set("digest", d.Digest.String())
		location.RawQuery = q.Encode()
		counted := &countingReader{r: body}
		st.request()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, location.String(), counted)
		if err != nil {
			return err
		}
		req.ContentLength = d.Size
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := m.push.Do(req)
		st.add(func(s *MirrorStats) { s.BytesUploaded += counted.n.Load() })
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := transport.CheckError(resp, http.StatusCreated); err != nil {
			return err
		}
		st.add(func(s *MirrorStats) { s.BlobsUploaded++ })
		return nil
	})
}

// each runs fn for 0..n-1 concurrently and joins the errors; the requests
// fn makes are limited by the run's Jobs, so nesting never multiplies them.
func (m *mirrorer) each(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
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
	mu sync.Mutex
	s  MirrorStats
}

func (c *mirrorCounter) add(f func(*MirrorStats)) {
	c.mu.Lock()
	f(&c.s)
	c.mu.Unlock()
}

func (c *mirrorCounter) request() { c.add(func(s *MirrorStats) { s.Requests++ }) }

func (c *mirrorCounter) stats() MirrorStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
