package registry

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Defaults of Options, used for zero fields.
const (
	// DefaultRetries is how many times a failed request is retried.
	DefaultRetries = 4
	// DefaultBackoff is the first wait before a retry; each further retry
	// doubles it, and a Retry-After header overrides it.
	DefaultBackoff = 250 * time.Millisecond
	// DefaultJobs is how many requests wait for one registry host's answer
	// at once.
	DefaultJobs = 8
)

// Options says how to reach registries. The zero value uses the docker
// config keychain, HTTPS (plain HTTP for loopback hosts, as
// go-containerregistry does), DefaultRetries and DefaultJobs.
type Options struct {
	// Keychain resolves credentials; nil means authn.DefaultKeychain, which
	// reads $DOCKER_CONFIG/config.json and its credential helpers.
	Keychain authn.Keychain
	// Insecure allows plain HTTP and skips TLS verification for every
	// registry, like cosign's --allow-insecure-registry.
	Insecure bool
	// Write asks for push access to every repository the client touches,
	// so a run that writes fetches one token per repository for reads and
	// writes alike.
	Write bool
	// Retries is how many times a request that failed with a connection
	// error, 408, 429 or 5xx, or whose answer broke off, is retried;
	// negative disables retries.
	Retries int
	// Backoff is the first retry wait.
	Backoff time.Duration
	// Jobs is how many requests may wait for one host's answer at once,
	// whoever makes them; DefaultJobs when zero.
	Jobs int
	// Base is the transport under the limit, retries and authentication;
	// nil means a clone of http.DefaultTransport.
	Base http.RoundTripper
	// UserAgent is sent with every request.
	UserAgent string
	// Secrets receives the credentials the client resolves, so output can
	// be redacted; nil keeps none.
	Secrets *Secrets
}

// NameOptions returns the options for parsing references under these
// options: name.Insecure when Insecure is set.
func (o Options) NameOptions() []name.Option {
	if o.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// ParseReference parses a tag or digest reference under these options.
func (o Options) ParseReference(s string) (name.Reference, error) {
	return name.ParseReference(s, o.NameOptions()...)
}

func (o Options) keychain() authn.Keychain {
	if o.Keychain == nil {
		return authn.DefaultKeychain
	}
	return o.Keychain
}

func (o Options) retries() int {
	switch {
	case o.Retries < 0:
		return 0
	case o.Retries == 0:
		return DefaultRetries
	}
	return o.Retries
}

func (o Options) backoff() time.Duration {
	if o.Backoff <= 0 {
		return DefaultBackoff
	}
	return o.Backoff
}

func (o Options) jobs() int {
	if o.Jobs <= 0 {
		return DefaultJobs
	}
	return o.Jobs
}

// base returns the transport every authenticated transport is built on:
// retries over the per-host limit over the configured base (or a tuned
// clone of http.DefaultTransport).
func (o Options) base() http.RoundTripper {
	b := o.Base
	if b == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(32, o.jobs())
		if o.Insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --allow-insecure-registry
		}
		b = t
	}
	return &retryTransport{inner: newLimitTransport(b, o.jobs()), retries: o.retries(), backoff: o.backoff()}
}
