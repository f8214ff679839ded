package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/test/harness"
)

// mustRef parses a reference the test made.
func mustRef(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// chains is Tekton Chains' own signer (test/consumers: chains-sign runs
// Chains' TaskRun reconciler) with its signing-secrets: a cosign key pair
// in the layout Chains mounts.
type chains struct {
	secrets string
	keys    keyPair
}

func newChains(t *testing.T) chains {
	t.Helper()
	k := newKeyPair(t, "cosign")
	if err := os.WriteFile(filepath.Join(k.dir, "cosign.password"), []byte(k.password), 0o600); err != nil {
		t.Fatal(err)
	}
	harness.Tool(t, "chains-sign")
	return chains{secrets: k.dir, keys: k}
}

// sign has Chains sign and attest what a completed TaskRun's IMAGE_URL and
// IMAGE_DIGEST name (harness.ChainsSign).
func (c chains) sign(t *testing.T, url, digest string) {
	t.Helper()
	harness.ChainsSign(t, c.secrets, "", url, digest)
}

// predicateOf is the predicate of the one slsaprovenance1 attestation
// cosign verifies on ref with key, byte for byte, and its subject digest.
func predicateOf(t *testing.T, pub, ref string) (predicate []byte, subject string) {
	t.Helper()
	r := cosign(t, nil, "verify-attestation", "--key", pub, "--type", "slsaprovenance1", "--insecure-ignore-tlog", "--allow-insecure-registry", ref)
	if r.Code != 0 {
		t.Fatalf("cosign verify-attestation %s: exit %d\n%s", ref, r.Code, r.Stderr)
	}
	payloads := harness.AttestedPayloads(t, r.Stdout)
	if len(payloads) == 0 {
		t.Fatalf("cosign verify-attestation %s printed no attestation:\n%s", ref, r.Stdout)
	}
	payload := payloads[len(payloads)-1]
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil || len(st.Subject) != 1 {
		t.Fatalf("statement %s: %v", payload, err)
	}
	return st.Predicate, "sha256:" + st.Subject[0].Digest["sha256"]
}

// chainsPolicy is a ClusterImagePolicy for every repository of the
// registry: signed with the trusted key, and carrying provenance whose
// builder is Tekton Chains.
func chainsPolicy(t *testing.T, host string, pub []byte) string {
	t.Helper()
	return provenancePolicy(t, host, pub, "https://tekton.dev/chains/v2")
}

// admitted runs policy-tester on ref (with extra flags, such as
// --trustroot), and says why it refused.
func admitted(t *testing.T, policy, ref string, extra ...string) (bool, string) {
	t.Helper()
	r := harness.RunEnv(t, []string{"TUF_ROOT=" + t.TempDir()}, harness.Consumer(t, "policy-tester"), append([]string{"--policy", policy, "--image", ref}, extra...)...)
	return r.Code == 0, lastLines(r.Stdout+r.Stderr, 40)
}

// propagateArgs propagate Chains' provenance as the trusted signer, who
// here is Chains' own key: propagate runs where that key lives.
func propagateArgs(c chains, ref string, extra ...string) []string {
	return append([]string{"propagate", "--source-key", c.keys.pub, "--source-insecure-ignore-tlog",
		"--key", c.keys.key, "--tlog-upload=false", ref}, extra...)
}

// TestPropagateChainsProvenance: Chains' own code signs and attests the
// ko-shaped tree's parent; policy-tester refuses the children; propagate
// gives every node Chains' predicate unchanged with the node as subject;
// cosign returns it on every child, policy-tester admits every child; a
// re-run writes nothing.
func TestPropagateChainsProvenance(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	c := newChains(t)
	c.sign(t, reg.Ref("org/ko-build:latest"), tree.root.DigestStr())
	chainsPredicate, _ := predicateOf(t, c.keys.pub, tree.root.String())
	pubPEM, err := os.ReadFile(c.keys.pub)
	if err != nil {
		t.Fatal(err)
	}
	policy := chainsPolicy(t, reg.Host, pubPEM)
	nodes := treeOf(t, tree.tag).refs()
	if ok, why := admitted(t, policy, nodes[0]); !ok {
		t.Fatalf("policy-tester refuses the parent Chains attested:\n%s", why)
	}
	for _, child := range nodes[1:] {
		if ok, _ := admitted(t, policy, child); ok {
			t.Fatalf("policy-tester admits %s before propagate", child)
		}
	}

	r := harness.RunEnv(t, c.keys.env(), harness.Binary(t), propagateArgs(c, tree.tag)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "12 written") {
		t.Fatalf("propagate: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, child := range nodes[1:] {
		pred, subject := predicateOf(t, c.keys.pub, child)
		if !bytes.Equal(pred, chainsPredicate) {
			t.Errorf("%s: the predicate differs from Chains':\n%s\n%s", child, pred, chainsPredicate)
		}
		if !strings.HasSuffix(child, "@"+subject) {
			t.Errorf("%s: subject %s", child, subject)
		}
		if ok, why := admitted(t, policy, child); !ok {
			t.Errorf("policy-tester refuses %s after propagate:\n%s", child, why)
		}
	}
	doc, vr := verifyTree(t, c.keys.pub, tree.tag, "--require-root")
	if vr.Code != 0 {
		t.Errorf("nestattest verify --require-root: exit %d %v", vr.Code, doc.failures())
	}
	if r := harness.RunEnv(t, c.keys.env(), harness.Binary(t), propagateArgs(c, tree.tag)...); r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") {
		t.Errorf("re-run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestPropagateRefuses: a root attested by another key, a root whose
// provenance names another digest, and a parent retagged after Chains
// signed it are each refused, with nothing written.
func TestPropagateRefuses(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	c := newChains(t)
	crane := func(args ...string) {
		t.Helper()
		if r := harness.Run(t, harness.Tool(t, "crane"), append(args, "--insecure")...); r.Code != 0 {
			t.Fatalf("crane %v: %s", args, r.Stderr)
		}
	}
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, reg *harness.Registry, tree *koTree, nodes []string, ns string)
		reason string
	}{
		{"attested by another key", func(t *testing.T, _ *harness.Registry, tree *koTree, _ []string, _ string) {
			newChains(t).sign(t, tree.tag, tree.root.DigestStr())
		}, "no valid signature"},
		{"provenance of another digest", func(t *testing.T, _ *harness.Registry, tree *koTree, nodes []string, _ string) {
			c.sign(t, tree.tag, tree.root.DigestStr())
			child := strings.SplitN(nodes[1], "@", 2)
			c.sign(t, child[0], child[1])
			crane("copy", attTag(nodes[1]), attTag(nodes[0]))
		}, "provenance for another subject"},
		{"retagged after Chains signed", func(t *testing.T, reg *harness.Registry, tree *koTree, _ []string, ns string) {
			c.sign(t, tree.tag, tree.root.DigestStr())
			// Another tree's parent index, put at the tag by its raw
			// manifest (its children stay in their own repositories).
			other, err := remote.Get(mustRef(t, pushWideTo(t, reg, ns+"-other", 2, 2)), fixtureAuth...)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Put(mustRef(t, tree.tag), other, fixtureAuth...); err != nil {
				t.Fatal(err)
			}
		}, "no valid signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Everything goes through the proxy, whose host is in what
			// Chains signs; it counts propagate's writes.
			proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
			via := *reg
			via.Host = proxy.Host
			ns := "org/ko-build/" + strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
			tree := pushKo(t, &via, ns)
			nodes := treeOf(t, tree.tag).refs()
			tc.setup(t, &via, tree, nodes, ns)
			proxy.Reset()
			r := harness.RunEnv(t, c.keys.env(), harness.Binary(t), propagateArgs(c, tree.tag)...)
			if r.Code != 1 || !strings.Contains(r.Stderr, "nothing written") || !strings.Contains(r.Stderr, tc.reason) {
				t.Errorf("exit %d, want 1 with %q\n%s%s", r.Code, tc.reason, r.Stdout, r.Stderr)
			}
			if w := proxy.Counts().Writes(); w != 0 {
				t.Errorf("%d writes", w)
			}
		})
	}
}

// TestPropagateWaits: --wait polls until Chains has attested the root, and
// gives up cleanly when it does not in time.
func TestPropagateWaits(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	c := newChains(t)
	start := time.Now()
	r := harness.RunEnv(t, c.keys.env(), harness.Binary(t), propagateArgs(c, tree.tag, "--wait", "3s")...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "waited 3s") || time.Since(start) > time.Minute {
		t.Errorf("no provenance in time: exit %d after %v\n%s", r.Code, time.Since(start), r.Stderr)
	}
	done := make(chan harness.Result)
	go func() {
		done <- harness.RunEnv(t, c.keys.env(), harness.Binary(t), propagateArgs(c, tree.tag, "--wait", "2m")...)
	}()
	time.Sleep(3 * time.Second)
	c.sign(t, tree.tag, tree.root.DigestStr())
	r = <-done
	if r.Code != 0 || !strings.Contains(r.Stderr, "waiting for the builder's provenance") || !strings.Contains(r.Stdout, "12 written") {
		t.Errorf("provenance during the wait: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestPropagateVSANeedsTheBuildersKey: propagate --vsa-key verifies the
// tree with the builder's identity, so a --key that is not the builder's
// is refused before anything is written (every child would fail the
// builder's policy and get no summary).
func TestPropagateVSANeedsTheBuildersKey(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	via := *reg
	via.Host = proxy.Host
	tree := pushKo(t, &via, "org/ko-build")
	c := newChains(t)
	c.sign(t, tree.tag, tree.root.DigestStr())
	other, vsa := newKeyPair(t, "cosign"), newKeyPair(t, "cosign")
	proxy.Reset()
	r := harness.RunEnv(t, c.keys.env(), harness.Binary(t), "propagate", "--source-key", c.keys.pub, "--source-insecure-ignore-tlog",
		"--key", other.key, "--tlog-upload=false", "--vsa-key", vsa.key, tree.tag)
	if r.Code != 2 || !strings.Contains(r.Stderr, "verify the tree with the builder's identity") {
		t.Errorf("exit %d, want 2 naming the builder's identity\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if w := proxy.Counts().Writes(); w != 0 {
		t.Errorf("%d writes", w)
	}
	t.Logf("propagate --key (not the builder's) --vsa-key: exit %d: %s", r.Code, strings.TrimSpace(r.Stderr))
}
