package sbom

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Manifest is what Find reads of an image manifest that carries an SBOM:
// cosign's .sbom manifest, or an OCI 1.1 referrer.
type Manifest struct {
	ArtifactType string          `json:"artifactType,omitempty"`
	Config       v1.Descriptor   `json:"config"`
	Layers       []v1.Descriptor `json:"layers"`
	Subject      *v1.Descriptor  `json:"subject,omitempty"`
}

// maxLayers bounds the layers of a manifest read for SBOMs: cosign and
// oras attach one document a manifest.
const maxLayers = 64

// ParseManifest reads an image manifest for its SBOM layers.
func ParseManifest(raw []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not an image manifest: %w", err)
	}
	if len(m.Layers) > maxLayers {
		return nil, fmt.Errorf("an SBOM manifest of %d layers: at most %d are read", len(m.Layers), maxLayers)
	}
	return &m, nil
}
