package e2e

import (
	"strings"
	"testing"

	"github.com/nestattest/nestattest/test/harness"
)

// TestKoCaseEndToEnd is the headline case on a registry that checks index
// children: ko pushed app1..app3 into org/ko-build/<app>; one `nestattest
// sign --from <what ko printed>` composes the parent, mirrors the children
// into it, signs and attests every node; the real cosign CLI verifies every
// node in its own repository and every mirrored copy in the parent's.
func TestKoCaseEndToEnd(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{})
	k := catalogKo(t, reg, "org/ko-build", "app1", "app2", "app3")
	keys := newKeyPair(t, "cosign")
	results := t.TempDir()

	r := harness.RunEnv(t, keys.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", keys.key, "--from", k.RefsFile, "--results-dir", results, k.Tag)
	if r.Code != 0 {
		t.Fatalf("sign --from: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "10 written") || !strings.Contains(r.Stdout, "9 nodes also in their mirrored copies") {
		t.Errorf("summary: %s", r.Stdout)
	}
	nodes := treeOf(t, k.Tag).refs()
	if len(nodes) != 1+3*3 {
		t.Fatalf("%d nodes: %v", len(nodes), nodes)
	}
	for _, node := range nodes {
		repo, digest, _ := strings.Cut(node, "@")
		for _, ref := range cosignVerify(t, keys.pub, node) {
			if ref != repo {
				t.Errorf("%s: signature names %s", node, ref)
			}
		}
		if repo != k.Parent.Name() {
			mirror := k.Parent.Name() + "@" + digest
			for _, ref := range cosignVerify(t, keys.pub, mirror) {
				if ref != k.Parent.Name() {
					t.Errorf("mirrored %s: signature names %s", mirror, ref)
				}
			}
		}
	}
	if v, r := verifyTree(t, keys.pub, k.Tag, "--require-root"); r.Code != 0 || v.Summary.Passed != len(nodes) {
		t.Errorf("nestattest verify: exit %d %+v %v", r.Code, v.Summary, v.failures())
	}
	// The same references again: the same parent, nothing written.
	r = harness.RunEnv(t, keys.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", keys.key, "--from", k.RefsFile, k.Tag)
	if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") {
		t.Errorf("second sign --from: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
