package statement_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	itaprov "github.com/in-toto/attestation/go/predicates/provenance/v1"
	ita "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/catalog"
	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// strictStatement parses an in-toto statement with in-toto/attestation's
// own protobuf types, unknown fields refused, and validates it and its
// SLSA v1 predicate as the in-toto Go library does.
func strictStatement(t *testing.T, raw []byte) (*ita.Statement, *itaprov.Provenance) {
	t.Helper()
	strict := protojson.UnmarshalOptions{DiscardUnknown: false}
	var st ita.Statement
	if err := strict.Unmarshal(raw, &st); err != nil {
		t.Fatalf("statement does not parse strictly: %v\n%s", err, raw)
	}
	if err := st.Validate(); err != nil {
		t.Fatalf("statement: Validate: %v\n%s", err, raw)
	}
	pred, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		t.Fatal(err)
	}
	var prov itaprov.Provenance
	if err := strict.Unmarshal(pred, &prov); err != nil {
		t.Fatalf("predicate does not parse strictly as SLSA v1 provenance: %v\n%s", err, pred)
	}
	if err := prov.Validate(); err != nil {
		t.Fatalf("predicate: Validate: %v\n%s", err, pred)
	}
	return &st, &prov
}

// composedTree pushes the ko sample's children to an in-process registry
// that wants an index's children in its repository, composes their parent
// (mirroring them into it), and returns what Compose did and the tree.
func composedTree(t *testing.T) (*registry.Client, *catalog.Result, *walk.Tree) {
	t.Helper()
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	parent, err := name.NewRepository(r.Host + "/org/ko-build")
	if err != nil {
		t.Fatal(err)
	}
	children, err := sample.KoChildren(walk.AnnotationRepository)
	if err != nil {
		t.Fatal(err)
	}
	var kids []catalog.Child
	p := sample.Pusher{Annotation: walk.AnnotationRepository, MirrorManifests: true}
	for _, ch := range children {
		d, err := p.Push(parent.Registry.Repo(parent.RepositoryStr(), ch.Path), ch.Index, "latest")
		if err != nil {
			t.Fatal(err)
		}
		kid, err := catalog.ChildOf(parent, d, "refs.txt")
		if err != nil {
			t.Fatal(err)
		}
		kids = append(kids, kid)
	}
	res, err := catalog.Compose(context.Background(), parent.Tag("v1"), catalog.Options{Client: c, Children: kids})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Mirrored {
		t.Fatal("the registry took the parent without its children: nothing was mirrored")
	}
	tree, err := walk.Collect(context.Background(), res.Root, walk.Options{Fetcher: c})
	if err != nil {
		t.Fatal(err)
	}
	return c, res, tree
}

// TestProvenanceValidates: the default provenance of a composing run, under
// GitHub Actions, wrapped in the statement Sign stores, parses strictly
// into in-toto/attestation's protobuf types and passes their Validate; it
// says what the run did: the children it composed from with their
// references and digests, their mirrored copies, the walk's parameters, the
// node's place in the tree, and the invocation.
func TestProvenanceValidates(t *testing.T) {
	c, res, tree := composedTree(t)
	env := map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/app", "GITHUB_REF": "refs/tags/v1.2.3",
		"GITHUB_WORKFLOW_REF": "acme/app/.github/workflows/release.yml@refs/tags/v1.2.3",
		"GITHUB_SHA":          strings.Repeat("c", 40), "GITHUB_RUN_ID": "7", "GITHUB_RUN_ATTEMPT": "1",
	}
	base := statement.Provenance{
		InvocationID: "4f9a3c2e-1b7d-4e2a-9c0f-3d5e6a7b8c9d",
		StartedOn:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), FinishedOn: time.Date(2026, 1, 2, 3, 4, 9, 0, time.UTC),
		GitHub: statement.GitHubFromEnv(func(k string) string { return env[k] }),
		Parameters: &statement.Parameters{
			Reference: res.Reference,
			Walk:      &statement.WalkParameters{MaxDepth: walk.DefaultMaxDepth, MaxNodes: walk.DefaultMaxNodes},
			Compose:   &statement.ComposeParameters{Mirror: string(catalog.MirrorAuto)},
		},
	}
	p, err := base.Composed(context.Background(), c, res, 4)
	if err != nil {
		t.Fatal(err)
	}
	n := tree.Nodes[len(tree.Nodes)-1] // a leaf below a child
	pred, err := p.For(n)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := statement.Statement(n.Digest(), p.Type(), pred, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, prov := strictStatement(t, raw)
	if st.GetType() != ita.StatementTypeUri || st.GetPredicateType() != "https://slsa.dev/provenance/v1" {
		t.Errorf("statement %s of %s", st.GetType(), st.GetPredicateType())
	}
	if s := st.GetSubject()[0]; s.GetName() != n.Repository.Name() || "sha256:"+s.GetDigest()["sha256"] != n.Descriptor.Digest.String() {
		t.Errorf("subject %v, want %s", s, n.Digest())
	}

	def, run := prov.GetBuildDefinition(), prov.GetRunDetails()
	if def.GetBuildType() != statement.BuildType {
		t.Errorf("buildType %s", def.GetBuildType())
	}
	ext := def.GetExternalParameters().AsMap()
	if ext["reference"] != res.Reference || ext["walk"] == nil || ext["compose"] == nil || ext["workflow"] == nil {
		t.Errorf("externalParameters %v", ext)
	}
	tree2 := def.GetInternalParameters().AsMap()["tree"].(map[string]any)
	if tree2["root"] != res.Root.String() || tree2["path"] != n.Path() {
		t.Errorf("internalParameters.tree %v, want root %s path %s", tree2, res.Root, n.Path())
	}
	deps := def.GetResolvedDependencies()
	if len(deps) != len(res.Children)+1 {
		t.Fatalf("%d resolvedDependencies, want the %d children and the commit", len(deps), len(res.Children))
	}
	for i, ch := range res.Children {
		d := deps[i]
		if d.GetName() != ch.Path || d.GetUri() != "oci://"+ch.Repository || "sha256:"+d.GetDigest()["sha256"] != ch.Digest || d.GetMediaType() != string(ch.MediaType) {
			t.Errorf("resolvedDependencies[%d] %v, want %s %s", i, d, ch.Repository, ch.Digest)
		}
	}
	if got := deps[len(deps)-1].GetDigest()["gitCommit"]; got != env["GITHUB_SHA"] {
		t.Errorf("the commit: %v", deps[len(deps)-1])
	}
	by := run.GetByproducts()
	if len(by) != len(res.Children) {
		t.Fatalf("%d byproducts, want a mirrored copy of each of the %d children", len(by), len(res.Children))
	}
	for i, ch := range res.Children {
		if by[i].GetUri() != "oci://"+res.Repository || "sha256:"+by[i].GetDigest()["sha256"] != ch.Digest {
			t.Errorf("byproducts[%d] %v, want %s@%s", i, by[i], res.Repository, ch.Digest)
		}
	}
	if run.GetMetadata().GetInvocationId() != base.InvocationID {
		t.Errorf("invocationId %q", run.GetMetadata().GetInvocationId())
	}
}

