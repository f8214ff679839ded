package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/nestattest/nestattest/walk"
)

// annotationPredicateType is the layer annotation cosign puts on each
// attestation.
const annotationPredicateType = "predicateType"

// sign adds this key's signature over the node's payload unless it is there.
func (s *signer) sign(ctx context.Context, ref name.Digest) (Outcome, error) {
	payload, err := SignaturePayload(ref, s.annotations)
	if err != nil {
		return Failed, err
	}
	h := digestHash(ref)
	existing, err := s.opts.Store.List(ctx, ref.Repository, h, Signatures)
	if err != nil {
		return Failed, err
	}
	if found, err := s.hasSignature(existing, payload); err != nil || found {
		return Present, err
	}
	raw, err := s.opts.Signer.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return Failed, fmt.Errorf("sign: %w", err)
	}
	sig, err := static.NewSignature(payload, base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		return Failed, err
	}
	if err := s.opts.Store.Add(ctx, ref.Repository, h, Signatures, existing, sig); err != nil {
		return Failed, err
	}
	return Written, nil
}

// hasSignature looks for a layer holding exactly payload, with a signature
// this key made. It needs no blob: the layer digest is the payload's digest
// and the signature is an annotation.
func (s *signer) hasSignature(existing oci.Signatures, payload []byte) (bool, error) {
	sigs, err := existing.Get()
	if err != nil {
		return false, err
	}
	want := sha256Hash(payload)
	for _, sig := range sigs {
		if d, err := sig.Digest(); err != nil || d != want {
			continue
		}
		b64, err := sig.Base64Signature()
		if err != nil {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		if s.opts.Signer.VerifySignature(bytes.NewReader(raw), bytes.NewReader(payload)) == nil {
			return true, nil
		}
	}
	return false, nil
}

// attest adds this key's attestation with the node's statement unless the
// same statement is there.
func (s *signer) attest(ctx context.Context, n *walk.Node, ref name.Digest) (Outcome, error) {
	pred, err := s.opts.Predicates.For(n)
	if err != nil {
		return Failed, err
	}
	stmt, err := Statement(ref, s.opts.Predicates.Type(), pred, s.opts.Now())
	if err != nil {
		return Failed, err
	}
	h := digestHash(ref)
	existing, err := s.opts.Store.List(ctx, ref.Repository, h, Attestations)
	if err != nil {
		return Failed, err
	}
	if found, err := s.hasAttestation(existing, stmt); err != nil || found {
		return Present, err
	}
	env, err := dsse.WrapSigner(s.opts.Signer, ctypes.IntotoPayloadType).SignMessage(bytes.NewReader(stmt))
	if err != nil {
		return Failed, fmt.Errorf("attest: %w", err)
	}
	att, err := static.NewAttestation(env,
		static.WithLayerMediaType(ctypes.DssePayloadType),
		static.WithAnnotations(map[string]string{annotationPredicateType: s.uri}))
	if err != nil {
		return Failed, err
	}
	if err := s.opts.Store.Add(ctx, ref.Repository, h, Attestations, existing, att); err != nil {
		return Failed, err
	}
	return Written, nil
}

// hasAttestation looks for an envelope signed by this key whose statement
// is the same as stmt. Only layers of the same predicate type are read.
func (s *signer) hasAttestation(existing oci.Signatures, stmt []byte) (bool, error) {
	atts, err := existing.Get()
	if err != nil {
		return false, err
	}
	verifier := dsse.WrapVerifier(s.opts.Signer)
	for _, att := range atts {
		if ann, err := att.Annotations(); err != nil || ann[annotationPredicateType] != s.uri {
			continue
		}
		env, err := att.Payload()
		if err != nil {
			return false, err
		}
		if verifier.VerifySignature(bytes.NewReader(env), nil) != nil {
			continue
		}
		if got, err := envelopePayload(env); err == nil && sameStatement(got, stmt) {
			return true, nil
		}
	}
	return false, nil
}

// envelopePayload returns the decoded payload of a DSSE envelope.
func envelopePayload(env []byte) ([]byte, error) {
	var e struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(e.Payload)
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func digestHash(ref name.Digest) v1.Hash {
	h, _ := v1.NewHash(ref.DigestStr())
	return h
}
