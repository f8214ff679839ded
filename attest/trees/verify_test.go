package trees

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/bundle"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/legacy"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// keyTrust trusts s's key, without a transparency log.
func keyTrust(s attest.Signer) attest.Trust {
	return attest.Trust{Key: s.Identity().Key, IgnoreTlog: true}
}

// treeRequirements are what the tests require of a signed tree: provenance,
// every node bound to the root.
func treeRequirements() attest.Requirements {
	return attest.Requirements{Types: []string{"slsaprovenance1"}, RequireRoot: true}
}

func verifyOpts(c *registry.Client, t attest.Trust, r attest.Requirements) VerifyOptions {
	return VerifyOptions{Trust: t, Require: r, Stores: []attest.Store{&bundle.Store{}, legacy.Store{}}, Client: c}
}

// verifyOptsIn are verifyOpts that read one layout only.
func verifyOptsIn(t *testing.T, c *registry.Client, tr attest.Trust, r attest.Requirements, l attest.Layout) VerifyOptions {
	t.Helper()
	stores := storesOf(t, l)
	opts := verifyOpts(c, tr, r)
	opts.Stores = stores
	return opts
}

// signedKo pushes and signs the ko sample, and returns the tree, the
// client and the verify options for the key.
func signedKo(t *testing.T) (*attesttest.Registry, *walk.Tree, *registry.Client, attest.Signer, VerifyOptions) {
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	s := loadTestKey(t)
	if _, err := Sign(context.Background(), tree, signOpts(c, s)); err != nil {
		t.Fatal(err)
	}
	return r, tree, c, s, verifyOpts(c, keyTrust(s), treeRequirements())
}

func nodeAt(t *testing.T, tree *walk.Tree, path string, kind walk.Kind) *walk.Node {
	t.Helper()
	for _, n := range tree.Nodes {
		if n.Path() == path && n.Kind == kind {
			return n
		}
	}
	t.Fatalf("no %s node at %s", kind, path)
	return nil
}

// failures returns path: reasons of every failed node.
func failures(rep *VerifyReport) []string {
	var out []string
	for _, v := range rep.Verdicts {
		if !v.Passed() {
			out = append(out, v.Node.Path()+" "+v.Node.Descriptor.Digest.String()+": "+v.Reasons())
		}
	}
	return out
}

func TestVerifySignedTree(t *testing.T) {
	_, tree, _, _, opts := signedKo(t)
	rep, err := Verify(context.Background(), tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	if f := failures(rep); len(f) != 0 {
		t.Fatalf("failures: %q", f)
	}
	opts.Require.Types = append(opts.Require.Types, "spdxjson")
	rep, err = Verify(context.Background(), tree, opts)
	if err != nil || rep.Failed() != len(tree.Nodes) {
		t.Fatalf("requiring an SBOM no node has: %d failed, %v", rep.Failed(), err)
	}
	if r := rep.Verdicts[0].Reasons(); !strings.Contains(r, "https://spdx.dev/Document") {
		t.Errorf("reason %q does not name the missing type", r)
	}
}

func TestVerifyTampering(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, tree *walk.Tree, c *registry.Client) *walk.Node
		reason string
	}{
		{"leaf unsigned", func(t *testing.T, tree *walk.Tree, _ *registry.Client) *walk.Node {
			n := nodeAt(t, tree, "app3", walk.KindImage)
			if err := remote.Delete(legacy.Tag(n.Repository, n.Descriptor.Digest, attest.KindSignature)); err != nil {
				t.Fatal(err)
			}
			return n
		}, "not signed"},
		{"signed by another key", func(t *testing.T, tree *walk.Tree, c *registry.Client) *walk.Node {
			n := nodeAt(t, tree, "app1", walk.KindImage)
			if err := remote.Delete(legacy.Tag(n.Repository, n.Descriptor.Digest, attest.KindSignature)); err != nil {
				t.Fatal(err)
			}
			other := &walk.Tree{Root: tree.Root, Nodes: []*walk.Node{n}}
			if _, err := Sign(ctx, other, signOpts(c, loadTestKey(t))); err != nil {
				t.Fatal(err)
			}
			return n
		}, "no signature the policy accepts"},
		{"attestation of another digest", func(t *testing.T, tree *walk.Tree, _ *registry.Client) *walk.Node {
			n := nodeAt(t, tree, "app2/plugins", walk.KindIndex)
			sibling := nodeAt(t, tree, "app2", walk.KindIndex)
			copyTag(t, legacy.Tag(sibling.Repository, sibling.Descriptor.Digest, attest.KindAttestation), legacy.Tag(n.Repository, n.Descriptor.Digest, attest.KindAttestation))
			return n
		}, "no slsaprovenance1 attestation the policy accepts whose subject is this digest"},
		{"signature copied from another repository", func(t *testing.T, tree *walk.Tree, _ *registry.Client) *walk.Node {
			n := nodeAt(t, tree, "app1", walk.KindIndex)
			// The root's repository holds a mirrored copy of app1, signed
			// there for the root's repository.
			copyTag(t, legacy.Tag(tree.Root.Repository, n.Descriptor.Digest, attest.KindSignature), legacy.Tag(n.Repository, n.Descriptor.Digest, attest.KindSignature))
			return n
		}, "signed for another repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, tree, c, _, opts := signedKo(t)
			n := tc.tamper(t, tree, c)
			rep, err := Verify(ctx, tree, opts)
			if err != nil {
				t.Fatal(err)
			}
			f := failures(rep)
			if len(f) != 1 || !strings.HasPrefix(f[0], n.Path()+" "+n.Descriptor.Digest.String()) || !strings.Contains(f[0], tc.reason) {
				t.Fatalf("failures %q, want only %s %s with %q", f, n.Path(), n.Descriptor.Digest, tc.reason)
			}
		})
	}
}

