package walk

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/registry"
)

// Defaults of Options, used for zero fields.
const (
	// DefaultJobs is how many manifests are fetched at once.
	DefaultJobs = 8
	// DefaultMaxDepth is how many indexes may nest below the root.
	DefaultMaxDepth = 16
	// DefaultMaxNodes is how many distinct (repository, digest) nodes a
	// tree may have.
	DefaultMaxNodes = 100_000
)

// Options bound and shape a walk.
type Options struct {
	// Fetcher gets manifests; required.
	Fetcher Fetcher
	// Jobs is how many manifests are fetched, and WalkFuncs run, at once
	// across the whole tree; DefaultJobs when zero.
	Jobs int
	// MaxDepth is the deepest a node may sit below the root; DefaultMaxDepth
	// when zero.
	MaxDepth int
	// MaxNodes is how many distinct nodes the walk visits before it stops
	// with ErrTooManyNodes; DefaultMaxNodes when zero.
	MaxNodes int
	// AllowMissing records a child that is not in its repository as a node
	// of KindMissing instead of an error.
	AllowMissing bool
	// KeepManifests keeps each node's manifest in Node.Raw.
	KeepManifests bool
	// Root, when it is the manifest the root reference names by digest, is
	// used instead of fetching it again.
	Root *registry.Manifest
}

func (o Options) withDefaults() Options {
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxNodes <= 0 {
		o.MaxNodes = DefaultMaxNodes
	}
	return o
}

// WalkFunc is called once for each node, after its parent's call returned.
// err is non-nil, and wraps a *NodeError, when the node could not be read;
// the node then has KindInvalid. Returning SkipChildren from an index's call
// skips its children; returning another error stops the walk, which returns
// that error. Calls for different nodes run concurrently.
type WalkFunc func(ctx context.Context, n *Node, err error) error

// Walk resolves root and visits its tree. It returns the tree in
// deterministic order, complete unless an error is returned.
func Walk(ctx context.Context, root name.Reference, opts Options, fn WalkFunc) (*Tree, error) {
	opts = opts.withDefaults()
	if opts.Fetcher == nil {
		return nil, errors.New("walk: no Fetcher")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &walker{ctx: ctx, cancel: cancel, opts: opts, fn: fn, seen: map[string]*Node{}}
	w.cond = sync.NewCond(&w.mu)
	stop := context.AfterFunc(ctx, w.wake)
	defer stop()

	r, err := w.resolve(root)
	if err != nil {
		return nil, err
	}
	w.pending = 1
	w.visit(r)
	w.done()
	var wg sync.WaitGroup
	for range opts.Jobs {
		wg.Go(w.work)
	}
	wg.Wait()
	tree := order(r)
	if err := context.Cause(ctx); err != nil {
		return tree, err
	}
	return tree, nil
}

// Collect walks the tree and returns it, stopping at the first node that
// cannot be read.
func Collect(ctx context.Context, root name.Reference, opts Options) (*Tree, error) {
	return Walk(ctx, root, opts, func(_ context.Context, _ *Node, err error) error { return err })
}

type walker struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	opts   Options
	fn     WalkFunc

	mu      sync.Mutex
	cond    *sync.Cond
	seen    map[string]*Node
	queue   []*Node // nodes to fetch
	pending int     // nodes queued or being visited
}

// resolve fetches the root by tag or digest.
func (w *walker) resolve(ref name.Reference) (*Node, error) {
	n := &Node{Repository: ref.Context(), Index: -1}
	f, err := w.opts.Root, error(nil)
	if d, ok := ref.(name.Digest); !ok || f == nil || f.Digest.String() != d.DigestStr() {
		f, err = w.opts.Fetcher.GetManifest(w.ctx, ref, MaxManifestBytes)
	}
	if err != nil {
		return nil, &NodeError{Op: "resolve", Repository: ref.Context().Name(), Digest: ref.Identifier(), Err: err}
	}
	n.Descriptor = v1.Descriptor{Digest: f.Digest, Size: int64(len(f.Raw))}
	m, err := Decode(f.Raw, string(f.MediaType))
	if err != nil {
		return nil, Errorf("resolve", n, err)
	}
	n.describe(m)
	w.keep(n, f.Raw)
	w.seen[key(n.Repository, n.Descriptor.Digest)] = n
	return n, nil
}

// work is one worker: it visits queued nodes until none are pending.
func (w *walker) work() {
	for {
		n := w.next()
		if n == nil {
			return
		}
		w.fetch(n)
		if !n.supplement {
			w.visit(n)
		}
		w.done()
	}
}

func (w *walker) next() *Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) == 0 && w.pending > 0 && w.ctx.Err() == nil {
		w.cond.Wait()
	}
	if len(w.queue) == 0 || w.ctx.Err() != nil {
		return nil
	}
	n := w.queue[0]
	w.queue[0] = nil
	w.queue = w.queue[1:]
	return n
}

func (w *walker) done() {
	w.mu.Lock()
	w.pending--
	if w.pending == 0 {
		w.cond.Broadcast()
	}
	w.mu.Unlock()
}

func (w *walker) wake() {
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
}

