package attest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cosignstatic "github.com/sigstore/cosign/v2/pkg/oci/static"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/nestattest/nestattest/registry"
)

// What cosign v3 writes for a sigstore bundle stored as a referrer.
const (
	// MediaTypeBundle is the sigstore bundle v0.3 media type: the layer's
	// media type and the referrer manifest's artifactType.
	MediaTypeBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// mediaTypeEmpty is the OCI empty descriptor's media type, cosign's
	// referrer config.
	mediaTypeEmpty = "application/vnd.oci.empty.v1+json"
	// bundleMediaTypePrefix matches every sigstore bundle version.
	bundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"

	annotationBundleContent       = "dev.sigstore.bundle.content"
	annotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
	annotationCreated             = "org.opencontainers.image.created"
)

// emptyConfig is the content of cosign's referrer config.
var emptyConfig = []byte("{}")

// BundleStore keeps sigstore bundles v0.3 as OCI 1.1 referrers of their
// subject, exactly as cosign v3 writes them: a manifest whose artifactType
// and one layer are the bundle, whose subject is the signed manifest, and
// whose annotations name the bundle's content and predicate type. Where
// the registry has no referrers API, the manifest is listed in the
// sha256-<hex> fallback tag (registry.Client.PutReferrer: serialised and
// confirmed). A signature is an in-toto statement of PredicateCosignSign in
// a DSSE envelope, as cosign v3 signs.
type BundleStore struct {
	// Now stamps org.opencontainers.image.created; time.Now when nil.
	Now func() time.Time

	configs sync.Map // repository → the empty config is there
}

// Layout implements Store.
func (*BundleStore) Layout() Layout { return LayoutBundle }

// SignaturePayload implements Store: cosign v3's signing statement.
func (*BundleStore) SignaturePayload(sub Subject, annotations map[string]string) (string, []byte, error) {
	p, err := SignStatement(sub.Digest(), annotations)
	return PayloadInToto, p, err
}

// List implements Store: the subject's referrers, one request; each
// bundle's manifest and blob are read by Load. A referrer whose listing
// names no bundle predicate type is of a kind Load tells.
func (s *BundleStore) List(ctx context.Context, c *registry.Client, sub Subject) ([]*Entry, error) {
	refs, err := c.Referrers(ctx, sub.Repository, sub.Descriptor.Digest)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", sub.Digest(), err)
	}
	var out []*Entry
	for _, d := range refs {
		pt := d.Annotations[annotationBundlePredicateType]
		e := &Entry{Where: sub.Repository.Digest(d.Digest.String()).String(), PredicateType: pt}
		if pt != "" {
			e.Kind = kindOf(pt)
		}
		if h, err := v1.NewHash(d.Annotations[AnnotationStatement]); err == nil {
			e.Statement = h
		}
		e.load = func(ctx context.Context) (*Signed, error) { return s.load(ctx, c, sub, d) }
		out = append(out, e)
	}
	return out, nil
}

// kindOf tells a signing statement from an attestation by predicate type.
func kindOf(predicateType string) Kind {
	if predicateType == PredicateCosignSign {
		return KindSignature
	}
	return KindAttestation
}

// errNotBundle marks a referrer that is not a sigstore bundle.
var errNotBundle = errors.New("not a sigstore bundle")

