package plan

import (
	"fmt"

	"github.com/nestattest/nestattest/walk"
)

// Plan is a tree split into shards, as New makes it.
type Plan struct {
	// Root is the tree's root.
	Root Root
	// Walk are the bounds the tree was walked with.
	Walk Walk
	// Shards is the number of shards: what was asked, or the number of
	// nodes when the tree has fewer.
	Shards int
	// Entries are every node of the tree, in tree order: Entries[i].ID is i.
	Entries []Entry
}

// New plans a walked tree in shards (1…MaxShards; a tree with fewer nodes
// gets one shard a node). A tree with a node the walk could not read is
// refused.
func New(tree *walk.Tree, shards int, w Walk) (*Plan, error) {
	if shards < 1 || shards > MaxShards {
		return nil, fmt.Errorf("%w: %d; want 1 to %d", ErrShards, shards, MaxShards)
	}
	if tree == nil || tree.Root == nil || len(tree.Nodes) == 0 || tree.Nodes[0] != tree.Root {
		return nil, fmt.Errorf("%w: no tree", ErrInvalid)
	}
	ids := make(map[*walk.Node]int, len(tree.Nodes))
	repos := make([]string, len(tree.Nodes))
	for i, n := range tree.Nodes {
		if n.Kind == walk.KindInvalid {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, n.Err)
		}
		ids[n] = i
		repos[i] = n.Repository.Name()
	}
	p := &Plan{
		Root:   Root{Repository: tree.Root.Repository.Name(), Digest: tree.Root.Descriptor.Digest},
		Walk:   w,
		Shards: min(shards, len(tree.Nodes)),
	}
	assigned := Assign(repos, p.Shards)
	p.Entries = make([]Entry, len(tree.Nodes))
	for i, n := range tree.Nodes {
		parent := -1
		if n.Parent != nil {
			parent = ids[n.Parent]
		}
		p.Entries[i] = entry(n, i, parent, assigned[i])
	}
	return p, nil
}

func entry(n *walk.Node, id, parent, shard int) Entry {
	return Entry{
		ID: id, Parent: parent, Index: n.Index, Shard: shard, Path: n.Path(), Kind: n.Kind,
		Digest: n.Descriptor.Digest, Size: n.Descriptor.Size, MediaType: n.Descriptor.MediaType,
		ArtifactType: n.ArtifactType, Platform: n.Descriptor.Platform, Annotations: n.Descriptor.Annotations,
	}
}

// Sizes returns the number of nodes of each shard.
func (p *Plan) Sizes() []int {
	out := make([]int, p.Shards)
	for _, e := range p.Entries {
		out[e.Shard]++
	}
	return out
}

// Split returns the number of repositories whose nodes are in more than
// one shard.
func (p *Plan) Split() int {
	first := map[string]int{}
	split := map[string]bool{}
	for _, e := range p.Entries {
		s, ok := first[e.Path]
		switch {
		case !ok:
			first[e.Path] = e.Shard
		case s != e.Shard:
			split[e.Path] = true
		}
	}
	return len(split)
}

// Repositories returns the number of repositories each shard's nodes are in.
func (p *Plan) Repositories() []int {
	type key struct {
		shard int
		path  string
	}
	seen := map[key]bool{}
	out := make([]int, p.Shards)
	for _, e := range p.Entries {
		k := key{e.Shard, e.Path}
		if !seen[k] {
			seen[k] = true
			out[e.Shard]++
		}
	}
	return out
}

// Shard returns shard s's document: its nodes and their ancestors, in tree
// order.
func (p *Plan) Shard(s int) *Shard {
	in := make([]bool, len(p.Entries))
	for _, e := range p.Entries {
		if e.Shard != s {
			continue
		}
		for id := e.ID; id >= 0 && !in[id]; id = p.Entries[id].Parent {
			in[id] = true
		}
	}
	doc := &Shard{Root: p.Root, Shards: p.Shards, Nodes: len(p.Entries), Walk: p.Walk, Shard: s}
	for id, ok := range in {
		if ok {
			doc.Entries = append(doc.Entries, p.Entries[id])
		}
	}
	return doc
}

// IDs returns the shard ids as strings, as the Tekton result SHARDS and the
// GitHub output shards list them: "0", "1", …
func (p *Plan) IDs() []string {
	out := make([]string, p.Shards)
	for s := range out {
		out[s] = fmt.Sprint(s)
	}
	return out
}
