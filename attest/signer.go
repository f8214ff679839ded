package attest

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
)

// Signer signs the payloads of a run and says who signed them. A key
// (a file, a Kubernetes Secret, a KMS key) is one; keyless signing with a
// Fulcio certificate is another: package identity holds both.
// Implementations are safe for concurrent use.
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
