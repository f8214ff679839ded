package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/test/harness"
)

// emptyTrustedRoot is a sigstore trusted root that trusts nothing: what
// cosign needs to verify a key-signed bundle without a transparency log.
func emptyTrustedRoot(t *testing.T) string {
	return writeFile(t, "trusted_root.json", `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
}

// emptySigningConfig is a sigstore signing config with no services: cosign
// v3 signs with a key and no transparency log with it.
func emptySigningConfig(t *testing.T) string {
	return writeFile(t, "signing_config.json", `{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json"}`)
}

// cosign3 runs the real cosign CLI v3.1.3.
func cosign3(t *testing.T, env []string, args ...string) harness.Result {
	t.Helper()
	return harness.RunEnv(t, append(env, "COSIGN_YES=true", "TUF_ROOT="+t.TempDir()), harness.Tool(t, "cosign3"), args...)
}

// cosignVerifyBundles checks ref's bundles with cosign v2.6.5
// (--new-bundle-format) and v3.1.3: the signature and the SLSA v1
// provenance, by the key, with an empty trusted root and no tlog.
func cosignVerifyBundles(t *testing.T, pub, root, ref string) {
	t.Helper()
	common := []string{"--key", pub, "--trusted-root", root, "--insecure-ignore-tlog", "--allow-insecure-registry"}
	for _, run := range []struct {
		name string
		cmd  func(t *testing.T, env []string, args ...string) harness.Result
		args []string
	}{
		{"cosign v2.6.5", cosign, append([]string{"--new-bundle-format"}, common...)},
		{"cosign v3.1.3", cosign3, common},
	} {
		if r := run.cmd(t, nil, append(append([]string{"verify"}, run.args...), ref)...); r.Code != 0 {
			t.Errorf("%s verify %s: exit %d\n%s", run.name, ref, r.Code, r.Stderr)
		}
		if r := run.cmd(t, nil, append(append([]string{"verify-attestation", "--type", "slsaprovenance1"}, run.args...), ref)...); r.Code != 0 {
			t.Errorf("%s verify-attestation %s: exit %d\n%s", run.name, ref, r.Code, r.Stderr)
		}
	}
}

// registries are the two referrers paths: distribution has no referrers
// API (the sha256-<hex> fallback tag), go-containerregistry's registry
// serves one.
var bundleRegistries = []struct {
	name string
	new  func(t *testing.T) *harness.Registry
}{
	{"distribution-v3.1.2", func(t *testing.T) *harness.Registry {
		return harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	}},
	{"in-memory with referrers API", func(t *testing.T) *harness.Registry { return harness.InMemory(t, true) }},
}

// TestBundleVerifiedByCosign signs the 3-level, 5-repository tree with
// --format bundle on both registries; every node passes cosign v2's and
// v3's verify and verify-attestation, and a re-run writes nothing.
func TestBundleVerifiedByCosign(t *testing.T) {
	root := emptyTrustedRoot(t)
	for _, rc := range bundleRegistries {
		t.Run(rc.name, func(t *testing.T) {
			reg := rc.new(t)
			tree := pushKo(t, reg, "org/ko-build")
			k := newKeyPair(t, "cosign")
			proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
			ref := strings.Replace(tree.tag, reg.Host, proxy.Host, 1)
			r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref, "--format", "bundle")...)
			if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") {
				t.Fatalf("sign --format bundle: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			if c := proxy.Counts(); c.ByKind["manifest PUT"] == 0 || strings.Contains(strings.Join(proxy.Requests(), "\n"), ".sig") {
				t.Errorf("bundle run wrote %v; want referrers, no .sig tags", c.ByKind)
			}
			for _, node := range treeOf(t, tree.tag).refs() {
				cosignVerifyBundles(t, k.pub, root, node)
			}
			proxy.Reset()
			r = harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref, "--format", "bundle")...)
			if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") || proxy.Counts().Writes() != 0 {
				t.Errorf("re-run: exit %d, %d writes\n%s%s", r.Code, proxy.Counts().Writes(), r.Stdout, r.Stderr)
			}
			for _, format := range []string{"bundle", "auto"} {
				// Through the proxy: the host it was signed through is what
				// the signatures name.
				doc := verifyJSON(t, k.pub, ref, "--format", format, "--require-root")
				if doc.Summary.Failed != 0 || doc.Summary.Passed != 13 {
					t.Errorf("nestattest verify --format %s: %+v", format, doc.Summary)
				}
			}
		})
	}
}

