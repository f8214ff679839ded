package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
)

// TestSignSharedDigest composes, on a registry that checks index children,
// a parent from children that are one image (one digest, n repositories),
// and signs it: the root's repository then holds n attestations of that
// digest in one tag, the report counts what is there, and a re-run writes
// nothing. Beside it, a tree of the same size without sharing is signed,
// and both times are logged.
func TestSignSharedDigest(t *testing.T) {
	for _, n := range []int{12, 150} {
		t.Run(fmt.Sprint(n, " children"), func(t *testing.T) {
			reg := harness.Distribution(t, harness.DistributionOptions{})
			k := newKeyPair(t, "cosign")
			// Every run goes through the proxy: the host is in what is signed,
			// and the re-run's writes are counted there.
			proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
			shared, sharedTime, sharedArgs := signChildren(t, reg, proxy.Host, k, "org/same", n, func(int) string { return "same" })
			distinct, distinctTime, _ := signChildren(t, reg, proxy.Host, k, "org/distinct", n, func(i int) string { return fmt.Sprint("app", i) })
			t.Logf("%d children: shared digest %v (%s), distinct digests %v (%s); ratio %.2f",
				n, sharedTime.Round(time.Millisecond), shared, distinctTime.Round(time.Millisecond), distinct, sharedTime.Seconds()/distinctTime.Seconds())

			// In the root's repository, the shared index and each of its two
			// images carry one attestation per path.
			idx, err := sample.Index("same")
			if err != nil {
				t.Fatal(err)
			}
			m, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			d, _ := idx.Digest()
			for _, digest := range []string{d.String(), m.Manifests[0].Digest.String(), m.Manifests[1].Digest.String()} {
				att := reg.Ref("org/same:" + strings.Replace(digest, ":", "-", 1) + ".att")
				if layers := layerCount(t, att); layers != n {
					t.Errorf("%s holds %d attestations, want %d", att, layers, n)
				}
			}
			proxy.Reset()
			r := harness.RunEnv(t, k.env(), harness.Binary(t), sharedArgs...)
			if r.Code != 0 || proxy.Counts().Writes() != 0 || !strings.Contains(r.Stdout, "nothing to write") {
				t.Errorf("re-run: exit %d, %d writes\n%s%s", r.Code, proxy.Counts().Writes(), r.Stdout, r.Stderr)
			}
			// verify --mirrors checks every node where it stands and its
			// mirrored copy in the root's repository.
			doc := verifyJSON(t, k.pub, sharedArgs[4], "--mirrors")
			mirrored := 0
			for _, node := range doc.Nodes {
				for _, c := range node.Checks {
					if c.Mirror != "" && c.OK {
						mirrored++
					}
				}
			}
			if doc.Summary.Failed != 0 || mirrored != 2*(len(doc.Nodes)-1) {
				t.Errorf("verify --mirrors: %+v, %d checks of mirrored copies passed, want %d", doc.Summary, mirrored, 2*(len(doc.Nodes)-1))
			}
		})
	}
}

// signChildren pushes n children into ns/c<i>, each the image content(i)
// names, composes and signs the parent in one sign run, checks that the
// report's counts are what the registry holds, and returns the summary,
// the time the run took and the command's arguments (without --report).
func signChildren(t *testing.T, reg *harness.Registry, host string, k keyPair, ns string, n int, content func(int) string) (string, time.Duration, []string) {
	t.Helper()
	parent := catalogRepo(t, reg.Ref(ns))
	signed := catalogRepo(t, host+"/"+ns)
	var args []string
	for i := range n {
		idx, err := sample.Index(content(i))
		if err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("c%03d", i)
		catalogWriteIndex(t, parent.Registry.Repo(parent.RepositoryStr(), path), idx)
		args = append(args, "--child", path+"=:latest")
	}
	args = append([]string{"sign", "--tlog-upload=false", "--key", k.key, signed.Tag("latest").String()}, args...)
	report := filepath.Join(t.TempDir(), "report.json")
	start := time.Now()
	r := harness.RunEnv(t, k.env(), harness.Binary(t), append(args, "--report", report)...)
	took := time.Since(start)
	if r.Code != 0 {
		t.Fatalf("sign %s: exit %d\n%s%s", ns, r.Code, r.Stdout, r.Stderr)
	}
	var doc struct {
		Nodes []struct {
			Repository, Digest string
			Places             []struct{ Repository, Attestation string }
		}
		Summary struct{ Nodes, Written, AttestationsWritten int }
	}
	raw, err := os.ReadFile(report)
	if err != nil || json.Unmarshal(raw, &doc) != nil {
		t.Fatalf("report: %v", err)
	}
	// Every attestation the report calls written is in its tag.
	want := map[string]int{}
	for _, node := range doc.Nodes {
		for _, p := range node.Places {
			if p.Attestation == "written" {
				repo := strings.Replace(p.Repository, host, reg.Host, 1)
				want[repo+":"+strings.Replace(node.Digest, ":", "-", 1)+".att"]++
			}
		}
	}
	total := 0
	for tag, w := range want {
		total += w
		if got := layerCount(t, tag); got != w {
			t.Errorf("%s: the report says %d attestations written, the tag holds %d", tag, w, got)
		}
	}
	if total != doc.Summary.AttestationsWritten {
		t.Errorf("summary %d attestations written, the nodes %d", doc.Summary.AttestationsWritten, total)
	}
	return strings.TrimSpace(r.Stdout), took, args
}

// layerCount is the number of layers of the image at tag.
func layerCount(t *testing.T, tag string) int {
	t.Helper()
	m, err := storedManifest(tag)
	if err != nil {
		t.Fatalf("%s: %v", tag, err)
	}
	return len(m.Layers)
}
