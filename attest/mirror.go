package attest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// mirrored reports whether a node of another repository also stands in the
// root's repository. catalog mirrors each child of the root with everything
// below it, so a node below a child that is not mirrored is not looked for.
func (s *signer) mirrored(ctx context.Context, n *walk.Node) (bool, error) {
	if !s.opts.Mirrors || s.opts.Client == nil || n.Repository.Name() == s.root.Repository.Name() {
		return false, nil
	}
	top := topChild(n)
	ok, err := s.mirroredOnce(ctx, top)
	if err != nil || !ok || top == n {
		return ok, err
	}
	return s.headInRoot(ctx, n)
}

// topChild returns the child of the root that n is, or is below.
func topChild(n *walk.Node) *walk.Node {
	for n.Parent != nil && n.Parent.Parent != nil {
		n = n.Parent
	}
	return n
}

// mirroredOnce is mirrored for a child of the root, asked once per run.
func (s *signer) mirroredOnce(ctx context.Context, top *walk.Node) (bool, error) {
	v, _ := s.tops.LoadOrStore(top, &mirrorCheck{})
	c := v.(*mirrorCheck)
	c.once.Do(func() { c.ok, c.err = s.headInRoot(ctx, top) })
	return c.ok, c.err
}

type mirrorCheck struct {
	once sync.Once
	ok   bool
	err  error
}

// headInRoot looks for n's manifest in the root's repository, with the
// push token the run writes there with anyway.
func (s *signer) headInRoot(ctx context.Context, n *walk.Node) (bool, error) {
	ropts, err := s.opts.Client.Remote(ctx, s.root.Repository, registry.Push)
	if err != nil {
		return false, err
	}
	_, err = remote.Head(s.root.Repository.Digest(n.Descriptor.Digest.String()), ropts...)
	var terr *transport.Error
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("check for a mirror in %s: %w", s.root.Repository, err)
}
