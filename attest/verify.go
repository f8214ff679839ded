package attest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Policy is what every node must carry; Key or Identity is required.
	Policy Policy
	// Legacy and Bundle are the two layouts' stores; the one Layout names
	// is required.
	Legacy, Bundle Store
	// Layout forces one layout; empty reads as cosign v3 does: a node's
	// bundles when it has any, else its legacy tags.
	Layout Layout
	// Jobs is how many nodes are verified at once.
	Jobs int
	// Mirrors also checks a node where catalog mirrored it into the root's
	// repository, as sign with Mirrors signs it there; Client looks for
	// the mirrored copies.
	Mirrors bool
	// Client is the stores' registry client: told up front which
	// repositories the nodes are in (so that a token registry is asked
	// for their tokens together), and the one that looks for mirrored
	// copies; required with Mirrors.
	Client *registry.Client
	// Progress, if set, is called as each node is done.
	Progress func(Verdict)
}

// Check is one verified property of a node.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Layout is where it was checked.
	Layout Layout `json:"layout,omitempty"`
	// Mirror is the repository of the mirrored copy checked, with Mirrors;
	// empty for the node's own repository.
	Mirror string `json:"mirror,omitempty"`
	// Reason says briefly why it failed.
	Reason string `json:"reason,omitempty"`
	// Detail is the verifier's own words, when it said more.
	Detail string `json:"detail,omitempty"`
	// Err is the sentinel for the failure (ErrUnsigned, ErrUnattested, …).
	Err error `json:"-"`
}

// Verdict is the outcome for one node.
type Verdict struct {
	Node *walk.Node
	// Layouts are the layouts the node carries anything in.
	Layouts []Layout
	Checks  []Check
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

// Err joins the sentinel errors of the failed checks.
func (v Verdict) Err() error {
	var errs []error
	for _, c := range v.Checks {
		if !c.OK {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, c.Err))
		}
	}
	return errors.Join(errs...)
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

// Verify checks every node of the tree in its own repository with cosign's
// own verification: for the legacy layout cosign's VerifyImageSignature and
// VerifyImageAttestation, for bundles cosign's VerifyNewBundle (sigstore-go)
// and its subject check. A node passes with a signature the policy accepts
// over its digest, naming its repository and carrying the required
// annotations, and an attestation of each required type whose statement's
// subject is its digest. A node the walk could not read fails with the
// walk's error.
func Verify(ctx context.Context, tree *walk.Tree, opts VerifyOptions) (*VerifyReport, error) {
	return VerifyNodes(ctx, tree, tree.Nodes, opts)
}

// VerifyNodes is Verify for some nodes of a tree only.
func VerifyNodes(ctx context.Context, tree *walk.Tree, nodes []*walk.Node, opts VerifyOptions) (*VerifyReport, error) {
	v, err := newVerifier(tree, opts)
	if err != nil {
		return nil, err
	}
	if opts.Client != nil {
		opts.Client.WantRepositories(repositories(nodes, tree.Root)...)
	}
	rep := &VerifyReport{Verdicts: make([]Verdict, len(nodes))}
	pool.ForEach(len(nodes), opts.Jobs, func(i int) {
		rep.Verdicts[i] = v.node(ctx, nodes[i])
		if opts.Progress != nil {
			opts.Progress(rep.Verdicts[i])
		}
	})
	return rep, ctx.Err()
}

type verifier struct {
	*checker
	opts        VerifyOptions
	mirrors     mirrorLookup
	uris        []string
	annotations map[string]string
	root        string // the root's repository@digest
}

func newVerifier(tree *walk.Tree, opts VerifyOptions) (*verifier, error) {
	if (opts.Layout != LayoutBundle && opts.Legacy == nil) || (opts.Layout != LayoutLegacy && opts.Bundle == nil) {
		return nil, errors.New("attest: Verify needs the store of each layout it reads")
	}
	if opts.Mirrors && opts.Client == nil {
		return nil, errors.New("attest: Verify with Mirrors needs a Client")
	}
	c, err := newChecker(opts.Policy)
	if err != nil {
		return nil, err
	}
	uris := make([]string, len(opts.Policy.Types))
	for i, t := range opts.Policy.Types {
		if uris[i], err = PredicateURI(t); err != nil {
			return nil, err
		}
	}
	want := map[string]string{}
	for k, v := range opts.Policy.Annotations {
		want[k] = v
	}
	root := tree.Root.Digest().String()
	if opts.Policy.RequireRoot {
		want[AnnotationRoot] = root
	}
	return &verifier{checker: c, opts: opts, uris: uris, annotations: want, root: root}, nil
}

