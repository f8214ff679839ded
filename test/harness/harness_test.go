package harness

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// starters start each kind of registry.
var starters = []struct {
	name  string
	start func(testing.TB) *Registry
}{
	{"distribution", func(t testing.TB) *Registry { return Distribution(t, DistributionOptions{}) }},
	{"docker-registry", DockerRegistry},
	{"in-memory", func(t testing.TB) *Registry { return InMemory(t, false) }},
	{"in-memory-referrers", func(t testing.TB) *Registry { return InMemory(t, true) }},
}

func ref(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pushRandom pushes a random image of two 1 KiB layers to ref.
func pushRandom(t testing.TB, s string) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, s), img); err != nil {
		t.Fatalf("push %s: %v", s, err)
	}
	return img
}

// blobBytes is the size of img's config and layers, as uploaded.
func blobBytes(t testing.TB, img v1.Image) int64 {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// transportError returns err's *transport.Error, failing the test without one.
func transportError(t testing.TB, err error) *transport.Error {
	t.Helper()
	var terr *transport.Error
	if !errors.As(err, &terr) {
		t.Fatalf("got %v, want a registry error", err)
	}
	return terr
}

func TestRegistriesThroughProxy(t *testing.T) {
	for _, s := range starters {
		t.Run(s.name, func(t *testing.T) {
			reg := s.start(t)
			p := NewProxy(t, reg.Host, ProxyOptions{})
			img := pushRandom(t, p.Host+"/org/app:v1")

			c := p.Counts()
			// Every upload session ends with a PUT through the proxy: the
			// registry's absolute Locations were rewritten.
			if c.ByKind["manifest PUT"] != 1 || c.ByKind["upload PUT"] != 3 || c.UploadBytes != blobBytes(t, img) {
				t.Errorf("counts %+v, want 1 manifest PUT, 3 upload PUTs, %d bytes", c, blobBytes(t, img))
			}
			if c.Writes() != c.ByMethod["POST"]+c.ByMethod["PATCH"]+c.ByMethod["PUT"] || c.Total != len(p.Requests()) {
				t.Errorf("counts %+v disagree with requests %q", c, p.Requests())
			}

			desc, err := remote.Head(ref(t, p.Host+"/org/app:v1"))
			digest, _ := img.Digest()
			mt, _ := img.MediaType()
			if err != nil || desc.Digest != digest || desc.MediaType != mt {
				t.Errorf("HEAD through the proxy: %+v, %v; want %s %s", desc, err, digest, mt)
			}

			p.Reset()
			p.SetRefuse(RefuseWritesTo("org/app"))
			terr := transportError(t, remote.Write(ref(t, p.Host+"/org/app:v2"), img))
			if terr.StatusCode != http.StatusForbidden || len(terr.Errors) == 0 || terr.Errors[0].Code != transport.DeniedErrorCode {
				t.Errorf("refused write: %v, want 403 DENIED", terr)
			}
			if _, err := remote.Head(ref(t, p.Host+"/org/app:v1")); err != nil {
				t.Errorf("read of a refused repository: %v", err)
			}
			pushRandom(t, p.Host+"/org/app/sub:v1") // the repository below is not refused
			p.SetRefuse(nil)
			pushRandom(t, p.Host+"/org/app:v3")
		})
	}
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		path string
		want route
	}{
		{"/v2/", route{kind: kindPing}},
		{"/v2/_catalog", route{kind: kindCatalog}},
		{"/v2/org/app/manifests/v1", route{"org/app", kindManifest}},
		{"/v2/org/app/manifests/sha256:abc", route{"org/app", kindManifest}},
		{"/v2/org/app/blobs/sha256:abc", route{"org/app", kindBlob}},
		{"/v2/org/app/blobs/uploads/", route{"org/app", kindUpload}},
		{"/v2/org/app/blobs/uploads/0c7e-11", route{"org/app", kindUpload}},
		{"/v2/org/app/tags/list", route{"org/app", kindTags}},
		{"/v2/org/app/referrers/sha256:abc", route{"org/app", kindReferrers}},
		{"/v2/org/blobs/uploads/blobs/uploads/", route{"org/blobs/uploads", kindUpload}},
		{"/v2/org/manifests/blobs/sha256:abc", route{"org/manifests", kindBlob}},
		{"/v2/org/tags/manifests/list", route{"org/tags", kindManifest}},
		{"/metrics", route{kind: kindOther}},
	} {
		if got := parseRoute(tc.path); got != tc.want {
			t.Errorf("parseRoute(%q) = %+v, want %+v", tc.path, got, tc.want)
		}
	}
}

