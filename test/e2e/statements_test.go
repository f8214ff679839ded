package e2e

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
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
		// mounts is the cross-repository mounts the run asks for (-1: not
		// counted): distribution mounts; go-containerregistry's registry
		// opens an upload instead, and is asked until that is known.
		mounts int
	}{
		{"bundle on distribution-v3.1.2", "bundle", func(t *testing.T) *harness.Registry {
			return harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
		}, "2 signatures", "2 tree statements", 12},
		{"bundle with referrers API", "bundle", func(t *testing.T) *harness.Registry { return harness.InMemory(t, true) }, "2 signatures", "2 tree statements", -1},
		{"legacy on distribution-v3.1.2", "legacy", func(t *testing.T) *harness.Registry {
			return harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
		}, "14 signatures", "1 tree statement", -1},
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
			if tc.mounts >= 0 {
				// A tree statement's bundle and the empty config go up to
				// the first of the five repositories, and are mounted into
				// the other four.
				mounts := 0
				for _, req := range proxy.Requests() {
					if strings.HasPrefix(req, "POST ") && strings.Contains(req, "mount=") {
						mounts++
					}
				}
				if mounts != tc.mounts {
					t.Errorf("%d cross-repository mounts, want %d", mounts, tc.mounts)
				}
			}
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

// TestTreeStatementsWithEveryIdentity signs, with --statements tree, the
// 3-level, 5-repository tree and a 100-node tree over 10 repositories, in
// each format, with a key file, a KMS key (local-kms) and keylessly
// (Fulcio, rekor-tiles, timestamp authority). It counts what a tree costs
// (signatures and tree statements, KMS Sign calls, certificates, Rekor
// entries, timestamps: 2 statements a chunk in bundles; 1 a chunk plus a
// .sig a node in the legacy layout); nodes pass cosign v2.6.5's and
// v3.1.3's verify and verify-attestation, and policy-controller v0.15.1's
// policy-tester (a key authority on the legacy layout, a keyless
// authority on bundles: the only bundle authority it takes); nestattest
// verify passes every node; a re-run signs nothing. cosign and
// policy-tester check every node of the small tree and, of the 100-node
// one, a sample reaching every level and repository (every node with
// NESTATTEST_EVERY_NODE=1).
func TestTreeStatementsWithEveryIdentity(t *testing.T) {
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	kms := harness.StartKMS(t, harness.KMSOptions{})
	root := emptyTrustedRoot(t)
	kmsPub := writeFile(t, "kms.pub", publicPEM(t, kms.PublicKey))
	trustRoot, keylessPolicy := keylessBundlePolicy(t, s, s.Identity)
	_, otherSubject := keylessBundlePolicy(t, s, "someone@else.example")
	other := newKeyPair(t, "other")
	for _, shape := range []struct {
		name  string
		nodes int
		push  func(t *testing.T, reg *harness.Registry) string
	}{
		{"3-level", 13, func(t *testing.T, reg *harness.Registry) string { return pushKo(t, reg, "org/ko-build").tag }},
		{"100-node", 100, func(t *testing.T, reg *harness.Registry) string { return pushWideTo(t, reg, "org/ko-build", 9, 10) }},
	} {
		for _, identity := range []string{"key", "kms", "keyless"} {
			for _, format := range []string{"bundle", "legacy"} {
				t.Run(shape.name+"/"+identity+"/"+format, func(t *testing.T) {
					reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
					tag := shape.push(t, reg)
					n := shape.nodes
					// What one chunk costs: bundles, the two statements;
					// legacy, a .sig a node and the attestations' statement.
					signatures, statements := 2, 2
					if format == "legacy" {
						signatures, statements = n+1, 1
					}
					var sign func() harness.Result
					var cost func() string
					var verifyNode func(node string)
					// policy admits the nodes; wrong is the same policy for
					// another key or subject, and refuses them.
					var policy, wrong string
					var policyArgs, verifyArgs, env []string
					switch identity {
					case "key":
						k := newKeyPair(t, "cosign")
						verifyArgs = []string{"--key", k.pub, "--insecure-ignore-tlog"}
						sign = func() harness.Result {
							return harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tag, "--format", format, "--statements", "tree")...)
						}
						cost = func() string { return "" }
						verifyNode = func(node string) { cosignVerifyKey(t, nil, k.pub, root, node, format) }
						if format == "legacy" {
							policy = provenancePolicy(t, reg.Host, readFile(t, k.pub), "https://github.com/nestattest/nestattest")
							wrong = provenancePolicy(t, reg.Host, readFile(t, other.pub), "https://github.com/nestattest/nestattest")
						}
					case "kms":
						sign = func() harness.Result {
							kms.Reset()
							return harness.RunEnv(t, kms.Env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", kms.KeyRef(), "--format", format, "--statements", "tree", tag)
						}
						cost = func() string {
							if got := kms.Counts()[harness.KMSSign]; got != signatures {
								t.Errorf("%d KMS Sign calls, want %d", got, signatures)
							}
							return fmt.Sprintf("%d KMS Sign calls", kms.Counts()[harness.KMSSign])
						}
						verifyNode = func(node string) { cosignVerifyKey(t, kms.Env(), kms.KeyRef(), root, node, format) }
						verifyArgs, env = []string{"--key", kms.KeyRef(), "--insecure-ignore-tlog"}, kms.Env()
						if format == "legacy" {
							policy = provenancePolicy(t, reg.Host, readFile(t, kmsPub), "https://github.com/nestattest/nestattest")
							wrong = provenancePolicy(t, reg.Host, readFile(t, other.pub), "https://github.com/nestattest/nestattest")
						}
					case "keyless":
						var before harness.SigstoreCounts
						sign = func() harness.Result {
							before = s.Requests()
							return keylessSign(t, s, tag, format, "--statements", "tree")
						}
						cost = func() string {
							d := s.Requests()
							certs, entries, stamps := d.Certificates-before.Certificates, d.Entries-before.Entries, d.Timestamps-before.Timestamps
							// legacy: the statement's envelope is timestamped
							// too (cosign's layer annotation).
							wantStamps := signatures
							if format == "legacy" {
								wantStamps++
							}
							if certs != 1 || entries != signatures || stamps != wantStamps {
								t.Errorf("%d certificates, %d Rekor entries, %d timestamps; want 1, %d, %d", certs, entries, stamps, signatures, wantStamps)
							}
							return fmt.Sprintf("%d certificate, %d Rekor entries, %d timestamps", certs, entries, stamps)
						}
						verifyNode = func(node string) { cosignVerifyKeyless(t, s, node, format) }
						verifyArgs = identityFlags(s)
						if format == "legacy" {
							verifyArgs = append(verifyArgs, "--insecure-ignore-tlog")
						}
						if format == "bundle" {
							policy, wrong = keylessPolicy, otherSubject
							policyArgs = []string{"--trustroot", trustRoot}
						}
					}
					r := sign()
					want := fmt.Sprintf("%d written", n)
					summary := fmt.Sprintf("%d signatures (%d tree statement", signatures, statements)
					if r.Code != 0 || !strings.Contains(r.Stdout, want) || !strings.Contains(r.Stdout, summary) {
						t.Fatalf("sign --statements tree: exit %d, want %s and %s)\n%s%s", r.Code, want, summary, r.Stdout, r.Stderr)
					}
					t.Logf("%s, %s, %s, %d nodes: %s; %s", shape.name, identity, format, n, strings.TrimSpace(lastLines(r.Stdout, 1)), cost())

					nodes := treeOf(t, tag).refs()
					if len(nodes) != n {
						t.Fatalf("%d nodes in the tree, want %d", len(nodes), n)
					}
					checked := sampleNodes(nodes)
					for _, node := range checked {
						verifyNode(node)
						if policy != "" {
							if ok, why := admitted(t, policy, node, policyArgs...); !ok {
								t.Errorf("policy-tester refuses %s:\n%s", node, why)
							}
						}
					}
					if wrong != "" {
						if ok, _ := admitted(t, wrong, nodes[0], policyArgs...); ok {
							t.Errorf("policy-tester admits %s for another key or subject", nodes[0])
						}
					}
					t.Logf("cosign v2.6.5 and v3.1.3 verify and verify-attestation%s pass on %d of %d nodes", map[bool]string{true: ", and policy-tester,"}[policy != ""], len(checked), n)

					verify := append([]string{"verify", "-o", "json", "--require-root", "--format", format, tag}, verifyArgs...)
					vr := harness.RunEnv(t, env, harness.Binary(t), verify...)
					var doc verifyDoc
					if err := json.Unmarshal([]byte(vr.Stdout), &doc); err != nil || vr.Code != 0 || doc.Summary.Passed != n {
						t.Errorf("nestattest verify: exit %d, %v, %+v, %v\n%s", vr.Code, err, doc.Summary, doc.failures(), lastLines(vr.Stderr, 3))
					}
					if r := sign(); r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") || !strings.Contains(r.Stdout, "0 signatures") {
						t.Errorf("re-run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
					}
					if identity == "kms" && kms.Counts()[harness.KMSSign] != 0 {
						t.Errorf("re-run: %d KMS Sign calls, want none", kms.Counts()[harness.KMSSign])
					}
				})
			}
		}
	}
}

