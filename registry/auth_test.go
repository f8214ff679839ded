package registry

import (
	"context"
	"encoding/base64"
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
	// latency delays each registry request before its token is checked,
	// as a registry far away does.
	latency time.Duration
	// wholeSeconds ends a token's life at the whole second before, as a
	// JWT's exp claim counts (distribution's, Docker Hub's).
	wholeSeconds bool

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
	case r.allowedLater(req):
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
	if r.wholeSeconds {
		g.expires = g.expires.Truncate(time.Second)
	}
	for _, s := range scopes {
		if r.refuse == nil || !r.refuse(s) {
			g.scopes[s] = true
		}
	}
	tok := fmt.Sprintf("tok-%d", len(r.requests))
	r.granted[tok] = g
	fmt.Fprintf(w, `{"token":%q,"expires_in":%d}`, tok, int(r.life/time.Second))
}

// allowedLater is allowed, once the latency has passed.
func (r *tokenRegistry) allowedLater(req *http.Request) bool {
	if req.URL.Path != "/v2/" {
		time.Sleep(r.latency)
	}
	return r.allowed(req)
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
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "push to org/tree/r01 refused by the registry: the credentials for "+reg.host+" may not push there (POST /v2/org/tree/r01/blobs/uploads/)") {
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

// TestTokensRefusedReadNamedRead: a writing client whose credentials may
// neither read nor write a repository is told that its read was refused,
// with the request that met the refusal, not that a push was.
func TestTokensRefusedReadNamedRead(t *testing.T) {
	reg := newTokenRegistry(t, time.Minute)
	reg.refuse = func(s string) bool { return strings.HasPrefix(s, "repository:org/tree/r01:") }
	c := NewClient(Options{Write: true, Retries: -1})
	rs := repos(t, reg.host, 2)
	d := digestOf([]byte("x"))
	_, err := c.HasBlob(context.Background(), rs[1], d)
	var denied *DeniedError
	if !errors.As(err, &denied) || !errors.Is(err, ErrDenied) {
		t.Fatalf("error %v, want a DeniedError", err)
	}
	want := "pull from org/tree/r01 refused by the registry: the credentials for " + reg.host + " may not pull there (HEAD /v2/org/tree/r01/blobs/" + d.String() + ")"
	if denied.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

// TestRefusedActions: what a refusal names, from a JWT's access claim when
// the token is one, else from the request.
func TestRefusedActions(t *testing.T) {
	jwt := func(claims string) string {
		enc := base64.RawURLEncoding
		return enc.EncodeToString([]byte(`{"alg":"ES256"}`)) + "." + enc.EncodeToString([]byte(claims)) + ".c2ln"
	}
	for _, tc := range []struct {
		token, scope, method string
		want                 string
	}{
		{jwt(`{"access":[]}`), "repository:org/a:pull,push", "GET", "pull from and push to org/a refused by the registry: the credentials for r.test may neither pull nor push there (GET /v2/x)"},
		{jwt(`{"access":[{"type":"repository","name":"org/a","actions":["pull"]}]}`), "repository:org/a:pull,push", "PUT", "push to org/a refused by the registry: the credentials for r.test may not push there (PUT /v2/x)"},
		{jwt(`{"access":[{"type":"repository","name":"org/b","actions":["pull","push"]}]}`), "repository:org/a:pull", "HEAD", "pull from org/a refused by the registry: the credentials for r.test may not pull there (HEAD /v2/x)"},
		{"opaque-token", "repository:org/a:pull,push", "GET", "pull from org/a refused by the registry: the credentials for r.test may not pull there (GET /v2/x)"},
		{"opaque-token", "repository:org/a:pull,push", "PATCH", "push to org/a refused by the registry: the credentials for r.test may not push there (PATCH /v2/x)"},
	} {
		refused := refusedActions(tc.scope, tc.method, jwtGrants(tc.token))
		got := (&DeniedError{Host: "r.test", Scope: tc.scope, Refused: refused, Request: tc.method + " /v2/x"}).Error()
		if got != tc.want {
			t.Errorf("%s %s with %.20s:\n%s\nwant\n%s", tc.method, tc.scope, tc.token, got, tc.want)
		}
	}
}

// TestTokensExpiredOnTheWay: tokens of two seconds whose end the server
// counts in whole seconds (so they may live barely one), a registry 150 ms
// away, many requests at once to several repositories: requests that meet
// a token expired on the way are sent again with a fresh one, never taken
// for a refusal, and counted.
func TestTokensExpiredOnTheWay(t *testing.T) {
	reg := newTokenRegistry(t, 2*time.Second)
	reg.latency, reg.wholeSeconds = 150*time.Millisecond, true
	c := NewClient(Options{Write: true, Retries: -1})
	rs := repos(t, reg.host, 12)
	ctx := context.Background()
	for start := time.Now(); time.Since(start) < 6*time.Second; {
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				// A new repository every half second: tokens of other scopes join.
				r := rs[min(i, int(time.Since(start)/(500*time.Millisecond)))]
				if _, err := c.HasBlob(ctx, r, digestOf([]byte{byte(i)})); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	t.Logf("%d token requests, %d requests met an expired token", c.TokenRequests(), c.ExpiredTokens())
}