// TestLegacyVerifiedByCosign3: a tree signed in the legacy layout passes
// cosign v3.1.3's verify and verify-attestation, and a re-run writes
// nothing; then --format both adds bundles, and nestattest verify reports
// the nodes that carry both.
func TestLegacyVerifiedByCosign3(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	ref := strings.Replace(tree.tag, reg.Host, proxy.Host, 1)
	if r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref, "--format", "legacy")...); r.Code != 0 {
		t.Fatalf("sign: exit %d\n%s", r.Code, r.Stderr)
	}
	for _, node := range treeOf(t, tree.tag).refs() {
		for _, args := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
			if r := cosign3(t, nil, append(args, "--key", k.pub, "--insecure-ignore-tlog", "--allow-insecure-registry", node)...); r.Code != 0 {
				t.Errorf("cosign v3.1.3 %s %s: exit %d\n%s", args[0], node, r.Code, r.Stderr)
			}
		}
	}
	proxy.Reset()
	if r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref, "--format", "legacy")...); r.Code != 0 || proxy.Counts().Writes() != 0 {
		t.Errorf("re-run: exit %d, %d writes", r.Code, proxy.Counts().Writes())
	}
	proxy.Reset()
	r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref, "--format", "both")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") {
		t.Fatalf("sign --format both: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if strings.Contains(strings.Join(proxy.Requests(), "\n"), "PUT /v2/org/ko-build/manifests/sha256-") &&
		strings.Contains(strings.Join(proxy.Requests(), "\n"), ".sig") {
		// the legacy tags were there already: only bundles (and their
		// fallback tags, sha256-<hex> without a suffix) are written
		for _, req := range proxy.Requests() {
			if strings.HasPrefix(req, "PUT") && (strings.HasSuffix(req, ".sig") || strings.HasSuffix(req, ".att")) {
				t.Errorf("--format both rewrote a legacy tag: %s", req)
			}
		}
	}
	doc := verifyJSON(t, k.pub, ref)
	if doc.Summary.Failed != 0 {
		t.Fatalf("verify after --format both: %+v %v", doc.Summary, doc.failures())
	}
	for _, n := range doc.Nodes {
		if len(n.Layouts) != 2 || n.Checks[0].Layout != "bundle" {
			t.Errorf("%s: carries %v, checked in %q; want both, bundles read first as cosign v3 does", n.Path, n.Layouts, n.Checks[0].Layout)
		}
	}
}

// TestVerifyTreeSignedByCosign3: every node but one leaf signed and
// attested by the cosign v3.1.3 CLI with its defaults (a key, no
// transparency log) passes nestattest verify --format bundle; the leaf is
// named, not signed.
func TestVerifyTreeSignedByCosign3(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	config := emptySigningConfig(t)
	predicate := writeFile(t, "provenance.json", slsaPredicate)
	refs := treeOf(t, tree.tag).refs()
	unsigned := refs[len(refs)-1]
	for _, ref := range refs[:len(refs)-1] {
		if r := cosign3(t, k.env(), "sign", "--key", k.key, "--signing-config", config, "--allow-insecure-registry", ref); r.Code != 0 {
			t.Fatalf("cosign3 sign %s: %d\n%s", ref, r.Code, r.Stderr)
		}
		if r := cosign3(t, k.env(), "attest", "--key", k.key, "--signing-config", config, "--allow-insecure-registry",
			"--type", "slsaprovenance1", "--predicate", predicate, ref); r.Code != 0 {
			t.Fatalf("cosign3 attest %s: %d\n%s", ref, r.Code, r.Stderr)
		}
	}
	doc := verifyJSON(t, k.pub, tree.tag, "--format", "bundle")
	var failed []string
	for _, n := range doc.Nodes {
		if !n.Passed {
			failed = append(failed, n.Repository+"@"+n.Digest+": "+n.Checks[0].Reason)
		}
	}
	if len(failed) != 1 || !strings.HasPrefix(failed[0], unsigned+": not signed") {
		t.Errorf("failed %q, want only %s, not signed", failed, unsigned)
	}
}

// TestSignWithKMS signs the tree with a key that never leaves local-kms (a
// real AWS KMS API server), configured as a user configures the AWS SDK;
// cosign and nestattest verify with the KMS reference, and the KMS calls
// per node are counted.
func TestSignWithKMS(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	kms := harness.StartKMS(t, harness.KMSOptions{})
	env := kms.Env()
	r := harness.RunEnv(t, env, harness.Binary(t), "sign", "--tlog-upload=false", "--key", kms.KeyRef(), "--format", "both", tree.tag)
	if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") {
		t.Fatalf("sign --key %s: exit %d\n%s%s", kms.KeyRef(), r.Code, r.Stdout, r.Stderr)
	}
	counts := kms.Counts()
	nodes := len(tree.expect)
	t.Logf("KMS requests for %d nodes in two layouts: %v; %.1f Sign calls a node",
		nodes, counts, float64(counts[harness.KMSSign])/float64(nodes))
	// Three remote Sign calls a node: the legacy and the bundle signatures
	// sign different payloads, the attestation's envelope is signed once
	// for both layouts.
	if counts[harness.KMSGetPublicKey] > 1 || counts[harness.KMSSign] != 3*nodes {
		t.Errorf("KMS requests %v, want one GetPublicKey and %d Sign", counts, 3*nodes)
	}
	root := emptyTrustedRoot(t)
	for _, node := range treeOf(t, tree.tag).refs() {
		for _, args := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
			// cosign v2.6.5 reads the bundles too once there are any, and
			// needs a trusted root for them.
			if r := cosign(t, env, append(args, "--key", kms.KeyRef(), "--trusted-root", root, "--insecure-ignore-tlog", "--allow-insecure-registry", node)...); r.Code != 0 {
				t.Errorf("cosign %s --key %s %s: exit %d\n%s", args[0], kms.KeyRef(), node, r.Code, r.Stderr)
			}
			if r := cosign3(t, env, append(args, "--key", kms.KeyRef(), "--trusted-root", root, "--insecure-ignore-tlog", "--allow-insecure-registry", node)...); r.Code != 0 {
				t.Errorf("cosign3 %s --key %s %s: exit %d\n%s", args[0], kms.KeyRef(), node, r.Code, r.Stderr)
			}
		}
	}
	if r := harness.RunEnv(t, env, harness.Binary(t), "verify", "--key", kms.KeyRef(), "--insecure-ignore-tlog", "--require-root", tree.tag); r.Code != 0 {
		t.Errorf("nestattest verify --key %s: exit %d\n%s%s", kms.KeyRef(), r.Code, r.Stdout, r.Stderr)
	}
	kms.Reset()
	if r := harness.RunEnv(t, env, harness.Binary(t), "sign", "--tlog-upload=false", "--key", kms.KeyRef(), "--format", "both", tree.tag); r.Code != 0 || kms.Counts()[harness.KMSSign] != 0 {
		t.Errorf("re-run: exit %d, KMS %v: a re-run must recognise its signatures without a remote call", r.Code, kms.Counts())
	}
}

