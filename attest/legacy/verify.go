package legacy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/signature"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
)

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
	desc, err := describe(layer)
	if err != nil {
		return nil, err
	}
	desc.Annotations = ann
	sig := signature.New(layer, desc)
	if s.Kind == attest.KindAttestation {
		key, err := json.Marshal(struct {
			Layer v1.Hash
			Ann   map[string]string
		}{desc.Digest, ann})
		if err != nil {
			return nil, err
		}
		st, err := v.Shared(append([]byte("legacy "), key...), s, sub, func(h v1.Hash) (*statement.Info, error) {
			return verifyLegacyAttestation(ctx, v.CheckOpts(), h, s, sig)
		})
		if err != nil {
			return nil, err
		}
		return &attest.Claim{PredicateType: st.PredicateType}, nil
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

// verifyLegacyAttestation verifies an attestation's layer, sig, for digest
// h with cosign's VerifyImageAttestation and its subject check, and
// returns its statement.
func verifyLegacyAttestation(ctx context.Context, co *cosign.CheckOpts, h v1.Hash, s *attest.Signed, sig oci.Signature) (*statement.Info, error) {
	env, err := s.Envelope()
	if err != nil {
		return nil, err
	}
	if err := checkTimestamps(co, env, s.Material.EnvelopeTimestamps); err != nil {
		return nil, err
	}
	co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	if _, _, err := cosign.VerifyImageAttestation(ctx, sigList{sigs: []oci.Signature{sig}}, h, co); err != nil {
		return nil, err
	}
	return statement.Read(s.Payload)
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
