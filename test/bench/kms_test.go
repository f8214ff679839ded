//go:build bench

package bench

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nestattest/nestattest/test/harness"
)

// TestBenchKMS signs trees of each size with a KMS key (local-kms, the AWS
// KMS API) in each format, a statement a node (--statements node) and one
// for up to 1,024 nodes (--statements tree), and verifies each with the
// KMS key: it prints the times, the KMS Sign calls a tree costs (each a
// remote call, billed, and rate-limited by the cloud's KMS), and the
// registry requests a node. It is the environment "kms" of
// NESTATTEST_BENCH_ENVS.
func TestBenchKMS(t *testing.T) {
	if want := os.Getenv("NESTATTEST_BENCH_ENVS"); want != "" && !strings.Contains(","+want+",", ",kms,") {
		t.Logf("NESTATTEST_BENCH_ENVS=%s leaves out kms", want)
		return
	}
	bin := harness.Binary(t)
	kms := harness.StartKMS(t, harness.KMSOptions{})
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true, StorageDir: shm()})
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	fmt.Printf("\nKMS key (local-kms), registry storage in memory\n%-6s %-7s %-10s | %-9s %-9s %-8s | %-9s %-9s\n",
		"nodes", "format", "statements", "sign", "KMS Sign", "req/node", "verify", "KMS calls")
	for _, n := range sizes(t) {
		for _, format := range []string{"bundle", "legacy"} {
			for _, mode := range []string{"node", "tree"} {
				tag, _ := pushTree(t, proxy.Host, fmt.Sprintf("bench/kms/n%d/%s-%s", n, format, mode), n)
				kms.Reset()
				proxy.Reset()
				sign := must(t, timed(t, kms.Env(), bin, "sign", "--tlog-upload=false", "--key", kms.KeyRef(), "--format", format, "--statements", mode, tag), "nestattest sign --key awskms://")
				signs, reqs := kms.Counts()[harness.KMSSign], proxy.Counts()
				kms.Reset()
				verify := must(t, timed(t, kms.Env(), bin, "verify", "--key", kms.KeyRef(), "--insecure-ignore-tlog", "--format", format, tag), "nestattest verify --key awskms://")
				calls := 0
				for _, c := range kms.Counts() {
					calls += c
				}
				fmt.Printf("%-6d %-7s %-10s | %-9s %-9d %-8.2f | %-9s %-9d\n", n, format, mode, round(sign.took), signs, float64(reqs.Total)/float64(n), round(verify.took), calls)
			}
		}
	}
}
