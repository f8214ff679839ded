package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// builder may push and pull under org/ko-build and list the catalog;
// reader may only pull there.
func tokenUsers() map[string]TokenUser {
	return map[string]TokenUser{
		"builder": {Password: "builder-pass", ACL: ACL{
			AllowRepositories("org/ko-build/**", "pull", "push"),
			AllowCatalog(),
		}},
		"reader": {Password: "reader-pass", ACL: ACL{AllowRepositories("org/ko-build/**", "pull")}},
	}
}

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want tokenScope
		ok   bool
	}{
		{"repository:org/app:pull,push", tokenScope{"repository", "org/app", []string{"pull", "push"}}, true},
		{"registry:catalog:*", tokenScope{"registry", "catalog", []string{"*"}}, true},
		{"repository:host:5000/app:pull", tokenScope{"repository", "host:5000/app", []string{"pull"}}, true},
		{"repository:org/app", tokenScope{}, false},
		{"repository:org/app:", tokenScope{}, false},
		{":org/app:pull", tokenScope{}, false},
		{"repository", tokenScope{}, false},
	} {
		got, err := parseScope(tc.in)
		if (err == nil) != tc.ok || got.String() != tc.want.String() {
			t.Errorf("parseScope(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// getToken asks s for a token as user (anonymous when empty).
func getToken(t testing.TB, s *TokenServer, user, password string, scopes ...string) (int, tokenResponse) {
	t.Helper()
	q := url.Values{"service": {s.Service}, "scope": scopes}
	req, err := http.NewRequest(http.MethodGet, s.Realm+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, tr
}

// decodeToken checks the token's ES256 signature with the server's
// certificate and returns its header and claims.
func decodeToken(t testing.TB, s *TokenServer, token string) (tokenHeader, tokenClaims) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", token)
	}
	enc := base64.RawURLEncoding
	var h tokenHeader
	var c tokenClaims
	for i, v := range []any{&h, &c} {
		b, err := enc.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, v) != nil {
			t.Fatalf("token part %d %q: %v", i, parts[i], err)
		}
	}
	sig, err := enc.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	pub := s.cert.PublicKey.(*ecdsa.PublicKey)
	r, sv := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if err != nil || len(sig) != 64 || !ecdsa.Verify(pub, digest[:], r, sv) {
		t.Fatalf("token signature does not verify: %v", err)
	}
	return h, c
}

// TestTokenServerGrants: the intersection of what is asked and what the
// ACL allows, the rest dropped; wrong credentials refused; anonymous
// requests granted nothing until configured; changes apply at once.
func TestTokenServerGrants(t *testing.T) {
	s := NewTokenServer(t, TokenOptions{Users: tokenUsers(), Lifetime: 90 * time.Second})
	for _, tc := range []struct {
		name, user, password string
		scopes               []string
		status               int
		granted              []string
	}{
		{"push allowed", "builder", "builder-pass", []string{"repository:org/ko-build/app1:pull,push"}, 200,
			[]string{"repository:org/ko-build/app1:pull,push"}},
		{"parent repository", "builder", "builder-pass", []string{"repository:org/ko-build:push"}, 200,
			[]string{"repository:org/ko-build:push"}},
		{"outside the prefix", "builder", "builder-pass", []string{"repository:org/ko-buildx/app:pull,push", "repository:org/other:pull"}, 200, nil},
		{"delete dropped", "builder", "builder-pass", []string{"repository:org/ko-build/app1:pull,delete"}, 200,
			[]string{"repository:org/ko-build/app1:pull"}},
		{"several scopes in one parameter", "builder", "builder-pass", []string{"repository:org/ko-build/a:push,pull repository:org/ko-build/b:pull"}, 200,
			[]string{"repository:org/ko-build/a:push,pull", "repository:org/ko-build/b:pull"}},
		{"catalog", "builder", "builder-pass", []string{"registry:catalog:*"}, 200, []string{"registry:catalog:*"}},
		{"reader pushes", "reader", "reader-pass", []string{"repository:org/ko-build/app1:pull,push", "registry:catalog:*"}, 200,
			[]string{"repository:org/ko-build/app1:pull"}},
		{"anonymous", "", "", []string{"repository:org/ko-build/app1:pull"}, 200, nil},
		{"wrong password", "builder", "nope", []string{"repository:org/ko-build/app1:pull"}, 401, nil},
		{"unknown user", "mallory", "x", nil, 401, nil},
		{"malformed scope", "builder", "builder-pass", []string{"repository:org"}, 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			status, tr := getToken(t, s, tc.user, tc.password, tc.scopes...)
			reqs := s.TokenRequests()
			if status != tc.status || len(reqs) != 1 || reqs[0].Status != status || reqs[0].User != tc.user ||
				!slices.Equal(reqs[0].Scopes, tc.scopes) || !slices.Equal(reqs[0].Granted, tc.granted) {
				t.Fatalf("status %d, recorded %v; want %d granting %q", status, reqs, tc.status, tc.granted)
			}
			if status != http.StatusOK {
				return
			}
			if tr.Token == "" || tr.AccessToken != tr.Token || tr.ExpiresIn != 90 || tr.IssuedAt == "" {
				t.Errorf("answer %+v", tr)
			}
			h, c := decodeToken(t, s, tr.Token)
			if h.Alg != "ES256" || h.Kid != "" || len(h.X5c) != 1 || h.X5c[0] != base64.StdEncoding.EncodeToString(s.cert.Raw) {
				t.Errorf("header %+v", h)
			}
			var got []string
			for _, a := range c.Access {
				got = append(got, tokenScope{a.Type, a.Name, a.Actions}.String())
			}
			if c.Issuer != TokenIssuer || c.Audience != TokenService || c.Subject != tc.user || !slices.Equal(got, tc.granted) ||
				c.Expiration != c.IssuedAt+30 || c.NotBefore != c.IssuedAt || c.JWTID == "" {
				t.Errorf("claims %+v, want access %q, exp 30s after iat", c, tc.granted)
			}
		})
	}

	t.Run("changes", func(t *testing.T) {
		s.SetUser("reader", TokenUser{Password: "new-pass", ACL: ACL{AllowRepositories("org/other", "pull")}})
		s.SetAnonymous(ACL{AllowRepositories("**", "pull")})
		s.RemoveUser("builder")
		s.Reset()
		getToken(t, s, "reader", "reader-pass")
		getToken(t, s, "reader", "new-pass", "repository:org/other:pull,push", "repository:org/ko-build/app1:pull")
		getToken(t, s, "", "", "repository:org/any/thing:pull,push")
		getToken(t, s, "builder", "builder-pass")
		var got []string
		for _, r := range s.TokenRequests() {
			got = append(got, strings.SplitN(r.String(), " ", 2)[1])
		}
		want := []string{
			`401 user=reader scopes=[] granted=[]`,
			`200 user=reader scopes=["repository:org/other:pull,push" "repository:org/ko-build/app1:pull"] granted=["repository:org/other:pull"]`,
			`200 user=(anonymous) scopes=["repository:org/any/thing:pull,push"] granted=["repository:org/any/thing:pull"]`,
			`401 user=builder scopes=[] granted=[]`,
		}
		if !slices.Equal(got, want) {
			t.Errorf("log\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("key id", func(t *testing.T) {
		k := NewTokenServer(t, TokenOptions{KeyID: true})
		_, tr := getToken(t, k, "", "")
		if h, _ := decodeToken(t, k, tr.Token); h.Kid != jwkThumbprint(&k.key.PublicKey) || h.X5c != nil {
			t.Errorf("header %+v, want only a kid", h)
		}
	})
}

// TestTokenDistribution: distribution v3.1.2 with auth: token verifies the
// server's tokens and enforces their access claims, and refuses a token
// once its lifetime has passed, after which clients fetch another.
func TestTokenDistribution(t *testing.T) {
	const lifetime = 3 * time.Second
	s := NewTokenServer(t, TokenOptions{Users: tokenUsers(), Lifetime: lifetime})
	reg := Distribution(t, DistributionOptions{Tokens: s})
	builder := remote.WithAuth(&authn.Basic{Username: "builder", Password: "builder-pass"})
	reader := remote.WithAuth(&authn.Basic{Username: "reader", Password: "reader-pass"})
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, opt remote.Option) error { return remote.Write(ref(t, reg.Ref(path)), img, opt) }

	if err := write("org/ko-build/app1:v1", builder); err != nil {
		t.Fatalf("push allowed by the ACL: %v", err)
	}
	for _, tc := range []struct {
		path string
		opt  remote.Option
	}{
		{"org/other:v1", builder},
		{"org/ko-build/app2:v1", reader},
		{"org/ko-build/app2:v1", remote.WithAuth(authn.Anonymous)},
	} {
		if terr := transportError(t, write(tc.path, tc.opt)); terr.StatusCode != http.StatusUnauthorized {
			t.Errorf("push to %s: %v, want 401", tc.path, terr)
		}
	}
	if _, err := remote.Head(ref(t, reg.Ref("org/ko-build/app1:v1")), reader); err != nil {
		t.Errorf("pull allowed by the ACL: %v", err)
	}

	registry, err := name.NewRegistry(reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(context.Background(), registry, builder)
	if err != nil || !slices.Equal(repos, []string{"org/ko-build/app1"}) {
		t.Errorf("catalog: %q, %v; want [org/ko-build/app1]", repos, err)
	}
	_, err = remote.Catalog(context.Background(), registry, reader)
	if terr := transportError(t, err); terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("catalog without the grant: %v, want 401", terr)
	}

	// The realm names localhost, so a client may reach the registry
	// through a Proxy: go-containerregistry refuses a realm on another
	// loopback host:port than the registry's.
	p := NewProxy(t, reg.Host, ProxyOptions{})
	if err := remote.Write(ref(t, p.Host+"/org/ko-build/app3:v1"), img, builder); err != nil || p.Counts().ByKind["manifest PUT"] != 1 {
		t.Errorf("push through a proxy: %v, counts %+v", err, p.Counts())
	}

	t.Run("expiry", func(t *testing.T) { testTokenExpiry(t, s, reg, lifetime) })
	t.Run("changes", func(t *testing.T) { testTokenChanges(t, s, reg) })
}

// testTokenExpiry: a token is refused once its lifetime has passed, and a
// client that holds one fetches another and goes on.
func testTokenExpiry(t *testing.T, s *TokenServer, reg *Registry, lifetime time.Duration) {
	_, tr := getToken(t, s, "reader", "reader-pass", "repository:org/ko-build/app1:pull")
	head := func() *http.Response {
		req, _ := http.NewRequest(http.MethodHead, "http://"+reg.Host+"/v2/org/ko-build/app1/manifests/v1", nil)
		req.Header.Set("Authorization", "Bearer "+tr.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := head(); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh token: %s", resp.Status)
	}

	puller, err := remote.NewPuller(remote.WithAuth(&authn.Basic{Username: "reader", Password: "reader-pass"}))
	if err != nil {
		t.Fatal(err)
	}
	app1 := ref(t, reg.Ref("org/ko-build/app1:v1"))
	s.Reset()
	for range 2 {
		if _, err := puller.Head(context.Background(), app1); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.TokenRequests()); n != 1 {
		t.Errorf("%d token requests for two HEADs with one puller, want 1", n)
	}

	time.Sleep(lifetime + 1500*time.Millisecond)
	resp := head()
	if challenge := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) {
		t.Errorf("expired token: %s %q, want 401 invalid_token", resp.Status, challenge)
	}
	if _, err := puller.Head(context.Background(), app1); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if n := len(s.TokenRequests()); n != 2 {
		t.Errorf("%d token requests after expiry, want 2: %v", n, s.TokenRequests())
	}
}

// testTokenChanges: a new ACL or password holds from the next token.
func testTokenChanges(t *testing.T, s *TokenServer, reg *Registry) {
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.SetUser("reader", TokenUser{Password: "rotated", ACL: ACL{AllowRepositories("org/ko-build/app9", "push", "pull")}})
	old := remote.WithAuth(&authn.Basic{Username: "reader", Password: "reader-pass"})
	if terr := transportError(t, remote.Write(ref(t, reg.Ref("org/ko-build/app9:v1")), img, old)); terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("old password: %v, want 401 from the token server", terr)
	}
	rotated := remote.WithAuth(&authn.Basic{Username: "reader", Password: "rotated"})
	if err := remote.Write(ref(t, reg.Ref("org/ko-build/app9:v1")), img, rotated); err != nil {
		t.Errorf("push granted by the new ACL: %v", err)
	}

	s.SetAnonymous(ACL{AllowRepositories("org/ko-build/**", "pull")})
	if _, err := remote.Head(ref(t, reg.Ref("org/ko-build/app9:v1"))); err != nil {
		t.Errorf("anonymous pull once allowed: %v", err)
	}
	s.SetAnonymous(nil)
}

