package attest

import (
	"context"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Layout names a storage layout.
type Layout string

// The layouts.
const (
	// LayoutLegacy is cosign's tag layout: <repo>:sha256-<hex>.sig and .att,
	// an image whose layers are the signatures or attestations.
	LayoutLegacy Layout = "legacy"
	// LayoutBundle is sigstore bundles stored as OCI 1.1 referrers, as
	// cosign v3 writes them.
	LayoutBundle Layout = "bundle"
)

// ParseLayout checks a layout's name.
func ParseLayout(s string) (Layout, error) {
	switch l := Layout(s); l {
	case LayoutLegacy, LayoutBundle:
		return l, nil
	}
	return "", fmt.Errorf("storage format %q: want %s or %s", s, LayoutLegacy, LayoutBundle)
}

// Store keeps the signatures and attestations of subjects in one layout.
// Sign, verify and propagate read and write through it alone, so a layout
// is one Store.
type Store interface {
	// Layout names the store's layout.
	Layout() Layout
	// SignaturePayload returns what a signature of ref signs in this
	// layout: its payload type and payload. The same inputs give the same
	// bytes.
	SignaturePayload(sub Subject, annotations map[string]string) (payloadType string, payload []byte, err error)
	// List returns the signatures and attestations sub carries; none is an
	// empty list, not an error.
	List(ctx context.Context, sub Subject) ([]*Entry, error)
	// Add stores s and returns once the registry holds it, confirmed.
	Add(ctx context.Context, s *Signed) error
}

// Entry is a stored signature or attestation as a listing shows it: enough
// to tell whether it is the one a run would write without reading it, and
// Load to read the rest.
type Entry struct {
	// Kind is empty where the listing does not tell; Load tells.
	Kind Kind
	// Where names it for messages: the tag and layer, or the referrer.
	Where string
	// PayloadDigest is the payload's digest, where the listing gives it
	// (legacy signatures).
	PayloadDigest v1.Hash
	// PredicateType and Statement are an attestation's predicate type and
	// its StatementDigest, where the listing gives them.
	PredicateType string
	Statement     v1.Hash
	// Signature and Material are known from the listing for legacy
	// signatures, whose signature is an annotation; else Load reads them.
	Signature []byte
	Material  *Material

	once   sync.Once
	load   func(context.Context) (*Signed, error)
	signed *Signed
	err    error
}

// Load reads the entry once: its payload, signature and material.
func (e *Entry) Load(ctx context.Context) (*Signed, error) {
	e.once.Do(func() { e.signed, e.err = e.load(ctx) })
	return e.signed, e.err
}
