package trees

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// countingSigner counts its Sign calls: one per signature made.
type countingSigner struct {
	*testSigner
	n atomic.Int32
}

func (s *countingSigner) Sign(ctx context.Context, message []byte) ([]byte, attest.Material, error) {
	s.n.Add(1)
	return s.testSigner.Sign(ctx, message)
}

// places counts the (repository, digest) pairs a run signs nodes in: each
// node's own, and the root's where it was mirrored.
func places(rep *Report) int {
	seen := map[string]bool{}
	for _, res := range rep.Results {
		for _, p := range res.Places {
			seen[p.Repository+"@"+res.Node.Descriptor.Digest.String()] = true
		}
	}
	return len(seen)
}

// TestTreeStatements: with StatementsTree each layout's statements are
// signed once for the whole tree (legacy signatures stay per node), every
// node verifies in every layout, a re-run signs and writes nothing, and a
// statement limit splits the tree into chunks of at most that many
// subjects that verify as well.
func TestTreeStatements(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			ctx := context.Background()
			r := attesttest.NewRegistry(t, l.referrers)
			c := registry.NewClient(registry.Options{})
			tree := r.PushKo(t, c)
			signer := &countingSigner{testSigner: loadTestKey(t)}
			stores := l.stores()
			opts := signOpts(c, signer, stores...)
			opts.Statements = StatementsTree
			rep, err := Sign(ctx, tree, opts)
			if err != nil {
				t.Fatal(err)
			}
			if tl := rep.Tally(); tl.Written != len(tree.Nodes) || tl.Failed != 0 {
				t.Fatalf("tally %+v for %d nodes", tl, len(tree.Nodes))
			}
			legacySigs := 0
			statements := 1 // the attestation
			for _, s := range stores {
				if s.Layout() == "legacy" {
					legacySigs = places(rep)
				} else {
					statements = 2 // and the signing statement
				}
			}
			if got, want := int(signer.n.Load()), legacySigs+statements; got != want || rep.Statements != statements {
				t.Errorf("%d signatures made, %d statements; want %d (%d per-node legacy signatures, %d statements)", got, rep.Statements, want, legacySigs, statements)
			}
			for _, s := range stores {
				vopts := verifyOptsIn(t, c, keyTrust(signer), treeRequirements(), s.Layout())
				vopts.Jobs = 1
				r.Reads()
				vr, err := Verify(ctx, tree, vopts)
				if err != nil || vr.Failed() != 0 {
					t.Fatalf("verify in %s: %v %v", s.Layout(), err, failures(vr))
				}
				// A tree statement's referrers differ only in their subject:
				// where the referrers API lists them, the first node's is
				// read, the others' made again from their listings; a
				// fallback tag may list a manifest deleted since, so each
				// is read.
				read := 0
				for path, n := range r.Reads() {
					if strings.Contains(path, "/manifests/sha256:") {
						read += n
					}
				}
				if s.Layout() == "bundle" && l.referrers && read > statements || s.Layout() == "bundle" && !l.referrers && read < len(tree.Nodes) {
					t.Errorf("verify in %s read %d referrer manifests for %d statements", s.Layout(), read, statements)
				}
			}

			before, made := r.Writes(), signer.n.Load()
			rep, err = Sign(ctx, tree, opts)
			if err != nil {
				t.Fatal(err)
			}
			if tl := rep.Tally(); tl.Present != len(tree.Nodes) || r.Writes() != before || signer.n.Load() != made || rep.Statements != 0 {
				t.Errorf("re-run: tally %+v, %d writes, %d signatures, %d statements; want nothing", tl, r.Writes()-before, signer.n.Load()-made, rep.Statements)
			}
		})
	}
}

