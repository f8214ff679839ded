package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// maxConfigBytes bounds an image config read for its platform.
const maxConfigBytes = 4 << 20

// resolved is a child as its registry serves it: the entry of the parent
// index, and the manifest's exact bytes.
type resolved struct {
	Child
	desc     v1.Descriptor
	raw      []byte
	manifest *walk.Manifest
	requests int
}

// resolve fetches a child's manifest, checked against its digest, and for a
// single-platform image its config, for the platform.
func (r *run) resolve(ctx context.Context, c Child) (*resolved, error) {
	out := &resolved{Child: c, requests: 1}
	f, err := r.fetcher.Fetch(ctx, c.Ref, walk.MaxManifestBytes)
	if errors.Is(err, walk.ErrNotFound) {
		return out, fmt.Errorf("%s: %w: %s is not in %s: %w", c.Source, ErrNotFound, c.Ref.Identifier(), c.Ref.Context().Name(), err)
	}
	if err != nil {
		return out, fmt.Errorf("%s: fetch %s: %w", c.Source, c.Ref, err)
	}
	m, err := walk.Decode(f.Raw, f.ContentType)
	if err != nil {
		return out, fmt.Errorf("%s: %s: %w", c.Source, c.Ref, err)
	}
	out.raw, out.manifest = f.Raw, m
	out.desc = v1.Descriptor{
		MediaType: m.MediaType, Digest: f.Digest, Size: int64(len(f.Raw)), ArtifactType: m.ArtifactType,
		Annotations: map[string]string{walk.AnnotationRepository: c.Path},
	}
	if m.Kind() == walk.KindImage {
		out.requests++
		if out.desc.Platform, err = r.platform(ctx, c.Ref.Context(), *m.Config); err != nil {
			return out, fmt.Errorf("%s: config of %s: %w", c.Source, c.Ref, err)
		}
	}
	return out, nil
}

// platform reads an image's platform from its config; nil when the config
// names no OS and architecture.
func (r *run) platform(ctx context.Context, repo name.Repository, config v1.Descriptor) (*v1.Platform, error) {
	if config.Size > maxConfigBytes {
		return nil, fmt.Errorf("config is %d bytes, over %d", config.Size, maxConfigBytes)
	}
	rc, err := r.openBlob(ctx, repo, config)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, config.Size+1))
	if err != nil {
		return nil, err
	}
	if got, _, err := v1.SHA256(bytes.NewReader(raw)); err != nil || got != config.Digest || int64(len(raw)) != config.Size {
		return nil, fmt.Errorf("%w: config %s does not match its descriptor", walk.ErrDigestMismatch, config.Digest)
	}
	p, err := configPlatform(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: config: %v", walk.ErrInvalidManifest, err)
	}
	return p, nil
}

// configPlatform reads the platform of an image config; nil when it names no
// OS and architecture.
func configPlatform(raw []byte) (*v1.Platform, error) {
	var cf struct {
		OS         string   `json:"os"`
		Arch       string   `json:"architecture"`
		Variant    string   `json:"variant"`
		OSVersion  string   `json:"os.version"`
		OSFeatures []string `json:"os.features"`
	}
	if err := json.Unmarshal(raw, &cf); err != nil {
		return nil, err
	}
	if cf.OS == "" || cf.Arch == "" {
		return nil, nil
	}
	return &v1.Platform{OS: cf.OS, Architecture: cf.Arch, Variant: cf.Variant, OSVersion: cf.OSVersion, OSFeatures: cf.OSFeatures}, nil
}

// openBlob opens a blob of repo. Blob downloads may be redirected to another
// host (a CDN); the registry's credentials are not sent there.
func (r *run) openBlob(ctx context.Context, repo name.Repository, d v1.Descriptor) (io.ReadCloser, error) {
	rt, err := r.opts.Client.Transport(ctx, repo, registry.Pull)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, registry.URL(repo)+"/blobs/"+d.Digest.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
		resp.Body.Close()
		return nil, fmt.Errorf("blob %s of %s: registry announced %d bytes, the descriptor says %d", d.Digest, repo, resp.ContentLength, d.Size)
	}
	return resp.Body, nil
}
