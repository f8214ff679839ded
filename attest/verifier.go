package attest

import (
	"context"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nestattest/nestattest/attest/statement"
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
	trust  Trust
	co     *cosign.CheckOpts
	shared sync.Map // sha256 of what a store verified → *sharedVerdict
}

type sharedVerdict struct {
	once  sync.Once
	st    *statement.Info
	names map[v1.Hash]bool // the subjects' sha256 digests
	err   error
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

// Shared verifies s, read for sub, with verify, which checks s for a
// digest the way cosign does (the signature and its evidence, then that
// the statement names the digest) and returns its statement. A statement
// of several subjects (a tree statement) is verified once for v's life,
// for its first subject, keyed by key (the bytes the store verifies);
// each subject after that is checked for membership alone, the check
// cosign's verification makes of it: a tree's statements cost one
// signature check each, however many nodes they name.
func (v *Verifier) Shared(key []byte, s *Signed, sub Subject, verify func(digest v1.Hash) (*statement.Info, error)) (*statement.Info, error) {
	k := statement.Digest(key)
	if e, ok := v.shared.Load(k); ok {
		return e.(*sharedVerdict).verdict(sub)
	}
	st, err := statement.Read(s.Payload)
	if err != nil || len(st.Subject) < 2 || st.Subject[0].Digest["sha256"] == "" {
		return verify(sub.Descriptor.Digest)
	}
	first := v1.Hash{Algorithm: "sha256", Hex: st.Subject[0].Digest["sha256"]}
	e, _ := v.shared.LoadOrStore(k, &sharedVerdict{})
	sv := e.(*sharedVerdict)
	sv.once.Do(func() {
		if sv.st, sv.err = verify(first); sv.err == nil {
			sv.names = make(map[v1.Hash]bool, len(sv.st.Subject))
			for _, subj := range sv.st.Subject {
				if h := subj.Digest["sha256"]; h != "" {
					sv.names[v1.Hash{Algorithm: "sha256", Hex: h}] = true
				}
			}
		}
	})
	return sv.verdict(sub)
}

// verdict is the shared verdict for sub: the statement, when it verified
// and names sub's digest.
func (sv *sharedVerdict) verdict(sub Subject) (*statement.Info, error) {
	sv.once.Do(func() {}) // wait for the verification under way
	if sv.err != nil {
		return nil, sv.err
	}
	if !sv.names[sub.Descriptor.Digest] && !sv.st.Names(sub.Descriptor.Digest) {
		return nil, fmt.Errorf("the statement does not name %s among its %d subjects: it was made for other manifests", sub.Descriptor.Digest, len(sv.st.Subject))
	}
	return sv.st, nil
}
