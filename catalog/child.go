package catalog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/walk"
)

// MaxChildren is how many children a parent index may have, from all
// sources together; it bounds a --from file and a _catalog listing too.
const MaxChildren = 10_000

// maxLine is the longest line of a references file: a registry host, a
// repository of walk.MaxRepositoryLength, a tag and a digest fit well.
const maxLine = 4096

// Child is one child of a parent index: its path below the parent
// repository, and the reference in <parent>/<path> it is resolved at.
type Child struct {
	// Path is the child's repository relative to the parent's: the value of
	// its walk.AnnotationRepository annotation.
	Path string
	// Ref is the child in its own repository, by tag or digest.
	Ref name.Reference
	// Source says where the child was named, for messages: `--child
	// "app1=…"`, "refs.txt:3", "_catalog".
	Source string
}

// ParseChild parses a --child spec, PATH=REF. REF is a reference in
// <parent>/PATH, written in full or, relative to that repository, as a tag
// (":v1") or a digest ("@sha256:…").
func ParseChild(parent name.Repository, spec string, opts ...name.Option) (Child, error) {
	source := fmt.Sprintf("--child %q", spec)
	path, ref, ok := strings.Cut(spec, "=")
	if !ok || ref == "" {
		return Child{}, fmt.Errorf("%s: %w: want PATH=REF, such as app1=%s/app1@sha256:… or app1=:latest", source, ErrSyntax, parent.Name())
	}
	repo, err := childRepository(parent, path)
	if err != nil {
		return Child{}, fmt.Errorf("%s: %w", source, err)
	}
	if strings.HasPrefix(ref, ":") || strings.HasPrefix(ref, "@") {
		ref = repo.Name() + ref
	}
	r, err := name.ParseReference(ref, append(opts, name.StrictValidation)...)
	if err != nil {
		return Child{}, fmt.Errorf("%s: %w: reference %q: %v", source, ErrSyntax, ref, err)
	}
	c, err := ChildOf(parent, r, source)
	if err != nil {
		return Child{}, err
	}
	if c.Path != path {
		return Child{}, fmt.Errorf("%s: %w: %s is at path %q below %s, not %q", source, ErrPath, r.Context().Name(), c.Path, parent.Name(), path)
	}
	return c, nil
}

// ChildOf returns the child that ref names, its path derived from its
// repository. The reference must be on the parent's registry and in a
// repository strictly below the parent's.
func ChildOf(parent name.Repository, ref name.Reference, source string) (Child, error) {
	repo := ref.Context()
	if repo.RegistryStr() != parent.RegistryStr() {
		return Child{}, fmt.Errorf("%s: %w: %s is on %s, the parent %s on %s", source, ErrOutside, ref.Name(), repo.RegistryStr(), parent.Name(), parent.RegistryStr())
	}
	path, below := strings.CutPrefix(repo.RepositoryStr(), parent.RepositoryStr()+"/")
	if !below {
		return Child{}, fmt.Errorf("%s: %w: %s is not in a repository below %s", source, ErrOutside, ref.Name(), parent.Name())
	}
	if _, err := childRepository(parent, path); err != nil {
		return Child{}, fmt.Errorf("%s: %w", source, err)
	}
	return Child{Path: path, Ref: ref, Source: source}, nil
}

// childRepository is <parent>/<path> for a path walk.ParseScope accepts.
func childRepository(parent name.Repository, path string) (name.Repository, error) {
	repo, err := walk.ChildRepository(parent, map[string]string{walk.AnnotationRepository: path})
	if err != nil {
		return name.Repository{}, fmt.Errorf("%w: %w", ErrPath, err)
	}
	return repo, nil
}

// ParseReferences reads children from r, one reference per line as `ko
// build` prints them (registry/org/ko-build/app1@sha256:…); blank lines
// and lines starting with # are skipped. Each child's path is derived from
// its repository below parent. source names r in messages, with the line
// number: "refs.txt:3".
func ParseReferences(parent name.Repository, r io.Reader, source string, opts ...name.Option) ([]Child, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLine)
	var out []Child
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", source, line)
		if len(out) == MaxChildren {
			return nil, fmt.Errorf("%s: %w: more than %d references", where, ErrTooMany, MaxChildren)
		}
		ref, err := name.ParseReference(text, append(opts, name.StrictValidation)...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %q is not a reference: %v", where, ErrSyntax, text, err)
		}
		c, err := ChildOf(parent, ref, where)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s: %w: a line is over %d bytes", source, ErrSyntax, maxLine)
		}
		return nil, fmt.Errorf("read %s: %w", source, err)
	}
	return out, nil
}

// checkChildren refuses an empty list, too many children, and two children
// with one path; it returns the children sorted by path.
func checkChildren(children []Child) ([]Child, error) {
	if len(children) == 0 {
		return nil, fmt.Errorf("%w: name children with --child, --from or --discover", ErrNoChildren)
	}
	if len(children) > MaxChildren {
		return nil, fmt.Errorf("%w: %d children, over %d", ErrTooMany, len(children), MaxChildren)
	}
	sorted := append([]Child(nil), children...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for i := 1; i < len(sorted); i++ {
		if a, b := sorted[i-1], sorted[i]; a.Path == b.Path {
			return nil, fmt.Errorf("%w: %q named twice, by %s (%s) and %s (%s)", ErrDuplicate, a.Path, a.Source, a.Ref, b.Source, b.Ref)
		}
	}
	return sorted, nil
}
