package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nestattest/nestattest/registry"
)

// push puts the parent index at its tag, mirroring as the mode says.
func (r *run) push(ctx context.Context, raw []byte, res []*resolved, out *Result) error {
	if r.opts.Mirror == MirrorAlways {
		if err := r.mirror(ctx, res, out); err != nil {
			return err
		}
	}
	err := r.putParent(ctx, raw, out, true)
	if err == nil || r.opts.Mirror != MirrorAuto || !childrenUnknown(err) {
		return r.refused(err)
	}
	if err := r.mirror(ctx, res, out); err != nil {
		return err
	}
	// The tag was just found not to name this index: put it straight away.
	return r.refused(r.putParent(ctx, raw, out, false))
}

// putParent puts the parent index at its tag, unless (with check) the tag
// already names this very index: a re-run writes nothing.
func (r *run) putParent(ctx context.Context, raw []byte, out *Result, check bool) error {
	var n registry.Counter
	defer func() { out.Requests += n.Count() }()
	ctx = registry.WithCounter(ctx, &n)
	if check {
		if m, err := r.opts.Client.GetManifest(ctx, r.parent, registry.MaxManifestBytes); err == nil && bytes.Equal(m.Raw, raw) {
			out.Present = true
			return nil
		}
	}
	if _, err := r.opts.Client.PutManifest(ctx, r.parent, out.MediaType, raw); err != nil {
		return err
	}
	out.Pushed = true
	return nil
}

// childrenUnknown reports a registry's refusal of an index whose children
// are not in its repository: distribution answers 400
// MANIFEST_BLOB_UNKNOWN, go-containerregistry's registry 404
// MANIFEST_UNKNOWN.
func childrenUnknown(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode != http.StatusBadRequest && terr.StatusCode != http.StatusNotFound {
		return false
	}
	for _, d := range terr.Errors {
		switch d.Code {
		case transport.ManifestBlobUnknownErrorCode, transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode:
			return true
		}
	}
	return false
}

// refused explains a failed push of the parent.
func (r *run) refused(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, registry.ErrDigestMismatch):
		return fmt.Errorf("%w: %w", ErrRefused, err)
	case childrenUnknown(err) && r.opts.Mirror == MirrorNever:
		return fmt.Errorf("%w: %s refused the parent index because its children are not in %s (--mirror never); --mirror auto or always pushes them there by digest: %w",
			ErrRefused, r.parent.RegistryStr(), r.parent.Context().Name(), err)
	case childrenUnknown(err):
		return fmt.Errorf("%w: %s still refuses the parent index after mirroring its children into %s: %w", ErrRefused, r.parent.RegistryStr(), r.parent.Context().Name(), err)
	}
	return fmt.Errorf("%w: push %s: %w", ErrRefused, r.parent, err)
}
