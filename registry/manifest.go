package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// MaxManifestBytes is the largest manifest read: the 4 MiB that the
// distribution specification lets registries refuse beyond.
const MaxManifestBytes = 4 << 20

// ManifestTypes are the manifest media types a Client asks for.
var ManifestTypes = []types.MediaType{
	types.OCIImageIndex, types.OCIManifestSchema1, types.DockerManifestList, types.DockerManifestSchema2,
}

var acceptManifests = func() string {
	s := make([]string, len(ManifestTypes))
	for i, t := range ManifestTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}()

// Manifest is a manifest as a registry served it, checked against the
// digest it was asked by (or, for a tag, the Docker-Content-Digest).
type Manifest struct {
	Raw       []byte
	MediaType types.MediaType
	Digest    v1.Hash
}

// Descriptor describes the manifest.
func (m *Manifest) Descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Raw))}
}

// GetManifest fetches the manifest ref points at, at most limit bytes.
// It fails with ErrNotFound when there is none, ErrDigestMismatch when the
// content is not what was asked for, and ErrTooLarge past limit.
func (c *Client) GetManifest(ctx context.Context, ref name.Reference, limit int64) (*Manifest, error) {
	raw, resp, err := c.read(ctx, ref.Context(), request{
		method: http.MethodGet, url: URL(ref.Context()) + "/manifests/" + ref.Identifier(),
		accept: acceptManifests, want: []int{http.StatusOK},
	}, limit)
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("manifest %w", err)
	}
	if err != nil {
		return nil, err
	}
	got := digestOf(raw)
	want := resp.Header.Get("Docker-Content-Digest")
	if d, ok := ref.(name.Digest); ok {
		want = d.DigestStr()
	}
	if want != "" && want != got.String() {
		return nil, fmt.Errorf("%w: asked for %s, got content with digest %s", ErrDigestMismatch, want, got)
	}
	return &Manifest{Raw: raw, MediaType: types.MediaType(resp.Header.Get("Content-Type")), Digest: got}, nil
}

// HasManifest reports whether repo holds the manifest d.
func (c *Client) HasManifest(ctx context.Context, repo name.Repository, d v1.Descriptor) (bool, error) {
	return c.head(ctx, repo, "manifests", d)
}

// PutManifest puts raw at ref, a tag or digest, and returns the digest the
// registry answered with (its Docker-Content-Digest), or raw's own digest
// when it sent none. A registry that answers with another digest than raw's
// fails with ErrDigestMismatch.
func (c *Client) PutManifest(ctx context.Context, ref name.Reference, mediaType types.MediaType, raw []byte) (v1.Hash, error) {
	resp, err := c.do(ctx, ref.Context(), request{
		method: http.MethodPut, url: URL(ref.Context()) + "/manifests/" + ref.Identifier(),
		ctype: string(mediaType), body: raw, want: []int{http.StatusCreated, http.StatusOK, http.StatusAccepted},
	})
	if err != nil {
		return v1.Hash{}, err
	}
	resp.Body.Close()
	d := digestOf(raw)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return d, fmt.Errorf("%w: %s answered %s for a manifest whose digest is %s", ErrDigestMismatch, ref, got, d)
	}
	return d, nil
}

// head asks whether repo holds a manifest or blob.
func (c *Client) head(ctx context.Context, repo name.Repository, kind string, d v1.Descriptor) (bool, error) {
	r := request{method: http.MethodHead, url: URL(repo) + "/" + kind + "/" + d.Digest.String(), want: []int{http.StatusOK, http.StatusNotFound}}
	if kind == "manifests" {
		r.accept = acceptManifests
		if d.MediaType != "" {
			r.accept = string(d.MediaType)
		}
	}
	resp, err := c.do(ctx, repo, r)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