func (v *verifier) node(ctx context.Context, n *walk.Node) Verdict {
	switch n.Kind {
	case walk.KindInvalid:
		return Verdict{Node: n, Checks: []Check{{Name: "read", Reason: registry.RedactURLs(n.Err.Error()), Err: ErrUnreadable}}}
	case walk.KindMissing:
		return Verdict{Node: n, Checks: []Check{{Name: "read", OK: true, Reason: "missing from its repository (--allow-missing)"}}}
	}
	sub := Subject{Repository: n.Repository, Descriptor: v1.Descriptor{MediaType: n.Descriptor.MediaType, Digest: n.Descriptor.Digest, Size: n.Descriptor.Size}}
	verdict := Verdict{Node: n}
	verdict.Checks, verdict.Layouts = v.checks(ctx, sub)
	if !v.opts.Mirrors {
		return verdict
	}
	mirror, err := v.mirrors.find(ctx, v.opts.Client, n)
	switch {
	case err != nil:
		verdict.Checks = append(verdict.Checks, Check{Name: "read", Reason: registry.RedactURLs(err.Error()), Err: ErrUnreadable})
	case mirror != nil:
		sub.Repository = *mirror
		checks, _ := v.checks(ctx, sub)
		for i := range checks {
			checks[i].Name += " (mirrored copy)"
			checks[i].Mirror = mirror.Name()
		}
		verdict.Checks = append(verdict.Checks, checks...)
	}
	return verdict
}

// checks verifies sub's signature and attestations in its repository.
func (v *verifier) checks(ctx context.Context, sub Subject) ([]Check, []Layout) {
	layout, entries, layouts, err := v.read(ctx, sub)
	if err != nil {
		return []Check{{Name: "read", Reason: registry.RedactURLs(err.Error()), Err: ErrUnreadable}}, layouts
	}
	checks := []Check{v.signature(ctx, sub, layout, entries)}
	for i, uri := range v.uris {
		checks = append(checks, v.attestation(ctx, sub, layout, entries, v.opts.Policy.Types[i], uri))
	}
	return checks, layouts
}

// read lists what the subject carries and picks the layout to verify:
// the forced one, else bundles when there are any, else legacy tags.
func (v *verifier) read(ctx context.Context, sub Subject) (Layout, []*Entry, []Layout, error) {
	lists := map[Layout][]*Entry{}
	var carried []Layout
	for _, s := range []Store{v.opts.Bundle, v.opts.Legacy} {
		if s == nil || (v.opts.Layout != "" && v.opts.Layout != s.Layout()) && !v.probe(s) {
			continue
		}
		es, err := s.List(ctx, sub)
		if err != nil {
			return "", nil, nil, err
		}
		lists[s.Layout()] = es
		if len(es) > 0 {
			carried = append(carried, s.Layout())
		}
	}
	layout := v.opts.Layout
	if layout == "" {
		layout = LayoutLegacy
		if len(lists[LayoutBundle]) > 0 {
			layout = LayoutBundle
		}
	}
	return layout, lists[layout], carried, nil
}

// probe says whether a store the layout does not read is listed anyway,
// to report a node that carries both: only when both stores are given.
func (v *verifier) probe(Store) bool { return v.opts.Layout == "" }

