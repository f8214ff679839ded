package attest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nestattest/nestattest/registry"
)

// publish writes img at tag with as few requests as the distribution API
// allows: each blob not already in the repository (known) in two requests
// (POST, then PUT with the body: a monolithic upload), then the manifest.
// Blobs go before the manifest, so the tag never points at a missing blob.
func publish(ctx context.Context, c *registry.Client, tag name.Tag, img v1.Image, known map[v1.Hash]bool) error {
	hc, err := c.HTTPClient(ctx, tag.Context(), registry.Push)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if known[d] {
			continue
		}
		body, err := readLayer(l)
		if err != nil {
			return err
		}
		if err := upload(ctx, hc, tag.Context(), d, body); err != nil {
			return err
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cfgDigest, err := img.ConfigName()
	if err != nil {
		return err
	}
	if err := upload(ctx, hc, tag.Context(), cfgDigest, cfg); err != nil {
		return err
	}
	return putManifest(ctx, hc, tag, img)
}

func readLayer(l v1.Layer) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// upload sends one blob: POST opens the upload, PUT closes it with the
// whole body and the digest.
func upload(ctx context.Context, hc *http.Client, repo name.Repository, d v1.Hash, body []byte) error {
	base := registry.URL(repo)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/blobs/uploads/", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusAccepted); err != nil {
		return fmt.Errorf("upload %s to %s: %w", d, repo, err)
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload %s to %s: bad Location: %w", d, repo, err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	return send(ctx, hc, http.MethodPut, loc, "application/octet-stream", body, http.StatusCreated)
}

func putManifest(ctx context.Context, hc *http.Client, tag name.Tag, img v1.Image) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	u, err := url.Parse(registry.URL(tag.Context()) + "/manifests/" + tag.TagStr())
	if err != nil {
		return err
	}
	return send(ctx, hc, http.MethodPut, u, string(mt), raw, http.StatusCreated)
}

// send makes a request with a body that can be replayed on retries.
func send(ctx context.Context, hc *http.Client, method string, u *url.URL, contentType string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, want); err != nil {
		return fmt.Errorf("%s %s: %w", method, registry.Redact(u.Redacted()), err)
	}
	return nil
}
