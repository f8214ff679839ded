package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/backoff"
	"github.com/nestattest/nestattest/internal/pool"
)

// Edit is a change to the manifest a tag points at, such as adding one
// signature layer or one referrer. Given the tag's current manifest (nil
// when the tag does not exist), it returns what the tag should hold, or nil
// when current already holds the change. It may be called several times
// and must not keep state between calls.
type Edit func(current *Manifest) (*Change, error)

// Change is what an Edit makes of a tag: the manifest to put, and blobs it
// may need that the repository lacks. Only the blobs the manifest finally
// put refers to are uploaded.
type Change struct {
	MediaType types.MediaType
	Raw       []byte
	Blobs     [][]byte
	// Again, when set, is what Settle keeps and applies again in place of
	// the Edit: the same change known by descriptors, without the bytes
	// the update put (Settle runs once they are in the repository). A run
	// then holds a few descriptors a tag until Settle, not its payloads.
	Again Edit
}

// maxConfirmRounds bounds how often Settle re-applies the changes to one
// tag that another writer keeps replacing.
const maxConfirmRounds = 8

// UpdateTag applies edit to tag: it reads the tag, puts what edit makes of
// it, and returns whether anything was put. What the tag holds is not read
// again when this client knows it: read by ReadTag, or put by an earlier
// update. Updates of one tag are serialised within a Client, and the ones
// that arrive while an update is under way are applied together in the
// next write: the cost does not grow with how many updates a tag gets.
// Registries take no conditional writes, so the update is remembered and
// confirmed by Settle, which reads every tag afresh.
func (c *Client) UpdateTag(ctx context.Context, tag name.Tag, edit Edit) (changed bool, err error) {
	q := c.tagQueue(tag)
	p := &pending{edit: edit, done: make(chan struct{})}
	q.mu.Lock()
	q.waiting = append(q.waiting, p)
	lead := !q.running
	q.running = true
	q.mu.Unlock()
	if lead {
		c.drain(ctx, tag, q)
	}
	<-p.done
	if p.err == nil && p.changed {
		if p.again != nil {
			edit = p.again
		}
		c.remember(tag, edit)
	}
	return p.changed, p.err
}

type queue struct {
	mu      sync.Mutex
	waiting []*pending
	running bool
}

type pending struct {
	edit    Edit
	done    chan struct{}
	changed bool
	again   Edit // the change's Again
	err     error
}

func (c *Client) tagQueue(tag name.Tag) *queue {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queues == nil {
		c.queues = map[string]*queue{}
	}
	q, ok := c.queues[tag.Name()]
	if !ok {
		q = &queue{}
		c.queues[tag.Name()] = q
	}
	return q
}

// drain applies the waiting updates of a tag, batch after batch, until none
// is left.
func (c *Client) drain(ctx context.Context, tag name.Tag, q *queue) {
	for {
		q.mu.Lock()
		batch := q.waiting
		q.waiting = nil
		if len(batch) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		edits := make([]Edit, len(batch))
		for i, p := range batch {
			edits[i] = p.edit
		}
		changed, again, err := c.apply(ctx, tag, edits, false)
		for i, p := range batch {
			p.changed, p.again, p.err = changed[i], again[i], err
			close(p.done)
		}
	}
}

// apply reads tag once (or, unless fresh, starts from what the client
// knows it holds), applies every edit in turn and puts the result once.
// changed says which edits changed the tag, again their changes' Again.
func (c *Client) apply(ctx context.Context, tag name.Tag, edits []Edit, fresh bool) (changed []bool, again []Edit, err error) {
	defer c.timeApply(time.Now())
	changed, again = make([]bool, len(edits)), make([]Edit, len(edits))
	cur, known, _ := c.knownTagContent(tag)
	if fresh || !known {
		if cur, err = c.readTag(ctx, tag); err != nil {
			return changed, again, err
		}
	}
	var last *Change
	var blobs [][]byte
	for i, edit := range edits {
		ch, err := edit(cur)
		if err != nil {
			return make([]bool, len(edits)), again, err
		}
		if ch == nil {
			continue
		}
		changed[i], again[i], last = true, ch.Again, ch
		blobs = append(blobs, ch.Blobs...)
		cur = &Manifest{Raw: ch.Raw, MediaType: ch.MediaType, Digest: digestOf(ch.Raw)}
	}
	if last == nil {
		return changed, again, nil
	}
	if err := c.uploadNeeded(ctx, tag.Context(), last.Raw, blobs); err != nil {
		return make([]bool, len(edits)), again, err
	}
	if _, err := c.PutManifest(ctx, tag, last.MediaType, last.Raw); err != nil {
		c.wrote(ctx, tag, nil)
		return make([]bool, len(edits)), again, err
	}
	c.wrote(ctx, tag, cur)
	return changed, again, nil
}

