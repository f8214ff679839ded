package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// countingRegistry is go-containerregistry's in-memory registry behind a
// handler that counts requests by method and path kind.
type countingRegistry struct {
	host  string
	mu    sync.Mutex
	count map[string]int
}

func newCountingRegistry(t *testing.T, referrers bool) *countingRegistry {
	t.Helper()
	r := &countingRegistry{count: map[string]int{}}
	h := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)), ggcr.WithReferrersSupport(referrers))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		kind := "other"
		for _, k := range []string{"/manifests/", "/blobs/uploads/", "/blobs/", "/referrers/", "/tags/"} {
			if strings.Contains(req.URL.Path, k) {
				kind = strings.Trim(k, "/")
				break
			}
		}
		r.mu.Lock()
		r.count[req.Method+" "+kind]++
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(s.Close)
	r.host = strings.TrimPrefix(s.URL, "http://")
	return r
}

func (r *countingRegistry) get(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[k]
}

// listEdit adds a layer holding entry to a tag's image: the test's
// stand-in for a signature tag.
func listEdit(entry string) Edit {
	return func(cur *Manifest) (*Change, error) {
		config := []byte("{}")
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
			Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: digestOf(config), Size: 2}}
		if cur != nil {
			if err := json.Unmarshal(cur.Raw, &m); err != nil {
				return nil, err
			}
		}
		for _, d := range m.Layers {
			if d.Annotations["entry"] == entry {
				return nil, nil
			}
		}
		m.Layers = append(m.Layers, v1.Descriptor{
			MediaType: "text/plain", Size: int64(len(entry)), Digest: digestOf([]byte(entry)),
			Annotations: map[string]string{"entry": entry},
		})
		raw, err := json.Marshal(m)
		return &Change{MediaType: types.OCIManifestSchema1, Raw: raw, Blobs: [][]byte{[]byte(entry), config}}, err
	}
}

func entries(t *testing.T, c *Client, tag name.Tag) []string {
	t.Helper()
	m, err := c.GetManifest(context.Background(), tag, MaxManifestBytes)
	if err != nil {
		t.Fatal(err)
	}
	var im v1.Manifest
	if err := json.Unmarshal(m.Raw, &im); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range im.Layers {
		out = append(out, d.Annotations["entry"])
	}
	return out
}

