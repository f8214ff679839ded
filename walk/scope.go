package walk

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// AnnotationRepository is the index-descriptor annotation that places a child
// in a repository below the index's own: its value is a path relative to the
// index's repository.
const AnnotationRepository = "dev.nestattest.repository"

// MaxRepositoryLength is the longest repository name (without the registry)
// the distribution specification lets registries refuse beyond.
const MaxRepositoryLength = 255

// pathComponent is the distribution-spec grammar of one path component.
var scopePattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// ParseScope checks the value of an AnnotationRepository annotation and
// returns it. A valid value is a relative repository path in the
// distribution grammar: lower-case components joined by single slashes. It
// refuses the empty string, "..", a leading or doubled slash, upper case, a
// host with a port, a tag or a digest, and anything over MaxRepositoryLength.
//
// A first component with dots, such as "github.com/org/app" (what ko's
// --preserve-import-paths makes), is a valid path: the value is always read
// relative to the index's repository and never as a registry host.
func ParseScope(value string) (string, error) {
	switch {
	case value == "":
		return "", fmt.Errorf("%w: empty %s", ErrScope, AnnotationRepository)
	case len(value) > MaxRepositoryLength:
		return "", fmt.Errorf("%w: %s is %d characters, over %d", ErrScope, AnnotationRepository, len(value), MaxRepositoryLength)
	case strings.HasPrefix(value, "/"):
		return "", fmt.Errorf("%w: %s %q is absolute; it must be relative to the index's repository", ErrScope, AnnotationRepository, value)
	case strings.Contains(value, "@"):
		return "", fmt.Errorf("%w: %s %q holds a digest; it names a repository only", ErrScope, AnnotationRepository, value)
	case strings.Contains(value, ":"):
		return "", fmt.Errorf("%w: %s %q holds a host port or tag; it names a relative repository only", ErrScope, AnnotationRepository, value)
	case hasDotSegment(value):
		return "", fmt.Errorf("%w: %s %q leaves the index's namespace; only further-scoped paths are allowed", ErrScope, AnnotationRepository, value)
	case !scopePattern.MatchString(value):
		return "", fmt.Errorf("%w: %s %q is not a repository path (lower-case [a-z0-9] components separated by '.', '_', '__' or '-', joined by single '/')", ErrScope, AnnotationRepository, value)
	}
	return value, nil
}

func hasDotSegment(value string) bool {
	for _, c := range strings.Split(value, "/") {
		if c == "." || c == ".." {
			return true
		}
	}
	return false
}

// ChildRepository returns the repository a descriptor of an index in parent
// points into: parent itself without the annotation, parent/<value> with it.
func ChildRepository(parent name.Repository, annotations map[string]string) (name.Repository, error) {
	value, ok := annotations[AnnotationRepository]
	if !ok {
		return parent, nil
	}
	scope, err := ParseScope(value)
	if err != nil {
		return name.Repository{}, err
	}
	full := parent.RepositoryStr() + "/" + scope
	if len(full) > MaxRepositoryLength {
		return name.Repository{}, fmt.Errorf("%w: %s/%s is %d characters, over %d", ErrScope, parent.Name(), scope, len(full), MaxRepositoryLength)
	}
	return parent.Registry.Repo(strings.Split(full, "/")...), nil
}

// RelativePath returns the path of repo below root ("." for root itself),
// or repo's full name when it is not below root.
func RelativePath(root, repo name.Repository) string {
	if repo.Name() == root.Name() {
		return "."
	}
	if rel, ok := strings.CutPrefix(repo.Name(), root.Name()+"/"); ok {
		return rel
	}
	return repo.Name()
}
