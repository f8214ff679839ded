package trust

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tuf"
	"github.com/sigstore/sigstore-go/pkg/util"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// DefaultMirror is the public-good sigstore instance's TUF repository,
// whose root.json is embedded in sigstore-go.
const DefaultMirror = tuf.DefaultMirror

// The targets a sigstore TUF repository serves, by the names sigstore's
// clients ask for.
const (
	// TrustedRootTarget is the trusted root: certificate authorities,
	// transparency logs, CT logs and timestamp authorities.
	TrustedRootTarget = "trusted_root.json"
	// SigningConfigTarget is the signing config v0.2: the Fulcio, Rekor and
	// timestamp authority to sign with.
	SigningConfigTarget = "signing_config.v0.2.json"
)

// DefaultTimeout bounds each request to the mirror.
const DefaultTimeout = 30 * time.Second

// Errors of OpenTUF, for errors.Is.
var (
	// ErrUnreachable: the mirror could not be read and nothing usable is
	// cached for it.
	ErrUnreachable = errors.New("sigstore TUF repository unreachable")
	// ErrNoRoot: a mirror other than DefaultMirror was given no root.json
	// to start from and none is cached for it.
	ErrNoRoot = errors.New("no TUF root for the mirror")
)

// DefaultCacheDir is where OpenTUF keeps the metadata and targets it read:
// nestattest/tuf in the user's cache directory ($XDG_CACHE_HOME, else
// ~/.cache, on Linux; ~/Library/Caches on macOS), one directory per mirror
// inside it. It is empty, and nothing is cached, when the user has no
// cache directory.
func DefaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "nestattest", "tuf")
}

// TUFOptions say which TUF repository to read and where to cache it.
type TUFOptions struct {
	// Mirror is the repository's base URL; DefaultMirror when empty.
	Mirror string
	// Root is the root.json to start from, as `cosign initialize --root`
	// takes it. When nil: the embedded public-good root for DefaultMirror,
	// else the root an earlier run cached for Mirror.
	Root []byte
	// CacheDir holds the metadata and targets read, one directory per
	// mirror; nothing is cached when empty (every run must then reach the
	// mirror). DefaultCacheDir is the usual value.
	CacheDir string
	// Timeout bounds each request to the mirror; DefaultTimeout when zero.
	Timeout time.Duration
}

// Repository is a TUF repository whose metadata was verified, from the
// mirror or, when the mirror could not be read, from the cache.
type Repository struct {
	// Mirror is the repository's base URL.
	Mirror string
	// CacheDir is the directory this mirror's metadata is cached in; empty
	// when nothing is cached.
	CacheDir string
	// Offline is why the mirror could not be read when the metadata came
	// from the cache; nil when it came from the mirror.
	Offline error
	// Expires is when the cached metadata expires, when it came from the
	// cache.
	Expires time.Time

	client *tuf.Client
}

// OpenTUF refreshes the repository's metadata from its mirror, verifying
// it from the root it trusts, and caches it; when the mirror cannot be
// read it falls back to the cached metadata while that is unexpired. With
// neither, it fails with ErrUnreachable, naming the URL and the cache.
func OpenTUF(opts TUFOptions) (*Repository, error) {
	if opts.Mirror == "" {
		opts.Mirror = DefaultMirror
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	r := &Repository{Mirror: opts.Mirror}
	if opts.CacheDir != "" && os.MkdirAll(opts.CacheDir, 0o700) == nil {
		r.CacheDir = filepath.Join(opts.CacheDir, tuf.URLToPath(opts.Mirror))
	}
	anchor, err := r.anchor(opts.Root)
	if err != nil {
		return nil, err
	}
	// One attempt per file, as sigstore-go's default fetcher makes: TUF
	// reads an absent next root version (404) on every refresh.
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPClient(&http.Client{Timeout: opts.Timeout})
	f.SetHTTPUserAgent(util.ConstructUserAgent())
	to := &tuf.Options{
		Root: anchor, RepositoryBaseURL: opts.Mirror, CachePath: opts.CacheDir,
		DisableLocalCache: r.CacheDir == "", Fetcher: f,
	}
	online := *to
	if r.client, err = tuf.New(&online); err == nil {
		return r, nil
	}
	r.Offline = err
	if r.CacheDir == "" {
		return nil, r.unreachable("and nothing is cached")
	}
	cached := *to
	cached.ForceCache = true
	if r.client, err = tuf.New(&cached); err == nil {
		r.Expires = cachedExpiry(r.CacheDir)
		return r, nil
	}
	if exp := cachedExpiry(r.CacheDir); !exp.IsZero() {
		return nil, r.unreachable(fmt.Sprintf("and the copy cached in %s expired at %s", r.CacheDir, exp.UTC().Format(time.RFC3339)))
	}
	return nil, r.unreachable("and nothing usable is cached in " + r.CacheDir)
}

// anchor is the root.json to start from: the one given, the public-good
// root for DefaultMirror, or the root cached for a private mirror, as
// cosign reads it after `cosign initialize --mirror --root`.
func (r *Repository) anchor(given []byte) ([]byte, error) {
	switch {
	case given != nil:
		return given, nil
	case r.Mirror == DefaultMirror:
		return tuf.DefaultRoot(), nil
	case r.CacheDir != "":
		if b, err := os.ReadFile(filepath.Join(r.CacheDir, "root.json")); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: the TUF repository at %s is not sigstore's public-good one, and no root.json of it is cached: give the root.json it was initialized with", ErrNoRoot, r.Mirror)
}

func (r *Repository) unreachable(cache string) error {
	return fmt.Errorf("%w: %s could not be read (%v) %s", ErrUnreachable, r.Mirror, r.Offline, cache)
}

// cachedExpiry is the earliest expiry of the cached timestamp, snapshot and
// targets metadata in dir; zero when none is there.
func cachedExpiry(dir string) time.Time {
	var first time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	if m, err := metadata.Timestamp().FromFile(filepath.Join(dir, metadata.TIMESTAMP+".json")); err == nil {
		earliest(m.Signed.Expires)
	}
	if m, err := metadata.Snapshot().FromFile(filepath.Join(dir, metadata.SNAPSHOT+".json")); err == nil {
		earliest(m.Signed.Expires)
	}
	if m, err := metadata.Targets().FromFile(filepath.Join(dir, metadata.TARGETS+".json")); err == nil {
		earliest(m.Signed.Expires)
	}
	return first
}

// TrustedRoot is the repository's trusted_root.json.
func (r *Repository) TrustedRoot() (*root.TrustedRoot, error) {
	b, err := r.client.GetTarget(TrustedRootTarget)
	if err != nil {
		return nil, fmt.Errorf("TUF repository %s: %w", r.Mirror, err)
	}
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("TUF repository %s: %s: %w", r.Mirror, TrustedRootTarget, err)
	}
	return tr, nil
}

// SigningConfig is the repository's signing_config.v0.2.json; nil, and no
// error, when the repository serves none (older private deployments).
func (r *Repository) SigningConfig() (*root.SigningConfig, error) {
	b, err := r.client.GetTarget(SigningConfigTarget)
	// go-tuf says so only in words: "target NAME not found".
	if err != nil && strings.Contains(err.Error(), "target "+SigningConfigTarget+" not found") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("TUF repository %s: %w", r.Mirror, err)
	}
	sc, err := root.NewSigningConfigFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("TUF repository %s: %s: %w", r.Mirror, SigningConfigTarget, err)
	}
	return sc, nil
}
