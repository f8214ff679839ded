package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestNextLink(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		bad          bool
	}{
		{header: ``},
		{header: `</v2/_catalog?last=b&n=2>; rel="next"`, want: "/v2/_catalog?last=b&n=2"},
		{header: `</v2/_catalog?last=b&n=2>; rel=next`, want: "/v2/_catalog?last=b&n=2"},
		{header: `<https://reg/v2/_catalog?n=1&last=a>;rel="NEXT"`, want: "https://reg/v2/_catalog?n=1&last=a"},
		{header: `</prev>; rel="prev", </next>; rel="next"`, want: "/next"},
		{header: `</a>; title="x, y; z"; rel="prev next"`, want: "/a"},
		{header: `</a>; rel="prev"`},
		{header: `</a>; anchor="#x"; rel="next"; rel="prev"`, want: "/a"},
		{header: `</a>; title="a \"quoted\" word"; rel=next`, want: "/a"},
		{header: `/v2/_catalog; rel="next"`, bad: true},
		{header: `</v2/_catalog; rel="next"`, bad: true},
		{header: `</a> rel="next"`, bad: true},
		{header: `</a>; ="next"`, bad: true},
		{header: `</a>; rel="next`, bad: true},
	} {
		got, err := nextLink(tc.header)
		if tc.bad {
			if !errors.Is(err, ErrListing) {
				t.Errorf("%s: err = %v, want ErrListing", tc.header, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.header, got, err, tc.want)
		}
	}
}