// TestTreeStatementsChunked: a limit of 3 subjects splits the tree's
// statements into balanced chunks; every node verifies.
func TestTreeStatementsChunked(t *testing.T) {
	ctx := context.Background()
	r := attesttest.NewRegistry(t, true)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	signer := &countingSigner{testSigner: loadTestKey(t)}
	opts := signOpts(c, signer, storesOf(t, "bundle")...)
	opts.Statements, opts.MaxSubjects = StatementsTree, 3
	rep, err := Sign(ctx, tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	chunks := (places(rep) + 2) / 3
	if rep.Statements != 2*chunks || int(signer.n.Load()) != 2*chunks {
		t.Errorf("%d subjects in chunks of 3: %d statements, %d signatures; want %d", places(rep), rep.Statements, signer.n.Load(), 2*chunks)
	}
	vr, err := Verify(ctx, tree, verifyOptsIn(t, c, keyTrust(signer), treeRequirements(), "bundle"))
	if err != nil || vr.Failed() != 0 {
		t.Fatalf("verify: %v %v", err, failures(vr))
	}
	for _, res := range rep.Results {
		for _, st := range storedStatements(t, c, res) {
			if len(st.Subject) > 3 || len(st.Subject) < 2 {
				t.Errorf("%s: a statement of %d subjects, want 2 or 3", res.Node.Path(), len(st.Subject))
			}
		}
	}
}

// TestTreeStatementsGrownTree: a tree signed in part, then in full, gets
// statements for the nodes it lacked only.
func TestTreeStatementsGrownTree(t *testing.T) {
	ctx := context.Background()
	r := attesttest.NewRegistry(t, true)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	signer := &countingSigner{testSigner: loadTestKey(t)}
	opts := signOpts(c, signer, storesOf(t, "bundle")...)
	opts.Statements = StatementsTree
	first := tree.Nodes[:len(tree.Nodes)/2]
	if _, err := SignNodes(ctx, tree, first, opts); err != nil {
		t.Fatal(err)
	}
	rep, err := Sign(ctx, tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	signedFirst := map[*walk.Node]bool{}
	for _, n := range first {
		signedFirst[n] = true
	}
	for _, res := range rep.Results {
		shared := false // a digest the first half signed in the same repository
		for _, n := range first {
			if n.Descriptor.Digest == res.Node.Descriptor.Digest {
				shared = true
			}
		}
		if want := Written; signedFirst[res.Node] || shared {
			want = Present
			if got := res.Outcome(); got != want {
				t.Errorf("%s: %s, want %s", res.Node.Path(), got, want)
			}
		} else if got := res.Outcome(); got != want {
			t.Errorf("%s: %s, want %s", res.Node.Path(), got, want)
		}
		if res.Outcome() != Written {
			continue
		}
		for _, st := range storedStatements(t, c, res) {
			for _, n := range first {
				if st.Names(n.Descriptor.Digest) && !shared {
					t.Errorf("%s: its new statement names %s, signed by the first run", res.Node.Path(), n.Path())
				}
			}
		}
	}
	vr, err := Verify(ctx, tree, verifyOptsIn(t, c, keyTrust(signer), treeRequirements(), "bundle"))
	if err != nil || vr.Failed() != 0 {
		t.Fatalf("verify: %v %v", err, failures(vr))
	}
}

// storedStatements are the statements of every bundle res's node carries
// in each place it was signed.
func storedStatements(t *testing.T, c *registry.Client, res NodeResult) []*statement.Info {
	t.Helper()
	ctx := context.Background()
	var out []*statement.Info
	for _, p := range res.Places {
		entries, err := storesOf(t, "bundle")[0].List(ctx, c, subjectOfNode(mustRepo(t, p.Repository), res.Node))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			s, err := e.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st, err := statement.Read(s.Payload)
			if err != nil {
				t.Fatalf("%s: %v", res.Node.Path(), err)
			}
			out = append(out, st)
		}
	}
	return out
}

// TestTreeStatementsAfterNodeStatements: a tree signed a statement a node
// is covered for --statements tree, which signs and writes nothing (what
// the node statements say, path below the root aside, is what the tree
// statement would say); the other way round, --statements node writes
// the statements naming each node alone that it was asked for.
func TestTreeStatementsAfterNodeStatements(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			ctx := context.Background()
			r := attesttest.NewRegistry(t, l.referrers)
			c := registry.NewClient(registry.Options{})
			tree := r.PushKo(t, c)
			signer := &countingSigner{testSigner: loadTestKey(t)}
			opts := signOpts(c, signer, l.stores()...)
			if _, err := Sign(ctx, tree, opts); err != nil {
				t.Fatal(err)
			}
			before, made := r.Writes(), signer.n.Load()
			opts.Statements = StatementsTree
			rep, err := Sign(ctx, tree, opts)
			if err != nil {
				t.Fatal(err)
			}
			if tl := rep.Tally(); tl.Present != len(tree.Nodes) || r.Writes() != before || signer.n.Load() != made {
				t.Errorf("tree after node: tally %+v, %d writes, %d signatures; want nothing", tl, r.Writes()-before, signer.n.Load()-made)
			}
		})
	}
	r := attesttest.NewRegistry(t, true)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	opts := signOpts(c, loadTestKey(t), storesOf(t, "bundle")...)
	opts.Statements = StatementsTree
	if _, err := Sign(context.Background(), tree, opts); err != nil {
		t.Fatal(err)
	}
	opts.Statements = StatementsNode
	rep, err := Sign(context.Background(), tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	if tl := rep.Tally(); tl.Written != len(tree.Nodes) {
		t.Errorf("node after tree: tally %+v, want every node written", tl)
	}
}
