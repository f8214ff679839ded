package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// catalogKoCase is the ko case: small multi-platform images pushed into
// <namespace>/<app>, one repository each, the reference list `ko build`
// prints for them, and the parent composed from that list by `nestattest
// catalog`. Sign and verify tests start from it.
type catalogKoCase struct {
	Reg      *harness.Registry
	Parent   name.Repository // <host>/<namespace>
	Tag      string          // <parent>:latest, where the parent index is pushed
	Refs     []string        // what ko printed: <parent>/<app>@sha256:…, one per app
	RefsFile string          // Refs, one a line
	Root     name.Digest     // the composed parent, after Compose
	Report   catalogReport   // `nestattest catalog -o json`, after Compose
}

// catalogKo pushes one two-platform image index per app into
// <namespace>/<app> on reg, as `ko build --base-import-paths` does with
// KO_DOCKER_REPO=<host>/<namespace>, and writes the reference list.
func catalogKo(t *testing.T, reg *harness.Registry, namespace string, apps ...string) *catalogKoCase {
	t.Helper()
	k := &catalogKoCase{Reg: reg, Parent: catalogRepo(t, reg.Ref(namespace))}
	k.Tag = k.Parent.Tag("latest").String()
	for _, app := range apps {
		idx, err := sample.Index(app)
		if err != nil {
			t.Fatal(err)
		}
		k.Refs = append(k.Refs, catalogWriteIndex(t, k.Parent.Registry.Repo(k.Parent.RepositoryStr(), app), idx).String())
	}
	k.RefsFile = filepath.Join(t.TempDir(), "ko-refs.txt")
	if err := os.WriteFile(k.RefsFile, []byte(strings.Join(k.Refs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// Compose runs `nestattest catalog --from <refs> <parent>:latest -o json`
// with extra flags, and records the parent it pushed.
func (k *catalogKoCase) Compose(t *testing.T, extra ...string) harness.Result {
	t.Helper()
	args := append([]string{"catalog", "-o", "json", "--from", k.RefsFile, k.Tag}, extra...)
	r := harness.Run(t, harness.Binary(t), args...)
	if r.Code != 0 {
		t.Fatalf("nestattest %s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	k.Report = catalogDecode(t, r.Stdout)
	root, err := name.NewDigest(k.Report.Repository + "@" + k.Report.Digest)
	if err != nil {
		t.Fatal(err)
	}
	k.Root = root
	return r
}

// catalogNested pushes, below namespace, app1 and app3 (two-platform
// indexes), app2 (a two-platform index that also lists app2/plugins, a
// further-scoped two-platform index) and tool (a single-platform image),
// each tagged latest. app2's own repository holds a copy of plugins too, so
// that registries that check index children accept app2.
func catalogNested(t *testing.T, reg *harness.Registry, namespace string) name.Repository {
	t.Helper()
	parent := catalogRepo(t, reg.Ref(namespace))
	at := func(p string) name.Repository { return parent.Registry.Repo(parent.RepositoryStr(), p) }
	plugins, err := sample.Index("plugins")
	if err != nil {
		t.Fatal(err)
	}
	catalogWriteIndex(t, at("app2/plugins"), plugins)
	for _, app := range []string{"app1", "app2", "app3"} {
		var extra []mutate.IndexAddendum
		if app == "app2" {
			extra = append(extra, mutate.IndexAddendum{Add: plugins, Descriptor: v1.Descriptor{Annotations: map[string]string{walk.AnnotationRepository: "plugins"}}})
		}
		idx, err := sample.Index(app, extra...)
		if err != nil {
			t.Fatal(err)
		}
		catalogWriteIndex(t, at(app), idx)
	}
	img, err := sample.Image("tool", v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(at("tool").Tag("latest"), img); err != nil {
		t.Fatal(err)
	}
	return parent
}

// catalogWriteIndex writes idx and everything it lists into repo, tagged
// latest, and returns it by digest.
func catalogWriteIndex(t *testing.T, repo name.Repository, idx v1.ImageIndex) name.Digest {
	t.Helper()
	if err := remote.WriteIndex(repo.Tag("latest"), idx, fixtureAuth...); err != nil {
		t.Fatalf("push %s: %v", repo, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo.Digest(d.String())
}

func catalogRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// catalogReport is the part of `nestattest catalog -o json` the tests read.
type catalogReport struct {
	Repository, Digest string
	Mirrored, Pushed   bool
	Requests           int
	Children           []struct {
		Path, Repository, Digest, MediaType, Platform string
		Mirrored                                      bool
		Requests                                      int
		Mirror                                        *catalogMirrorStats `json:"mirrorStats"`
	}
	Skipped   []struct{ Path string }
	Discovery *struct {
		Paths          []string
		Pages, Entries int
	}
}

type catalogMirrorStats struct {
	ManifestsPushed, ManifestsPresent, BlobsMounted, BlobsUploaded, BlobsPresent, Requests int
	BytesUploaded                                                                          int64
}

func catalogDecode(t *testing.T, stdout string) catalogReport {
	t.Helper()
	var r catalogReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("catalog -o json: %v\n%s", err, stdout)
	}
	return r
}

// catalogRun runs `nestattest catalog` with args and decodes its JSON.
func catalogRun(t *testing.T, args ...string) catalogReport {
	t.Helper()
	r := harness.Run(t, harness.Binary(t), append([]string{"catalog", "-o", "json"}, args...)...)
	if r.Code != 0 {
		t.Fatalf("nestattest catalog %s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return catalogDecode(t, r.Stdout)
}

// catalogCrane runs crane and fails the test when it fails.
func catalogCrane(t *testing.T, args ...string) string {
	t.Helper()
	r := harness.Run(t, harness.Tool(t, "crane"), args...)
	if r.Code != 0 {
		t.Fatalf("crane %s: exit %d\n%s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r.Stdout
}

// catalogCraneAll reads, with crane, the manifest of root and of every
// digest below it from root's own repository, as a plain client does, pulls
// the whole index as an OCI layout, and validates it. It returns the
// digests read.
func catalogCraneAll(t *testing.T, root name.Digest) []string {
	t.Helper()
	var read []string
	queue := []string{root.DigestStr()}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if slices.Contains(read, d) {
			continue
		}
		read = append(read, d)
		var m struct {
			Manifests []struct{ Digest string }
		}
		if err := json.Unmarshal([]byte(catalogCrane(t, "manifest", root.Context().Digest(d).String())), &m); err != nil {
			t.Fatal(err)
		}
		for _, e := range m.Manifests {
			queue = append(queue, e.Digest)
		}
	}
	catalogCrane(t, "pull", "--format", "oci", root.String(), filepath.Join(t.TempDir(), "layout"))
	catalogCrane(t, "validate", "--remote", root.String())
	return read
}

// TestCatalogDistributionMirrors composes the nested sample on the real
// distribution registry with its default validation: the plain push is
// refused, auto mirrors and succeeds, crane reads the parent and every
// digest below it from the parent repository, and the tree walks every
// child in its scoped repository. The same inputs compose the same digest
// again, without mirroring.
func TestCatalogDistributionMirrors(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{})
	catalogMirrors(t, reg)
}

// TestCatalogDockerRegistryMirrors is the same on Debian's docker-registry
// 2.8.2.
func TestCatalogDockerRegistryMirrors(t *testing.T) {
	reg := harness.DockerRegistry(t)
	catalogMirrors(t, reg)
}

func catalogMirrors(t *testing.T, reg *harness.Registry) {
	parent := catalogNested(t, reg, "org/ko-build")
	tag := parent.Tag("latest").String()
	children := []string{"--child", "app1=:latest", "--child", "app2=:latest", "--child", "app3=:latest", "--child", "tool=:latest"}

	never := harness.Run(t, harness.Binary(t), append([]string{"catalog", "--mirror", "never", tag}, children...)...)
	if never.Code != 1 || !strings.Contains(never.Stderr, "MANIFEST_BLOB_UNKNOWN") || !strings.Contains(never.Stderr, "--mirror never") {
		t.Fatalf("--mirror never: exit %d\n%s%s", never.Code, never.Stdout, never.Stderr)
	}
	if r := harness.Run(t, harness.Tool(t, "crane"), "manifest", tag); r.Code == 0 {
		t.Fatalf("the refused parent is there: %s", r.Stdout)
	}

	rep := catalogRun(t, append([]string{tag}, children...)...)
	if !rep.Pushed || !rep.Mirrored || len(rep.Children) != 4 {
		t.Fatalf("auto: %+v", rep)
	}
	for _, c := range rep.Children {
		if !c.Mirrored || c.Mirror.BytesUploaded != 0 || c.Mirror.BlobsUploaded != 0 {
			t.Errorf("%s: mirrored %v, %+v", c.Path, c.Mirrored, c.Mirror)
		}
	}
	root := parent.Digest(rep.Digest)
	read := catalogCraneAll(t, root)
	// The parent, 4 children, 6 platform images of app1..app3, plugins and
	// its 2 images.
	if len(read) != 1+4+6+1+2 {
		t.Errorf("crane read %d manifests from %s", len(read), parent)
	}

	doc := treeOf(t, tag)
	if doc.Summary.Nodes != 14 || doc.Summary.Repositories != 6 || doc.Summary.Missing+doc.Summary.Invalid != 0 {
		t.Errorf("tree summary %+v", doc.Summary)
	}
	for _, n := range doc.Nodes[1:] {
		if n.Repository == parent.Name() || !strings.HasPrefix(n.Repository, parent.Name()+"/") {
			t.Errorf("tree found %s@%s outside its scoped repository", n.Repository, n.Digest)
		}
	}

	again := catalogRun(t, append([]string{tag}, children...)...)
	if again.Digest != rep.Digest || again.Mirrored {
		t.Errorf("second run: digest %s (first %s), mirrored %v", again.Digest, rep.Digest, again.Mirrored)
	}
}

// TestCatalogSparseDoesNotMirror: where the registry accepts index entries
// that live elsewhere (platforms: none), auto pushes the parent alone.
func TestCatalogSparseDoesNotMirror(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	k := catalogKo(t, reg, "org/ko-build", "app1", "app2", "app3")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	proxied := filepath.Join(t.TempDir(), "ko-refs-proxied.txt")
	refs := strings.ReplaceAll(strings.Join(k.Refs, "\n"), reg.Host, proxy.Host)
	if err := os.WriteFile(proxied, []byte(refs+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := catalogRun(t, "--from", proxied, proxy.Host+"/org/ko-build:latest")
	c := proxy.Counts()
	if rep.Mirrored || !rep.Pushed || c.ByKind["manifest PUT"] != 1 || c.ByKind["upload POST"] != 0 || c.UploadBytes != 0 {
		t.Errorf("mirrored %v pushed %v; requests %v", rep.Mirrored, rep.Pushed, c.ByKind)
	}
	doc := treeOf(t, k.Tag)
	if doc.Summary.Nodes != 1+3+6 || doc.Summary.Repositories != 4 {
		t.Errorf("tree summary %+v", doc.Summary)
	}
	if r := harness.Run(t, harness.Tool(t, "crane"), "manifest", k.Parent.Digest(k.Refs[0][strings.Index(k.Refs[0], "@")+1:]).String()); r.Code == 0 {
		t.Errorf("a child is in the parent repository without mirroring")
	}
}

// TestCatalogKoFromReferences composes the ko case from the reference list
// ko prints, on the real registry with default validation.
func TestCatalogKoFromReferences(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{})
	k := catalogKo(t, reg, "org/ko-build", "app1", "app2", "app3", "app4")
	k.Compose(t)
	if !k.Report.Mirrored || len(k.Report.Children) != 4 {
		t.Fatalf("report %+v", k.Report)
	}
	for i, c := range k.Report.Children {
		if k.Refs[i] != c.Repository+"@"+c.Digest || c.Path != fmt.Sprintf("app%d", i+1) {
			t.Errorf("child %d: %s %s@%s, ko printed %s", i, c.Path, c.Repository, c.Digest, k.Refs[i])
		}
	}
	if got := catalogCraneAll(t, k.Root); len(got) != 1+4+8 {
		t.Errorf("crane read %d manifests", len(got))
	}
	first := k.Root
	k.Compose(t)
	if k.Root != first {
		t.Errorf("same references, digests %s and %s", first, k.Root)
	}
}

// TestCatalogDiscoverManyPages discovers 250 child repositories, among
// repositories outside the namespace, 100 names a page on the real
// registry, and composes them; asked for more names a page than the
// registry serves (catalog.maxentries), it asks for fewer.
func TestCatalogDiscoverManyPages(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{CatalogMaxEntries: 100})
	parent := catalogRepo(t, reg.Ref("org/many"))
	const n = 250
	catalogPushImages(t, parent, n, "aaa/before", "org/many-sibling/x", "org/manyx", "zzz/after")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	harness.Binary(t) // built before the clock starts
	started := time.Now()
	rep := catalogRun(t, "--discover", "--catalog-page-size", "100", proxy.Host+"/org/many:latest")
	c := proxy.Counts()
	t.Logf("discovered %d children in %d pages of %d names and composed them in %v; %d requests: %v",
		len(rep.Children), rep.Discovery.Pages, rep.Discovery.Entries, time.Since(started).Round(time.Millisecond), c.Total, c.ByKind)
	if len(rep.Children) != n || rep.Discovery.Pages < 3 || c.ByKind["catalog GET"] != rep.Discovery.Pages || !rep.Mirrored || len(rep.Skipped) != 0 {
		t.Fatalf("children %d, discovery %+v, mirrored %v, skipped %v", len(rep.Children), rep.Discovery, rep.Mirrored, rep.Skipped)
	}
	for i, ch := range rep.Children {
		if want := fmt.Sprintf("app%03d", i); ch.Path != want || ch.Platform != "linux/amd64" {
			t.Fatalf("child %d: %s %s, want %s", i, ch.Path, ch.Platform, want)
		}
	}
	if doc := treeOf(t, parent.Tag("latest").String()); doc.Summary.Nodes != n+1 || doc.Summary.Repositories != n+1 {
		t.Errorf("tree summary %+v", doc.Summary)
	}

	big := catalogRun(t, "--discover", "--catalog-page-size", "1000", "--dry-run", parent.Tag("latest").String())
	if big.Digest != rep.Digest || big.Discovery.Pages != 5 { // n=62 after 1000, 500, 250 and 125 were refused
		t.Errorf("asked for 1000 a page: %s in %d pages", big.Digest, big.Discovery.Pages)
	}
}

// catalogPushImages pushes n single-platform images tagged latest into
// <parent>/app000…, and one into each of the other repositories.
func catalogPushImages(t *testing.T, parent name.Repository, n int, others ...string) {
	t.Helper()
	var refs []name.Tag
	for i := range n {
		refs = append(refs, parent.Registry.Repo(parent.RepositoryStr(), fmt.Sprintf("app%03d", i)).Tag("latest"))
	}
	for _, o := range others {
		refs = append(refs, parent.Registry.Repo(o).Tag("latest"))
	}
	errs := make(chan error, len(refs))
	sem := make(chan struct{}, 8)
	for _, ref := range refs {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			img, err := sample.Image(ref.Context().RepositoryStr(), v1.Platform{OS: "linux", Architecture: "amd64"})
			if err == nil {
				err = remote.Write(ref, img)
			}
			errs <- err
		}()
	}
	for range refs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestCatalogMirrorCost measures mirroring the ko case through a counting
// proxy: every layer and config is mounted, none uploaded, and each child
// costs a fixed number of requests.
func TestCatalogMirrorCost(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{})
	k := catalogKo(t, reg, "org/ko-build", "app1", "app2", "app3", "app4")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	refs := filepath.Join(t.TempDir(), "ko-refs-proxied.txt")
	if err := os.WriteFile(refs, []byte(strings.ReplaceAll(strings.Join(k.Refs, "\n"), reg.Host, proxy.Host)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := catalogRun(t, "--from", refs, proxy.Host+"/org/ko-build:latest")
	c := proxy.Counts()
	t.Logf("proxy: %d requests, %d bytes uploaded: %v", c.Total, c.UploadBytes, c.ByKind)
	reported := rep.Requests
	for _, ch := range rep.Children {
		m := ch.Mirror
		t.Logf("%s: %d requests (1 to resolve, %d to mirror): %d manifests pushed, %d blobs mounted, %d uploaded, %d bytes",
			ch.Path, ch.Requests, m.Requests, m.ManifestsPushed, m.BlobsMounted, m.BlobsUploaded, m.BytesUploaded)
		// An index of two images: HEAD the index; per image HEAD, GET and PUT
		// its manifest, HEAD and mount its config and its layer; PUT the index.
		if ch.Requests != 1+1+2*(3+2*2)+1 || m.ManifestsPushed != 3 || m.BlobsMounted != 4 || m.BlobsUploaded != 0 || m.BytesUploaded != 0 {
			t.Errorf("%s: %d requests, %+v", ch.Path, ch.Requests, m)
		}
	}
	// The report counts every request but the registry's ping: reading the
	// parent's tag, the refused PUT, the mirroring and the PUT after it.
	if c.UploadBytes != 0 || c.ByKind["upload PATCH"]+c.ByKind["upload PUT"] != 0 || c.Total != reported+1 {
		t.Errorf("proxy saw %d requests, the report %d; %d bytes uploaded", c.Total, reported, c.UploadBytes)
	}
}
