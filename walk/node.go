package walk

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Node is one manifest of a tree in one repository. Its Descriptor is the
// entry that pointed at it (with the media type and size of what was
// fetched), so it carries the platform and annotations of that entry.
type Node struct {
	// Repository is where the node lives.
	Repository name.Repository
	// Descriptor describes the node: digest, size, media type, platform and
	// the annotations of the index entry that listed it.
	Descriptor v1.Descriptor
	// Kind says what the node is.
	Kind Kind
	// ArtifactType is the manifest's artifactType, if any.
	ArtifactType string
	// Parent is the index that lists the node; nil for the root. Where
	// several indexes list the same node, it is the first in tree order.
	Parent *Node
	// Index is the node's position in Parent's manifests; -1 for the root.
	Index int
	// Depth is the number of indexes above the node.
	Depth int
	// Children are the nodes an index lists, in its order, once the walk
	// has finished; a node listed twice appears twice. Signatures and
	// attestations are left out.
	Children []*Node
	// Err says why a node of KindInvalid or KindMissing could not be read.
	Err error
	// Raw is the manifest as the registry served it, with
	// Options.KeepManifests.
	Raw []byte

	entries    []v1.Descriptor // an index's manifests
	links      []*Node         // the node of each entry; nil where it is not a node
	supplement bool            // a signature or referrer met as a child: not a node
}

// Digest returns the node's digest reference, repository@sha256:….
func (n *Node) Digest() name.Digest {
	return n.Repository.Digest(n.Descriptor.Digest.String())
}

// Root returns the root of the node's tree.
func (n *Node) Root() *Node {
	for n.Parent != nil {
		n = n.Parent
	}
	return n
}

// Path returns the node's repository relative to the root's, "." for the
// root's own repository.
func (n *Node) Path() string {
	return RelativePath(n.Root().Repository, n.Repository)
}

// Platform returns the platform of the node's index entry as os/arch[/variant],
// or "".
func (n *Node) Platform() string {
	p := n.Descriptor.Platform
	if p == nil {
		return ""
	}
	return p.String()
}

// Trail locates the node in its tree for messages: the chain of indexes from
// the root, each as path@short-digest, and the node's entry in its parent,
// such as ".@sha256:1a2b3c4d5e6f > app1@sha256:9f8e7d6c5b4a > manifests[2]".
// It is empty for the root.
func (n *Node) Trail() string {
	if n.Parent == nil {
		return ""
	}
	var parts []string
	for p := n.Parent; p != nil; p = p.Parent {
		parts = append(parts, p.Path()+"@"+Short(p.Descriptor.Digest))
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(append(parts, fmt.Sprintf("manifests[%d]", n.Index)), " > ")
}

// Short returns a digest cut to its algorithm and first 12 hex digits.
func Short(h v1.Hash) string {
	if len(h.Hex) <= 12 {
		return h.String()
	}
	return h.Algorithm + ":" + h.Hex[:12]
}

// key identifies a node: one visit per (repository, digest).
func key(repo name.Repository, h v1.Hash) string {
	return repo.Name() + "@" + h.String()
}

// Tree is the result of a walk: the root and every node once, in
// deterministic pre-order (parents before children, children in index order,
// a node listed twice where it is first met).
type Tree struct {
	Root  *Node
	Nodes []*Node
}

// order fixes the tree order once the walk has finished: the pre-order
// list, and each node's parent, index, depth and entry where it is first met.
func order(root *Node) *Tree {
	type visit struct {
		n, parent *Node
		index     int
	}
	t := &Tree{Root: root}
	seen := map[*Node]bool{}
	stack := []visit{{n: root, index: -1}}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[v.n] {
			continue
		}
		seen[v.n] = true
		if v.parent != nil {
			v.n.adopt(v.parent, v.index)
		}
		t.Nodes = append(t.Nodes, v.n)
		v.n.Children = v.n.Children[:0]
		for i := len(v.n.links) - 1; i >= 0; i-- {
			if c := v.n.links[i]; c != nil && !c.supplement {
				stack = append(stack, visit{c, v.n, i})
			}
		}
		for _, c := range v.n.links {
			if c != nil && !c.supplement {
				v.n.Children = append(v.n.Children, c)
			}
		}
	}
	return t
}

// adopt makes p the node's parent at entry i.
func (n *Node) adopt(p *Node, i int) {
	n.Parent, n.Index, n.Depth = p, i, p.Depth+1
	e := p.entries[i]
	n.Descriptor.Platform, n.Descriptor.Annotations = e.Platform, e.Annotations
}
