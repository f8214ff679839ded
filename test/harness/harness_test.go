package harness

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func pushRandom(t *testing.T, ref string, opts ...remote.Option) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

func TestRegistriesThroughProxy(t *testing.T) {
	for _, start := range []func(testing.TB) *Registry{
		func(t testing.TB) *Registry { return Distribution(t, DistributionOptions{}) },
		DockerRegistry,
		func(t testing.TB) *Registry { return InMemory(t, false) },
	} {
		reg := start(t)
		t.Run(reg.Name, func(t *testing.T) {
			p := NewProxy(t, reg.Host, ProxyOptions{})
			pushRandom(t, p.Host+"/org/app:v1")
			c := p.Counts()
			if c.ByKind["manifest PUT"] != 1 || c.Writes() < 5 || c.UploadBytes < 2048 {
				t.Errorf("counts %+v", c)
			}
			p.SetRefuse(RefuseWritesTo("org/app"))
			img, _ := random.Image(10, 1)
			ref, _ := name.ParseReference(p.Host + "/org/app:v2")
			err := remote.Write(ref, img)
			var terr *transport.Error
			if !errorsAs(err, &terr) || terr.StatusCode != http.StatusForbidden {
				t.Errorf("refused write: %v", err)
			}
			pushRandom(t, p.Host+"/org/app/sub:v1") // a repository below is not refused
		})
	}
}

func errorsAs(err error, target **transport.Error) bool {
	for err != nil {
		if te, ok := err.(*transport.Error); ok {
			*target = te
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestFaultsAreSeeded(t *testing.T) {
	reg := InMemory(t, false)
	run := func() []FaultKind {
		p := NewProxy(t, reg.Host, ProxyOptions{Faults: &Faults{Seed: 7, Rate: 0.5, Kinds: AllFaults, Max: 6, Slow: 1}})
		var seen []FaultKind
		for range 20 {
			before := p.Injected()
			resp, err := http.Get("http://" + p.Host + "/v2/org/none/manifests/latest")
			if err == nil {
				resp.Body.Close()
			}
			for k, v := range p.Injected() {
				if v != before[k] {
					seen = append(seen, k)
				}
			}
		}
		return seen
	}
	a, b := run(), run()
	if len(a) != 6 || !slices.Equal(a, b) {
		t.Errorf("fault sequences %v and %v, want the same 6", a, b)
	}
}

// TestDistributionIndexValidation documents what the real registry does
// with an index whose child lives only in another repository.
func TestDistributionIndexValidation(t *testing.T) {
	for _, sparse := range []bool{false, true} {
		reg := Distribution(t, DistributionOptions{SparseIndexes: sparse})
		img := pushRandom(t, reg.Ref("org/child:v1"))
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: img})
		ref, _ := name.ParseReference(reg.Ref("org/parent:v1"))
		err := remote.Put(ref, idx)
		switch {
		case sparse && err != nil:
			t.Errorf("platforms: none refused the index: %v", err)
		case !sparse && (err == nil || !strings.Contains(err.Error(), "MANIFEST_BLOB_UNKNOWN")):
			t.Errorf("default validation: %v, want 400 MANIFEST_BLOB_UNKNOWN", err)
		}
	}
}
