package catalog

import "errors"

// Sentinel errors; test for them with errors.Is. Every refusal of an input
// happens before anything is pushed, and its message names the input.
var (
	// ErrSyntax: a --child spec, a line of a --from file or a reference
	// cannot be parsed.
	ErrSyntax = errors.New("malformed child")
	// ErrOutside: a child reference is on another registry or not below the
	// parent repository.
	ErrOutside = errors.New("child outside the parent namespace")
	// ErrPath: a child's path is not a valid further-scoped repository path
	// (walk.ParseScope refuses it), or does not match its reference.
	ErrPath = errors.New("invalid child path")
	// ErrDuplicate: two children have the same path.
	ErrDuplicate = errors.New("duplicate child path")
	// ErrNotFound: a child does not exist at its reference.
	ErrNotFound = errors.New("child not found")
	// ErrNoChildren: there is nothing to compose.
	ErrNoChildren = errors.New("no children")
	// ErrTooMany: an input or a _catalog listing is over its bound.
	ErrTooMany = errors.New("too many entries")
	// ErrListing: the registry's _catalog listing misbehaved: a page that does
	// not advance, a Link to another host or path, a malformed body.
	ErrListing = errors.New("bad _catalog listing")
	// ErrRefused: the registry refused the parent index.
	ErrRefused = errors.New("registry refused the parent index")
	// ErrMirror: a manifest or blob could not be mirrored into the parent
	// repository.
	ErrMirror = errors.New("mirroring failed")
)
