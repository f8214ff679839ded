package trees

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/walk"
)

// AnnotationSource, on a signature propagate writes, names the source
// attestations (their statements' digests, comma-separated) whose
// provenance the node's attestations carry.
const AnnotationSource = "dev.nestattest.source"

// ErrForeignSubject: a source attestation verifies, but names other
// subjects than the root.
var ErrForeignSubject = errors.New("provenance for another subject")

// Source is a predicate attested as it is, byte for byte: provenance a
// trusted builder (Tekton Chains) made for a tree's root, verified, which
// propagate gives every node unchanged; or a document a node's build
// attached to it (its SBOM: SBOMs), which sign --sbom attached attests
// for that node.
type Source struct {
	// PredicateType and Predicate are the attestation's; the predicate
	// byte for byte as it was signed, or attached.
	PredicateType string
	Predicate     json.RawMessage
	// Statement is the in-toto statement as it was signed (propagate).
	Statement []byte
	// Digest is the statement's sha256 digest (propagate), or the
	// attached document's.
	Digest v1.Hash
	// Where names the stored attestation, or the attached document, it was
	// read from.
	Where string
}

// SourceAnnotation is the AnnotationSource value for sources.
func SourceAnnotation(sources []*Source) string {
	ds := make([]string, len(sources))
	for i, s := range sources {
		ds[i] = s.Digest.String()
	}
	sort.Strings(ds)
	return strings.Join(ds, ",")
}

// ReadSources verifies the root as a consumer of the builder's provenance
// would: a signature the trust accepts, and attestations of the first of
// types (cosign names or URIs) that it carries any of, verified, whose
// statements name the root's digest among their subjects. It returns each
// such attestation, once per statement. opts.Require.Types is not used.
func ReadSources(ctx context.Context, root attest.Subject, opts VerifyOptions, types []string) ([]*Source, error) {
	node := &walk.Node{Repository: root.Repository, Descriptor: root.Descriptor, Index: -1}
	opts.Require.Types = nil
	v, err := newVerifier(node, opts)
	if err != nil {
		return nil, err
	}
	store, entries, _, err := v.read(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", attest.ErrUnreadable, root.Digest(), err)
	}
	if c := v.signature(ctx, root, store, entries); !c.OK {
		return nil, fmt.Errorf("%w: %s: %s %s", c.Err, root.Digest(), c.Reason, c.Detail)
	}
	var foreign []string
	for _, typ := range types {
		uri, err := statement.PredicateURI(typ)
		if err != nil {
			return nil, err
		}
		sources, others, err := v.sources(ctx, root, store, entries, uri)
		if err != nil {
			return nil, err
		}
		foreign = append(foreign, others...)
		if len(sources) > 0 {
			return sources, nil
		}
	}
	if len(foreign) > 0 {
		return nil, fmt.Errorf("%w: %s: its %s provenance names %s, not this digest", ErrForeignSubject, root.Digest(), strings.Join(types, " or "), strings.Join(dedupe(foreign), ", "))
	}
	return nil, fmt.Errorf("%w: %s has no %s attestation the policy accepts", attest.ErrUnattested, root.Digest(), strings.Join(types, " or "))
}

// sources are the verified attestations of type uri naming root; others
// are the subjects of those naming anything else.
func (v *verifier) sources(ctx context.Context, root attest.Subject, store attest.Store, entries []*attest.Entry, uri string) (sources []*Source, others []string, err error) {
	seen := map[v1.Hash]bool{}
	for _, e := range ofKind(entries, attest.KindAttestation) {
		if e.PredicateType != "" && e.PredicateType != uri {
			continue
		}
		s, err := e.Load(ctx)
		if err != nil || s.Kind != attest.KindAttestation {
			continue
		}
		st, err := statement.Read(s.Payload)
		if err != nil || st.PredicateType != uri {
			continue
		}
		if !namesDigest(st, root.Descriptor.Digest) {
			for _, sub := range st.Subject {
				for alg, hex := range sub.Digest {
					others = append(others, alg+":"+hex)
				}
			}
			continue
		}
		if _, err := v.Verify(ctx, store, root, s); err != nil {
			continue
		}
		d := statement.Digest(s.Payload)
		if seen[d] {
			continue
		}
		seen[d] = true
		var parts struct {
			Predicate json.RawMessage `json:"predicate"`
		}
		if err := json.Unmarshal(s.Payload, &parts); err != nil || len(parts.Predicate) == 0 {
			continue
		}
		sources = append(sources, &Source{PredicateType: uri, Predicate: parts.Predicate, Statement: s.Payload, Digest: d, Where: e.Where})
	}
	return sources, others, nil
}

func namesDigest(st *statement.Info, d v1.Hash) bool {
	for _, sub := range st.Subject {
		if sub.Digest[d.Algorithm] == d.Hex {
			return true
		}
	}
	return false
}
