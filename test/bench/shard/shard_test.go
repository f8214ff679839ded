//go:build bench

package shard

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// env unlocks the key; the password is redacted from output, so it must
// not be a word of a repository's name.
var env = []string{"COSIGN_PASSWORD=shard-bench-password-7f3a"}

// shape reads "children,leaves" from an environment variable.
func shape(t *testing.T, key string, children, leaves int) (int, int) {
	if v := os.Getenv(key); v != "" {
		c, l, _ := strings.Cut(v, ",")
		var err1, err2 error
		children, err1 = strconv.Atoi(c)
		leaves, err2 = strconv.Atoi(l)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s=%q: want children,leaves", key, v)
		}
	}
	return children, leaves
}

func intEnv(t *testing.T, key string, def int) int {
	if v := os.Getenv(key); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", key, v, err)
		}
		return n
	}
	return def
}

// registryHost starts distribution with its storage in memory where the
// machine has /dev/shm, as test/bench does.
func registryHost(t *testing.T) *harness.Registry {
	dir := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir = "/dev/shm"
	}
	return harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true, StorageDir: dir})
}

// push pushes sample.Wide(children, leaves) into each namespace of host,
// eight children at a time, and returns the tags.
func push(t *testing.T, host string, children, leaves int, namespaces ...string) []string {
	t.Helper()
	start := time.Now()
	idx, err := sample.Wide(walk.AnnotationRepository, "bench", children, leaves)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, ns := range namespaces {
		repo, err := name.NewRepository(host + "/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, len(m.Manifests))
		pool.ForEach(len(m.Manifests), 8, func(i int) {
			d := m.Manifests[i]
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = sample.Pusher{}.Push(repo.Registry.Repo(repo.RepositoryStr(), d.Annotations[walk.AnnotationRepository]), child)
		})
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		d, _ := idx.Digest()
		if err := remote.Put(repo.Digest(d.String()), idx); err != nil {
			t.Fatal(err)
		}
		if err := remote.Tag(repo.Tag("latest"), idx); err != nil {
			t.Fatal(err)
		}
		tags = append(tags, repo.Tag("latest").String())
	}
	fmt.Printf("pushed %d × %d nodes in %s\n", len(namespaces), 1+children*(1+leaves), round(time.Since(start)))
	return tags
}

// proc is one finished process.
type proc struct {
	label  string
	took   time.Duration
	rssMiB float64
	code   int
	stdout string
	stderr string
	use    usage
}

// runTracked runs bin, its requests attributed to label, and measures its
// wall time (and, with rss, its peak RSS through /usr/bin/time).
func runTracked(t *testing.T, a *attributing, label string, rss bool, args ...string) proc {
	t.Helper()
	bin := harness.Binary(t)
	file := filepath.Join(t.TempDir(), "rss")
	cmd := exec.Command(bin, args...)
	if rss {
		cmd = exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", file, bin}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.track(cmd.Process.Pid, label)
	if rss {
		go trackChild(a, cmd.Process.Pid, label)
	}
	err := cmd.Wait()
	p := proc{label: label, took: time.Since(start), stdout: out.String(), stderr: errb.String()}
	if exit, ok := err.(*exec.ExitError); ok {
		p.code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(file); err == nil {
		kib, _ := strconv.Atoi(strings.TrimSpace(lastLine(string(b))))
		p.rssMiB = float64(kib) / 1024
	}
	p.use = a.usage(label)
	return p
}

// trackChild tracks the child /usr/bin/time starts.
func trackChild(a *attributing, parent int, label string) {
	for range 500 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
		if err != nil {
			return
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			pid, _ := strconv.Atoi(f[0])
			a.track(pid, label)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func must(t *testing.T, p proc) proc {
	t.Helper()
	if p.code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", p.label, p.code, p.stdout, lastLines(p.stderr, 20))
	}
	return p
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func round(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

// planDoc and signDoc are the parts of plan's and sign's JSON read here.
type planDoc struct {
	Plan              string
	Shards            []string
	Nodes             int
	Repositories      int
	SplitRepositories int
	ShardSizes        []struct {
		Shard               string
		Nodes, Repositories int
	}
}

type signDoc struct {
	Nodes []struct {
		Repository, Digest string
		Places             []struct{ Repository string }
	}
	Summary struct{ Nodes, Written, Present, Failed int }
}

func decode[T any](t *testing.T, p proc) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(p.stdout), &v); err != nil {
		t.Fatalf("%s -o json: %v", p.label, err)
	}
	return v
}

func keyPair(t *testing.T) (key, pub string) {
	dir := t.TempDir()
	cmd := exec.Command(harness.Binary(t), "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign"))
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate-key-pair: %v\n%s", err, out)
	}
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
}

func TestShardBench(t *testing.T) {
	children, leaves := shape(t, "NESTATTEST_SHARD_SHAPE", 99, 100)
	shards, parallel := intEnv(t, "NESTATTEST_SHARDS", 16), intEnv(t, "NESTATTEST_SHARD_PARALLEL", 4)
	reg := registryHost(t)
	a := newAttributing(t, reg.Host)
	tags := push(t, reg.Host, children, leaves, "bench/sharded", "bench/whole")
	for i := range tags {
		tags[i] = strings.Replace(tags[i], reg.Host, a.Host, 1)
	}
	key, pub := keyPair(t)
	n := 1 + children*(1+leaves)

	whole := must(t, runTracked(t, a, "unsharded", true, "sign", "--tlog-upload=false", "--key", key, "-o", "json", tags[1]))
	planned := must(t, runTracked(t, a, "plan", true, "plan", "--shards", fmt.Sprint(shards), "-o", "json", tags[0]))
	p := decode[planDoc](t, planned)

	start := time.Now()
	runs := make([]proc, len(p.Shards))
	pool.ForEach(len(p.Shards), parallel, func(i int) {
		runs[i] = runTracked(t, a, "shard "+p.Shards[i], true, "sign", "--tlog-upload=false", "--key", key, "-o", "json",
			"--plan", p.Plan, "--shard", p.Shards[i], tags[0])
	})
	wall := time.Since(start)
	var reports []signDoc
	for _, r := range runs {
		reports = append(reports, decode[signDoc](t, must(t, r)))
	}
	verified := runTracked(t, a, "verify", true, "verify", "--key", pub, "--insecure-ignore-tlog", "-o", "json", tags[0])

	table(t, a, n, p, whole, planned, runs, verified, wall, parallel)
	exactlyOnce(t, reg.Host, a.Host, n, reports)
	if verified.code != 0 || !strings.Contains(verified.stdout, fmt.Sprintf(`"passed": %d`, n)) {
		t.Errorf("verify of the whole tree: exit %d\n%s", verified.code, lastLines(verified.stderr, 10))
	}
	accounting(t, p, whole, runs, reports, strings.TrimSuffix(tags[0], ":latest"))
}

// table prints the per-shard wall times, requests and bytes beside the
// unsharded run, the plan and the final verify.
func table(t *testing.T, a *attributing, n int, p planDoc, whole, planned proc, runs []proc, verified proc, wall time.Duration, parallel int) {
	fmt.Printf("\n%d nodes in %d repositories; %d shards, %d at a time; %d repositories split\n", n, p.Repositories, len(p.Shards), parallel, p.SplitRepositories)
	fmt.Printf("%-10s | %6s | %9s | %8s | %8s | %10s | %10s | %8s\n", "run", "nodes", "wall", "requests", "req/node", "sent", "received", "RSS MiB")
	row := func(r proc, nodes int) {
		rss := "-"
		if r.rssMiB > 0 {
			rss = fmt.Sprintf("%.1f", r.rssMiB)
		}
		fmt.Printf("%-10s | %6d | %9s | %8d | %8.2f | %10d | %10d | %8s\n", r.label, nodes, round(r.took), r.use.Requests,
			float64(r.use.Requests)/float64(nodes), r.use.Up, r.use.Down, rss)
	}
	row(whole, n)
	row(planned, n)
	sum := proc{label: "Σ shards", use: usage{ByKind: map[string]int{}}}
	var slowest time.Duration
	for i, r := range runs {
		row(r, p.ShardSizes[i].Nodes)
		sum.use.Requests += r.use.Requests
		sum.use.Up += r.use.Up
		sum.use.Down += r.use.Down
		sum.took += r.took
		slowest = max(slowest, r.took)
	}
	row(sum, n)
	row(verified, n)
	fmt.Printf("shards: %s wall for all (%s the slowest, %s summed); unsharded %s; plan + shards %s\n",
		round(wall), round(slowest), round(sum.took), round(whole.took), round(planned.took+wall))
	if other := a.usage("other"); other.Requests > 0 {
		t.Errorf("%d requests of no process tracked: %v", other.Requests, other.ByKind)
	}
	fmt.Printf("by kind: unsharded %v\n         plan %v\n         verify %v\n", whole.use.ByKind, planned.use.ByKind, verified.use.ByKind)
}

// exactlyOnce checks no node is in two shards' reports, none is missed,
// and each has one .sig layer and one .att layer, read straight from the
// registry.
func exactlyOnce(t *testing.T, regHost, proxyHost string, n int, reports []signDoc) {
	in := map[string]int{}
	for _, r := range reports {
		if r.Summary.Failed != 0 || r.Summary.Written != r.Summary.Nodes {
			t.Errorf("a shard: %+v", r.Summary)
		}
		for _, node := range r.Nodes {
			in[node.Repository+"@"+node.Digest]++
		}
	}
	if len(in) != n {
		t.Errorf("the shards signed %d distinct nodes, the tree has %d", len(in), n)
	}
	nodes := slices(in)
	bad := make([]string, len(nodes))
	pool.ForEach(len(nodes), 16, func(i int) {
		node := nodes[i]
		if in[node] != 1 {
			bad[i] = fmt.Sprintf("%s in %d shards", node, in[node])
			return
		}
		repo, digest, _ := strings.Cut(strings.Replace(node, proxyHost, regHost, 1), "@")
		for _, suffix := range []string{".sig", ".att"} {
			ref, err := name.NewTag(repo+":"+strings.Replace(digest, ":", "-", 1)+suffix, name.Insecure)
			if err != nil {
				bad[i] = err.Error()
				return
			}
			m, err := manifest(ref)
			if err != nil || len(m.Layers) != 1 {
				bad[i] = fmt.Sprintf("%s: %v layers (%v)", ref, layersOf(m), err)
				return
			}
		}
	})
	failed := 0
	for _, b := range bad {
		if b != "" {
			if failed++; failed <= 10 {
				t.Error(b)
			}
		}
	}
	fmt.Printf("exactly once: %d nodes in %d shard reports, %d with other than one .sig and one .att layer\n", len(in), len(reports), failed)
}

func manifest(ref name.Reference) (*v1.Manifest, error) {
	img, err := remote.Image(ref, remote.WithContext(context.Background()))
	if err != nil {
		return nil, err
	}
	return img.Manifest()
}

func layersOf(m *v1.Manifest) int {
	if m == nil {
		return -1
	}
	return len(m.Layers)
}

func slices(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// accounting checks the shards' requests, kind by kind, are the unsharded
// run's plus, for each shard but one, a ping, the tag and the plan's
// manifest and document, plus one mirror lookup for each shard a top
// child's nodes are split into beyond the first, plus one tag listing for
// each shard a repository's nodes are split into beyond the first.
func accounting(t *testing.T, p planDoc, whole proc, runs []proc, reports []signDoc, root string) {
	sum := map[string]int{}
	total, heads, lists := 0, 0, 0
	all := map[string]bool{}
	for i, r := range runs {
		total += r.use.Requests
		for k, v := range r.use.ByKind {
			sum[k] += v
		}
		tops := map[string]bool{}
		for _, n := range reports[i].Nodes {
			if n.Repository != root {
				tops[n.Repository] = true
			}
		}
		heads += len(tops)
		repos := map[string]bool{}
		for _, n := range reports[i].Nodes {
			for _, pl := range n.Places {
				repos[pl.Repository], all[pl.Repository] = true, true
			}
		}
		lists += len(repos)
	}
	heads -= p.Repositories - 1
	lists -= len(all)
	s := len(p.Shards)
	want := maps.Clone(whole.use.ByKind)
	want["manifest GET"] += 2*s - 1
	want["blob GET"] += s
	want["ping GET"] += s - 1
	want["manifest HEAD"] += heads
	want["tags GET"] += lists
	if !maps.Equal(sum, want) {
		t.Errorf("the shards made %v,\nwant %v", sum, want)
	}
	fmt.Printf("requests: Σ shards %d = unsharded %d + %d (4 a shard less 2: ping, tag, plan manifest, plan document) + %d (mirror lookups of split children) + %d (tag listings of split repositories): %v\n",
		total, whole.use.Requests, 4*s-2, heads, lists, total == whole.use.Requests+4*s-2+heads+lists)
	if total != whole.use.Requests+4*s-2+heads {
		t.Errorf("Σ shards %d requests, want %d", total, whole.use.Requests+4*s-2+heads)
	}
}

// TestPlanBench plans a 100,000-node tree: the time and peak RSS of plan,
// straight to the registry, then its requests and bytes through the
// counting proxy (the plan then already there).
func TestPlanBench(t *testing.T) {
	children, leaves := shape(t, "NESTATTEST_PLAN_SHAPE", 271, 368)
	n := 1 + children*(1+leaves)
	reg := registryHost(t)
	a := newAttributing(t, reg.Host)
	tag := push(t, reg.Host, children, leaves, "bench/plan")[0]
	counted := strings.Replace(tag, reg.Host, a.Host, 1)
	maxNodes := fmt.Sprint(max(n, walk.DefaultMaxNodes))
	direct := must(t, runTracked(t, a, "plan", true, "plan", "--shards", "16", "--max-nodes", maxNodes, "-o", "json", tag))
	doc := decode[planDoc](t, direct)
	again := must(t, runTracked(t, a, "plan again", true, "plan", "--shards", "16", "--max-nodes", maxNodes, "-o", "json", counted))
	fmt.Printf("\nplan of %d nodes in %d repositories into 16 shards (%d split):\n", doc.Nodes, doc.Repositories, doc.SplitRepositories)
	fmt.Printf("  straight to the registry: %s, peak RSS %.1f MiB\n", round(direct.took), direct.rssMiB)
	fmt.Printf("  again through the counting proxy: %s, peak RSS %.1f MiB, %d requests (%.3f a node), %d bytes received (%.0f a node), %d sent; %v\n",
		round(again.took), again.rssMiB, again.use.Requests, float64(again.use.Requests)/float64(n), again.use.Down, float64(again.use.Down)/float64(n), again.use.Up, again.use.ByKind)
	if doc.Nodes != n {
		t.Errorf("planned %d nodes, want %d", doc.Nodes, n)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("  (this test process: max RSS %.1f MiB, for the tree it built and pushed)\n", float64(ru.Maxrss)/1024)
	sizes := map[int]int{}
	for _, s := range doc.ShardSizes {
		sizes[s.Nodes]++
	}
	fmt.Printf("  shard sizes: %v\n", sizes)
}
