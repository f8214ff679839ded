// Package registry is how nestattest reaches OCI registries: credentials from
// the docker config and its credential helpers, plain HTTP only when asked
// for, retries that honour Retry-After, and one authenticated transport per
// repository and scope, created once and shared by every request of a run so
// that tokens are fetched once.
//
// The package holds no registry logic of its own: walk, attest and catalog
// build their requests on the transports it hands out.
package registry
