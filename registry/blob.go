package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// HasBlob reports whether repo holds the blob d.
func (c *Client) HasBlob(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
	return c.head(ctx, repo, "blobs", v1.Descriptor{Digest: d})
}

// OpenBlob opens a blob of repo; the caller closes it. Blob downloads may
// be redirected to another host (a CDN); the registry's credentials are not
// sent there. A length the registry announces that differs from d.Size is
// refused.
func (c *Client) OpenBlob(ctx context.Context, repo name.Repository, d v1.Descriptor) (io.ReadCloser, error) {
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return nil, err
	}
	resp, err := send(ctx, &http.Client{Transport: rt}, request{method: http.MethodGet, url: URL(repo) + "/blobs/" + d.Digest.String(), want: []int{http.StatusOK}})
	if err != nil {
		return nil, err
	}
	if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
		resp.Body.Close()
		return nil, fmt.Errorf("blob %s of %s: the registry announced %d bytes, the descriptor says %d", d.Digest, repo, resp.ContentLength, d.Size)
	}
	return resp.Body, nil
}

// ReadBlob reads a blob of repo of at most limit bytes, checked against d's
// digest and size; a body that breaks off is fetched again within the
// client's retries.
func (c *Client) ReadBlob(ctx context.Context, repo name.Repository, d v1.Descriptor, limit int64) ([]byte, error) {
	if d.Size > limit {
		return nil, fmt.Errorf("%w: blob %s of %s is %d bytes, the limit is %d", ErrTooLarge, d.Digest, repo, d.Size, limit)
	}
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return nil, err
	}
	b, _, err := readRetrying(ctx, &http.Client{Transport: rt}, request{method: http.MethodGet, url: URL(repo) + "/blobs/" + d.Digest.String(), want: []int{http.StatusOK}}, limit, c.opts.retries(), c.opts.backoff())
	if err != nil {
		return nil, err
	}
	if got := digestOf(b); got != d.Digest || int64(len(b)) != d.Size {
		return nil, fmt.Errorf("%w: blob %s of %s holds %d bytes with digest %s", ErrDigestMismatch, d.Digest, repo, len(b), got)
	}
	return b, nil
}