func TestRefuseWritesTo(t *testing.T) {
	refuse := RefuseWritesTo("org/app")
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"PUT", "/v2/org/app/manifests/v1", true},
		{"DELETE", "/v2/org/app/manifests/sha256:abc", true},
		{"POST", "/v2/org/app/blobs/uploads/", true},
		{"PATCH", "/v2/org/app/blobs/uploads/id", true},
		{"PUT", "/v2/org/app/blobs/uploads/id", true},
		{"GET", "/v2/org/app/manifests/v1", false},
		{"HEAD", "/v2/org/app/blobs/sha256:abc", false},
		{"PUT", "/v2/org/app/sub/manifests/v1", false},
		{"PUT", "/v2/org/application/manifests/v1", false},
		{"POST", "/v2/org/blobs/uploads/", false},
	} {
		status, got := refuse(httptest.NewRequest(tc.method, tc.path, nil))
		if got != tc.want || (got && status != http.StatusForbidden) {
			t.Errorf("%s %s: %d %v, want refused %v with 403", tc.method, tc.path, status, got, tc.want)
		}
	}
}

// TestProxyHeaders: an absolute Location at the registry is pointed at the
// proxy; a relative one, Link, Docker-Content-Digest and Content-Type pass
// untouched.
func TestProxyHeaders(t *testing.T) {
	var upstream string
	headers := map[string]string{
		"Docker-Content-Digest": "sha256:0123",
		"Content-Type":          "application/vnd.oci.image.index.v1+json",
		"Link":                  `</v2/_catalog?last=b&n=2>; rel="next"`,
	}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		loc := "/v2/org/app/blobs/uploads/1?_state=x%2By"
		if r.URL.Query().Has("absolute") {
			loc = "http://" + upstream + loc
		}
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer s.Close()
	upstream = strings.TrimPrefix(s.URL, "http://")
	p := NewProxy(t, upstream, ProxyOptions{})
	for query, want := range map[string]string{
		"?absolute": "http://" + p.Host + "/v2/org/app/blobs/uploads/1?_state=x%2By",
		"":          "/v2/org/app/blobs/uploads/1?_state=x%2By",
	} {
		resp, err := http.Post("http://"+p.Host+"/v2/org/app/blobs/uploads/"+query, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("Location %q, want %q", got, want)
		}
		for k, v := range headers {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s %q, want %q", k, got, v)
			}
		}
	}
}

// get fetches url and reads its body; it returns the error of either.
func get(url string) (*http.Response, []byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// TestFaultKinds: what a client sees of each fault, once, after which
// requests pass again; the ping is spared unless Pings is set.
func TestFaultKinds(t *testing.T) {
	reg := InMemory(t, false)
	pushRandom(t, reg.Ref("org/app:v1"))
	const slow = 200 * time.Millisecond
	for _, tc := range []struct {
		kind  FaultKind
		check func(resp *http.Response, err error, took time.Duration) error
	}{
		{Fault500, wantStatus(500, "")},
		{Fault502, wantStatus(502, "")},
		{Fault503, wantStatus(503, "")},
		{Fault429, wantStatus(429, "1")},
		{FaultReset, wantBroken(nil)},
		{FaultTruncated, wantBroken(io.ErrUnexpectedEOF)},
		{FaultSlow, func(resp *http.Response, err error, took time.Duration) error {
			if err != nil || resp.StatusCode != http.StatusOK || took < slow {
				return fmt.Errorf("%v after %v, want 200 after %v", err, took, slow)
			}
			return nil
		}},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			p := NewProxy(t, reg.Host, ProxyOptions{Faults: &Faults{Rate: 1, Max: 1, Kinds: []FaultKind{tc.kind}, Slow: slow}})
			if resp, _, err := get("http://" + p.Host + "/v2/"); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("ping: %v", err)
			}
			manifest := "http://" + p.Host + "/v2/org/app/manifests/v1"
			begin := time.Now()
			resp, _, err := get(manifest)
			if err := tc.check(resp, err, time.Since(begin)); err != nil {
				t.Error(err)
			}
			if resp, _, err := get(manifest); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("after the fault: %v %v", resp, err)
			}
			want := []InjectedFault{{tc.kind, "GET /v2/org/app/manifests/v1"}}
			if got := p.FaultLog(); !slices.Equal(got, want) || p.Injected()[tc.kind] != 1 {
				t.Errorf("fault log %v, want %v", got, want)
			}
		})
	}
	t.Run("pings", func(t *testing.T) {
		p := NewProxy(t, reg.Host, ProxyOptions{Faults: &Faults{Rate: 1, Kinds: []FaultKind{Fault503}, Pings: true}})
		if resp, _, err := get("http://" + p.Host + "/v2/"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("ping: %v %v, want 503", resp, err)
		}
	})
}

