package attest

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/nestattest/nestattest/registry"
)

// Kind is what a stored object is.
type Kind string

// The kinds cosign stores, named by their tag suffix.
const (
	Signatures   Kind = "sig"
	Attestations Kind = "att"
)

// Store lists and adds the signatures or attestations of one manifest
// (repository, digest).
type Store interface {
	// List returns what is stored; an empty oci.Signatures when nothing is.
	List(ctx context.Context, repo name.Repository, digest v1.Hash, kind Kind) (oci.Signatures, error)
	// Add stores sig after existing, which List returned.
	Add(ctx context.Context, repo name.Repository, digest v1.Hash, kind Kind, existing oci.Signatures, sig oci.Signature) error
}

// TagStore is cosign's tag layout: one image per manifest and kind, tagged
// sha256-<hex>.sig or sha256-<hex>.att in the manifest's repository, each
// signature or attestation a layer.
type TagStore struct {
	Client *registry.Client
	// Access is the access List asks for: registry.Push when the run will
	// write, so one token serves both.
	Access registry.Access
}

// Tag returns the tag cosign uses for a manifest's signatures or
// attestations: <repo>:sha256-<hex>.<kind>.
func Tag(repo name.Repository, digest v1.Hash, kind Kind) name.Tag {
	return repo.Tag(strings.ReplaceAll(digest.String(), ":", "-") + "." + string(kind))
}

// List implements Store.
func (s TagStore) List(ctx context.Context, repo name.Repository, digest v1.Hash, kind Kind) (oci.Signatures, error) {
	ropts, err := s.Client.Remote(ctx, repo, s.Access)
	if err != nil {
		return nil, err
	}
	sigs, err := ociremote.Signatures(Tag(repo, digest, kind), ociremote.WithRemoteOptions(ropts...))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Tag(repo, digest, kind), err)
	}
	return sigs, nil
}

// Add implements Store: it appends sig as a layer and writes the image.
// The blobs of existing are in the repository already (its manifest names
// them): only the new layer and the new config are uploaded.
func (s TagStore) Add(ctx context.Context, repo name.Repository, digest v1.Hash, kind Kind, existing oci.Signatures, sig oci.Signature) error {
	img, err := mutate.AppendSignatures(existing, false, sig)
	if err != nil {
		return err
	}
	m, err := existing.Manifest()
	if err != nil {
		return err
	}
	known := make(map[v1.Hash]bool, len(m.Layers))
	for _, l := range m.Layers {
		known[l.Digest] = true
	}
	tag := Tag(repo, digest, kind)
	if err := publish(ctx, s.Client, tag, img, known); err != nil {
		return fmt.Errorf("write %s: %w", tag, err)
	}
	return nil
}
