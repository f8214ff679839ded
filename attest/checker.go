package attest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// checker verifies one signature or attestation with cosign's own
// verification, against a Trust (its key or identity, its trusted
// material, the transparency-log and timestamp rules): what Verify
// checks of every node, and what Sign checks to tell whether a node is
// signed already.
type checker struct {
	co *cosign.CheckOpts
}

func newChecker(t Trust) (*checker, error) {
	co, err := t.checkOpts()
	if err != nil {
		return nil, err
	}
	return &checker{co: co}, nil
}

// verify verifies s, a signature or an attestation of sub.
func (v *checker) verify(ctx context.Context, sub Subject, s *Signed) error {
	if s.Kind == KindSignature {
		_, _, err := v.verifySignature(ctx, sub, s)
		return err
	}
	_, err := v.verifyAttestation(ctx, sub, s)
	return err
}

// verifySignature verifies a signature with cosign and returns the
// repository it names ("" when the layout names none) and its annotations.
func (v *checker) verifySignature(ctx context.Context, sub Subject, s *Signed) (string, map[string]string, error) {
	h := sub.Descriptor.Digest
	if !s.DSSE() {
		if err := v.checkTimestamps(s.Signature, s.Material.Timestamps); err != nil {
			return "", nil, err
		}
		sig, err := legacySignature(s)
		if err != nil {
			return "", nil, err
		}
		co := *v.co
		co.ClaimVerifier = cosign.SimpleClaimVerifier
		if _, err := cosign.VerifyImageSignature(ctx, sig, h, &co); err != nil {
			return "", nil, err
		}
		var p payload.SimpleContainerImage
		if err := json.Unmarshal(s.Payload, &p); err != nil {
			return "", nil, err
		}
		return p.Critical.Identity.DockerReference, stringMap(p.Optional), nil
	}
	st, err := v.verifyBundle(ctx, sub, s)
	if err != nil {
		return "", nil, err
	}
	if st.PredicateType != PredicateCosignSign {
		return "", nil, fmt.Errorf("a %s statement, not a signature", st.PredicateType)
	}
	for _, subj := range st.Subject {
		if subj.Digest[h.Algorithm] == h.Hex {
			return subj.Name, subj.Annotations, nil
		}
	}
	return "", nil, errors.New("no subject with this digest")
}

// verifyBundle verifies a bundle with cosign's VerifyNewBundle for the
// subject's digest, checks that its statement names the digest (cosign's
// IntotoSubjectClaimVerifier), and returns the statement.
func (v *checker) verifyBundle(ctx context.Context, sub Subject, s *Signed) (*statementInfo, error) {
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
	if _, err := cosign.VerifyNewBundle(ctx, v.co, verify.WithArtifactDigest(h.Algorithm, digest), &b); err != nil {
		return nil, err
	}
	env, err := s.Envelope()
	if err != nil {
		return nil, err
	}
	att, err := static.NewAttestation(env)
	if err != nil {
		return nil, err
	}
	if err := cosign.IntotoSubjectClaimVerifier(att, h, nil); err != nil {
		return nil, err
	}
	return readStatement(s.Payload)
}

// verifyAttestation verifies an attestation with cosign and returns its
// predicate type.
func (v *checker) verifyAttestation(ctx context.Context, sub Subject, s *Signed) (string, error) {
	if s.Bundle != nil {
		st, err := v.verifyBundle(ctx, sub, s)
		if err != nil {
			return "", err
		}
		return st.PredicateType, nil
	}
	env, err := s.Envelope()
	if err != nil {
		return "", err
	}
	if err := v.checkTimestamps(env, s.Material.EnvelopeTimestamps); err != nil {
		return "", err
	}
	att, err := static.NewAttestation(env, legacyOptions(s.Material, true)...)
	if err != nil {
		return "", err
	}
	co := *v.co
	co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	if _, _, err := cosign.VerifyImageAttestation(ctx, sigList{sigs: []oci.Signature{att}}, sub.Descriptor.Digest, &co); err != nil {
		return "", err
	}
	st, err := readStatement(s.Payload)
	if err != nil {
		return "", err
	}
	return st.PredicateType, nil
}

// checkTimestamps refuses a legacy layer whose RFC 3161 timestamp does not
// verify over what it must cover, before cosign reads it: cosign v2.6.5
// panics on such a timestamp (verify.go, VerifyRFC3161Timestamp, with no
// timestamp verified and no error), in a goroutine no caller can recover.
// With UseSignedTimestamps it refuses a layer without one: cosign v2.6.5
// reads a legacy layer without a timestamp as one with nothing to check,
// where sigstore-go requires one in a bundle.
func (v *checker) checkTimestamps(covered []byte, timestamps [][]byte) error {
	if len(timestamps) == 0 && v.co.UseSignedTimestamps {
		return errors.New("no RFC 3161 timestamp, and a signed timestamp is required (--use-signed-timestamps)")
	}
	if len(timestamps) == 0 {
		return nil
	}
	if v.co.TrustedMaterial == nil {
		return errors.New("an RFC 3161 timestamp, and no trusted root to verify it")
	}
	entity, err := timestampEntity(covered, timestamps[0])
	if err != nil {
		return err
	}
	if _, err := verify.VerifySignedTimestampWithThreshold(entity, v.co.TrustedMaterial, 1); err != nil {
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
		MediaType: MediaTypeBundle,
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

// legacySignature is a simple-signing signature as cosign reads it from a
// legacy layer.
func legacySignature(s *Signed) (oci.Signature, error) {
	return static.NewSignature(s.Payload, base64.StdEncoding.EncodeToString(s.Signature), legacyOptions(s.Material, false)...)
}

// legacyOptions carry a signature's material into cosign's static layer:
// the certificate chain, the Rekor v1 bundle and the RFC 3161 timestamp.
func legacyOptions(m Material, envelope bool) []static.Option {
	var opts []static.Option
	if len(m.Chain) > 0 {
		leaf, _ := cryptoutils.MarshalCertificateToPEM(m.Chain[0])
		chain, _ := cryptoutils.MarshalCertificatesToPEM(m.Chain[1:])
		opts = append(opts, static.WithCertChain(leaf, chain))
	}
	for _, e := range m.TlogEntries {
		if raw, ok := rekorBundleOf(e); ok {
			var b cbundle.RekorBundle
			if json.Unmarshal(raw, &b) == nil {
				opts = append(opts, static.WithBundle(&b))
				break
			}
		}
	}
	ts := m.Timestamps
	if envelope {
		ts = m.EnvelopeTimestamps
	}
	if len(ts) > 0 {
		opts = append(opts, static.WithRFC3161Timestamp(&cbundle.RFC3161Timestamp{SignedRFC3161Timestamp: ts[0]}))
	}
	return opts
}

// sigList is a list of signatures as cosign's verification functions take
// them; they read it with Get alone, never as an image.
type sigList struct {
	v1.Image
	sigs []oci.Signature
}

func (s sigList) Get() ([]oci.Signature, error) { return s.sigs, nil }
