package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
)

// Tag listings: a run that writes what it finds missing (sign) reads each
// repository's tags/list once, so that the tags it would read only to find
// them missing (every .sig, .att and referrers tag of an unsigned tree)
// cost nothing: one listing a repository instead of one 404 a tag. What
// the listing says is as old as the run: that is safe where a missing tag
// is written, since Settle confirms every write; a read that decides a
// verdict (verify, waiting for a builder's provenance) reads the tag.

const (
	// tagPageSize is the n of each tags/list page asked for.
	tagPageSize = 1000
	// maxTagPages bounds the pages a listing reads: the tags of a
	// repository holding more are read one by one.
	maxTagPages = 10
	// maxTagListBytes bounds one page.
	maxTagListBytes = 4 << 20
)

type listingsKey struct{}

// tagListings are the listings read under one context.
type tagListings struct {
	mu sync.Mutex
	m  map[string]*tagListing
}

// WithTagListings returns a context under which ReadTag takes a tag that
// this client never wrote, and that its repository's listing (read once
// under this context) does not name, for missing, without reading it.
// For a run that writes what it finds missing, whose writes Settle
// confirms; each call starts listings of its own.
func WithTagListings(ctx context.Context) context.Context {
	return context.WithValue(ctx, listingsKey{}, &tagListings{m: map[string]*tagListing{}})
}

// tagListing is what a repository's tags/list said, read once.
type tagListing struct {
	once sync.Once
	tags map[string]bool
	ok   bool // false: the listing failed or was too long; read tags one by one
}

// listedAbsent reports whether tag is known to be missing: ctx carries
// listings (WithTagListings), this client never wrote the tag, and the
// repository's listing does not name it.
func (c *Client) listedAbsent(ctx context.Context, tag name.Tag) bool {
	ls, _ := ctx.Value(listingsKey{}).(*tagListings)
	if ls == nil {
		return false
	}
	c.mu.Lock()
	_, written := c.queues[tag.Name()]
	c.mu.Unlock()
	if written {
		return false
	}
	ls.mu.Lock()
	l, ok := ls.m[tag.Context().Name()]
	if !ok {
		l = &tagListing{}
		ls.m[tag.Context().Name()] = l
	}
	ls.mu.Unlock()
	l.once.Do(func() { l.tags, l.ok = c.listTags(ctx, tag.Context()) })
	return l.ok && !l.tags[tag.TagStr()]
}

// listTags reads repo's tags/list, page by page, up to maxTagPages. A
// repository the registry does not know has no tags. Any failure gives
// ok false: the caller then reads each tag.
func (c *Client) listTags(ctx context.Context, repo name.Repository) (tags map[string]bool, ok bool) {
	tags = map[string]bool{}
	next := URL(repo) + "/tags/list?n=" + strconv.Itoa(tagPageSize)
	for page := 0; page < maxTagPages; page++ {
		body, resp, err := c.read(ctx, repo, request{method: http.MethodGet, url: next, want: []int{http.StatusOK}}, maxTagListBytes)
		if errors.Is(err, ErrNotFound) {
			return tags, true
		}
		if err != nil {
			return nil, false
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, false
		}
		for _, t := range list.Tags {
			tags[t] = true
		}
		link, err := NextLink(strings.Join(resp.Header.Values("Link"), ", "))
		if err != nil {
			return nil, false
		}
		if link == "" {
			return tags, true
		}
		u, err := url.Parse(next)
		if err != nil {
			return nil, false
		}
		lu, err := u.Parse(link)
		if err != nil {
			return nil, false
		}
		next = lu.String()
	}
	return nil, false
}
