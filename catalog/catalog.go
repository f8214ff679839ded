package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// Mirror says when children are mirrored into the parent repository.
type Mirror string

// The mirror modes.
const (
	// MirrorAuto pushes the parent as it is and mirrors only when the
	// registry refuses it because its children are not in its repository.
	MirrorAuto Mirror = "auto"
	// MirrorAlways mirrors before pushing the parent.
	MirrorAlways Mirror = "always"
	// MirrorNever never mirrors; a refusal is an error (ErrRefused).
	MirrorNever Mirror = "never"
)

// DefaultMirror is the mode used when Options.Mirror is empty.
const DefaultMirror = MirrorAuto

// ParseMirror checks a mirror mode's name.
func ParseMirror(s string) (Mirror, error) {
	switch m := Mirror(s); m {
	case MirrorAuto, MirrorAlways, MirrorNever:
		return m, nil
	}
	return "", fmt.Errorf("mirror mode %q: want %s, %s or %s", s, MirrorAuto, MirrorAlways, MirrorNever)
}

// Options say what Compose composes and how it pushes.
type Options struct {
	// Client reaches the registry; required.
	Client *registry.Client
	// Children are the children named explicitly (ParseChild,
	// ParseReferences).
	Children []Child
	// Discover adds every repository below the parent that the registry's
	// _catalog lists, resolved at ChildTag.
	Discover bool
	// Listing bounds the _catalog listing.
	Listing DiscoverOptions
	// ChildTag is the tag discovered children are resolved at; the parent's
	// tag when empty.
	ChildTag string
	// SkipMissing skips, and reports in Result.Skipped, a discovered
	// repository that has no ChildTag; without it that is an error
	// (ErrNotFound).
	SkipMissing bool
	// Annotations go on the parent index.
	Annotations map[string]string
	// Mirror is the mirror mode; DefaultMirror when empty.
	Mirror Mirror
	// Walk bounds the walk of each child that mirroring makes (its depth,
	// node count and concurrency); its Fetcher is Client when nil. Jobs is
	// also how many children are resolved at once. The requests themselves
	// are limited by Client.
	Walk walk.Options
	// DryRun composes the parent index without pushing anything.
	DryRun bool
}

// Compose resolves the children of parent (explicit ones and, with
// Options.Discover, those the registry lists), composes the parent index
// with one entry per child, sorted by path, and pushes it to parent's tag,
// mirroring the children into the parent repository as Options.Mirror
// says. Every input is checked, and every child resolved, before anything
// is pushed. The Result is returned with the error when the push failed.
func Compose(ctx context.Context, parent name.Tag, opts Options) (*Result, error) {
	r, err := newRun(parent, opts)
	if err != nil {
		return nil, err
	}
	out := &Result{Reference: parent.String(), Repository: parent.Context().Name(), Mirror: r.opts.Mirror}
	children, err := r.children(ctx, out)
	if err != nil {
		return nil, err
	}
	repos := []name.Repository{parent.Context()}
	for _, c := range children {
		repos = append(repos, c.Ref.Context())
	}
	r.opts.Client.WantRepositories(repos...)
	res, err := r.resolveAll(ctx, children, out)
	if err != nil {
		return nil, err
	}
	idx, err := Index(descriptors(res), opts.Annotations)
	if err != nil {
		return nil, err
	}
	if err := out.describe(parent, idx, res); err != nil {
		return nil, err
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		out.Manifest = raw
		return out, nil
	}
	return out, r.push(ctx, raw, res, out)
}

// SourceListing is the Source of the children Discover found.
const SourceListing = "_catalog"

// run is one Compose call.
type run struct {
	parent name.Tag
	opts   Options
}

func newRun(parent name.Tag, opts Options) (*run, error) {
	if opts.Client == nil {
		return nil, errors.New("catalog: no Client")
	}
	if opts.Mirror == "" {
		opts.Mirror = DefaultMirror
	}
	if _, err := ParseMirror(string(opts.Mirror)); err != nil {
		return nil, err
	}
	if opts.Walk.Jobs <= 0 {
		opts.Walk.Jobs = walk.DefaultJobs
	}
	if opts.Walk.Fetcher == nil {
		opts.Walk.Fetcher = opts.Client
	}
	if opts.ChildTag == "" {
		opts.ChildTag = parent.TagStr()
	}
	return &run{parent: parent, opts: opts}, nil
}

// children are the explicit children and the discovered ones, checked.
func (r *run) children(ctx context.Context, out *Result) ([]Child, error) {
	children := r.opts.Children
	if r.opts.Discover {
		var n registry.Counter
		l, err := Discover(registry.WithCounter(ctx, &n), r.opts.Client, r.parent.Context(), r.opts.Listing)
		if err != nil {
			return nil, err
		}
		out.Discovery = l
		out.Requests += n.Count()
		tag, err := name.NewTag(r.parent.Context().Name()+":"+r.opts.ChildTag, name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("%w: child tag %q: %v", ErrSyntax, r.opts.ChildTag, err)
		}
		for _, p := range l.Paths {
			repo, _ := childRepository(r.parent.Context(), p)
			children = append(children, Child{Path: p, Ref: repo.Tag(tag.TagStr()), Source: SourceListing})
		}
		if len(children) == 0 {
			return nil, fmt.Errorf("%w: the registry's _catalog lists no repository below %s (%d names in %d pages); push the children there, or name them with --child or --from",
				ErrNoChildren, r.parent.Context().Name(), l.Entries, l.Pages)
		}
	}
	return checkChildren(children)
}

