// Package bundle is the layout cosign v3 writes: sigstore bundles v0.3
// stored as OCI 1.1 referrers of their subject (or, where the registry has
// no referrers API, listed in the sha256-<hex> fallback index). Store
// reads, writes and verifies it, with cosign's own verification of a
// bundle (VerifyNewBundle, through sigstore-go).
package bundle

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cosignstatic "github.com/sigstore/cosign/v2/pkg/oci/static"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/internal/recent"
	"github.com/nestattest/nestattest/registry"
)

// What cosign v3 writes for a sigstore bundle stored as a referrer; the
// layer's media type and the referrer manifest's artifactType are
// attest.MediaTypeBundle.
const (
	// mediaTypeEmpty is the OCI empty descriptor's media type, cosign's
	// referrer config.
	mediaTypeEmpty = "application/vnd.oci.empty.v1+json"
	// bundleMediaTypePrefix matches every sigstore bundle version.
	bundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"

	annotationBundleContent       = "dev.sigstore.bundle.content"
	annotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
	annotationCreated             = "org.opencontainers.image.created"
)

// readBundles and preparedBundles keep the bundles most recently read and
// made, by digest and by signature: a tree statement's bundle, the same
// bytes for every node it names, is parsed or encoded once, not once a
// node.
//
// bundleLayers keeps, by the statement digest its annotations name, the
// bundle layer of the referrer manifest most recently read: the referrers
// of one tree statement differ only in their subject and their creation
// time, which the subject's listing gives, so the next node's manifest is
// made again from its listing and taken without a request when it hashes
// to the digest the listing names (content addressing: the same bytes),
// where the registry's referrers API gave the listing.
var (
	readBundles     = recent.New[v1.Hash, *attest.Signed](16)
	preparedBundles = recent.New[string, *prepared](16)
	bundleLayers    = recent.New[v1.Hash, v1.Descriptor](16)
)

// prepared is what Add writes for a signed statement, whatever its
// subject: the bundle, and the referrer's annotations but its time.
type prepared struct {
	raw []byte
	ann map[string]string
}

// emptyConfig is the content of cosign's referrer config.
var emptyConfig = []byte("{}")

// Store keeps sigstore bundles v0.3 as OCI 1.1 referrers of their
// subject, exactly as cosign v3 writes them: a manifest whose artifactType
// and one layer are the bundle, whose subject is the signed manifest, and
// whose annotations name the bundle's content and predicate type. Where
// the registry has no referrers API, the manifest is listed in the
// sha256-<hex> fallback tag (registry.Client.PutReferrer: serialised and
// confirmed). A signature is an in-toto statement of PredicateCosignSign in
// a DSSE envelope, as cosign v3 signs.
type Store struct {
	// Now stamps org.opencontainers.image.created; time.Now when nil.
	Now func() time.Time
}

// Layout is the layout's name, as --format takes it.
const Layout attest.Layout = "bundle"

// Layout implements attest.Store.
func (*Store) Layout() attest.Layout { return Layout }

// Keeps implements attest.Store: a bundle holds entries of Rekor v1 and v2
// and timestamps over the signature.
func (*Store) Keeps() attest.Keeps { return attest.Keeps{TlogVersions: []uint32{1, 2}} }

// SignaturePayload implements Store: cosign v3's signing statement.
func (*Store) SignaturePayload(sub attest.Subject, annotations map[string]string) (string, []byte, error) {
	p, err := statement.SignStatement(sub.Digest(), annotations)
	return attest.PayloadInToto, p, err
}

// List implements Store: the subject's referrers, one request; each
// bundle's manifest and blob are read by Load. A referrer whose listing
// names no bundle predicate type is of a kind Load tells.
func (s *Store) List(ctx context.Context, c *registry.Client, sub attest.Subject) ([]*attest.Entry, error) {
	refs, err := c.Referrers(ctx, sub.Repository, sub.Descriptor.Digest)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", sub.Digest(), err)
	}
	var out []*attest.Entry
	for _, d := range refs {
		if foreign(d) {
			continue
		}
		pt := d.Annotations[annotationBundlePredicateType]
		e := &attest.Entry{Where: sub.Repository.Digest(d.Digest.String()).String(), Digest: d.Digest, PredicateType: pt}
		if pt != "" {
			e.Kind = attest.KindOf(pt)
		}
		e.Statement, e.Predicate = statement.Annotated(d.Annotations)
		e.Read = func(ctx context.Context) (*attest.Signed, error) { return s.load(ctx, c, sub, d) }
		out = append(out, e)
	}
	return out, nil
}

