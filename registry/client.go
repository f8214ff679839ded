package registry

import (
	"context"
	"fmt"
	"net/http"
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
	k := key{repo: repo.Name(), access: access}
	c.mu.Lock()
	e, ok := c.transports[k]
	if !ok {
		e = &entry{}
		c.transports[k] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.rt, e.err = c.newTransport(ctx, repo, access) })
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
	auth, err := authn.Resolve(ctx, c.opts.keychain(), repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	scopes := []string{repo.Scope(transport.PullScope)}
	if access == Push {
		scopes = []string{repo.Scope(transport.PushScope)}
	}
	var base http.RoundTripper = c.base
	if c.opts.UserAgent != "" {
		base = transport.NewUserAgent(base, c.opts.UserAgent)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, scopes)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", repo.RegistryStr(), err)
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
