package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// TestTreeWalksKoTree walks a 3-level tree spread over 5 repositories on
// the real distribution registry and compares it with what was pushed.
func TestTreeWalksKoTree(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	k := pushKo(t, reg, "org/ko-build")
	for _, jobs := range []string{"1", "8"} {
		doc := treeOf(t, k.tag, "--jobs", jobs)
		if got := doc.lines(); !slices.Equal(got, k.expect) {
			t.Fatalf("--jobs %s: tree\n%s\nwant\n%s", jobs, strings.Join(got, "\n"), strings.Join(k.expect, "\n"))
		}
		if doc.Summary.Nodes != 13 || doc.Summary.Repositories != 5 || len(repositories(k.expect)) != 5 {
			t.Errorf("summary %+v", doc.Summary)
		}
	}
	r := harness.Run(t, harness.Binary(t), "tree", k.tag)
	if r.Code != 0 || !strings.Contains(r.Stdout, "app2/plugins") || !strings.Contains(r.Stdout, "13 nodes in 5 repositories") {
		t.Errorf("text tree: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestTreeMissingChild lists a child that is not in its scoped repository.
func TestTreeMissingChild(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	parent, err := name.NewRepository(reg.Ref("org/sparse"))
	if err != nil {
		t.Fatal(err)
	}
	present, err := sample.Index("present")
	if err != nil {
		t.Fatal(err)
	}
	absent, err := sample.Index("absent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (sample.Pusher{Annotation: walk.AnnotationRepository}).Push(parent.Registry.Repo("org", "sparse", "present"), present); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		scopedEntry(present, "present"), scopedEntry(absent, "gone"))
	if err := remote.Put(parent.Tag("latest"), idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	absentDigest, _ := absent.Digest()

	r := harness.Run(t, harness.Binary(t), "tree", parent.Tag("latest").String())
	for _, want := range []string{parent.Digest(idxDigest.String()).String(), "manifests[1]", `dev.nestattest.repository="gone"`, "not in " + reg.Ref("org/sparse/gone"), absentDigest.String()} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, r.Stderr)
		}
	}
	if r.Code != 1 {
		t.Errorf("exit %d, want 1", r.Code)
	}
	doc := treeOf(t, parent.Tag("latest").String(), "--allow-missing")
	if doc.Summary.Missing != 1 || doc.Summary.Nodes != 5 {
		t.Errorf("--allow-missing: %+v", doc.Summary)
	}
}

func scopedEntry(idx v1.ImageIndex, path string) mutate.IndexAddendum {
	return mutate.IndexAddendum{Add: idx, Descriptor: v1.Descriptor{Annotations: map[string]string{walk.AnnotationRepository: path}}}
}

// TestTreeRefusesContentNotMatchingItsDigest puts a loopback server between
// nestattest and the registry that serves other bytes for one child.
func TestTreeRefusesContentNotMatchingItsDigest(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	k := pushKo(t, reg, "org/ko-build")
	victim := strings.SplitN(k.expect[1], " ", 2)[0] // app1's index
	victimPath := "/v2/org/ko-build/app1/manifests/" + strings.SplitN(victim, "@", 2)[1]
	host := tamperingProxy(t, reg.Host, victimPath)

	ref := strings.Replace(k.tag, reg.Host, host, 1)
	r := harness.Run(t, harness.Binary(t), "tree", ref)
	if r.Code != 1 || !strings.Contains(r.Stderr, "content does not match digest") || !strings.Contains(r.Stderr, "org/ko-build/app1@") {
		t.Fatalf("exit %d, stderr:\n%s", r.Code, r.Stderr)
	}
}

// tamperingProxy forwards to upstream but serves the manifest at path with
// a byte changed.
func tamperingProxy(t *testing.T, upstream, path string) string {
	t.Helper()
	u, _ := url.Parse("http://" + upstream)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != path || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		body = bytes.Replace(body, []byte(`"schemaVersion":2`), []byte(`"schemaVersion": 2`), 1)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// TestTreeRefusesHostileAnnotation lists a child annotated out of the
// namespace; nothing outside it is requested.
func TestTreeRefusesHostileAnnotation(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	img, err := sample.Index("outside")
	if err != nil {
		t.Fatal(err)
	}
	outside, err := name.NewRepository(reg.Ref("org/outside"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (sample.Pusher{}).Push(outside, img); err != nil {
		t.Fatal(err)
	}
	parent, _ := name.NewRepository(reg.Ref("org/ns"))
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	for i, v := range []string{"../outside", "/org/outside", "UPPER", reg.Host + "/org/outside"} {
		tag := parent.Tag(fmt.Sprint("hostile", i))
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), scopedEntry(img, v))
		if err := remote.Put(tag, idx); err != nil {
			t.Fatal(err)
		}
		r := harness.Run(t, harness.Binary(t), "tree", strings.Replace(tag.String(), reg.Host, proxy.Host, 1))
		if r.Code != 1 || !strings.Contains(r.Stderr, "invalid repository scope") || !strings.Contains(r.Stderr, strconv.Quote(v)) {
			t.Errorf("%q: exit %d\n%s", v, r.Code, r.Stderr)
		}
	}
	for _, req := range proxy.Requests() {
		if strings.Contains(req, "/org/outside") {
			t.Errorf("requested %s outside the namespace", req)
		}
	}
}
