//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// shape gives the children and leaves per child of an n-node tree:
// 1 + children*(1+leaves) = n.
var shapes = map[int][2]int{10: {3, 2}, 100: {9, 10}, 1000: {27, 36}, 10000: {99, 100}}

// run is one timed command.
type run struct {
	start  time.Time
	took   time.Duration
	rssMiB float64
	code   int
	out    string
}

// timed runs a command and measures its wall time and peak RSS. The peak
// comes from /usr/bin/time, a small process between this test and the
// command: a child's ru_maxrss starts from the RSS of the process it was
// forked from, and this test holds the trees it pushed.
func timed(t *testing.T, env []string, bin string, args ...string) run {
	t.Helper()
	rss := filepath.Join(t.TempDir(), "rss")
	cmd := exec.Command(bin, args...)
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		cmd = exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rss, bin}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := run{start: start, took: time.Since(start), out: string(out)}
	if exit, ok := err.(*exec.ExitError); ok {
		r.code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	if b, err := os.ReadFile(rss); err == nil {
		kib, _ := strconv.Atoi(strings.TrimSpace(lastLine(string(b))))
		r.rssMiB = float64(kib) / 1024
	} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rssMiB = float64(ru.Maxrss) / 1024
	}
	return r
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func must(t *testing.T, r run, what string) run {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\n%s", what, r.code, r.out)
	}
	return r
}

// pushTree pushes an n-node tree into ns and returns its tag and nodes.
func pushTree(t *testing.T, host, ns string, n int) (string, []string) {
	t.Helper()
	shape, ok := shapes[n]
	if !ok {
		t.Fatalf("no shape for %d nodes", n)
	}
	parent, err := sample.Wide(walk.AnnotationRepository, ns, shape[0], shape[1])
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(host + "/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (sample.Pusher{Annotation: walk.AnnotationRepository}).Push(repo, parent, "latest"); err != nil {
		t.Fatal(err)
	}
	tag := repo.Tag("latest").String()
	r := must(t, timed(t, nil, harness.Binary(t), "tree", "-o", "json", tag), "tree")
	var nodes []string
	for _, line := range strings.Split(r.out, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, `"repository": "`); ok {
			nodes = append(nodes, strings.TrimSuffix(v, `",`))
		}
		if v, ok := strings.CutPrefix(line, `"digest": "`); ok && len(nodes) > 0 && !strings.Contains(nodes[len(nodes)-1], "@") {
			nodes[len(nodes)-1] += "@" + strings.TrimSuffix(v, `",`)
		}
	}
	nodes = nodes[1:] // the first repository/digest pair is the root document's
	if len(nodes) != n {
		t.Fatalf("%s: %d nodes, want %d", tag, len(nodes), n)
	}
	return tag, nodes
}

type keys struct{ dir, key, pub string }

func newKeys(t *testing.T) keys {
	t.Helper()
	dir := t.TempDir()
	must(t, timed(t, env, harness.Binary(t), "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign")), "generate-key-pair")
	return keys{dir, filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")}
}

var env = []string{"COSIGN_PASSWORD=bench", "COSIGN_YES=true"}

func sizes(t *testing.T) []int {
	s := os.Getenv("NESTATTEST_BENCH_SIZES")
	switch s {
	case "":
		return []int{100, 1000}
	case "none":
		return nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("NESTATTEST_BENCH_SIZES: %v", err)
		}
		out = append(out, n)
	}
	return out
}

// cosignSample picks the nodes a cosign loop is timed on: all of them, or
// with NESTATTEST_BENCH_COSIGN_SAMPLE=k k nodes spread evenly over the tree
// (each cosign command handles one node, so its time per node does not
// depend on the tree's size). The loop's time is then scaled by the
// returned factor, n/k, and the table says so.
func cosignSample(t *testing.T, nodes []string) ([]string, float64) {
	v := os.Getenv("NESTATTEST_BENCH_COSIGN_SAMPLE")
	if v == "" {
		return nodes, 1
	}
	k, err := strconv.Atoi(v)
	if err != nil || k <= 0 {
		t.Fatalf("NESTATTEST_BENCH_COSIGN_SAMPLE=%q: want a positive number", v)
	}
	if k >= len(nodes) {
		return nodes, 1
	}
	out := make([]string, k)
	for i := range out {
		out[i] = nodes[i*len(nodes)/k]
	}
	fmt.Printf("        (cosign loop timed on %d of %d nodes spread over the tree, scaled x%.0f)\n", k, len(nodes), float64(len(nodes))/float64(k))
	return out, float64(len(nodes)) / float64(k)
}

