package walk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/registry"
)

// Fetched is a manifest as a registry served it, checked against the digest
// it was asked for.
type Fetched struct {
	Raw         []byte
	ContentType string
	Digest      v1.Hash
}

// Fetcher gets manifests. Implementations check the digest and size, and
// return errors that wrap ErrNotFound, ErrDigestMismatch and ErrTooLarge.
type Fetcher interface {
	// Fetch gets the manifest ref points at, reading at most limit bytes.
	Fetch(ctx context.Context, ref name.Reference, limit int64) (*Fetched, error)
}

// acceptHeader lists the manifest types the walk reads.
var acceptHeader = strings.Join([]string{
	string(types.OCIImageIndex), string(types.OCIManifestSchema1),
	string(types.DockerManifestList), string(types.DockerManifestSchema2),
}, ", ")

// bodyAttempts is how many times a manifest whose body broke off mid-read
// is fetched again; the transport retries failed requests on its own.
const bodyAttempts = 3

// RegistryFetcher fetches manifests through a registry.Client.
type RegistryFetcher struct {
	Client *registry.Client
	// Access is the access asked for: registry.Push when the same run will
	// write, so one token serves both.
	Access registry.Access
}

// Fetch implements Fetcher.
func (f RegistryFetcher) Fetch(ctx context.Context, ref name.Reference, limit int64) (*Fetched, error) {
	var err error
	for range bodyAttempts {
		var got *Fetched
		got, err = f.fetchOnce(ctx, ref, limit)
		if err == nil || !isBrokenBody(err) || ctx.Err() != nil {
			return got, err
		}
	}
	return nil, err
}

func (f RegistryFetcher) fetchOnce(ctx context.Context, ref name.Reference, limit int64) (*Fetched, error) {
	c, err := f.Client.HTTPClient(ctx, ref.Context(), f.Access)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, registry.URL(ref.Context())+"/manifests/"+ref.Identifier(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", acceptHeader)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		var terr *transport.Error
		if resp.StatusCode == http.StatusNotFound && errors.As(err, &terr) {
			return nil, &statusError{sentinel: ErrNotFound, err: terr}
		}
		return nil, err
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: registry announced %d bytes, limit %d", ErrTooLarge, resp.ContentLength, limit)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, brokenBody{err}
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return checkDigest(ref, raw, resp.Header)
}

// checkDigest computes the digest of raw and compares it with the digest
// requested, or for a tag with the Docker-Content-Digest the registry sent.
func checkDigest(ref name.Reference, raw []byte, h http.Header) (*Fetched, error) {
	sum := sha256.Sum256(raw)
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	want := h.Get("Docker-Content-Digest")
	if d, ok := ref.(name.Digest); ok {
		want = d.DigestStr()
	}
	if want != "" && want != got.String() {
		return nil, fmt.Errorf("%w: asked for %s, got content with digest %s", ErrDigestMismatch, want, got)
	}
	return &Fetched{Raw: raw, ContentType: h.Get("Content-Type"), Digest: got}, nil
}

// brokenBody marks a response body that broke off while it was read.
type brokenBody struct{ err error }

func (b brokenBody) Error() string { return "reading manifest: " + b.err.Error() }
func (b brokenBody) Unwrap() error { return b.err }

func isBrokenBody(err error) bool {
	var b brokenBody
	return errors.As(err, &b)
}

// statusError is a registry's error answer that also matches a sentinel,
// shown briefly: "not found (HTTP 404 MANIFEST_UNKNOWN)".
type statusError struct {
	sentinel error
	err      *transport.Error
}

func (e *statusError) Error() string {
	codes := make([]string, 0, len(e.err.Errors))
	for _, d := range e.err.Errors {
		codes = append(codes, string(d.Code))
	}
	return fmt.Sprintf("%v (HTTP %d %s)", e.sentinel, e.err.StatusCode, strings.Join(codes, ", "))
}

func (e *statusError) Unwrap() []error { return []error{e.sentinel, e.err} }
