package statement

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// ErrPredicate: the predicate or its type is not usable.
var ErrPredicate = errors.New("invalid predicate")

// Annotations nestattest writes.
const (
	// AnnotationRoot binds a node's signature to the root of the tree it was
	// signed in: the root's repository@digest.
	AnnotationRoot = "dev.nestattest.root"
	// AnnotationStatement, on a stored attestation, is the digest of its
	// statement without the fields that only say when it was made, so a
	// re-run finds its own attestation without reading every stored one.
	AnnotationStatement = "dev.nestattest.statement"
	// AnnotationPredicate, on a stored attestation, is its PredicateDigest:
	// what it says apart from whom it says it of, so a re-run finds a tree
	// statement that covers a node without reading every stored one.
	AnnotationPredicate = "dev.nestattest.predicate"
)

// MaxSubjects is the most subjects one statement names here: sigstore-go
// refuses a statement with more (limitSubjects in pkg/verify/signature.go,
// which cosign v3's bundle verification runs), so a larger tree is split.
const MaxSubjects = 1024

// Statement types and the predicate type of a signature in the bundle
// layout.
const (
	StatementV1 = "https://in-toto.io/Statement/v1"
	// PredicateCosignSign is the predicate type cosign v3 (and cosign v2
	// with --new-bundle-format) signs an image with: an in-toto statement
	// whose subject is the image, with an empty predicate.
	PredicateCosignSign = "https://sigstore.dev/cosign/sign/v1"
)

// SignaturePayload returns cosign's simple-signing payload for ref: its
// docker-reference is ref's repository, its docker-manifest-digest ref's
// digest, and annotations go into "optional", as `cosign sign -a` puts them.
// The same inputs give the same bytes.
func SignaturePayload(ref name.Digest, annotations map[string]string) ([]byte, error) {
	var optional map[string]any
	if len(annotations) > 0 {
		optional = make(map[string]any, len(annotations))
		for k, v := range annotations {
			optional[k] = v
		}
	}
	return payload.Cosign{Image: ref, Annotations: optional}.MarshalJSON()
}