// meter counts the requests of each run in an environment. Where the
// environment adds latency, every run goes through a proxy that adds it
// and counts the requests (and keeps their spans: see slack). Where it
// adds none, the runs, nestattest's and the cosign loop's alike, talk to
// the registry itself, and its own access log counts them: a proxy there
// would put a second HTTP server, on the same two cores, in front of
// every request.
type meter struct {
	host  string
	reg   *harness.Registry
	proxy *harness.Proxy // nil without latency
	mark  harness.AccessMark
}

func newMeter(t *testing.T, e environment) *meter {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true, StorageDir: e.storage, AccessLog: e.latency == 0})
	m := &meter{host: reg.Host, reg: reg}
	if e.latency > 0 {
		m.proxy = harness.NewProxy(t, reg.Host, harness.ProxyOptions{Latency: e.latency})
		m.host = m.proxy.Host
	}
	return m
}

// reset starts counting anew.
func (m *meter) reset(t *testing.T) {
	if m.proxy != nil {
		m.proxy.Reset()
		return
	}
	m.mark = m.reg.Mark(t)
}

// counts are the requests since the last reset.
func (m *meter) counts(t *testing.T) harness.Counts {
	if m.proxy != nil {
		return m.proxy.Counts()
	}
	return m.reg.Requests(t, m.mark, 0)
}

// spans are the requests since the last reset, with their times, where
// the proxy kept them; none otherwise.
func (m *meter) spans() []harness.Span {
	if m.proxy == nil {
		return nil
	}
	return m.proxy.Spans()
}

// environment is where one series of the benchmark runs: the registry's
// storage in memory or on disk, and the latency added to every request.
type environment struct {
	name    string
	storage string // a directory for the registry's storage; "" for the test's temporary directory
	latency time.Duration
}

func environments(t *testing.T) []environment {
	all := []environment{
		{"memory", shm(), 0},
		{"disk", "", 0},
		{"20ms", shm(), 20 * time.Millisecond},
	}
	want := os.Getenv("NESTATTEST_BENCH_ENVS")
	if want == "" {
		return all
	}
	var out []environment
	for _, e := range all {
		if strings.Contains(","+want+",", ","+e.name+",") {
			out = append(out, e)
		}
	}
	return out
}