// uploadNeeded uploads the blobs that the manifest raw refers to, each once
// a repository for the client's life (UploadOnce), all at once.
func (c *Client) uploadNeeded(ctx context.Context, repo name.Repository, raw []byte, blobs [][]byte) error {
	var m struct {
		Config *v1.Descriptor  `json:"config"`
		Layers []v1.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	refs := map[v1.Hash]bool{}
	if m.Config != nil {
		refs[m.Config.Digest] = true
	}
	for _, l := range m.Layers {
		refs[l.Digest] = true
	}
	var needed [][]byte
	for _, b := range blobs {
		d := digestOf(b)
		if !refs[d] {
			continue
		}
		delete(refs, d) // once
		needed = append(needed, b)
	}
	_, err := c.UploadAllOnce(ctx, repo, needed...)
	return err
}

func (c *Client) remember(tag name.Tag, edit Edit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.updates == nil {
		c.updates = map[string]*updated{}
	}
	u, ok := c.updates[tag.Name()]
	if !ok {
		u = &updated{tag: tag}
		c.updates[tag.Name()] = u
	}
	u.edits = append(u.edits, edit)
	u.last = time.Now()
}

type updated struct {
	tag   name.Tag
	edits []Edit
	last  time.Time // when this client last wrote the tag
}

// timeApply records how long the longest read-edit-write took.
func (c *Client) timeApply(start time.Time) {
	d := int64(time.Since(start))
	for {
		cur := c.longestApply.Load()
		if d <= cur || c.longestApply.CompareAndSwap(cur, d) {
			return
		}
	}
}

// minSettle is the shortest SettleDelay.
const minSettle = 50 * time.Millisecond

// SettleDelay is how long Settle should wait: twice the longest read,
// edit and write of a tag this client made, at least 50ms. A writer that
// read a tag before this client wrote it has written it by then, unless it
// is much slower than this client.
func (c *Client) SettleDelay() time.Duration {
	return max(2*time.Duration(c.longestApply.Load()), minSettle)
}

// Settle confirms every tag update this client made: delay after the
// client last wrote the tag, so that a writer that read it just before
// has written it, it reads each tag again and applies anew the changes
// another writer overwrote, reading again until the tag holds them all.
// The tags written first are confirmed first: a run's early tags are read
// while its last ones wait. It returns how many changes had been lost and
// were put again.
func (c *Client) Settle(ctx context.Context, delay time.Duration) (lost int, err error) {
	c.mu.Lock()
	updates := c.updates
	c.updates = nil
	c.mu.Unlock()
	if len(updates) == 0 {
		return 0, nil
	}
	var (
		mu   sync.Mutex
		errs []error
	)
	tags := slices.SortedFunc(maps.Values(updates), func(a, b *updated) int { return a.last.Compare(b.last) })
	// As many tags at once as requests may wait for a host: a goroutine a
	// tag would hold a stack and a request apiece for every tag of the run.
	pool.ForEach(len(tags), c.opts.jobs(), func(i int) {
		if backoff.Sleep(ctx, time.Until(tags[i].last.Add(delay))) != nil {
			return // interrupted: ctx's error is Settle's
		}
		n, err := c.confirm(ctx, tags[i])
		mu.Lock()
		defer mu.Unlock()
		lost += n
		if err != nil {
			errs = append(errs, err)
		}
	})
	if err := ctx.Err(); err != nil {
		return lost, err
	}
	return lost, errors.Join(errs...)
}

// confirm re-applies a tag's remembered edits until a read shows them all.
func (c *Client) confirm(ctx context.Context, u *updated) (int, error) {
	lost := 0
	for round := 0; round < maxConfirmRounds; round++ {
		changed, _, err := c.apply(ctx, u.tag, u.edits, true)
		if err != nil {
			return lost, fmt.Errorf("confirm %s: %w", u.tag, err)
		}
		n := 0
		for _, ch := range changed {
			if ch {
				n++
			}
		}
		if n == 0 {
			return lost, nil
		}
		if round == 0 {
			lost = n
		}
	}
	return lost, fmt.Errorf("confirm %s: another writer replaced the tag %d times in a row", u.tag, maxConfirmRounds)
}