// resolveAll resolves every child, Walk.Jobs at once. A discovered child
// that is missing is skipped with SkipMissing; any other failure is an
// error naming every child that failed.
func (r *run) resolveAll(ctx context.Context, children []Child, out *Result) ([]*resolved, error) {
	res := make([]*resolved, len(children))
	errs := make([]error, len(children))
	pool.ForEach(len(children), r.opts.Walk.Jobs, func(i int) {
		res[i], errs[i] = r.resolve(ctx, children[i])
	})
	var kept []*resolved
	var failed []error
	for i, c := range children {
		switch {
		case errs[i] == nil:
			kept = append(kept, res[i])
		case c.Source == SourceListing && r.opts.SkipMissing && errors.Is(errs[i], ErrNotFound):
			out.Skipped = append(out.Skipped, Skipped{Path: c.Path, Reference: c.Ref.String(), Reason: errs[i].Error()})
		default:
			failed = append(failed, errs[i])
		}
		if res[i] != nil {
			out.Requests += res[i].requests
		}
	}
	if len(failed) > 0 {
		return nil, errors.Join(failed...)
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("%w: every discovered repository below %s lacks the tag %q", ErrNoChildren, r.parent.Context().Name(), r.opts.ChildTag)
	}
	return kept, nil
}

func descriptors(res []*resolved) []Entry {
	out := make([]Entry, len(res))
	for i, c := range res {
		out[i] = Entry{Descriptor: c.desc, Raw: c.raw}
	}
	return out
}

// Result is what Compose did, in a form ready for JSON reports.
type Result struct {
	// Reference is the parent's tag.
	Reference string `json:"reference"`
	// Repository is the parent repository.
	Repository string `json:"repository"`
	// Digest, MediaType and Size describe the parent index.
	Digest    string          `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	Size      int64           `json:"size"`
	// Annotations are the parent index's annotations.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Mirror is the mode; Mirrored says whether children were mirrored.
	Mirror   Mirror `json:"mirror"`
	Mirrored bool   `json:"mirrored"`
	// Pushed says whether the parent was pushed (not with DryRun); Present
	// that its tag already named this index, so nothing was pushed.
	Pushed  bool `json:"pushed"`
	Present bool `json:"present,omitempty"`
	// Children are the entries of the parent index, sorted by path.
	Children []ChildResult `json:"children"`
	// Skipped are discovered repositories left out for lack of the tag.
	Skipped []Skipped `json:"skipped,omitempty"`
	// Discovery is the _catalog listing, with Options.Discover.
	Discovery *Listing `json:"discovery,omitempty"`
	// Requests counts the requests of the run: listing, resolving, mirroring
	// and pushing the parent, retries included.
	Requests int `json:"requests"`
	// Index is the composed parent index.
	Index v1.ImageIndex `json:"-"`
	// Manifest is the composed parent index's manifest, with DryRun.
	Manifest json.RawMessage `json:"manifest,omitempty"`
	// Root is the parent by digest, parsed under the same options as the
	// parent's tag.
	Root name.Digest `json:"-"`
}

// ChildResult is one entry of the parent index.
type ChildResult struct {
	Path         string          `json:"path"`
	Repository   string          `json:"repository"`
	Source       string          `json:"source"`
	Digest       string          `json:"digest"`
	MediaType    types.MediaType `json:"mediaType"`
	ArtifactType string          `json:"artifactType,omitempty"`
	Size         int64           `json:"size"`
	Platform     string          `json:"platform,omitempty"`
	// Mirrored says the child now also stands in the parent repository.
	Mirrored bool `json:"mirrored"`
	// Requests counts the requests made for this child: resolving it and
	// mirroring it.
	Requests int `json:"requests"`
	// Mirror says what mirroring the child did.
	Mirror *MirrorStats `json:"mirrorStats,omitempty"`
}

// Skipped is a discovered repository left out.
type Skipped struct {
	Path      string `json:"path"`
	Reference string `json:"reference"`
	Reason    string `json:"reason"`
}

func (r *Result) describe(parent name.Tag, idx v1.ImageIndex, res []*resolved) error {
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	r.Index, r.Digest, r.MediaType, r.Size, r.Annotations = idx, d.String(), m.MediaType, int64(len(raw)), m.Annotations
	r.Root = parent.Context().Digest(d.String())
	for _, c := range res {
		cr := ChildResult{
			Path: c.Path, Repository: c.Ref.Context().Name(), Source: c.Source, Digest: c.desc.Digest.String(),
			MediaType: c.desc.MediaType, ArtifactType: c.desc.ArtifactType, Size: c.desc.Size, Requests: c.requests,
		}
		if c.desc.Platform != nil {
			cr.Platform = c.desc.Platform.String()
		}
		r.Children = append(r.Children, cr)
	}
	return nil
}
