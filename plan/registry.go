package plan

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// Push puts an encoded plan into repo by digest, without a tag: its blobs
// (jobs at once), then its manifest. A plan already there (the same tree
// planned in as many shards before) is not pushed again: one HEAD request.
// written says whether it was pushed.
func Push(ctx context.Context, c *registry.Client, repo name.Repository, enc *Encoded, jobs int) (ref name.Digest, written bool, err error) {
	ref = repo.Digest(enc.Digest.String())
	there, err := c.HasManifest(ctx, repo, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: enc.Digest, Size: int64(len(enc.Manifest))})
	if err != nil || there {
		return ref, false, err
	}
	errs := make([]error, len(enc.Blobs))
	pool.ForEach(len(enc.Blobs), jobs, func(i int) { _, errs[i] = c.Upload(ctx, repo, enc.Blobs[i]) })
	if err := errors.Join(errs...); err != nil {
		return ref, false, fmt.Errorf("push the plan to %s: %w", repo, err)
	}
	if _, err := c.PutManifest(ctx, ref, types.OCIManifestSchema1, enc.Manifest); err != nil {
		return ref, false, fmt.Errorf("push the plan to %s: %w", repo, err)
	}
	return ref, true, nil
}

// Open reads a plan's manifest: one request.
func Open(ctx context.Context, c walk.Fetcher, ref name.Digest) (*Header, error) {
	m, err := c.GetManifest(ctx, ref, registry.MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("read the plan %s: %w", ref, err)
	}
	h, err := ParseManifest(m.Raw)
	if err != nil {
		return nil, fmt.Errorf("read the plan %s: %w", ref, err)
	}
	return h, nil
}

// For checks that the plan was made for the root at repo with digest d.
func (h *Header) For(repo name.Repository, d v1.Hash) error {
	if repo.Name() != h.Root.Repository || d != h.Root.Digest {
		return fmt.Errorf("%w: the plan was made for %s@%s, the root is %s@%s", ErrOtherRoot, h.Root.Repository, h.Root.Digest, repo.Name(), d)
	}
	return nil
}

// BlobReader reads blobs; *registry.Client is one.
type BlobReader interface {
	ReadBlob(ctx context.Context, repo name.Repository, d v1.Descriptor, limit int64) ([]byte, error)
}

// ReadShard reads and checks shard s's document of the plan h, stored in
// repo: one request.
func ReadShard(ctx context.Context, c BlobReader, repo name.Repository, h *Header, s int) (*Shard, error) {
	l, err := h.Layer(s)
	if err != nil {
		return nil, err
	}
	raw, err := c.ReadBlob(ctx, repo, l, MaxShardBytes)
	if err != nil {
		return nil, fmt.Errorf("read shard %d of the plan: %w", s, err)
	}
	return ParseShard(raw, h, s)
}

// Confirm fetches each node's manifest (jobs at once; none for a node of
// KindMissing, nor for the root when root is its manifest, already read)
// and checks it is what the plan says: its digest, size, media type,
// artifact type and kind. The error joins every node that differs.
func Confirm(ctx context.Context, f walk.Fetcher, nodes []*walk.Node, jobs int, root *registry.Manifest) error {
	errs := make([]error, len(nodes))
	pool.ForEach(len(nodes), jobs, func(i int) {
		n := nodes[i]
		if n.Kind == walk.KindMissing || ctx.Err() != nil {
			return
		}
		m := root
		if n.Parent != nil || m == nil || m.Digest != n.Descriptor.Digest {
			var err error
			if m, err = f.GetManifest(ctx, n.Digest(), walk.MaxManifestBytes); err != nil {
				errs[i] = walk.Errorf("confirm", n, err)
				return
			}
		}
		if err := same(n, m); err != nil {
			errs[i] = walk.Errorf("confirm", n, err)
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// same checks a fetched manifest against its node.
func same(n *walk.Node, m *registry.Manifest) error {
	if int64(len(m.Raw)) != n.Descriptor.Size {
		return fmt.Errorf("%w: the plan gives size %d, the manifest is %d bytes", ErrChanged, n.Descriptor.Size, len(m.Raw))
	}
	d, err := walk.Decode(m.Raw, string(m.MediaType))
	if err != nil {
		return err
	}
	if d.Kind() != n.Kind || d.MediaType != n.Descriptor.MediaType || d.ArtifactType != n.ArtifactType || d.IsSupplement() {
		return fmt.Errorf("%w: the plan says %s %s %q, the manifest is %s %s %q", ErrChanged,
			n.Kind, n.Descriptor.MediaType, n.ArtifactType, d.Kind(), d.MediaType, d.ArtifactType)
	}
	return nil
}

// Load reads shard s of the plan at ref for the tree at root, and returns
// the shard's tree (walk.Tree.Nodes are the shard's own nodes, confirmed)
// and its document. It reads the plan's manifest, then checks s is one of
// its shards, then that the plan is for root: a digest is compared with no
// request, a tag is resolved (one request, whose manifest confirms the
// root when the shard holds it). It then reads the shard's document and
// confirms the shard's nodes (Confirm). A plan for another root, or a
// shard id out of range, stops it before any node is read.
func Load(ctx context.Context, c *registry.Client, ref name.Digest, root name.Reference, s, jobs int) (*walk.Tree, *Shard, error) {
	h, err := Open(ctx, c, ref)
	if err != nil {
		return nil, nil, err
	}
	if _, err := h.Layer(s); err != nil {
		return nil, nil, err
	}
	digest, m, err := resolve(ctx, c, root)
	if err != nil {
		return nil, nil, err
	}
	if err := h.For(root.Context(), digest); err != nil {
		return nil, nil, err
	}
	doc, err := ReadShard(ctx, c, ref.Context(), h, s)
	if err != nil {
		return nil, nil, err
	}
	tree, err := doc.Tree(root.Context())
	if err != nil {
		return nil, nil, err
	}
	return tree, doc, Confirm(ctx, c, tree.Nodes, jobs, m)
}

// resolve returns the digest root names: a digest as it is, with no
// request; a tag by fetching its manifest, which it returns too.
func resolve(ctx context.Context, c walk.Fetcher, root name.Reference) (v1.Hash, *registry.Manifest, error) {
	if d, ok := root.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		return h, nil, err
	}
	m, err := c.GetManifest(ctx, root, walk.MaxManifestBytes)
	if err != nil {
		return v1.Hash{}, nil, fmt.Errorf("resolve %s: %w", root, err)
	}
	return m.Digest, m, nil
}
