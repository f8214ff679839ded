package attest

import (
	"context"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/nestattest/nestattest/registry"
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

// Stores returns the store of each layout, in the order given. Verify
// reads them in that order: as cosign v3 reads a node, LayoutBundle then
// LayoutLegacy.
func Stores(layouts ...Layout) ([]Store, error) {
	out := make([]Store, 0, len(layouts))
	for _, l := range layouts {
		switch l {
		case LayoutLegacy:
			out = append(out, LegacyStore{})
		case LayoutBundle:
			out = append(out, &BundleStore{})
		default:
			return nil, fmt.Errorf("storage format %q: want %s or %s", l, LayoutLegacy, LayoutBundle)
		}
	}
	return out, nil
}

// Store keeps the signatures and attestations of subjects in one layout:
// it reads, writes and verifies its own material. Sign, verify and
// propagate read, write and verify through it alone, so a layout is one
// Store. A store holds no registry client: it reads and writes through
// the one its caller hands it, the run's, so that the run's final
// confirmation (registry.Client.Settle) covers every write.
type Store interface {
	// Layout names the store's layout.
	Layout() Layout
	// SignaturePayload returns what a signature of ref signs in this
	// layout: its payload type and payload. The same inputs give the same
	// bytes.
	SignaturePayload(sub Subject, annotations map[string]string) (payloadType string, payload []byte, err error)
	// List returns the signatures and attestations sub carries, read
	// through c (and loaded through it by Entry.Load); none is an empty
	// list, not an error.
	List(ctx context.Context, c *registry.Client, sub Subject) ([]*Entry, error)
	// Add stores s through c and returns once the registry holds it,
	// confirmed; c's Settle confirms it again at the end of the run.
	Add(ctx context.Context, c *registry.Client, s *Signed) error
	// Verify verifies s, a signature or attestation of sub this store
	// read (or would write), with cosign's own verification for the
	// layout, against the trust in co; it returns what s says of sub.
	Verify(ctx context.Context, co *cosign.CheckOpts, sub Subject, s *Signed) (*Claim, error)
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

	once sync.Once
	load func(context.Context) (*Signed, error)
	// listed, where the listing shows all of the entry but its payload (a
	// legacy signature, whose signature and material are annotations),
	// makes it of a payload whose digest is PayloadDigest; else nil.
	listed func(payload []byte) *Signed
	signed *Signed
	err    error
}

// Load reads the entry once: its payload, signature and material. Where
// the listing shows all of it but the payload and one of known is that
// payload (its digest is PayloadDigest), nothing is fetched.
func (e *Entry) Load(ctx context.Context, known ...[]byte) (*Signed, error) {
	if e.listed != nil {
		for _, p := range known {
			if digestOf(p) == e.PayloadDigest {
				return e.listed(p), nil
			}
		}
	}
	e.once.Do(func() { e.signed, e.err = e.load(ctx) })
	return e.signed, e.err
}
