package attest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

func signOpts(c *registry.Client, s Signer) Options {
	return Options{Signer: s, Store: TagStore{Client: c}, BindRoot: true, Mirrors: true, Client: c, Jobs: 4,
		Predicates: Provenance{BuilderID: "https://example.test/builder", StartedOn: time.Now()}}
}

func TestSignEveryNodeInItsOwnRepository(t *testing.T) {
	r := newTestRegistry(t)
	c := registry.NewClient(registry.Options{})
	tree := pushKo(t, r, c)
	signer := loadTestKey(t)

	rep, err := Sign(context.Background(), tree, signOpts(c, signer))
	if err != nil {
		t.Fatal(err)
	}
	if tl := rep.Tally(); tl.Written != len(tree.Nodes) || tl.Failed != 0 {
		t.Fatalf("tally %+v for %d nodes", tl, len(tree.Nodes))
	}
	store := TagStore{Client: c}
	for _, res := range rep.Results {
		n := res.Node
		for _, p := range res.Places {
			repo, err := name.NewRepository(p.Repository)
			if err != nil {
				t.Fatal(err)
			}
			checkSignature(t, store, repo, n, tree)
			checkAttestation(t, store, repo, n)
		}
		// Children of the root were mirrored into the root's repository by
		// the sample pusher: they are signed there too.
		if want := 1 + btoi(n.Repository.Name() != tree.Root.Repository.Name()); len(res.Places) != want {
			t.Errorf("%s: %d places, want %d", n.Digest(), len(res.Places), want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func onlyOne(t *testing.T, sigs oci.Signatures, what string) oci.Signature {
	t.Helper()
	got, err := sigs.Get()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%s: %d layers, want 1", what, len(got))
	}
	return got[0]
}

func checkSignature(t *testing.T, store TagStore, repo name.Repository, n *walk.Node, tree *walk.Tree) {
	t.Helper()
	sigs, err := store.List(context.Background(), repo, n.Descriptor.Digest, Signatures)
	if err != nil {
		t.Fatal(err)
	}
	sig := onlyOne(t, sigs, repo.Name()+" sig of "+n.Descriptor.Digest.String())
	raw, err := sig.Payload()
	if err != nil {
		t.Fatal(err)
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if p.Critical.Identity.DockerReference != repo.Name() {
		t.Errorf("docker-reference %q stored in %s", p.Critical.Identity.DockerReference, repo.Name())
	}
	if p.Critical.Image.DockerManifestDigest != n.Descriptor.Digest.String() {
		t.Errorf("digest %q for %s", p.Critical.Image.DockerManifestDigest, n.Descriptor.Digest)
	}
	if p.Optional[AnnotationRoot] != tree.Root.Digest().String() {
		t.Errorf("root binding %v", p.Optional[AnnotationRoot])
	}
}

func checkAttestation(t *testing.T, store TagStore, repo name.Repository, n *walk.Node) {
	t.Helper()
	atts, err := store.List(context.Background(), repo, n.Descriptor.Digest, Attestations)
	if err != nil {
		t.Fatal(err)
	}
	att := onlyOne(t, atts, repo.Name()+" att")
	env, err := att.Payload()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := envelopePayload(env)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate struct {
			BuildDefinition struct {
				ExternalParameters map[string]string `json:"externalParameters"`
			} `json:"buildDefinition"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != "https://slsa.dev/provenance/v1" || len(st.Subject) != 1 ||
		st.Subject[0].Name != repo.Name() || "sha256:"+st.Subject[0].Digest["sha256"] != n.Descriptor.Digest.String() {
		t.Errorf("statement %s", raw)
	}
	if got := st.Predicate.BuildDefinition.ExternalParameters["path"]; got != n.Path() {
		t.Errorf("externalParameters.path %q, want %q", got, n.Path())
	}
}

func TestSignTwiceWritesNothing(t *testing.T) {
	r := newTestRegistry(t)
	c := registry.NewClient(registry.Options{})
	tree := pushKo(t, r, c)
	signer := loadTestKey(t)
	if _, err := Sign(context.Background(), tree, signOpts(c, signer)); err != nil {
		t.Fatal(err)
	}
	before := r.writeCount()
	opts := signOpts(c, signer)
	opts.Predicates = Provenance{BuilderID: "https://example.test/builder", StartedOn: time.Now().Add(time.Hour)}
	rep, err := Sign(context.Background(), tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	if tl := rep.Tally(); tl.Unchanged != len(tree.Nodes) {
		t.Errorf("second run tally %+v", tl)
	}
	if w := r.writeCount() - before; w != 0 {
		t.Errorf("second run made %d writes", w)
	}
	// Another key does sign again.
	if rep, err := Sign(context.Background(), tree, signOpts(c, loadTestKey(t))); err != nil || rep.Tally().Written != len(tree.Nodes) {
		t.Errorf("other key: %+v, %v", rep.Tally(), err)
	}
}

func TestSignWithUserPredicate(t *testing.T) {
	r := newTestRegistry(t)
	c := registry.NewClient(registry.Options{})
	tree := pushKo(t, r, c)
	opts := signOpts(c, loadTestKey(t))
	opts.Predicates = FilePredicate{PredicateType: "spdxjson", Raw: []byte(`{"spdxVersion":"SPDX-2.3","name":"sbom"}`)}
	if _, err := Sign(context.Background(), tree, opts); err != nil {
		t.Fatal(err)
	}
	atts, err := TagStore{Client: c}.List(context.Background(), tree.Root.Repository, tree.Root.Descriptor.Digest, Attestations)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := onlyOne(t, atts, "root att").Annotations()
	if err != nil || ann[annotationPredicateType] != "https://spdx.dev/Document" {
		t.Errorf("annotations %v, %v", ann, err)
	}
	opts.Predicates = FilePredicate{PredicateType: "nonsense", Raw: []byte(`{}`)}
	if _, err := Sign(context.Background(), tree, opts); !errors.Is(err, ErrPredicate) {
		t.Errorf("bad type: %v", err)
	}
}

func TestSignFailureDoesNotStopOthers(t *testing.T) {
	r := newTestRegistry(t)
	c := registry.NewClient(registry.Options{Retries: -1})
	tree := pushKo(t, r, c)
	signer := loadTestKey(t)
	r.refuseWrites("org/ko-build/app2")

	rep, err := Sign(context.Background(), tree, signOpts(c, signer))
	var ne *walk.NodeError
	if !errors.As(err, &ne) {
		t.Fatalf("error %v, want node errors", err)
	}
	tl := rep.Tally()
	if tl.Failed != 3 || tl.Written != len(tree.Nodes)-3 {
		t.Errorf("tally %+v: want the 3 nodes of app2 failed, the rest written", tl)
	}
	for _, res := range rep.Results {
		if (res.Err != nil) != (res.Node.Path() == "app2") {
			t.Errorf("%s %s: error %v", res.Node.Path(), res.Node.Descriptor.Digest, res.Err)
		}
		if res.Err != nil && !strings.Contains(res.Err.Error(), res.Node.Descriptor.Digest.String()) {
			t.Errorf("error %q does not name the node", res.Err)
		}
	}

	r.refuseWrites("")
	rep, err = Sign(context.Background(), tree, signOpts(c, signer))
	if err != nil {
		t.Fatal(err)
	}
	if tl := rep.Tally(); tl.Written != 3 || tl.Unchanged != len(tree.Nodes)-3 {
		t.Errorf("re-run tally %+v", tl)
	}
}

func TestKeySource(t *testing.T) {
	dir, pass := testKey(t)
	keyPath := filepath.Join(dir, "cosign.key")
	good := func() ([]byte, error) { return pass, nil }
	if _, err := (KeySource{Path: keyPath, Password: good}).Load(); err != nil {
		t.Fatal(err)
	}
	_, err := KeySource{Path: keyPath, Password: func() ([]byte, error) { return []byte("wrong"), nil }}.Load()
	if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "wrong password") || strings.Contains(err.Error(), "wrong\"") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := (KeySource{Path: filepath.Join(dir, "absent.key")}).Load(); !errors.Is(err, ErrKey) {
		t.Errorf("absent key: %v", err)
	}

	// Tekton Chains' signing-secrets layout: cosign.key and cosign.password.
	chains := t.TempDir()
	if err := os.WriteFile(filepath.Join(chains, ChainsKeyFile), readFile(t, keyPath), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chains, ChainsPasswordFile), pass, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (KeySource{Path: chains}).Load(); err != nil {
		t.Errorf("chains layout: %v", err)
	}

	if _, _, err := GenerateKeyPair(filepath.Join(dir, "cosign"), func(bool) ([]byte, error) { return pass, nil }); err == nil {
		t.Error("GenerateKeyPair overwrote an existing key")
	}
}

func TestSameStatementIgnoresRunTimes(t *testing.T) {
	ref, err := name.NewDigest("example.test/org/app@sha256:" + strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	n := &walk.Node{Repository: ref.Repository}
	n.Descriptor.Digest.Algorithm, n.Descriptor.Digest.Hex = "sha256", strings.Repeat("a", 64)
	stmt := func(p Provenance) []byte {
		pred, err := p.For(n)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Statement(ref, p.Type(), pred, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := stmt(Provenance{StartedOn: time.Unix(1, 0), FinishedOn: time.Unix(2, 0)})
	b := stmt(Provenance{StartedOn: time.Unix(3, 0)})
	c := stmt(Provenance{InvocationID: "run-2"})
	if !sameStatement(a, b) || sameStatement(a, c) {
		t.Errorf("sameStatement: times should not matter, the invocation should")
	}
}

func TestGitHubProvenance(t *testing.T) {
	env := map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/app",
		"GITHUB_WORKFLOW_REF": "acme/app/.github/workflows/release.yml@refs/heads/main", "GITHUB_REF": "refs/heads/main",
		"GITHUB_SHA": "abc123", "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_EVENT_NAME": "push",
	}
	g := GitHubFromEnv(func(k string) string { return env[k] })
	ref, _ := name.NewDigest("example.test/org/app@sha256:" + strings.Repeat("b", 64))
	n := &walk.Node{Repository: ref.Repository}
	raw, err := Provenance{GitHub: g}.For(n)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"id":"https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"`,
		`"invocationId":"https://github.com/acme/app/actions/runs/42/attempts/2"`,
		`"path":".github/workflows/release.yml"`,
		`"gitCommit":"abc123"`,
		`"uri":"git+https://github.com/acme/app@refs/heads/main"`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("provenance lacks %s:\n%s", want, raw)
		}
	}
	if GitHubFromEnv(func(string) string { return "" }) != nil {
		t.Error("GitHub context outside GitHub Actions")
	}
}
