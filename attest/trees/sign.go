package trees

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/catalog"
	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// Options configure Sign.
type Options struct {
	// Signer signs every payload; required.
	Signer attest.Signer
	// Witnesses add evidence to each signed payload before it is stored:
	// a transparency-log entry, a timestamp.
	Witnesses []attest.Witness
	// TrustedMaterial returns what verifies the evidence a node carries
	// already (the transparency logs and timestamp authorities of the
	// Witnesses), in place of the Signer's own (a keyless signer's
	// certificate authorities; a key has none). It is asked once, when a
	// node first carries a payload this run would write; required with
	// Witnesses unless the Signer's Trust holds trusted material.
	TrustedMaterial func() (root.TrustedMaterial, error)
	// Stores are the layouts written, each in full; at least one.
	Stores []attest.Store
	// Client is the one registry client of the run, required, handed to
	// it once, as go-containerregistry's remote.Reuse hands a Pusher:
	// every store reads and writes through it, so its journal holds every
	// tag the run updated and its Settle, the final confirmation, covers
	// them all. It looks for mirrored copies too.
	Client *registry.Client
	// Predicates give each node's attestation; nil means Provenance{}.
	Predicates statement.Predicates
	// Propagate, when set, gives each node instead one attestation per
	// source: the source's predicate, byte for byte, with the node as
	// subject (propagate).
	Propagate []*Source
	// Attached, when set, finds what each node's build attached to it to
	// be attested as well (its SBOMs: see package sbom), each source's
	// predicate byte for byte with the node as subject, beside the run's
	// predicate. Such a statement names its node alone, whatever
	// Statements says: a document about one manifest is a statement about
	// that manifest only. NodeResult.Attached reports what it found.
	Attached func(ctx context.Context, n *walk.Node) ([]*Source, error)
	// AttestOnly writes the attestations alone, no signature: a
	// verification summary of nodes signed already (verify --vsa-key).
	AttestOnly bool
	// Annotations go into every signature payload, like `cosign sign -a`.
	Annotations map[string]string
	// BindRoot adds AnnotationRoot, the root's repository@digest, to every
	// signature payload.
	BindRoot bool
	// Mirrors also signs and attests a node where catalog mirrored it (in
	// the root's repository, catalog.MirrorRepository), when it is there.
	Mirrors bool
	// Jobs is how many nodes are signed at once; walk.DefaultJobs when zero.
	Jobs int
	// Settle is the wait before the final confirmation that no other writer
	// overwrote the tags the run updated; registry.Client.SettleDelay when
	// zero; no confirmation when negative.
	Settle time.Duration
	// Progress, if set, is called as each node is done, from any goroutine.
	Progress func(NodeResult)
	// Now stamps cosign's custom predicates; time.Now when nil.
	Now func() time.Time
	// Statements says what one signed statement covers: a node
	// (StatementsNode, the default when empty) or up to MaxSubjects nodes
	// (StatementsTree).
	Statements Statements
	// MaxSubjects bounds the subjects of a tree statement;
	// statement.MaxSubjects when zero or more.
	MaxSubjects int
}

// Sign signs and attests every node of the tree in its own repository, in
// every store. A node that fails does not stop the others: the report holds
// every result, and the error joins the failures. Once every node is done,
// the tags the run updated are read again and what another writer
// overwrote is written anew. When ctx is cancelled, nodes not yet started
// are left pending; so are they when a node finds a shared service
// unreachable (Report.Unreachable): nodes under way finish, no more start,
// and no node is left half-written.
func Sign(ctx context.Context, tree *walk.Tree, opts Options) (*Report, error) {
	r, err := newRun(tree, opts)
	if err != nil {
		return nil, err
	}
	return r.sign(ctx, tree.Nodes)
}

// SignNodes is Sign for some nodes of a tree only, such as a shard of a
// plan.
func SignNodes(ctx context.Context, tree *walk.Tree, nodes []*walk.Node, opts Options) (*Report, error) {
	r, err := newRun(tree, opts)
	if err != nil {
		return nil, err
	}
	return r.sign(ctx, nodes)
}

func (r *run) sign(ctx context.Context, nodes []*walk.Node) (*Report, error) {
	// What the run finds missing it writes, and Settle confirms: a tag its
	// repository's listing lacks need not be read.
	ctx = registry.WithTagListings(ctx)
	r.opts.Client.WantRepositories(repositories(nodes, r.root)...)
	prepared := make(chan struct{})
	go func() {
		defer close(prepared)
		r.prepare(ctx, nodes)
	}()
	defer func() { <-prepared }()
	if r.opts.Statements == StatementsTree {
		return r.signTree(ctx, nodes)
	}
	rep := &Report{Results: make([]NodeResult, len(nodes))}
	var unreachable atomic.Pointer[attest.UnreachableError]
	forEachNode(nodes, r.opts.Jobs, func(i int) {
		if ctx.Err() != nil || unreachable.Load() != nil {
			rep.Results[i] = NodeResult{Node: nodes[i], pending: true}
			return
		}
		rep.Results[i] = r.node(ctx, nodes[i])
		var u *attest.UnreachableError
		if errors.As(rep.Results[i].Err, &u) {
			unreachable.CompareAndSwap(nil, u)
		}
		if r.opts.Progress != nil {
			r.opts.Progress(rep.Results[i])
		}
	})
	return r.finish(ctx, rep, unreachable.Load())
}

