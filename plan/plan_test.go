package plan

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/walk"
)

// describe is everything a shard must rebuild of a node as the walk made it.
func describe(n *walk.Node) string {
	parent := "-"
	if n.Parent != nil {
		parent = n.Parent.Digest().String()
	}
	return fmt.Sprintf("%s kind=%s at=%q desc=%+v plat=%v ann=%v parent=%s index=%d depth=%d path=%s",
		n.Digest(), n.Kind, n.ArtifactType, []any{n.Descriptor.MediaType, n.Descriptor.Size}, n.Descriptor.Platform,
		n.Descriptor.Annotations, parent, n.Index, n.Depth, n.Path())
}

// TestShardsCoverTheTreeOnce: for shard counts from one to more than the
// tree has nodes, every node is in exactly one shard, rebuilt exactly as the
// walk made it, and a shard's reads are the plan's manifest, its document,
// the tag and its own nodes.
func TestShardsCoverTheTreeOnce(t *testing.T) {
	f := newFixture(t, 5, 6) // 1 + 5*7 = 36 nodes in 6 repositories
	want := map[string]string{}
	for _, n := range f.tree.Nodes {
		want[n.Digest().String()] = describe(n)
	}
	for _, shards := range []int{1, 2, 3, 7, 16, 36, 50} {
		t.Run(fmt.Sprint(shards), func(t *testing.T) {
			p, ref := f.push(t, shards)
			if p.Shards != min(shards, 36) {
				t.Fatalf("%d shards, want %d", p.Shards, min(shards, 36))
			}
			seen := map[string]int{}
			for s := range p.Shards {
				ctx, c := counted()
				tree, doc, err := Load(ctx, f.client, ref, f.tag, s, 4)
				if err != nil {
					t.Fatalf("shard %d: %v", s, err)
				}
				holdsRoot := 0
				for _, n := range tree.Nodes {
					seen[n.Digest().String()]++
					if got := describe(n); got != want[n.Digest().String()] {
						t.Errorf("shard %d rebuilt\n%s\nthe walk found\n%s", s, got, want[n.Digest().String()])
					}
					if n.Parent == nil {
						holdsRoot = 1
					}
				}
				if wantReqs := 3 + len(tree.Nodes) - holdsRoot; c.Count() != wantReqs {
					t.Errorf("shard %d: %d requests for %d nodes, want %d", s, c.Count(), len(tree.Nodes), wantReqs)
				}
				if doc.Own() != len(tree.Nodes) || tree.Root.Descriptor.Digest != f.tree.Root.Descriptor.Digest {
					t.Errorf("shard %d: %d own entries, %d nodes, root %s", s, doc.Own(), len(tree.Nodes), tree.Root.Descriptor.Digest)
				}
			}
			if len(seen) != len(want) {
				t.Errorf("the shards hold %d of %d nodes", len(seen), len(want))
			}
			for d, n := range seen {
				if n != 1 {
					t.Errorf("%s is in %d shards", d, n)
				}
			}
		})
	}
}

// TestLoadByDigest: a root given by digest is compared with no request; the
// shard that holds the root fetches it to confirm it.
func TestLoadByDigest(t *testing.T) {
	f := newFixture(t, 2, 2)
	_, ref := f.push(t, 2)
	for s := range 2 {
		ctx, c := counted()
		tree, _, err := Load(ctx, f.client, ref, f.tree.Root.Digest(), s, 4)
		if err != nil {
			t.Fatal(err)
		}
		if want := 2 + len(tree.Nodes); c.Count() != want {
			t.Errorf("shard %d: %d requests, want %d", s, c.Count(), want)
		}
	}
}

// TestPushTwice: the same tree planned again in as many shards pushes
// nothing: one HEAD.
func TestPushTwice(t *testing.T) {
	f := newFixture(t, 2, 2)
	_, first := f.push(t, 2)
	p, err := New(f.tree, 2, Walk{MaxDepth: walk.DefaultMaxDepth, MaxNodes: walk.DefaultMaxNodes})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, c := counted()
	ref, written, err := Push(ctx, f.client, f.tree.Root.Repository, enc, 4)
	if err != nil || written || ref != first || c.Count() != 1 {
		t.Errorf("again: %s written=%v, %d requests, %v; want %s, not written, 1 request", ref, written, c.Count(), err, first)
	}
}