// TestTokenCrane: crane, logged in through DOCKER_CONFIG, copies within
// the granted prefix (a cross-repository mount, two scopes in one token
// request), is refused outside it and lists the catalog.
func TestTokenCrane(t *testing.T) {
	crane := Tool(t, "crane")
	s := NewTokenServer(t, TokenOptions{Users: tokenUsers()})
	reg := Distribution(t, DistributionOptions{Tokens: s})
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	builder := remote.WithAuth(&authn.Basic{Username: "builder", Password: "builder-pass"})
	if err := remote.Write(ref(t, reg.Ref("org/ko-build/app1:v1")), img, builder); err != nil {
		t.Fatal(err)
	}
	env := []string{"DOCKER_CONFIG=" + s.DockerConfig(t, reg.Host, "builder")}
	cfg, _ := os.ReadFile(filepath.Join(strings.TrimPrefix(env[0], "DOCKER_CONFIG="), "config.json"))
	t.Logf("DOCKER_CONFIG config.json:\n%s", cfg)

	s.Reset()
	if r := RunEnv(t, env, crane, "copy", reg.Ref("org/ko-build/app1:v1"), reg.Ref("org/ko-build/app2:v1")); r.Code != 0 {
		t.Fatalf("crane copy within the prefix: %d\n%s", r.Code, r.Stderr)
	}
	mounted := slices.ContainsFunc(s.TokenRequests(), func(r TokenRequest) bool {
		return slices.Equal(r.Granted, []string{"repository:org/ko-build/app2:push,pull", "repository:org/ko-build/app1:pull"})
	})
	if !mounted {
		t.Errorf("no token for app2 (push) and app1 (pull) in one request:\n%s", s.log())
	}
	r := RunEnv(t, env, crane, "copy", reg.Ref("org/ko-build/app1:v1"), reg.Ref("org/other:v1"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "401 Unauthorized") {
		t.Errorf("crane copy outside the prefix: %d\n%s\nwant a failure with 401 Unauthorized", r.Code, r.Stderr)
	}
	t.Logf("refused copy: %s", strings.TrimSpace(r.Stderr))
	r = RunEnv(t, env, crane, "catalog", reg.Host)
	if r.Code != 0 || r.Stdout != "org/ko-build/app1\norg/ko-build/app2\n" {
		t.Errorf("crane catalog: %d %q\n%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("token requests:\n%s", s.log())
}
