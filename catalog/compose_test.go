package catalog

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/walk"
)

func compose(t *testing.T, parent name.Repository, opts Options) *Result {
	t.Helper()
	if opts.Client == nil {
		opts.Client = testClient()
	}
	res, err := Compose(context.Background(), parent.Tag("latest"), opts)
	if err != nil {
		t.Fatalf("Compose: %v", err)
	}
	return res
}

// TestComposeKo composes the ko sample on a registry that checks index
// children and blobs: the plain push is refused, auto mirrors, and the
// parent and every manifest below it resolve in the parent repository.
func TestComposeKo(t *testing.T) {
	reg := newFakeRegistry(t, true, true)
	parent := koSample(t, reg)
	reg.counts()
	res := compose(t, parent, Options{Children: koChildren(t, parent), Annotations: map[string]string{"org.opencontainers.image.title": "ko-build"}})

	var paths []string
	for _, c := range res.Children {
		paths = append(paths, c.Path+" "+string(c.MediaType)+" "+c.Platform)
		if !c.Mirrored || c.Mirror == nil || c.Mirror.ManifestsPushed == 0 {
			t.Errorf("%s not mirrored: %+v", c.Path, c.Mirror)
		}
	}
	want := []string{
		"app1 " + string(types.OCIImageIndex) + " ", "app2 " + string(types.OCIImageIndex) + " ",
		"app3 " + string(types.OCIImageIndex) + " ", "tool " + string(types.OCIManifestSchema1) + " linux/arm/v7",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("children %q, want %q", paths, want)
	}
	if !res.Pushed || !res.Mirrored || res.Annotations["org.opencontainers.image.title"] != "ko-build" {
		t.Errorf("result %+v", res)
	}
	ref := res.Root
	validateScoped(t, res.Index, parent)
	validateInParent(t, ref)
	validateInParent(t, parent.Tag("latest"))

	counts, uploaded := reg.counts()
	if uploaded != 0 {
		t.Errorf("mounting uploaded %d bytes", uploaded)
	}
	if counts["PUT blobs"] != 0 || counts["PATCH blobs"] != 0 {
		t.Errorf("blob uploads: %v", counts)
	}

	// The tree walks across the scoped repositories: 4 children, 8 platform
	// images, app2/plugins and its 2 images, the root.
	tree, err := walk.Collect(context.Background(), parent.Tag("latest"), walk.Options{Fetcher: testClient()})
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Nodes) != 1+4+6+1+2 {
		t.Errorf("tree has %d nodes", len(tree.Nodes))
	}
	for _, n := range tree.Nodes[1:] {
		if n.Repository.Name() == parent.Name() {
			t.Errorf("node %s walked in the parent repository", n.Digest())
		}
	}
}

// TestComposeDeterministic composes the same children, named in any order,
// twice: the digest is the same, and a second run neither mirrors nor
// pushes anything (its tag already names the index).
func TestComposeDeterministic(t *testing.T) {
	reg := newFakeRegistry(t, true, true)
	parent := koSample(t, reg)
	children := koChildren(t, parent)
	dry := compose(t, parent, Options{Children: children, DryRun: true})
	reversed := slices.Clone(children)
	slices.Reverse(reversed)
	first := compose(t, parent, Options{Children: reversed})
	second := compose(t, parent, Options{Children: children})
	if dry.Digest != first.Digest || first.Digest != second.Digest {
		t.Fatalf("digests %s, %s, %s", dry.Digest, first.Digest, second.Digest)
	}
	if dry.Pushed || !first.Mirrored || !first.Pushed || second.Mirrored || second.Pushed || !second.Present {
		t.Errorf("dry run pushed %v; first mirrored %v pushed %v; second mirrored %v pushed %v present %v",
			dry.Pushed, first.Mirrored, first.Pushed, second.Mirrored, second.Pushed, second.Present)
	}
	raw1, _ := first.Index.RawManifest()
	raw2, _ := second.Index.RawManifest()
	if string(raw1) != string(raw2) {
		t.Errorf("manifests differ:\n%s\n%s", raw1, raw2)
	}
	withAnnotation := compose(t, parent, Options{Children: children, DryRun: true, Annotations: map[string]string{"a": "b"}})
	if withAnnotation.Digest == first.Digest {
		t.Errorf("annotations do not change the digest")
	}
}

// TestComposeMirrorModes: never reports the refusal and pushes nothing;
// always mirrors first; a registry that will not mount gets the blobs
// uploaded, streamed from the child's repository.
func TestComposeMirrorModes(t *testing.T) {
	t.Run("never", func(t *testing.T) {
		reg := newFakeRegistry(t, true, true)
		parent := koSample(t, reg)
		reg.counts()
		_, err := Compose(context.Background(), parent.Tag("latest"), Options{Client: testClient(), Children: koChildren(t, parent), Mirror: MirrorNever})
		var terr *transport.Error
		if !errors.Is(err, ErrRefused) || !errors.As(err, &terr) || terr.StatusCode != 404 {
			t.Fatalf("err = %v", err)
		}
		counts, _ := reg.counts()
		if counts["PUT manifests"] != 1 || counts["POST blobs"] != 0 {
			t.Errorf("requests %v", counts)
		}
		if _, err := remote.Head(parent.Tag("latest")); err == nil {
			t.Errorf("the parent was pushed")
		}
	})
	t.Run("always", func(t *testing.T) {
		reg := newFakeRegistry(t, true, true)
		parent := koSample(t, reg)
		reg.counts()
		res := compose(t, parent, Options{Children: koChildren(t, parent), Mirror: MirrorAlways})
		counts, _ := reg.counts()
		if !res.Mirrored || counts["PUT manifests"] != 1+4+6+1+2 {
			t.Errorf("mirrored %v, requests %v", res.Mirrored, counts)
		}
	})
	t.Run("upload where the registry does not mount", func(t *testing.T) {
		reg := newFakeRegistry(t, false, true)
		parent := koSample(t, reg)
		reg.counts()
		res := compose(t, parent, Options{Children: koChildren(t, parent)})
		var want, got int64
		for _, c := range res.Children {
			got += c.Mirror.BytesUploaded
			if c.Mirror.BlobsMounted != 0 || c.Mirror.BlobsUploaded == 0 {
				t.Errorf("%s: %+v", c.Path, c.Mirror)
			}
		}
		_, uploaded := reg.counts()
		want = uploaded
		if got != want || got == 0 {
			t.Errorf("reported %d bytes uploaded, the registry received %d", got, want)
		}
		validateInParent(t, parent.Tag("latest"))
	})
}
