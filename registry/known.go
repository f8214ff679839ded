package registry

import (
	"context"
	"errors"

	"github.com/google/go-containerregistry/pkg/name"
)

// maxKnownTags bounds how many tags a Client remembers the content of:
// enough for every tag a run of 1,000 nodes reads before it writes
// (--statements tree surveys the whole tree first), a few MiB at most.
const maxKnownTags = 4096

// knownTag is what a Client last saw a tag hold: what it read, or what it
// put there. gen is the client's count of tag writes when the entry was
// made or the tag last written by it, so that a read that began before
// one of its writes is not taken for what the tag holds.
type knownTag struct {
	gen   uint64
	valid bool
	m     *Manifest    // nil: the tag does not exist
	run   *tagListings // the listings of the run that read or put it, if any
}

// ReadTag reads what tag points at, nil when it does not exist, and
// remembers it: the next UpdateTag of the tag by this client starts from
// it instead of reading the tag again. Within a run, what a tag held when
// a store listed it, or what this client put there, is known without
// another request; a writer outside the run that changed it since is
// caught by Settle, which always reads afresh. Under WithTagListings, a
// tag the repository's listing does not name, and this client never
// wrote, is missing without a request of its own, and a tag read or put
// under the same listings (in the same run) is not read again.
func (c *Client) ReadTag(ctx context.Context, tag name.Tag) (*Manifest, error) {
	if ls := listings(ctx); ls != nil {
		if m, ok, run := c.knownTagContent(tag); ok && run == ls {
			return m, nil
		}
	}
	return c.readTag(ctx, tag)
}

// readTag is ReadTag without what the client knows: it reads the tag (or,
// under WithTagListings, finds it missing from the listing) and remembers
// what it found.
func (c *Client) readTag(ctx context.Context, tag name.Tag) (*Manifest, error) {
	gen := c.beginRead(tag)
	if c.listedAbsent(ctx, tag) {
		c.endRead(ctx, tag, gen, nil)
		return nil, nil
	}
	m, err := c.GetManifest(ctx, tag, MaxManifestBytes)
	if errors.Is(err, ErrNotFound) {
		m, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.endRead(ctx, tag, gen, m)
	return m, nil
}

// beginRead notes a read of tag starting: it returns the count of this
// client's writes of the tag so far.
func (c *Client) beginRead(tag name.Tag) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.knownLocked(tag).gen
}

// endRead remembers what a read of tag under ctx found, unless this
// client wrote the tag since the read began (or forgot it, being full).
func (c *Client) endRead(ctx context.Context, tag name.Tag, gen uint64, m *Manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.known[tag.Name()]
	if ok && k.gen == gen {
		k.valid, k.m, k.run = true, m, listings(ctx)
	}
}

// wrote remembers what this client put at tag under ctx, or, when the
// put failed (m nil), that what the tag holds is not known.
func (c *Client) wrote(ctx context.Context, tag name.Tag, m *Manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.knownLocked(tag)
	c.tagWrites++
	k.gen = c.tagWrites
	k.valid, k.m, k.run = m != nil, m, listings(ctx)
}

// knownTagContent is what tag is known to hold, and the listings of the
// run that learnt it (nil outside one).
func (c *Client) knownTagContent(tag name.Tag) (m *Manifest, ok bool, run *tagListings) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, found := c.known[tag.Name()]
	if !found || !k.valid {
		return nil, false, nil
	}
	return k.m, true, k.run
}

// knownLocked returns tag's entry, made when missing; the oldest entry is
// dropped when the client knows maxKnownTags tags. c.mu is held.
func (c *Client) knownLocked(tag name.Tag) *knownTag {
	if c.known == nil {
		c.known = map[string]*knownTag{}
	}
	k, ok := c.known[tag.Name()]
	if ok {
		return k
	}
	if len(c.knownOrder) == maxKnownTags {
		delete(c.known, c.knownOrder[0])
		c.knownOrder = c.knownOrder[1:]
	}
	k = &knownTag{gen: c.tagWrites}
	c.known[tag.Name()] = k
	c.knownOrder = append(c.knownOrder, tag.Name())
	return k
}
