package catalog

import (
	"fmt"

	"github.com/nestattest/nestattest/registry"
)

// nextLink returns the target of the rel="next" link of a _catalog page's
// Link header (registry.NextLink), "" when there is none; a value it
// cannot parse is ErrListing.
func nextLink(header string) (string, error) {
	next, err := registry.NextLink(header)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrListing, err)
	}
	return next, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
