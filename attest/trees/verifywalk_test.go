package trees

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/legacy"
	"github.com/nestattest/nestattest/walk"
)

// TestVerifyWalk: verifying nodes as the walk reads them gives the
// verdicts Verify gives of the walked tree, in tree order, a leaf left
// unsigned failing in both; every node read is verified once.
func TestVerifyWalk(t *testing.T) {
	ctx := context.Background()
	_, tree, c, _, opts := signedKo(t)
	unsigned := nodeAt(t, tree, "app3", walk.KindImage)
	if err := remote.Delete(legacy.Tag(unsigned.Repository, unsigned.Descriptor.Digest, attest.KindSignature)); err != nil {
		t.Fatal(err)
	}
	want, err := Verify(ctx, tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	var read, verified atomic.Int32
	opts.Progress = func(Verdict) { verified.Add(1) }
	ref := tree.Root.Repository.Digest(tree.Root.Digest().DigestStr())
	walked, got, err := VerifyWalk(ctx, ref, walk.Options{Fetcher: c}, opts, func(*walk.Node) { read.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if len(walked.Nodes) != len(tree.Nodes) || int(read.Load()) != len(tree.Nodes) || int(verified.Load()) != len(tree.Nodes) {
		t.Fatalf("%d nodes walked, %d read, %d verified; want %d", len(walked.Nodes), read.Load(), verified.Load(), len(tree.Nodes))
	}
	for i, v := range got.Verdicts {
		if v.Node != walked.Nodes[i] {
			t.Fatalf("verdict %d is of %s, not of the tree's node %d, %s", i, v.Node.Path(), i, walked.Nodes[i].Path())
		}
	}
	if f, w := failures(got), failures(want); !slices.Equal(f, w) || len(f) != 1 {
		t.Errorf("VerifyWalk failures %q, Verify's %q; want the unsigned leaf only", f, w)
	}
}
