package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/test/harness"
)

// TestTreeStatementsVerifiedByCosign signs the 3-level, 5-repository tree
// with --statements tree in each format: the attestation (and, in bundles,
// the signature) is one statement signed once for the tree; every node
// passes cosign v2.6.5's and v3.1.3's verify and verify-attestation and
// nestattest verify; a re-run signs and writes nothing.
func TestTreeStatementsVerifiedByCosign(t *testing.T) {
	root := emptyTrustedRoot(t)
	for _, tc := range []struct {
		name, format string
		reg          func(t *testing.T) *harness.Registry
		// signatures the run makes: a tree statement per kind, and in the
		// legacy layout a .sig per node (13 nodes, none mirrored: the
		// registry takes an index whose children stand elsewhere).
		signatures, statements string
	}{
		{"bundle on distribution-v3.1.2", "bundle", func(t *testing.T) *harness.Registry {
			return harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
		}, "2 signatures", "2 tree statements"},
		{"bundle with referrers API", "bundle", func(t *testing.T) *harness.Registry { return harness.InMemory(t, true) }, "2 signatures", "2 tree statements"},
		{"legacy on distribution-v3.1.2", "legacy", func(t *testing.T) *harness.Registry {
			return harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
		}, "14 signatures", "1 tree statement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := tc.reg(t)
			tree := pushKo(t, reg, "org/ko-build")
			k := newKeyPair(t, "cosign")
			proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
			ref := strings.Replace(tree.tag, reg.Host, proxy.Host, 1)
			args := signArgs(k, ref, "--format", tc.format, "--statements", "tree")
			r := harness.RunEnv(t, k.env(), harness.Binary(t), args...)
			if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") || !strings.Contains(r.Stdout, tc.signatures+" ("+tc.statements+")") {
				t.Fatalf("sign --statements tree: exit %d, want 13 written, %s (%s)\n%s%s", r.Code, tc.signatures, tc.statements, r.Stdout, r.Stderr)
			}
			t.Logf("%s", r.Stdout)
			for _, node := range treeOf(t, tree.tag).refs() {
				if tc.format == "bundle" {
					cosignVerifyBundles(t, k.pub, root, node)
					continue
				}
				for _, run := range []struct {
					name string
					cmd  func(t *testing.T, env []string, args ...string) harness.Result
				}{{"cosign v2.6.5", cosign}, {"cosign v3.1.3", cosign3}} {
					for _, verb := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
						if r := run.cmd(t, nil, append(verb, "--key", k.pub, "--insecure-ignore-tlog", "--allow-insecure-registry", node)...); r.Code != 0 {
							t.Errorf("%s %s %s: exit %d\n%s", run.name, verb[0], node, r.Code, r.Stderr)
						}
					}
				}
			}
			doc := verifyJSON(t, k.pub, ref, "--format", tc.format, "--require-root")
			if doc.Summary.Failed != 0 || doc.Summary.Passed != 13 {
				t.Errorf("nestattest verify: %+v %v", doc.Summary, doc.failures())
			}
			proxy.Reset()
			r = harness.RunEnv(t, k.env(), harness.Binary(t), args...)
			if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") || proxy.Counts().Writes() != 0 || !strings.Contains(r.Stdout, "0 signatures") {
				t.Errorf("re-run: exit %d, %d writes\n%s%s", r.Code, proxy.Counts().Writes(), r.Stdout, r.Stderr)
			}
		})
	}
}

// TestMovedTreeStatementRefused: a tree statement's referrer re-pushed
// with another manifest as its subject, one the statement does not name,
// is refused by cosign v3.1.3 and by nestattest verify, which names the
// manifest.
func TestMovedTreeStatementRefused(t *testing.T) {
	reg := harness.InMemory(t, true)
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	if r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tree.tag, "--format", "bundle", "--statements", "tree")...); r.Code != 0 {
		t.Fatalf("sign: exit %d\n%s", r.Code, r.Stderr)
	}
	// Another image, in a repository of the tree's namespace.
	other, err := name.ParseReference(reg.Ref("org/ko-build/other:v1"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(other, img); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(other)
	if err != nil {
		t.Fatal(err)
	}
	// Every referrer of a leaf, moved: re-pushed with the other image as
	// its subject.
	leaf := treeOf(t, tree.tag).refs()[len(treeOf(t, tree.tag).refs())-1]
	leafRef, err := name.NewDigest(leaf)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := remote.Referrers(leafRef)
	if err != nil {
		t.Fatal(err)
	}
	refm, err := refs.IndexManifest()
	if err != nil || len(refm.Manifests) != 2 {
		t.Fatalf("the leaf's referrers: %v %v, want a signature and an attestation", refm, err)
	}
	for _, d := range refm.Manifests {
		moveReferrer(t, leafRef.Context().Digest(d.Digest.String()), other.Context(), desc)
	}
	otherDigest := other.Context().Digest(desc.Digest.String()).String()
	r := cosign3(t, nil, "verify-attestation", "--type", "slsaprovenance1", "--key", k.pub, "--trusted-root", emptyTrustedRoot(t),
		"--insecure-ignore-tlog", "--allow-insecure-registry", otherDigest)
	if r.Code == 0 || !strings.Contains(r.Stderr, "does not match") {
		t.Errorf("cosign v3.1.3 verify-attestation of the moved statement: exit %d, want refused\n%s", r.Code, r.Stderr)
	}
	doc, vr := verifyTree(t, k.pub, otherDigest, "--format", "bundle")
	if vr.Code != 1 || doc.Summary.Failed != 1 || !strings.Contains(vr.Stdout, desc.Digest.String()) || !strings.Contains(vr.Stdout, "does not name") {
		t.Errorf("nestattest verify of the moved statement: exit %d, %+v %v\n%s%s", vr.Code, doc.Summary, doc.failures(), vr.Stdout, vr.Stderr)
	}
}

// moveReferrer copies the referrer at from into repo with subject as its
// subject.
func moveReferrer(t *testing.T, from name.Digest, repo name.Repository, subject *v1.Descriptor) {
	t.Helper()
	got, err := remote.Get(from)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	m["subject"] = map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest.String(), "size": subject.Size}
	man, err := v1.ParseManifest(strings.NewReader(string(got.Manifest)))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]v1.Descriptor{man.Config}, man.Layers...) {
		l, err := remote.Layer(from.Context().Digest(d.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(repo, l); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(repo.Digest(sha256Of(raw)), rawManifest{raw: raw, mt: types.OCIManifestSchema1}, remote.WithContext(context.Background())); err != nil {
		t.Fatal(err)
	}
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

func sha256Of(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