func wantStatus(status int, retryAfter string) func(*http.Response, error, time.Duration) error {
	return func(resp *http.Response, err error, _ time.Duration) error {
		if err != nil || resp.StatusCode != status || resp.Header.Get("Retry-After") != retryAfter {
			return fmt.Errorf("%v %v, want %d with Retry-After %q", resp, err, status, retryAfter)
		}
		return nil
	}
}

// wantBroken wants the body to fail, with target if it is set.
func wantBroken(target error) func(*http.Response, error, time.Duration) error {
	return func(resp *http.Response, err error, _ time.Duration) error {
		if err == nil || (target != nil && !errors.Is(err, target)) {
			return fmt.Errorf("%v %v, want a broken body (%v)", resp, err, target)
		}
		return nil
	}
}

// TestFaultsAreSeeded: the same seed gives the same faults at the same
// requests; another seed, others; Max bounds them; pings are spared.
func TestFaultsAreSeeded(t *testing.T) {
	reg := InMemory(t, false)
	pushRandom(t, reg.Ref("org/app:v1"))
	run := func(seed int64) []InjectedFault {
		p := NewProxy(t, reg.Host, ProxyOptions{Faults: &Faults{Seed: seed, Rate: 0.4, Kinds: AllFaults, Max: 8, Slow: time.Millisecond}})
		for i := range 40 {
			path := "/v2/org/app/manifests/v1"
			if i%4 == 0 {
				path = "/v2/"
			}
			_, _, _ = get("http://" + p.Host + path + fmt.Sprintf("?i=%d", i))
		}
		return p.FaultLog()
	}
	a, b, c := run(7), run(7), run(8)
	if len(a) != 8 || !slices.Equal(a, b) {
		t.Errorf("seed 7 gave\n%v\nthen\n%v\nwant the same 8 faults", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same faults %v", a)
	}
	for _, f := range slices.Concat(a, c) {
		if strings.HasPrefix(f.Request, "GET /v2/?") {
			t.Errorf("fault %v on a ping", f)
		}
	}
}

// TestIndexValidation documents what each registry does with an index
// whose child manifest is only in another repository: distribution, v3 by
// default as 2.8, refuses it with 400 MANIFEST_BLOB_UNKNOWN, and v3 accepts
// it with validation.manifests.indexes.platforms: none; go-containerregistry's
// in-memory registry refuses it too, with 404 MANIFEST_UNKNOWN.
func TestIndexValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		start  func(testing.TB) *Registry
		status int // 0: accepted
		code   transport.ErrorCode
	}{
		{"distribution", func(t testing.TB) *Registry { return Distribution(t, DistributionOptions{}) },
			http.StatusBadRequest, transport.ManifestBlobUnknownErrorCode},
		{"distribution-sparse", func(t testing.TB) *Registry { return Distribution(t, DistributionOptions{SparseIndexes: true}) },
			0, ""},
		{"docker-registry", DockerRegistry, http.StatusBadRequest, transport.ManifestBlobUnknownErrorCode},
		{"in-memory", func(t testing.TB) *Registry { return InMemory(t, false) }, http.StatusNotFound, transport.ManifestUnknownErrorCode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := tc.start(t)
			img := pushRandom(t, reg.Ref("org/child:v1"))
			idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: img})
			err := remote.Put(ref(t, reg.Ref("org/parent:v1")), idx)
			if tc.status == 0 {
				if err != nil {
					t.Errorf("%s refused the index: %v", reg.Name, err)
				}
				return
			}
			terr := transportError(t, err)
			if terr.StatusCode != tc.status || len(terr.Errors) == 0 || terr.Errors[0].Code != tc.code {
				t.Errorf("%s: %v, want %d %s", reg.Name, terr, tc.status, tc.code)
			}
		})
	}
}

