package legacy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	cosignstatic "github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/internal/recent"
	"github.com/nestattest/nestattest/registry"
)

// Add implements Store: each layer is appended to the subject's tag of
// its kind (.sig or .att).
func (Store) Add(ctx context.Context, c *registry.Client, signed ...*attest.Signed) error {
	for _, s := range signed {
		layer, ann, err := legacyLayer(s)
		if err != nil {
			return err
		}
		tag := Tag(s.Subject.Repository, s.Subject.Descriptor.Digest, s.Kind)
		if _, err := c.UpdateTag(ctx, tag, appendLayer(layer, ann)); err != nil {
			return fmt.Errorf("write %s: %w", tag, err)
		}
	}
	return nil
}

// preparedLayers keeps the layers most recently made, by signature: a tree
// statement's layer, the same for every node it names, is made once.
var preparedLayers = recent.New[string, *preparedLayer](16)

type preparedLayer struct {
	layer v1.Layer
	ann   map[string]string
}

// legacyLayer is the layer cosign stores for a signed payload, and its
// annotations: what Add writes, and what Verify has cosign read. A
// signature's layer is its payload, an attestation's its DSSE envelope.
func legacyLayer(s *attest.Signed) (v1.Layer, map[string]string, error) {
	key := fmt.Sprintf("%s %x %d %d %d", s.Kind, s.Signature, len(s.Material.TlogEntries), len(s.Material.Timestamps), len(s.Material.EnvelopeTimestamps))
	p, err := preparedLayers.Do(key, func() (*preparedLayer, error) {
		layer, ann, err := makeLayer(s)
		return &preparedLayer{layer: layer, ann: ann}, err
	})
	if err != nil {
		return nil, nil, err
	}
	return p.layer, maps.Clone(p.ann), nil
}

func makeLayer(s *attest.Signed) (v1.Layer, map[string]string, error) {
	ann := map[string]string{cosignstatic.SignatureAnnotationKey: ""}
	var content []byte
	mt := types.MediaType(attest.PayloadSimpleSigning)
	if s.Kind == attest.KindAttestation {
		env, err := s.Envelope()
		if err != nil {
			return nil, nil, err
		}
		content, mt = env, mediaTypeDSSE
		st, err := statement.Read(s.Payload)
		if err != nil {
			return nil, nil, fmt.Errorf("statement: %w", err)
		}
		ann[annotationPredicateType] = st.PredicateType
		statement.Annotate(ann, s.Payload)
	} else {
		content = s.Payload
		ann[cosignstatic.SignatureAnnotationKey] = base64.StdEncoding.EncodeToString(s.Signature)
	}
	if err := addLegacyMaterial(ann, s.Material, s.Kind); err != nil {
		return nil, nil, err
	}
	return static.NewLayer(content, mt), ann, nil
}

// addLegacyMaterial writes the certificate chain, Rekor v1 bundle and RFC
// 3161 timestamp as cosign annotates them: for an attestation, its
// envelope's timestamp. legacyMaterial reads them.
func addLegacyMaterial(ann map[string]string, m attest.Material, kind attest.Kind) error {
	if len(m.Chain) > 0 {
		leaf, err := cryptoutils.MarshalCertificateToPEM(m.Chain[0])
		if err != nil {
			return err
		}
		ann[cosignstatic.CertificateAnnotationKey] = string(leaf)
		chain, err := cryptoutils.MarshalCertificatesToPEM(m.Chain[1:])
		if err != nil {
			return err
		}
		ann[cosignstatic.ChainAnnotationKey] = string(chain)
	}
	for _, e := range m.TlogEntries {
		if b, ok := rekorBundleOf(e); ok {
			ann[cosignstatic.BundleAnnotationKey] = string(b)
			break
		}
	}
	ts := m.Timestamps
	if kind == attest.KindAttestation {
		ts = m.EnvelopeTimestamps
	}
	if len(ts) > 0 {
		b, err := json.Marshal(struct{ SignedRFC3161Timestamp []byte }{ts[0]})
		if err != nil {
			return err
		}
		ann[cosignstatic.RFC3161TimestampAnnotationKey] = string(b)
	}
	return nil
}

// appendLayer is the Edit that adds a layer to a legacy tag's image,
// unless a layer with the same content and annotations is there. The image
// is the one cosign's mutate.AppendSignatures makes: OCI media types, a
// config listing every layer, no timestamps.
func appendLayer(layer v1.Layer, ann map[string]string) registry.Edit {
	return func(cur *registry.Manifest) (*registry.Change, error) {
		d, err := layer.Digest()
		if err != nil {
			return nil, err
		}
		var existing []v1.Descriptor
		if cur != nil {
			m, err := v1.ParseManifest(strings.NewReader(string(cur.Raw)))
			if err != nil {
				return nil, fmt.Errorf("the tag holds no image manifest: %w", err)
			}
			existing = m.Layers
		}
		for _, l := range existing {
			if l.Digest == d && sameAnnotations(l.Annotations, ann) {
				return nil, nil
			}
		}
		img := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
		adds := make([]mutate.Addendum, 0, len(existing)+1)
		for _, l := range existing {
			adds = append(adds, mutate.Addendum{Layer: descLayer{l}, Annotations: l.Annotations})
		}
		adds = append(adds, mutate.Addendum{Layer: layer, Annotations: ann})
		img, err = mutate.Append(img, adds...)
		if err != nil {
			return nil, err
		}
		return imageChange(img, layer, ann)
	}
}

// imageChange is the change that puts img, whose last layer is layer. Its
// Again appends the layer by its descriptor: Settle needs no more.
func imageChange(img v1.Image, layer v1.Layer, ann map[string]string) (*registry.Change, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	ch := &registry.Change{MediaType: types.OCIManifestSchema1, Raw: raw, Blobs: [][]byte{cfg}}
	if _, byDescriptor := layer.(descLayer); byDescriptor {
		return ch, nil // put already: Settle's change
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	content, err := readAll(rc)
	if err != nil {
		return nil, err
	}
	desc, err := describe(layer)
	if err != nil {
		return nil, err
	}
	ch.Blobs = append(ch.Blobs, content)
	ch.Again = appendLayer(descLayer{desc}, ann)
	return ch, nil
}