// signature checks for a signature the policy accepts over the node's
// digest, that names the node's repository and carries the required
// annotations.
func (v *verifier) signature(ctx context.Context, sub Subject, layout Layout, entries []*Entry) Check {
	c := Check{Name: "signature", Layout: layout}
	var others []string
	var annotated, verified bool
	var last error
	want := v.wanted(sub)
	for _, e := range ofKind(entries, KindSignature) {
		s, err := v.load(ctx, sub, e)
		if err != nil {
			last = err
			continue
		}
		if s.Kind != KindSignature {
			continue
		}
		repo, ann, err := v.verifySignature(ctx, sub, s)
		if err != nil {
			last = err
			continue
		}
		verified = true
		if repo != "" && repo != sub.Repository.Name() {
			others = append(others, repo)
			continue
		}
		if hasAnnotations(ann, want) {
			c.OK = true
			return c
		}
		annotated = true
	}
	switch {
	case !verified && last == nil:
		c.Reason, c.Err = "not signed", ErrUnsigned
	case !verified:
		c.Reason, c.Detail, c.Err = "no signature the policy accepts", detail(last), ErrUnsigned
	case annotated:
		c.Reason, c.Err = "signed, but without "+formatAnnotations(want), ErrAnnotations
	default:
		c.Reason, c.Err = fmt.Sprintf("signed for another repository (%s), not %s: a signature copied from elsewhere", strings.Join(others, ", "), sub.Repository.Name()), ErrCopied
	}
	return c
}

// wanted are the annotations sub's signature must carry. The root itself
// need not name the root: its signature is over the root's digest, so it
// is bound already (Tekton Chains, which signs the root of a propagated
// tree, adds no such annotation).
func (v *verifier) wanted(sub Subject) map[string]string {
	if _, ok := v.annotations[AnnotationRoot]; !ok || sub.Digest().String() != v.root {
		return v.annotations
	}
	out := make(map[string]string, len(v.annotations))
	for k, val := range v.annotations {
		if k != AnnotationRoot {
			out[k] = val
		}
	}
	return out
}

// load reads an entry; a legacy signature whose payload is one nestattest
// signs for the subject (its digest is the layer's) is not fetched.
func (v *verifier) load(ctx context.Context, sub Subject, e *Entry) (*Signed, error) {
	if e.Kind == KindSignature && e.Signature != nil && e.Material != nil {
		if p := v.knownPayload(sub, e.PayloadDigest); p != nil {
			return &Signed{Subject: sub, Kind: KindSignature, PayloadType: PayloadSimpleSigning, Payload: p, Signature: e.Signature, Material: *e.Material}, nil
		}
	}
	return e.Load(ctx)
}

// knownPayload is the simple-signing payload nestattest signs for sub with
// the required annotations, with or without the root binding, whose digest
// is d; nil when there is none.
func (v *verifier) knownPayload(sub Subject, d v1.Hash) []byte {
	bound := map[string]string{AnnotationRoot: v.root}
	for k, val := range v.annotations {
		bound[k] = val
	}
	for _, ann := range []map[string]string{v.annotations, bound} {
		if p, err := SignaturePayload(sub.Digest(), ann); err == nil && digestOf(p) == d {
			return p
		}
	}
	return nil
}

// checker verifies one signature or attestation with cosign's own
// verification, against the trust of a policy (its key or identity, its
// trusted material, the transparency-log and timestamp rules): what Verify
// checks of every node, and what Sign checks to tell whether a node is
// signed already.
type checker struct {
	co *cosign.CheckOpts
}

func newChecker(p Policy) (*checker, error) {
	co, err := p.checkOpts()
	if err != nil {
		return nil, err
	}
	return &checker{co: co}, nil
}

// verify verifies s, a signature or an attestation of sub.
func (v *checker) verify(ctx context.Context, sub Subject, s *Signed) error {
	if s.Kind == KindSignature {
		_, _, err := v.verifySignature(ctx, sub, s)
		return err
	}
	_, err := v.verifyAttestation(ctx, sub, s)
	return err
}

