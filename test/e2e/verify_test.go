package e2e

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// verifyDoc is the part of `nestattest verify -o json` the tests read.
type verifyDoc struct {
	Nodes []struct {
		Path, Repository, Digest string
		Passed                   bool
		Layouts                  []string
		Checks                   []struct {
			Name, Layout, Reason, Mirror string
			OK                           bool
		}
	}
	Summary struct{ Nodes, Passed, Failed int }
}

func (d verifyDoc) failures() map[string]string {
	out := map[string]string{}
	for _, n := range d.Nodes {
		if n.Passed {
			continue
		}
		var reasons []string
		for _, c := range n.Checks {
			if !c.OK {
				reasons = append(reasons, c.Name+": "+c.Reason)
			}
		}
		out[n.Repository+"@"+n.Digest] = strings.Join(reasons, "; ")
	}
	return out
}

// verifyTree runs nestattest verify -o json: with the key pub and the
// transparency log ignored, or with pub empty as args alone say.
func verifyTree(t *testing.T, pub, ref string, args ...string) (verifyDoc, harness.Result) {
	t.Helper()
	cmd := []string{"verify", "-o", "json", ref}
	if pub != "" {
		cmd = append(cmd, "--key", pub, "--insecure-ignore-tlog")
	}
	r := harness.Run(t, harness.Binary(t), append(cmd, args...)...)
	var d verifyDoc
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("verify -o json: exit %d, %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	return d, r
}

// TestVerifyTreeSignedByCosign: a tree signed node by node with cosign sign
// and cosign attest passes nestattest verify.
func TestVerifyTreeSignedByCosign(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")
	k := newKeyPair(t, "cosign")
	nodes := treeOf(t, tree.tag).refs()
	cosignSignTree(t, k, nodes, writeFile(t, "provenance.json", slsaPredicate))

	d, r := verifyTree(t, k.pub, tree.tag)
	if r.Code != 0 || d.Summary.Passed != len(nodes) {
		t.Fatalf("exit %d, %+v, failures %v", r.Code, d.Summary, d.failures())
	}
	// cosign signed without the root binding: --require-root fails each
	// node below the root (the root's own signature is over the root).
	d, r = verifyTree(t, k.pub, tree.tag, "--require-root")
	if r.Code != 1 || d.Summary.Failed != len(nodes)-1 || d.Nodes[0].Passed != true {
		t.Errorf("--require-root: exit %d, %+v", r.Code, d.Summary)
	}
	text := harness.Run(t, harness.Binary(t), "verify", "--key", k.pub, "--insecure-ignore-tlog", tree.tag)
	if text.Code != 0 || !strings.Contains(text.Stdout, "transparency log not checked") {
		t.Errorf("text output: exit %d\n%s", text.Code, text.Stdout)
	}
}

// TestVerifyTampering: each kind of tampering fails the node it touches,
// named, with the reason, and only that node.
func TestVerifyTampering(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	k := newKeyPair(t, "cosign")
	other := newKeyPair(t, "other")
	crane := func(args ...string) {
		t.Helper()
		if r := harness.Run(t, harness.Tool(t, "crane"), append(args, "--insecure")...); r.Code != 0 {
			t.Fatalf("crane %v: %s", args, r.Stderr)
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, tree *koTree, nodes []string) (victim, reason string)
	}{
		{"leaf unsigned", func(t *testing.T, _ *koTree, nodes []string) (string, string) {
			crane("delete", sigTag(nodes[2]))
			return nodes[2], "signature: not signed"
		}},
		{"signed by another key", func(t *testing.T, _ *koTree, nodes []string) (string, string) {
			crane("delete", sigTag(nodes[3]))
			if r := cosign(t, other.env(), "sign", "--key", other.key, "--tlog-upload=false", "--allow-insecure-registry", nodes[3]); r.Code != 0 {
				t.Fatal(r.Stderr)
			}
			return nodes[3], "signature: no signature the policy accepts"
		}},
		{"attestation of another digest", func(t *testing.T, _ *koTree, nodes []string) (string, string) {
			crane("copy", attTag(nodes[5]), attTag(nodes[6]))
			return nodes[6], "no slsaprovenance1 attestation the policy accepts whose subject is this digest"
		}},
		{"signature from a sibling repository", func(t *testing.T, tree *koTree, _ []string) (string, string) {
			twin := twinsNode(t, tree)
			crane("copy", sigTag(twin["right"]), sigTag(twin["left"]))
			return twin["left"], "signed for another repository"
		}},
		{"child index replaced after signing", func(t *testing.T, tree *koTree, _ []string) (string, string) {
			replaced := replaceChild(t, tree, "app1")
			return replaced, "signature: not signed"
		}},
		{"missing child", func(t *testing.T, _ *koTree, nodes []string) (string, string) {
			crane("delete", nodes[7])
			return nodes[7], "not found"
		}},
		{"hostile annotation", func(t *testing.T, tree *koTree, _ []string) (string, string) {
			return hostileChild(t, tree), "invalid repository scope"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := pushKo(t, reg, "org/"+strings.ReplaceAll(tc.name, " ", "-"))
			addTwins(t, tree)
			if r := harness.RunEnv(t, k.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, tree.tag); r.Code != 0 {
				t.Fatalf("sign: %s", r.Stderr)
			}
			nodes := treeOf(t, tree.tag).refs()
			victim, reason := tc.tamper(t, tree, nodes)
			// Only the victim, and what the tampering made new (a new root,
			// a replaced child's new content), may fail.
			d, r := verifyTree(t, k.pub, tree.tag)
			allowed := map[string]bool{victim: true}
			for _, n := range d.Nodes {
				if ref := n.Repository + "@" + n.Digest; !slices.Contains(nodes, ref) {
					allowed[ref] = true
				}
			}
			f := d.failures()
			if r.Code != 1 || !strings.Contains(f[victim], reason) {
				t.Fatalf("exit %d; failures %v; want %s failing with %q", r.Code, f, victim, reason)
			}
			for node, why := range f {
				if !allowed[node] {
					t.Errorf("%s failed too: %s", node, why)
				}
			}
		})
	}
}

func attTag(node string) string { return strings.TrimSuffix(sigTag(node), ".sig") + ".att" }

// addTwins adds to the tree the same index in two sibling repositories,
// twins/left and twins/right, and re-tags the root.
func addTwins(t *testing.T, tree *koTree) {
	t.Helper()
	twin, err := sample.Index("twin")
	if err != nil {
		t.Fatal(err)
	}
	extendRoot(t, tree, scopedEntry(twin, "twins/left"), scopedEntry(twin, "twins/right"))
}

func twinsNode(t *testing.T, tree *koTree) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range treeOf(t, tree.tag).refs() {
		for _, side := range []string{"left", "right"} {
			if strings.Contains(n, "/twins/"+side+"@") && out[side] == "" {
				out[side] = n
			}
		}
	}
	return out
}

