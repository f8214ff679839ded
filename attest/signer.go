package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// Signer signs the payloads of a run and says who signed them. A key
// (a file, a Kubernetes Secret, a KMS key) is one; keyless signing with a
// Fulcio certificate is another. Implementations are safe for concurrent
// use.
type Signer interface {
	// Sign signs message and returns the signature with what verifies it:
	// the public key, or the certificate chain it was signed under.
	Sign(ctx context.Context, message []byte) ([]byte, Material, error)
	// Trust is the trust that accepts this signer's signatures: its key,
	// or its certificate identity and the authorities it chains to. Sign
	// adds what its witnesses require and verifies what a node carries
	// with it, as Verify does, to tell whether the node is signed already.
	Trust() Trust
	// Identity describes the signer.
	Identity() Identity
}

// Identity describes who signs.
type Identity struct {
	// Key is the public key of a key signer.
	Key crypto.PublicKey
	// KeyRef is where the key came from, as given (a file, env://, k8s://,
	// awskms://…).
	KeyRef string
	// Subject and Issuer are a keyless signer's certificate identity and
	// OIDC issuer.
	Subject, Issuer string
}

// Hint is the key hint sigstore bundles carry for a key-signed
// signature: the base64 sha256 of the key's PKIX encoding, as cosign
// computes it.
func (id Identity) Hint() string {
	if id.Key == nil {
		return ""
	}
	der, err := x509.MarshalPKIXPublicKey(id.Key)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// String names the signer for people.
func (id Identity) String() string {
	if id.Key != nil {
		return fmt.Sprintf("key %s (%s)", id.KeyRef, id.Hint())
	}
	return fmt.Sprintf("%s from %s", id.Subject, id.Issuer)
}

// KeySigner signs with one key through sigstore's signature.SignerVerifier:
// a cosign key, or a KMS key whose signing happens remotely. Its public key
// is read once, so its Trust checks signatures locally, without asking
// the KMS.
type KeySigner struct {
	sv       signature.SignerVerifier
	verifier signature.Verifier
	id       Identity
}

// NewKeySigner wraps sv, reading its public key once. ref names the key
// for people.
func NewKeySigner(ctx context.Context, sv signature.SignerVerifier, ref string) (*KeySigner, error) {
	pub, err := sv.PublicKey(options.WithContext(ctx))
	if err != nil {
		if isKMS(schemeOf(ref)) {
			if err := Unreachable(ServiceKMS, ref, err); errors.Is(err, ErrUnreachable) {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%w: %s: public key: %v", ErrKey, ref, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKey, ref, err)
	}
	return &KeySigner{sv: sv, verifier: v, id: Identity{Key: pub, KeyRef: ref}}, nil
}

// Sign implements Signer: one SignMessage call, remote for a KMS key.
func (k *KeySigner) Sign(ctx context.Context, message []byte) ([]byte, Material, error) {
	sig, err := k.sv.SignMessage(bytes.NewReader(message), options.WithContext(ctx))
	if err != nil {
		if isKMS(schemeOf(k.id.KeyRef)) {
			if err := Unreachable(ServiceKMS, k.id.KeyRef, err); errors.Is(err, ErrUnreachable) {
				return nil, Material{}, err
			}
		}
		return nil, Material{}, fmt.Errorf("sign with %s: %w", k.id.KeyRef, err)
	}
	return sig, Material{PublicKey: k.id.Key}, nil
}

// Trust implements Signer: signatures by the key.
func (k *KeySigner) Trust() Trust { return Trust{Key: k.id.Key} }

// Identity implements Signer.
func (k *KeySigner) Identity() Identity { return k.id }

// Verifier returns a verifier for the signer's public key.
func (k *KeySigner) Verifier() signature.Verifier { return k.verifier }