// load reads a referrer manifest and its bundle.
func (*BundleStore) load(ctx context.Context, c *registry.Client, sub Subject, d v1.Descriptor) (*Signed, error) {
	where := sub.Repository.Digest(d.Digest.String())
	m, err := c.GetManifest(ctx, where, registry.MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", where, err)
	}
	man, err := v1.ParseManifest(strings.NewReader(string(m.Raw)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", where, err)
	}
	if man.Subject == nil || man.Subject.Digest != sub.Descriptor.Digest {
		return nil, fmt.Errorf("%s: %w: its subject is not %s", where, errNotBundle, sub.Descriptor.Digest)
	}
	for _, l := range man.Layers {
		if !strings.HasPrefix(string(l.MediaType), bundleMediaTypePrefix) {
			continue
		}
		raw, err := c.ReadBlob(ctx, sub.Repository, l, maxPayloadBytes)
		if err != nil {
			return nil, fmt.Errorf("read the bundle of %s: %w", where, err)
		}
		signed, err := bundleSigned(sub, raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return signed, nil
	}
	return nil, fmt.Errorf("%s: %w", where, errNotBundle)
}

// bundleSigned reads a sigstore bundle.
func bundleSigned(sub Subject, raw []byte) (*Signed, error) {
	var b protobundle.Bundle
	if err := protojson.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotBundle, err)
	}
	env := b.GetDsseEnvelope()
	if env == nil || len(env.GetSignatures()) == 0 {
		return nil, fmt.Errorf("%w: no DSSE envelope", errNotBundle)
	}
	s := &Signed{Subject: sub, PayloadType: env.GetPayloadType(), Payload: env.GetPayload(), Signature: env.GetSignatures()[0].GetSig()}
	st, err := readStatement(s.Payload)
	if err != nil {
		return nil, fmt.Errorf("the bundle's statement: %w", err)
	}
	s.Kind = kindOf(st.PredicateType)
	s.Bundle = raw
	m, err := bundleMaterial(b.GetVerificationMaterial())
	s.Material = m
	return s, err
}

func bundleMaterial(vm *protobundle.VerificationMaterial) (Material, error) {
	var m Material
	var ders [][]byte
	if c := vm.GetCertificate(); c != nil {
		ders = append(ders, c.GetRawBytes())
	}
	for _, c := range vm.GetX509CertificateChain().GetCertificates() {
		ders = append(ders, c.GetRawBytes())
	}
	for _, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return m, fmt.Errorf("certificate: %w", err)
		}
		m.Chain = append(m.Chain, cert)
	}
	m.TlogEntries = vm.GetTlogEntries()
	for _, t := range vm.GetTimestampVerificationData().GetRfc3161Timestamps() {
		m.Timestamps = append(m.Timestamps, t.GetSignedTimestamp())
	}
	return m, nil
}

// Bundle returns the sigstore bundle v0.3 of a DSSE-signed payload, with
// the key hint or the signing certificate, the transparency-log entries and
// the timestamps.
func Bundle(s *Signed, hint string) ([]byte, error) {
	if !s.DSSE() {
		return nil, fmt.Errorf("a bundle holds DSSE envelopes here, not %s payloads", s.PayloadType)
	}
	b, err := ProtoBundle(s, hint)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(b)
}

// Verify implements Store: the bundle s was read from, verified with
// cosign's VerifyNewBundle (sigstore-go) for sub's digest, its statement
// naming the digest (cosign's IntotoSubjectClaimVerifier). A signature's
// statement is cosign v3's signing statement, its subject naming the
// repository and carrying the annotations.
func (*BundleStore) Verify(ctx context.Context, co *cosign.CheckOpts, sub Subject, s *Signed) (*Claim, error) {
	st, err := verifyBundle(ctx, co, sub, s)
	if err != nil {
		return nil, err
	}
	if s.Kind == KindAttestation {
		return &Claim{PredicateType: st.PredicateType}, nil
	}
	if st.PredicateType != PredicateCosignSign {
		return nil, fmt.Errorf("a %s statement, not a signature", st.PredicateType)
	}
	h := sub.Descriptor.Digest
	for _, subj := range st.Subject {
		if subj.Digest[h.Algorithm] == h.Hex {
			return &Claim{Repository: subj.Name, Annotations: subj.Annotations}, nil
		}
	}
	return nil, errors.New("no subject with this digest")
}

// verifyBundle verifies a bundle with cosign's VerifyNewBundle for the
// subject's digest, checks that its statement names the digest (cosign's
// IntotoSubjectClaimVerifier), and returns the statement.
func verifyBundle(ctx context.Context, co *cosign.CheckOpts, sub Subject, s *Signed) (*statementInfo, error) {
	if s.Bundle == nil {
		return nil, errors.New("not read from a bundle")
	}
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(s.Bundle); err != nil {
		return nil, err
	}
	h := sub.Descriptor.Digest
	digest, err := hex.DecodeString(h.Hex)
	if err != nil {
		return nil, err
	}
	if _, err := cosign.VerifyNewBundle(ctx, co, verify.WithArtifactDigest(h.Algorithm, digest), &b); err != nil {
		return nil, err
	}
	env, err := s.Envelope()
	if err != nil {
		return nil, err
	}
	att, err := cosignstatic.NewAttestation(env)
	if err != nil {
		return nil, err
	}
	if err := cosign.IntotoSubjectClaimVerifier(att, h, nil); err != nil {
		return nil, err
	}
	return readStatement(s.Payload)
}