// extendRoot pushes new entries into their scoped repositories, appends
// them to the root index and tags the new root latest.
func extendRoot(t *testing.T, tree *koTree, adds ...mutate.IndexAddendum) {
	t.Helper()
	m := rootManifest(t, tree)
	for _, a := range adds {
		m.Manifests = append(m.Manifests, pushEntry(t, tree, a))
	}
	putRoot(t, tree, m)
}

// replaceChild replaces the named child with new content, re-composes the
// root and returns the new child's node.
func replaceChild(t *testing.T, tree *koTree, path string) string {
	t.Helper()
	fresh, err := sample.Index(path + "-rebuilt")
	if err != nil {
		t.Fatal(err)
	}
	m := rootManifest(t, tree)
	for i, e := range m.Manifests {
		if e.Annotations[walk.AnnotationRepository] == path {
			m.Manifests[i] = pushEntry(t, tree, scopedEntry(fresh, path))
		}
	}
	putRoot(t, tree, m)
	fd, _ := fresh.Digest()
	return tree.root.Repository.Name() + "/" + path + "@" + fd.String()
}

func rootManifest(t *testing.T, tree *koTree) *v1.IndexManifest {
	t.Helper()
	desc, err := remote.Get(tree.root)
	if err != nil {
		t.Fatal(err)
	}
	m, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// pushEntry pushes an index into the repository its annotation scopes it
// to and returns its entry.
func pushEntry(t *testing.T, tree *koTree, a mutate.IndexAddendum) v1.Descriptor {
	t.Helper()
	idx := a.Add.(v1.ImageIndex)
	repo := tree.root.Repository.Registry.Repo(tree.root.Repository.RepositoryStr(), a.Descriptor.Annotations[walk.AnnotationRepository])
	if _, err := (sample.Pusher{Annotation: walk.AnnotationRepository}).Push(repo, idx); err != nil {
		t.Fatal(err)
	}
	d, err := partial.Descriptor(idx)
	if err != nil {
		t.Fatal(err)
	}
	d.Annotations = a.Descriptor.Annotations
	return *d
}

// putRoot puts a root index manifest as it is and tags it latest.
func putRoot(t *testing.T, tree *koTree, m *v1.IndexManifest) {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	tag := tree.root.Repository.Tag("latest")
	if err := remote.Put(tag, rawIndex(raw)); err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(bytes.NewReader(raw))
	tree.root = tree.root.Repository.Digest(h.String())
}

// rawIndex is an index manifest put as it is.
type rawIndex []byte

func (r rawIndex) RawManifest() ([]byte, error)        { return r, nil }
func (r rawIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }

// hostileChild adds an entry annotated out of the namespace and returns
// the node it makes.
func hostileChild(t *testing.T, tree *koTree) string {
	t.Helper()
	img, err := sample.Index("hostile")
	if err != nil {
		t.Fatal(err)
	}
	// Push it where the annotation points, so only the scope check stops it.
	outside := tree.root.Repository.Registry.Repo("org", "outside")
	if _, err := (sample.Pusher{}).Push(outside, img); err != nil {
		t.Fatal(err)
	}
	m := rootManifest(t, tree)
	d, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	d.Annotations = map[string]string{walk.AnnotationRepository: "../outside"}
	m.Manifests = append(m.Manifests, *d)
	putRoot(t, tree, m)
	hd, _ := img.Digest()
	// The walk places a refused entry in the index's own repository.
	return tree.root.Repository.Name() + "@" + hd.String()
}
