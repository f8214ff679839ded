package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// tokenRegistry is a registry that speaks the Docker token protocol: its
// realm hands out tokens for the scopes asked, less what a rule refuses,
// living a given time; every other path wants a live token covering it.
type tokenRegistry struct {
	host string
	life time.Duration
	// refuse, if set, drops a scope from what a token grants.
	refuse func(scope string) bool

	mu       sync.Mutex
	requests [][]string // the scopes of each token request
	granted  map[string]grant
}

type grant struct {
	scopes  map[string]bool
	expires time.Time
}

func newTokenRegistry(t *testing.T, life time.Duration) *tokenRegistry {
	t.Helper()
	r := &tokenRegistry{life: life, granted: map[string]grant{}}
	s := httptest.NewServer(r)
	t.Cleanup(s.Close)
	r.host = strings.TrimPrefix(s.URL, "http://")
	return r
}

func (r *tokenRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch {
	case req.URL.Path == "/token":
		r.token(w, req)
	case r.allowed(req):
		w.WriteHeader(http.StatusNotFound) // authorised; nothing is stored here
	default:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.host))
		w.WriteHeader(http.StatusUnauthorized)
	}
}

func (r *tokenRegistry) token(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	scopes := req.URL.Query()["scope"]
	r.requests = append(r.requests, scopes)
	g := grant{scopes: map[string]bool{}, expires: time.Now().Add(r.life)}
	for _, s := range scopes {
		if r.refuse == nil || !r.refuse(s) {
			g.scopes[s] = true
		}
	}
	tok := fmt.Sprintf("tok-%d", len(r.requests))
	r.granted[tok] = g
	fmt.Fprintf(w, `{"token":%q,"expires_in":%d}`, tok, int(r.life/time.Second))
}

// allowed: a live token whose grant covers the request's repository and
// action.
func (r *tokenRegistry) allowed(req *http.Request) bool {
	if req.URL.Path == "/v2/" {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.granted[strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")]
	if !ok || time.Now().After(g.expires) {
		return false
	}
	repo := repositoryOf(strings.TrimPrefix(req.URL.Path, "/v2/"))
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		return g.scopes["repository:"+repo+":pull"] || g.scopes["repository:"+repo+":pull,push"]
	}
	return g.scopes["repository:"+repo+":pull,push"]
}

func (r *tokenRegistry) tokenRequests() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.requests...)
}

func repos(t *testing.T, host string, n int) []name.Repository {
	t.Helper()
	var out []name.Repository
	for i := range n {
		r, err := name.NewRepository(fmt.Sprintf("%s/org/tree/r%02d", host, i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestTokensBatched: requests to 25 announced repositories, many at once,
// cost one token request, and none is refused.
func TestTokensBatched(t *testing.T) {
	reg := newTokenRegistry(t, time.Minute)
	c := NewClient(Options{Write: true})
	rs := repos(t, reg.host, 25)
	c.WantRepositories(rs...)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			if _, err := c.HasBlob(context.Background(), rs[i%len(rs)], digestOf([]byte{byte(i)})); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := reg.tokenRequests(); len(got) != 1 || len(got[0]) != 25 || c.TokenRequests() != 1 {
		t.Errorf("%d token requests (%v) for 25 repositories, want one", len(got), got)
	}
	// 120 repositories: fifty scopes a request.
	more := repos(t, reg.host, 120)
	c2 := NewClient(Options{})
	c2.WantRepositories(more...)
	for _, r := range more {
		if _, err := c2.HasBlob(context.Background(), r, digestOf([]byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	if n := c2.TokenRequests(); n != 3 {
		t.Errorf("%d token requests for 120 repositories, want 3", n)
	}
}

// TestTokensRenewedOnce: with one-second tokens, requests over three
// seconds renew the token about once a second, not once a request.
func TestTokensRenewedOnce(t *testing.T) {
	reg := newTokenRegistry(t, time.Second)
	c := NewClient(Options{})
	rs := repos(t, reg.host, 3)
	c.WantRepositories(rs...)
	requests := 0
	for start := time.Now(); time.Since(start) < 3*time.Second; requests++ {
		var wg sync.WaitGroup
		for _, r := range rs {
			wg.Go(func() {
				if _, err := c.HasBlob(context.Background(), r, digestOf([]byte("x"))); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		time.Sleep(20 * time.Millisecond)
	}
	if n := c.TokenRequests(); n < 3 || n > 5 {
		t.Errorf("%d token requests over %d rounds of 3 requests with one-second tokens, want about 3", n, requests)
	}
}

// TestTokensRefusedClearly: a repository the credentials may read but not
// write: the refusal names the repository and the access, costs one
// renewal, and later writes there fail without asking again.
func TestTokensRefusedClearly(t *testing.T) {
	reg := newTokenRegistry(t, time.Minute)
	reg.refuse = func(s string) bool { return s == "repository:org/tree/r01:pull,push" }
	c := NewClient(Options{Write: true, Retries: -1})
	rs := repos(t, reg.host, 3)
	c.WantRepositories(rs...)
	ctx := context.Background()
	_, _ = c.Upload(ctx, rs[0], []byte("ok")) // authorised; the fake stores nothing
	before := len(reg.tokenRequests())
	_, err := c.Upload(ctx, rs[1], []byte("refused"))
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "push to org/tree/r01 refused by the registry: the credentials for "+reg.host+" may not push there") {
		t.Fatalf("error %v", err)
	}
	after := len(reg.tokenRequests())
	for range 5 {
		if _, err := c.Upload(ctx, rs[1], []byte("refused")); !errors.Is(err, ErrDenied) {
			t.Fatalf("again: %v", err)
		}
	}
	if extra := len(reg.tokenRequests()) - after; extra != 0 || after-before > 1 {
		t.Errorf("%d token requests for the refusal, %d more for five more writes; want at most 1 and 0", after-before, extra)
	}
}
