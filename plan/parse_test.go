package plan

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/walk"
)

// TestParseShardRefuses: a shard document that would name a node outside
// the root's namespace, break the tree's links or disagree with its
// manifest is refused.
func TestParseShardRefuses(t *testing.T) {
	h, docs, _ := encoded(t, memTree(t, 3, 2), 2)
	last := func(d *Shard) *Entry { return &d.Entries[len(d.Entries)-1] }
	// Shard 1 holds the root (id 0), c001's index (4) and images (5, 6),
	// and, split off c002, one image (9) below c002's index (7), shard 0's.
	leaf := func(d *Shard) *Entry { return &d.Entries[2] }
	for _, tc := range []struct {
		name   string
		shard  int
		mutate func(d *Shard)
	}{
		{"a path out of the namespace", 1, func(d *Shard) { d.Entries[1].Path = "../evil" }},
		{"a path that is not a repository", 1, func(d *Shard) { d.Entries[1].Path = "Evil" }},
		{"an absolute path", 1, func(d *Shard) { last(d).Path = "/evil" }},
		{"a host in the path", 1, func(d *Shard) { last(d).Path = "evil.test:5000/x" }},
		{"a path beside its parent's", 1, func(d *Shard) { last(d).Path = "other" }},
		{"a parent that is no index", 1, func(d *Shard) { last(d).Parent = leaf(d).ID }},
		{"a parent not before it", 1, func(d *Shard) { last(d).Parent = last(d).ID }},
		{"the root not first", 1, func(d *Shard) { d.Entries = d.Entries[1:] }},
		{"the root's digest another", 0, func(d *Shard) { d.Entries[0].Digest = last(d).Digest }},
		{"entries out of order", 0, func(d *Shard) { d.Entries[1], d.Entries[2] = d.Entries[2], d.Entries[1] }},
		{"a node twice", 1, func(d *Shard) { d.Entries[3].Digest = leaf(d).Digest }},
		{"a shard id out of range", 1, func(d *Shard) { last(d).Shard = 2 }},
		{"another shard's node, no ancestor", 1, func(d *Shard) { last(d).Shard = 0 }},
		{"another shard's document", 1, func(d *Shard) { d.Shard = 0 }},
		{"another root", 1, func(d *Shard) { d.Root.Repository += "x" }},
		{"an unknown kind", 1, func(d *Shard) { last(d).Kind = "signature" }},
		{"a sha512 digest", 1, func(d *Shard) { last(d).Digest = v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("0", 128)} }},
		{"a negative size", 1, func(d *Shard) { last(d).Size = -1 }},
		{"no entries", 1, func(d *Shard) { d.Entries = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := clone(t, docs[tc.shard])
			tc.mutate(d)
			raw, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseShard(raw, h, tc.shard); !errors.Is(err, ErrInvalid) {
				t.Errorf("%v, want ErrInvalid", err)
			}
		})
	}
	raw, _ := json.Marshal(docs[1])
	for name, bad := range map[string]string{
		"an unknown field": strings.Replace(string(raw), `"shard":1,`, `"shard":1,"extra":true,`, 1),
		"trailing data":    string(raw) + "{}",
		"not JSON":         "[",
	} {
		if _, err := ParseShard([]byte(bad), h, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// TestParseManifestRefuses: manifests that are not plans, or whose counts
// disagree.
func TestParseManifestRefuses(t *testing.T) {
	tree := memTree(t, 2, 1)
	p, err := New(tree, 2, Walk{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		old  string
		new  string
		want error
	}{
		{"another artifactType", ArtifactType, "application/vnd.example", ErrNotPlan},
		{"no shards", `"` + AnnotationShards + `":"2"`, `"` + AnnotationShards + `":"0"`, ErrInvalid},
		{"more shards than layers", `"` + AnnotationShards + `":"2"`, `"` + AnnotationShards + `":"3"`, ErrInvalid},
		{"a padded count", `"` + AnnotationShards + `":"2"`, `"` + AnnotationShards + `":"02"`, ErrInvalid},
		{"a root without digest", `"` + AnnotationRoot + `":"`, `"` + AnnotationRoot + `":"x`, ErrInvalid},
		{"layers out of order", `"` + AnnotationShard + `":"0"`, `"` + AnnotationShard + `":"1"`, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(string(enc.Manifest), tc.old, tc.new, 1)
			if bad == string(enc.Manifest) {
				t.Fatalf("%q not in the manifest", tc.old)
			}
			if tc.name == "a root without digest" {
				bad = strings.Replace(string(enc.Manifest), tree.Root.Descriptor.Digest.String(), "latest", 1)
			}
			if _, err := ParseManifest([]byte(bad)); !errors.Is(err, tc.want) {
				t.Errorf("%v, want %v", err, tc.want)
			}
		})
	}
}

func clone(t testing.TB, d *Shard) *Shard {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var c Shard
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// FuzzParseShard: whatever a shard document holds, parsing it does not
// panic, and one it accepts rebuilds into nodes that all lie in the root's
// namespace, each linked up to the root, and encodes back to a document
// that parses to the same.
func FuzzParseShard(f *testing.F) {
	tree := memTree(f, 3, 2)
	h, _, raws := encoded(f, tree, 2)
	for s, raw := range raws {
		f.Add(raw, s)
	}
	f.Add([]byte(`{"root":{},"entries":[]}`), 0)
	root := tree.Root.Repository
	f.Fuzz(func(t *testing.T, raw []byte, s int) {
		d, err := ParseShard(raw, h, s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrShardRange) {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		tree, err := d.Tree(root)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Tree: an error of no kind: %v", err)
			}
			return
		}
		checkTree(t, root, tree, len(d.Entries))
		again, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ParseShard(again, h, s)
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("re-encoded: %v", err)
		}
	})
}

// checkTree checks every node of a rebuilt tree lies at or below root and
// reaches the tree's root through its parents.
func checkTree(t *testing.T, root name.Repository, tree *walk.Tree, entries int) {
	t.Helper()
	for _, n := range tree.Nodes {
		if r := n.Repository.Name(); r != root.Name() && !strings.HasPrefix(r, root.Name()+"/") {
			t.Fatalf("node in %s, outside %s", r, root.Name())
		}
		steps := 0
		for p := n; p.Parent != nil; p = p.Parent {
			if steps++; steps > entries {
				t.Fatal("a parent cycle")
			}
			if pr := p.Parent.Repository.Name(); p.Repository.Name() != pr && !strings.HasPrefix(p.Repository.Name(), pr+"/") {
				t.Fatalf("%s is not at or below its parent's %s", p.Repository.Name(), pr)
			}
		}
		if n.Root() != tree.Root {
			t.Fatal("a node not below the root")
		}
	}
}

// FuzzParseManifest: parsing any manifest does not panic, and a header it
// accepts has a layer per shard, each within the size bound.
func FuzzParseManifest(f *testing.F) {
	p, err := New(memTree(f, 2, 1), 2, Walk{})
	if err != nil {
		f.Fatal(err)
	}
	enc, err := p.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc.Manifest)
	f.Add([]byte(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"` + ArtifactType + `"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := ParseManifest(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotPlan) {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		if len(h.Layers) != h.Shards || h.Shards < 1 || h.Shards > MaxShards || h.Nodes < h.Shards {
			t.Fatalf("header %d shards, %d layers, %d nodes", h.Shards, len(h.Layers), h.Nodes)
		}
		for s := range h.Shards {
			if l, err := h.Layer(s); err != nil || l.Size > MaxShardBytes {
				t.Fatalf("layer %d: %v", s, err)
			}
		}
	})
}
