package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
)

// tokenRegistry is distribution with `auth: token` behind a token server
// whose ACL lets `builder` pull and push org/ko-build and below and list
// the catalog, and lets `reader` pull there.
func tokenRegistry(t *testing.T, lifetime time.Duration, sparse bool) (*harness.Registry, *harness.TokenServer) {
	t.Helper()
	ts := harness.NewTokenServer(t, harness.TokenOptions{Lifetime: lifetime, Users: map[string]harness.TokenUser{
		"builder": {Password: "builder-pass", ACL: harness.ACL{harness.AllowRepositories("org/ko-build/**", "pull", "push"), harness.AllowCatalog()}},
		"reader":  {Password: "reader-pass", ACL: harness.ACL{harness.AllowRepositories("org/ko-build/**", "pull")}},
	}})
	reg := harness.Distribution(t, harness.DistributionOptions{Tokens: ts, SparseIndexes: sparse})
	return reg, ts
}

// as runs nestattest with user's docker config.
func as(t *testing.T, ts *harness.TokenServer, reg *harness.Registry, user string, env []string, args ...string) harness.Result {
	t.Helper()
	return harness.RunEnv(t, append(env, "DOCKER_CONFIG="+ts.DockerConfig(t, reg.Host, user)), harness.Binary(t), args...)
}

