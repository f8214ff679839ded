package trees

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Trust is whose signatures every node must carry, with what evidence;
	// it must pass Trust.Validate.
	Trust attest.Trust
	// Require is what else every node must show; it must pass
	// Requirements.Validate.
	Require attest.Requirements
	// Stores are the layouts read, at least one. A node is verified in the
	// first that holds anything for it, else in the last: read as cosign
	// v3 reads, a node's bundles when it has any, else its legacy tags,
	// they are Stores(LayoutBundle, LayoutLegacy).
	Stores []attest.Store
	// Jobs is how many nodes are verified at once.
	Jobs int
	// Mirrors also checks a node where catalog mirrored it into the root's
	// repository, as sign with Mirrors signs it there; Client looks for
	// the mirrored copies.
	Mirrors bool
	// Client is the one registry client of the run, required: every store
	// reads through it, it is told up front which repositories the nodes
	// are in (so that a token registry is asked for their tokens
	// together), and it looks for mirrored copies.
	Client *registry.Client
	// Progress, if set, is called as each node is done.
	Progress func(Verdict)
	// Attached finds the SBOMs a node's build attached to it (SBOMs),
	// for Require.SBOMTypes: a node with one must carry its attestation.
	// Without it, only the attestations a node carries tell that it has one.
	Attached func(ctx context.Context, n *walk.Node) ([]*Source, error)
}

// Check is one verified property of a node.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Layout is where it was checked.
	Layout attest.Layout `json:"layout,omitempty"`
	// Mirror is the repository of the mirrored copy checked, with Mirrors;
	// empty for the node's own repository.
	Mirror string `json:"mirror,omitempty"`
	// Reason says briefly why it failed.
	Reason string `json:"reason,omitempty"`
	// Detail is the verifier's own words, when it said more.
	Detail string `json:"detail,omitempty"`
	// Err is the sentinel for the failure (ErrUnsigned, ErrUnattested, …).
	Err error `json:"-"`
	// Input is the signature or attestation that passed the check, as
	// stored: what a verification summary lists among its
	// inputAttestations.
	Input *Input `json:"input,omitempty"`
}

// Input names a stored signature or attestation that a check passed with.
type Input struct {
	Where  string  `json:"where"`
	Digest v1.Hash `json:"digest"`
}

func inputOf(e *attest.Entry) *Input {
	return &Input{Where: e.Where, Digest: e.Digest}
}

// Verdict is the outcome for one node.
type Verdict struct {
	Node *walk.Node
	// Layouts are the layouts the node carries anything in.
	Layouts []attest.Layout
	Checks  []Check
	// NoSBOM says the node has no SBOM of Require.SBOMTypes: none
	// attached, none attested.
	NoSBOM bool
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

// Verify checks every node of the tree in its own repository, each
// signature and attestation verified by the store that read it with
// cosign's own verification for its layout (Store.Verify). A node passes with a signature the policy accepts
// over its digest, naming its repository and carrying the required
// annotations, and an attestation of each required type whose statement's
// subject is its digest. A node the walk could not read fails with the
// walk's error.
func Verify(ctx context.Context, tree *walk.Tree, opts VerifyOptions) (*VerifyReport, error) {
	return VerifyNodes(ctx, tree, tree.Nodes, opts)
}

// VerifyNodes is Verify for some nodes of a tree only.
func VerifyNodes(ctx context.Context, tree *walk.Tree, nodes []*walk.Node, opts VerifyOptions) (*VerifyReport, error) {
	v, err := newVerifier(tree.Root, opts)
	if err != nil {
		return nil, err
	}
	opts.Client.WantRepositories(repositories(nodes, tree.Root)...)
	// Each repository's tags are listed once, at the start: a .sig, .att
	// or referrers tag its listing lacks is missing without a request of
	// its own (registry.WithTagListings), and a tag is read once.
	ctx = registry.WithTagListings(ctx)
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		opts.Client.ReadListings(ctx, repositories(nodes, nil)...)
	}()
	defer func() { <-listed }()
	rep := &VerifyReport{Verdicts: make([]Verdict, len(nodes))}
	forEachNode(nodes, opts.Jobs, func(i int) {
		rep.Verdicts[i] = v.node(ctx, nodes[i])
		if opts.Progress != nil {
			opts.Progress(rep.Verdicts[i])
		}
	})
	return rep, ctx.Err()
}

