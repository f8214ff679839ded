package walk

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/registry"
)

// MaxManifestBytes is the largest manifest the walk reads.
const MaxManifestBytes = registry.MaxManifestBytes

// Fetcher gets manifests, checked against the digest they were asked by;
// *registry.Client is one. Errors wrap registry.ErrNotFound,
// registry.ErrDigestMismatch and registry.ErrTooLarge.
type Fetcher interface {
	// GetManifest gets the manifest ref points at, reading at most limit
	// bytes.
	GetManifest(ctx context.Context, ref name.Reference, limit int64) (*registry.Manifest, error)
}
