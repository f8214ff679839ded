package attest

import "errors"

// Sentinel errors; test for them with errors.Is.
var (
	// ErrKey: the key cannot be read, is not a cosign key, or the password
	// does not decrypt it.
	ErrKey = errors.New("cannot load signing key")
	// ErrPredicate: the predicate or its type is not usable.
	ErrPredicate = errors.New("invalid predicate")
	// ErrUnsigned: a node has no signature by the key that passes.
	ErrUnsigned = errors.New("no valid signature")
	// ErrUnattested: a node has no attestation of a required type by the
	// key whose subject is the node.
	ErrUnattested = errors.New("no valid attestation")
)