// TestLoadRefuses: a plan for another digest of the tag (the tag moved),
// for another repository, or a shard id it does not have is refused
// before any node is read.
func TestLoadRefuses(t *testing.T) {
	f := newFixture(t, 2, 2)
	_, ref := f.push(t, 2)
	other, err := name.NewRepository(f.tag.RegistryStr() + "/org/other")
	if err != nil {
		t.Fatal(err)
	}
	moved, err := sample.Wide(walk.AnnotationRepository, "moved", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (sample.Pusher{Annotation: walk.AnnotationRepository, MirrorManifests: true}).Push(f.tag.Repository, moved, "latest"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		root  name.Reference
		shard int
		want  error
		reqs  int
	}{
		{"the tag moved", f.tag, 0, ErrOtherRoot, 2},
		{"another repository", other.Digest(f.tree.Root.Descriptor.Digest.String()), 1, ErrOtherRoot, 1},
		{"shard 2 of 2", f.tree.Root.Digest(), 2, ErrShardRange, 1},
		{"shard -1", f.tree.Root.Digest(), -1, ErrShardRange, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, c := counted()
			_, _, err := Load(ctx, f.client, ref, tc.root, tc.shard, 4)
			if !errors.Is(err, tc.want) || c.Count() != tc.reqs {
				t.Errorf("%v after %d requests; want %v after %d", err, c.Count(), tc.want, tc.reqs)
			}
		})
	}
}

// TestConfirmRefusesAChangedNode: a node whose manifest is not what the
// plan says is refused.
func TestConfirmRefusesAChangedNode(t *testing.T) {
	f := newFixture(t, 2, 2)
	_, ref := f.push(t, 1)
	tree, _, err := Load(context.Background(), f.client, ref, f.tag, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	leaf := tree.Nodes[len(tree.Nodes)-1]
	leaf.Descriptor.Size++
	if err := Confirm(context.Background(), f.client, []*walk.Node{leaf}, 1, nil); !errors.Is(err, ErrChanged) {
		t.Errorf("a size the manifest does not have: %v, want ErrChanged", err)
	}
	leaf.Descriptor.Size--
	leaf.Kind = walk.KindIndex
	if err := Confirm(context.Background(), f.client, []*walk.Node{leaf}, 1, nil); !errors.Is(err, ErrChanged) {
		t.Errorf("another kind: %v, want ErrChanged", err)
	}
}

// TestNewRefuses: shard counts out of 1…MaxShards.
func TestNewRefuses(t *testing.T) {
	f := newFixture(t, 1, 1)
	for _, n := range []int{0, -1, MaxShards + 1} {
		if _, err := New(f.tree, n, Walk{}); !errors.Is(err, ErrShards) {
			t.Errorf("%d shards: %v, want ErrShards", n, err)
		}
	}
	if p, err := New(f.tree, MaxShards, Walk{}); err != nil || p.Shards != len(f.tree.Nodes) {
		t.Errorf("%d shards of a %d-node tree: %v", MaxShards, len(f.tree.Nodes), err)
	}
}

// TestEncodeIsDeterministic: the same tree in as many shards encodes to
// the same bytes, so planning again finds the plan in place.
func TestEncodeIsDeterministic(t *testing.T) {
	f := newFixture(t, 3, 2)
	var digests []string
	for range 2 {
		p, err := New(f.tree, 3, Walk{MaxDepth: 16})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, enc.Digest.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("two encodings: %v", digests)
	}
}

// encoded returns a small plan's header and shard documents, decoded.
func encoded(t testing.TB, tree *walk.Tree, shards int) (*Header, []*Shard, [][]byte) {
	t.Helper()
	p, err := New(tree, shards, Walk{MaxDepth: 16})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseManifest(enc.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var docs []*Shard
	for s := range shards {
		d, err := ParseShard(enc.Blobs[1+s], h, s)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(d, p.Shard(s)) {
			t.Errorf("shard %d does not decode to what was encoded", s)
		}
		docs = append(docs, d)
	}
	return h, docs, enc.Blobs[1:]
}