// foreign tells from its listing that a referrer is not a sigstore bundle:
// its artifact type is another (an SBOM that oras attached). A node that
// carries such referrers and no bundle carries nothing in this layout, so
// a verifier reading layouts in turn reads its legacy tags.
func foreign(d v1.Descriptor) bool {
	at := d.ArtifactType
	return at != "" && at != mediaTypeEmpty && !strings.HasPrefix(at, bundleMediaTypePrefix)
}

// load reads a referrer manifest and its bundle.
func (*Store) load(ctx context.Context, c *registry.Client, sub attest.Subject, d v1.Descriptor) (*attest.Signed, error) {
	where := sub.Repository.Digest(d.Digest.String())
	stmt, _ := statement.Annotated(d.Annotations)
	// Only where the registry's referrers API listed d does the listing
	// tell that the manifest is there: a fallback tag may name one
	// deleted since, which cosign would fail to read.
	raw, ok := []byte(nil), false
	if c.ServesReferrers(sub.Repository.Registry) {
		raw, ok = remade(sub, d, stmt)
	}
	if !ok {
		m, err := c.GetManifest(ctx, where, registry.MaxManifestBytes)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", where, err)
		}
		raw = m.Raw
	}
	man, err := v1.ParseManifest(strings.NewReader(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", where, err)
	}
	if man.Subject == nil || man.Subject.Digest != sub.Descriptor.Digest {
		return nil, fmt.Errorf("%s: %w: its subject is not %s", where, attest.ErrForeign, sub.Descriptor.Digest)
	}
	for _, l := range man.Layers {
		if !strings.HasPrefix(string(l.MediaType), bundleMediaTypePrefix) {
			continue
		}
		if stmt != (v1.Hash{}) && !ok {
			bundleLayers.Add(stmt, l)
		}
		if read, ok := readBundles.Get(l.Digest); ok {
			signed := *read
			signed.Subject = sub
			return &signed, nil
		}
		raw, err := c.ReadBlob(ctx, sub.Repository, l, attest.MaxPayloadBytes)
		if err != nil {
			return nil, fmt.Errorf("read the bundle of %s: %w", where, err)
		}
		signed, err := attest.ParseBundle(sub, raw)
		if errors.Is(err, attest.ErrNotBundle) {
			return nil, fmt.Errorf("%s: %w: %w", where, attest.ErrForeign, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		readBundles.Add(l.Digest, signed)
		return signed, nil
	}
	return nil, fmt.Errorf("%s: %w: no sigstore bundle layer", where, attest.ErrForeign)
}

// Verify implements Store: the bundle s was read from, verified with
// cosign's VerifyNewBundle (sigstore-go) for sub's digest, its statement
// naming the digest (cosign's IntotoSubjectClaimVerifier). A signature's
// statement is cosign v3's signing statement, its subject naming the
// repository and carrying the annotations.
func (*Store) Verify(ctx context.Context, v *attest.Verifier, sub attest.Subject, s *attest.Signed) (*attest.Claim, error) {
	st, err := v.Shared(append([]byte("bundle "), s.Raw...), s, sub, func(h v1.Hash) (*statement.Info, error) {
		return verifyBundle(ctx, v.CheckOpts(), h, s)
	})
	if err != nil {
		return nil, err
	}
	if s.Kind == attest.KindAttestation {
		return &attest.Claim{PredicateType: st.PredicateType}, nil
	}
	if st.PredicateType != statement.PredicateCosignSign {
		return nil, fmt.Errorf("a %s statement, not a signature", st.PredicateType)
	}
	// A tree statement may name the digest in several repositories: the
	// subject that names sub's is the one that speaks of it.
	h := sub.Descriptor.Digest
	var claim *attest.Claim
	for _, subj := range st.Subject {
		if subj.Digest[h.Algorithm] != h.Hex {
			continue
		}
		if subj.Name == sub.Repository.Name() {
			return &attest.Claim{Repository: subj.Name, Annotations: subj.Annotations}, nil
		}
		if claim == nil {
			claim = &attest.Claim{Repository: subj.Name, Annotations: subj.Annotations}
		}
	}
	if claim == nil {
		return nil, errors.New("no subject with this digest")
	}
	return claim, nil
}

// verifyBundle verifies a bundle with cosign's VerifyNewBundle for digest
// h, checks that its statement names h (cosign's
// IntotoSubjectClaimVerifier), and returns the statement.
func verifyBundle(ctx context.Context, co *cosign.CheckOpts, h v1.Hash, s *attest.Signed) (*statement.Info, error) {
	if s.Raw == nil {
		return nil, errors.New("not read from a bundle")
	}
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(s.Raw); err != nil {
		return nil, err
	}
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
	return statement.Read(s.Payload)
}

// Add implements Store: the payloads' bundles and cosign's empty config
// are uploaded, all at once, then the referrer manifests; then they are
// listed together among the subject's referrers.
func (s *Store) Add(ctx context.Context, c *registry.Client, signed ...*attest.Signed) error {
	if len(signed) == 0 {
		return nil
	}
	sub := signed[0].Subject
	ps := make([]*prepared, len(signed))
	blobs := [][]byte{emptyConfig}
	for i, one := range signed {
		if one.Subject.Digest() != sub.Digest() {
			return fmt.Errorf("bundle: Add of payloads of %s and %s at once: one subject at a time", sub.Digest(), one.Subject.Digest())
		}
		p, err := preparedBundles.Do(preparedKey(one), func() (*prepared, error) { return prepare(one) })
		if err != nil {
			return err
		}
		ps[i] = p
		blobs = append(blobs, p.raw)
	}
	ds, err := c.UploadAllOnce(ctx, sub.Repository, blobs...)
	if err != nil {
		return err
	}
	refs := make([]registry.Referrer, len(signed))
	for i, one := range signed {
		if refs[i], err = s.referrer(one, ps[i], ds[i+1]); err != nil {
			return err
		}
	}
	if err := c.PutReferrers(ctx, sub.Repository, sub.Descriptor.Digest, refs...); err != nil {
		return fmt.Errorf("write the bundles of %s: %w", sub.Digest(), err)
	}
	return nil
}

// referrer makes signed's referrer manifest, its bundle p uploaded as bd.
func (s *Store) referrer(signed *attest.Signed, p *prepared, bd v1.Hash) (registry.Referrer, error) {
	raw := p.raw
	ann := map[string]string{annotationCreated: s.now().UTC().Format(time.RFC3339)}
	for k, v := range p.ann {
		ann[k] = v
	}
	mraw, err := referrerOf(signed.Subject, v1.Descriptor{MediaType: attest.MediaTypeBundle, Digest: bd, Size: int64(len(raw))}, ann)
	if err != nil {
		return registry.Referrer{}, err
	}
	desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: statement.Digest(mraw), Size: int64(len(mraw)), ArtifactType: attest.MediaTypeBundle, Annotations: ann}
	return registry.Referrer{Descriptor: desc, Raw: mraw}, nil
}

// referrerOf is the referrer manifest Add puts for a bundle layer, as
// cosign makes it: the empty config, the bundle, sub as its subject.
func referrerOf(sub attest.Subject, layer v1.Descriptor, ann map[string]string) ([]byte, error) {
	return json.Marshal(referrerManifest{
		Manifest: v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			Config:        v1.Descriptor{MediaType: mediaTypeEmpty, ArtifactType: attest.MediaTypeBundle, Digest: statement.Digest(emptyConfig), Size: int64(len(emptyConfig))},
			Layers:        []v1.Descriptor{layer},
			Subject:       &v1.Descriptor{MediaType: sub.Descriptor.MediaType, Digest: sub.Descriptor.Digest, Size: sub.Descriptor.Size},
			Annotations:   ann,
		},
		ArtifactType: attest.MediaTypeBundle,
	})
}

