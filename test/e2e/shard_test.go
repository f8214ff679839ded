package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// shardPlanDoc is the part of `nestattest plan -o json` the tests read.
type shardPlanDoc struct {
	Plan              string
	Shards            []string
	Written           bool
	Nodes             int
	Repositories      int
	SplitRepositories int
	ShardSizes        []struct {
		Shard               string
		Nodes, Repositories int
	}
}

// shardSignDoc is the part of `nestattest sign -o json` the tests read.
type shardSignDoc struct {
	Nodes []struct {
		Repository, Digest, Path string
		Places                   []struct{ Repository, Signature, Attestation string }
	}
	Summary struct{ Nodes, Written, Present, Failed int }
}

// shardPush pushes one sample.Wide tree (the same digests each time) into
// each namespace of reg, and returns each root's tag as reached through
// host.
func shardPush(t *testing.T, reg *harness.Registry, host string, children, leaves int, namespaces ...string) []string {
	t.Helper()
	idx, err := sample.Wide(walk.AnnotationRepository, "shard", children, leaves)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, ns := range namespaces {
		repo, err := name.NewRepository(reg.Ref(ns))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pusher(reg).Push(repo, idx, "latest"); err != nil {
			t.Fatal(err)
		}
		tags = append(tags, host+"/"+ns+":latest")
	}
	return tags
}

// planTree runs `nestattest plan -o json` and decodes it.
func planTree(t *testing.T, ref string, shards int, args ...string) shardPlanDoc {
	t.Helper()
	r := harness.Run(t, harness.Binary(t), append([]string{"plan", "-o", "json", "--shards", fmt.Sprint(shards), ref}, args...)...)
	if r.Code != 0 {
		t.Fatalf("plan: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var d shardPlanDoc
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("plan -o json: %v\n%s", err, r.Stdout)
	}
	return d
}

// signShard runs `nestattest sign --plan --shard -o json`.
func signShard(t *testing.T, k keyPair, ref, plan, shard string, args ...string) (shardSignDoc, harness.Result) {
	t.Helper()
	r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, ref, append([]string{"--plan", plan, "--shard", shard, "-o", "json"}, args...)...)...)
	var d shardSignDoc
	if r.Code == 0 {
		if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
			t.Fatalf("sign -o json: %v\n%s", err, r.Stdout)
		}
	}
	return d, r
}