// TestConcurrentBundleRuns starts two signing runs together on one
// 100-node tree, on both registries: no update of a fallback tag is lost,
// every node verifies, every node carries a signature and an attestation
// and at most one of each from each run (the runs race for a node, so
// each may write it: at most 2 duplicates a node), and a third run writes
// nothing.
func TestConcurrentBundleRuns(t *testing.T) {
	for _, rc := range bundleRegistries {
		t.Run(rc.name, func(t *testing.T) {
			reg := rc.new(t)
			tag := pushWideTo(t, reg, "org/wide", 9, 10) // 1 + 9 + 90 nodes
			k := newKeyPair(t, "cosign")
			// Every run signs through the proxy: the host is in what is
			// signed, and the third run's writes are counted there.
			proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
			proxied := strings.Replace(tag, reg.Host, proxy.Host, 1)
			var wg sync.WaitGroup
			results := make([]harness.Result, 2)
			for i := range results {
				wg.Go(func() {
					results[i] = harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, proxied, "--format", "bundle")...)
				})
			}
			wg.Wait()
			for i, r := range results {
				if r.Code != 0 {
					t.Fatalf("run %d: exit %d\n%s%s", i, r.Code, r.Stdout, r.Stderr)
				}
				t.Logf("run %d: %s", i, strings.TrimSpace(r.Stdout))
			}
			doc := verifyJSON(t, k.pub, proxied, "--format", "bundle")
			if doc.Summary.Nodes != 100 || doc.Summary.Failed != 0 {
				t.Fatalf("verify after two concurrent runs: %+v", doc.Summary)
			}
			total, dup := bundleCounts(t, doc)
			t.Logf("%d bundles for %d nodes: %d duplicates (a signature or attestation written by both runs)", total, len(doc.Nodes), dup)
			proxy.Reset()
			r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, proxied, "--format", "bundle")...)
			if r.Code != 0 || proxy.Counts().Writes() != 0 {
				t.Errorf("third run: exit %d, %d writes\n%s", r.Code, proxy.Counts().Writes(), r.Stderr)
			}
		})
	}
}

// bundleCounts counts the bundles listed for every node of a verified
// tree, and those beyond one signature and one attestation a node. It
// fails the test for a node with fewer than 2 bundles, or more than the 4
// that two runs may write (a signature and an attestation each).
func bundleCounts(t *testing.T, doc verifyDoc) (total, duplicates int) {
	t.Helper()
	c := registry.NewClient(registry.Options{})
	for _, n := range doc.Nodes {
		repo, err := name.NewRepository(n.Repository)
		if err != nil {
			t.Fatal(err)
		}
		h, err := v1.NewHash(n.Digest)
		if err != nil {
			t.Fatal(err)
		}
		refs, err := c.Referrers(context.Background(), repo, h)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) < 2 || len(refs) > 4 {
			t.Errorf("%s@%s: %d bundles, want a signature and an attestation, at most one of each from each of the 2 runs", n.Repository, n.Digest, len(refs))
		}
		total += len(refs)
		duplicates += len(refs) - 2
	}
	return total, duplicates
}

// verifyJSON runs nestattest verify -o json with the key, tlog off, and
// fails the test unless it ran and printed its report.
func verifyJSON(t *testing.T, pub, ref string, args ...string) verifyDoc {
	t.Helper()
	doc, r := verifyTree(t, pub, ref, args...)
	if r.Code != 0 && r.Code != 1 {
		t.Fatalf("verify -o json %s: exit %d\n%s", ref, r.Code, r.Stderr)
	}
	return doc
}