// verifySignature verifies a signature with cosign and returns the
// repository it names ("" when the layout names none) and its annotations.
func (v *checker) verifySignature(ctx context.Context, sub Subject, s *Signed) (string, map[string]string, error) {
	h := sub.Descriptor.Digest
	if !s.DSSE() {
		if err := v.checkTimestamps(s.Signature, s.Material.Timestamps); err != nil {
			return "", nil, err
		}
		sig, err := legacySignature(s)
		if err != nil {
			return "", nil, err
		}
		co := *v.co
		co.ClaimVerifier = cosign.SimpleClaimVerifier
		if _, err := cosign.VerifyImageSignature(ctx, sig, h, &co); err != nil {
			return "", nil, err
		}
		var p payload.SimpleContainerImage
		if err := json.Unmarshal(s.Payload, &p); err != nil {
			return "", nil, err
		}
		return p.Critical.Identity.DockerReference, stringMap(p.Optional), nil
	}
	st, err := v.verifyBundle(ctx, sub, s)
	if err != nil {
		return "", nil, err
	}
	if st.PredicateType != PredicateCosignSign {
		return "", nil, fmt.Errorf("a %s statement, not a signature", st.PredicateType)
	}
	for _, subj := range st.Subject {
		if subj.Digest[h.Algorithm] == h.Hex {
			return subj.Name, subj.Annotations, nil
		}
	}
	return "", nil, errors.New("no subject with this digest")
}

// verifyBundle verifies a bundle with cosign's VerifyNewBundle for the
// subject's digest, checks that its statement names the digest (cosign's
// IntotoSubjectClaimVerifier), and returns the statement.
func (v *checker) verifyBundle(ctx context.Context, sub Subject, s *Signed) (*statementInfo, error) {
	if s.Bundle == nil {
		return nil, errors.New("not read from a bundle")
	}
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(s.Bundle); err != nil {
		return nil, err
	}
	h := sub.Descriptor.Digest
	digest, err := hex.DecodeString(h.Hex)
	if err != nil {
		return nil, err
	}
	if _, err := cosign.VerifyNewBundle(ctx, v.co, verify.WithArtifactDigest(h.Algorithm, digest), &b); err != nil {
		return nil, err
	}
	env, err := s.Envelope()
	if err != nil {
		return nil, err
	}
	att, err := static.NewAttestation(env)
	if err != nil {
		return nil, err
	}
	if err := cosign.IntotoSubjectClaimVerifier(att, h, nil); err != nil {
		return nil, err
	}
	return readStatement(s.Payload)
}

// attestation checks for an attestation of predicate type uri the policy
// accepts, whose statement's subject is the node's digest.
func (v *verifier) attestation(ctx context.Context, sub Subject, layout Layout, entries []*Entry, typ, uri string) Check {
	c := Check{Name: "attestation " + typ, Layout: layout}
	var types []string
	var last error
	for _, e := range ofKind(entries, KindAttestation) {
		if e.PredicateType != "" && e.PredicateType != uri {
			types = append(types, e.PredicateType)
			continue
		}
		s, err := e.Load(ctx)
		if err != nil {
			last = err
			continue
		}
		if s.Kind != KindAttestation {
			continue
		}
		got, err := v.verifyAttestation(ctx, sub, s)
		if err != nil {
			last = err
			continue
		}
		if got == uri {
			c.OK = true
			return c
		}
		types = append(types, got)
	}
	switch {
	case last != nil:
		c.Reason, c.Detail = "no "+typ+" attestation the policy accepts whose subject is this digest", detail(last)
	case len(types) > 0:
		c.Reason = fmt.Sprintf("attested with %s, not %s", strings.Join(dedupe(types), ", "), uri)
	default:
		c.Reason = "not attested"
	}
	c.Err = ErrUnattested
	return c
}

// verifyAttestation verifies an attestation with cosign and returns its
// predicate type.
func (v *checker) verifyAttestation(ctx context.Context, sub Subject, s *Signed) (string, error) {
	if s.Bundle != nil {
		st, err := v.verifyBundle(ctx, sub, s)
		if err != nil {
			return "", err
		}
		return st.PredicateType, nil
	}
	env, err := s.Envelope()
	if err != nil {
		return "", err
	}
	if err := v.checkTimestamps(env, s.Material.EnvelopeTimestamps); err != nil {
		return "", err
	}
	att, err := static.NewAttestation(env, legacyOptions(s.Material, true)...)
	if err != nil {
		return "", err
	}
	co := *v.co
	co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	if _, _, err := cosign.VerifyImageAttestation(ctx, sigList{sigs: []oci.Signature{att}}, sub.Descriptor.Digest, &co); err != nil {
		return "", err
	}
	st, err := readStatement(s.Payload)
	if err != nil {
		return "", err
	}
	return st.PredicateType, nil
}

