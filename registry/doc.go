// Package registry is how nestattest reaches OCI registries: one Client per
// run for manifests, blobs, uploads, cross-repository mounts, referrers,
// tag updates and _catalog pages.
//
// A Client resolves credentials from the docker config and its credential
// helpers, uses plain HTTP only when asked, retries failed requests and
// answers that break off (honouring Retry-After), and keeps one
// authenticated transport per repository so tokens are fetched once. Every
// request of a run, whichever package makes it, passes one limit per host
// (Options.Jobs).
//
// Registries take no conditional writes, so a tag that lists signatures or
// referrers can lose an update to another writer. UpdateTag serialises the
// updates of one tag within a Client, confirms each by reading the tag
// again, and retries one that was lost; Settle checks them once more at
// the end of a run.
//
// Errors about a registry's answer match the sentinels in errors.go with
// errors.Is and unwrap to go-containerregistry's *transport.Error. Secrets
// collects the credentials a run resolves, so output can be redacted.
package registry
