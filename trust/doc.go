// Package trust finds sigstore's trust material — the trusted root that
// names the certificate authorities, transparency logs and timestamp
// authorities to trust, and the signing config that names the services to
// sign with — the way cosign, actions/attest and Tekton Chains do: from
// sigstore's TUF repository.
//
// A TUF repository serves its targets (here trusted_root.json and
// signing_config.v0.2.json) under metadata signed by keys that its root
// metadata names. A client starts from a root it trusts already (the
// public-good instance's is embedded in sigstore-go, and so in nestattest),
// follows the repository's root rotations, and accepts targets only under
// unexpired, correctly signed metadata. sigstore-go's pkg/tuf is that
// client; this package only chooses its options and explains its failures.
//
// OpenTUF refreshes the metadata from the mirror on every run, so a rotated
// key is picked up on the next run with no flag changed, and keeps a copy
// in a cache directory (DefaultCacheDir). When the mirror cannot be read,
// the cached copy is used for as long as TUF's expiry dates allow; after
// that, or with nothing cached, OpenTUF fails with ErrUnreachable and an
// error saying which URL could not be read and how to go on.
//
// For a private sigstore deployment, TUFOptions.Mirror names its repository
// and TUFOptions.Root the root.json to start from, as `cosign initialize
// --mirror URL --root FILE` takes them. Without Root, a private mirror's
// root is the one cached for it by an earlier run, as cosign reads it.
package trust