// Add implements Store: the bundle and cosign's empty config are uploaded,
// then the referrer manifest, then it is listed.
func (s *BundleStore) Add(ctx context.Context, c *registry.Client, signed *Signed) error {
	repo := signed.Subject.Repository
	hint := ""
	if signed.Material.PublicKey != nil {
		hint = Identity{Key: signed.Material.PublicKey}.Hint()
	}
	raw, err := Bundle(signed, hint)
	if err != nil {
		return err
	}
	if _, known := s.configs.Load(repo.Name()); !known {
		if _, err := c.Upload(ctx, repo, emptyConfig); err != nil {
			return err
		}
		s.configs.Store(repo.Name(), true)
	}
	bd, err := c.Upload(ctx, repo, raw)
	if err != nil {
		return err
	}
	st, err := readStatement(signed.Payload)
	if err != nil {
		return err
	}
	ann := map[string]string{
		annotationCreated:             s.now().UTC().Format(time.RFC3339),
		annotationBundleContent:       "dsse-envelope",
		annotationBundlePredicateType: st.PredicateType,
	}
	if h, err := StatementDigest(signed.Payload); err == nil {
		ann[AnnotationStatement] = h.String()
	}
	man := referrerManifest{
		Manifest: v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			Config:        v1.Descriptor{MediaType: mediaTypeEmpty, ArtifactType: MediaTypeBundle, Digest: digestOf(emptyConfig), Size: int64(len(emptyConfig))},
			Layers:        []v1.Descriptor{{MediaType: MediaTypeBundle, Digest: bd, Size: int64(len(raw))}},
			Subject:       &v1.Descriptor{MediaType: signed.Subject.Descriptor.MediaType, Digest: signed.Subject.Descriptor.Digest, Size: signed.Subject.Descriptor.Size},
			Annotations:   ann,
		},
		ArtifactType: MediaTypeBundle,
	}
	mraw, err := json.Marshal(man)
	if err != nil {
		return err
	}
	desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: digestOf(mraw), Size: int64(len(mraw)), ArtifactType: MediaTypeBundle, Annotations: ann}
	if err := c.PutReferrer(ctx, repo, signed.Subject.Descriptor.Digest, desc, mraw); err != nil {
		return fmt.Errorf("write the bundle of %s: %w", signed.Subject.Digest(), err)
	}
	return nil
}

func (s *BundleStore) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// referrerManifest is an OCI 1.1 image manifest with its artifactType,
// which go-containerregistry's v1.Manifest lacks; cosign marshals the same.
type referrerManifest struct {
	v1.Manifest
	ArtifactType string `json:"artifactType,omitempty"`
}

// ProtoBundle is the sigstore bundle v0.3 of a signed payload, as
// sigstore-go takes it: a DSSE envelope, or for simple signing a message
// signature over the payload's digest, with the key hint or the
// certificate, the transparency-log entries and the timestamps.
func ProtoBundle(s *Signed, hint string) (*protobundle.Bundle, error) {
	vm := &protobundle.VerificationMaterial{TlogEntries: s.Material.TlogEntries}
	if len(s.Material.Chain) > 0 {
		vm.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: s.Material.Chain[0].Raw}}
	} else {
		vm.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: hint}}
	}
	if len(s.Material.Timestamps) > 0 {
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, t := range s.Material.Timestamps {
			vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: t})
		}
	}
	b := &protobundle.Bundle{MediaType: MediaTypeBundle, VerificationMaterial: vm}
	if s.DSSE() {
		b.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: s.Payload, PayloadType: s.PayloadType, Signatures: []*protodsse.Signature{{Sig: s.Signature}},
		}}
		return b, nil
	}
	sum := sha256.Sum256(s.Payload)
	b.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
		MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
		Signature:     s.Signature,
	}}
	return b, nil
}
