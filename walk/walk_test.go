package walk

import (
	"context"
	"errors"
	"fmt"
	nreg "github.com/nestattest/nestattest/registry"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/sample"
)

const root = "registry.example/org/ko-build"

// koFetcher holds a ko-shaped tree: the parent in org/ko-build, app1..app3
// in org/ko-build/<app> as two-platform indexes, and app2 listing
// app2/plugins.
func koFetcher(t testing.TB) *memFetcher {
	f := newMemFetcher()
	plat := func(repo, seed string) []v1.Descriptor {
		return []v1.Descriptor{
			platform(f.put(t, repo, image(seed+"-amd64")), "linux", "amd64"),
			platform(f.put(t, repo, image(seed+"-arm64")), "linux", "arm64"),
		}
	}
	plugins := f.put(t, root+"/app2/plugins", index(plat(root+"/app2/plugins", "plugins")...))
	var apps []v1.Descriptor
	for _, app := range []string{"app1", "app2", "app3"} {
		entries := plat(root+"/"+app, app)
		if app == "app2" {
			entries = append(entries, scoped(plugins, "plugins"))
		}
		apps = append(apps, scoped(f.put(t, root+"/"+app, index(entries...)), app))
	}
	f.put(t, root, index(apps...), "latest")
	return f
}

var koSummary = []string{
	"0 . index ",
	"1 app1 index ",
	"2 app1 image linux/amd64",
	"2 app1 image linux/arm64",
	"1 app2 index ",
	"2 app2 image linux/amd64",
	"2 app2 image linux/arm64",
	"2 app2/plugins index ",
	"3 app2/plugins image linux/amd64",
	"3 app2/plugins image linux/arm64",
	"1 app3 index ",
	"2 app3 image linux/amd64",
	"2 app3 image linux/arm64",
}

func TestCollectKoTree(t *testing.T) {
	f := koFetcher(t)
	for _, jobs := range []int{1, 2, 8, 64} {
		t.Run(fmt.Sprintf("jobs=%d", jobs), func(t *testing.T) {
			for range 5 {
				tree, err := Collect(context.Background(), mustRef(t, root+":latest"), Options{Fetcher: f, Jobs: jobs})
				if err != nil {
					t.Fatal(err)
				}
				if got := summary(tree); !slices.Equal(got, koSummary) {
					t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(koSummary, "\n"))
				}
			}
		})
	}
}

func TestWalkFetchesEachNodeOnceWithinJobs(t *testing.T) {
	f := newMemFetcher()
	shared := f.put(t, root+"/shared", image("shared"))
	var entries []v1.Descriptor
	for i := range 40 {
		sub := f.put(t, root+"/shared", index(platform(f.put(t, root+"/shared", image(fmt.Sprint(i))), "linux", "amd64"), shared))
		entries = append(entries, scoped(sub, "shared"), scoped(shared, "shared"))
	}
	f.put(t, root, index(entries...), "latest")
	tree, err := Collect(context.Background(), mustRef(t, root+":latest"), Options{Fetcher: f, Jobs: 3})
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range f.fetchCount() {
		if n != 1 {
			t.Errorf("%s fetched %d times", k, n)
		}
	}
	if p := f.peak.Load(); p > 3 {
		t.Errorf("%d fetches in flight at once, want at most 3", p)
	}
	if got, want := len(tree.Nodes), 1+40+40+1; got != want {
		t.Errorf("%d nodes, want %d", got, want)
	}
	// In pre-order the shared image is first met as entry 1 of the first
	// sub-index: that is where the tree places it, however the fetches were
	// ordered.
	for _, n := range tree.Nodes {
		if n.Descriptor.Digest == shared.Digest && (n.Parent != tree.Nodes[1] || n.Index != 1) {
			t.Errorf("shared image placed under %s entry %d", n.Parent.Descriptor.Digest, n.Index)
		}
	}
}

