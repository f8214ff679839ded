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

// checker is a Trust (its key or identity, its trusted material, the
// transparency-log and timestamp rules) as cosign takes it:
// what Verify checks every node against, and what Sign checks to tell
// whether a node is signed already. Each signature or attestation is
// verified by the store that read it, the one that knows its layout, with
// cosign's own verification for that layout.
type checker struct {
	co *cosign.CheckOpts
}

func newChecker(t Trust) (*checker, error) {
	co, err := t.checkOpts()
	if err != nil {
		return nil, err
	}
	return &checker{co: co}, nil
}

// verify verifies s, a signature or an attestation of sub that store read.
func (c *checker) verify(ctx context.Context, store Store, sub Subject, s *Signed) (*Claim, error) {
	return store.Verify(ctx, c.co, sub, s)
}
