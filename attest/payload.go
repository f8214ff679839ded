package attest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// AnnotationRoot is the signature annotation that binds a node to the root
// of the tree it was signed in: the root's repository@digest.
const AnnotationRoot = "dev.nestattest.root"

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

// Statement returns the in-toto statement for ref whose predicate is raw, of
// a predicate type as `cosign attest --type` takes it, built by cosign's own
// generator so it is byte for byte what `cosign attest` makes. now stamps the
// cosign "custom" predicate.
func Statement(ref name.Digest, predicateType string, raw []byte, now time.Time) ([]byte, error) {
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
	return json.Marshal(st)
}

// volatile lists the statement fields that record when a statement was made
// rather than what it says: two statements equal apart from them are the
// same statement, and a re-run does not attest again.
var volatile = [][]string{
	{"predicate", "runDetails", "metadata", "startedOn"},
	{"predicate", "runDetails", "metadata", "finishedOn"},
	{"predicate", "Timestamp"}, // cosign's "custom" predicate
}

// sameStatement reports whether two in-toto statements say the same thing.
func sameStatement(a, b []byte) bool {
	na, errA := normalize(a)
	nb, errB := normalize(b)
	return errA == nil && errB == nil && bytes.Equal(na, nb)
}

// normalize re-encodes a statement without its volatile fields, with
// object keys sorted.
func normalize(raw []byte) ([]byte, error) {
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	for _, path := range volatile {
		remove(v, path)
	}
	return json.Marshal(v)
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
