package registry

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// maxScopes is how many scopes one token request asks for: the tokens of a
// nested tree cover its repositories fifty at a time, in URLs of a few
// kilobytes.
const maxScopes = 50

// authTransport authenticates every request to one registry the way the
// registry's /v2/ challenge asks: none, HTTP Basic, or the Docker token
// protocol. With tokens, it asks for the scopes each request needs (from
// its path, method and mount source), together with every scope the client
// was told it will need (Want), up to maxScopes a token; reuses a token for
// every request it covers; renews it before it expires, early enough for
// the latency it measures; renews it once when the registry refuses it,
// however many requests meet the refusal; and remembers an access the
// registry refuses with a token asked for after the request left, so the
// refusal is reported, not retried. A request that left with a token that
// expired on the way (a renewal in flight, latency) is sent again with a
// fresh token, not taken for a refusal.
type authTransport struct {
	reg       name.Registry
	write     bool // reads ask for push too
	auth      authn.Authenticator
	inner     http.RoundTripper
	challenge *transport.Challenge
	basic     http.RoundTripper // for Basic challenges

	mu      sync.Mutex
	tokens  []*token
	wanted  []string                // scopes announced, not yet asked for
	denied  map[string]*DeniedError // scopes a fresh token did not get
	fetch   sync.Mutex              // one token request at a time
	fetched int                     // token requests made
	expired int                     // requests refused with a token, then served with a fresh one
	latency time.Duration           // a moving average of the registry's answer time, to reads
}

type token struct {
	value   string
	scopes  map[string]bool
	asked   time.Time // when the token was asked for: the server issued it later
	expires time.Time
	renewAt time.Time
}

// newAuthTransport pings the registry for its challenge.
func newAuthTransport(ctx context.Context, reg name.Registry, auth authn.Authenticator, inner http.RoundTripper) (*authTransport, error) {
	ch, err := transport.Ping(ctx, reg, inner)
	if err != nil {
		return nil, err
	}
	t := &authTransport{reg: reg, auth: auth, inner: inner, challenge: ch, denied: map[string]*DeniedError{}}
	if ch.Scheme != "" && !strings.EqualFold(ch.Scheme, "bearer") {
		if t.basic, err = transport.FromToken(reg, auth, inner, ch, &transport.Token{}); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *authTransport) bearer() bool { return strings.EqualFold(t.challenge.Scheme, "bearer") }

// want announces scopes requests will soon need, so the next token covers
// them too.
func (t *authTransport) want(scopes ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range scopes {
		if !slices.Contains(t.wanted, s) && !t.coveredLocked(s, time.Time{}) {
			t.wanted = append(t.wanted, s)
		}
	}
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case t.basic != nil:
		return t.basic.RoundTrip(req)
	case !t.bearer():
		return t.inner.RoundTrip(req)
	}
	need := t.scopesFor(req)
	if err := t.refused(need); err != nil {
		closeBody(req)
		return nil, err
	}
	tok, err := t.token(req.Context(), need, nil, time.Time{})
	if err != nil {
		closeBody(req)
		return nil, err
	}
	left := time.Now()
	resp, err := t.send(req, tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// Refused. The token may have expired on the way (a renewal in flight,
	// latency, an expiry counted in whole seconds): the refusal counts only
	// if a token asked for after this request left is refused too. Others
	// that met the refusal share that token.
	drain(resp)
	fresh, err := t.token(req.Context(), need, tok, left)
	if err != nil {
		return nil, err
	}
	if resp, err = t.send(req, fresh); err != nil || resp.StatusCode != http.StatusUnauthorized {
		if err == nil {
			t.mu.Lock()
			t.expired++
			t.mu.Unlock()
		}
		return resp, err
	}
	drain(resp)
	return nil, t.deny(req, need, fresh)
}

// send sends req with tok, rewinding its body, and measures how long a read
// takes to be answered.
func (t *authTransport) send(req *http.Request, tok *token) (*http.Response, error) {
	r := req.Clone(req.Context())
	if req.Body != nil && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = body
	}
	r.Header.Set("Authorization", "Bearer "+tok.value)
	start := time.Now()
	resp, err := t.inner.RoundTrip(r)
	if err == nil && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
		t.measure(time.Since(start))
	}
	return resp, err
}