// layers reads, straight from the registry, the layer count of every
// node's .sig and .att, four at a time.
func layers(t *testing.T, nodes []string, proxyHost, regHost string) map[string][2]int {
	t.Helper()
	out := map[string][2]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, n := range nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var got [2]int
			for i, tag := range []string{sigTag(n), attTag(n)} {
				ref, err := name.ParseReference(strings.Replace(tag, proxyHost, regHost, 1), name.Insecure)
				if err != nil {
					t.Error(err)
					return
				}
				if img, err := remote.Image(ref); err == nil {
					if m, err := img.Manifest(); err == nil {
						got[i] = len(m.Layers)
					}
				}
			}
			mu.Lock()
			out[n] = got
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// checkOnce checks that every node of the tree is in exactly one shard's
// report and that each has exactly one signature and one attestation.
func checkOnce(t *testing.T, tag string, reports []shardSignDoc, proxyHost, regHost string) {
	t.Helper()
	nodes := treeOf(t, tag).refs()
	in := map[string]int{}
	for _, r := range reports {
		for _, n := range r.Nodes {
			in[n.Repository+"@"+n.Digest]++
		}
	}
	for _, n := range nodes {
		if in[n] != 1 {
			t.Errorf("%s is in %d shards", n, in[n])
		}
	}
	if len(in) != len(nodes) {
		t.Errorf("the shards signed %d nodes, the tree has %d", len(in), len(nodes))
	}
	for n, l := range layers(t, nodes, proxyHost, regHost) {
		if l != [2]int{1, 1} {
			t.Errorf("%s: %d signature and %d attestation layers, want exactly 1 and 1", n, l[0], l[1])
		}
	}
}

// shardTops counts the top children whose mirrored copy in the root's
// repository a shard looks for: one for each top child its nodes are at or
// below; in sample.Wide, each repository but the root's.
func shardTops(d shardSignDoc, root string) int {
	tops := map[string]bool{}
	for _, n := range d.Nodes {
		if n.Repository != root {
			tops[n.Repository] = true
		}
	}
	return len(tops)
}

// placeRepositories are the repositories a shard's nodes were signed in.
func placeRepositories(d shardSignDoc) map[string]bool {
	repos := map[string]bool{}
	for _, n := range d.Nodes {
		for _, p := range n.Places {
			repos[p.Repository] = true
		}
	}
	return repos
}

// TestShardSignsEveryNodeOnce plans a 55-node tree in 4 shards, signs each
// shard: every node is signed exactly once, the whole tree verifies (and
// verify writes IMAGE_URL and IMAGE_DIGEST), each shard verifies on its
// own, an unsharded sign afterwards writes nothing, and the shards make
// the requests of an unsharded run over an identical copy of the tree,
// plus, for each shard but one, a ping, the tag and the plan (manifest
// and document), plus a mirror lookup for each shard a top child's nodes
// are split into beyond the first, plus a tag listing for each shard a
// repository's nodes are split into beyond the first.
func TestShardSignsEveryNodeOnce(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	tags := shardPush(t, reg, proxy.Host, 6, 8, "org/sharded", "org/whole")
	k := newKeyPair(t, "cosign")

	proxy.Reset()
	if r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tags[1])...); r.Code != 0 {
		t.Fatalf("unsharded sign: exit %d\n%s", r.Code, r.Stderr)
	}
	whole := proxy.Counts()

	proxy.Reset()
	results := t.TempDir()
	p := planTree(t, tags[0], 4, "--results-dir", results)
	planned := proxy.Counts()
	if p.Nodes != 55 || !slices.Equal(p.Shards, []string{"0", "1", "2", "3"}) || !p.Written {
		t.Fatalf("plan: %+v", p)
	}
	for file, want := range map[string]string{"PLAN": p.Plan, "SHARDS": `["0","1","2","3"]`} {
		if got, err := os.ReadFile(filepath.Join(results, file)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want exactly %q", file, got, err, want)
		}
	}
	for _, s := range p.ShardSizes {
		if s.Nodes != 13 && s.Nodes != 14 {
			t.Errorf("shard %s: %d nodes, want 13 or 14", s.Shard, s.Nodes)
		}
	}

	var reports []shardSignDoc
	sum := harness.Counts{ByKind: map[string]int{}}
	extraHeads := 0
	extraLists, allRepos := 0, map[string]bool{} // each shard lists the tags of each repository it signs in
	root := strings.TrimSuffix(tags[0], ":latest")
	for _, id := range p.Shards {
		proxy.Reset()
		d, r := signShard(t, k, tags[0], p.Plan, id, "--results-dir", t.TempDir())
		if r.Code != 0 || d.Summary.Failed != 0 || d.Summary.Written != d.Summary.Nodes {
			t.Fatalf("shard %s: exit %d, %+v\n%s", id, r.Code, d.Summary, r.Stderr)
		}
		c := proxy.Counts()
		t.Logf("shard %s: %d nodes, %d requests %v", id, d.Summary.Nodes, c.Total, c.ByKind)
		sum.Total += c.Total
		for k, v := range c.ByKind {
			sum.ByKind[k] += v
		}
		extraHeads += shardTops(d, root)
		shardRepos := placeRepositories(d)
		extraLists += len(shardRepos)
		for r := range shardRepos {
			allRepos[r] = true
		}
		reports = append(reports, d)
	}
	extraHeads -= p.Repositories - 1
	extraLists -= len(allRepos)
	checkOnce(t, tags[0], reports, proxy.Host, reg.Host)

	// The requests: the shards' minus the unsharded run's, by kind.
	shards := len(p.Shards)
	want := maps.Clone(whole.ByKind)
	want["manifest GET"] += 2*shards - 1 // each shard reads the plan's manifest and resolves the tag, which an unsharded run resolves once
	want["blob GET"] += shards           // each shard reads its document
	want["ping GET"] += shards - 1       // each process pings the registry once
	want["manifest HEAD"] += extraHeads  // each shard looks for the mirrored copy of its nodes' top children
	want["tags GET"] += extraLists       // and lists the tags of the repositories it shares with another shard
	if !maps.Equal(sum.ByKind, want) {
		t.Errorf("the shards made %v,\nwant the unsharded run's %v\nwith %d more for the plan, %d mirror lookups and %d tag listings: %v", sum.ByKind, whole.ByKind, 4*shards-2, extraHeads, extraLists, want)
	}
	if sum.Total != whole.Total+4*shards-2+extraHeads+extraLists {
		t.Errorf("the shards made %d requests, want %d + %d + %d + %d", sum.Total, whole.Total, 4*shards-2, extraHeads, extraLists)
	}
	t.Logf("unsharded %d requests; plan %d %v; shards %d (+%d: %d for the plan, %d mirror lookups); %d repositories split",
		whole.Total, planned.Total, planned.ByKind, sum.Total, sum.Total-whole.Total, 4*shards-2, extraHeads, p.SplitRepositories)

	// The whole tree verifies, and verify hands on the root.
	vres := t.TempDir()
	d, r := verifyTree(t, k.pub, tags[0], "--results-dir", vres)
	if r.Code != 0 || d.Summary.Passed != 55 {
		t.Fatalf("verify: exit %d, %+v, %v", r.Code, d.Summary, d.failures())
	}
	digest := treeOf(t, tags[0]).Nodes[0].Digest
	for file, want := range map[string]string{"IMAGE_URL": tags[0], "IMAGE_DIGEST": digest} {
		if got, err := os.ReadFile(filepath.Join(vres, file)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want exactly %q", file, got, err, want)
		}
	}
	// Each shard verifies on its own, only its nodes.
	for i, id := range p.Shards {
		d, r := verifyTree(t, k.pub, tags[0], "--plan", p.Plan, "--shard", id)
		if r.Code != 0 || d.Summary.Passed != p.ShardSizes[i].Nodes || d.Summary.Nodes != p.ShardSizes[i].Nodes {
			t.Errorf("verify shard %s: exit %d, %+v", id, r.Code, d.Summary)
		}
	}
	// An unsharded run finds every signature and attestation in place:
	// the shards wrote the statements it would have.
	proxy.Reset()
	r = harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tags[0])...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") || proxy.Counts().Writes() != 0 {
		t.Errorf("unsharded sign after the shards: exit %d, %d writes\n%s%s", r.Code, proxy.Counts().Writes(), r.Stdout, r.Stderr)
	}
	// Planning again pushes nothing.
	proxy.Reset()
	if again := planTree(t, tags[0], 4); again.Plan != p.Plan || again.Written || proxy.Counts().Writes() != 0 {
		t.Errorf("plan again: %s written=%v, %d writes; want %s, nothing written", again.Plan, again.Written, proxy.Counts().Writes(), p.Plan)
	}
}