func copyTag(t *testing.T, from, to name.Tag) {
	t.Helper()
	img, err := remote.Image(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(to, img); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRequiresRootBinding(t *testing.T) {
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	s := loadTestKey(t)
	opts := signOpts(c, s)
	opts.BindRoot = false
	if _, err := Sign(context.Background(), tree, opts); err != nil {
		t.Fatal(err)
	}
	req := treeRequirements()
	req.RequireRoot = false
	vopts := verifyOpts(c, keyTrust(s), req)
	if rep, err := Verify(context.Background(), tree, vopts); err != nil || rep.Failed() != 0 {
		t.Fatalf("without --require-root: %q, %v", failures(rep), err)
	}
	// Every node below the root fails; the root's own signature is over
	// the root, bound without the annotation (as Chains signs a root).
	vopts.Require.RequireRoot = true
	rep, err := Verify(context.Background(), tree, vopts)
	if err != nil || rep.Failed() != len(tree.Nodes)-1 || !rep.Verdicts[0].Passed() || !strings.Contains(rep.Verdicts[1].Reasons(), statement.AnnotationRoot) {
		t.Fatalf("with --require-root: %d failed, %q, %v", rep.Failed(), rep.Verdicts[1].Reasons(), err)
	}
}

// TestVerifyMirrors: with Mirrors, a node's mirrored copy in the root's
// repository is checked too, and named where it fails; a tree signed
// without mirrors fails there until sign signs the copies.
func TestVerifyMirrors(t *testing.T) {
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	s := loadTestKey(t)
	opts := signOpts(c, s)
	opts.Mirrors = false
	if _, err := Sign(context.Background(), tree, opts); err != nil {
		t.Fatal(err)
	}
	vopts := verifyOpts(c, keyTrust(s), treeRequirements())
	if rep, err := Verify(context.Background(), tree, vopts); err != nil || rep.Failed() != 0 {
		t.Fatalf("without mirrors: %q, %v", failures(rep), err)
	}
	vopts.Mirrors, vopts.Client = true, c
	rep, err := Verify(context.Background(), tree, vopts)
	if err != nil || rep.Failed() != len(tree.Nodes)-1 || !rep.Verdicts[0].Passed() {
		t.Fatalf("mirrors unsigned: %d failed, %v", rep.Failed(), err)
	}
	root := tree.Root.Repository.Name()
	for _, v := range rep.Verdicts[1:] {
		var failed []Check
		for _, c := range v.Checks {
			if !c.OK {
				failed = append(failed, c)
			}
		}
		if len(failed) == 0 || failed[0].Mirror != root || !strings.HasSuffix(failed[0].Name, "(mirrored copy)") || !errors.Is(failed[0].Err, attest.ErrUnsigned) {
			t.Errorf("%s: failed checks %+v, want the mirrored copy in %s named", v.Node.Digest(), failed, root)
		}
	}
	opts.Mirrors = true
	if _, err := Sign(context.Background(), tree, opts); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(context.Background(), tree, vopts)
	if err != nil || rep.Failed() != 0 {
		t.Fatalf("mirrors signed: %q, %v", failures(rep), err)
	}
	if n := len(rep.Verdicts[1].Checks); n != 4 {
		t.Errorf("%d checks for a mirrored node, want its own two and its copy's two", n)
	}
}

// TestVerifyReadsStoresInOrder: a node is verified in the first of the
// stores that holds anything for it, else in the last, and its verdict
// names every layout that holds anything.
func TestVerifyReadsStoresInOrder(t *testing.T) {
	ctx := context.Background()
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	s := loadTestKey(t)
	signed := &walk.Tree{Root: tree.Root, Nodes: tree.Nodes[:1]}
	if _, err := Sign(ctx, signed, signOpts(c, s, legacy.Store{}, &bundle.Store{})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		order []attest.Layout
		want  attest.Layout
	}{
		{[]attest.Layout{bundle.Layout, legacy.Layout}, bundle.Layout},
		{[]attest.Layout{legacy.Layout, bundle.Layout}, legacy.Layout},
	} {
		opts := verifyOpts(c, keyTrust(s), treeRequirements())
		opts.Stores = storesOf(t, tc.order...)
		rep, err := Verify(ctx, tree, opts)
		if err != nil {
			t.Fatal(err)
		}
		root, unsigned := rep.Verdicts[0], rep.Verdicts[1]
		if !root.Passed() || root.Checks[0].Layout != tc.want || len(root.Layouts) != 2 || root.Layouts[0] != tc.order[0] {
			t.Errorf("%v: the root verified in %s, carrying %v (%q); want it verified in %s, carrying both", tc.order, root.Checks[0].Layout, root.Layouts, root.Reasons(), tc.want)
		}
		if last := tc.order[len(tc.order)-1]; unsigned.Passed() || unsigned.Checks[0].Layout != last || len(unsigned.Layouts) != 0 {
			t.Errorf("%v: an unsigned node checked in %s, carrying %v; want it checked in the last, %s, carrying none", tc.order, unsigned.Checks[0].Layout, unsigned.Layouts, last)
		}
	}
}