// TestUpdateTagBatches: 50 concurrent updates of one tag all land, in far
// fewer writes than updates.
func TestUpdateTagBatches(t *testing.T) {
	r := newCountingRegistry(t, false)
	c := NewClient(Options{Jobs: 8})
	tag, _ := name.NewTag(r.host + "/org/app:sha256-00.sig")
	var wg sync.WaitGroup
	var changed atomic.Int32
	for i := range 50 {
		wg.Go(func() {
			ok, err := c.UpdateTag(context.Background(), tag, listEdit(fmt.Sprint("e", i)))
			if err != nil {
				t.Error(err)
			}
			if ok {
				changed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := entries(t, c, tag); len(got) != 50 || changed.Load() != 50 {
		t.Fatalf("%d entries, %d changed, want 50", len(got), changed.Load())
	}
	if puts := r.get("PUT manifests"); puts >= 50 || puts < 1 {
		t.Errorf("%d manifest PUTs for 50 updates", puts)
	}
	// Again: nothing changes, nothing is written.
	before := r.get("PUT manifests")
	if ok, err := c.UpdateTag(context.Background(), tag, listEdit("e7")); ok || err != nil {
		t.Errorf("a repeated update changed the tag: %v, %v", ok, err)
	}
	if r.get("PUT manifests") != before {
		t.Error("a repeated update wrote")
	}
}

// TestSettleRestoresLostUpdates: a second client overwrites the tag after
// the first confirmed its update, as a concurrent process can; Settle puts
// the lost entry back.
func TestSettleRestoresLostUpdates(t *testing.T) {
	r := newCountingRegistry(t, false)
	a, b := NewClient(Options{}), NewClient(Options{})
	tag, _ := name.NewTag(r.host + "/org/app:sha256-00.att")
	ctx := context.Background()
	if _, err := a.UpdateTag(ctx, tag, listEdit("from-a")); err != nil {
		t.Fatal(err)
	}
	// b read the tag before a wrote: it writes its own list without a's.
	stale := listEdit("from-b")
	ch, _ := stale(nil)
	for _, blob := range ch.Blobs {
		if _, err := b.Upload(ctx, tag.Context(), blob); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.PutManifest(ctx, tag, ch.MediaType, ch.Raw); err != nil {
		t.Fatal(err)
	}
	lost, err := a.Settle(ctx, time.Millisecond)
	if err != nil || lost != 1 {
		t.Fatalf("Settle: %d lost, %v", lost, err)
	}
	if got := entries(t, a, tag); len(got) != 2 {
		t.Errorf("after Settle the tag holds %q, want both entries", got)
	}
	if lost, err := a.Settle(ctx, time.Millisecond); lost != 0 || err != nil {
		t.Errorf("a second Settle: %d, %v", lost, err)
	}
}

// TestSettleWaitsFromEachWrite: Settle reads each tag again delay after
// the client last wrote it, never sooner, and a tag written long before
// the end is read at once rather than after another delay.
func TestSettleWaitsFromEachWrite(t *testing.T) {
	h := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
	var (
		mu    sync.Mutex
		reads = map[string]time.Time{}
	)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/manifests/") {
			mu.Lock()
			reads[req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]] = time.Now()
			mu.Unlock()
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "http://")
	c := NewClient(Options{})
	ctx := context.Background()
	const delay = time.Second
	early, _ := name.NewTag(host + "/org/app:early")
	late, _ := name.NewTag(host + "/org/app:late")
	if _, err := c.UpdateTag(ctx, early, listEdit("one")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay)
	if _, err := c.UpdateTag(ctx, late, listEdit("two")); err != nil {
		t.Fatal(err)
	}
	wroteLate := time.Now()
	if lost, err := c.Settle(ctx, delay); lost != 0 || err != nil {
		t.Fatalf("Settle: %d lost, %v", lost, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := reads["late"].Sub(wroteLate); got < delay {
		t.Errorf("the tag written last was read again %s after the write, before the delay (%s)", got, delay)
	}
	if !reads["early"].Before(reads["late"]) || reads["early"].Sub(wroteLate) >= delay {
		t.Errorf("the tag written first was read again %s after the last write, want at once", reads["early"].Sub(wroteLate))
	}
}

// TestUpdateTagKnowsWhatItRead: ReadTag finds a missing tag in the
// repository's listing, read once; an update after ReadTag, and one after
// the client's own write, start from what the client knows and read nothing;
// under the same listings (one run), so does ReadTag of a tag the client
// wrote;
// a read that began before the client's write is not taken for the tag's
// content; Settle reads every tag afresh, and so still restores an entry
// another writer overwrote after the client last read the tag.
func TestUpdateTagKnowsWhatItRead(t *testing.T) {
	r := newCountingRegistry(t, false)
	a, b := NewClient(Options{}), NewClient(Options{})
	ctx := WithTagListings(context.Background())
	tag, _ := name.NewTag(r.host + "/org/app:sha256-01.sig")
	if m, err := a.ReadTag(ctx, tag); m != nil || err != nil {
		t.Fatalf("ReadTag of a missing tag: %v, %v", m, err)
	}
	for _, e := range []string{"one", "two"} {
		if _, err := a.UpdateTag(ctx, tag, listEdit(e)); err != nil {
			t.Fatal(err)
		}
	}
	if lists, gets, puts := r.get("GET tags"), r.get("GET manifests"), r.get("PUT manifests"); lists != 1 || gets != 0 || puts != 2 {
		t.Errorf("ReadTag and two updates: %d tag listings, %d manifest GETs, %d PUTs; want 1, 0 and 2", lists, gets, puts)
	}
	// The tag is written: it is read, not looked up in the listing.
	other, _ := name.NewTag(r.host + "/org/app:sha256-01.att")
	if m, err := a.ReadTag(ctx, other); m != nil || err != nil || r.get("GET tags") != 1 || r.get("GET manifests") != 0 {
		t.Fatalf("ReadTag of a tag the listing lacks: %v, %v, %d listings, %d GETs", m, err, r.get("GET tags"), r.get("GET manifests"))
	}
	if m, err := a.ReadTag(ctx, tag); m == nil || err != nil || r.get("GET manifests") != 0 {
		t.Fatalf("ReadTag of a tag the client wrote: %v, %v, %d GETs", m, err, r.get("GET manifests"))
	}
	// Without listings (a read that decides a verdict, such as a wait for
	// a builder's signature), the tag is read, whatever a listing said or
	// the client knows.
	if m, err := a.ReadTag(context.Background(), other); m != nil || err != nil || r.get("GET manifests") != 1 || r.get("GET tags") != 1 {
		t.Fatalf("ReadTag without listings: %v, %v, %d GETs, %d listings", m, err, r.get("GET manifests"), r.get("GET tags"))
	}
	if m, err := a.ReadTag(context.Background(), tag); m == nil || err != nil || r.get("GET manifests") != 2 {
		t.Fatalf("ReadTag without listings of a tag the client wrote: %v, %v, %d GETs", m, err, r.get("GET manifests"))
	}
	// Another run (listings of its own) reads it too: what the client
	// learnt in one run is not taken for the tag's content in the next.
	if m, err := a.ReadTag(WithTagListings(context.Background()), tag); m == nil || err != nil || r.get("GET manifests") != 3 {
		t.Fatalf("ReadTag in another run of a tag the client wrote: %v, %v, %d GETs", m, err, r.get("GET manifests"))
	}
	// A read begun before a's write is stale: it must not be used.
	gen := a.beginRead(tag)
	if _, err := a.UpdateTag(ctx, tag, listEdit("three")); err != nil {
		t.Fatal(err)
	}
	a.endRead(ctx, tag, gen, nil)
	if m, ok, _ := a.knownTagContent(tag); !ok || m == nil {
		t.Fatalf("a read begun before the client's write replaced what it put: %v, %v", m, ok)
	}
	// Another writer replaces the tag: a's next update starts from what a
	// knows and so writes over b's entry, and Settle puts both back.
	if _, err := b.UpdateTag(ctx, tag, listEdit("from-b")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateTag(ctx, tag, listEdit("four")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Settle(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Settle(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, a, tag); len(got) != 5 {
		t.Errorf("after both Settle the tag holds %q, want all five entries", got)
	}
}

// putSubject puts an empty index, the subject of the referrers a test
// puts, at org/app:v1, and the empty config they name; it returns the
// repository, the index and its digest.
func putSubject(t *testing.T, c *Client, r *countingRegistry) (name.Repository, []byte, v1.Hash) {
	t.Helper()
	ctx := context.Background()
	repo, _ := name.NewRepository(r.host + "/org/app")
	subject := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	sd, err := c.PutManifest(ctx, repo.Tag("v1"), types.OCIImageIndex, subject)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Upload(ctx, repo, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	return repo, subject, sd
}

// TestPutReferrers lists a referrer through the referrers API where the
// registry serves it, and in the fallback tag where it does not.
func TestPutReferrers(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(fmt.Sprint("referrers API ", api), func(t *testing.T) {
			r := newCountingRegistry(t, api)
			c := NewClient(Options{})
			ctx := context.Background()
			repo, subject, sd := putSubject(t, c, r)
			for i := range 3 {
				man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%d},"annotations":{"n":"%d"}}`,
					digestOf([]byte("{}")), sd, len(subject), i)
				desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: digestOf([]byte(man)), Size: int64(len(man)), Annotations: map[string]string{"n": fmt.Sprint(i)}}
				if err := c.PutReferrers(ctx, repo, sd, Referrer{Descriptor: desc, Raw: []byte(man)}); err != nil {
					t.Fatal(err)
				}
			}
			refs, err := c.Referrers(ctx, repo, sd)
			if err != nil || len(refs) != 3 {
				t.Fatalf("%d referrers, %v", len(refs), err)
			}
			_, err = c.GetManifest(ctx, FallbackTag(repo, sd), MaxManifestBytes)
			if api == (err == nil) {
				t.Errorf("fallback tag read: %v, with the referrers API %v", err, api)
			}
		})
	}
}

// TestReadListings: the listings read up front serve every later
// ReadTag of the run; asked for twice, a repository is listed once; and
// without listings nothing is read.
func TestReadListings(t *testing.T) {
	r := newCountingRegistry(t, false)
	c := NewClient(Options{})
	var repos []name.Repository
	for i := range 5 {
		repo, _ := name.NewRepository(fmt.Sprintf("%s/org/app%d", r.host, i))
		repos = append(repos, repo)
	}
	c.ReadListings(context.Background(), repos...)
	if n := r.get("GET tags"); n != 0 {
		t.Fatalf("ReadListings without listings: %d tag listings", n)
	}
	ctx := WithTagListings(context.Background())
	c.ReadListings(ctx, append(repos, repos...)...)
	for _, repo := range repos {
		if m, err := c.ReadTag(ctx, repo.Tag("sha256-01.sig")); m != nil || err != nil {
			t.Fatalf("ReadTag: %v, %v", m, err)
		}
	}
	if lists, gets := r.get("GET tags"), r.get("GET manifests"); lists != len(repos) || gets != 0 {
		t.Errorf("%d tag listings and %d manifest GETs, want %d and 0", lists, gets, len(repos))
	}
}

// TestReferrersAskedOnceARun: under WithTagListings (a signing run) the
// referrers API is asked about a subject once, however many stores and
// finders list its referrers, until the run puts referrers of it; then
// the next listing asks again and sees them. Without listings, every
// listing asks.
func TestReferrersAskedOnceARun(t *testing.T) {
	r := newCountingRegistry(t, true)
	c := NewClient(Options{})
	ctx := WithTagListings(context.Background())
	repo, subject, sd := putSubject(t, c, r)
	list := func(ctx context.Context, want, asked int) {
		t.Helper()
		refs, err := c.Referrers(ctx, repo, sd)
		if err != nil || len(refs) != want || r.get("GET referrers") != asked {
			t.Fatalf("Referrers: %d, %v, after %d questions; want %d after %d", len(refs), err, r.get("GET referrers"), want, asked)
		}
	}
	list(ctx, 0, 1)
	list(ctx, 0, 1)
	man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%d}}`,
		digestOf([]byte("{}")), sd, len(subject))
	desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: digestOf([]byte(man)), Size: int64(len(man))}
	if err := c.PutReferrers(ctx, repo, sd, Referrer{Descriptor: desc, Raw: []byte(man)}); err != nil {
		t.Fatal(err)
	}
	list(ctx, 1, 2)
	list(ctx, 1, 2)
	list(context.Background(), 1, 3)
	list(context.Background(), 1, 4)
}

// TestLimitPerHost: however many goroutines ask, a host never has more
// than Jobs requests waiting for an answer.
func TestLimitPerHost(t *testing.T) {
	var inFlight, peak atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer s.Close()
	c := NewClient(Options{Jobs: 3})
	repo, _ := name.NewRepository(strings.TrimPrefix(s.URL, "http://") + "/org/app")
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() { _, _ = c.HasBlob(context.Background(), repo, digestOf([]byte("x"))) })
	}
	wg.Wait()
	if peak.Load() > 3 || peak.Load() < 2 {
		t.Errorf("peak %d requests in flight, want at most 3", peak.Load())
	}
}

// TestReferrersAPIAskedOnce: callers that start together on a registry
// without the referrers API ask it once; the others wait for its answer
// and read the fallback tag.
func TestReferrersAPIAskedOnce(t *testing.T) {
	r := newCountingRegistry(t, false)
	c := NewClient(Options{Jobs: 8})
	repo, _ := name.NewRepository(r.host + "/org/app")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := c.Referrers(context.Background(), repo, digestOf([]byte(fmt.Sprint(i)))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := r.get("GET referrers"); got != 1 {
		t.Errorf("%d referrers API requests, want 1", got)
	}
}
