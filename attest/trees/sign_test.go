package trees

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/bundle"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/legacy"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

func signOpts(c *registry.Client, s attest.Signer, stores ...attest.Store) Options {
	if len(stores) == 0 {
		stores = []attest.Store{legacy.Store{}}
	}
	return Options{Signer: s, Stores: stores, BindRoot: true, Mirrors: true, Client: c, Jobs: 4, Settle: -1,
		Predicates: statement.Provenance{BuilderID: "https://example.test/builder", StartedOn: time.Now()}}
}

// layouts are the store configurations the tests run over, each on a
// registry with and without the referrers API.
var layouts = []struct {
	name      string
	referrers bool
	stores    func() []attest.Store
}{
	{"legacy", false, func() []attest.Store { return []attest.Store{legacy.Store{}} }},
	{"bundle with referrers API", true, func() []attest.Store { return []attest.Store{&bundle.Store{}} }},
	{"bundle with fallback tag", false, func() []attest.Store { return []attest.Store{&bundle.Store{}} }},
	{"both", false, func() []attest.Store { return []attest.Store{legacy.Store{}, &bundle.Store{}} }},
}

func subjectOfNode(repo name.Repository, n *walk.Node) attest.Subject {
	return attest.Subject{Repository: repo, Descriptor: v1.Descriptor{MediaType: n.Descriptor.MediaType, Digest: n.Descriptor.Digest, Size: n.Descriptor.Size}}
}

func TestSignEveryNodeInItsOwnRepository(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			r := attesttest.NewRegistry(t, l.referrers)
			c := registry.NewClient(registry.Options{})
			tree := r.PushKo(t, c)
			signer := loadTestKey(t)
			stores := l.stores()
			rep, err := Sign(context.Background(), tree, signOpts(c, signer, stores...))
			if err != nil {
				t.Fatal(err)
			}
			if tl := rep.Tally(); tl.Written != len(tree.Nodes) || tl.Failed != 0 {
				t.Fatalf("tally %+v for %d nodes", tl, len(tree.Nodes))
			}
			for _, res := range rep.Results {
				n := res.Node
				repos := map[string]bool{}
				for _, p := range res.Places {
					repos[p.Repository] = true
					repo, err := name.NewRepository(p.Repository)
					if err != nil {
						t.Fatal(err)
					}
					for _, s := range stores {
						if s.Layout() == p.Layout {
							checkStored(t, c, s, subjectOfNode(repo, n), n, tree)
						}
					}
				}
				// Children of the root were mirrored into the root's
				// repository by the sample pusher: they are signed there too.
				if want := 1 + btoi(n.Repository.Name() != tree.Root.Repository.Name()); len(repos) != want || len(res.Places) != want*len(stores) {
					t.Errorf("%s: places %+v, want %d repositories", n.Digest(), res.Places, want)
				}
			}
		})
	}
}

// checkStored checks that sub carries exactly one signature and one
// attestation in the store, for its own repository, bound to the root.
func checkStored(t *testing.T, c *registry.Client, s attest.Store, sub attest.Subject, n *walk.Node, tree *walk.Tree) {
	t.Helper()
	entries, err := s.List(context.Background(), c, sub)
	if err != nil {
		t.Fatal(err)
	}
	var sigs, atts []*attest.Signed
	for _, e := range entries {
		signed, err := e.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if signed.Kind == attest.KindSignature {
			sigs = append(sigs, signed)
		} else {
			atts = append(atts, signed)
		}
	}
	if len(sigs) != 1 || len(atts) != 1 {
		t.Fatalf("%s in %s: %d signatures, %d attestations, want 1 each", sub.Digest(), s.Layout(), len(sigs), len(atts))
	}
	checkSignaturePayload(t, s.Layout(), sigs[0], sub, tree)
	checkStatement(t, atts[0].Payload, sub, n)
}

