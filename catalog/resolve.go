package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

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
	out := &resolved{Child: c}
	var n registry.Counter
	ctx = registry.WithCounter(ctx, &n)
	defer func() { out.requests = n.Count() }()
	f, err := r.opts.Client.GetManifest(ctx, c.Ref, walk.MaxManifestBytes)
	if errors.Is(err, registry.ErrNotFound) {
		return out, fmt.Errorf("%s: %w: %s is not in %s: %w", c.Source, ErrNotFound, c.Ref.Identifier(), c.Ref.Context().Name(), err)
	}
	if err != nil {
		return out, fmt.Errorf("%s: fetch %s: %w", c.Source, c.Ref, err)
	}
	m, err := walk.Decode(f.Raw, string(f.MediaType))
	if err != nil {
		return out, fmt.Errorf("%s: %s: %w", c.Source, c.Ref, err)
	}
	out.raw, out.manifest = f.Raw, m
	out.desc = v1.Descriptor{
		MediaType: m.MediaType, Digest: f.Digest, Size: int64(len(f.Raw)), ArtifactType: m.ArtifactType,
		Annotations: map[string]string{walk.AnnotationRepository: c.Path},
	}
	if m.Kind() == walk.KindImage {
		if out.desc.Platform, err = r.platform(ctx, c.Ref.Context(), *m.Config); err != nil {
			return out, fmt.Errorf("%s: config of %s: %w", c.Source, c.Ref, err)
		}
	}
	return out, nil
}

// platform reads an image's platform from its config; nil when the config
// names no OS and architecture.
func (r *run) platform(ctx context.Context, repo name.Repository, config v1.Descriptor) (*v1.Platform, error) {
	raw, err := r.opts.Client.ReadBlob(ctx, repo, config, maxConfigBytes)
	if err != nil {
		return nil, err
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
