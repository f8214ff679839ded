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

// Tag listings: before reading a tag it has never written, a Client asks
// the repository's tags/list once, so that the tags a run would read only
// to find them missing (every .sig, .att and referrers tag of an unsigned
// tree) cost nothing: one listing a repository instead of one 404 a tag.

const (
	// tagPageSize is the n of each tags/list page asked for.
	tagPageSize = 1000
	// maxTagPages bounds the pages a listing reads: the tags of a
	// repository holding more are read one by one.
	maxTagPages = 10
	// maxTagListBytes bounds one page.
	maxTagListBytes = 4 << 20
)

// tagListing is what a repository's tags/list said, read once per client.
type tagListing struct {
	once sync.Once
	tags map[string]bool
	ok   bool // false: the listing failed or was too long; read tags one by one
}

// listedAbsent reports whether tag is known to be missing: this client never
// wrote it, and the repository's listing, read once, does not name it.
func (c *Client) listedAbsent(ctx context.Context, tag name.Tag) bool {
	c.mu.Lock()
	_, written := c.queues[tag.Name()]
	if c.listings == nil {
		c.listings = map[string]*tagListing{}
	}
	l, ok := c.listings[tag.Context().Name()]
	if !ok {
		l = &tagListing{}
		c.listings[tag.Context().Name()] = l
	}
	c.mu.Unlock()
	if written {
		return false
	}
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
		link := nextLink(resp.Header.Values("Link"))
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

// nextLink is the target of a Link header's rel="next" value, "" when none.
func nextLink(values []string) string {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			target, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
				return strings.Trim(strings.TrimSpace(target), "<>")
			}
		}
	}
	return ""
}
