package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestattest/nestattest/test/harness"
)

// vsaType is the predicate type of a SLSA verification summary.
const vsaType = "https://slsa.dev/verification_summary/v1"

// vsaPredicate is what the tests read of a summary.
type vsaPredicate struct {
	Verifier struct {
		ID      string
		Version map[string]string
	}
	TimeVerified string
	ResourceURI  string
	Policy       struct {
		URI    string
		Digest map[string]string
	}
	InputAttestations []struct {
		URI    string
		Digest map[string]string
	}
	VerificationResult string
	VerifiedLevels     []string
}

// cosignVSAs runs cosign v2.6.5 and v3.1.3 verify-attestation --type
// <VSA> with the VSA key on ref and returns, for each, the summaries
// cosign printed; a cosign that refuses returns none.
func cosignVSAs(t *testing.T, pub, ref string) map[string][]vsaPredicate {
	t.Helper()
	common := []string{"verify-attestation", "--type", vsaType, "--key", pub, "--insecure-ignore-tlog", "--allow-insecure-registry", "--trusted-root", emptyTrustedRoot(t)}
	out := map[string][]vsaPredicate{}
	for _, run := range []struct {
		name string
		cmd  func(t *testing.T, env []string, args ...string) harness.Result
	}{{"cosign v2.6.5", cosign}, {"cosign v3.1.3", cosign3}} {
		r := run.cmd(t, nil, append(common, ref)...)
		if r.Code != 0 {
			out[run.name] = nil
			continue
		}
		for _, payload := range harness.AttestedPayloads(t, r.Stdout) {
			var st struct{ Predicate vsaPredicate }
			if err := json.Unmarshal(payload, &st); err != nil {
				t.Fatal(err)
			}
			out[run.name] = append(out[run.name], st.Predicate)
		}
	}
	return out
}

// vsaPolicySample is the documented ClusterImagePolicy that admits an
// image by its verification summary alone.
const vsaPolicySample = "docs/policy/vsa/clusterimagepolicy.yaml"

// vsaPolicy is vsaPolicySample filled in for every repository below
// namespace: signed by the VSA key, PASSED, of the policy whose digest is
// given.
func vsaPolicy(t *testing.T, host, namespace, pubFile, policyDigest string) string {
	t.Helper()
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(shipRoot(t), vsaPolicySample))
	if err != nil {
		t.Fatal(err)
	}
	cip := strings.NewReplacer("REGISTRY", host, "NAMESPACE", namespace, "POLICY_DIGEST", policyDigest,
		"VSA_PUBLIC_KEY", strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        ")).Replace(string(raw))
	return writeFile(t, "cip-vsa.yaml", cip)
}

