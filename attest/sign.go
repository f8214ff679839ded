package attest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// Options configure Sign.
type Options struct {
	// Signer signs every payload; required.
	Signer Signer
	// Store holds signatures and attestations; required.
	Store Store
	// Predicates give each node's attestation; nil means Provenance{}.
	Predicates Predicates
	// Annotations go into every signature payload, like `cosign sign -a`.
	Annotations map[string]string
	// BindRoot adds AnnotationRoot, the root's repository@digest, to every
	// signature payload.
	BindRoot bool
	// Mirrors, with Client, also signs and attests a node in the root's
	// repository where its manifest stands there too (mirrored by catalog).
	Mirrors bool
	// Client reaches registries for the mirror check.
	Client *registry.Client
	// Jobs is how many nodes are signed at once; walk.DefaultJobs when zero.
	Jobs int
	// Progress, if set, is called as each node is done, from any goroutine.
	Progress func(NodeResult)
	// Now stamps cosign's custom predicates; time.Now when nil.
	Now func() time.Time
}

// Outcome is what happened to one signature or attestation of a node.
type Outcome string

// The outcomes.
const (
	Written Outcome = "written" // written by this run
	Present Outcome = "present" // already there from this key: nothing written
	Failed  Outcome = "failed"
)

// Placement is what a node holds in one repository: its own, or the root's
// where it was mirrored.
type Placement struct {
	Repository  string  `json:"repository"`
	Signature   Outcome `json:"signature"`
	Attestation Outcome `json:"attestation"`
}

// NodeResult is the outcome for one node.
type NodeResult struct {
	Node   *walk.Node
	Places []Placement
	Err    error
}

// Report is the outcome of a run, a result per node in tree order.
type Report struct {
	Results []NodeResult
}

// Tally counts nodes by outcome.
type Tally struct {
	Nodes     int `json:"nodes"`
	Written   int `json:"written"`
	Unchanged int `json:"unchanged"`
	Failed    int `json:"failed"`
	// Mirrored counts nodes also signed where they are mirrored in the
	// root's repository.
	Mirrored int `json:"mirrored"`
}

// Tally counts the report: nodes with something written, nodes where
// everything was already there, and failed nodes.
func (r *Report) Tally() Tally {
	t := Tally{Nodes: len(r.Results)}
	for _, res := range r.Results {
		if len(res.Places) > 1 {
			t.Mirrored++
		}
		switch {
		case res.Err != nil:
			t.Failed++
		case res.wrote():
			t.Written++
		default:
			t.Unchanged++
		}
	}
	return t
}

func (r NodeResult) wrote() bool {
	for _, p := range r.Places {
		if p.Signature == Written || p.Attestation == Written {
			return true
		}
	}
	return false
}

// Sign signs and attests every node of the tree in its own repository. A
// node that fails does not stop the others: the report holds every result,
// and the error joins the failures.
func Sign(ctx context.Context, tree *walk.Tree, opts Options) (*Report, error) {
	s, err := newSigner(tree, opts)
	if err != nil {
		return nil, err
	}
	rep := &Report{Results: make([]NodeResult, len(tree.Nodes))}
	forEach(len(tree.Nodes), opts.Jobs, func(i int) {
		rep.Results[i] = s.node(ctx, tree.Nodes[i])
		if opts.Progress != nil {
			opts.Progress(rep.Results[i])
		}
	})
	var errs []error
	for _, r := range rep.Results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return rep, errors.Join(errs...)
}

// signer holds what every node of a run shares.
type signer struct {
	opts        Options
	root        *walk.Node
	annotations map[string]string
	uri         string   // the predicate type URI
	tops        sync.Map // *walk.Node → *mirrorCheck, for the root's children
}

func newSigner(tree *walk.Tree, opts Options) (*signer, error) {
	if opts.Signer == nil || opts.Store == nil {
		return nil, errors.New("attest: Sign needs a Signer and a Store")
	}
	if opts.Predicates == nil {
		opts.Predicates = Provenance{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	uri, err := PredicateURI(opts.Predicates.Type())
	if err != nil {
		return nil, err
	}
	// A predicate cosign's generator refuses fails every node alike: find
	// out before anything is written.
	pred, err := opts.Predicates.For(tree.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPredicate, err)
	}
	if _, err := Statement(tree.Root.Digest(), opts.Predicates.Type(), pred, opts.Now()); err != nil {
		return nil, err
	}
	ann := make(map[string]string, len(opts.Annotations)+1)
	for k, v := range opts.Annotations {
		ann[k] = v
	}
	if opts.BindRoot {
		ann[AnnotationRoot] = tree.Root.Digest().String()
	}
	return &signer{opts: opts, root: tree.Root, annotations: ann, uri: uri}, nil
}

// nodeAttempts is how many times a node that failed for a passing reason
// (a reset connection, a registry error the transport's own retries did not
// outlast) is signed again within a run. Signing a node is idempotent.
const nodeAttempts = 3

// node signs and attests one node in its repository and, where it is
// mirrored, in the root's.
func (s *signer) node(ctx context.Context, n *walk.Node) NodeResult {
	var res NodeResult
	for attempt := 1; ; attempt++ {
		res = s.nodeOnce(ctx, n)
		if res.Err == nil || attempt == nodeAttempts || !transient(res.Err) || ctx.Err() != nil {
			return res
		}
	}
}

func (s *signer) nodeOnce(ctx context.Context, n *walk.Node) NodeResult {
	res := NodeResult{Node: n}
	repos := []name.Repository{n.Repository}
	mirrored, err := s.mirrored(ctx, n)
	if err != nil {
		res.Err = walk.Errorf("sign", n, err)
		return res
	}
	if mirrored {
		repos = append(repos, s.root.Repository)
	}
	for _, repo := range repos {
		p, err := s.place(ctx, n, repo)
		res.Places = append(res.Places, p)
		if err != nil {
			res.Err = walk.Errorf("sign", n, err)
			return res
		}
	}
	return res
}

// transient reports whether a failure may pass: anything but a refusal
// (401, 403) or a bad predicate.
func transient(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode != http.StatusUnauthorized && terr.StatusCode != http.StatusForbidden
	}
	return !errors.Is(err, ErrPredicate)
}

// place signs and attests the node's manifest as it stands in repo.
func (s *signer) place(ctx context.Context, n *walk.Node, repo name.Repository) (Placement, error) {
	p := Placement{Repository: repo.Name(), Signature: Failed, Attestation: Failed}
	ref := repo.Digest(n.Descriptor.Digest.String())
	var err error
	if p.Signature, err = s.sign(ctx, ref); err != nil {
		return p, err
	}
	p.Attestation, err = s.attest(ctx, n, ref)
	return p, err
}
