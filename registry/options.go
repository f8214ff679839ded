package registry

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultRetries is how many times a failed request is retried when
// Options.Retries is zero.
const DefaultRetries = 4

// DefaultBackoff is the first wait before a retry when Options.Backoff is
// zero; each further retry doubles it, and a Retry-After header overrides it.
const DefaultBackoff = 250 * time.Millisecond

// Options says how to reach registries. The zero value uses the docker
// config keychain, HTTPS (plain HTTP for loopback hosts, as
// go-containerregistry does) and DefaultRetries.
type Options struct {
	// Keychain resolves credentials; nil means authn.DefaultKeychain, which
	// reads $DOCKER_CONFIG/config.json and its credential helpers.
	Keychain authn.Keychain
	// Insecure allows plain HTTP and skips TLS verification for every
	// registry, like cosign's --allow-insecure-registry.
	Insecure bool
	// Retries is how many times a request that failed with a connection
	// error, 408, 429 or 5xx is retried; negative disables retries.
	Retries int
	// Backoff is the first retry wait.
	Backoff time.Duration
	// Base is the transport under retries and authentication; nil means a
	// clone of http.DefaultTransport.
	Base http.RoundTripper
	// UserAgent is sent with every request.
	UserAgent string
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

// ParseRepository parses a repository under these options.
func (o Options) ParseRepository(s string) (name.Repository, error) {
	return name.NewRepository(s, o.NameOptions()...)
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

// base returns the transport every authenticated transport is built on:
// the configured base (or a tuned clone of http.DefaultTransport) under
// retries.
func (o Options) base() http.RoundTripper {
	b := o.Base
	if b == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		if o.Insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --allow-insecure-registry
		}
		b = t
	}
	return &retryTransport{inner: b, retries: o.retries(), backoff: o.backoff()}
}