// measure folds one answer time into the latency average (an eighth each).
func (t *authTransport) measure(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.latency == 0 {
		t.latency = d
		return
	}
	t.latency += (d - t.latency) / 8
}

// token returns a token that covers need and is not about to expire. stale,
// when the registry refused it, is dropped; with after set, the token must
// have been asked for after that time (after the refused request left):
// one another request renewed meanwhile, or a new one.
func (t *authTransport) token(ctx context.Context, need []string, stale *token, after time.Time) (*token, error) {
	t.mu.Lock()
	if stale != nil {
		t.drop(stale)
	}
	if tok := t.covering(need, time.Now(), after); tok != nil {
		t.mu.Unlock()
		return tok, nil
	}
	t.mu.Unlock()

	t.fetch.Lock()
	defer t.fetch.Unlock()
	t.mu.Lock()
	if tok := t.covering(need, time.Now(), after); tok != nil { // another request got one meanwhile
		t.mu.Unlock()
		return tok, nil
	}
	scopes := t.batch(need)
	latency := t.latency
	t.mu.Unlock()

	asked := time.Now()
	got, err := transport.Exchange(withoutCounters(ctx), t.reg, t.auth, t.inner, scopes, t.challenge)
	if err != nil {
		return nil, fmt.Errorf("token for %s from %s: %w", strings.Join(scopes, " "), t.reg.RegistryStr(), classify(err))
	}
	tok := newToken(got, scopes, asked, max(latency, time.Since(asked)))
	t.mu.Lock()
	t.fetched++
	t.tokens = append(t.tokens, tok)
	t.wanted = slices.DeleteFunc(t.wanted, func(s string) bool { return tok.scopes[s] })
	t.mu.Unlock()
	return tok, nil
}

// batch is what the next token asks for: what the request needs, what was
// announced, and what the tokens about to be replaced covered, up to
// maxScopes.
func (t *authTransport) batch(need []string) []string {
	scopes := append([]string(nil), need...)
	add := func(s string) {
		if len(scopes) < maxScopes && !slices.Contains(scopes, s) && t.denied[s] == nil {
			scopes = append(scopes, s)
		}
	}
	for _, s := range t.wanted {
		add(s)
	}
	for _, tok := range t.tokens {
		for s := range tok.scopes {
			add(s)
		}
	}
	return scopes
}

// covering is a live token whose scopes include every scope of need, asked
// for after after (when set).
func (t *authTransport) covering(need []string, now, after time.Time) *token {
	for _, tok := range t.tokens {
		if now.Before(tok.renewAt) && tok.asked.After(after) && covers(tok, need) {
			return tok
		}
	}
	return nil
}

func (t *authTransport) coveredLocked(scope string, now time.Time) bool {
	for _, tok := range t.tokens {
		if (now.IsZero() || now.Before(tok.renewAt)) && covers(tok, []string{scope}) {
			return true
		}
	}
	return false
}

func covers(tok *token, need []string) bool {
	for _, s := range need {
		if !tok.scopes[s] && !(strings.HasSuffix(s, ":pull") && tok.scopes[s+",push"]) {
			return false
		}
	}
	return true
}

// drop forgets a token the registry refused.
func (t *authTransport) drop(stale *token) {
	t.tokens = slices.DeleteFunc(t.tokens, func(tok *token) bool { return tok == stale })
}

// refused fails a request whose access a fresh token was refused before,
// with the error of the request that met the refusal.
func (t *authTransport) refused(need []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range need {
		if d := t.denied[s]; d != nil {
			return d
		}
	}
	return nil
}

// Tokens is how many token requests the transport made.
func (t *authTransport) Tokens() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fetched
}

// ExpiredTokens is how many requests met a token that had expired on the
// way and were sent again with a fresh one.
func (t *authTransport) ExpiredTokens() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expired
}

