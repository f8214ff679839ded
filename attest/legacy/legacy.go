// Package legacy is cosign's tag layout, the one cosign v2 writes by
// default: <repo>:sha256-<hex>.sig and .att, each an image whose layers are
// the subject's signatures or attestations, their material in the layers'
// annotations. Store reads, writes and verifies it, with cosign's own
// verification (VerifyImageSignature, VerifyImageAttestation).
package legacy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	cosignstatic "github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/internal/recent"
	"github.com/nestattest/nestattest/registry"
)

// Annotations of cosign's legacy layers.
const (
	annotationPredicateType = "predicateType"
	mediaTypeDSSE           = "application/vnd.dsse.envelope.v1+json"
)

// Store is cosign's tag layout: one image per subject and kind,
// tagged sha256-<hex>.sig or sha256-<hex>.att in the subject's repository,
// each signature or attestation a layer. Adding one reads the tag, appends
// a layer and writes it back, serialised per tag and confirmed
// (registry.Client.UpdateTag): the cost does not grow with the layers the
// tag holds.
type Store struct{}

// Layout is the layout's name, as --format takes it.
const Layout attest.Layout = "legacy"

// Layout implements attest.Store.
func (Store) Layout() attest.Layout { return Layout }

// Keeps implements attest.Store: Rekor v1 entries (cosign's bundle
// annotation holds a v1 signed entry timestamp), and timestamps over an
// attestation's envelope as well as its signature.
func (Store) Keeps() attest.Keeps {
	return attest.Keeps{TlogVersions: []uint32{1}, EnvelopeTimestamps: true}
}

// Tag returns the tag cosign uses for a subject's signatures or
// attestations: <repo>:sha256-<hex>.sig or .att.
func Tag(repo name.Repository, digest v1.Hash, kind attest.Kind) name.Tag {
	suffix := ".sig"
	if kind == attest.KindAttestation {
		suffix = ".att"
	}
	return repo.Tag(digest.Algorithm + "-" + digest.Hex + suffix)
}

// SignaturePayload implements Store: cosign's simple-signing payload.
func (Store) SignaturePayload(sub attest.Subject, annotations map[string]string) (string, []byte, error) {
	p, err := statement.SignaturePayload(sub.Digest(), annotations)
	return attest.PayloadSimpleSigning, p, err
}

// List implements Store: two requests, the manifests of the .sig and .att
// tags; layers are read by Load.
func (s Store) List(ctx context.Context, c *registry.Client, sub attest.Subject) ([]*attest.Entry, error) {
	sigs, err := s.list(ctx, c, sub, attest.KindSignature)
	if err != nil {
		return nil, err
	}
	atts, err := s.list(ctx, c, sub, attest.KindAttestation)
	return append(sigs, atts...), err
}

func (s Store) list(ctx context.Context, c *registry.Client, sub attest.Subject, kind attest.Kind) ([]*attest.Entry, error) {
	tag := Tag(sub.Repository, sub.Descriptor.Digest, kind)
	m, err := c.ReadTag(ctx, tag)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", tag, err)
	}
	if m == nil {
		return nil, nil
	}
	man, err := v1.ParseManifest(strings.NewReader(string(m.Raw)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", tag, err)
	}
	out := make([]*attest.Entry, 0, len(man.Layers))
	for i, l := range man.Layers {
		out = append(out, s.entry(c, sub, kind, tag, i, l))
	}
	return out, nil
}