func checkSignaturePayload(t *testing.T, layout attest.Layout, s *attest.Signed, sub attest.Subject, tree *walk.Tree) {
	t.Helper()
	var ref, digest, root string
	if layout == legacy.Layout {
		var p payload.SimpleContainerImage
		if err := json.Unmarshal(s.Payload, &p); err != nil {
			t.Fatal(err)
		}
		ref, digest, root = p.Critical.Identity.DockerReference, p.Critical.Image.DockerManifestDigest, p.Optional[statement.AnnotationRoot].(string)
	} else {
		var st statement.Info
		if err := json.Unmarshal(s.Payload, &st); err != nil || len(st.Subject) != 1 || st.PredicateType != statement.PredicateCosignSign {
			t.Fatalf("sign statement %s: %v", s.Payload, err)
		}
		ref, digest, root = st.Subject[0].Name, "sha256:"+st.Subject[0].Digest["sha256"], st.Subject[0].Annotations[statement.AnnotationRoot]
	}
	if ref != sub.Repository.Name() || digest != sub.Descriptor.Digest.String() || root != tree.Root.Digest().String() {
		t.Errorf("%s signature names %s %s root %s, stored for %s", layout, ref, digest, root, sub.Digest())
	}
}

func checkStatement(t *testing.T, raw []byte, sub attest.Subject, n *walk.Node) {
	t.Helper()
	var st struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate struct {
			BuildDefinition struct {
				ExternalParameters map[string]any `json:"externalParameters"`
			} `json:"buildDefinition"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != statement.StatementV1 || st.PredicateType != "https://slsa.dev/provenance/v1" || len(st.Subject) != 1 ||
		st.Subject[0].Name != sub.Repository.Name() || "sha256:"+st.Subject[0].Digest["sha256"] != sub.Descriptor.Digest.String() {
		t.Errorf("statement %s", raw)
	}
	if got := st.Predicate.BuildDefinition.ExternalParameters["reference"]; got != n.Root().Digest().String() {
		t.Errorf("externalParameters.reference %q, want the root %s", got, n.Root().Digest())
	}
}

func TestSignTwiceWritesNothing(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			r := attesttest.NewRegistry(t, l.referrers)
			c := registry.NewClient(registry.Options{})
			tree := r.PushKo(t, c)
			signer := loadTestKey(t)
			if _, err := Sign(context.Background(), tree, signOpts(c, signer, l.stores()...)); err != nil {
				t.Fatal(err)
			}
			before := r.Writes()
			opts := signOpts(c, signer, l.stores()...)
			opts.Predicates = statement.Provenance{BuilderID: "https://example.test/builder", StartedOn: time.Now().Add(time.Hour)}
			rep, err := Sign(context.Background(), tree, opts)
			if err != nil {
				t.Fatal(err)
			}
			if tl := rep.Tally(); tl.Present != len(tree.Nodes) || tl.Signatures+tl.Attestations != 0 {
				t.Errorf("second run tally %+v", tl)
			}
			if w := r.Writes() - before; w != 0 {
				t.Errorf("second run made %d writes", w)
			}
			// Another key does sign again.
			if rep, err := Sign(context.Background(), tree, signOpts(c, loadTestKey(t), l.stores()...)); err != nil || rep.Tally().Written != len(tree.Nodes) {
				t.Errorf("other key: %+v, %v", rep.Tally(), err)
			}
		})
	}
}

func TestSignWithUserPredicate(t *testing.T) {
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	tree := r.PushKo(t, c)
	opts := signOpts(c, loadTestKey(t))
	opts.Predicates = statement.FilePredicate{PredicateType: "spdxjson", Raw: []byte(`{"spdxVersion":"SPDX-2.3","name":"sbom"}`)}
	if _, err := Sign(context.Background(), tree, opts); err != nil {
		t.Fatal(err)
	}
	entries, err := legacy.Store{}.List(context.Background(), c, subjectOfNode(tree.Root.Repository, tree.Root))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range entries {
		if e.Kind == attest.KindAttestation {
			types = append(types, e.PredicateType)
		}
	}
	if len(types) != 1 || types[0] != "https://spdx.dev/Document" {
		t.Errorf("attestation predicate types %v", types)
	}
	opts.Predicates = statement.FilePredicate{PredicateType: "nonsense", Raw: []byte(`{}`)}
	if _, err := Sign(context.Background(), tree, opts); !errors.Is(err, attest.ErrPredicate) {
		t.Errorf("bad type: %v", err)
	}
}

func TestSignFailureDoesNotStopOthers(t *testing.T) {
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{Retries: -1})
	tree := r.PushKo(t, c)
	signer := loadTestKey(t)
	r.RefuseWrites("org/ko-build/app2")

	rep, err := Sign(context.Background(), tree, signOpts(c, signer))
	var ne *walk.NodeError
	if !errors.As(err, &ne) || !errors.Is(err, registry.ErrDenied) {
		t.Fatalf("error %v, want node errors wrapping registry.ErrDenied", err)
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

	r.RefuseWrites("")
	rep, err = Sign(context.Background(), tree, signOpts(c, signer))
	if err != nil {
		t.Fatal(err)
	}
	if tl := rep.Tally(); tl.Written != 3 || tl.Present != len(tree.Nodes)-3 {
		t.Errorf("re-run tally %+v", tl)
	}
}

// TestSignSharedTag signs a tree whose children are one image under twelve
// paths: the root's repository holds twelve attestations of one digest in
// one tag, and none is lost to concurrent appends.
func TestSignSharedTag(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			r := attesttest.NewRegistry(t, l.referrers)
			c := registry.NewClient(registry.Options{})
			tree := r.PushSame(t, c, 12)
			stores := l.stores()
			opts := signOpts(c, loadTestKey(t), stores...)
			opts.Jobs = 8
			rep, err := Sign(context.Background(), tree, opts)
			if err != nil {
				t.Fatal(err)
			}
			child := tree.Nodes[1]
			sub := subjectOfNode(tree.Root.Repository, child)
			for _, s := range stores {
				entries, err := s.List(context.Background(), c, sub)
				if err != nil {
					t.Fatal(err)
				}
				atts := 0
				for _, e := range entries {
					if signed, err := e.Load(context.Background()); err == nil && signed.Kind == attest.KindAttestation {
						atts++
					}
				}
				if atts != 12 {
					t.Errorf("%s: the root's repository holds %d attestations of the shared digest, want 12", s.Layout(), atts)
				}
			}
			// Every node but the root is attested in its own repository and
			// where it is mirrored, the root's; a signature is the same for
			// every node of a digest in a repository, and written once.
			atts := (1 + 2*(len(tree.Nodes)-1)) * len(stores)
			signed := map[string]bool{}
			for _, res := range rep.Results {
				for _, p := range res.Places {
					signed[p.Repository+res.Node.Descriptor.Digest.String()] = true
				}
			}
			if tl := rep.Tally(); tl.Attestations != atts || tl.Signatures != len(signed)*len(stores) {
				t.Errorf("tally %+v, want %d signatures and %d attestations written", tl, len(signed)*len(stores), atts)
			}
		})
	}
}

func TestStatementDigestIgnoresRunTimes(t *testing.T) {
	ref, err := name.NewDigest("example.test/org/app@sha256:" + strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	n := &walk.Node{Repository: ref.Repository}
	n.Descriptor.Digest.Algorithm, n.Descriptor.Digest.Hex = "sha256", strings.Repeat("a", 64)
	stmt := func(p statement.Provenance) v1.Hash {
		pred, err := p.For(n)
		if err != nil {
			t.Fatal(err)
		}
		s, err := statement.Statement(ref, p.Type(), pred, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		h, err := statement.StatementDigest(s)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a := stmt(statement.Provenance{StartedOn: time.Unix(1, 0), FinishedOn: time.Unix(2, 0)})
	b := stmt(statement.Provenance{StartedOn: time.Unix(3, 0)})
	c := stmt(statement.Provenance{InvocationID: "run-2"})
	if a != b || a == c {
		t.Errorf("StatementDigest: times should not matter, the invocation should")
	}
}

func TestGitHubProvenance(t *testing.T) {
	env := map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/app",
		"GITHUB_WORKFLOW_REF": "acme/app/.github/workflows/release.yml@refs/heads/main", "GITHUB_REF": "refs/heads/main",
		"GITHUB_SHA": "abc123", "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_EVENT_NAME": "push",
	}
	g := statement.GitHubFromEnv(func(k string) string { return env[k] })
	ref, _ := name.NewDigest("example.test/org/app@sha256:" + strings.Repeat("b", 64))
	n := &walk.Node{Repository: ref.Repository}
	raw, err := statement.Provenance{GitHub: g}.For(n)
	if err != nil {
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
	if statement.GitHubFromEnv(func(string) string { return "" }) != nil {
		t.Error("GitHub context outside GitHub Actions")
	}
}