// fetch reads a queued child; failures mark it KindInvalid or KindMissing.
func (w *walker) fetch(n *Node) {
	f, err := w.opts.Fetcher.GetManifest(w.ctx, n.Digest(), MaxManifestBytes)
	if err == nil && n.Descriptor.Size != int64(len(f.Raw)) {
		err = fmt.Errorf("%w: the index entry gives size %d, the manifest is %d bytes", ErrInvalidManifest, n.Descriptor.Size, len(f.Raw))
	}
	var m *Manifest
	if err == nil {
		m, err = Decode(f.Raw, string(f.MediaType))
	}
	switch {
	case err == nil:
		n.supplement = m.IsSupplement()
		n.describe(m)
		w.keep(n, f.Raw)
	case errors.Is(err, registry.ErrNotFound) && w.opts.AllowMissing:
		n.Kind = KindMissing
	case errors.Is(err, registry.ErrNotFound):
		n.fail("fetch", fmt.Errorf("index %s lists it as %s, but it is not in %s: %w", n.Parent.Digest(), n.entry(), n.Repository.Name(), err))
	default:
		n.fail("fetch", err)
	}
}

// keep records the manifest's bytes when the walk keeps them.
func (w *walker) keep(n *Node, raw []byte) {
	if w.opts.KeepManifests {
		n.Raw = raw
	}
}

// describe records what the manifest says about its node.
func (n *Node) describe(m *Manifest) {
	n.Kind = m.Kind()
	n.ArtifactType = m.ArtifactType
	n.Descriptor.MediaType = m.MediaType
	if m.IsIndex() {
		n.entries = m.Manifests
	}
}

func (n *Node) fail(op string, err error) {
	n.Kind = KindInvalid
	n.Err = Errorf(op, n, err)
}

// entry describes the node's entry in its parent index for messages.
func (n *Node) entry() string {
	s := fmt.Sprintf("manifests[%d] (%s", n.Index, n.Descriptor.MediaType)
	if v, ok := n.Descriptor.Annotations[AnnotationRepository]; ok {
		s += fmt.Sprintf(", %s=%q", AnnotationRepository, v)
	}
	return s + ")"
}

// visit calls the WalkFunc for a node and queues its children.
func (w *walker) visit(n *Node) {
	if w.ctx.Err() != nil {
		return
	}
	err := w.fn(w.ctx, n, n.Err)
	switch {
	case errors.Is(err, SkipChildren):
		return
	case err != nil:
		w.cancel(err)
		return
	}
	if n.Kind == KindIndex {
		w.expand(n)
	}
}

// hinter is a Fetcher told which repositories the next fetches read, so a
// token registry's token can cover them all at once (registry.Client).
type hinter interface {
	WantRepositories(repos ...name.Repository)
}

// expand links an index's children, queueing those not seen before.
func (w *walker) expand(n *Node) {
	w.hint(n)
	n.links = make([]*Node, len(n.entries))
	for i, d := range n.entries {
		if isSupplementDescriptor(d) {
			continue
		}
		c, fresh, err := w.child(n, i, d)
		n.links[i] = c
		switch {
		case err != nil:
			w.cancel(err)
			return
		case fresh && c.Err != nil:
			w.visit(c)
		case fresh:
			w.enqueue(c)
		}
	}
}

// hint tells the fetcher the repositories an index's children live in.
func (w *walker) hint(n *Node) {
	h, ok := w.opts.Fetcher.(hinter)
	if !ok {
		return
	}
	var repos []name.Repository
	seen := map[string]bool{}
	for _, d := range n.entries {
		if repo, err := ChildRepository(n.Repository, d.Annotations); err == nil && !seen[repo.Name()] {
			seen[repo.Name()] = true
			repos = append(repos, repo)
		}
	}
	h.WantRepositories(repos...)
}

// child returns the node for entry i of index n: a node seen before, a new
// node to fetch, or a node that fails its scope or depth check. An error
// means the walk must stop.
func (w *walker) child(n *Node, i int, d v1.Descriptor) (c *Node, fresh bool, err error) {
	c = &Node{Repository: n.Repository, Descriptor: d, Parent: n, Index: i, Depth: n.Depth + 1}
	repo, err := ChildRepository(n.Repository, d.Annotations)
	if err != nil {
		c.fail("scope", fmt.Errorf("index %s %s: %w", n.Digest(), c.entry(), err))
		return c, true, nil
	}
	c.Repository = repo
	if c.Depth > w.opts.MaxDepth {
		c.fail("fetch", fmt.Errorf("%w: %s nests deeper than %d indexes", ErrTooDeep, c.entry(), w.opts.MaxDepth))
		return c, true, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	k := key(c.Repository, d.Digest)
	if seen, ok := w.seen[k]; ok {
		return seen, false, nil
	}
	if len(w.seen) >= w.opts.MaxNodes {
		return c, false, Errorf("fetch", c, fmt.Errorf("%w: the tree has more than %d nodes (--max-nodes)", ErrTooManyNodes, w.opts.MaxNodes))
	}
	w.seen[k] = c
	return c, true, nil
}

func (w *walker) enqueue(n *Node) {
	w.mu.Lock()
	w.queue = append(w.queue, n)
	w.pending++
	w.cond.Signal()
	w.mu.Unlock()
}