type verifier struct {
	*attest.Verifier
	opts        VerifyOptions
	mirrors     mirrorLookup
	uris        []string
	sbomTypes   []string // Require.SBOMTypes, or both formats with RequireSBOM
	sbomURIs    []string
	annotations map[string]string
	root        string // the root's repository@digest
}

func newVerifier(root *walk.Node, opts VerifyOptions) (*verifier, error) {
	if len(opts.Stores) == 0 {
		return nil, errors.New("attest: Verify needs a Store")
	}
	if opts.Client == nil {
		return nil, errors.New("attest: Verify needs a Client")
	}
	if err := opts.Require.Validate(); err != nil {
		return nil, err
	}
	c, err := attest.NewVerifier(opts.Trust)
	if err != nil {
		return nil, err
	}
	uris := make([]string, len(opts.Require.Types))
	for i, t := range opts.Require.Types {
		if uris[i], err = statement.PredicateURI(t); err != nil {
			return nil, err
		}
	}
	sbomTypes := opts.Require.SBOMTypes
	if len(sbomTypes) == 0 && opts.Require.RequireSBOM {
		sbomTypes = []string{"spdxjson", "cyclonedx"}
	}
	sbomURIs := make([]string, len(sbomTypes))
	for i, t := range sbomTypes {
		if sbomURIs[i], err = statement.PredicateURI(t); err != nil {
			return nil, err
		}
	}
	want := map[string]string{}
	for k, v := range opts.Require.Annotations {
		want[k] = v
	}
	rootDigest := root.Digest().String()
	if opts.Require.RequireRoot {
		want[statement.AnnotationRoot] = rootDigest
	}
	return &verifier{Verifier: c, opts: opts, uris: uris, sbomTypes: sbomTypes, sbomURIs: sbomURIs, annotations: want, root: rootDigest}, nil
}

func (v *verifier) node(ctx context.Context, n *walk.Node) Verdict {
	switch n.Kind {
	case walk.KindInvalid:
		return Verdict{Node: n, Checks: []Check{{Name: "read", Reason: registry.RedactURLs(n.Err.Error()), Err: attest.ErrUnreadable}}}
	case walk.KindMissing:
		return Verdict{Node: n, Checks: []Check{{Name: "read", OK: true, Reason: "missing from its repository (--allow-missing)"}}}
	}
	sub := attest.Subject{Repository: n.Repository, Descriptor: v1.Descriptor{MediaType: n.Descriptor.MediaType, Digest: n.Descriptor.Digest, Size: n.Descriptor.Size}}
	verdict := Verdict{Node: n}
	attached, err := v.attached(ctx, n)
	if err != nil {
		verdict.Checks = []Check{{Name: "read", Reason: registry.RedactURLs(err.Error()), Err: attest.ErrUnreadable}}
		return verdict
	}
	var has bool
	verdict.Checks, verdict.Layouts, has = v.checks(ctx, n, sub, attached)
	verdict.NoSBOM = len(v.sbomURIs) > 0 && !has
	if !v.opts.Mirrors {
		return verdict
	}
	mirror, err := v.mirrors.find(ctx, v.opts.Client, n)
	switch {
	case err != nil:
		verdict.Checks = append(verdict.Checks, Check{Name: "read", Reason: registry.RedactURLs(err.Error()), Err: attest.ErrUnreadable})
	case mirror != nil:
		sub.Repository = *mirror
		checks, _, _ := v.checks(ctx, n, sub, attached)
		for i := range checks {
			checks[i].Name += " (mirrored copy)"
			checks[i].Mirror = mirror.Name()
		}
		verdict.Checks = append(verdict.Checks, checks...)
	}
	return verdict
}

