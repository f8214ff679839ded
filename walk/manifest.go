package walk

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/registry"
)

// Kind is what a node is.
type Kind string

// The kinds of node.
const (
	KindIndex    Kind = "index"    // an OCI index or Docker manifest list
	KindImage    Kind = "image"    // an OCI or Docker image manifest
	KindArtifact Kind = "artifact" // an OCI manifest for something other than an image
	KindMissing  Kind = "missing"  // a child that is not in its repository (with AllowMissing)
	KindInvalid  Kind = "invalid"  // a node that could not be read; its error says why
)

// Media types that mark signatures, attestations and SBOMs; manifests made
// of them are not nodes.
const (
	mediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	mediaTypeDSSE          = "application/vnd.dsse.envelope.v1+json"
	mediaTypeInToto        = "application/vnd.in-toto+json"
	annotationReferenceTyp = "vnd.docker.reference.type"
)

// Manifest is the part of a manifest or index that the walk needs.
type Manifest struct {
	MediaType    types.MediaType   `json:"mediaType,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Config       *v1.Descriptor    `json:"config,omitempty"`
	Layers       []v1.Descriptor   `json:"layers,omitempty"`
	Manifests    []v1.Descriptor   `json:"manifests,omitempty"`
	Subject      *v1.Descriptor    `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// Decode parses a manifest. contentType is the Content-Type the registry
// served it with; the document's own mediaType wins when both are present.
// It refuses documents that are not JSON objects, are not one of the OCI or
// Docker schema 2 manifest and index types, or hold malformed descriptors.
func Decode(raw []byte, contentType string) (*Manifest, error) {
	if len(raw) > MaxManifestBytes {
		return nil, fmt.Errorf("%w: %d bytes, over %d", registry.ErrTooLarge, len(raw), MaxManifestBytes)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON document", ErrInvalidManifest)
	}
	if m.MediaType == "" {
		m.MediaType = inferMediaType(&m, types.MediaType(contentType))
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

func inferMediaType(m *Manifest, contentType types.MediaType) types.MediaType {
	switch {
	case isIndexType(contentType) || isManifestType(contentType):
		return contentType
	case m.Manifests != nil:
		return types.OCIImageIndex
	case m.Config != nil:
		return types.OCIManifestSchema1
	}
	return contentType
}

func (m *Manifest) check() error {
	switch {
	case isIndexType(m.MediaType):
		if m.Config != nil || m.Layers != nil {
			return fmt.Errorf("%w: index %s has config or layers", ErrInvalidManifest, m.MediaType)
		}
		return checkDescriptors("manifests", m.Manifests)
	case isManifestType(m.MediaType):
		if m.Manifests != nil {
			return fmt.Errorf("%w: manifest %s has a manifests list", ErrInvalidManifest, m.MediaType)
		}
		if m.Config == nil {
			return fmt.Errorf("%w: manifest %s has no config", ErrInvalidManifest, m.MediaType)
		}
		if err := checkDescriptors("config", []v1.Descriptor{*m.Config}); err != nil {
			return err
		}
		return checkDescriptors("layers", m.Layers)
	case m.MediaType == "":
		return fmt.Errorf("%w: no media type", ErrInvalidManifest)
	}
	return fmt.Errorf("%w: unsupported media type %q", ErrInvalidManifest, m.MediaType)
}

func checkDescriptors(field string, ds []v1.Descriptor) error {
	for i, d := range ds {
		if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 {
			return fmt.Errorf("%w: %s[%d] has digest %q; only sha256 is supported", ErrInvalidManifest, field, i, d.Digest.String())
		}
		if d.Size < 0 {
			return fmt.Errorf("%w: %s[%d] has negative size %d", ErrInvalidManifest, field, i, d.Size)
		}
	}
	return nil
}

// IsIndex reports whether the manifest lists other manifests.
func (m *Manifest) IsIndex() bool { return isIndexType(m.MediaType) }

// Kind classifies the manifest.
func (m *Manifest) Kind() Kind {
	switch {
	case m.IsIndex():
		return KindIndex
	case m.ArtifactType != "":
		return KindArtifact
	case m.Config != nil && (m.Config.MediaType == types.OCIConfigJSON || m.Config.MediaType == types.DockerConfigJSON):
		return KindImage
	}
	return KindArtifact
}

// IsSupplement reports whether the manifest is a signature, attestation or
// other referrer rather than content: it has a subject, or its layers are
// cosign simple-signing payloads, DSSE envelopes or in-toto statements.
func (m *Manifest) IsSupplement() bool {
	if m.Subject != nil {
		return true
	}
	if len(m.Layers) == 0 {
		return false
	}
	for _, l := range m.Layers {
		switch l.MediaType {
		case mediaTypeSimpleSigning, mediaTypeDSSE, mediaTypeInToto:
		default:
			return false
		}
	}
	return true
}

// isSupplementDescriptor reports whether an index entry is marked as an
// attestation manifest (BuildKit's vnd.docker.reference.type).
func isSupplementDescriptor(d v1.Descriptor) bool {
	return d.Annotations[annotationReferenceTyp] == "attestation-manifest"
}

func isIndexType(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

func isManifestType(mt types.MediaType) bool {
	return mt == types.OCIManifestSchema1 || mt == types.DockerManifestSchema2
}