// TestVerifyVSA: verify --vsa-key over the ko case gives every node a
// summary cosign v2.6.5 and v3.1.3 verify with the VSA key, PASSED, naming
// the node and the policy; policy-tester admits a child by its summary
// alone; a re-run writes nothing. On a tree with an unsigned leaf, verify
// fails, and no PASSED summary covers the leaf, per node or per tree.
func TestVerifyVSA(t *testing.T) {
	upstream := harness.Distribution(t, harness.DistributionOptions{})
	proxy := harness.NewProxy(t, upstream.Host, harness.ProxyOptions{})
	reg := &harness.Registry{Host: proxy.Host, Name: upstream.Name}
	refs := koBuild(t, reg, "org/ko-vsa", "app1", "app2")
	k, v := newKeyPair(t, "cosign"), newKeyPair(t, "vsa")
	tag := reg.Ref("org/ko-vsa:latest")
	doc := signSBOMs(t, k, tag, "--from", refs)
	var nodes []string
	for _, n := range doc.Nodes {
		nodes = append(nodes, n.Repository+"@"+n.Digest)
	}
	child := nodes[len(nodes)-1]

	verifyArgs := []string{"verify", "--key", k.pub, "--insecure-ignore-tlog", "--type", "slsaprovenance1", "--type", "spdxjson", "--require-sbom",
		"--vsa-key", v.key, "--vsa-format", "both", "--tlog-upload=false", "-o", "json", tag}
	r := harness.RunEnv(t, v.env(), harness.Binary(t), verifyArgs...)
	if r.Code != 0 {
		t.Fatalf("verify --vsa-key: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("nestattest verify --vsa-key:\n%s", r.Stderr)
	var policyDigest string
	for _, node := range nodes {
		for cosignName, sums := range cosignVSAs(t, v.pub, node) {
			if len(sums) != 1 {
				t.Errorf("%s verify-attestation --type %s %s: %d summaries, want 1", cosignName, vsaType, node, len(sums))
				continue
			}
			s := sums[0]
			if s.VerificationResult != "PASSED" || s.ResourceURI != "oci://"+node || s.Verifier.ID != "https://github.com/nestattest/nestattest" ||
				len(s.InputAttestations) < 2 || len(s.VerifiedLevels) != 1 || s.VerifiedLevels[0] != "SLSA_BUILD_LEVEL_1" || !strings.HasPrefix(s.Policy.URI, "data:application/json,") {
				t.Errorf("%s on %s: summary %+v", cosignName, node, s)
			}
			if policyDigest == "" {
				policyDigest = s.Policy.Digest["sha256"]
			}
			if s.Policy.Digest["sha256"] != policyDigest {
				t.Errorf("%s: policy %v, want the run's one policy", node, s.Policy.Digest)
			}
		}
	}
	t.Logf("cosign v2.6.5 and v3.1.3 verify-attestation --type %s --key vsa.pub: a PASSED summary on each of %d nodes, policy sha256:%s", vsaType, len(nodes), policyDigest)

	policy := vsaPolicy(t, reg.Host, "org/ko-vsa", v.pub, policyDigest)
	if ok, why := admitted(t, policy, child); !ok {
		t.Errorf("policy-tester refuses %s with its summary:\n%s", child, why)
	} else {
		t.Logf("policy-tester admits %s by its verification summary alone", child)
	}
	other := vsaPolicy(t, reg.Host, "org/ko-vsa", v.pub, strings.Repeat("0", 64))
	if ok, _ := admitted(t, other, child); ok {
		t.Errorf("policy-tester admits %s for a summary of another policy", child)
	}

	proxy.Reset()
	if r := harness.RunEnv(t, v.env(), harness.Binary(t), verifyArgs...); r.Code != 0 || proxy.Counts().Writes() != 0 {
		t.Errorf("verify --vsa-key again: exit %d, %d writes\n%s", r.Code, proxy.Counts().Writes(), r.Stderr)
	}

	sparse := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	for _, mode := range []string{"node", "tree"} {
		t.Run("unsigned leaf "+mode, func(t *testing.T) {
			tree := pushKo(t, sparse, "org/leaf-"+mode)
			if r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tree.tag)...); r.Code != 0 {
				t.Fatalf("sign: exit %d\n%s", r.Code, r.Stderr)
			}
			refs := treeOf(t, tree.tag).refs()
			leaf := refs[2]
			if r := harness.Run(t, harness.Tool(t, "crane"), "delete", "--insecure", sigTag(leaf)); r.Code != 0 {
				t.Fatalf("crane delete: %s", r.Stderr)
			}
			r := harness.RunEnv(t, v.env(), harness.Binary(t), "verify", "--key", k.pub, "--insecure-ignore-tlog",
				"--vsa-key", v.key, "--tlog-upload=false", "--statements", mode, tree.tag)
			if r.Code != 1 || !strings.Contains(r.Stdout, "FAILED") {
				t.Fatalf("verify with an unsigned leaf: exit %d, want 1\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			t.Logf("verify --statements %s with the leaf unsigned: exit %d\n%s\n%s", mode, r.Code, lastLines(r.Stdout, 2), r.Stderr)
			for _, node := range refs {
				for cosignName, sums := range cosignVSAs(t, v.pub, node) {
					switch {
					case node == leaf && len(sums) != 0:
						t.Errorf("%s: the unsigned leaf %s carries summaries %+v", cosignName, leaf, sums)
					case node != leaf && (len(sums) != 1 || sums[0].VerificationResult != "PASSED"):
						t.Errorf("%s: %s carries %+v, want a PASSED summary", cosignName, node, sums)
					}
				}
			}
			t.Logf("cosign v2.6.5 and v3.1.3: no summary on the unsigned leaf %s; a PASSED one on each of the other %d nodes", leaf, len(refs)-1)
		})
	}
}

// TestVerifyVSAKeyless: on a tree signed in bundles, verify --vsa-keyless
// signs the summaries with one Fulcio certificate, each logged in Rekor v2
// and timestamped, in bundles (--vsa-format auto: the layout each node was
// verified in); cosign v3.1.3 verifies each by identity; a re-run verifies
// the tree as before (its summaries read beside its signatures) and writes
// nothing.
func TestVerifyVSAKeyless(t *testing.T) {
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	if r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tree.tag, "--format", "bundle")...); r.Code != 0 {
		t.Fatalf("sign: exit %d\n%s", r.Code, r.Stderr)
	}
	args := []string{"verify", "--key", k.pub, "--insecure-ignore-tlog", "--require-root", "--vsa-keyless", "--identity-token", s.Token(t),
		"--signing-config", s.SigningConfigPath, "--trusted-root", s.TrustedRootPath, "--insecure-skip-verify", tree.tag}
	r := harness.Run(t, harness.Binary(t), args...)
	if r.Code != 0 || !strings.Contains(r.Stderr, "13 written") || !strings.Contains(r.Stderr, "1 certificate") {
		t.Fatalf("verify --vsa-keyless: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("verify --vsa-keyless:\n%s", r.Stderr)
	common := append([]string{"verify-attestation", "--type", vsaType}, append(identityFlags(s), "--allow-insecure-registry")...)
	for _, node := range treeOf(t, tree.tag).refs() {
		if r := cosign3(t, nil, append(common, node)...); r.Code != 0 {
			t.Errorf("cosign v3.1.3 verify-attestation --type %s %s by identity: exit %d\n%s", vsaType, node, r.Code, lastLines(r.Stderr, 3))
		}
	}
	args[7] = s.Token(t)
	if r := harness.Run(t, harness.Binary(t), args...); r.Code != 0 || !strings.Contains(r.Stderr, "0 written, 13 present") {
		t.Errorf("verify --vsa-keyless again: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