// checks verifies sub's signature and attestations in its repository, n's
// SBOM attestations where it has SBOMs (attached the ones its build
// attached); hasSBOM says it has an SBOM of a type checked, attested or
// not.
func (v *verifier) checks(ctx context.Context, n *walk.Node, sub attest.Subject, attached []*Source) (checks []Check, layouts []attest.Layout, hasSBOM bool) {
	store, entries, layouts, err := v.read(ctx, sub)
	if err != nil {
		return []Check{{Name: "read", Reason: registry.RedactURLs(err.Error()), Err: attest.ErrUnreadable}}, layouts, false
	}
	checks = []Check{v.signature(ctx, sub, store, entries)}
	for i, uri := range v.uris {
		c, _ := v.attestation(ctx, sub, store, entries, v.opts.Require.Types[i], uri)
		checks = append(checks, c)
	}
	sboms := 0
	for i, uri := range v.sbomURIs {
		c := v.sbom(ctx, sub, store, entries, attached, v.sbomTypes[i], uri)
		if c.OK && c.Detail == "" {
			sboms++
		}
		hasSBOM = hasSBOM || c.Detail != noSBOM
		checks = append(checks, c)
	}
	if v.opts.Require.RequireSBOM {
		checks = append(checks, requireSBOM(n, sboms, v.sbomTypes))
	}
	return checks, layouts, hasSBOM
}

// attached is what VerifyOptions.Attached finds on n, when SBOMs are
// checked.
func (v *verifier) attached(ctx context.Context, n *walk.Node) ([]*Source, error) {
	if len(v.sbomURIs) == 0 || v.opts.Attached == nil {
		return nil, nil
	}
	return v.opts.Attached(ctx, n)
}

// noSBOM is the Detail of an SBOM check that passed on a node with no
// SBOM of its type.
const noSBOM = "no SBOM of this type attached or attested"

// sbom checks an SBOM type on a node that has an SBOM of it (attached by
// its build, or attested): a verified attestation of the type must name
// its digest. A node with none passes, saying so in Detail.
func (v *verifier) sbom(ctx context.Context, sub attest.Subject, store attest.Store, entries []*attest.Entry, attached []*Source, typ, uri string) Check {
	c, claimed := v.attestation(ctx, sub, store, entries, typ, uri)
	if c.OK {
		return c
	}
	var where []string
	for _, s := range attached {
		if s.PredicateType == uri {
			where = append(where, s.Where)
		}
	}
	switch {
	case len(where) > 0:
		c.Reason = fmt.Sprintf("its build attached an SBOM (%s), but %s", strings.Join(where, ", "), c.Reason)
	case !claimed:
		return Check{Name: c.Name, OK: true, Layout: c.Layout, Detail: noSBOM}
	}
	return c
}

// requireSBOM fails an image with no SBOM attested; an index is exempt:
// it holds no software of its own, its children do, and each of them must
// carry its own.
func requireSBOM(n *walk.Node, sboms int, types []string) Check {
	c := Check{Name: "sbom", OK: true}
	switch {
	case sboms > 0:
	case n.Descriptor.MediaType.IsIndex():
		c.Detail = "an index: exempt, its images carry their SBOMs"
	default:
		c.OK, c.Reason, c.Err = false, "no "+strings.Join(types, " or ")+" SBOM attested (--require-sbom)", attest.ErrUnattested
	}
	return c
}

// read lists what the subject carries in every store and picks the store
// to verify in: the first that holds anything, else the last. It returns
// the layouts that hold anything too.
func (v *verifier) read(ctx context.Context, sub attest.Subject) (attest.Store, []*attest.Entry, []attest.Layout, error) {
	var (
		store   attest.Store
		entries []*attest.Entry
		carried []attest.Layout
	)
	for _, s := range v.opts.Stores {
		es, err := s.List(ctx, v.opts.Client, sub)
		if err != nil {
			return nil, nil, nil, err
		}
		if len(es) == 0 {
			continue
		}
		carried = append(carried, s.Layout())
		if store == nil {
			store, entries = s, es
		}
	}
	if store == nil {
		store = v.opts.Stores[len(v.opts.Stores)-1]
	}
	return store, entries, carried, nil
}