// TestProvenanceOfAReRun: composing the same parent again mirrors nothing
// (the copies are there), yet the provenance says the same, so a re-run
// attests nothing new.
func TestProvenanceOfAReRun(t *testing.T) {
	c, res, tree := composedTree(t)
	first, err := statement.Provenance{}.Composed(context.Background(), c, res, 4)
	if err != nil {
		t.Fatal(err)
	}
	kids := make([]catalog.Child, 0, len(res.Children))
	for _, ch := range res.Children {
		ref, err := name.NewDigest(ch.Repository + "@" + ch.Digest)
		if err != nil {
			t.Fatal(err)
		}
		kid, err := catalog.ChildOf(res.Root.Repository, ref, "--child")
		if err != nil {
			t.Fatal(err)
		}
		kids = append(kids, kid)
	}
	again, err := catalog.Compose(context.Background(), res.Root.Repository.Tag("v1"), catalog.Options{Client: c, Children: kids})
	if err != nil {
		t.Fatal(err)
	}
	if again.Mirrored || again.Digest != res.Digest {
		t.Fatalf("second compose: mirrored %v, digest %s (first %s)", again.Mirrored, again.Digest, res.Digest)
	}
	second, err := statement.Provenance{}.Composed(context.Background(), c, again, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tree.Nodes {
		a, _ := first.For(n)
		b, _ := second.For(n)
		if string(a) != string(b) {
			t.Errorf("%s: the re-run's provenance differs:\n%s\n%s", n.Path(), a, b)
		}
	}
}

// TestProvenanceOfASignedTree: a run that composed nothing records the root
// it was given, by digest, as its one input, and validates.
func TestProvenanceOfASignedTree(t *testing.T) {
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	for _, n := range []*walk.Node{tree.Root, tree.Nodes[len(tree.Nodes)-1]} {
		pred, err := statement.Provenance{}.For(n)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := statement.Statement(n.Digest(), "slsaprovenance1", pred, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, prov := strictStatement(t, raw)
		deps := prov.GetBuildDefinition().GetResolvedDependencies()
		if len(deps) != 1 || deps[0].GetUri() != "oci://"+tree.Root.Repository.Name() || "sha256:"+deps[0].GetDigest()["sha256"] != tree.Root.Descriptor.Digest.String() {
			t.Errorf("%s: resolvedDependencies %v, want the root", n.Path(), deps)
		}
		if got := prov.GetBuildDefinition().GetExternalParameters().AsMap()["reference"]; got != tree.Root.Digest().String() {
			t.Errorf("reference %v", got)
		}
		if prov.GetRunDetails().GetBuilder().GetId() != statement.DefaultBuilderID {
			t.Errorf("builder %v", prov.GetRunDetails().GetBuilder())
		}
	}
}

// TestBuildTypePage: the build type's URL is a page of this repository
// that documents every field the predicate fills.
func TestBuildTypePage(t *testing.T) {
	const prefix = "https://github.com/nestattest/nestattest/blob/main/"
	if !strings.HasPrefix(statement.BuildType, prefix) {
		t.Fatalf("BuildType %s is not a page of this repository", statement.BuildType)
	}
	page, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(strings.TrimPrefix(statement.BuildType, prefix))))
	if err != nil {
		t.Fatalf("the build type's page: %v", err)
	}
	var fields []string
	for _, f := range []any{statement.Parameters{}, statement.WalkParameters{}, statement.ComposeParameters{}} {
		b, _ := json.Marshal(f)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for k := range m {
			fields = append(fields, k)
		}
	}
	fields = append(fields, "walk", "compose", "indexAnnotations", "tree", "root", "path", "resolvedDependencies", "byproducts", "invocationId", "workflow", "github")
	for _, f := range fields {
		if !strings.Contains(string(page), "`"+f+"`") {
			t.Errorf("%s does not document `%s`", statement.BuildType, f)
		}
	}
}
