package trust_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/trust"
)

// A trusted root with no authorities and a signing config with no
// services: what the tests read back is only which version they are.
const (
	emptyRoot   = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`
	emptyConfig = `{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json","caUrls":[{"url":"https://fulcio.VERSION.example","majorApiVersion":1,"validFor":{"start":"2020-01-01T00:00:00Z"},"operator":"test"}]}`
)

func targets(version string) map[string][]byte {
	return map[string][]byte{
		harness.TUFTrustedRoot:   []byte(emptyRoot),
		harness.TUFSigningConfig: []byte(strings.ReplaceAll(emptyConfig, "VERSION", version)),
	}
}

func rootOf(t *testing.T, repo *harness.TUFRepository) []byte {
	t.Helper()
	b, err := os.ReadFile(repo.RootPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fulcioOf is the Fulcio URL the repository's signing config names.
func fulcioOf(t *testing.T, r *trust.Repository) string {
	t.Helper()
	if _, err := r.TrustedRoot(); err != nil {
		t.Fatalf("trusted root: %v", err)
	}
	sc, err := r.SigningConfig()
	if err != nil || sc == nil {
		t.Fatalf("signing config: %v, %v", sc, err)
	}
	return sc.FulcioCertificateAuthorityURLs()[0].URL
}

// TestOpenTUF: read from the mirror; a new version published is read on
// the next open; with the mirror stopped, the cached copy is used until it
// expires, and then the error names the mirror, the cache and the expiry.
func TestOpenTUF(t *testing.T) {
	expires := time.Now().Add(time.Hour)
	repo := harness.StartTUF(t, targets("v1"), expires)
	opts := trust.TUFOptions{Mirror: repo.URL, Root: rootOf(t, repo), CacheDir: t.TempDir()}

	r, err := trust.OpenTUF(opts)
	if err != nil || r.Offline != nil {
		t.Fatalf("online: %v, offline %v", err, r)
	}
	if got := fulcioOf(t, r); got != "https://fulcio.v1.example" {
		t.Errorf("Fulcio %s, want v1's", got)
	}

	repo.Publish(t, targets("v2"), expires)
	if r, err = trust.OpenTUF(opts); err != nil {
		t.Fatal(err)
	}
	if got := fulcioOf(t, r); got != "https://fulcio.v2.example" {
		t.Errorf("after publishing v2: Fulcio %s, want v2's", got)
	}

	// Without --tuf-root, a private mirror's root is the cached one.
	noRoot := opts
	noRoot.Root = nil
	if _, err = trust.OpenTUF(noRoot); err != nil {
		t.Errorf("the cached root is not used: %v", err)
	}
	noRoot.CacheDir = t.TempDir()
	if _, err = trust.OpenTUF(noRoot); !errors.Is(err, trust.ErrNoRoot) || !strings.Contains(err.Error(), repo.URL) {
		t.Errorf("no root and nothing cached: %v, want ErrNoRoot naming %s", err, repo.URL)
	}

	repo.Stop(t)
	r, err = trust.OpenTUF(opts)
	if err != nil || r.Offline == nil || !r.Expires.Equal(expires.UTC().Truncate(time.Second)) {
		t.Fatalf("mirror stopped, cache valid: %v; offline %v until %v", err, r.Offline, r.Expires)
	}
	if got := fulcioOf(t, r); got != "https://fulcio.v2.example" {
		t.Errorf("from the cache: Fulcio %s, want v2's", got)
	}

	empty := opts
	empty.CacheDir = t.TempDir()
	_, err = trust.OpenTUF(empty)
	if !errors.Is(err, trust.ErrUnreachable) || !strings.Contains(err.Error(), repo.URL) || !strings.Contains(err.Error(), "nothing usable is cached in "+empty.CacheDir) {
		t.Errorf("mirror stopped, nothing cached: %v", err)
	}

	// Expiry: publish metadata that expires in a second, read it, stop
	// the mirror and wait until it has expired.
	repo.Start(t)
	soon := time.Now().Add(2 * time.Second)
	repo.Publish(t, targets("v3"), soon)
	if _, err = trust.OpenTUF(opts); err != nil {
		t.Fatal(err)
	}
	repo.Stop(t)
	time.Sleep(time.Until(soon.Truncate(time.Second).Add(time.Second)))
	_, err = trust.OpenTUF(opts)
	if !errors.Is(err, trust.ErrUnreachable) || !strings.Contains(err.Error(), repo.URL) || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("mirror stopped, cache expired: %v", err)
	}
}

// TestOpenTUFWithoutCache: with no cache directory nothing is written, and
// an unreachable mirror is an error at once.
func TestOpenTUFWithoutCache(t *testing.T) {
	repo := harness.StartTUF(t, targets("v1"), time.Now().Add(time.Hour))
	opts := trust.TUFOptions{Mirror: repo.URL, Root: rootOf(t, repo)}
	r, err := trust.OpenTUF(opts)
	if err != nil || r.CacheDir != "" {
		t.Fatalf("%v, cache %q", err, r.CacheDir)
	}
	repo.Stop(t)
	if _, err := trust.OpenTUF(opts); !errors.Is(err, trust.ErrUnreachable) || !strings.Contains(err.Error(), "nothing is cached") {
		t.Errorf("unreachable: %v", err)
	}
}