// signature checks for a signature the policy accepts over the node's
// digest, that names the node's repository and carries the required
// annotations.
func (v *verifier) signature(ctx context.Context, sub attest.Subject, store attest.Store, entries []*attest.Entry) Check {
	c := Check{Name: "signature", Layout: store.Layout()}
	var others []string
	var annotated, verified bool
	var last error
	want := v.wanted(sub)
	known := v.knownPayloads(store, sub)
	for _, e := range ofKind(entries, attest.KindSignature) {
		s, err := e.Load(ctx, known...)
		if err != nil {
			last = err
			continue
		}
		if s.Kind != attest.KindSignature {
			continue
		}
		claim, err := v.Verify(ctx, store, sub, s)
		if err != nil {
			last = err
			continue
		}
		verified = true
		if repo := claim.Repository; repo != "" && repo != sub.Repository.Name() {
			others = append(others, repo)
			continue
		}
		if hasAnnotations(claim.Annotations, want) {
			c.OK, c.Input = true, inputOf(e)
			return c
		}
		annotated = true
	}
	switch {
	case !verified && last == nil:
		c.Reason, c.Err = "not signed", attest.ErrUnsigned
	case !verified:
		c.Reason, c.Detail, c.Err = "no signature the policy accepts", detail(last), attest.ErrUnsigned
	case annotated:
		c.Reason, c.Err = "signed, but without "+formatAnnotations(want), attest.ErrAnnotations
	default:
		c.Reason, c.Err = fmt.Sprintf("signed for another repository (%s), not %s: a signature copied from elsewhere", strings.Join(others, ", "), sub.Repository.Name()), attest.ErrCopied
	}
	return c
}

// wanted are the annotations sub's signature must carry. The root itself
// need not name the root: its signature is over the root's digest, so it
// is bound already (Tekton Chains, which signs the root of a propagated
// tree, adds no such annotation).
func (v *verifier) wanted(sub attest.Subject) map[string]string {
	if _, ok := v.annotations[statement.AnnotationRoot]; !ok || sub.Digest().String() != v.root {
		return v.annotations
	}
	out := make(map[string]string, len(v.annotations))
	for k, val := range v.annotations {
		if k != statement.AnnotationRoot {
			out[k] = val
		}
	}
	return out
}

// knownPayloads are the signature payloads nestattest signs for sub in
// store with the required annotations, with and without the root binding:
// an entry whose listing shows one of them need not be fetched
// (Entry.Load).
func (v *verifier) knownPayloads(store attest.Store, sub attest.Subject) [][]byte {
	bound := map[string]string{statement.AnnotationRoot: v.root}
	for k, val := range v.annotations {
		bound[k] = val
	}
	var known [][]byte
	for _, ann := range []map[string]string{v.annotations, bound} {
		if _, p, err := store.SignaturePayload(sub, ann); err == nil {
			known = append(known, p)
		}
	}
	return known
}

// attestation checks for an attestation of predicate type uri the policy
// accepts, whose statement's subject is the node's digest. claimed says
// the node carries one of that type, listed so or verified, that passed
// or not.
func (v *verifier) attestation(ctx context.Context, sub attest.Subject, store attest.Store, entries []*attest.Entry, typ, uri string) (c Check, claimed bool) {
	c = Check{Name: "attestation " + typ, Layout: store.Layout()}
	var types []string
	var last error
	for _, e := range ofKind(entries, attest.KindAttestation) {
		if e.PredicateType != "" && e.PredicateType != uri {
			types = append(types, e.PredicateType)
			continue
		}
		claimed = claimed || e.PredicateType == uri
		s, err := e.Load(ctx)
		if err != nil {
			last = err
			continue
		}
		if s.Kind != attest.KindAttestation {
			continue
		}
		claim, err := v.Verify(ctx, store, sub, s)
		if err != nil {
			last = err
			continue
		}
		if claim.PredicateType == uri {
			c.OK, c.Input = true, inputOf(e)
			return c, true
		}
		types = append(types, claim.PredicateType)
	}
	switch {
	case last != nil:
		c.Reason, c.Detail = "no "+typ+" attestation the policy accepts whose subject is this digest", detail(last)
	case len(types) > 0:
		c.Reason = fmt.Sprintf("attested with %s, not %s", strings.Join(dedupe(types), ", "), uri)
	default:
		c.Reason = "not attested"
	}
	c.Err = attest.ErrUnattested
	return c, claimed
}

func ofKind(entries []*attest.Entry, k attest.Kind) []*attest.Entry {
	var out []*attest.Entry
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