// cosignVerifyKey checks a node signed with the key ref (a public key
// file or a KMS reference, env its credentials) with cosign v2.6.5 and
// v3.1.3: verify and verify-attestation, offline (no transparency log),
// bundles with an empty trusted root.
func cosignVerifyKey(t *testing.T, env []string, key, root, node, format string) {
	t.Helper()
	for _, verb := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
		v3 := append(verb, "--key", key, "--insecure-ignore-tlog", "--allow-insecure-registry", node)
		v2 := v3
		if format == "bundle" {
			v2 = append([]string{verb[0], "--new-bundle-format", "--trusted-root", root}, v3[1:]...)
			v3 = append([]string{verb[0], "--trusted-root", root}, v3[1:]...)
		}
		if r := cosign(t, env, v2...); r.Code != 0 {
			t.Errorf("cosign v2.6.5 %s %s (%s): exit %d\n%s", verb[0], node, format, r.Code, lastLines(r.Stderr, 3))
		}
		if r := cosign3(t, env, v3...); r.Code != 0 {
			t.Errorf("cosign v3.1.3 %s %s (%s): exit %d\n%s", verb[0], node, format, r.Code, lastLines(r.Stderr, 3))
		}
	}
}

// readFile is the file at path.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publicPEM is pub as a PEM public key, as cosign writes cosign.pub.
func publicPEM(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// sampleNodes is the nodes a test checks with the consumers' CLIs: all of
// a small tree, or with NESTATTEST_EVERY_NODE=1; otherwise the first node
// of every repository and every twentieth node.
func sampleNodes(nodes []string) []string {
	if len(nodes) <= 13 || os.Getenv("NESTATTEST_EVERY_NODE") == "1" {
		return nodes
	}
	var out []string
	seen := map[string]int{}
	for i, n := range nodes {
		repo, _, _ := strings.Cut(n, "@")
		if seen[repo]++; seen[repo] == 1 || i%20 == 0 {
			out = append(out, n)
		}
	}
	return out
}

// keylessBundlePolicy writes, for policy-tester, a TrustRoot of the
// stack's Fulcio and TSA and a ClusterImagePolicy whose keyless authority
// reads bundles (signatureFormat: bundle) by that trust root, the signing
// time from the TSA, and requires SLSA v1 provenance signed by subject.
func keylessBundlePolicy(t *testing.T, s *harness.Sigstore, subject string) (trustRoot, policy string) {
	t.Helper()
	roots, tsa := legacyTrust(t, s)
	trustRoot = writeFile(t, "trustroot.yaml", fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1alpha1
kind: TrustRoot
metadata:
  name: harness
spec:
  sigstoreKeys:
    certificateAuthorities:
    - subject:
        organization: nestattest harness
        commonName: fulcio
      uri: %[1]s
      certChain: %[2]s
    timestampAuthorities:
    - subject:
        organization: nestattest harness
        commonName: tsa
      uri: %[3]s
      certChain: %[4]s
`, s.FulcioURL, base64.StdEncoding.EncodeToString(readFile(t, roots)), s.TSAURL, base64.StdEncoding.EncodeToString(readFile(t, tsa))))
	policy = writeFile(t, "cip-keyless.yaml", fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: tree-keyless
spec:
  images:
  - glob: "**"
  authorities:
  - name: keyless
    signatureFormat: bundle
    keyless:
      url: %[1]s
      trustRootRef: harness
      insecureIgnoreSCT: true
      identities:
      - issuer: %[2]s
        subject: %[3]s
    rfc3161timestamp:
      trustRootRef: harness
%[4]s`, s.FulcioURL, s.Issuer, subject, provenanceAttestations("https://github.com/nestattest/nestattest")))
	return trustRoot, policy
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
%[3]s`, host, strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        "), provenanceAttestations(builderID)))
}

// provenanceAttestations is a ClusterImagePolicy authority's
// attestations: SLSA v1 provenance whose builder is builderID.
func provenanceAttestations(builderID string) string {
	return fmt.Sprintf(`    attestations:
    - name: provenance
      predicateType: https://slsa.dev/provenance/v1
      policy:
        type: cue
        data: |
          predicateType: "https://slsa.dev/provenance/v1"
          predicate: runDetails: builder: id: %q
`, builderID)
}
