package trees

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/legacy"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// builderPredicate is provenance as a builder's protojson writes it:
// whitespace a JSON encoder would not write, which must survive unchanged.
const builderPredicate = `{"buildDefinition": {"buildType":"https://tekton.dev/chains/v2/slsa",  "externalParameters":{"runSpec":{"taskRef":{"name":"build"}}}},` +
	`"runDetails":{"builder":{"id":"https://tekton.dev/chains/v2"}, "metadata":{"invocationId":"a1b2"}}}`

// attestRoot gives the root a signature and a statement by the builder's
// key, naming digest as its subject.
func attestRoot(t *testing.T, c *registry.Client, tree *walk.Tree, builder attest.Signer, subject name.Digest) {
	t.Helper()
	stmt, err := statement.PropagatedStatement(subject, "https://slsa.dev/provenance/v1", json.RawMessage(builderPredicate))
	if err != nil {
		t.Fatal(err)
	}
	root := &walk.Tree{Root: tree.Root, Nodes: []*walk.Node{tree.Root}}
	opts := signOpts(c, builder)
	opts.Predicates = statement.FilePredicate{PredicateType: "https://slsa.dev/provenance/v1", Raw: []byte(`{}`)}
	r, err := newRun(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	sub := subjectOfNode(tree.Root.Repository, tree.Root)
	if _, err := r.signature(context.Background(), legacy.Store{}, sub, nil, &sentSet{}); err != nil {
		t.Fatal(err)
	}
	signed, err := r.signPayload(context.Background(), attest.Signed{Subject: sub, Kind: attest.KindAttestation, PayloadType: attest.PayloadInToto, Payload: stmt}, attest.Keeps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := (legacy.Store{}).Add(context.Background(), c, signed); err != nil {
		t.Fatal(err)
	}
}

// TestPropagate: propagate gives every node below the root the builder's
// predicate, byte for byte, in a statement a node or, with StatementsTree,
// one statement for them all; verify accepts it, and a re-run writes
// nothing.
func TestPropagate(t *testing.T) {
	for _, mode := range []Statements{StatementsNode, StatementsTree} {
		t.Run(string(mode), func(t *testing.T) { testPropagate(t, mode) })
	}
}

func testPropagate(t *testing.T, mode Statements) {
	ctx := context.Background()
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	builder, trusted := loadTestKey(t), loadTestKey(t)
	attestRoot(t, c, tree, builder, tree.Root.Digest())
	sub := subjectOfNode(tree.Root.Repository, tree.Root)
	source := verifyOpts(c, keyTrust(builder), attest.Requirements{})

	sources, err := ReadSources(ctx, sub, source, []string{"slsaprovenance1", "slsaprovenance02"})
	if err != nil || len(sources) != 1 || !bytes.Equal(sources[0].Predicate, []byte(builderPredicate)) {
		t.Fatalf("sources %v, %v", sources, err)
	}
	opts := signOpts(c, trusted)
	opts.Propagate, opts.Annotations = sources, map[string]string{AnnotationSource: SourceAnnotation(sources)}
	opts.Statements = mode
	rep, err := SignNodes(ctx, tree, tree.Nodes[1:], opts)
	if err != nil || rep.Tally().Written != len(tree.Nodes)-1 {
		t.Fatalf("propagate: %+v, %v", rep.Tally(), err)
	}
	// Every node below the root carries the builder's predicate, byte for
	// byte, with itself as subject (among the others, for a tree
	// statement); verify accepts it by type and root.
	for _, n := range tree.Nodes[1:] {
		entries, err := legacy.Store{}.List(ctx, c, subjectOfNode(n.Repository, n))
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, e := range ofKind(entries, attest.KindAttestation) {
			s, err := e.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if mode == StatementsNode {
				want, _ := statement.PropagatedStatement(n.Digest(), "https://slsa.dev/provenance/v1", json.RawMessage(builderPredicate))
				found = found || bytes.Equal(s.Payload, want)
				continue
			}
			st, err := statement.Read(s.Payload)
			found = found || err == nil && st.Names(n.Descriptor.Digest) && len(st.Subject) > 1 &&
				bytes.HasSuffix(s.Payload, []byte(`,"predicate":`+builderPredicate+`}`))
		}
		if !found {
			t.Errorf("%s carries no attestation with the builder's predicate unchanged", n.Digest())
		}
	}
	req := treeRequirements()
	req.Annotations = map[string]string{AnnotationSource: SourceAnnotation(sources)}
	vr, err := VerifyNodes(ctx, tree, tree.Nodes[1:], verifyOpts(c, keyTrust(trusted), req))
	if err != nil || vr.Failed() != 0 {
		t.Errorf("verify: %q, %v", failures(vr), err)
	}
	// Again: nothing to write.
	if rep, err := SignNodes(ctx, tree, tree.Nodes[1:], opts); err != nil || rep.Tally().Present != len(tree.Nodes)-1 {
		t.Errorf("re-run: %+v, %v", rep.Tally(), err)
	}
}

func TestReadSourcesRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, c *registry.Client, tree *walk.Tree, builder *testSigner)
		want  error
	}{
		{"not attested", func(*testing.T, *registry.Client, *walk.Tree, *testSigner) {}, attest.ErrUnsigned},
		{"attested by another key", func(t *testing.T, c *registry.Client, tree *walk.Tree, _ *testSigner) {
			attestRoot(t, c, tree, loadTestKey(t), tree.Root.Digest())
		}, attest.ErrUnsigned},
		{"provenance of another digest", func(t *testing.T, c *registry.Client, tree *walk.Tree, builder *testSigner) {
			attestRoot(t, c, tree, builder, tree.Nodes[1].Digest())
		}, ErrForeignSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := attesttest.NewRegistry(t, false)
			c := registry.NewClient(registry.Options{})
			tree := r.PushKo(t, c)
			builder := loadTestKey(t)
			tc.setup(t, c, tree, builder)
			_, err := ReadSources(ctx, subjectOfNode(tree.Root.Repository, tree.Root),
				verifyOpts(c, keyTrust(builder), attest.Requirements{}), []string{"slsaprovenance1"})
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}