// Subject is an in-toto resource descriptor, as a statement names its
// subjects.
type Subject struct {
	Name        string            `json:"name,omitempty"`
	Digest      map[string]string `json:"digest"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// statement is an in-toto Statement v1.
type statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

func subjectOf(ref name.Digest, annotations map[string]string) (Subject, error) {
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return Subject{}, err
	}
	return Subject{Name: ref.Repository.Name(), Digest: map[string]string{h.Algorithm: h.Hex}, Annotations: annotations}, nil
}

// SignStatement returns what a signature signs in the bundle layout, as
// cosign v3 makes it: an in-toto Statement v1 of PredicateCosignSign whose
// subject is ref's digest, carrying the annotations (cosign sign -a), and
// named by ref's repository. The same inputs give the same bytes.
func SignStatement(ref name.Digest, annotations map[string]string) ([]byte, error) {
	return SignStatementOf([]name.Digest{ref}, annotations)
}

// SignStatementOf is SignStatement for several manifests at once, one
// subject each, every subject carrying the annotations: one signature that
// signs them all (sign --statements tree).
func SignStatementOf(refs []name.Digest, annotations map[string]string) ([]byte, error) {
	subs, err := subjectsOf(refs, annotations)
	if err != nil {
		return nil, err
	}
	return json.Marshal(statement{Type: StatementV1, Subject: subs, PredicateType: PredicateCosignSign, Predicate: json.RawMessage(`{}`)})
}

// subjectsOf are the subjects of refs, in order, at most MaxSubjects.
func subjectsOf(refs []name.Digest, annotations map[string]string) ([]Subject, error) {
	if len(refs) == 0 || len(refs) > MaxSubjects {
		return nil, fmt.Errorf("a statement names 1 to %d subjects, not %d", MaxSubjects, len(refs))
	}
	out := make([]Subject, len(refs))
	for i, ref := range refs {
		s, err := subjectOf(ref, annotations)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// Statement returns the in-toto Statement v1 for ref whose predicate is raw,
// of a predicate type as `cosign attest --type` takes it. The predicate is
// shaped by cosign's own generator (cosign's "custom" type wraps it and
// stamps it with now); the subject is ref's digest, named by its repository.
func Statement(ref name.Digest, predicateType string, raw []byte, now time.Time) ([]byte, error) {
	return StatementOf([]name.Digest{ref}, predicateType, raw, now)
}

// StatementOf is Statement for several manifests at once, one subject
// each: one attestation of them all (sign --statements tree).
func StatementOf(refs []name.Digest, predicateType string, raw []byte, now time.Time) ([]byte, error) {
	subs, err := subjectsOf(refs, nil)
	if err != nil {
		return nil, err
	}
	ref := refs[0]
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return nil, err
	}
	st, err := attestation.GenerateStatement(attestation.GenerateOpts{
		Predicate: bytes.NewReader(raw),
		Type:      predicateType,
		Digest:    h.Hex,
		Repo:      ref.Repository.String(),
		Time:      func() time.Time { return now },
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s predicate: %v", ErrPredicate, predicateType, err)
	}
	generated, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	var parts struct {
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(generated, &parts); err != nil {
		return nil, err
	}
	return json.Marshal(statement{Type: StatementV1, Subject: subs, PredicateType: parts.PredicateType, Predicate: parts.Predicate})
}

// PropagatedStatement returns the in-toto Statement v1 for ref with the
// predicate exactly as given, byte for byte: the statement is written out
// by hand around it, where a JSON encoder would compact it.
func PropagatedStatement(ref name.Digest, predicateType string, predicate json.RawMessage) ([]byte, error) {
	return PropagatedStatementOf([]name.Digest{ref}, predicateType, predicate)
}

// PropagatedStatementOf is PropagatedStatement for several manifests at
// once, one subject each.
func PropagatedStatementOf(refs []name.Digest, predicateType string, predicate json.RawMessage) ([]byte, error) {
	subs, err := subjectsOf(refs, nil)
	if err != nil {
		return nil, err
	}
	if !json.Valid(predicate) {
		return nil, fmt.Errorf("%w: the predicate is not JSON", ErrPredicate)
	}
	head, err := json.Marshal(struct {
		Type          string    `json:"_type"`
		Subject       []Subject `json:"subject"`
		PredicateType string    `json:"predicateType"`
	}{StatementV1, subs, predicateType})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(head)+len(predicate)+16)
	out = append(out, head[:len(head)-1]...)
	out = append(out, `,"predicate":`...)
	out = append(out, predicate...)
	return append(out, '}'), nil
}

// volatile lists the statement fields that record when a statement was made
// rather than what it says: two statements equal apart from them are the
// same statement, and a re-run does not attest again.
var volatile = [][]string{
	{"predicate", "runDetails", "metadata", "startedOn"},
	{"predicate", "runDetails", "metadata", "finishedOn"},
	{"predicate", "Timestamp"},    // cosign's "custom" predicate
	{"predicate", "timeVerified"}, // a verification summary (verify --vsa-key)
}

// StatementDigest is the digest of a statement without its volatile
// fields, object keys sorted: equal for statements that say the same.
func StatementDigest(raw []byte) (v1.Hash, error) {
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return v1.Hash{}, err
	}
	for _, path := range volatile {
		remove(v, path)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Hash{}, err
	}
	return Digest(b), nil
}

// Annotate adds to ann what a store keeps beside a stored statement so
// that a re-run recognises it from a listing: AnnotationStatement and
// AnnotationPredicate.
func Annotate(ann map[string]string, raw []byte) {
	if h, err := StatementDigest(raw); err == nil {
		ann[AnnotationStatement] = h.String()
	}
	if h, err := PredicateDigest(raw); err == nil {
		ann[AnnotationPredicate] = h.String()
	}
}

// Annotated reads back what Annotate added: zero hashes where absent.
func Annotated(ann map[string]string) (stmt, pred v1.Hash) {
	stmt, _ = v1.NewHash(ann[AnnotationStatement])
	pred, _ = v1.NewHash(ann[AnnotationPredicate])
	return stmt, pred
}

// perNode lists what a statement for one node says that a tree statement
// says by its subjects: the node's path below the root, which the
// subject's name gives.
var perNode = [][]string{
	{"predicate", "buildDefinition", "internalParameters", "tree", "path"},
}

// PredicateDigest is StatementDigest without the subjects and what
// perNode lists: equal for statements that say the same of whichever
// subjects, as a tree statement and a re-run's statement for one of its
// nodes do, and a statement a node of --statements node and the tree
// statement that would cover it.
func PredicateDigest(raw []byte) (v1.Hash, error) {
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return v1.Hash{}, err
	}
	for _, path := range slices.Concat(volatile, perNode) {
		remove(v, path)
	}
	delete(v, "subject")
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Hash{}, err
	}
	return Digest(b), nil
}

func remove(v map[string]any, path []string) {
	for _, k := range path[:len(path)-1] {
		next, ok := v[k].(map[string]any)
		if !ok {
			return
		}
		v = next
	}
	delete(v, path[len(path)-1])
}

// Info is what a check needs of an in-toto statement.
type Info struct {
	PredicateType string    `json:"predicateType"`
	Subject       []Subject `json:"subject"`
}

// Read reads what a check needs of an in-toto statement.
func Read(raw []byte) (*Info, error) {
	var s Info
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Names reports whether the statement names digest d among its subjects.
func (s *Info) Names(d v1.Hash) bool {
	for _, subj := range s.Subject {
		if subj.Digest[d.Algorithm] == d.Hex {
			return true
		}
	}
	return false
}

// Digest returns the sha256 digest of b.
func Digest(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
