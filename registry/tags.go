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
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/internal/pool"
)

// Tag listings: a run that writes what it finds missing (sign) reads each
// repository's tags/list once, so that the tags it would read only to find
// them missing (every .sig, .att and referrers tag of an unsigned tree)
// cost nothing: one listing a repository instead of one 404 a tag. Within
// such a run a tag is read once: what it held, or what the run put there,
// is known; and so is what the referrers API answered for a subject until
// the run puts referrers of it. (A node's SBOMs and its bundles are both
// found among its referrers: one read serves both.) What the listing and
// the reads say is as old as the run. That is safe where a missing tag is
// written (sign), since Settle confirms every write. A verification (each
// call of trees.Verify, with listings of its own) tells what the registry
// held during the run: a signature written after the listing was read is
// not seen, as one written after its tag was read would not be. A read
// outside such a run (waiting for a builder's provenance, polling) reads
// the tag, whatever an earlier listing said.

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

// tagListings are the listings read under one context, and the referrers
// API's answers.
type tagListings struct {
	mu        sync.Mutex
	m         map[string]*tagListing
	referrers map[string]*referrersAnswer // per repository@subject
}

// referrersAnswer is what the referrers API last said of a subject under
// one context. gen counts the puts of referrers of the subject, so that an
// answer asked for before one of them is not kept.
type referrersAnswer struct {
	gen   uint64
	valid bool
	descs []v1.Descriptor
}

// WithTagListings returns a context under which ReadTag takes a tag that
// this client never wrote, and that its repository's listing (read once
// under this context) does not name, for missing, without reading it;
// under which a tag this client read or put is not read again; and under
// which the referrers API is asked about a subject once, until this
// client puts referrers of it. For a run that writes what it finds
// missing, whose writes Settle confirms; each call starts listings of its
// own.
func WithTagListings(ctx context.Context) context.Context {
	return context.WithValue(ctx, listingsKey{}, &tagListings{m: map[string]*tagListing{}, referrers: map[string]*referrersAnswer{}})
}

func listings(ctx context.Context) *tagListings {
	ls, _ := ctx.Value(listingsKey{}).(*tagListings)
	return ls
}

// referrersKey names a subject's referrers in a repository.
func referrersKey(repo name.Repository, subject v1.Hash) string {
	return repo.Name() + "@" + subject.String()
}

// answer returns the referrers API's answer about key under ctx's
// listings, if it is known, and the count of puts to compare when
// remembering a new one. Without listings, nothing is known.
func (ls *tagListings) answer(key string) (descs []v1.Descriptor, known bool, gen uint64) {
	if ls == nil {
		return nil, false, 0
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	a := ls.referrers[key]
	if a == nil {
		return nil, false, 0
	}
	return a.descs, a.valid, a.gen
}

// remember keeps the referrers API's answer about key, unless referrers
// of it were put since the question (gen).
func (ls *tagListings) remember(key string, gen uint64, descs []v1.Descriptor) {
	if ls == nil {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if a := ls.entry(key); a.gen == gen {
		a.valid, a.descs = true, descs
	}
}

// forget drops what is known of key's referrers: they are being put.
func (ls *tagListings) forget(key string) {
	if ls == nil {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	a := ls.entry(key)
	a.gen++
	a.valid, a.descs = false, nil
}

// entry is key's answer, made when missing; ls.mu is held.
func (ls *tagListings) entry(key string) *referrersAnswer {
	a := ls.referrers[key]
	if a == nil {
		a = &referrersAnswer{}
		ls.referrers[key] = a
	}
	return a
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
	ls := listings(ctx)
	if ls == nil {
		return false
	}
	c.mu.Lock()
	_, written := c.queues[tag.Name()]
	c.mu.Unlock()
	if written {
		return false
	}
	l := c.listing(ctx, ls, tag.Context())
	return l.ok && !l.tags[tag.TagStr()]
}

// ReadListings reads the tag listings of repos under ctx's listings
// (WithTagListings), as many at once as the client's jobs, each once
// however often it is asked for: a run that starts with them does not
// wait for them one repository after another as its nodes reach each.
// Without listings it does nothing.
func (c *Client) ReadListings(ctx context.Context, repos ...name.Repository) {
	ls := listings(ctx)
	if ls == nil {
		return
	}
	pool.ForEach(len(repos), c.opts.jobs(), func(i int) { c.listing(ctx, ls, repos[i]) })
}

// listing is repo's listing under ls, read on first use.
func (c *Client) listing(ctx context.Context, ls *tagListings, repo name.Repository) *tagListing {
	ls.mu.Lock()
	l, ok := ls.m[repo.Name()]
	if !ok {
		l = &tagListing{}
		ls.m[repo.Name()] = l
	}
	ls.mu.Unlock()
	l.once.Do(func() { l.tags, l.ok = c.listTags(ctx, repo) })
	return l
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
