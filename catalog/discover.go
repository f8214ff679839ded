package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nestattest/nestattest/registry"
)

// Defaults of DiscoverOptions, used for zero fields.
const (
	// DefaultPageSize is the n asked of _catalog per page; distribution
	// serves at most 1000 by default.
	DefaultPageSize = 100
	// DefaultMaxPages is how many _catalog pages are read before giving up.
	DefaultMaxPages = 10_000
	// DefaultMaxEntries is how many repository names, under the parent or
	// not, are read before giving up.
	DefaultMaxEntries = 1_000_000
)

// maxPageBytes bounds one _catalog response body.
const maxPageBytes = 8 << 20

// DiscoverOptions bound a _catalog listing.
type DiscoverOptions struct {
	// PageSize is the n of each request; DefaultPageSize when zero.
	PageSize int
	// MaxPages is how many pages are read at most; DefaultMaxPages when zero.
	MaxPages int
	// MaxEntries is how many names are read at most; DefaultMaxEntries when
	// zero.
	MaxEntries int
}

func (o DiscoverOptions) withDefaults() DiscoverOptions {
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.MaxPages <= 0 {
		o.MaxPages = DefaultMaxPages
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o
}

// Listing is what Discover found.
type Listing struct {
	// Paths are the repositories below the parent, relative to it, sorted.
	Paths []string `json:"paths"`
	// Pages and Entries count the pages and names read.
	Pages   int `json:"pages"`
	Entries int `json:"entries"`
}

// Discover lists the repositories strictly below parent with the registry's
// GET /v2/_catalog, following the Link header page by page (n and last). It
// stops with ErrListing when a page's Link leaves the registry's _catalog
// endpoint or does not advance, and with ErrTooMany past the bounds, so a
// hostile registry cannot keep it reading.
func Discover(ctx context.Context, c *registry.Client, parent name.Repository, opts DiscoverOptions) (*Listing, error) {
	opts = opts.withDefaults()
	l := &lister{client: c, parent: parent, opts: opts, found: map[string]bool{}, seen: map[string]bool{}}
	next, err := url.Parse(fmt.Sprintf("%s://%s/v2/_catalog?n=%d", parent.Scheme(), parent.RegistryStr(), opts.PageSize))
	if err != nil {
		return nil, err
	}
	for next != nil {
		if next, err = l.page(ctx, next); err != nil {
			return nil, err
		}
	}
	return l.listing(), nil
}

type lister struct {
	client *registry.Client
	parent name.Repository
	opts   DiscoverOptions
	found  map[string]bool
	seen   map[string]bool // URLs requested
	last   string          // the last parameter of the latest page
	pages  int
	total  int
}

// page reads one page and returns the URL of the next, nil after the last.
func (l *lister) page(ctx context.Context, u *url.URL) (*url.URL, error) {
	if l.pages == l.opts.MaxPages {
		return nil, fmt.Errorf("%w: _catalog still has more after %d pages (%d names)", ErrTooMany, l.pages, l.total)
	}
	l.pages++
	l.seen[u.String()] = true
	names, link, err := l.get(ctx, u)
	for err != nil && tooManyAsked(err) && l.opts.PageSize > 1 {
		l.opts.PageSize /= 2 // the registry serves fewer a page (distribution: catalog.maxentries)
		u = withPageSize(u, l.opts.PageSize)
		names, link, err = l.get(ctx, u)
	}
	if err != nil {
		return nil, err
	}
	if err := l.add(names); err != nil {
		return nil, err
	}
	if link == "" {
		return nil, nil
	}
	return l.follow(u, link)
}

func (l *lister) get(ctx context.Context, u *url.URL) ([]string, string, error) {
	p, err := l.client.CatalogPage(ctx, l.parent.Registry, u, maxPageBytes)
	if errors.Is(err, registry.ErrTooLarge) {
		return nil, "", fmt.Errorf("%w: a page of _catalog is over %d bytes", ErrListing, maxPageBytes)
	}
	if err != nil {
		return nil, "", fmt.Errorf("list repositories: %w", err)
	}
	names, err := decodePage(p.Body)
	if err != nil {
		return nil, "", fmt.Errorf("%w: page %d: %v", ErrListing, l.pages, err)
	}
	link, err := nextLink(strings.Join(p.Links, ", "))
	return names, link, err
}

// decodePage reads the repository names of one _catalog page.
func decodePage(body []byte) ([]string, error) {
	var page struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, err
	}
	return page.Repositories, nil
}

// add keeps the names below the parent.
func (l *lister) add(names []string) error {
	l.total += len(names)
	if l.total > l.opts.MaxEntries {
		return fmt.Errorf("%w: _catalog lists more than %d names", ErrTooMany, l.opts.MaxEntries)
	}
	prefix := l.parent.RepositoryStr() + "/"
	for _, n := range names {
		path, below := strings.CutPrefix(n, prefix)
		if !below || l.found[path] {
			continue
		}
		if _, err := childRepository(l.parent, path); err != nil {
			return fmt.Errorf("_catalog lists %q: %w", n, err)
		}
		if len(l.found) == MaxChildren {
			return fmt.Errorf("%w: more than %d repositories below %s", ErrTooMany, MaxChildren, l.parent.Name())
		}
		l.found[path] = true
	}
	return nil
}

// follow resolves a Link target against the page's URL. It must stay on the
// registry's _catalog endpoint and move on: a URL already read, or a last
// that does not grow, ends the listing with ErrListing.
func (l *lister) follow(u *url.URL, link string) (*url.URL, error) {
	ref, err := url.Parse(link)
	if err != nil {
		return nil, fmt.Errorf("%w: Link target %q: %v", ErrListing, clip(link), err)
	}
	next := u.ResolveReference(ref)
	if next.Scheme != u.Scheme || next.Host != u.Host || next.Path != "/v2/_catalog" || next.User != nil {
		return nil, fmt.Errorf("%w: Link %q leaves %s://%s/v2/_catalog", ErrListing, clip(link), u.Scheme, u.Host)
	}
	if next.Query().Get("n") == "" {
		next = withPageSize(next, l.opts.PageSize)
	}
	if l.seen[next.String()] {
		return nil, fmt.Errorf("%w: page %d links back to %s", ErrListing, l.pages, registry.RedactURLs(next.String()))
	}
	last := next.Query().Get("last")
	if last != "" && l.last != "" && last <= l.last {
		return nil, fmt.Errorf("%w: page %d's Link does not advance (last=%q after last=%q)", ErrListing, l.pages, clip(last), clip(l.last))
	}
	if last != "" {
		l.last = last
	}
	return next, nil
}

// withPageSize returns u asking for n names.
func withPageSize(u *url.URL, n int) *url.URL {
	c := *u
	q := c.Query()
	q.Set("n", strconv.Itoa(n))
	c.RawQuery = q.Encode()
	return &c
}

// tooManyAsked reports distribution's refusal of an n over its
// catalog.maxentries: 400 PAGINATION_NUMBER_INVALID.
func tooManyAsked(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusBadRequest {
		return false
	}
	for _, d := range terr.Errors {
		if d.Code == "PAGINATION_NUMBER_INVALID" {
			return true
		}
	}
	return false
}

func (l *lister) listing() *Listing {
	out := &Listing{Pages: l.pages, Entries: l.total}
	for p := range l.found {
		out.Paths = append(out.Paths, p)
	}
	sort.Strings(out.Paths)
	return out
}
