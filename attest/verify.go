package attest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Verifier holds the public key; required.
	Verifier signature.Verifier
	// Store lists what is stored for each node; required.
	Store Store
	// Types are the predicate types (cosign names or URIs) every node must
	// carry an attestation of.
	Types []string
	// Annotations must all be in every node's signature payload.
	Annotations map[string]string
	// RequireRoot requires every signature to bind its node to this tree's
	// root with AnnotationRoot.
	RequireRoot bool
	// RekorPubs, when set, makes cosign check transparency-log entries;
	// nil skips them as cosign's --insecure-ignore-tlog does.
	RekorPubs *cosign.TrustedTransparencyLogPubKeys
	// Jobs is how many nodes are verified at once.
	Jobs int
	// Progress, if set, is called as each node is done.
	Progress func(Verdict)
}

// Check is one verified property of a node.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// Verdict is the outcome for one node.
type Verdict struct {
	Node   *walk.Node
	Checks []Check
}

// Passed reports whether every check passed.
func (v Verdict) Passed() bool {
	for _, c := range v.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// Reasons joins the reasons of the failed checks.
func (v Verdict) Reasons() string {
	var r []string
	for _, c := range v.Checks {
		if !c.OK {
			r = append(r, c.Name+": "+c.Reason)
		}
	}
	return strings.Join(r, "; ")
}

// VerifyReport holds a verdict per node, in tree order.
type VerifyReport struct {
	Verdicts []Verdict
}

// Failed counts the nodes that did not pass.
func (r *VerifyReport) Failed() int {
	n := 0
	for _, v := range r.Verdicts {
		if !v.Passed() {
			n++
		}
	}
	return n
}

// Verify checks every node of the tree in its own repository, as the store
// holds it, with cosign's verification functions: a signature by the key over the node's digest whose
// docker-reference is the node's repository and whose annotations include
// the required ones, and an attestation of each required type whose
// statement's subject is the node's digest. A node the walk could not read
// fails with the walk's error.
func Verify(ctx context.Context, tree *walk.Tree, opts VerifyOptions) (*VerifyReport, error) {
	if opts.Verifier == nil || opts.Store == nil {
		return nil, errors.New("attest: Verify needs a Verifier and a Store")
	}
	uris := make([]string, len(opts.Types))
	for i, t := range opts.Types {
		uri, err := PredicateURI(t)
		if err != nil {
			return nil, err
		}
		uris[i] = uri
	}
	want := map[string]any{}
	for k, v := range opts.Annotations {
		want[k] = v
	}
	if opts.RequireRoot {
		want[AnnotationRoot] = tree.Root.Digest().String()
	}
	v := &verifier{opts: opts, uris: uris, annotations: want, root: tree.Root.Digest().String()}
	rep := &VerifyReport{Verdicts: make([]Verdict, len(tree.Nodes))}
	forEach(len(tree.Nodes), opts.Jobs, func(i int) {
		rep.Verdicts[i] = v.node(ctx, tree.Nodes[i])
		if opts.Progress != nil {
			opts.Progress(rep.Verdicts[i])
		}
	})
	return rep, nil
}

type verifier struct {
	opts        VerifyOptions
	uris        []string
	annotations map[string]any
	root        string // the root's repository@digest
}

func (v *verifier) node(ctx context.Context, n *walk.Node) Verdict {
	switch n.Kind {
	case walk.KindInvalid:
		return Verdict{Node: n, Checks: []Check{{Name: "read", Reason: n.Err.Error()}}}
	case walk.KindMissing:
		return Verdict{Node: n, Checks: []Check{{Name: "read", OK: true, Reason: "missing from its repository (--allow-missing)"}}}
	}
	co := &cosign.CheckOpts{
		SigVerifier:  v.opts.Verifier,
		IgnoreTlog:   v.opts.RekorPubs == nil,
		RekorPubKeys: v.opts.RekorPubs,
	}
	verdict := Verdict{Node: n, Checks: []Check{v.signature(ctx, n.Digest(), co)}}
	for i, uri := range v.uris {
		verdict.Checks = append(verdict.Checks, v.attestation(ctx, n.Digest(), co, v.opts.Types[i], uri))
	}
	return verdict
}

// signature checks for a signature by the key, over the node's digest, that
// names the node's repository and carries the required annotations.
func (v *verifier) signature(ctx context.Context, ref name.Digest, co *cosign.CheckOpts) Check {
	c := Check{Name: "signature"}
	co.ClaimVerifier = cosign.SimpleClaimVerifier
	co.Annotations = nil
	sigs, err := v.verified(ctx, ref, co)
	if err != nil {
		c.Reason = "no signature by the key: " + cosignReason(err)
		return c
	}
	var others []string
	var annotated bool
	for _, sig := range sigs {
		p, err := signedPayload(sig)
		if err != nil {
			continue
		}
		if got := p.Critical.Identity.DockerReference; got != ref.Repository.Name() {
			others = append(others, got)
			continue
		}
		if hasAnnotations(p.Optional, v.annotations) {
			c.OK = true
			return c
		}
		annotated = true
	}
	switch {
	case annotated:
		c.Reason = fmt.Sprintf("signed by the key, but without the required annotations %s", formatAnnotations(v.annotations))
	default:
		c.Reason = fmt.Sprintf("signed by the key for another repository (%s), not %s: a signature copied from elsewhere", strings.Join(others, ", "), ref.Repository.Name())
	}
	return c
}

// verified lists the signatures stored for ref and returns those cosign's
// VerifyImageSignature accepts. A payload that is byte for byte one
// nestattest would sign for ref (its digest is the layer's) is not fetched:
// the digest proves it is what the registry holds.
func (v *verifier) verified(ctx context.Context, ref name.Digest, co *cosign.CheckOpts) ([]oci.Signature, error) {
	h := digestHash(ref)
	stored, err := v.opts.Store.List(ctx, ref.Repository, h, Signatures)
	if err != nil {
		return nil, err
	}
	list, err := stored.Get()
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, errors.New("no signatures found")
	}
	known := v.knownPayloads(ref)
	var ok []oci.Signature
	var last error
	for _, sig := range list {
		if d, err := sig.Digest(); err == nil && known[d] != nil {
			sig = knownPayload{storedSignature: sig, payload: known[d]}
		}
		if _, err := cosign.VerifyImageSignature(ctx, sig, h, co); err != nil {
			last = err
			continue
		}
		ok = append(ok, sig)
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("no matching signatures: %w", last)
	}
	return ok, nil
}

