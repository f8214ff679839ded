// Package identity holds the identities that sign a run: each is an
// attest.Signer, which signs a payload and says who signed it (its
// attest.Identity) and what trust accepts its signatures (its
// attest.Trust). LoadPublicKey is what attest.NewTrust loads a verifying
// key with (TrustOptions.LoadKey).
//
// A KeySigner signs with one key: a cosign key file, a Tekton Chains
// signing-secrets directory, env://VAR, k8s://NAMESPACE/SECRET, or a KMS
// key (awskms://, gcpkms://, azurekms://, hashivault://) that signs
// remotely; LoadKey takes the references cosign's --key takes, and
// LoadPublicKey those of cosign verify's --key. A KeylessSigner signs with
// an ephemeral key that a certificate authority (Fulcio) certifies for an
// OIDC identity: one key and certificate for a whole run, renewed shortly
// before the certificate expires.
//
// identity imports attest, never the reverse: attest keeps the Signer
// interface and the types a signature carries (Material, Identity,
// Trust), so a new kind of identity is a new Signer here and attest does
// not change.
package identity