// checkTimestamps refuses a legacy layer whose RFC 3161 timestamp does not
// verify over what it must cover, before cosign reads it: cosign v2.6.5
// panics on such a timestamp (verify.go, VerifyRFC3161Timestamp, with no
// timestamp verified and no error), in a goroutine no caller can recover.
// With UseSignedTimestamps it refuses a layer without one: cosign v2.6.5
// reads a legacy layer without a timestamp as one with nothing to check,
// where sigstore-go requires one in a bundle.
func (v *checker) checkTimestamps(covered []byte, timestamps [][]byte) error {
	if len(timestamps) == 0 && v.co.UseSignedTimestamps {
		return errors.New("no RFC 3161 timestamp, and a signed timestamp is required (--use-signed-timestamps)")
	}
	if len(timestamps) == 0 {
		return nil
	}
	if v.co.TrustedMaterial == nil {
		return errors.New("an RFC 3161 timestamp, and no trusted root to verify it")
	}
	entity, err := timestampEntity(covered, timestamps[0])
	if err != nil {
		return err
	}
	if _, err := verify.VerifySignedTimestampWithThreshold(entity, v.co.TrustedMaterial, 1); err != nil {
		return fmt.Errorf("the RFC 3161 timestamp does not verify: %w", err)
	}
	return nil
}

// timestampEntity is what sigstore-go verifies an RFC 3161 timestamp of: a
// bundle whose signature is covered, the bytes the timestamp is over, and
// whose one timestamp is ts. Nothing else of it is read.
func timestampEntity(covered, ts []byte) (*sgbundle.Bundle, error) {
	sum := sha256.Sum256(covered)
	return sgbundle.NewBundle(&protobundle.Bundle{
		MediaType: MediaTypeBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{}},
			TimestampVerificationData: &protobundle.TimestampVerificationData{
				Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts}},
			},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
			Signature:     covered,
		}},
	})
}

// legacySignature is a simple-signing signature as cosign reads it from a
// legacy layer.
func legacySignature(s *Signed) (oci.Signature, error) {
	return static.NewSignature(s.Payload, base64.StdEncoding.EncodeToString(s.Signature), legacyOptions(s.Material, false)...)
}

// legacyOptions carry a signature's material into cosign's static layer:
// the certificate chain, the Rekor v1 bundle and the RFC 3161 timestamp.
func legacyOptions(m Material, envelope bool) []static.Option {
	var opts []static.Option
	if len(m.Chain) > 0 {
		leaf, _ := cryptoutils.MarshalCertificateToPEM(m.Chain[0])
		chain, _ := cryptoutils.MarshalCertificatesToPEM(m.Chain[1:])
		opts = append(opts, static.WithCertChain(leaf, chain))
	}
	for _, e := range m.TlogEntries {
		if raw, ok := rekorBundleOf(e); ok {
			var b cbundle.RekorBundle
			if json.Unmarshal(raw, &b) == nil {
				opts = append(opts, static.WithBundle(&b))
				break
			}
		}
	}
	ts := m.Timestamps
	if envelope {
		ts = m.EnvelopeTimestamps
	}
	if len(ts) > 0 {
		opts = append(opts, static.WithRFC3161Timestamp(&cbundle.RFC3161Timestamp{SignedRFC3161Timestamp: ts[0]}))
	}
	return opts
}

// sigList is a list of signatures as cosign's verification functions take
// them; they read it with Get alone, never as an image.
type sigList struct {
	v1.Image
	sigs []oci.Signature
}

func (s sigList) Get() ([]oci.Signature, error) { return s.sigs, nil }

func ofKind(entries []*Entry, k Kind) []*Entry {
	var out []*Entry
	for _, e := range entries {
		if e.Kind == k || e.Kind == "" {
			out = append(out, e)
		}
	}
	return out
}

func hasAnnotations(got, want map[string]string) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

func stringMap(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func formatAnnotations(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// detail is the first line of a verifier's error, credentials removed.
func detail(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i > 0 {
		msg = msg[:i]
	}
	return registry.RedactURLs(strings.TrimRight(msg, ": "))
}