// renewBefore is how long before a token expires it is renewed: a tenth of
// its life (at most ten seconds), as much again (at most a second) for an
// expiry the server counts in whole seconds (a JWT's exp claim), and twice
// the latency measured, for the request to reach the registry; at most half
// its life.
func renewBefore(life, latency time.Duration) time.Duration {
	return min(min(life/10, 10*time.Second)+min(life/10, time.Second)+2*latency, life/2)
}

// newToken is the token got for scopes, asked for at asked: it lives from
// then, since the server issued it later.
func newToken(got *transport.Token, scopes []string, asked time.Time, latency time.Duration) *token {
	life := time.Duration(got.ExpiresIn) * time.Second
	if life <= 0 {
		life = 60 * time.Second // the token specification's default
	}
	tok := &token{value: got.Token, scopes: map[string]bool{}, asked: asked, expires: asked.Add(life), renewAt: asked.Add(life - renewBefore(life, latency))}
	if tok.value == "" {
		tok.value = got.AccessToken
	}
	for _, s := range scopes {
		tok.scopes[s] = true
	}
	return tok
}

// scopesFor are the token scopes a request needs: pull to read a
// repository, pull and push to write it (and to read it, for a client that
// writes: one token for both), pull on the source of a cross-repository
// mount, the catalog scope to list repositories.
func (t *authTransport) scopesFor(req *http.Request) []string {
	path := strings.TrimPrefix(req.URL.Path, "/v2/")
	if path == "_catalog" {
		return []string{CatalogScope}
	}
	repo := repositoryOf(path)
	if repo == "" {
		return nil
	}
	action := "pull"
	if t.write || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		action = "pull,push"
	}
	scopes := []string{"repository:" + repo + ":" + action}
	if from := req.URL.Query().Get("from"); from != "" && req.URL.Query().Get("mount") != "" {
		scopes = append(scopes, "repository:"+from+":pull")
	}
	return scopes
}

// repositoryOf reads the repository of an API path
// (<repo>/manifests/…, /blobs/…, /tags/list, /referrers/…).
func repositoryOf(path string) string {
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(path, sep); i > 0 {
			return path[:i]
		}
	}
	return ""
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// WantRepositories tells the client which repositories the coming requests
// will touch, so their tokens are asked for together (Docker token
// registries), fifty to a request.
func (c *Client) WantRepositories(repos ...name.Repository) {
	byHost := map[string][]string{}
	hosts := map[string]name.Registry{}
	for _, r := range repos {
		byHost[r.RegistryStr()] = append(byHost[r.RegistryStr()], c.scope(r))
		hosts[r.RegistryStr()] = r.Registry
	}
	for host, scopes := range byHost {
		if at := c.existing(hosts[host]); at != nil {
			at.want(scopes...)
			continue
		}
		c.mu.Lock()
		c.pending[host] = append(c.pending[host], scopes...)
		c.mu.Unlock()
	}
}

// TokenRequests is how many token requests the client made, to every
// registry.
func (c *Client) TokenRequests() int {
	return c.sumTransports((*authTransport).Tokens)
}

// ExpiredTokens is how many requests, to every registry, met a token that
// had expired on the way (a short-lived token, a renewal in flight, a
// distant registry) and were sent again with a fresh one.
func (c *Client) ExpiredTokens() int {
	return c.sumTransports((*authTransport).ExpiredTokens)
}

// sumTransports adds up n over the transports made.
func (c *Client) sumTransports(n func(*authTransport) int) int {
	c.mu.Lock()
	entries := make([]*entry, 0, len(c.transports))
	for _, e := range c.transports {
		entries = append(entries, e)
	}
	c.mu.Unlock()
	sum := 0
	for _, e := range entries {
		if at := e.ready(); at != nil {
			sum += n(at)
		}
	}
	return sum
}

// existing is reg's transport when it has been made.
func (c *Client) existing(reg name.Registry) *authTransport {
	c.mu.Lock()
	e := c.transports[reg.Name()]
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.ready()
}
