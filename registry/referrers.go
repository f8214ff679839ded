package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/nestattest/nestattest/internal/pool"
)

// FallbackTag is the tag that lists the referrers of subject on a registry
// without the referrers API: <repo>:sha256-<hex>, as the distribution
// specification's referrers tag schema names it.
func FallbackTag(repo name.Repository, subject v1.Hash) name.Tag {
	return repo.Tag(subject.Algorithm + "-" + subject.Hex)
}

// Referrers lists the manifests in repo whose subject is subject: from the
// registry's referrers API where it serves one, else from the fallback tag.
// The descriptors are as the registry or the tag gives them; their
// artifactType is not to be relied on (registries and cosign fill it from
// the config's media type).
func (c *Client) Referrers(ctx context.Context, repo name.Repository, subject v1.Hash) ([]v1.Descriptor, error) {
	state, release, err := c.knowReferrersAPI(ctx, repo.Registry)
	if err != nil {
		return nil, err
	}
	if state == apiMissing {
		release()
	} else {
		ls, key := listings(ctx), referrersKey(repo, subject)
		descs, known, gen := ls.answer(key)
		if known {
			release()
			return descs, nil
		}
		idx, err := c.referrersPage(ctx, repo, subject)
		release()
		if err == nil {
			ls.remember(key, gen, idx)
			return idx, nil
		}
		if err != ErrNoReferrersAPI {
			return nil, err
		}
	}
	m, err := c.ReadTag(ctx, FallbackTag(repo, subject))
	if err != nil || m == nil {
		return nil, err
	}
	im, err := parseIndex(m.Raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FallbackTag(repo, subject), err)
	}
	return im.Manifests, nil
}

// referrersPage asks the referrers API, recording whether the registry has one.
func (c *Client) referrersPage(ctx context.Context, repo name.Repository, subject v1.Hash) ([]v1.Descriptor, error) {
	raw, resp, err := c.read(ctx, repo, request{
		method: http.MethodGet, url: URL(repo) + "/referrers/" + subject.String(), accept: string(types.OCIImageIndex),
		want: []int{http.StatusOK, http.StatusNotFound, http.StatusBadRequest, http.StatusNotAcceptable, http.StatusMethodNotAllowed},
	}, MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), string(types.OCIImageIndex)) {
		c.setReferrersAPI(repo.Registry, apiMissing)
		return nil, ErrNoReferrersAPI
	}
	c.setReferrersAPI(repo.Registry, apiPresent)
	im, err := parseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s in %s: %w", subject, repo, err)
	}
	return im.Manifests, nil
}

// Referrer is a manifest whose subject is set, and its descriptor as the
// subject's referrers list it: digest, size, media type, artifact type,
// annotations.
type Referrer struct {
	Descriptor v1.Descriptor
	Raw        []byte
}

// PutReferrers puts manifests whose subject is subject into repo by digest,
// all at once, and makes them listed among subject's referrers: by the registry itself
// where it serves the referrers API, else by adding them to the fallback
// tag in one update (UpdateTag: serialised, confirmed, and kept for
// Settle).
func (c *Client) PutReferrers(ctx context.Context, repo name.Repository, subject v1.Hash, refs ...Referrer) error {
	ls, key := listings(ctx), referrersKey(repo, subject)
	ls.forget(key)
	defer ls.forget(key)
	errs := make([]error, len(refs))
	pool.ForEach(len(refs), len(refs), func(i int) {
		r := refs[i]
		_, errs[i] = c.PutManifest(ctx, repo.Digest(r.Descriptor.Digest.String()), r.Descriptor.MediaType, r.Raw)
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	state, release, err := c.knowReferrersAPI(ctx, repo.Registry)
	if err != nil {
		return err
	}
	if state == apiUnknown {
		_, err = c.referrersPage(ctx, repo, subject)
	}
	release()
	if err != nil && err != ErrNoReferrersAPI {
		return err
	}
	if c.referrersAPI(repo.Registry) == apiPresent || len(refs) == 0 {
		return nil
	}
	descs := make([]v1.Descriptor, len(refs))
	for i, r := range refs {
		descs[i] = r.Descriptor
	}
	_, err = c.UpdateTag(ctx, FallbackTag(repo, subject), addReferrers(descs))
	return err
}

// addReferrers is the Edit that lists descs in a fallback tag's index,
// sorted by digest as go-containerregistry and cosign keep it.
func addReferrers(descs []v1.Descriptor) Edit {
	return func(cur *Manifest) (*Change, error) {
		im := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
		if cur != nil {
			var err error
			if im, err = parseIndex(cur.Raw); err != nil {
				return nil, err
			}
		}
		listed := map[v1.Hash]bool{}
		for _, d := range im.Manifests {
			listed[d.Digest] = true
		}
		added := false
		for _, d := range descs {
			if !listed[d.Digest] {
				listed[d.Digest] = true
				im.Manifests = append(im.Manifests, d)
				added = true
			}
		}
		if !added {
			return nil, nil
		}
		sort.Slice(im.Manifests, func(i, j int) bool { return im.Manifests[i].Digest.String() < im.Manifests[j].Digest.String() })
		raw, err := json.Marshal(im)
		if err != nil {
			return nil, err
		}
		return &Change{MediaType: types.OCIImageIndex, Raw: raw}, nil
	}
}

func parseIndex(raw []byte) (*v1.IndexManifest, error) {
	var im v1.IndexManifest
	if err := json.Unmarshal(raw, &im); err != nil {
		return nil, fmt.Errorf("not an image index: %w", err)
	}
	if im.MediaType != "" && im.MediaType != types.OCIImageIndex {
		return nil, fmt.Errorf("a referrers list must be an OCI image index, not %s", im.MediaType)
	}
	return &im, nil
}

type apiState int

const (
	apiUnknown apiState = iota
	apiPresent
	apiMissing
)

// knowReferrersAPI returns whether reg serves the referrers API, as far
// as the client knows. While nobody has asked, the first caller gets
// apiUnknown and asks (its referrersPage records the answer) before it
// calls release; the others wait for that, so a run asks a registry
// without the API once, not once a caller that started before the answer.
func (c *Client) knowReferrersAPI(ctx context.Context, reg name.Registry) (state apiState, release func(), err error) {
	for {
		c.mu.Lock()
		if s := c.referrers[reg.Name()]; s != apiUnknown {
			c.mu.Unlock()
			return s, func() {}, nil
		}
		if c.referrersAsking == nil {
			c.referrersAsking = map[string]chan struct{}{}
		}
		wait, asking := c.referrersAsking[reg.Name()]
		if !asking {
			done := make(chan struct{})
			c.referrersAsking[reg.Name()] = done
			c.mu.Unlock()
			return apiUnknown, func() {
				c.mu.Lock()
				delete(c.referrersAsking, reg.Name())
				c.mu.Unlock()
				close(done)
			}, nil
		}
		c.mu.Unlock()
		select {
		case <-wait: // known now, or the asker failed: look again
		case <-ctx.Done():
			return apiUnknown, nil, ctx.Err()
		}
	}
}

func (c *Client) referrersAPI(reg name.Registry) apiState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.referrers[reg.Name()]
}

// ServesReferrers says whether reg has answered this client's referrers
// API: its listings are then the registry's own account of the manifests
// it holds, not a fallback tag that may name a manifest deleted since.
func (c *Client) ServesReferrers(reg name.Registry) bool {
	return c.referrersAPI(reg) == apiPresent
}

func (c *Client) setReferrersAPI(reg name.Registry, s apiState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.referrers == nil {
		c.referrers = map[string]apiState{}
	}
	c.referrers[reg.Name()] = s
}
