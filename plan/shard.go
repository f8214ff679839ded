package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/walk"
)

// ParseShard reads shard s's document of the plan h and checks it: it
// must repeat the plan's root and counts, list the root first and every
// other entry after its parent, an index, in a repository path at or below
// its parent's, and hold the number of the shard's own nodes the manifest
// gives.
func ParseShard(raw []byte, h *Header, s int) (*Shard, error) {
	l, err := h.Layer(s)
	if err != nil {
		return nil, err
	}
	var doc Shard
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: shard %d: %v", ErrInvalid, s, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: shard %d: trailing data after the JSON document", ErrInvalid, s)
	}
	if doc.Root != h.Root || doc.Shards != h.Shards || doc.Nodes != h.Nodes || doc.Shard != s {
		return nil, fmt.Errorf("%w: shard %d's document is for root %s@%s, shard %d of %d, %d nodes; the manifest says %s@%s, shard %d of %d, %d nodes",
			ErrInvalid, s, doc.Root.Repository, doc.Root.Digest, doc.Shard, doc.Shards, doc.Nodes, h.Root.Repository, h.Root.Digest, s, h.Shards, h.Nodes)
	}
	if err := doc.check(); err != nil {
		return nil, fmt.Errorf("%w: shard %d: %v", ErrInvalid, s, err)
	}
	if own := doc.Own(); strconv.Itoa(own) != l.Annotations[AnnotationNodes] {
		return nil, fmt.Errorf("%w: shard %d holds %d nodes, its layer says %q", ErrInvalid, s, own, l.Annotations[AnnotationNodes])
	}
	return &doc, nil
}

// check checks the entries' order, links, paths and fields.
func (d *Shard) check() error {
	if len(d.Entries) == 0 {
		return fmt.Errorf("no entries")
	}
	byID := make(map[int]*Entry, len(d.Entries))
	seen := make(map[string]bool, len(d.Entries))
	parents := make(map[int]bool, len(d.Entries))
	for i := range d.Entries {
		e := &d.Entries[i]
		if i > 0 && e.ID <= d.Entries[i-1].ID {
			return fmt.Errorf("entry %d: id %d after %d; entries are in tree order", i, e.ID, d.Entries[i-1].ID)
		}
		if err := d.checkEntry(e); err != nil {
			return fmt.Errorf("entry %d (id %d): %w", i, e.ID, err)
		}
		if err := d.checkLink(e, byID); err != nil {
			return fmt.Errorf("entry %d (id %d): %w", i, e.ID, err)
		}
		k := e.Path + "@" + e.Digest.String()
		if seen[k] {
			return fmt.Errorf("entry %d (id %d): %s listed twice", i, e.ID, k)
		}
		seen[k], byID[e.ID], parents[e.Parent] = true, e, true
	}
	for _, e := range d.Entries {
		if e.Shard != d.Shard && !parents[e.ID] {
			return fmt.Errorf("id %d is another shard's and no ancestor of this shard's nodes", e.ID)
		}
	}
	return nil
}

// checkEntry checks an entry's own fields.
func (d *Shard) checkEntry(e *Entry) error {
	switch {
	case e.ID < 0 || e.ID >= d.Nodes:
		return fmt.Errorf("id out of 0 to %d", d.Nodes-1)
	case e.Shard < 0 || e.Shard >= d.Shards:
		return fmt.Errorf("shard %d out of 0 to %d", e.Shard, d.Shards-1)
	case e.Digest.Algorithm != "sha256":
		return fmt.Errorf("digest %q: only sha256 is supported", e.Digest)
	case e.Size < 0 || e.Size > walk.MaxManifestBytes:
		return fmt.Errorf("size %d out of 0 to %d", e.Size, walk.MaxManifestBytes)
	}
	switch e.Kind {
	case walk.KindIndex, walk.KindImage, walk.KindArtifact, walk.KindMissing:
		return nil
	}
	return fmt.Errorf("kind %q", e.Kind)
}

// checkLink checks an entry's place: the root first, every other entry
// after its parent, an index, in its parent's repository or below.
func (d *Shard) checkLink(e *Entry, byID map[int]*Entry) error {
	if e.ID == 0 {
		if e.Parent != -1 || e.Index != -1 || e.Path != "." || e.Digest != d.Root.Digest || e.Kind == walk.KindMissing {
			return fmt.Errorf("the root must be %s in %q, with parent and index -1", d.Root.Digest, ".")
		}
		return nil
	}
	p, ok := byID[e.Parent]
	switch {
	case len(byID) == 0:
		return fmt.Errorf("the root (id 0) must come first")
	case !ok:
		return fmt.Errorf("parent %d is not before it", e.Parent)
	case p.Kind != walk.KindIndex:
		return fmt.Errorf("parent %d is not an index but of kind %s", e.Parent, p.Kind)
	case e.Index < 0:
		return fmt.Errorf("index %d", e.Index)
	}
	return checkPath(p.Path, e.Path)
}

// checkPath checks that child is parent or a further-scoped path below it.
func checkPath(parent, child string) error {
	if child == parent {
		return nil
	}
	rest, ok := child, parent == "."
	if !ok {
		rest, ok = strings.CutPrefix(child, parent+"/")
	}
	if !ok {
		return fmt.Errorf("path %q is not below its parent's %q", child, parent)
	}
	if _, err := walk.ParseScope(rest); err != nil {
		return fmt.Errorf("path %q: %w", child, err)
	}
	_, err := walk.ParseScope(child)
	return err
}

// Tree rebuilds the shard's nodes below root, the repository the plan was
// made for: every entry becomes a walk.Node linked to its parent, as the
// walk would have made it. The tree's Nodes are the shard's own nodes, in
// tree order; an index's Children are only those in the shard's document.
func (d *Shard) Tree(root name.Repository) (*walk.Tree, error) {
	if root.Name() != d.Root.Repository {
		return nil, fmt.Errorf("%w: the plan is for %s, not %s", ErrOtherRoot, d.Root.Repository, root.Name())
	}
	nodes := make(map[int]*walk.Node, len(d.Entries))
	tree := &walk.Tree{}
	for _, e := range d.Entries {
		n, err := node(root, e)
		if err != nil {
			return nil, err
		}
		if p := nodes[e.Parent]; p != nil {
			n.Parent, n.Depth = p, p.Depth+1
			p.Children = append(p.Children, n)
		}
		nodes[e.ID] = n
		if e.Shard == d.Shard {
			tree.Nodes = append(tree.Nodes, n)
		}
	}
	tree.Root = nodes[0]
	return tree, nil
}

func node(root name.Repository, e Entry) (*walk.Node, error) {
	repo := root
	if e.Path != "." {
		var err error
		if repo, err = walk.ChildRepository(root, map[string]string{walk.AnnotationRepository: e.Path}); err != nil {
			return nil, fmt.Errorf("%w: id %d: %v", ErrInvalid, e.ID, err)
		}
	}
	return &walk.Node{
		Repository: repo, Kind: e.Kind, ArtifactType: e.ArtifactType, Index: e.Index,
		Descriptor: v1.Descriptor{MediaType: e.MediaType, Digest: e.Digest, Size: e.Size, Platform: e.Platform, Annotations: e.Annotations},
	}, nil
}
