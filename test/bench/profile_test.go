//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nestattest/nestattest/test/harness"
)

// TestBenchProfile profiles nestattest sign and verify (NESTATTEST_CPUPROFILE)
// on trees of NESTATTEST_BENCH_SIZES nodes on the registry with its storage
// in memory, and prints where the CPU time of the process went (`go tool
// pprof -top`, the heaviest functions by cumulative time) beside the
// process's user and system time and the wall time: what bounds a run the
// ratio against the cosign loop does not reach 100x for. The profiles stay
// in NESTATTEST_BENCH_PROFILES (default a temporary directory).
func TestBenchProfile(t *testing.T) {
	bin := harness.Binary(t)
	k := newKeys(t)
	dir := os.Getenv("NESTATTEST_BENCH_PROFILES")
	if dir == "" {
		dir = t.TempDir()
	}
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true, StorageDir: shm()})
	for _, n := range sizes(t) {
		ref, _ := pushTree(t, reg.Host, fmt.Sprintf("profile/n%d", n), n)
		tree, _ := pushTree(t, reg.Host, fmt.Sprintf("profile/n%d-tree", n), n)
		for _, cmd := range [][]string{
			{"sign", "--tlog-upload=false", "--key", k.key, ref},
			{"verify", "--key", k.pub, "--insecure-ignore-tlog", ref},
			{"sign", "--tlog-upload=false", "--key", k.key, "--format", "bundle", "--statements", "tree", tree},
			{"verify", "--key", k.pub, "--insecure-ignore-tlog", "--format", "bundle", tree},
		} {
			label := cmd[0]
			if cmd[len(cmd)-1] == tree {
				label += "-bundle-tree"
			}
			prof := filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", label, n))
			c := exec.Command(bin, cmd...)
			c.Env = append(os.Environ(), append(env, "NESTATTEST_CPUPROFILE="+prof)...)
			start := time.Now()
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("nestattest %s: %v\n%s", cmd[0], err, out)
			}
			fmt.Printf("\n%s, %d nodes: wall %s, user %s, system %s (the registry is another process)\n",
				label, n, round(time.Since(start)), round(c.ProcessState.UserTime()), round(c.ProcessState.SystemTime()))
			out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount", "25", bin, prof).CombinedOutput()
			if err != nil {
				t.Fatalf("go tool pprof: %v\n%s", err, out)
			}
			lines := strings.Split(string(out), "\n")
			for _, l := range lines {
				if strings.HasPrefix(l, "Duration") || strings.Contains(l, "flat%") || strings.Contains(l, "%") {
					fmt.Println("  " + l)
				}
			}
		}
	}
}