// TestShardRefusesAnotherRoot: the tag moved after the plan was made;
// every shard refuses the plan and writes nothing, by tag (one request to
// resolve it) and by digest (no request for the root).
func TestShardRefusesAnotherRoot(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	tag := shardPush(t, reg, proxy.Host, 3, 3, "org/moved")[0]
	k := newKeyPair(t, "cosign")
	p := planTree(t, tag, 3)
	moved, err := sample.Wide(walk.AnnotationRepository, "moved", 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pusher(reg).Push(catalogRepo(t, reg.Ref("org/moved")), moved, "latest"); err != nil {
		t.Fatal(err)
	}
	now := treeOf(t, tag).Nodes[0]
	byDigest := strings.TrimSuffix(tag, ":latest") + "@" + now.Digest
	for _, id := range p.Shards {
		for _, ref := range []string{tag, byDigest} {
			proxy.Reset()
			_, r := signShard(t, k, ref, p.Plan, id)
			c := proxy.Counts()
			if r.Code != 1 || !strings.Contains(r.Stderr, "plan made for another root") || !strings.Contains(r.Stderr, "nothing signed") {
				t.Errorf("shard %s of %s: exit %d\n%s", id, ref, r.Code, r.Stderr)
			}
			reads := 2 // the plan's manifest, and the tag
			if ref == byDigest {
				reads = 1
			}
			if c.Writes() != 0 || c.ByKind["manifest GET"] != reads || c.ByKind["blob GET"] != 0 {
				t.Errorf("shard %s of %s: %v; want %d manifest reads and nothing else", id, ref, c.ByKind, reads)
			}
		}
		r := harness.Run(t, harness.Binary(t), "verify", "--key", k.pub, "--insecure-ignore-tlog", "--plan", p.Plan, "--shard", id, tag)
		if r.Code != 1 || !strings.Contains(r.Stderr, "plan made for another root") {
			t.Errorf("verify shard %s: exit %d\n%s", id, r.Code, r.Stderr)
		}
	}
}

// TestShardRefusesBadFlags: shard ids the plan does not have, a plan by
// tag, --plan or --shard alone, composing with a plan, and shard counts
// out of range exit 2 and write nothing.
func TestShardRefusesBadFlags(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	tag := shardPush(t, reg, proxy.Host, 2, 2, "org/flags")[0]
	k := newKeyPair(t, "cosign")
	p := planTree(t, tag, 3)
	planTag := strings.SplitN(p.Plan, "@", 2)[0] + ":latest"
	for _, tc := range []struct {
		args []string
		want string
		reqs int // requests made before refusing, at most
	}{
		{signArgs(k, tag, "--plan", p.Plan, "--shard", "3"), "shard id out of range: shard 3; the plan has shards 0 to 2", 2},
		{signArgs(k, tag, "--plan", p.Plan, "--shard", "256"), "shard id out of range", 0},
		{signArgs(k, tag, "--plan", p.Plan, "--shard", "-2"), "shard id out of range", 0},
		{signArgs(k, tag, "--plan", p.Plan), "--plan needs --shard", 0},
		{signArgs(k, tag, "--shard", "0"), "--shard needs --plan", 0},
		{signArgs(k, tag, "--plan", planTag, "--shard", "0"), "want the plan by digest", 0},
		{signArgs(k, tag, "--plan", p.Plan, "--shard", "0", "--child", "c000=@"+strings.SplitN(p.Plan, "@", 2)[1]), "compose it", 0},
		{[]string{"verify", "--key", k.pub, "--insecure-ignore-tlog", "--plan", p.Plan, "--shard", "5", tag}, "shard id out of range", 2},
		{[]string{"verify", "--key", k.pub, "--insecure-ignore-tlog", "--plan", p.Plan, "--shard", "0", "--results-dir", t.TempDir(), tag}, "--results-dir with --shard", 0},
		{[]string{"plan", "--shards", "0", tag}, "--shards 0: want 1 to 256", 0},
		{[]string{"plan", "--shards", "257", tag}, "--shards 257: want 1 to 256", 0},
	} {
		proxy.Reset()
		r := harness.RunEnv(t, k.env(), harness.Binary(t), tc.args...)
		c := proxy.Counts()
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) || c.Writes() != 0 || c.Total > tc.reqs {
			t.Errorf("%v: exit %d after %d requests (%d writes); want exit 2 with %q after at most %d\n%s", tc.args, r.Code, c.Total, c.Writes(), tc.want, tc.reqs, r.Stderr)
		}
	}
}

