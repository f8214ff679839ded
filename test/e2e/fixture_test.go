package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// koTree is the ko-shaped sample pushed to a registry: the parent in
// org/ko-build, app1..app3 in org/ko-build/<app>, app2 listing app2/plugins.
type koTree struct {
	reg    *harness.Registry
	root   name.Digest
	tag    string   // the root as repository:latest
	expect []string // "repository@digest kind platform", in tree order
}

// pushKo pushes the sample without mirroring: the registry must accept
// index entries that live in other repositories (SparseIndexes).
func pushKo(t *testing.T, reg *harness.Registry, namespace string) *koTree {
	t.Helper()
	children, err := sample.KoChildren(walk.AnnotationRepository)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := name.NewRepository(reg.Ref(namespace))
	if err != nil {
		t.Fatal(err)
	}
	idx := sample.Parent(walk.AnnotationRepository, children)
	root, err := pusher(reg).Push(parent, idx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	k := &koTree{reg: reg, root: root, tag: parent.Tag("latest").String()}
	k.expect = expected(t, parent, idx, nil)
	return k
}

// expected lists what the walk must find below idx in repo, in pre-order.
func expected(t *testing.T, repo name.Repository, idx v1.ImageIndex, p *v1.Platform) []string {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{line(repo, d, "index", p)}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Manifests {
		child := repo
		if s, ok := e.Annotations[walk.AnnotationRepository]; ok {
			child = repo.Registry.Repo(repo.RepositoryStr(), s)
		}
		if e.MediaType.IsIndex() {
			sub, err := idx.ImageIndex(e.Digest)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, expected(t, child, sub, e.Platform)...)
			continue
		}
		out = append(out, line(child, e.Digest, "image", e.Platform))
	}
	return out
}

func line(repo name.Repository, d v1.Hash, kind string, p *v1.Platform) string {
	s := fmt.Sprintf("%s@%s %s", repo.Name(), d, kind)
	if p != nil {
		s += " " + p.String()
	}
	return s
}

// treeDoc is the part of `nestattest tree -o json` the tests read.
type treeDoc struct {
	Nodes []struct {
		Repository, Digest, Kind, Platform, Path, Error string
	}
	Summary struct{ Nodes, Repositories, Missing, Invalid int }
}

func (d treeDoc) lines() []string {
	var out []string
	for _, n := range d.Nodes {
		s := fmt.Sprintf("%s@%s %s", n.Repository, n.Digest, n.Kind)
		if n.Platform != "" {
			s += " " + n.Platform
		}
		out = append(out, s)
	}
	return out
}

// nodes lists the repository@digest of every node, as the JSON gives them.
func (d treeDoc) refs() []string {
	var out []string
	for _, n := range d.Nodes {
		out = append(out, n.Repository+"@"+n.Digest)
	}
	return out
}

func decodeTree(t *testing.T, stdout string) treeDoc {
	t.Helper()
	var d treeDoc
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("tree -o json: %v\n%s", err, stdout)
	}
	return d
}

// treeOf runs `nestattest tree -o json` and decodes it.
func treeOf(t *testing.T, ref string, args ...string) treeDoc {
	t.Helper()
	r := harness.Run(t, harness.Binary(t), append([]string{"tree", "-o", "json", ref}, args...)...)
	if r.Code != 0 {
		t.Fatalf("tree %s: exit %d\n%s", ref, r.Code, r.Stderr)
	}
	return decodeTree(t, r.Stdout)
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func repositories(lines []string) map[string]bool {
	out := map[string]bool{}
	for _, l := range lines {
		out[strings.SplitN(l, "@", 2)[0]] = true
	}
	return out
}

// pusher pushes sample trees into reg: go-containerregistry's in-memory
// registry wants an index's children in its repository, so scoped
// children's manifests are also put there.
func pusher(reg *harness.Registry) sample.Pusher {
	return sample.Pusher{Annotation: walk.AnnotationRepository, MirrorManifests: reg.Name == "in-memory", Options: fixtureAuth}
}

// fixtureAuth authenticates fixture pushes with the docker config the test
// set (DOCKER_CONFIG), as the registry under token auth needs.
var fixtureAuth = []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}

// pushWide pushes sample.Wide into ns and returns the root tag.
func pushWide(t *testing.T, host, ns string, children, leaves int) string {
	return pushWideTo(t, &harness.Registry{Host: host}, ns, children, leaves)
}

// pushWideTo is pushWide for a registry that may want children mirrored.
func pushWideTo(t *testing.T, reg *harness.Registry, ns string, children, leaves int) string {
	host := reg.Host
	t.Helper()
	idx, err := sample.Wide(walk.AnnotationRepository, ns, children, leaves)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(host + "/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pusher(reg).Push(repo, idx, "latest"); err != nil {
		t.Fatal(err)
	}
	return repo.Tag("latest").String()
}
