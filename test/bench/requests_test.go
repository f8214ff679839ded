//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// TestBenchRequests counts, by the registry's own access log, the requests
// sign and verify make per (node, repository) on a 100-node tree whose
// nodes below the root are also mirrored into the root's repository (199
// pairs, as catalog --mirror always composes it): in each layout and
// statement mode, on distribution v3.1.2 (no referrers API; a blob upload
// is a POST and a PUT) and on go-containerregistry's registry with the
// referrers API (a blob upload is one POST).
func TestBenchRequests(t *testing.T) {
	bin := harness.Binary(t)
	k := newKeys(t)
	registries := []func() *harness.Registry{
		func() *harness.Registry {
			return harness.Distribution(t, harness.DistributionOptions{StorageDir: shm(), AccessLog: true})
		},
		func() *harness.Registry { return harness.InMemory(t, true) },
	}
	fmt.Printf("\n%-20s %-7s %-10s | %-6s %-6s | %-9s %-9s | %-9s %s\n", "registry", "format", "statements", "nodes", "pairs", "sign req", "req/pair", "verify", "req/node")
	for _, newRegistry := range registries {
		reg := newRegistry()
		for _, c := range []struct{ format, statements string }{
			{"legacy", "node"}, {"legacy", "tree"}, {"bundle", "node"}, {"bundle", "tree"},
		} {
			tag := mirroredTree(t, bin, reg, fmt.Sprintf("req/%s-%s", c.format, c.statements))
			mark := reg.Mark(t)
			r := must(t, timed(t, env, bin, "sign", "-o", "json", "--tlog-upload=false", "--key", k.key, "--format", c.format, "--statements", c.statements, tag), "sign")
			sign := reg.Requests(t, mark, 0)
			var doc struct {
				Summary struct{ Nodes, Written, Mirrored int }
			}
			if err := json.Unmarshal([]byte(r.out[strings.Index(r.out, "{"):]), &doc); err != nil {
				t.Fatalf("sign -o json: %v\n%s", err, r.out)
			}
			pairs := doc.Summary.Nodes + doc.Summary.Mirrored
			if doc.Summary.Nodes != 100 || doc.Summary.Written != 100 || doc.Summary.Mirrored != 99 {
				t.Fatalf("sign wrote %+v, want 100 nodes written, 99 mirrored", doc.Summary)
			}
			mark = reg.Mark(t)
			must(t, timed(t, nil, bin, "verify", "--key", k.pub, "--insecure-ignore-tlog", "--format", c.format, tag), "verify")
			verify := reg.Requests(t, mark, 0)
			fmt.Printf("%-20s %-7s %-10s | %-6d %-6d | %-9d %-9.2f | %-9d %.2f\n", reg.Name, c.format, c.statements, doc.Summary.Nodes, pairs,
				sign.Total, float64(sign.Total)/float64(pairs), verify.Total, float64(verify.Total)/float64(doc.Summary.Nodes))
			fmt.Printf("        sign: %v\n        verify: %v\n", sign.ByKind, verify.ByKind)
		}
	}
}

// mirroredTree pushes the 100-node tree (9 two-level children of 10
// leaves) into ns's child repositories and composes its parent with every
// node mirrored into ns, as catalog --mirror always does.
func mirroredTree(t *testing.T, bin string, reg *harness.Registry, ns string) string {
	t.Helper()
	parent, err := sample.Wide(walk.AnnotationRepository, ns, 9, 10)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parent.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"catalog", "--mirror", "always"}
	for _, d := range m.Manifests {
		path := d.Annotations[walk.AnnotationRepository]
		child, err := parent.ImageIndex(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := name.NewRepository(reg.Host + "/" + ns + "/" + path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (sample.Pusher{}).Push(repo, child, "latest"); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--child", path+"=:latest")
	}
	tag := reg.Host + "/" + ns + ":latest"
	must(t, timed(t, nil, bin, append(args, tag)...), "catalog")
	return tag
}
