package trees

import (
	"context"
	"errors"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// VerifyWalk walks the tree at ref and verifies each node as the walk
// reads it, as Verify verifies it: the first nodes are checked while the
// levels below them are read, so the run's requests fill the client's
// limit from the start instead of after the walk. read, if set, is called
// as each node is read, from any goroutine; opts.Progress as each is
// verified. It returns the tree and a verdict for each of its nodes in
// tree order; when the walk fails, the tree as far as it was read and the
// walk's error.
func VerifyWalk(ctx context.Context, ref name.Reference, wopts walk.Options, opts VerifyOptions, read func(*walk.Node)) (*walk.Tree, *VerifyReport, error) {
	ctx = registry.WithTagListings(ctx)
	q := &nodeQueue{verdicts: map[*walk.Node]Verdict{}}
	q.cond = sync.NewCond(&q.mu)
	var (
		v       *verifier
		workers sync.WaitGroup
	)
	tree, err := walk.Walk(ctx, ref, wopts, func(_ context.Context, n *walk.Node, _ error) error {
		if read != nil {
			read(n)
		}
		if n.Parent == nil && v == nil { // the root, visited before any other node
			var err error
			if v, err = newVerifier(n, opts); err != nil {
				return err
			}
			// The run's context, not the walk's, which ends with the walk.
			for range max(opts.Jobs, 1) {
				workers.Go(func() { q.work(ctx, v, opts.Progress) })
			}
		}
		q.add(n)
		return nil
	})
	q.close()
	workers.Wait()
	if err != nil {
		return tree, nil, err
	}
	if v == nil {
		return tree, nil, errors.New("attest: the walk visited no root")
	}
	rep := &VerifyReport{Verdicts: make([]Verdict, len(tree.Nodes))}
	for i, n := range tree.Nodes {
		verdict, ok := q.verdicts[n]
		if !ok { // not handed to the walk's function: verified now
			verdict = v.node(ctx, n)
			if opts.Progress != nil {
				opts.Progress(verdict)
			}
		}
		rep.Verdicts[i] = verdict
	}
	return tree, rep, ctx.Err()
}

// nodeQueue hands the nodes a walk reads to the workers that verify them,
// without holding up the walk.
type nodeQueue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	nodes    []*walk.Node
	closed   bool
	verdicts map[*walk.Node]Verdict
}

func (q *nodeQueue) add(n *walk.Node) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nodes = append(q.nodes, n)
	q.cond.Signal()
}

// close says no node is coming: the workers end once the queue is empty.
func (q *nodeQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// work verifies nodes until the queue is closed and empty.
func (q *nodeQueue) work(ctx context.Context, v *verifier, progress func(Verdict)) {
	for {
		q.mu.Lock()
		for len(q.nodes) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.nodes) == 0 {
			q.mu.Unlock()
			return
		}
		n := q.nodes[0]
		q.nodes = q.nodes[1:]
		_, done := q.verdicts[n]
		q.mu.Unlock()
		if done || ctx.Err() != nil {
			continue
		}
		verdict := v.node(ctx, n)
		q.mu.Lock()
		q.verdicts[n] = verdict
		q.mu.Unlock()
		if progress != nil {
			progress(verdict)
		}
	}
}
