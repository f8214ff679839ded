package attest

import (
	"errors"

	"github.com/nestattest/nestattest/attest/statement"
)

// Sentinel errors; test for them with errors.Is. Verify returns them in
// each failed Check's Err.
var (
	// ErrKey: the key cannot be read, is not a key of the kind needed, or
	// the password does not decrypt it.
	ErrKey = errors.New("cannot load key")
	// ErrKeyPassword: the password does not decrypt the key (or the key is
	// corrupt). It comes wrapped with ErrKey.
	ErrKeyPassword = errors.New("wrong password, or the key is corrupt (decryption failed)")
	// ErrOptions: a Trust or Requirements has options that exclude each
	// other, or lacks one; see OptionError.
	ErrOptions = errors.New("conflicting or missing options")
	// ErrPredicate: the predicate or its type is not usable (the same
	// error as statement.ErrPredicate).
	ErrPredicate = statement.ErrPredicate
	// ErrUnsigned: a node has no signature that the policy accepts.
	ErrUnsigned = errors.New("no valid signature")
	// ErrUnattested: a node has no attestation of a required type that the
	// policy accepts.
	ErrUnattested = errors.New("no valid attestation")
	// ErrCopied: a node's only valid signatures name another repository: a
	// signature copied from elsewhere.
	ErrCopied = errors.New("signature for another repository")
	// ErrAnnotations: a node's valid signatures lack required annotations.
	ErrAnnotations = errors.New("signature lacks required annotations")
	// ErrUnreachable: a service the run shares (transparency log,
	// timestamp authority, Fulcio, KMS) could not be connected to; see
	// UnreachableError.
	ErrUnreachable = errors.New("service cannot be reached")
	// ErrUnreadable: the node, or what it carries, could not be read.
	ErrUnreadable = errors.New("cannot read")
)