// remade is the referrer manifest d lists, made again from the bundle
// layer last read for the statement stmt its annotations name, when that
// hashes to d's digest; else false, and the manifest is to be read.
func remade(sub attest.Subject, d v1.Descriptor, stmt v1.Hash) ([]byte, bool) {
	if stmt == (v1.Hash{}) {
		return nil, false
	}
	layer, ok := bundleLayers.Get(stmt)
	if !ok {
		return nil, false
	}
	raw, err := referrerOf(sub, layer, d.Annotations)
	if err != nil || statement.Digest(raw) != d.Digest || int64(len(raw)) != d.Size {
		return nil, false
	}
	return raw, true
}

// preparedKey names what prepare makes of signed: its signature and the
// evidence it carries.
func preparedKey(signed *attest.Signed) string {
	return fmt.Sprintf("%s %x %d %d", signed.Kind, signed.Signature, len(signed.Material.TlogEntries), len(signed.Material.Timestamps))
}

// prepare makes the bundle of signed and its referrer's annotations.
func prepare(signed *attest.Signed) (*prepared, error) {
	hint := ""
	if signed.Material.PublicKey != nil {
		hint = attest.Identity{Key: signed.Material.PublicKey}.Hint()
	}
	raw, err := attest.Bundle(signed, hint)
	if err != nil {
		return nil, err
	}
	st, err := statement.Read(signed.Payload)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{
		annotationBundleContent:       "dsse-envelope",
		annotationBundlePredicateType: st.PredicateType,
	}
	statement.Annotate(ann, signed.Payload)
	return &prepared{raw: raw, ann: ann}, nil
}

func (s *Store) now() time.Time {
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
