package identity

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/nestattest/nestattest/attest"
)

// KeySigner signs with one key through sigstore's signature.SignerVerifier:
// a cosign key, or a KMS key whose signing happens remotely. Its public key
// is read once, so its Trust checks signatures locally, without asking
// the KMS.
type KeySigner struct {
	sv       signature.SignerVerifier
	verifier signature.Verifier
	id       attest.Identity
}

// NewKeySigner wraps sv, reading its public key once. ref names the key
// for people.
func NewKeySigner(ctx context.Context, sv signature.SignerVerifier, ref string) (*KeySigner, error) {
	pub, err := sv.PublicKey(options.WithContext(ctx))
	if err != nil {
		if isKMS(schemeOf(ref)) {
			if err := attest.Unreachable(attest.ServiceKMS, ref, err); errors.Is(err, attest.ErrUnreachable) {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%w: %s: public key: %v", attest.ErrKey, ref, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", attest.ErrKey, ref, err)
	}
	return &KeySigner{sv: sv, verifier: v, id: attest.Identity{Key: pub, KeyRef: ref}}, nil
}

// Sign implements attest.Signer: one SignMessage call, remote for a KMS key.
func (k *KeySigner) Sign(ctx context.Context, message []byte) ([]byte, attest.Material, error) {
	sig, err := k.sv.SignMessage(bytes.NewReader(message), options.WithContext(ctx))
	if err != nil {
		if isKMS(schemeOf(k.id.KeyRef)) {
			if err := attest.Unreachable(attest.ServiceKMS, k.id.KeyRef, err); errors.Is(err, attest.ErrUnreachable) {
				return nil, attest.Material{}, err
			}
		}
		return nil, attest.Material{}, fmt.Errorf("sign with %s: %w", k.id.KeyRef, err)
	}
	return sig, attest.Material{PublicKey: k.id.Key}, nil
}

// Trust implements attest.Signer: signatures by the key.
func (k *KeySigner) Trust() attest.Trust { return attest.Trust{Key: k.id.Key} }

// Identity implements attest.Signer.
func (k *KeySigner) Identity() attest.Identity { return k.id }

// Verifier returns a verifier for the signer's public key.
func (k *KeySigner) Verifier() signature.Verifier { return k.verifier }