// pushChildren pushes 24 images as org/ko-build/c<i>:latest, as builder:
// each for linux/amd64, linux/arm64 and linux/s390x, the first three for
// linux/ppc64le too. Composed under a parent, that is 100 nodes in 25
// repositories.
func pushChildren(t *testing.T, ts *harness.TokenServer, reg *harness.Registry) {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", ts.DockerConfig(t, reg.Host, "builder"))
	for i := range 24 {
		content := fmt.Sprint("child", i)
		platforms := []v1.Platform{{OS: "linux", Architecture: "s390x"}}
		if i < 3 {
			platforms = append(platforms, v1.Platform{OS: "linux", Architecture: "ppc64le"})
		}
		var extra []mutate.IndexAddendum
		for _, p := range platforms {
			img, err := sample.Image(content, p)
			if err != nil {
				t.Fatal(err)
			}
			extra = append(extra, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		}
		idx, err := sample.Index(content, extra...)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := name.NewRepository(reg.Ref(fmt.Sprintf("org/ko-build/c%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		catalogWriteIndex(t, repo, idx)
	}
}

// TestTokenAuthTree runs the main cases under token auth, on a registry
// that checks index children: discover 24 children and compose the parent
// (mirroring them), walk, sign and verify a 100-node tree over 25
// repositories; cosign verifies every node. It counts the token requests
// of each command from the token server's log.
func TestTokenAuthTree(t *testing.T) {
	reg, ts := tokenRegistry(t, 5*time.Minute, false)
	pushChildren(t, ts, reg)
	k := newKeyPair(t, "cosign")
	parent := reg.Ref("org/ko-build:latest")
	counts := map[string]int{}
	run := func(what string, args ...string) harness.Result {
		t.Helper()
		ts.Reset()
		r := as(t, ts, reg, "builder", k.env(), args...)
		counts[what] = len(ts.TokenRequests())
		if r.Code != 0 {
			t.Fatalf("%s: exit %d\n%s%s\ntoken requests:\n%s", what, r.Code, r.Stdout, r.Stderr, tokenLog(ts))
		}
		return r
	}
	run("catalog --discover", "catalog", "--discover", parent)
	tree := run("tree", "tree", "-o", "json", parent)
	nodes := decodeTree(t, tree.Stdout)
	run("sign", "sign", "--tlog-upload=false", "--key", k.key, parent)
	run("verify", "verify", "--key", k.pub, "--insecure-ignore-tlog", "--require-root", parent)
	t.Logf("%d nodes in %d repositories; token requests: %v", nodes.Summary.Nodes, nodes.Summary.Repositories, counts)
	if nodes.Summary.Nodes != 100 || nodes.Summary.Repositories != 25 {
		t.Errorf("the tree has %d nodes in %d repositories, want 100 in 25", nodes.Summary.Nodes, nodes.Summary.Repositories)
	}
	for what, n := range counts {
		// At most one token request per 50 repositories a command, and one
		// more for the root's repository, read before its children are known.
		if n > 2 {
			t.Errorf("%s made %d token requests for %d repositories", what, n, nodes.Summary.Repositories)
		}
	}
	t.Setenv("DOCKER_CONFIG", ts.DockerConfig(t, reg.Host, "reader"))
	cosignVerifyEach(t, k.pub, nodes.refs())
}

// TestTokenAuthShortTokens signs with five-second tokens, slowly (one job):
// the run outlives many tokens and completes, and no scope is asked for
// more often than renewal needs: once when the run starts, and once per
// renewal, which comes no sooner than half a token's life (the registry
// client renews a tenth of the life before the end, plus room for latency
// and whole-second expiry claims, and never earlier than half-way).
func TestTokenAuthShortTokens(t *testing.T) {
	const lifetime = 5 * time.Second
	reg, ts := tokenRegistry(t, lifetime, true)
	tag := pushWideAs(t, ts, reg, "org/ko-build/wide", 6, 3) // 25 nodes, 7 repositories
	k := newKeyPair(t, "cosign")
	ts.Reset()
	start := time.Now()
	r := as(t, ts, reg, "builder", k.env(), "sign", "--tlog-upload=false", "--key", k.key, "-j", "1", tag)
	took := time.Since(start)
	requests := ts.TokenRequests()
	t.Logf("sign took %v with five-second tokens: %d token requests", took.Round(time.Millisecond), len(requests))
	if r.Code != 0 {
		t.Fatalf("sign: exit %d\n%s%s\n%s", r.Code, r.Stdout, r.Stderr, tokenLog(ts))
	}
	if took < 2*lifetime {
		t.Logf("the run took less than two token lifetimes; renewal is only lightly exercised")
	}
	// Per scope: the first request, one more for the root's repository
	// (read before its children are announced), one per half lifetime.
	limit := int(took/(lifetime/2)) + 2
	perScope := tokenScopeCounts(requests)
	if len(perScope) < 7 {
		t.Errorf("token requests named %d scopes, want the 7 repositories': %v", len(perScope), perScope)
	}
	for scope, n := range perScope {
		if n > limit {
			t.Errorf("%s asked for %d times in %v, want at most %d (once per renewal)\n%s", scope, n, took.Round(time.Millisecond), limit, tokenLog(ts))
		}
	}
	if len(requests) > limit {
		t.Errorf("%d token requests in %v, want at most %d\n%s", len(requests), took.Round(time.Millisecond), limit, tokenLog(ts))
	}
}

// TestTokenAuthShortTokensFarRegistry: five-second tokens and a registry
// 150 ms away, where a request can leave with a token that expires before
// it arrives. Five 19-node signs, each of a new tree, all complete: a
// request refused with a token that expired on the way is sent again with
// a fresh one, never taken for a scope the credentials lack. -v says how
// many requests met an expired token.
func TestTokenAuthShortTokensFarRegistry(t *testing.T) {
	reg, ts := tokenRegistry(t, 5*time.Second, true)
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{Latency: 150 * time.Millisecond})
	k := newKeyPair(t, "cosign")
	far := &harness.Registry{Host: proxy.Host}
	expired := 0
	for i := range 5 {
		tag := pushWideAs(t, ts, reg, fmt.Sprintf("org/ko-build/tok%d", i), 6, 2) // 19 nodes, 7 repositories
		tag = strings.Replace(tag, reg.Host, proxy.Host, 1)
		start := time.Now()
		r := as(t, ts, far, "builder", k.env(), "sign", "--tlog-upload=false", "--key", k.key, "-v", tag)
		if r.Code != 0 || !strings.Contains(r.Stdout, "19 written") || strings.Contains(r.Stderr, "refused") {
			t.Fatalf("run %d: exit %d\n%s%s", i+1, r.Code, r.Stdout, r.Stderr)
		}
		line := lineWith(r.Stderr, "registry tokens:")
		if line == "" {
			t.Fatalf("run %d: -v does not say how the tokens fared:\n%s", i+1, r.Stderr)
		}
		var tokens, met int
		if _, err := fmt.Sscanf(line, "registry tokens: %d token requests; %d", &tokens, &met); err != nil {
			t.Fatalf("run %d: %q: %v", i+1, line, err)
		}
		expired += met
		t.Logf("run %d took %v: %s", i+1, time.Since(start).Round(time.Millisecond), line)
	}
	t.Logf("%d requests in five runs met an expired token", expired)
}

// tokenScopeCounts counts, for each scope, the token requests that asked
// for it.
func tokenScopeCounts(requests []harness.TokenRequest) map[string]int {
	counts := map[string]int{}
	for _, r := range requests {
		for _, param := range r.Scopes {
			for _, s := range strings.Fields(param) {
				counts[s]++
			}
		}
	}
	return counts
}

// lineWith is the first line of out that contains s, or "".
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestTokenAuthRefusedRepository: builder may read but not write one
// child: sign reports that repository refused for push once, signs
// everything else and exits 1; a re-run with credentials that may write
// there completes the tree.
func TestTokenAuthRefusedRepository(t *testing.T) {
	reg, ts := tokenRegistry(t, 5*time.Minute, true)
	tag := pushWideAs(t, ts, reg, "org/ko-build/wide", 6, 3)
	ts.SetUser("builder", harness.TokenUser{Password: "builder-pass", ACL: harness.ACL{
		harness.AllowRepositories("org/ko-build/wide", "pull", "push"),
		harness.AllowRepositories("org/ko-build/wide/c000", "pull", "push"),
		harness.AllowRepositories("org/ko-build/wide/c001", "pull"),
		harness.AllowRepositories("org/ko-build/wide/c002", "pull", "push"),
		harness.AllowRepositories("org/ko-build/wide/c003", "pull", "push"),
		harness.AllowRepositories("org/ko-build/wide/c004", "pull", "push"),
		harness.AllowRepositories("org/ko-build/wide/c005", "pull", "push"),
	}})
	k := newKeyPair(t, "cosign")
	r := as(t, ts, reg, "builder", k.env(), "sign", "--tlog-upload=false", "--key", k.key, tag)
	refusal := "push to org/ko-build/wide/c001 refused by the registry: the credentials for " + reg.Host + " may not push there"
	if r.Code != 1 || strings.Count(r.Stderr, refusal) != 1 || !strings.Contains(r.Stdout, "21 written") {
		t.Fatalf("exit %d; want 1, the refusal once, the 21 other nodes written\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	ts.SetUser("builder", harness.TokenUser{Password: "builder-pass", ACL: harness.ACL{harness.AllowRepositories("org/ko-build/**", "pull", "push")}})
	r = as(t, ts, reg, "builder", k.env(), "sign", "--tlog-upload=false", "--key", k.key, tag)
	if r.Code != 0 || !strings.Contains(r.Stdout, "4 written, 21 present") {
		t.Fatalf("re-run with write access: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestTokenAuthRefusedRead: builder may neither pull nor push one child:
// the walk's read of it is reported as a refused pull and push, with the
// request that met the refusal, not as a refused push (the old message,
// ": push to REPO refused", is a substring of the new one but for the ": ").
func TestTokenAuthRefusedRead(t *testing.T) {
	reg, ts := tokenRegistry(t, 5*time.Minute, true)
	tag := pushWideAs(t, ts, reg, "org/ko-build/wide", 3, 1)
	ts.SetUser("builder", harness.TokenUser{Password: "builder-pass", ACL: harness.ACL{
		harness.AllowRepositories("org/ko-build/wide", "pull", "push"),
		harness.AllowRepositories("org/ko-build/wide/c000", "pull", "push"),
		harness.AllowRepositories("org/ko-build/wide/c002", "pull", "push"),
	}})
	k := newKeyPair(t, "cosign")
	r := as(t, ts, reg, "builder", k.env(), "sign", "--tlog-upload=false", "--key", k.key, tag)
	refusal := "pull from and push to org/ko-build/wide/c001 refused by the registry: the credentials for " + reg.Host +
		" may neither pull nor push there (GET /v2/org/ko-build/wide/c001/manifests/sha256:"
	if r.Code != 1 || !strings.Contains(r.Stderr, refusal) || strings.Contains(r.Stderr, ": push to org/ko-build/wide/c001 refused") {
		t.Fatalf("exit %d; want 1 and %q\n%s%s", r.Code, refusal, r.Stdout, r.Stderr)
	}
}

// pushWideAs pushes sample.Wide into ns as builder.
func pushWideAs(t *testing.T, ts *harness.TokenServer, reg *harness.Registry, ns string, children, leaves int) string {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", ts.DockerConfig(t, reg.Host, "builder"))
	return pushWideTo(t, reg, ns, children, leaves)
}

func tokenLog(ts *harness.TokenServer) string {
	var b strings.Builder
	for _, r := range ts.TokenRequests() {
		fmt.Fprintln(&b, r)
	}
	return b.String()
}
