package attest

import (
	"context"
	"errors"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/registry"
)

// ErrForeign marks an entry a store listed that is not one of its
// layout's signatures or attestations (a referrer of another kind):
// Entry.Load returns it wrapped, and readers pass over the entry.
var ErrForeign = errors.New("not a signature or attestation of this layout")

// Layout names a storage layout: a Store's own name for what it writes,
// as the --format flag takes it.
type Layout string

// Keeps is what evidence a layout stores with a signature, beside the
// signature and its material: what a Witness adds for it, and so what a
// run requires of what a node already carries there.
type Keeps struct {
	// TlogVersions are the major API versions of the transparency logs
	// whose entries the layout stores (cosign's legacy layout: Rekor v1
	// only, its bundle annotation holding a v1 signed entry timestamp).
	TlogVersions []uint32
	// EnvelopeTimestamps: the layout timestamps a DSSE envelope as well as
	// its signature (cosign's legacy layout timestamps an attestation's
	// envelope).
	EnvelopeTimestamps bool
}

// Tlog reports whether the layout stores entries of a log of API version
// v (0 is 1).
func (k Keeps) Tlog(v uint32) bool {
	v = max(v, 1)
	for _, kv := range k.TlogVersions {
		if kv == v {
			return true
		}
	}
	return false
}

// Witness adds evidence to a signed payload: a transparency-log entry, an
// RFC 3161 timestamp. Package evidence holds the real ones.
type Witness interface {
	// Witness adds the evidence to s, as a layout that keeps k stores it.
	Witness(ctx context.Context, s *Signed, k Keeps) error
	// Require makes t require the evidence Witness adds, where a layout
	// that keeps k stores it: a node whose signature lacks it is not
	// signed yet for this run. Where the layout cannot keep the evidence,
	// it requires nothing more.
	Require(t *Trust, k Keeps)
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
	// Keeps says what evidence the layout stores.
	Keeps() Keeps
	// SignaturePayload returns what a signature of ref signs in this
	// layout: its payload type and payload. The same inputs give the same
	// bytes.
	SignaturePayload(sub Subject, annotations map[string]string) (payloadType string, payload []byte, err error)
	// List returns the signatures and attestations sub carries, read
	// through c (and loaded through it by Entry.Load); none is an empty
	// list, not an error.
	List(ctx context.Context, c *registry.Client, sub Subject) ([]*Entry, error)
	// Add stores signed, payloads of one subject, through c and returns
	// once the registry holds them, confirmed; c's Settle confirms them
	// again at the end of the run. A layout that lists what a subject
	// carries in one place (the bundle layout's referrers tag) updates
	// that listing once for them all.
	Add(ctx context.Context, c *registry.Client, signed ...*Signed) error
	// Verify verifies s, a signature or attestation of sub this store
	// read (or would write), with cosign's own verification for the
	// layout, against v's trust; it returns what s says of sub.
	Verify(ctx context.Context, v *Verifier, sub Subject, s *Signed) (*Claim, error)
}

// Entry is a stored signature or attestation as a listing shows it: enough
// to tell whether it is the one a run would write without reading it, and
// Load to read the rest.
type Entry struct {
	// Kind is empty where the listing does not tell; Load tells.
	Kind Kind
	// Where names it for messages: the tag and layer, or the referrer.
	Where string
	// Digest is the digest of what is stored, as the listing gives it: a
	// legacy layer (a signature's payload, an attestation's DSSE
	// envelope), a bundle's referrer manifest. A verification summary
	// names what it checked by it.
	Digest v1.Hash
	// PayloadDigest is the payload's digest, where the listing gives it
	// (legacy signatures).
	PayloadDigest v1.Hash
	// PredicateType and Statement are an attestation's predicate type and
	// its StatementDigest, where the listing gives them.
	PredicateType string
	Statement     v1.Hash
	// Predicate is an attestation's statement.PredicateDigest, where the
	// listing gives it.
	Predicate v1.Hash

	// Read reads the entry from the registry: its payload, signature and
	// material. The store that lists it sets it; Load calls it once.
	Read func(context.Context) (*Signed, error)
	// Listed, where the listing shows all of the entry but its payload (a
	// legacy signature, whose signature and material are annotations),
	// makes it of a payload whose digest is PayloadDigest; else nil.
	Listed func(payload []byte) *Signed

	once   sync.Once
	signed *Signed
	err    error
}

// MaxPayloadBytes bounds a signature payload, envelope or bundle a store
// reads from a registry.
const MaxPayloadBytes = 16 << 20

// Load reads the entry once: its payload, signature and material. Where
// the listing shows all of it but the payload and one of known is that
// payload (its digest is PayloadDigest), nothing is fetched.
func (e *Entry) Load(ctx context.Context, known ...[]byte) (*Signed, error) {
	if e.Listed != nil {
		for _, p := range known {
			if statement.Digest(p) == e.PayloadDigest {
				return e.Listed(p), nil
			}
		}
	}
	e.once.Do(func() { e.signed, e.err = e.Read(ctx) })
	return e.signed, e.err
}