// TestCatalogMaxEntries: catalog.maxentries pages _catalog, and the Link to
// the next page reaches the client as the registry wrote it.
func TestCatalogMaxEntries(t *testing.T) {
	reg := Distribution(t, DistributionOptions{CatalogMaxEntries: 2})
	for _, repo := range []string{"org/a", "org/b", "org/c"} {
		pushRandom(t, reg.Ref(repo+":v1"))
	}
	p := NewProxy(t, reg.Host, ProxyOptions{})
	resp, body, err := get("http://" + p.Host + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	if link := resp.Header.Get("Link"); !strings.Contains(link, "n=2") || !strings.Contains(link, `rel="next"`) || !strings.Contains(string(body), `"org/b"`) || strings.Contains(string(body), `"org/c"`) {
		t.Errorf("first page %s with Link %q, want org/a, org/b and a next link", body, link)
	}
	if c := p.Counts(); c.ByKind["catalog GET"] != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestRun(t *testing.T) {
	r := RunEnv(t, []string{"GREETING=hello"}, "/bin/sh", "-c", `echo "$GREETING"; echo oops >&2; exit 3`)
	if r != (Result{Stdout: "hello\n", Stderr: "oops\n", Code: 3}) {
		t.Errorf("got %+v", r)
	}
	if r := Run(t, "/bin/sh", "-c", "true"); r != (Result{}) {
		t.Errorf("got %+v", r)
	}
}

func TestBinary(t *testing.T) {
	bin := Binary(t)
	if r := Run(t, bin, "--help"); r.Code != 0 || !strings.Contains(r.Stdout+r.Stderr, "nestattest") {
		t.Errorf("nestattest --help: %+v", r)
	}
	if again := Binary(t); again != bin {
		t.Errorf("built twice: %s, then %s", bin, again)
	}
}

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recorder) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestMissingTool(t *testing.T) {
	t.Setenv(EnvTools, t.TempDir())
	for _, e2e := range []string{"", "require"} {
		t.Setenv(EnvE2E, e2e)
		r := &recorder{TB: t}
		Tool(r, "cosign")
		got := r.skipped
		if e2e == "require" {
			got = r.failed
		}
		if !strings.Contains(got, "tool cosign not found") || !strings.Contains(got, "make tools") {
			t.Errorf("NESTATTEST_E2E=%q: skipped %q, failed %q", e2e, r.skipped, r.failed)
		}
	}
}

// TestCountAccess reads both registries' access-log lines: distribution's
// combined format among its other log lines, and go-containerregistry's.
func TestCountAccess(t *testing.T) {
	log := `time="2026-12-06T01:00:00Z" level=warning msg="No HTTP secret provided"
127.0.0.1 - - [06/Dec/2026:01:00:00 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "nestattest"
127.0.0.1 - - [06/Dec/2026:01:00:00 +0000] "POST /v2/org/app/blobs/uploads/?digest=sha256%3Aab HTTP/1.1" 202 0 "" "nestattest"
127.0.0.1 - - [06/Dec/2026:01:00:00 +0000] "PUT /v2/org/app/manifests/sha256-ab.sig HTTP/1.1" 201 0 "" "nestattest"
HEAD /v2/org/app/manifests/sha256:ab
GET /v2/org/app/referrers/sha256:ab 404 NAME_UNKNOWN Unknown name
`
	c := countAccess([]byte(log))
	want := map[string]int{"ping GET": 1, "upload POST": 1, "manifest PUT": 1, "manifest HEAD": 1, "referrers GET": 1}
	if c.Total != 5 || !maps.Equal(c.ByKind, want) {
		t.Errorf("counted %v, want 5 %v", c, want)
	}
}
