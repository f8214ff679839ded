package catalog

import (
	"bytes"
	"fmt"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// Entry is one child of a parent index: the descriptor of its manifest as
// its registry serves it (media type, digest, size; the platform for a
// single-platform image), annotated with its path, and the manifest's bytes.
type Entry struct {
	Descriptor v1.Descriptor
	Raw        []byte
}

// Index composes a parent index: an OCI image index with one entry per
// child, sorted by the child's walk.AnnotationRepository path, and the given
// annotations. It holds no timestamps: the same entries and annotations
// give the same digest. Each entry keeps its child's exact descriptor; Raw,
// when given, must be the bytes the descriptor's digest and size describe.
func Index(entries []Entry, annotations map[string]string) (v1.ImageIndex, error) {
	sorted := append([]Entry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return path(sorted[i]) < path(sorted[j]) })
	adds := make([]mutate.IndexAddendum, len(sorted))
	for i, e := range sorted {
		if _, err := walk.ParseScope(path(e)); err != nil {
			return nil, fmt.Errorf("%w: entry %d (%s): %w", ErrPath, i, e.Descriptor.Digest, err)
		}
		m := manifest{desc: e.Descriptor, raw: e.Raw}
		if err := m.check(); err != nil {
			return nil, err
		}
		adds[i] = mutate.IndexAddendum{Add: m, Descriptor: v1.Descriptor{
			Platform: e.Descriptor.Platform, Annotations: e.Descriptor.Annotations, ArtifactType: e.Descriptor.ArtifactType,
		}}
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	if len(annotations) > 0 {
		idx = mutate.Annotations(idx, annotations).(v1.ImageIndex)
	}
	return idx, nil
}

func path(e Entry) string { return e.Descriptor.Annotations[walk.AnnotationRepository] }

// manifest is a child's manifest as it was served, so that the parent's
// entry is exactly the child's descriptor.
type manifest struct {
	desc v1.Descriptor
	raw  []byte
}

func (m manifest) MediaType() (types.MediaType, error) { return m.desc.MediaType, nil }
func (m manifest) Digest() (v1.Hash, error)            { return m.desc.Digest, nil }
func (m manifest) Size() (int64, error)                { return m.desc.Size, nil }
func (m manifest) RawManifest() ([]byte, error)        { return m.raw, nil }

func (m manifest) check() error {
	if m.raw == nil {
		return nil
	}
	h, n, err := v1.SHA256(bytes.NewReader(m.raw))
	if err != nil {
		return err
	}
	if h != m.desc.Digest || n != m.desc.Size {
		return fmt.Errorf("%w: entry %s: the bytes given are %s, %d bytes", registry.ErrDigestMismatch, m.desc.Digest, h, n)
	}
	return nil
}