// TestDiscoverPages lists 260 children below the parent among other
// repositories, 7 names a page.
func TestDiscoverPages(t *testing.T) {
	reg := newFakeRegistry(t, true, true)
	var names, want []string
	for i := range 260 {
		p := fmt.Sprintf("app%03d", i)
		names = append(names, "org/ko-build/"+p)
		want = append(want, p)
	}
	names = append(names, "a/first", "org/ko-build", "org/ko-build-2/x", "org/ko-buildx", "zz/last")
	reg.catalog = pagedCatalog(names)
	parent := mustRepo(t, reg.host+"/org/ko-build")
	l, err := Discover(context.Background(), testClient(), parent, DiscoverOptions{PageSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.Paths, want) || l.Entries != len(names) || l.Pages != (len(names)+6)/7 {
		t.Errorf("found %d paths in %d pages of %d names", len(l.Paths), l.Pages, l.Entries)
	}
}

// TestDiscoverSmallerPages: a registry that serves fewer names a page than
// asked (distribution's catalog.maxentries answers 400
// PAGINATION_NUMBER_INVALID) is asked for fewer.
func TestDiscoverSmallerPages(t *testing.T) {
	reg := newFakeRegistry(t, true, true)
	var names []string
	for i := range 45 {
		names = append(names, fmt.Sprintf("org/ko-build/app%02d", i))
	}
	paged := pagedCatalog(names)
	reg.catalog = func(w http.ResponseWriter, req *http.Request) {
		if n, _ := strconv.Atoi(req.URL.Query().Get("n")); n > 20 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"errors":[{"code":"PAGINATION_NUMBER_INVALID","message":"invalid number of results requested"}]}`)
			return
		}
		paged(w, req)
	}
	l, err := Discover(context.Background(), testClient(), mustRepo(t, reg.host+"/org/ko-build"), DiscoverOptions{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Paths) != 45 || l.Pages != 4 { // n=12 after 100, 50 and 25 were refused
		t.Errorf("%d paths in %d pages", len(l.Paths), l.Pages)
	}
}

// TestDiscoverHostile: a _catalog that loops, stalls, leaves the endpoint,
// never ends or sends garbage is stopped with an error.
func TestDiscoverHostile(t *testing.T) {
	page := func(link string, names ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if link != "" {
				w.Header().Set("Link", link)
			}
			_ = json.NewEncoder(w).Encode(map[string][]string{"repositories": names})
		}
	}
	endless := func(w http.ResponseWriter, req *http.Request) {
		last := req.URL.Query().Get("last") + "a"
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?last=%s>; rel="next"`, last))
		_ = json.NewEncoder(w).Encode(map[string][]string{"repositories": {"x/" + last}})
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		opts    DiscoverOptions
		err     error
	}{
		{"links to itself", page(`</v2/_catalog?n=100>; rel="next"`, "org/ko-build/a"), DiscoverOptions{}, ErrListing},
		{"last does not advance", func(w http.ResponseWriter, req *http.Request) {
			last := "m"
			if req.URL.Query().Get("last") == "m" {
				last = "c"
			}
			page(`</v2/_catalog?last=`+last+`>; rel="next"`, "org/ko-build/a")(w, req)
		}, DiscoverOptions{}, ErrListing},
		{"another host", page(`<http://evil.example/v2/_catalog?last=z>; rel="next"`), DiscoverOptions{}, ErrListing},
		{"another path", page(`</v2/org/ko-build/tags/list>; rel="next"`), DiscoverOptions{}, ErrListing},
		{"credentials in the link", page(`<http://user:pw@` + "HOST" + `/v2/_catalog?last=z>; rel="next"`), DiscoverOptions{}, ErrListing},
		{"malformed link", page(`/v2/_catalog?last=z; rel="next"`), DiscoverOptions{}, ErrListing},
		{"malformed body", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"repositories": [1]`) }, DiscoverOptions{}, ErrListing},
		{"invalid name below the parent", page("", "org/ko-build/A"), DiscoverOptions{}, ErrPath},
		{"endless pages", endless, DiscoverOptions{MaxPages: 50}, ErrTooMany},
		{"endless names", endless, DiscoverOptions{MaxEntries: 30}, ErrTooMany},
		{"endless by default", endless, DiscoverOptions{}, ErrTooMany},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistry(t, true, true)
			h := tc.handler
			reg.catalog = func(w http.ResponseWriter, req *http.Request) {
				if l := w.Header().Get("Link"); l != "" {
					w.Header().Set("Link", strings.ReplaceAll(l, "HOST", reg.host))
				}
				h(w, req)
			}
			_, err := Discover(context.Background(), testClient(), mustRepo(t, reg.host+"/org/ko-build"), tc.opts)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		reg := newFakeRegistry(t, true, true)
		reg.catalog = func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"no catalog for you"}]}`)
		}
		_, err := Discover(context.Background(), testClient(), mustRepo(t, reg.host+"/org/ko-build"), DiscoverOptions{})
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestComposeDiscover discovers the ko sample: app2/plugins has no latest
// tag and is skipped and reported, or refused without SkipMissing.
func TestComposeDiscover(t *testing.T) {
	reg := newFakeRegistry(t, true, true)
	parent := koSample(t, reg)
	reg.catalog = pagedCatalog([]string{"org/ko-build/app1", "org/ko-build/app2", "org/ko-build/app2/plugins", "org/ko-build/app3", "org/ko-build/tool", "org/other"})
	res := compose(t, parent, Options{Discover: true, SkipMissing: true, Listing: DiscoverOptions{PageSize: 2}})
	var paths []string
	for _, c := range res.Children {
		paths = append(paths, c.Path)
	}
	if strings.Join(paths, " ") != "app1 app2 app3 tool" || len(res.Skipped) != 1 || res.Skipped[0].Path != "app2/plugins" || res.Discovery.Pages != 3 {
		t.Errorf("children %q, skipped %+v, discovery %+v", paths, res.Skipped, res.Discovery)
	}
	explicit := compose(t, parent, Options{Children: koChildren(t, parent), DryRun: true})
	if explicit.Digest != res.Digest {
		t.Errorf("discovered %s, explicit %s", res.Digest, explicit.Digest)
	}

	_, err := Compose(context.Background(), parent.Tag("latest"), Options{Client: testClient(), Discover: true})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "_catalog") || !strings.Contains(err.Error(), "app2/plugins") {
		t.Errorf("without SkipMissing: %v", err)
	}
	_, err = Compose(context.Background(), parent.Tag("latest"), Options{Client: testClient(), Discover: true, SkipMissing: true, Children: koChildren(t, parent)[:1]})
	if !errors.Is(err, ErrDuplicate) {
		t.Errorf("explicit and discovered app1: %v", err)
	}
	_, err = Compose(context.Background(), parent.Tag("latest"), Options{Client: testClient(), Discover: true, SkipMissing: true, ChildTag: "v9"})
	if !errors.Is(err, ErrNoChildren) {
		t.Errorf("no repository has the tag: %v", err)
	}
}
