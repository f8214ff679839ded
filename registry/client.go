package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nestattest/nestattest/internal/backoff"
)

// Client is the one way nestattest talks to registries: manifests, blobs,
// uploads, mounts, referrers, tags and _catalog pages. It holds one
// authenticated transport per repository (and per set of scopes for
// cross-repository mounts and listings), created on first use and shared
// by every request of a run, so tokens are fetched once; and one limit on
// the requests each host answers at once. It is safe for concurrent use.
type Client struct {
	opts Options
	base http.RoundTripper

	mu              sync.Mutex
	transports      map[string]*entry
	pending         map[string][]string      // per registry host: scopes wanted before its transport exists
	queues          map[string]*queue        // per tag: updates waiting to be applied
	updates         map[string]*updated      // per tag: updates made, for Settle
	known           map[string]*knownTag     // per tag: what it holds, as last read or put
	knownOrder      []string                 // the tags known, oldest first
	tagWrites       uint64                   // tag writes made, for known
	referrers       map[string]apiState      // per registry: does it serve the referrers API
	referrersAsking map[string]chan struct{} // per registry: closed once the first caller has asked
	twoStep         sync.Map                 // registries that open an upload on a POST with the blob (202): Upload does not send it twice
	noMount         sync.Map                 // registries that open an upload on a mount (202) or refuse it: UploadFrom uploads there
	putBlobs        sync.Map                 // repository@digest → *flight: UploadOnce puts a blob once a repository
	blobHomes       sync.Map                 // registry@digest → *flight: the repository a blob went up to first, to mount it from

	longestApply atomic.Int64 // the longest read-edit-write of a tag, in nanoseconds
}

type entry struct {
	once sync.Once
	done atomic.Bool
	rt   *authTransport
	err  error
}

// ready is the transport once it has been made, else nil.
func (e *entry) ready() *authTransport {
	if !e.done.Load() {
		return nil
	}
	return e.rt
}

// NewClient returns a Client for these options.
func NewClient(opts Options) *Client {
	return &Client{opts: opts, base: opts.base(), transports: map[string]*entry{}, pending: map[string][]string{}}
}

// Options returns the options the client was made with.
func (c *Client) Options() Options { return c.opts }

// scope is the token scope a repository's requests ask for: pull, or pull
// and push for a client that writes, so one token serves both.
func (c *Client) scope(repo name.Repository) string {
	if c.opts.Write {
		return "repository:" + repo.RepositoryStr() + ":pull,push"
	}
	return "repository:" + repo.RepositoryStr() + ":pull"
}

// transport returns the authenticated transport for repo's registry.
func (c *Client) transport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	return c.registryTransport(ctx, repo.Registry)
}

// registryTransport returns the one authenticated transport of a
// registry, created on first use: it pings the registry, and for a token
// registry asks for each request's scopes as it goes.
func (c *Client) registryTransport(ctx context.Context, reg name.Registry) (http.RoundTripper, error) {
	k := reg.Name()
	c.mu.Lock()
	e, ok := c.transports[k]
	if !ok {
		e = &entry{}
		c.transports[k] = e
	}
	c.mu.Unlock()
	// The ping of the first use is the client's, not counted against
	// whoever happened to make it.
	e.once.Do(func() {
		e.rt, e.err = c.dial(withoutCounters(ctx), reg)
		e.done.Store(true)
	})
	if e.err != nil {
		c.mu.Lock()
		if c.transports[k] == e {
			delete(c.transports, k) // let a later call try again
		}
		c.mu.Unlock()
		return nil, e.err
	}
	return e.rt, nil
}

func (c *Client) dial(ctx context.Context, reg name.Registry) (*authTransport, error) {
	auth, err := authn.Resolve(ctx, c.opts.keychain(), reg)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	c.opts.Secrets.addAuth(auth)
	base := c.base
	if c.opts.UserAgent != "" {
		base = transport.NewUserAgent(base, c.opts.UserAgent)
	}
	at, err := newAuthTransport(ctx, reg, auth, base)
	if at != nil {
		at.write = c.opts.Write
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", reg.RegistryStr(), hint(classify(err)))
	}
	c.mu.Lock()
	pending := c.pending[reg.RegistryStr()]
	delete(c.pending, reg.RegistryStr())
	c.mu.Unlock()
	at.want(pending...)
	return at, nil
}

// httpClient is an http.Client over rt that follows redirects only within
// the registry's host, so a registry cannot point an API request at
// another host.
func httpClient(rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: rt, CheckRedirect: sameHost}
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
		return fmt.Errorf("%w: %s redirected to another host (%s)", ErrRedirect, RedactURLs(via[0].URL.String()), req.URL.Host)
	}
	return nil
}

// request is one API request of a Client.
type request struct {
	method string
	url    string
	accept string
	ctype  string
	body   []byte
	want   []int
}

// do sends r with repo's transport and returns the response when its
// status is one of r.want; the caller closes the body.
func (c *Client) do(ctx context.Context, repo name.Repository, r request) (*http.Response, error) {
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return nil, err
	}
	return send(ctx, httpClient(rt), r)
}

func send(ctx context.Context, hc *http.Client, r request) (*http.Response, error) {
	var body io.Reader
	if r.body != nil {
		body = strings.NewReader(string(r.body))
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, err
	}
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, hint(err)
	}
	if err := checkStatus(resp, r.want...); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %w", r.method, RedactURLs(redactQuery(r.url)), err)
	}
	return resp, nil
}

// read sends a GET or HEAD and reads the answer's body, at most limit
// bytes; a body that breaks off is fetched again like any failed request,
// within the client's retries.
func (c *Client) read(ctx context.Context, repo name.Repository, r request, limit int64) ([]byte, *http.Response, error) {
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	return readRetrying(ctx, httpClient(rt), r, limit, c.opts.retries(), c.opts.backoff())
}

func readRetrying(ctx context.Context, hc *http.Client, r request, limit int64, retries int, first time.Duration) ([]byte, *http.Response, error) {
	wait := backoff.Backoff{First: first}
	for attempt := 0; ; attempt++ {
		resp, err := send(ctx, hc, r)
		if err != nil {
			return nil, nil, err
		}
		body, err := readBody(resp, limit)
		if err == nil || errors.Is(err, ErrTooLarge) || attempt >= retries || ctx.Err() != nil {
			return body, resp, err
		}
		if err := wait.Wait(ctx); err != nil {
			return nil, nil, err
		}
	}
}

// readBody reads and closes a response body of at most limit bytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: the registry announced %d bytes, the limit is %d", ErrTooLarge, resp.ContentLength, limit)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer to %s %s: %w", resp.Request.Method, RedactURLs(resp.Request.URL.Redacted()), err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// redactQuery leaves a URL's query out of messages: upload locations carry
// opaque state, and the digest is named elsewhere.
func redactQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.RawQuery = ""
	return u.String()
}
