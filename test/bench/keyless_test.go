//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nestattest/nestattest/test/harness"
)

// TestBenchKeyless signs trees of 100 and 1,000 nodes keylessly against
// the local sigstore stack (real Fulcio, rekor-tiles and the timestamp
// authority), in the bundle layout, beside the loop a user would otherwise
// run: the cosign v3 CLI's `cosign sign` and `cosign attest` on every node
// against the same services. It prints both times, their ratio and the
// requests a node to Fulcio, Rekor, the TSA and the registry; then the same
// with --statements tree (one statement for up to 1,024 nodes), and verify
// of each tree by identity. Above NESTATTEST_BENCH_KEYLESS_NODE_MAX nodes
// (1,000) it signs with --statements tree only: its row's node-mode cells
// are "-". It is the environment "keyless" of NESTATTEST_BENCH_ENVS.
func TestBenchKeyless(t *testing.T) {
	nodeMax := 1000
	if v := os.Getenv("NESTATTEST_BENCH_KEYLESS_NODE_MAX"); v != "" {
		if _, err := fmt.Sscan(v, &nodeMax); err != nil {
			t.Fatalf("NESTATTEST_BENCH_KEYLESS_NODE_MAX=%q: want a number of nodes", v)
		}
	}
	if want := os.Getenv("NESTATTEST_BENCH_ENVS"); want != "" && !strings.Contains(","+want+",", ",keyless,") {
		t.Logf("NESTATTEST_BENCH_ENVS=%s leaves out keyless", want)
		return
	}
	bin, cosign := harness.Binary(t), harness.Tool(t, "cosign3")
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true, StorageDir: shm()})
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	pred := filepath.Join(t.TempDir(), "provenance.json")
	if err := os.WriteFile(pred, []byte(`{"buildDefinition":{"buildType":"https://example.test/b","externalParameters":{}},"runDetails":{"builder":{"id":"https://example.test"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	services := []string{"--signing-config", s.SigningConfigPath, "--trusted-root", s.TrustedRootPath, "--insecure-skip-verify"}
	cosignEnv := append([]string{"TUF_ROOT=" + t.TempDir()}, env...)

	fmt.Printf("\nkeyless, bundle layout, registry storage in memory\n%-6s | %-9s %-9s %-6s | %-28s | %-28s | %-8s %-8s\n",
		"nodes", "sign", "cosign", "ratio", "nestattest cert/entry/tsa", "cosign cert/entry/tsa", "req/node", "cosign")
	var trees []treeRow
	for _, n := range sizes(t) {
		tree, _ := pushTree(t, proxy.Host, fmt.Sprintf("bench/keyless/n%d/tree", n), n)
		_, theirs := pushTree(t, proxy.Host, fmt.Sprintf("bench/keyless/n%d/cosign", n), n)

		// A statement a node logs and timestamps every node twice: past
		// nodeMax nodes (4 minutes a 1,000) only the tree mode runs.
		var mine string
		var sign run
		before := s.Requests()
		mineReqs, mineReg := before, harness.Counts{}
		if n <= nodeMax {
			mine, _ = pushTree(t, proxy.Host, fmt.Sprintf("bench/keyless/n%d/mine", n), n)
			proxy.Reset()
			sign = must(t, timed(t, nil, bin, append(append([]string{"sign", "--identity-token", s.Token(t), "--format", "bundle"}, services...), mine)...), "nestattest sign")
			mineReqs, mineReg = s.Requests(), proxy.Counts()
		}

		var loop time.Duration
		proxy.Reset()
		theirs, scale := cosignSample(t, theirs)
		for _, node := range theirs {
			// A token per command, as a CI job's would be fresh.
			tok := s.Token(t)
			start := time.Now()
			common := append(append([]string{"--identity-token", tok, "--allow-insecure-registry"}, services...), node)
			must(t, timed(t, cosignEnv, cosign, append([]string{"sign"}, common...)...), "cosign sign")
			must(t, timed(t, cosignEnv, cosign, append([]string{"attest", "--type", "slsaprovenance1", "--predicate", pred}, common...)...), "cosign attest")
			loop += time.Since(start)
		}
		theirReqs, theirReg := s.Requests(), proxy.Counts()
		loop = time.Duration(float64(loop) * scale)
		per := func(a, b harness.SigstoreCounts, nodes int) string {
			return fmt.Sprintf("%.2f/%.2f/%.2f", float64(b.Certificates-a.Certificates)/float64(nodes),
				float64(b.Entries-a.Entries)/float64(nodes), float64(b.Timestamps-a.Timestamps)/float64(nodes))
		}
		signed, ratio, mineCost, mineReqsNode := "-", "-", "-", "-"
		if mine != "" {
			signed, ratio = round(sign.took), fmt.Sprintf("%.1f", loop.Seconds()/sign.took.Seconds())
			mineCost, mineReqsNode = per(before, mineReqs, n), fmt.Sprintf("%.2f", float64(mineReg.Total)/float64(n))
		}
		fmt.Printf("%-6d | %-9s %-9s %-6s | %-28s | %-28s | %-8s %-8.2f\n", n, signed, round(loop), ratio,
			mineCost, per(mineReqs, theirReqs, len(theirs)), mineReqsNode, float64(theirReg.Total)/float64(len(theirs)))
		if theirReqs.Refused+mineReqs.Refused > 0 {
			t.Errorf("the services refused %d requests", theirReqs.Refused)
		}

		// --statements tree on a tree of its own, and verify of both.
		before = s.Requests()
		proxy.Reset()
		treeSign := must(t, timed(t, nil, bin, append(append([]string{"sign", "--identity-token", s.Token(t), "--format", "bundle", "--statements", "tree"}, services...), tree)...), "nestattest sign --statements tree")
		treeReqs, treeReg := s.Requests(), proxy.Counts()
		identity := []string{"verify", "--certificate-identity", s.Identity, "--certificate-oidc-issuer", s.Issuer,
			"--trusted-root", s.TrustedRootPath, "--insecure-ignore-sct", "--use-signed-timestamps", "--format", "bundle"}
		var verifyNode run
		if mine != "" {
			verifyNode = must(t, timed(t, nil, bin, append(identity, mine)...), "nestattest verify (node)")
		}
		verifyTree := must(t, timed(t, nil, bin, append(identity, tree)...), "nestattest verify (tree)")
		trees = append(trees, treeRow{n: n, sign: treeSign.took, loop: loop, node: sign.took,
			entries: treeReqs.Entries - before.Entries, stamps: treeReqs.Timestamps - before.Timestamps,
			reqs: float64(treeReg.Total) / float64(n), verifyNode: verifyNode.took, verifyTree: verifyTree.took})
	}
	fmt.Printf("\nkeyless, bundle layout, --statements tree\n%-6s | %-9s %-8s %-8s | %-9s %-7s | %-8s | %-11s %-11s\n",
		"nodes", "sign", "x cosign", "x node", "entries", "stamps", "req/node", "verify node", "verify tree")
	for _, r := range trees {
		xNode, verifyNode := "-", "-"
		if r.node > 0 {
			xNode, verifyNode = fmt.Sprintf("%.1f", r.node.Seconds()/r.sign.Seconds()), round(r.verifyNode)
		}
		fmt.Printf("%-6d | %-9s %-8.1f %-8s | %-9d %-7d | %-8.2f | %-11s %-11s\n", r.n, round(r.sign), r.loop.Seconds()/r.sign.Seconds(),
			xNode, r.entries, r.stamps, r.reqs, verifyNode, round(r.verifyTree))
	}
}

// treeRow is one size of the --statements tree table.
type treeRow struct {
	n                      int
	sign, loop, node       time.Duration
	entries, stamps        int
	reqs                   float64
	verifyNode, verifyTree time.Duration
}
