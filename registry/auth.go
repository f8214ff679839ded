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
// every request it covers; renews it shortly before it expires, and once
// when the registry refuses it, however many requests meet the refusal;
// and remembers an access the registry refuses with a fresh token, so the
// refusal is reported, not retried.
type authTransport struct {
	reg       name.Registry
	write     bool // reads ask for push too
	auth      authn.Authenticator
	inner     http.RoundTripper
	challenge *transport.Challenge
	basic     http.RoundTripper // for Basic challenges

	mu      sync.Mutex
	tokens  []*token
	wanted  []string        // scopes announced, not yet asked for
	denied  map[string]bool // scopes a fresh token did not get
	fetch   sync.Mutex      // one token request at a time
	fetched int             // token requests made
}

type token struct {
	value   string
	scopes  map[string]bool
	expires time.Time
	renewAt time.Time
}

// newAuthTransport pings the registry for its challenge.
func newAuthTransport(ctx context.Context, reg name.Registry, auth authn.Authenticator, inner http.RoundTripper) (*authTransport, error) {
	ch, err := transport.Ping(ctx, reg, inner)
	if err != nil {
		return nil, err
	}
	t := &authTransport{reg: reg, auth: auth, inner: inner, challenge: ch, denied: map[string]bool{}}
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
	tok, err := t.token(req.Context(), need, nil)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.send(req, tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// Refused: renew the token once, whoever else met the refusal too.
	drain(resp)
	fresh, err := t.token(req.Context(), need, tok)
	if err != nil {
		return nil, err
	}
	if resp, err = t.send(req, fresh); err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	drain(resp)
	t.deny(need)
	return nil, t.refused(need)
}

// send sends req with tok, rewinding its body.
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
	return t.inner.RoundTrip(r)
}

// token returns a token that covers need and is not about to expire; stale,
// when the registry refused it, is renewed, unless another request renewed
// it already.
func (t *authTransport) token(ctx context.Context, need []string, stale *token) (*token, error) {
	now := time.Now()
	t.mu.Lock()
	if stale != nil {
		t.drop(stale)
	}
	if tok := t.covering(need, now); tok != nil {
		t.mu.Unlock()
		return tok, nil
	}
	t.mu.Unlock()

	t.fetch.Lock()
	defer t.fetch.Unlock()
	t.mu.Lock()
	if tok := t.covering(need, time.Now()); tok != nil { // another request got one meanwhile
		t.mu.Unlock()
		return tok, nil
	}
	scopes := t.batch(need)
	t.mu.Unlock()

	got, err := transport.Exchange(withoutCounters(ctx), t.reg, t.auth, t.inner, scopes, t.challenge)
	if err != nil {
		return nil, fmt.Errorf("token for %s from %s: %w", strings.Join(scopes, " "), t.reg.RegistryStr(), classify(err))
	}
	tok := newToken(got, scopes)
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
		if len(scopes) < maxScopes && !slices.Contains(scopes, s) && !t.denied[s] {
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

// covering is a live token whose scopes include every scope of need.
func (t *authTransport) covering(need []string, now time.Time) *token {
	for _, tok := range t.tokens {
		if now.Before(tok.renewAt) && covers(tok, need) {
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

// deny remembers that a fresh token for need was refused.
func (t *authTransport) deny(need []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range need {
		t.denied[s] = true
	}
}

// refused fails a request whose access a fresh token was refused before.
func (t *authTransport) refused(need []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range need {
		if t.denied[s] {
			return deniedError(t.reg.RegistryStr(), s)
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

// renewBefore is how long before a token expires it is renewed: a tenth of
// its life, at most ten seconds.
func renewBefore(life time.Duration) time.Duration { return min(life/10, 10*time.Second) }

func newToken(got *transport.Token, scopes []string) *token {
	life := time.Duration(got.ExpiresIn) * time.Second
	if life <= 0 {
		life = 60 * time.Second // the token specification's default
	}
	now := time.Now()
	tok := &token{value: got.Token, scopes: map[string]bool{}, expires: now.Add(life), renewAt: now.Add(life - renewBefore(life))}
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

// ScopeAccess is the access a scope names, for messages: "push to
// org/app", "read org/app", "list the repositories".
func scopeAccess(scope string) string {
	parts := strings.Split(scope, ":")
	if len(parts) != 3 || parts[0] != "repository" {
		return "list the repositories"
	}
	if strings.Contains(parts[2], "push") {
		return "push to " + parts[1]
	}
	return "read " + parts[1]
}

// DeniedError is an access the registry refused with fresh credentials:
// which, and on which registry. It matches ErrDenied.
type DeniedError struct {
	Host  string
	Scope string
}

func (e *DeniedError) Error() string {
	access := scopeAccess(e.Scope)
	return fmt.Sprintf("%s refused by the registry: the credentials for %s may not %s there", access, e.Host, strings.SplitN(access, " ", 2)[0])
}

// Is makes a DeniedError match ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// deniedError says what the registry refused.
func deniedError(host, scope string) error { return &DeniedError{Host: host, Scope: scope} }

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
	c.mu.Lock()
	entries := make([]*entry, 0, len(c.transports))
	for _, e := range c.transports {
		entries = append(entries, e)
	}
	c.mu.Unlock()
	n := 0
	for _, e := range entries {
		if at := e.ready(); at != nil {
			n += at.Tokens()
		}
	}
	return n
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
