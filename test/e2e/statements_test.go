package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/registry"
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
			if tc.format == "legacy" {
				// policy-controller v0.15.1 verifies bundles only for
				// keyless authorities: with a key, the legacy layout.
				pub, err := os.ReadFile(k.pub)
				if err != nil {
					t.Fatal(err)
				}
				policy := provenancePolicy(t, reg.Host, pub, "https://github.com/nestattest/nestattest")
				for _, node := range treeOf(t, tree.tag).refs() {
					if ok, why := admitted(t, policy, node); !ok {
						t.Errorf("policy-tester refuses %s:\n%s", node, why)
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

// TestTreeStatementsWithEveryIdentity signs the 3-level, 5-repository tree
// with --statements tree in each format, with a KMS key (local-kms) and
// keylessly (Fulcio, rekor-tiles, timestamp authority): it counts the
// KMS Sign calls, certificates, Rekor entries and timestamps a tree
// costs; every node passes cosign v2.6.5's and v3.1.3's verify and
// verify-attestation and nestattest verify; a re-run signs nothing.
func TestTreeStatementsWithEveryIdentity(t *testing.T) {
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	kms := harness.StartKMS(t, harness.KMSOptions{})
	root := emptyTrustedRoot(t)
	for _, format := range []string{"bundle", "legacy"} {
		t.Run("kms/"+format, func(t *testing.T) {
			reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
			tree := pushKo(t, reg, "org/ko-build")
			kms.Reset()
			args := []string{"sign", "--tlog-upload=false", "--key", kms.KeyRef(), "--format", format, "--statements", "tree", tree.tag}
			r := harness.RunEnv(t, kms.Env(), harness.Binary(t), args...)
			if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") {
				t.Fatalf("sign: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			// bundle: the two tree statements; legacy: a .sig a node and
			// the attestations' tree statement.
			want := map[string]int{"bundle": 2, "legacy": 14}[format]
			t.Logf("KMS, %s: %v for 13 nodes; %s", format, kms.Counts(), lastLines(r.Stdout, 1))
			if got := kms.Counts()[harness.KMSSign]; got != want {
				t.Errorf("%d KMS Sign calls, want %d", got, want)
			}
			for _, node := range treeOf(t, tree.tag).refs() {
				for _, verb := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
					common := append(verb, "--key", kms.KeyRef(), "--insecure-ignore-tlog", "--allow-insecure-registry", node)
					v2 := common
					if format == "bundle" {
						v2 = append([]string{verb[0], "--new-bundle-format", "--trusted-root", root}, common[1:]...)
						common = append([]string{verb[0], "--trusted-root", root}, common[1:]...)
					}
					if r := cosign(t, kms.Env(), v2...); r.Code != 0 {
						t.Errorf("cosign v2.6.5 %s %s: exit %d\n%s", verb[0], node, r.Code, lastLines(r.Stderr, 3))
					}
					if r := cosign3(t, kms.Env(), common...); r.Code != 0 {
						t.Errorf("cosign v3.1.3 %s %s: exit %d\n%s", verb[0], node, r.Code, lastLines(r.Stderr, 3))
					}
				}
			}
			if r := harness.RunEnv(t, kms.Env(), harness.Binary(t), "verify", "--key", kms.KeyRef(), "--insecure-ignore-tlog", "--require-root", "--format", format, tree.tag); r.Code != 0 {
				t.Errorf("nestattest verify: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			kms.Reset()
			if r := harness.RunEnv(t, kms.Env(), harness.Binary(t), args...); r.Code != 0 || kms.Counts()[harness.KMSSign] != 0 || !strings.Contains(r.Stdout, "nothing to write") {
				t.Errorf("re-run: exit %d, KMS %v\n%s", r.Code, kms.Counts(), r.Stdout)
			}
		})
		t.Run("keyless/"+format, func(t *testing.T) {
			reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
			tree := pushKo(t, reg, "org/ko-build")
			before := s.Requests()
			r := keylessSign(t, s, tree.tag, format, "--statements", "tree")
			if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") {
				t.Fatalf("keyless sign: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			after := s.Requests()
			certs, entries, stamps := after.Certificates-before.Certificates, after.Entries-before.Entries, after.Timestamps-before.Timestamps
			t.Logf("keyless, %s: %d certificate, %d Rekor entries, %d timestamps for 13 nodes; %s", format, certs, entries, stamps, lastLines(r.Stdout, 1))
			// bundle: 2 statements, each logged and timestamped once;
			// legacy: 13 .sig and 1 statement logged, and timestamped,
			// the statement's envelope too.
			wantEntries, wantStamps := 2, 2
			if format == "legacy" {
				wantEntries, wantStamps = 14, 15
			}
			if certs != 1 || entries != wantEntries || stamps != wantStamps {
				t.Errorf("%d certificates, %d entries, %d timestamps; want 1, %d, %d", certs, entries, stamps, wantEntries, wantStamps)
			}
			for _, node := range treeOf(t, tree.tag).refs() {
				cosignVerifyKeyless(t, s, node, format)
			}
			args := identityFlags(s)
			if format == "legacy" {
				args = append(args, "--insecure-ignore-tlog")
			}
			if doc, vr := verifyTree(t, "", tree.tag, append(args, "--require-root", "--format", format)...); vr.Code != 0 || doc.Summary.Passed != 13 {
				t.Errorf("nestattest verify by identity: exit %d, %+v, %v", vr.Code, doc.Summary, doc.failures())
			}
			before = s.Requests()
			if r := keylessSign(t, s, tree.tag, format, "--statements", "tree"); r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") {
				t.Errorf("re-run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			if d := s.Requests(); d.Entries != before.Entries || d.Timestamps != before.Timestamps {
				t.Errorf("re-run logged or timestamped: %+v then %+v", before, d)
			}
		})
	}
}

// TestTreeStatementsChunks signs a 1,501-node tree, its children mirrored
// into the root's repository (3,001 subjects), with --statements tree: its
// statements are split into balanced chunks of at most 1,024 subjects,
// each signed once; nestattest verify passes every node, and cosign
// v3.1.3 a node of every chunk.
func TestTreeStatementsChunks(t *testing.T) {
	reg := harness.InMemory(t, true)
	tag := pushWideTo(t, reg, "org/wide", 15, 99) // 1 + 15 + 1,485 nodes
	k := newKeyPair(t, "cosign")
	start := time.Now()
	r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tag, "--format", "bundle", "--statements", "tree", "-o", "json")...)
	signed := time.Since(start)
	if r.Code != 0 {
		t.Fatalf("sign: exit %d\n%s", r.Code, r.Stderr)
	}
	var doc struct {
		Summary struct{ Nodes, Written int }
		Signing struct{ Signatures, Statements int }
	}
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatal(err)
	}
	t.Logf("1,501 nodes: %+v, %+v", doc.Summary, doc.Signing)
	if doc.Summary.Nodes != 1501 || doc.Summary.Written != 1501 || doc.Signing.Statements != 6 || doc.Signing.Signatures != 6 {
		t.Fatalf("%+v %+v; want 1501 written, 3 chunks of each kind signed once", doc.Summary, doc.Signing)
	}
	start = time.Now()
	vdoc := verifyJSON(t, k.pub, tag, "--format", "bundle", "--require-root")
	verified := time.Since(start)
	if vdoc.Summary.Passed != 1501 || vdoc.Summary.Failed != 0 {
		t.Fatalf("verify: %+v", vdoc.Summary)
	}
	refs := treeOf(t, tag).refs()
	t.Logf("signed in %s, verified in %s", signed, verified)
	chunks := map[string]bool{}
	c := registry.NewClient(registry.Options{})
	// A node in every 50, and the last: the chunks are runs of subjects in
	// tree order, so each is met.
	for i, node := range refs {
		if i%50 != 0 && i != len(refs)-1 {
			continue
		}
		ref, err := name.NewDigest(node)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := v1.NewHash(ref.DigestStr())
		descs, err := c.Referrers(context.Background(), ref.Context(), h)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range descs {
			if d.Annotations["dev.sigstore.bundle.predicateType"] == "https://sigstore.dev/cosign/sign/v1" {
				continue
			}
			// the bundle's blob is the chunk's statement: the first node
			// seen of each chunk is checked with cosign
			m, err := c.GetManifest(context.Background(), ref.Context().Digest(d.Digest.String()), registry.MaxManifestBytes)
			if err != nil {
				t.Fatal(err)
			}
			man, err := v1.ParseManifest(strings.NewReader(string(m.Raw)))
			if err != nil {
				t.Fatal(err)
			}
			blob := man.Layers[0].Digest.String()
			if chunks[blob] {
				continue
			}
			chunks[blob] = true
			raw, err := c.ReadBlob(context.Background(), ref.Context(), man.Layers[0], 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			var b struct {
				DSSEEnvelope struct{ Payload []byte } `json:"dsseEnvelope"`
			}
			var st struct{ Subject []json.RawMessage }
			if err := json.Unmarshal(raw, &b); err != nil || json.Unmarshal(b.DSSEEnvelope.Payload, &st) != nil {
				t.Fatalf("the bundle of %s: %v", node, err)
			}
			t.Logf("chunk %d: %d subjects, checked on %s", len(chunks), len(st.Subject), node)
			if len(st.Subject) > 1024 || len(st.Subject) < 1000 {
				t.Errorf("a statement of %d subjects; want 3,001 split in 3 balanced chunks", len(st.Subject))
			}
			cosignVerifyBundles(t, k.pub, emptyTrustedRoot(t), node)
		}
	}
	if len(chunks) != 3 {
		t.Errorf("%d distinct attestation statements, want 3", len(chunks))
	}
}

// provenancePolicy is a ClusterImagePolicy for the tree's repositories:
// signed with the key pub, and carrying SLSA v1 provenance whose builder
// is builderID.
func provenancePolicy(t *testing.T, host string, pub []byte, builderID string) string {
	t.Helper()
	return writeFile(t, "cip.yaml", fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: tree-provenance
spec:
  images:
  - glob: "%[1]s/org/ko-build@*"
  - glob: "%[1]s/org/ko-build/**"
  authorities:
  - name: tree
    key:
      hashAlgorithm: sha256
      data: |
        %[2]s
    attestations:
    - name: provenance
      predicateType: https://slsa.dev/provenance/v1
      policy:
        type: cue
        data: |
          predicateType: "https://slsa.dev/provenance/v1"
          predicate: runDetails: builder: id: "%[3]s"
`, host, strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        "), builderID))
}
