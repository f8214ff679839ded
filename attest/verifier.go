package attest

import (
	"context"

	"github.com/sigstore/cosign/v2/pkg/cosign"
)

// Claim is what a verified signature or attestation says of its subject.
type Claim struct {
	// Repository is the repository a signature names; empty where the
	// layout names none.
	Repository string
	// Annotations are a signature's annotations.
	Annotations map[string]string
	// PredicateType is an attestation's predicate type.
	PredicateType string
}

// Verifier is a Trust (its key or identity, its trusted material, the
// transparency-log and timestamp rules) made ready to verify: what Verify
// checks every node against, and what Sign checks to tell whether a node
// is signed already. Each signature or attestation is verified by the
// store that read it, the one that knows its layout, with cosign's own
// verification for that layout, from the options CheckOpts gives. It is
// safe for concurrent use.
type Verifier struct {
	trust Trust
	co    *cosign.CheckOpts
}

// NewVerifier makes t ready to verify. A Trust that Validate refuses is
// refused here, before anything is read.
func NewVerifier(t Trust) (*Verifier, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	co, err := t.checkOpts()
	if err != nil {
		return nil, err
	}
	return &Verifier{trust: t, co: co}, nil
}

// Trust is the trust v verifies against.
func (v *Verifier) Trust() Trust { return v.trust }

// CheckOpts returns a copy of cosign's verification options for v's
// trust, for a store to verify with cosign's own code.
func (v *Verifier) CheckOpts() *cosign.CheckOpts {
	co := *v.co
	return &co
}

// Verify verifies s, a signature or an attestation of sub that store read.
func (v *Verifier) Verify(ctx context.Context, store Store, sub Subject, s *Signed) (*Claim, error) {
	return store.Verify(ctx, v, sub, s)
}
