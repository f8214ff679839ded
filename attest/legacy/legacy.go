// Package legacy is cosign's tag layout, the one cosign v2 writes by
// default: <repo>:sha256-<hex>.sig and .att, each an image whose layers are
// the subject's signatures or attestations, their material in the layers'
// annotations. Store reads, writes and verifies it, with cosign's own
// verification (VerifyImageSignature, VerifyImageAttestation).
package legacy

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/signature"
	cosignstatic "github.com/sigstore/cosign/v2/pkg/oci/static"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
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
	m, err := c.GetManifest(ctx, tag, registry.MaxManifestBytes)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", tag, err)
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
	e := &attest.Entry{Kind: kind, Where: fmt.Sprintf("%s layer %d", tag, i), PredicateType: l.Annotations[annotationPredicateType]}
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
	if h, err := v1.NewHash(l.Annotations[statement.AnnotationStatement]); err == nil {
		e.Statement = h
	}
	e.Read = func(ctx context.Context) (*attest.Signed, error) {
		blob, err := c.ReadBlob(ctx, sub.Repository, l, attest.MaxPayloadBytes)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Where, err)
		}
		signed, err := legacySigned(sub, kind, blob, l.Annotations)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Where, err)
		}
		return signed, nil
	}
	return e
}

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

// Add implements Store: the layer is appended to the subject's tag.
func (Store) Add(ctx context.Context, c *registry.Client, signed *attest.Signed) error {
	layer, ann, err := legacyLayer(signed)
	if err != nil {
		return err
	}
	tag := Tag(signed.Subject.Repository, signed.Subject.Descriptor.Digest, signed.Kind)
	if _, err := c.UpdateTag(ctx, tag, appendLayer(layer, ann)); err != nil {
		return fmt.Errorf("write %s: %w", tag, err)
	}
	return nil
}

// Verify implements Store: the layer Add writes for s, read back as cosign
// reads a legacy layer (oci/signature: the material is in its
// annotations), verified with cosign's VerifyImageSignature or
// VerifyImageAttestation.
func (Store) Verify(ctx context.Context, v *attest.Verifier, sub attest.Subject, s *attest.Signed) (*attest.Claim, error) {
	co := v.CheckOpts()
	layer, ann, err := legacyLayer(s)
	if err != nil {
		return nil, err
	}
	d, err := layer.Digest()
	if err != nil {
		return nil, err
	}
	size, err := layer.Size()
	if err != nil {
		return nil, err
	}
	mt, err := layer.MediaType()
	if err != nil {
		return nil, err
	}
	sig := signature.New(layer, v1.Descriptor{MediaType: mt, Size: size, Digest: d, Annotations: ann})
	if s.Kind == attest.KindAttestation {
		return verifyLegacyAttestation(ctx, co, sub, s, sig)
	}
	if err := checkTimestamps(co, s.Signature, s.Material.Timestamps); err != nil {
		return nil, err
	}
	co.ClaimVerifier = cosign.SimpleClaimVerifier
	if _, err := cosign.VerifyImageSignature(ctx, sig, sub.Descriptor.Digest, co); err != nil {
		return nil, err
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(s.Payload, &p); err != nil {
		return nil, err
	}
	return &attest.Claim{Repository: p.Critical.Identity.DockerReference, Annotations: stringMap(p.Optional)}, nil
}

// verifyLegacyAttestation verifies an attestation's layer, sig, with
// cosign's VerifyImageAttestation and its subject check.
func verifyLegacyAttestation(ctx context.Context, co *cosign.CheckOpts, sub attest.Subject, s *attest.Signed, sig oci.Signature) (*attest.Claim, error) {
	env, err := s.Envelope()
	if err != nil {
		return nil, err
	}
	if err := checkTimestamps(co, env, s.Material.EnvelopeTimestamps); err != nil {
		return nil, err
	}
	co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	if _, _, err := cosign.VerifyImageAttestation(ctx, sigList{sigs: []oci.Signature{sig}}, sub.Descriptor.Digest, co); err != nil {
		return nil, err
	}
	st, err := statement.Read(s.Payload)
	if err != nil {
		return nil, err
	}
	return &attest.Claim{PredicateType: st.PredicateType}, nil
}

// checkTimestamps refuses a legacy layer whose RFC 3161 timestamp does not
// verify over what it must cover, before cosign reads it: cosign v2.6.5
// panics on such a timestamp (verify.go, VerifyRFC3161Timestamp, with no
// timestamp verified and no error), in a goroutine no caller can recover.
// With UseSignedTimestamps it refuses a layer without one: cosign v2.6.5
// reads a legacy layer without a timestamp as one with nothing to check,
// where sigstore-go requires one in a bundle.
func checkTimestamps(co *cosign.CheckOpts, covered []byte, timestamps [][]byte) error {
	if len(timestamps) == 0 && co.UseSignedTimestamps {
		return errors.New("no RFC 3161 timestamp, and a signed timestamp is required (--use-signed-timestamps)")
	}
	if len(timestamps) == 0 {
		return nil
	}
	if co.TrustedMaterial == nil {
		return errors.New("an RFC 3161 timestamp, and no trusted root to verify it")
	}
	entity, err := timestampEntity(covered, timestamps[0])
	if err != nil {
		return err
	}
	if _, err := verify.VerifySignedTimestampWithThreshold(entity, co.TrustedMaterial, 1); err != nil {
		return fmt.Errorf("the RFC 3161 timestamp does not verify: %w", err)
	}
	return nil
}

// timestampEntity is what sigstore-go verifies an RFC 3161 timestamp of: a
// bundle whose signature is covered, the bytes the timestamp is over, and
// whose one timestamp is ts. Nothing else of it is read.
func timestampEntity(covered, ts []byte) (*sgbundle.Bundle, error) {
	sum := sha256.Sum256(covered)
	return sgbundle.NewBundle(&protobundle.Bundle{
		MediaType: attest.MediaTypeBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{}},
			TimestampVerificationData: &protobundle.TimestampVerificationData{
				Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts}},
			},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
			Signature:     covered,
		}},
	})
}

// sigList is a list of signatures as cosign's verification functions take
// them; they read it with Get alone, never as an image.
type sigList struct {
	v1.Image
	sigs []oci.Signature
}

func (s sigList) Get() ([]oci.Signature, error) { return s.sigs, nil }

// legacyLayer is the layer cosign stores for a signed payload, and its
// annotations: what Add writes, and what Verify has cosign read. A
// signature's layer is its payload, an attestation's its DSSE envelope.
func legacyLayer(s *attest.Signed) (v1.Layer, map[string]string, error) {
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
		if h, err := statement.StatementDigest(s.Payload); err == nil {
			ann[statement.AnnotationStatement] = h.String()
		}
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
		return imageChange(img, layer)
	}
}

func imageChange(img v1.Image, layer v1.Layer) (*registry.Change, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
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
	return &registry.Change{MediaType: types.OCIManifestSchema1, Raw: raw, Blobs: [][]byte{content, cfg}}, nil
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