func TestWalkMissingChild(t *testing.T) {
	f := newMemFetcher()
	gone := scoped(desc(types.OCIImageIndex, "gone"), "app2")
	app1 := scoped(f.put(t, root+"/app1", image("app1")), "app1")
	parent := f.put(t, root, index(app1, gone), "latest")

	_, err := Collect(context.Background(), mustRef(t, root+":latest"), Options{Fetcher: f})
	var ne *NodeError
	if !errors.As(err, &ne) || !errors.Is(err, nreg.ErrNotFound) {
		t.Fatalf("error %v, want a NodeError wrapping registry.ErrNotFound", err)
	}
	for _, want := range []string{root + "@" + parent.Digest.String(), "manifests[1]", "app2", "not in " + root + "/app2", gone.Digest.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	tree, err := Collect(context.Background(), mustRef(t, root+":latest"), Options{Fetcher: f, AllowMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(tree); !slices.Equal(got, []string{"0 . index ", "1 app1 image ", "1 app2 missing "}) {
		t.Errorf("tree %q", got)
	}
}

func TestWalkRefusesHostileAnnotationsWithoutFetching(t *testing.T) {
	f := newMemFetcher()
	ok := scoped(f.put(t, root+"/app1", image("app1")), "app1")
	var entries = []v1.Descriptor{ok}
	for _, v := range []string{"..", "../other", "/x", "UPPER", "host:5000/x", "a//b", ""} {
		d := scoped(f.put(t, "registry.example/org/other", image(v)), v)
		entries = append(entries, d)
	}
	f.put(t, root, index(entries...), "latest")

	var refused []string
	tree, err := Walk(context.Background(), mustRef(t, root+":latest"), Options{Fetcher: f}, func(_ context.Context, n *Node, err error) error {
		if err != nil {
			if !errors.Is(err, ErrScope) {
				return err
			}
			refused = append(refused, n.Descriptor.Annotations[AnnotationRepository])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(refused) != len(entries)-1 {
		t.Errorf("refused %q, want all %d hostile values", refused, len(entries)-1)
	}
	for k := range f.fetchCount() {
		if k != root+":latest" && !strings.HasPrefix(k, root+"/") {
			t.Errorf("fetched %s outside the namespace", k)
		}
	}
	if _, err := Collect(context.Background(), mustRef(t, root+":latest"), Options{Fetcher: f}); !errors.Is(err, ErrScope) || !strings.Contains(err.Error(), "manifests[1]") {
		t.Errorf("Collect error %v, want ErrScope naming the entry", err)
	}
	if n := len(tree.Nodes); n != 2+len(entries)-1 {
		t.Errorf("%d nodes", n)
	}
}

func TestWalkBounds(t *testing.T) {
	f := newMemFetcher()
	// A chain of 6 nested indexes below the root, the image at depth 7.
	d := f.put(t, root, image("leaf"))
	for range 6 {
		d = f.put(t, root, index(d))
	}
	f.put(t, root, index(d), "deep")
	// An index with 20 images.
	var wide []v1.Descriptor
	for i := range 20 {
		wide = append(wide, f.put(t, root, image(fmt.Sprint("wide", i))))
	}
	f.put(t, root, index(wide...), "wide")

	for _, tc := range []struct {
		tag  string
		opts Options
		err  error
	}{
		{"deep", Options{MaxDepth: 7}, nil},
		{"deep", Options{MaxDepth: 6}, ErrTooDeep},
		{"wide", Options{MaxNodes: 21}, nil},
		{"wide", Options{MaxNodes: 20}, ErrTooManyNodes},
	} {
		tc.opts.Fetcher = f
		_, err := Collect(context.Background(), mustRef(t, root+":"+tc.tag), tc.opts)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s with %+v: error %v, want %v", tc.tag, tc.opts, err, tc.err)
		}
	}
}

func TestWalkKinds(t *testing.T) {
	f := newMemFetcher()
	artifact := image("sbom")
	artifact["artifactType"] = "application/spdx+json"
	docker := map[string]any{
		"schemaVersion": 2, "mediaType": types.DockerManifestSchema2,
		"config": desc(types.DockerConfigJSON, "d"), "layers": []any{desc(types.DockerLayer, "dl")},
	}
	sig := map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1,
		"config": desc(types.OCIConfigJSON, "s"), "layers": []any{desc(mediaTypeSimpleSigning, "sl")},
	}
	referrer := image("ref")
	referrer["subject"] = desc(types.OCIManifestSchema1, "x")
	buildkit := f.put(t, root, image("bk"))
	buildkit.Annotations = map[string]string{annotationReferenceTyp: "attestation-manifest"}
	list := map[string]any{"schemaVersion": 2, "mediaType": types.DockerManifestList, "manifests": []v1.Descriptor{f.put(t, root, docker)}}
	f.put(t, root, index(f.put(t, root, artifact), f.put(t, root, list), f.put(t, root, sig), f.put(t, root, referrer), buildkit), "kinds")

	tree, err := Collect(context.Background(), mustRef(t, root+":kinds"), Options{Fetcher: f})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0 . index ", "1 . artifact ", "1 . index ", "2 . image "}
	if got := summary(tree); !slices.Equal(got, want) {
		t.Errorf("tree %q, want %q", got, want)
	}
	if tree.Nodes[1].ArtifactType != "application/spdx+json" || tree.Nodes[2].Descriptor.MediaType != types.DockerManifestList {
		t.Errorf("artifact type %q, list media type %q", tree.Nodes[1].ArtifactType, tree.Nodes[2].Descriptor.MediaType)
	}
}

func TestWalkStopsOnCallbackError(t *testing.T) {
	f := koFetcher(t)
	boom := errors.New("boom")
	_, err := Walk(context.Background(), mustRef(t, root+":latest"), Options{Fetcher: f}, func(_ context.Context, n *Node, _ error) error {
		if n.Path() == "app2" && n.Kind == KindIndex {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	tree, err := Walk(context.Background(), mustRef(t, root+":latest"), Options{Fetcher: f}, func(_ context.Context, n *Node, _ error) error {
		if n.Path() == "app2" {
			return SkipChildren
		}
		return nil
	})
	if err != nil || len(tree.Nodes) != len(koSummary)-5 {
		t.Fatalf("SkipChildren: %d nodes, %v", len(tree.Nodes), err)
	}
}

// TestWalkInMemoryRegistry walks the sample ko tree pushed to
// go-containerregistry's in-memory registry over HTTP.
func TestWalkInMemoryRegistry(t *testing.T) {
	host := memRegistry(t)
	children, err := sample.KoChildren(AnnotationRepository)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(host + "/org/ko-build")
	if err != nil {
		t.Fatal(err)
	}
	p := sample.Pusher{Annotation: AnnotationRepository, MirrorManifests: true}
	if _, err := p.Push(repo, sample.Parent(AnnotationRepository, children), "latest"); err != nil {
		t.Fatal(err)
	}
	tree, err := Collect(context.Background(), repo.Tag("latest"), Options{Fetcher: remoteFetcher()})
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(tree); !slices.Equal(got, koSummary) {
		t.Fatalf("tree:\n%s", strings.Join(got, "\n"))
	}
	// Every node sits in its own scoped repository.
	for _, n := range tree.Nodes {
		if _, err := remote.Head(n.Digest()); err != nil {
			t.Errorf("%s: %v", n.Digest(), err)
		}
	}
}