// Upload puts a blob into repo: in one request where the registry takes
// the blob with the POST that starts the upload (201; go-containerregistry's
// registry and others do), else in two (the POST opens the upload, a PUT
// closes it with the body and the digest). A registry that answers the
// one-request form by opening an upload (202; distribution does) is
// remembered, and is not sent the blob with the POST again. When an answer
// is lost after the registry took the blob, the blob is looked for before
// the upload fails.
func (c *Client) Upload(ctx context.Context, repo name.Repository, body []byte) (v1.Hash, error) {
	d := digestOf(body)
	post := request{method: http.MethodPost, url: URL(repo) + "/blobs/uploads/", want: []int{http.StatusAccepted}}
	_, twoStep := c.twoStep.Load(repo.RegistryStr())
	if !twoStep {
		post.url += "?digest=" + url.QueryEscape(d.String())
		post.ctype, post.body, post.want = "application/octet-stream", body, []int{http.StatusCreated, http.StatusAccepted}
	}
	resp, err := c.do(ctx, repo, post)
	if err != nil {
		if ok, herr := c.HasBlob(ctx, repo, d); herr == nil && ok {
			return d, nil // the registry took it; the answer was lost
		}
		return d, fmt.Errorf("upload %s to %s: %w", d, repo, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return d, nil
	}
	if !twoStep {
		c.twoStep.Store(repo.RegistryStr(), true)
	}
	loc, err := location(resp)
	if err != nil {
		return d, fmt.Errorf("upload %s to %s: %w", d, repo, err)
	}
	return d, c.finish(ctx, repo, loc, d, bytes.NewReader(body), int64(len(body)))
}

// UploadFrom puts body into repo as Upload does, first asking the registry
// to mount it from from, a repository of the same registry the caller put
// it in before: one request and no bytes where the registry mounts (201;
// distribution does when the client may pull from), else the upload the
// registry opened instead (202) is finished with body. A refused mount
// (from gone, the blob deleted, no pull access) falls back to Upload. A
// registry that did not mount is remembered, and is sent uploads from then
// on: a mount it answers by opening an upload costs a request more than
// an upload it takes in one.
func (c *Client) UploadFrom(ctx context.Context, repo, from name.Repository, body []byte) (v1.Hash, error) {
	d := digestOf(body)
	_, noMount := c.noMount.Load(repo.RegistryStr())
	if noMount || from.RegistryStr() != repo.RegistryStr() || from.RepositoryStr() == repo.RepositoryStr() {
		return c.Upload(ctx, repo, body)
	}
	u := URL(repo) + "/blobs/uploads/?mount=" + url.QueryEscape(d.String()) + "&from=" + url.QueryEscape(from.RepositoryStr())
	resp, err := c.do(ctx, repo, request{method: http.MethodPost, url: u, want: []int{http.StatusCreated, http.StatusAccepted}})
	if err != nil {
		c.noMount.Store(repo.RegistryStr(), true)
		return c.Upload(ctx, repo, body)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return d, nil
	}
	c.noMount.Store(repo.RegistryStr(), true)
	loc, err := location(resp)
	if err != nil {
		return c.Upload(ctx, repo, body)
	}
	return d, c.finish(ctx, repo, loc, d, bytes.NewReader(body), int64(len(body)))
}

// finish PUTs the body of an upload at loc.
func (c *Client) finish(ctx context.Context, repo name.Repository, loc *url.URL, d v1.Hash, body io.Reader, size int64) error {
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return err
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := httpClient(rt).Do(req)
	if err == nil {
		err = checkStatus(resp, http.StatusCreated)
		resp.Body.Close()
	}
	if err == nil {
		return nil
	}
	if ok, herr := c.HasBlob(ctx, repo, d); herr == nil && ok {
		return nil // the registry took it; the answer was lost or the retry found the upload closed
	}
	return fmt.Errorf("upload %s to %s: %w", d, repo, hint(err))
}

// Mount makes blob d of from present in repo without uploading it: a
// cross-repository mount (POST /v2/<repo>/blobs/uploads/?mount=<d>&from=<from>).
// Where the registry will not mount and starts an upload instead, the blob
// is streamed from from into it. uploaded is the number of bytes sent.
func (c *Client) Mount(ctx context.Context, repo, from name.Repository, d v1.Descriptor) (uploaded int64, err error) {
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return 0, err
	}
	u := URL(repo) + "/blobs/uploads/?mount=" + url.QueryEscape(d.Digest.String()) + "&from=" + url.QueryEscape(from.RepositoryStr())
	resp, err := send(ctx, httpClient(rt), request{method: http.MethodPost, url: u, want: []int{http.StatusCreated, http.StatusAccepted}})
	if err != nil {
		return 0, fmt.Errorf("mount %s from %s into %s: %w", d.Digest, from, repo, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return 0, nil
	}
	loc, err := location(resp)
	if err != nil {
		return 0, fmt.Errorf("mount %s into %s: %w", d.Digest, repo, err)
	}
	body, err := c.OpenBlob(ctx, from, d)
	if err != nil {
		return 0, fmt.Errorf("read blob %s from %s: %w", d.Digest, from, err)
	}
	defer body.Close()
	counted := &countingReader{r: body}
	err = c.finish(ctx, repo, loc, d.Digest, counted, d.Size)
	return counted.n, err
}

// location is the upload URL a registry answered with.
func location(resp *http.Response) (*url.URL, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return nil, errors.New("the registry started an upload without a Location")
	}
	u, err := resp.Request.URL.Parse(l)
	if err != nil {
		return nil, fmt.Errorf("bad upload Location: %w", err)
	}
	return u, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
