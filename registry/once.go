package registry

import (
	"context"
	"errors"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nestattest/nestattest/internal/pool"
)

// UploadOnce puts body into repo once for the client's life: callers that
// need the same blob in a repository wait for the one that puts it there.
// The first repository of a registry to take a blob gets it uploaded; the
// others wait for that upload and mount the blob from there, so the same
// bytes (a tree statement's envelope or bundle, the same in every
// repository it names) go over the wire once a registry where the
// registry mounts. A failed put is forgotten: the next caller tries again.
func (c *Client) UploadOnce(ctx context.Context, repo name.Repository, body []byte) (v1.Hash, error) {
	d := digestOf(body)
	key := repo.Name() + "@" + d.String()
	for {
		f, waiting := c.putBlobs.LoadOrStore(key, newFlight(repo))
		put := f.(*flight)
		if !waiting {
			return d, put.land(&c.putBlobs, key, c.sendOnce(ctx, repo, d, body))
		}
		if err := put.wait(ctx); err != nil {
			return v1.Hash{}, err
		}
		if put.err == nil {
			return d, nil
		}
		// The caller that was putting it failed: this one tries.
	}
}

// UploadAllOnce is UploadOnce for each blob, all at once: blobs a
// manifest needs are that many round trips apart otherwise. It returns
// their digests, in order.
func (c *Client) UploadAllOnce(ctx context.Context, repo name.Repository, blobs ...[]byte) ([]v1.Hash, error) {
	ds, errs := make([]v1.Hash, len(blobs)), make([]error, len(blobs))
	pool.ForEach(len(blobs), len(blobs), func(i int) {
		ds[i], errs[i] = c.UploadOnce(ctx, repo, blobs[i])
	})
	return ds, errors.Join(errs...)
}

// sendOnce puts body, whose digest is d, in repo: mounted from the
// repository of the registry it went up to first, once that upload has
// ended, or uploaded.
func (c *Client) sendOnce(ctx context.Context, repo name.Repository, d v1.Hash, body []byte) error {
	key := repo.RegistryStr() + "@" + d.String()
	f, waiting := c.blobHomes.LoadOrStore(key, newFlight(repo))
	first := f.(*flight)
	if !waiting {
		_, err := c.Upload(ctx, repo, body)
		return first.land(&c.blobHomes, key, err)
	}
	if err := first.wait(ctx); err != nil {
		return err
	}
	var err error
	if first.err == nil {
		_, err = c.UploadFrom(ctx, repo, first.repo, body)
	} else {
		_, err = c.Upload(ctx, repo, body)
	}
	return err
}

// flight is a blob being put in repo; done is closed when it has landed,
// with err nil if it is there.
type flight struct {
	repo name.Repository
	done chan struct{}
	err  error
}

func newFlight(repo name.Repository) *flight {
	return &flight{repo: repo, done: make(chan struct{})}
}

// land records how the flight ended; a failed one leaves m, so that the
// next caller tries again.
func (f *flight) land(m *sync.Map, key string, err error) error {
	f.err = err
	if err != nil {
		m.Delete(key)
	}
	close(f.done)
	return err
}

// wait waits for the flight to land, or ctx to end.
func (f *flight) wait(ctx context.Context) error {
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
