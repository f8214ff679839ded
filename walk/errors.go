package walk

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nestattest/nestattest/registry"
)

// Sentinel errors; test for them with errors.Is. A manifest that is not
// where an index says it is, is over the size limit, or does not match its
// digest fails with registry's ErrNotFound, ErrTooLarge or
// ErrDigestMismatch.
var (
	// ErrScope: a dev.nestattest.repository annotation is not a valid
	// further-scoped relative repository path.
	ErrScope = errors.New("invalid repository scope")
	// ErrTooDeep: the tree is nested deeper than Options.MaxDepth.
	ErrTooDeep = errors.New("tree too deep")
	// ErrTooManyNodes: the tree has more nodes than Options.MaxNodes.
	ErrTooManyNodes = errors.New("too many nodes")
	// ErrInvalidManifest: a manifest cannot be decoded or is not one of the
	// supported kinds.
	ErrInvalidManifest = errors.New("invalid manifest")
	// SkipChildren, returned by a WalkFunc for an index, skips its children.
	SkipChildren = errors.New("skip children") //nolint:staticcheck,revive // named like fs.SkipDir
)

// NodeError is an error about one node of a tree: what was being done, in
// which repository, to which digest, and where the node sits in the tree.
type NodeError struct {
	// Op is what failed: "fetch", "scope", "sign", "verify", ...
	Op string
	// Repository is the node's repository, such as quay.io/org/ko-build/app1.
	Repository string
	// Digest is the node's digest, or the reference being resolved.
	Digest string
	// Path is the chain of repository paths and digests from the root.
	Path string
	// Err is the cause.
	Err error
}

// Error reads like "fetch quay.io/org/app@sha256:…: (root > app1): cause".
func (e *NodeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(" ")
	b.WriteString(e.Repository)
	if e.Digest != "" {
		if strings.HasPrefix(e.Digest, "sha") {
			b.WriteString("@")
		} else {
			b.WriteString(":")
		}
		b.WriteString(e.Digest)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " (%s)", e.Path)
	}
	b.WriteString(": ")
	b.WriteString(registry.RedactURLs(e.Err.Error()))
	return b.String()
}

// Unwrap returns the cause.
func (e *NodeError) Unwrap() error { return e.Err }

// Errorf returns a NodeError for n.
func Errorf(op string, n *Node, err error) *NodeError {
	return &NodeError{Op: op, Repository: n.Repository.Name(), Digest: n.Descriptor.Digest.String(), Path: n.Trail(), Err: err}
}