func (Store) entry(c *registry.Client, sub attest.Subject, kind attest.Kind, tag name.Tag, i int, l v1.Descriptor) *attest.Entry {
	e := &attest.Entry{Kind: kind, Where: fmt.Sprintf("%s layer %d", tag, i), Digest: l.Digest, PredicateType: l.Annotations[annotationPredicateType]}
	if kind == attest.KindSignature {
		e.PayloadDigest = l.Digest
		if sig, err := base64.StdEncoding.DecodeString(l.Annotations[cosignstatic.SignatureAnnotationKey]); err == nil {
			if m, err := legacyMaterial(l.Annotations, kind); err == nil {
				e.Listed = func(p []byte) *attest.Signed {
					return &attest.Signed{Subject: sub, Kind: kind, PayloadType: attest.PayloadSimpleSigning, Payload: p, Signature: sig, Material: m}
				}
			}
		}
	}
	e.Statement, e.Predicate = statement.Annotated(l.Annotations)
	e.Read = func(ctx context.Context) (*attest.Signed, error) {
		ann, err := json.Marshal(l.Annotations)
		if err != nil {
			return nil, err
		}
		key := l.Digest.String() + " " + string(ann)
		if read, ok := readLayers.Get(key); ok {
			signed := *read
			signed.Subject = sub
			return &signed, nil
		}
		blob, err := c.ReadBlob(ctx, sub.Repository, l, attest.MaxPayloadBytes)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Where, err)
		}
		signed, err := legacySigned(sub, kind, blob, l.Annotations)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Where, err)
		}
		readLayers.Add(key, signed)
		return signed, nil
	}
	return e
}

// readLayers keeps the layers most recently read, by digest and
// annotations: a tree statement's layer, the same for every node it names,
// is read and parsed once.
var readLayers = recent.New[string, *attest.Signed](16)

// legacySigned reads a legacy layer and its annotations.
func legacySigned(sub attest.Subject, kind attest.Kind, blob []byte, ann map[string]string) (*attest.Signed, error) {
	s := &attest.Signed{Subject: sub, Kind: kind}
	if kind == attest.KindSignature {
		sig, err := base64.StdEncoding.DecodeString(ann[cosignstatic.SignatureAnnotationKey])
		if err != nil {
			return nil, fmt.Errorf("signature annotation: %w", err)
		}
		s.PayloadType, s.Payload, s.Signature = attest.PayloadSimpleSigning, blob, sig
	} else {
		var err error
		if s.PayloadType, s.Payload, s.Signature, err = attest.ParseEnvelope(blob); err != nil {
			return nil, fmt.Errorf("DSSE envelope: %w", err)
		}
	}
	var err error
	s.Material, err = legacyMaterial(ann, kind)
	return s, err
}

// legacyMaterial reads the certificate chain, the Rekor v1 bundle and the
// RFC 3161 timestamp cosign keeps in a layer's annotations; an
// attestation's timestamp is over its envelope. addLegacyMaterial writes
// them.
func legacyMaterial(ann map[string]string, kind attest.Kind) (attest.Material, error) {
	var m attest.Material
	if c := ann[cosignstatic.CertificateAnnotationKey]; c != "" {
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(c + "\n" + ann[cosignstatic.ChainAnnotationKey]))
		if err != nil {
			return m, fmt.Errorf("certificate annotation: %w", err)
		}
		m.Chain = certs
	}
	if b := ann[cosignstatic.BundleAnnotationKey]; b != "" {
		e, err := tlogFromRekorBundle([]byte(b))
		if err != nil {
			return m, fmt.Errorf("transparency-log bundle annotation: %w", err)
		}
		m.TlogEntries = append(m.TlogEntries, e)
	}
	if t := ann[cosignstatic.RFC3161TimestampAnnotationKey]; t != "" {
		var ts struct{ SignedRFC3161Timestamp []byte }
		if err := json.Unmarshal([]byte(t), &ts); err != nil {
			return m, fmt.Errorf("timestamp annotation: %w", err)
		}
		if kind == attest.KindAttestation {
			m.EnvelopeTimestamps = append(m.EnvelopeTimestamps, ts.SignedRFC3161Timestamp)
		} else {
			m.Timestamps = append(m.Timestamps, ts.SignedRFC3161Timestamp)
		}
	}
	return m, nil
}

func sameAnnotations(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func stringMap(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}
