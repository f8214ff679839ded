package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Access is what a transport may do in its repository.
type Access int

// The two kinds of access nestattest asks for.
const (
	Pull Access = iota
	Push
)

// Client hands out authenticated transports, one per repository and access,
// created on first use and shared afterwards. It is safe for concurrent use.
type Client struct {
	opts Options
	base http.RoundTripper

	mu         sync.Mutex
	transports map[key]*entry
}

type key struct {
	repo   string
	access Access
	scopes string // for ScopedTransport: the scopes, space-separated
}

type entry struct {
	once sync.Once
	rt   http.RoundTripper
	err  error
}

// NewClient returns a Client for these options.
func NewClient(opts Options) *Client {
	return &Client{opts: opts, base: opts.base(), transports: map[key]*entry{}}
}

// Options returns the options the client was made with.
func (c *Client) Options() Options { return c.opts }

// Transport returns the authenticated transport for repo; the first call for
// a repository and access pings the registry and fetches a token, later calls
// reuse it. Push access includes pull.
func (c *Client) Transport(ctx context.Context, repo name.Repository, access Access) (http.RoundTripper, error) {
	return c.cached(ctx, key{repo: repo.Name(), access: access}, func() (http.RoundTripper, error) {
		return c.newTransport(ctx, repo, access)
	})
}

// ScopedTransport returns an authenticated transport for reg whose token
// covers every scope given: a push scope on one repository with a pull scope
// on another, for cross-repository blob mounts, or the registry's catalog
// scope ("registry:catalog:*"). Like Transport's, it is created on first use
// for that set of scopes and shared afterwards.
func (c *Client) ScopedTransport(ctx context.Context, reg name.Registry, scopes ...string) (http.RoundTripper, error) {
	k := key{repo: reg.Name(), scopes: strings.Join(scopes, " ")}
	return c.cached(ctx, k, func() (http.RoundTripper, error) { return c.dial(ctx, reg, scopes) })
}

// ScopedHTTPClient is HTTPClient over ScopedTransport.
func (c *Client) ScopedHTTPClient(ctx context.Context, reg name.Registry, scopes ...string) (*http.Client, error) {
	rt, err := c.ScopedTransport(ctx, reg, scopes...)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt, CheckRedirect: sameHost}, nil
}

// cached returns the transport for k, made by mk on first use; a failure is
// not cached.
func (c *Client) cached(ctx context.Context, k key, mk func() (http.RoundTripper, error)) (http.RoundTripper, error) {
	c.mu.Lock()
	e, ok := c.transports[k]
	if !ok {
		e = &entry{}
		c.transports[k] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.rt, e.err = mk() })
	if e.err != nil {
		c.mu.Lock()
		if c.transports[k] == e {
			delete(c.transports, k) // let a later call try again
		}
		c.mu.Unlock()
	}
	return e.rt, e.err
}

func (c *Client) newTransport(ctx context.Context, repo name.Repository, access Access) (http.RoundTripper, error) {
	scopes := []string{repo.Scope(transport.PullScope)}
	if access == Push {
		scopes = []string{repo.Scope(transport.PushScope)}
	}
	return c.dial(ctx, repo.Registry, scopes)
}

func (c *Client) dial(ctx context.Context, reg name.Registry, scopes []string) (http.RoundTripper, error) {
	auth, err := authn.Resolve(ctx, c.opts.keychain(), reg)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	secretsOf(auth)
	var base http.RoundTripper = c.base
	if c.opts.UserAgent != "" {
		base = transport.NewUserAgent(base, c.opts.UserAgent)
	}
	rt, err := transport.NewWithContext(ctx, reg, auth, base, scopes)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", reg.RegistryStr(), err)
	}
	return rt, nil
}

// HTTPClient returns an http.Client over the repository's transport that
// follows redirects only within the registry's host, so a registry cannot
// point a manifest or API request at another host.
func (c *Client) HTTPClient(ctx context.Context, repo name.Repository, access Access) (*http.Client, error) {
	rt, err := c.Transport(ctx, repo, access)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt, CheckRedirect: sameHost}, nil
}

// Remote returns go-containerregistry options that use the repository's
// shared transport.
func (c *Client) Remote(ctx context.Context, repo name.Repository, access Access) ([]remote.Option, error) {
	rt, err := c.Transport(ctx, repo, access)
	if err != nil {
		return nil, err
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt)}, nil
}

// URL returns the base URL of the registry API for repo, such as
// https://quay.io/v2/org/app.
func URL(repo name.Repository) string {
	return fmt.Sprintf("%s://%s/v2/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr())
}

func sameHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	if req.URL.Host != via[0].URL.Host {
		return fmt.Errorf("%w: %s redirected to another host (%s)", ErrRedirect, Redact(via[0].URL.String()), req.URL.Host)
	}
	return nil
}
