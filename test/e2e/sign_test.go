package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestattest/nestattest/test/harness"
)

func signArgs(k keyPair, ref string, extra ...string) []string {
	return append([]string{"sign", "--tlog-upload=false", "--key", k.key, ref}, extra...)
}

// TestSignTreeVerifiedByCosign signs a 3-level, 5-repository tree and
// checks every node with the real cosign CLI.
func TestSignTreeVerifiedByCosign(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	results := t.TempDir()
	report := filepath.Join(t.TempDir(), "report.json")

	r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tree.tag, "--results-dir", results, "--report", report)...)
	if r.Code != 0 {
		t.Fatalf("sign: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "13 written") {
		t.Errorf("summary: %s", r.Stdout)
	}
	for file, want := range map[string]string{"IMAGE_URL": reg.Ref("org/ko-build:latest"), "IMAGE_DIGEST": tree.root.DigestStr()} {
		got, err := os.ReadFile(filepath.Join(results, file))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want exactly %q", file, got, err, want)
		}
	}
	if _, err := os.Stat(report); err != nil {
		t.Errorf("report: %v", err)
	}
	for _, node := range treeOf(t, tree.tag).refs() {
		repo := strings.SplitN(node, "@", 2)[0]
		for _, ref := range cosignVerify(t, k.pub, node) {
			if ref != repo {
				t.Errorf("%s: signature names %q, want its own repository", node, ref)
			}
		}
	}

	// A user predicate of another type.
	sbom := writeFile(t, "sbom.spdx.json", `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"ko-build","dataLicense":"CC0-1.0"}`)
	r = harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tree.tag, "--predicate", sbom, "--type", "spdxjson")...)
	if r.Code != 0 {
		t.Fatalf("sign --type spdxjson: exit %d\n%s", r.Code, r.Stderr)
	}
	cosignVerifyEach(t, k.pub, treeOf(t, tree.tag).refs(), "spdxjson", "slsaprovenance1")
}

// TestSignAgainWritesNothing re-runs sign, and signs with the cosign CLI,
// over a signed tree: no writes, no duplicate signatures.
func TestSignAgainWritesNothing(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	// Everything goes through the counting proxy: the registry host is part
	// of every signed docker-reference.
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	ref := strings.Replace(tree.tag, reg.Host, proxy.Host, 1)
	if r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref)...); r.Code != 0 {
		t.Fatalf("sign: %d %s", r.Code, r.Stderr)
	}
	nodes := treeOf(t, ref).refs()
	before := sigDigests(t, nodes)

	proxy.Reset()
	r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") {
		t.Fatalf("second sign: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if w := proxy.Counts().Writes(); w != 0 {
		t.Errorf("second sign made %d write requests", w)
	}
	if after := sigDigests(t, nodes); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf(".sig manifests changed:\n%v\n%v", before, after)
	}

	// cosign sign with the same key and the same annotation: no duplicate.
	root := strings.Replace(tree.root.String(), reg.Host, proxy.Host, 1)
	node := nodes[3]
	if r := cosign(t, k.env(), "sign", "--key", k.key, "--tlog-upload=false", "--allow-insecure-registry",
		"-a", "dev.nestattest.root="+root, node); r.Code != 0 {
		t.Fatalf("cosign sign: %d %s", r.Code, r.Stderr)
	}
	if n := sigLayers(t, node); n != 1 {
		t.Errorf("%s has %d signatures after cosign signed it again, want 1", node, n)
	}
}

// TestSignWrongPassword: a clear error, exit 2, nothing written (the
// tree is read while the key is decrypted), and the password is not
// echoed.
func TestSignWrongPassword(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	r := harness.RunEnv(t, []string{"COSIGN_PASSWORD=hunter2-wrong"}, harness.Binary(t), signArgs(k, strings.Replace(tree.tag, reg.Host, proxy.Host, 1))...)
	if r.Code != 2 || !strings.Contains(r.Stderr, "wrong password") {
		t.Errorf("exit %d, stderr %q", r.Code, r.Stderr)
	}
	if strings.Contains(r.Stdout+r.Stderr, "hunter2") {
		t.Error("the password appears in the output")
	}
	// The tree is read while the key is decrypted; nothing is written.
	if n := proxy.Counts().Writes(); n != 0 {
		t.Errorf("%d writes with a key that does not load: %q", n, proxy.Requests())
	}
}

// TestSignRefusedRepository: a proxy refuses writes to one child
// repository; every other node is signed, the refused ones are reported,
// exit 1; once the proxy is lifted a re-run completes the tree.
func TestSignRefusedRepository(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	proxy.SetRefuse(harness.RefuseWritesTo("org/ko-build/app3"))
	ref := strings.Replace(tree.tag, reg.Host, proxy.Host, 1)

	r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref, "--retries", "0")...)
	if r.Code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var written []string
	for _, node := range treeOf(t, tree.tag).refs() {
		inApp3 := strings.Contains(node, "/org/ko-build/app3@")
		// Failures name the node's digest in full in the tag they failed to write.
		hex := strings.TrimPrefix(strings.SplitN(node, "@", 2)[1], "sha256:")
		if reported := strings.Contains(r.Stderr, hex); reported != inApp3 {
			t.Errorf("%s: reported %v in\n%s", node, reported, r.Stderr)
		}
		if !inApp3 {
			written = append(written, node)
		}
	}
	cosignVerifyEach(t, k.pub, written)

	proxy.SetRefuse(nil)
	r = harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "3 written, 10 present") {
		t.Fatalf("re-run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	cosignVerifyEach(t, k.pub, treeOf(t, tree.tag).refs())
}

// sigDigests returns the digest of every node's .sig manifest.
func sigDigests(t *testing.T, nodes []string) []string {
	t.Helper()
	var out []string
	for _, n := range nodes {
		r := harness.Run(t, harness.Tool(t, "crane"), "digest", "--insecure", sigTag(n))
		if r.Code != 0 {
			t.Fatalf("crane digest %s: %s", sigTag(n), r.Stderr)
		}
		out = append(out, strings.TrimSpace(r.Stdout))
	}
	return out
}

func sigTag(node string) string {
	repo, digest, _ := strings.Cut(node, "@")
	return repo + ":" + strings.Replace(digest, ":", "-", 1) + ".sig"
}

func sigLayers(t *testing.T, node string) int {
	t.Helper()
	r := harness.Run(t, harness.Tool(t, "crane"), "manifest", "--insecure", sigTag(node))
	if r.Code != 0 {
		t.Fatalf("crane manifest: %s", r.Stderr)
	}
	return strings.Count(r.Stdout, "application/vnd.dev.cosign.simplesigning.v1+json")
}