// prepare reads, all at once and beside the nodes, what they would
// otherwise wait for one after another as they reach it: the tag listing
// of every repository, and, with Mirrors, whether each child of the root
// is mirrored (and if one is, the listing of the root's repository). (The nodes are in tree order, so a run's workers all reach
// a repository's first node at about the same time.)
func (r *run) prepare(ctx context.Context, nodes []*walk.Node) {
	var wg sync.WaitGroup
	wg.Go(func() { r.opts.Client.ReadListings(ctx, repositories(nodes, nil)...) })
	if r.opts.Mirrors {
		seen := map[*walk.Node]bool{}
		var tops []*walk.Node
		for _, n := range nodes {
			if _, ok := catalog.MirrorRepository(n); ok && !seen[topChild(n)] {
				seen[topChild(n)] = true
				tops = append(tops, topChild(n))
			}
		}
		wg.Go(func() {
			var mirrored atomic.Bool
			pool.ForEach(len(tops), r.opts.Jobs, func(i int) {
				// A failure is the nodes' to report.
				if repo, _ := r.mirrors.find(ctx, r.opts.Client, tops[i]); repo != nil {
					mirrored.Store(true)
				}
			})
			if mirrored.Load() { // the copies' tags are in the root's repository
				r.opts.Client.ReadListings(ctx, r.root.Repository)
			}
		})
	}
	wg.Wait()
}

// finish ends a run whose nodes are done: interrupted, stopped by an
// unreachable service u, or confirmed (Settle).
func (r *run) finish(ctx context.Context, rep *Report, u *attest.UnreachableError) (*Report, error) {
	rep.Signatures = int(r.signatures.Load())
	if ctx.Err() != nil {
		rep.Interrupted = true
		return rep, ctx.Err()
	}
	if u != nil {
		rep.Unreachable = u
		return rep, u
	}
	if r.opts.Settle >= 0 {
		delay := r.opts.Settle
		if delay == 0 {
			delay = r.opts.Client.SettleDelay()
		}
		lost, err := r.opts.Client.Settle(ctx, delay)
		rep.Restored = lost
		if err != nil {
			rep.SettleErr = err
		}
	}
	return rep, rep.err()
}

// run holds what every node of a Sign call shares.
type run struct {
	opts        Options
	root        *walk.Node
	annotations map[string]string
	uri         string // the predicate type URI
	mirrors     mirrorLookup
	signed      flights // signature payloads checked or written, per layout and repository
	checkers    onceMap[attest.Layout, *attest.Verifier]
	keeps       attest.Keeps // what any of the stores keeps
	signatures  atomic.Int32 // the Signer's signatures made
}

func newRun(tree *walk.Tree, opts Options) (*run, error) {
	if opts.Signer == nil || len(opts.Stores) == 0 || opts.Client == nil {
		return nil, errors.New("attest: Sign needs a Signer, a Store and a Client")
	}
	if opts.Predicates == nil {
		opts.Predicates = statement.Provenance{}
	}
	switch opts.Statements {
	case "":
		opts.Statements = StatementsNode
	case StatementsNode, StatementsTree:
	default:
		return nil, fmt.Errorf("attest: statements %q: want %s or %s", opts.Statements, StatementsNode, StatementsTree)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	uri, err := statement.PredicateURI(opts.Predicates.Type())
	if err != nil {
		return nil, err
	}
	// A predicate cosign's generator refuses fails every node alike: find
	// out before anything is written.
	pred, err := opts.Predicates.For(tree.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", attest.ErrPredicate, err)
	}
	if _, err := statement.Statement(tree.Root.Digest(), opts.Predicates.Type(), pred, opts.Now()); err != nil {
		return nil, err
	}
	ann := make(map[string]string, len(opts.Annotations)+1)
	for k, v := range opts.Annotations {
		ann[k] = v
	}
	if opts.BindRoot {
		ann[statement.AnnotationRoot] = tree.Root.Digest().String()
	}
	var keeps attest.Keeps
	for _, s := range opts.Stores {
		k := s.Keeps()
		keeps.TlogVersions = append(keeps.TlogVersions, k.TlogVersions...)
		keeps.EnvelopeTimestamps = keeps.EnvelopeTimestamps || k.EnvelopeTimestamps
	}
	return &run{opts: opts, root: tree.Root, annotations: ann, uri: uri, keeps: keeps}, nil
}

// repositories are the repositories of nodes, and the root's (where
// mirrored copies stand) unless root is nil, each once.
func repositories(nodes []*walk.Node, root *walk.Node) []name.Repository {
	seen := map[string]bool{}
	var out []name.Repository
	if root != nil {
		nodes = append([]*walk.Node{root}, nodes...)
	}
	for _, n := range nodes {
		if !seen[n.Repository.Name()] {
			seen[n.Repository.Name()] = true
			out = append(out, n.Repository)
		}
	}
	return out
}
