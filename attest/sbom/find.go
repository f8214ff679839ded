package sbom

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/registry"
)

// SBOM is one SBOM document attached to a manifest, as attached.
type SBOM struct {
	Format Format
	// MediaType is what it was attached as: the layer's media type in a
	// .sbom tag, the referrer's artifact type.
	MediaType string
	// Raw is the document, byte for byte.
	Raw []byte
	// Digest is Raw's digest.
	Digest v1.Hash
	// Where names what it was read from: the .sbom tag, or the referrer
	// manifest by digest.
	Where string
}

// Skipped is an SBOM attached to a manifest that is not attested, and why.
type Skipped struct {
	Where, MediaType, Reason string
}

// Found is what a manifest carries: the SBOMs to attest, each document
// once however many ways it was attached, and those passed over.
type Found struct {
	SBOMs   []*SBOM
	Skipped []Skipped
}

// Tag is cosign's tag for the SBOM of the manifest d in repo:
// <repo>:sha256-<hex>.sbom.
func Tag(repo name.Repository, d v1.Hash) name.Tag {
	return repo.Tag(d.Algorithm + "-" + d.Hex + ".sbom")
}

// Find returns the SBOMs attached to the manifest d in repo, in its .sbom
// tag and among its referrers, read through c. None is an empty Found, not
// an error; a tag or referrer that cannot be read is an error naming it.
func Find(ctx context.Context, c *registry.Client, repo name.Repository, d v1.Hash) (*Found, error) {
	f := &Found{}
	seen := map[v1.Hash]bool{}
	add := func(s *SBOM) {
		if !seen[s.Digest] {
			seen[s.Digest] = true
			f.SBOMs = append(f.SBOMs, s)
		}
	}
	if err := fromTag(ctx, c, repo, d, f, add); err != nil {
		return nil, err
	}
	if err := fromReferrers(ctx, c, repo, d, f, add); err != nil {
		return nil, err
	}
	return f, nil
}

// fromTag reads cosign's .sbom tag: each layer of an SBOM media type is
// a document.
func fromTag(ctx context.Context, c *registry.Client, repo name.Repository, d v1.Hash, f *Found, add func(*SBOM)) error {
	tag := Tag(repo, d)
	m, err := c.GetManifest(ctx, tag, registry.MaxManifestBytes)
	if errors.Is(err, registry.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the SBOM tag %s: %w", tag, err)
	}
	man, err := ParseManifest(m.Raw)
	if err != nil {
		return fmt.Errorf("read the SBOM tag %s: %w", tag, err)
	}
	for _, l := range man.Layers {
		if !IsSBOMMediaType(string(l.MediaType)) {
			continue
		}
		if err := read(ctx, c, repo, tag.String(), string(l.MediaType), l, f, add); err != nil {
			return err
		}
	}
	return nil
}

// fromReferrers reads the referrers of d whose artifact type is an SBOM
// media type (listed so, or, where the listing leaves it out, in the
// manifest): the document is the manifest's layer of that media type, or
// its only layer (oras attaches a file as a layer of a generic type).
func fromReferrers(ctx context.Context, c *registry.Client, repo name.Repository, d v1.Hash, f *Found, add func(*SBOM)) error {
	refs, err := c.Referrers(ctx, repo, d)
	if err != nil {
		return fmt.Errorf("referrers of %s: %w", repo.Digest(d.String()), err)
	}
	for _, desc := range refs {
		if !maybeSBOM(desc) {
			continue
		}
		where := repo.Digest(desc.Digest.String())
		m, err := c.GetManifest(ctx, where, registry.MaxManifestBytes)
		if err != nil {
			return fmt.Errorf("read the referrer %s: %w", where, err)
		}
		man, err := ParseManifest(m.Raw)
		if err != nil {
			return fmt.Errorf("read the referrer %s: %w", where, err)
		}
		at := man.ArtifactType
		if at == "" {
			at = string(man.Config.MediaType)
		}
		if !IsSBOMMediaType(at) || man.Subject == nil || man.Subject.Digest != d {
			continue
		}
		layer, ok := document(man, at)
		if !ok {
			f.Skipped = append(f.Skipped, Skipped{Where: where.String(), MediaType: at, Reason: fmt.Sprintf("%d layers, none of them an SBOM's media type", len(man.Layers))})
			continue
		}
		if err := read(ctx, c, repo, where.String(), at, layer, f, add); err != nil {
			return err
		}
	}
	return nil
}

// maybeSBOM tells from a referrer's listing whether it may be an SBOM:
// its artifact type is an SBOM media type, or the listing does not tell
// (no artifact type, or the empty config's media type, which registries
// without an artifact type give) and it is not a sigstore bundle.
func maybeSBOM(d v1.Descriptor) bool {
	switch d.ArtifactType {
	case "", emptyConfig:
		_, bundle := d.Annotations["dev.sigstore.bundle.content"]
		return !bundle
	}
	return IsSBOMMediaType(d.ArtifactType)
}

// emptyConfig is the OCI empty descriptor's media type.
const emptyConfig = "application/vnd.oci.empty.v1+json"

// document is the layer of a referrer of artifact type at that holds the
// document: the one of an SBOM media type, else the only one.
func document(man *Manifest, at string) (v1.Descriptor, bool) {
	var match []v1.Descriptor
	for _, l := range man.Layers {
		if IsSBOMMediaType(string(l.MediaType)) {
			match = append(match, l)
		}
	}
	switch {
	case len(match) == 1:
		return match[0], true
	case len(match) == 0 && len(man.Layers) == 1:
		return man.Layers[0], true
	}
	return v1.Descriptor{}, false
}

// read reads one attached document of media type mt, and adds it or
// records why it is skipped.
func read(ctx context.Context, c *registry.Client, repo name.Repository, where, mt string, l v1.Descriptor, f *Found, add func(*SBOM)) error {
	if l.Size > MaxBytes {
		f.Skipped = append(f.Skipped, Skipped{Where: where, MediaType: mt, Reason: fmt.Sprintf("%d bytes, more than the %d attested", l.Size, MaxBytes)})
		return nil
	}
	if ft, ok := mediaTypes[baseType(mt)]; ok && ft == "" {
		_, err := Detect(mt, nil)
		f.Skipped = append(f.Skipped, Skipped{Where: where, MediaType: mt, Reason: err.Error()})
		return nil
	}
	raw, err := c.ReadBlob(ctx, repo, l, MaxBytes)
	if err != nil {
		return fmt.Errorf("read the SBOM %s of %s: %w", l.Digest, where, err)
	}
	format, err := Detect(mt, raw)
	if err != nil {
		f.Skipped = append(f.Skipped, Skipped{Where: where, MediaType: mt, Reason: err.Error()})
		return nil
	}
	add(&SBOM{Format: format, MediaType: mt, Raw: bytes.Clone(raw), Digest: l.Digest, Where: where})
	return nil
}