// TestShardKilledAndRerun kills one shard mid-way with SIGKILL; re-running
// only that shard completes the tree, every node signed exactly once.
func TestShardKilledAndRerun(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	tag := shardPush(t, reg, proxy.Host, 9, 10, "org/killed")[0]
	k := newKeyPair(t, "cosign")
	p := planTree(t, tag, 3)
	var reports []shardSignDoc
	for _, id := range []string{"0", "2"} {
		d, r := signShard(t, k, tag, p.Plan, id)
		if r.Code != 0 {
			t.Fatalf("shard %s: exit %d\n%s", id, r.Code, r.Stderr)
		}
		reports = append(reports, d)
	}

	proxy.Reset()
	own := p.ShardSizes[1].Nodes
	cmd := exec.Command(harness.Binary(t), signArgs(k, tag, "--plan", p.Plan, "--shard", "1", "-j", "2")...)
	cmd.Env = append(cmd.Environ(), k.env()...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for proxy.Counts().ByKind["manifest PUT"] < own/2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Kill() // SIGKILL
	_ = cmd.Wait()
	puts := proxy.Counts().ByKind["manifest PUT"]
	if puts < own/2 || puts >= 2*own {
		t.Fatalf("shard 1 was killed after %d of %d signature and attestation manifests: not mid-way", puts, 2*own)
	}
	t.Logf("shard 1 killed after %d of %d signature and attestation manifests", puts, 2*own)
	if d, r := verifyTree(t, k.pub, tag); r.Code != 1 || d.Summary.Failed == 0 {
		t.Fatalf("verify after the kill: exit %d, %+v; want nodes unsigned", r.Code, d.Summary)
	}

	d, r := signShard(t, k, tag, p.Plan, "1")
	if r.Code != 0 || d.Summary.Nodes != own || d.Summary.Present == 0 || d.Summary.Written == 0 {
		t.Fatalf("re-run of shard 1: exit %d, %+v\n%s", r.Code, d.Summary, r.Stderr)
	}
	reports = append(reports, d)
	checkOnce(t, tag, reports, proxy.Host, reg.Host)
	if v, r := verifyTree(t, k.pub, tag); r.Code != 0 || v.Summary.Passed != p.Nodes {
		t.Errorf("verify: exit %d, %+v, %v", r.Code, v.Summary, v.failures())
	}
}
