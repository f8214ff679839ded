// Package sample pushes small, deterministic trees of images shaped like the
// ko case: a parent index in a namespace whose entries point into scoped
// child repositories. The demo and the tests use it; the same inputs give
// the same digests on every registry.
package sample

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platforms are the platforms of every sample image index.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Image returns a small deterministic OCI image for a name and platform:
// one gzipped layer holding payload.txt.
func Image(content string, p v1.Platform) (v1.Image, error) {
	layer, err := tarLayer(content + " for " + p.String() + "\n")
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint = []string{"/" + content}
	return mutate.ConfigFile(img, cf)
}

// Index returns a multi-platform index of Image(content, p) for Platforms,
// with extra entries appended as they are.
func Index(content string, extra ...mutate.IndexAddendum) (v1.ImageIndex, error) {
	return IndexOf(content, Platforms, extra...)
}

// IndexOf returns an index of Image(content, p) for each of platforms, with
// extra entries appended as they are.
func IndexOf(content string, platforms []v1.Platform, extra ...mutate.IndexAddendum) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, p := range platforms {
		img, err := Image(content, p)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return mutate.AppendManifests(idx, append(adds, extra...)...), nil
}

// tarLayer is a gzipped tar of one file; gzip with no name or time is
// deterministic, so the layer's digest is too.
func tarLayer(content string) (v1.Layer, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	hdr := &tar.Header{Name: "payload.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// Child is one scoped child of a sample tree: its path below the parent
// and its content.
type Child struct {
	Path  string
	Index v1.ImageIndex
}

// KoChildren returns the children of the ko-shaped sample: app1, app2 and
// app3, each a two-platform index; app2 also lists app2/plugins, a
// further-scoped two-platform index, through the scoping annotation.
func KoChildren(annotation string) ([]Child, error) {
	plugins, err := Index("plugins")
	if err != nil {
		return nil, err
	}
	var out []Child
	for _, app := range []string{"app1", "app2", "app3"} {
		var extra []mutate.IndexAddendum
		if app == "app2" {
			extra = append(extra, mutate.IndexAddendum{Add: plugins, Descriptor: v1.Descriptor{
				Annotations: map[string]string{annotation: "plugins"},
			}})
		}
		idx, err := Index(app, extra...)
		if err != nil {
			return nil, err
		}
		out = append(out, Child{Path: app, Index: idx})
	}
	return out, nil
}

// Parent returns the parent index of children: one entry per child,
// annotated with its path.
func Parent(annotation string, children []Child) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, c := range children {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: c.Index, Descriptor: v1.Descriptor{
			Annotations: map[string]string{annotation: c.Path},
		}})
	}
	return idx
}

// Pusher pushes a tree whose index entries may carry the scoping annotation.
type Pusher struct {
	// Annotation is the scoping annotation's key.
	Annotation string
	// MirrorManifests also puts, by digest and without blobs, every manifest
	// a scoped entry points at into the index's repository, which registries
	// that check only that index children exist (go-containerregistry's
	// in-memory registry) need. Registries that check blobs too need the
	// catalog package's mirroring.
	MirrorManifests bool
	// Options are the remote options for every request.
	Options []remote.Option
}

// Push writes idx into repo: every child into its scoped repository first,
// then the index by digest, then the tags.
func (p Pusher) Push(repo name.Repository, idx v1.ImageIndex, tags ...string) (name.Digest, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return name.Digest{}, err
	}
	for _, d := range m.Manifests {
		if err := p.pushChild(repo, idx, d); err != nil {
			return name.Digest{}, err
		}
	}
	ref, err := digestOf(repo, idx)
	if err != nil {
		return name.Digest{}, err
	}
	if err := remote.Put(ref, idx, p.Options...); err != nil {
		return name.Digest{}, fmt.Errorf("put %s: %w", ref, err)
	}
	for _, t := range tags {
		if err := remote.Tag(repo.Tag(t), idx, p.Options...); err != nil {
			return name.Digest{}, fmt.Errorf("tag %s: %w", repo.Tag(t), err)
		}
	}
	return ref, nil
}

func (p Pusher) pushChild(repo name.Repository, idx v1.ImageIndex, d v1.Descriptor) error {
	target := repo
	scope, scoped := d.Annotations[p.Annotation]
	if scoped {
		target = repo.Registry.Repo(repo.RepositoryStr(), scope)
	}
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return err
		}
		if _, err := p.Push(target, child); err != nil {
			return err
		}
		if scoped && p.MirrorManifests {
			return p.putManifests(repo, child)
		}
		return nil
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return err
	}
	if err := remote.Write(target.Digest(d.Digest.String()), img, p.Options...); err != nil {
		return fmt.Errorf("write %s@%s: %w", target, d.Digest, err)
	}
	if scoped && p.MirrorManifests {
		return remote.Put(repo.Digest(d.Digest.String()), img, p.Options...)
	}
	return nil
}

// putManifests puts an index and everything below it into repo, manifests
// only, children first.
func (p Pusher) putManifests(repo name.Repository, idx v1.ImageIndex) error {
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range m.Manifests {
		var t remote.Taggable
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			if err := p.putManifests(repo, child); err != nil {
				return err
			}
			continue
		}
		if t, err = idx.Image(d.Digest); err != nil {
			return err
		}
		if err := remote.Put(repo.Digest(d.Digest.String()), t, p.Options...); err != nil {
			return err
		}
	}
	ref, err := digestOf(repo, idx)
	if err != nil {
		return err
	}
	return remote.Put(ref, idx, p.Options...)
}

func digestOf(repo name.Repository, t interface{ Digest() (v1.Hash, error) }) (name.Digest, error) {
	h, err := t.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("digest: %w", err)
	}
	return repo.Digest(h.String()), nil
}

// Wide returns a parent index with children entries scoped to c000, c001,
// …, each an index of leaves single-platform images: a tree of
// 1 + children*(1+leaves) nodes. seed makes its digests its own.
func Wide(annotation, seed string, children, leaves int) (v1.ImageIndex, error) {
	parent := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for c := range children {
		child := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for l := range leaves {
			p := v1.Platform{OS: "linux", Architecture: "amd64", Variant: fmt.Sprint("v", l)}
			img, err := Image(fmt.Sprintf("%s-%d-%d", seed, c, l), p)
			if err != nil {
				return nil, err
			}
			child = mutate.AppendManifests(child, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		}
		parent = mutate.AppendManifests(parent, mutate.IndexAddendum{Add: child, Descriptor: v1.Descriptor{
			Annotations: map[string]string{annotation: fmt.Sprintf("c%03d", c)},
		}})
	}
	return parent, nil
}