// knownPayloads are the payloads nestattest signs for ref with the
// required annotations, with and without the root binding, by digest.
func (v *verifier) knownPayloads(ref name.Digest) map[v1.Hash][]byte {
	out := map[v1.Hash][]byte{}
	bound := map[string]string{AnnotationRoot: v.root}
	required := map[string]string{}
	for k, val := range v.annotations {
		required[k] = fmt.Sprint(val)
		bound[k] = fmt.Sprint(val)
	}
	for _, ann := range []map[string]string{required, bound} {
		if p, err := SignaturePayload(ref, ann); err == nil {
			out[sha256Hash(p)] = p
		}
	}
	return out
}

// knownPayload is a stored signature whose payload is already known.
type knownPayload struct {
	storedSignature
	payload []byte
}

// storedSignature names oci.Signature for embedding: its own name would
// clash with its Signature method.
type storedSignature = oci.Signature

func (k knownPayload) Payload() ([]byte, error) { return k.payload, nil }

// attestation checks for an attestation by the key of predicate type uri
// whose subject is the node's digest.
func (v *verifier) attestation(ctx context.Context, ref name.Digest, co *cosign.CheckOpts, typ, uri string) Check {
	c := Check{Name: "attestation " + typ}
	co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	co.Annotations = nil
	h := digestHash(ref)
	stored, err := v.opts.Store.List(ctx, ref.Repository, h, Attestations)
	if err != nil {
		c.Reason = cosignReason(err)
		return c
	}
	atts, _, err := cosign.VerifyImageAttestation(ctx, stored, h, co)
	if err != nil {
		c.Reason = "no attestation by the key whose subject is this digest: " + cosignReason(err)
		return c
	}
	var types []string
	for _, att := range atts {
		got, err := predicateType(att)
		if err != nil {
			continue
		}
		if got == uri {
			c.OK = true
			return c
		}
		types = append(types, got)
	}
	c.Reason = fmt.Sprintf("attested by the key, but with %s, not %s", strings.Join(types, ", "), uri)
	return c
}

func signedPayload(sig oci.Signature) (*payload.SimpleContainerImage, error) {
	raw, err := sig.Payload()
	if err != nil {
		return nil, err
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func predicateType(att oci.Signature) (string, error) {
	env, err := att.Payload()
	if err != nil {
		return "", err
	}
	return envelopePredicateType(env)
}

// envelopePredicateType reads the predicate type of the in-toto statement
// a DSSE envelope carries.
func envelopePredicateType(env []byte) (string, error) {
	raw, err := envelopePayload(env)
	if err != nil {
		return "", err
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", err
	}
	return st.PredicateType, nil
}

func hasAnnotations(got, want map[string]any) bool {
	for k, v := range want {
		g, ok := got[k]
		if !ok || fmt.Sprint(g) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

func formatAnnotations(m map[string]any) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// cosignReason shortens cosign's verification errors to their message.
func cosignReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i > 0 {
		msg = msg[:i]
	}
	return registry.Redact(strings.TrimRight(msg, ": "))
}