// TestBench prints, for each environment and tree size, nestattest sign and
// verify beside the cosign loops, their ratios, the requests a node, and
// under added latency the floor: requests x latency / jobs.
func TestBench(t *testing.T) {
	bin, cosign := harness.Binary(t), harness.Tool(t, "cosign")
	k := newKeys(t)
	pred := filepath.Join(t.TempDir(), "provenance.json")
	if err := os.WriteFile(pred, []byte(`{"buildDefinition":{"buildType":"https://example.test/b","externalParameters":{}},"runDetails":{"builder":{"id":"https://example.test"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tuf := []string{"TUF_ROOT=" + t.TempDir()}
	fmt.Printf("\n%-7s %-6s | %-8s %-9s %-6s %-8s | %-8s %-9s %-6s %-8s | %-8s %-8s | %-7s %-7s\n",
		"env", "nodes", "sign", "cosign", "ratio", "floor", "verify", "cosign", "ratio", "floor", "req/node", "ver.req", "RSS sign", "re-run w")
	for _, e := range environments(t) {
		m := newMeter(t, e)
		for _, n := range sizes(t) {
			mine, nodes := pushTree(t, m.host, fmt.Sprintf("bench/%s/n%d/mine", e.name, n), n)
			_, theirs := pushTree(t, m.host, fmt.Sprintf("bench/%s/n%d/cosign", e.name, n), n)

			m.reset(t)
			sign := must(t, timed(t, env, bin, "sign", "--tlog-upload=false", "--key", k.key, mine), "nestattest sign")
			signReqs, signSpans := m.counts(t), m.spans()
			m.reset(t)
			must(t, timed(t, env, bin, "sign", "--tlog-upload=false", "--key", k.key, mine), "nestattest sign again")
			rerun := m.counts(t)
			m.reset(t)
			verify := must(t, timed(t, nil, bin, "verify", "--key", k.pub, "--insecure-ignore-tlog", mine), "nestattest verify")
			verifyReqs, verifySpans := m.counts(t), m.spans()

			var cosignSign, cosignVerify time.Duration
			theirs, scaleSign := cosignSample(t, theirs)
			verified, scaleVerify := cosignSample(t, nodes)
			for _, node := range theirs {
				start := time.Now()
				must(t, timed(t, append(env, tuf...), cosign, "sign", "--key", k.key, "--tlog-upload=false", "--allow-insecure-registry", node), "cosign sign")
				must(t, timed(t, append(env, tuf...), cosign, "attest", "--key", k.key, "--tlog-upload=false", "--allow-insecure-registry", "--type", "slsaprovenance1", "--predicate", pred, node), "cosign attest")
				cosignSign += time.Since(start)
			}
			for _, node := range verified {
				start := time.Now()
				must(t, timed(t, tuf, cosign, "verify", "--key", k.pub, "--insecure-ignore-tlog", "--allow-insecure-registry", node), "cosign verify")
				must(t, timed(t, tuf, cosign, "verify-attestation", "--key", k.pub, "--insecure-ignore-tlog", "--allow-insecure-registry", "--type", "slsaprovenance1", node), "cosign verify-attestation")
				cosignVerify += time.Since(start)
			}
			cosignSign = time.Duration(float64(cosignSign) * scaleSign)
			cosignVerify = time.Duration(float64(cosignVerify) * scaleVerify)
			floor := func(c harness.Counts) string {
				if e.latency == 0 {
					return "-"
				}
				return round(time.Duration(c.Total) * e.latency / time.Duration(walkJobs))
			}
			fmt.Printf("%-7s %-6d | %-8s %-9s %-6.0f %-8s | %-8s %-9s %-6.0f %-8s | %-8.2f %-8.2f | %-7.1f %-7d\n", e.name, n,
				round(sign.took), round(cosignSign), cosignSign.Seconds()/sign.took.Seconds(), floor(signReqs),
				round(verify.took), round(cosignVerify), cosignVerify.Seconds()/verify.took.Seconds(), floor(verifyReqs),
				float64(signReqs.Total)/float64(n), float64(verifyReqs.Total)/float64(n), sign.rssMiB, rerun.Writes())
			fmt.Printf("        sign requests: %v\n        verify requests: %v\n", signReqs.ByKind, verifyReqs.ByKind)
			if e.latency > 0 {
				fmt.Printf("        sign %s\n        verify %s\n", slack(sign, signSpans, walkJobs), slack(verify, verifySpans, walkJobs))
			}
			if rerun.Writes() != 0 {
				t.Errorf("%s, %d nodes: the re-run made %d writes", e.name, n, rerun.Writes())
			}
			statementsRows(t, e, m, bin, k, n, cosignSign, cosignVerify)
		}
		if e.latency > 0 && os.Getenv("NESTATTEST_BENCH_JOBS") != "0" {
			jobsSeries(t, e, m.proxy, bin, k)
		}
	}
	if os.Getenv("NESTATTEST_BENCH_BIG") != "0" {
		reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true, StorageDir: shm()})
		big(t, reg.Host, bin, k)
	}
}

// statementsRows signs and verifies two more trees of n nodes in the
// bundle layout, --statements node and tree, beside the cosign loop's times
// of the row above.
func statementsRows(t *testing.T, e environment, m *meter, bin string, k keys, n int, cosignSign, cosignVerify time.Duration) {
	t.Helper()
	for _, mode := range []string{"node", "tree"} {
		tag, _ := pushTree(t, m.host, fmt.Sprintf("bench/%s/n%d/bundle-%s", e.name, n, mode), n)
		m.reset(t)
		sign := must(t, timed(t, env, bin, "sign", "--tlog-upload=false", "--key", k.key, "--format", "bundle", "--statements", mode, tag), "nestattest sign --statements "+mode)
		signReqs, signSpans := m.counts(t), m.spans()
		m.reset(t)
		verify := must(t, timed(t, nil, bin, "verify", "--key", k.pub, "--insecure-ignore-tlog", "--format", "bundle", tag), "nestattest verify")
		verifyReqs, verifySpans := m.counts(t), m.spans()
		floors := ""
		if e.latency > 0 {
			sf, vf := time.Duration(signReqs.Total)*e.latency/time.Duration(walkJobs), time.Duration(verifyReqs.Total)*e.latency/time.Duration(walkJobs)
			floors = fmt.Sprintf(" floors %s / %s (x%.2f / x%.2f),", round(sf), round(vf), sign.took.Seconds()/sf.Seconds(), verify.took.Seconds()/vf.Seconds())
		}
		fmt.Printf("        bundle, --statements %-4s: sign %-8s (x%.0f cosign) verify %-8s (x%.0f cosign), %.2f / %.2f requests a node,%s %s\n", mode,
			round(sign.took), cosignSign.Seconds()/sign.took.Seconds(), round(verify.took), cosignVerify.Seconds()/verify.took.Seconds(),
			float64(signReqs.Total)/float64(n), float64(verifyReqs.Total)/float64(n), floors, lastLine(sign.out))
		if e.latency > 0 {
			fmt.Printf("          sign %s\n          verify %s\n", slack(sign, signSpans, walkJobs), slack(verify, verifySpans, walkJobs))
		}
	}
}

// walkJobs is --jobs' default, which the floors assume.
const walkJobs = walk.DefaultJobs

// jobsSeries signs a 1,000-node tree under latency at several --jobs, to
// choose the default.
func jobsSeries(t *testing.T, e environment, proxy *harness.Proxy, bin string, k keys) {
	t.Helper()
	fmt.Printf("\n%s, 1,000 nodes, sign by --jobs:\n", e.name)
	for _, jobs := range []int{4, 8, 16, 32} {
		tag, _ := pushTree(t, proxy.Host, fmt.Sprintf("bench/%s/jobs%d", e.name, jobs), 1000)
		proxy.Reset()
		r := must(t, timed(t, env, bin, "sign", "--tlog-upload=false", "--key", k.key, "--jobs", fmt.Sprint(jobs), tag), "nestattest sign --jobs")
		c := proxy.Counts()
		fmt.Printf("  --jobs %-3d %-8s requests %-6d floor %s\n", jobs, round(r.took), c.Total, round(time.Duration(c.Total)*e.latency/time.Duration(jobs)))
	}
}

// big measures peak RSS of tree, sign and verify over a 10,000-node tree.
func big(t *testing.T, host, bin string, k keys) {
	start := time.Now()
	tag, _ := pushTree(t, host, "bench/n10000", 10000)
	fmt.Printf("\n10,000-node tree pushed in %s\n", round(time.Since(start)))
	for _, args := range [][]string{
		{"tree", tag},
		{"sign", "--tlog-upload=false", "--key", k.key, tag},
		{"verify", "--key", k.pub, "--insecure-ignore-tlog", tag},
	} {
		r := must(t, timed(t, env, bin, args...), args[0])
		fmt.Printf("%-7s 10,000 nodes: %-9s peak RSS %.1f MiB\n", args[0], round(r.took), r.rssMiB)
		if r.rssMiB > 256 {
			t.Errorf("%s: peak RSS %.1f MiB, over 256 MiB", args[0], r.rssMiB)
		}
	}
}

// shm puts the registry's storage in memory where the machine has
// /dev/shm: both nestattest and the cosign loops make the same blob uploads
// and manifest writes a node, and on a small VM the disk under them, not
// either tool, would otherwise be what is measured.
func shm() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}

func round(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
