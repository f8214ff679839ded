// Package walk reads trees of OCI artifacts that span nested repositories.
//
// A tree starts at a root reference. An image index (OCI index or Docker
// manifest list) lists children by digest; by plain OCI rules each child
// lives in the index's own repository. The nested-namespace convention adds
// one annotation on an index descriptor, AnnotationRepository, whose value is
// a repository path relative to the repository of the index: a descriptor
// annotated "app1" in an index in quay.io/org/ko-build points at
// quay.io/org/ko-build/app1. Values are only ever further-scoped: ParseScope
// refuses "..", absolute paths, hosts with ports, tags, digests and anything
// outside the distribution path grammar, so nothing outside the root's
// namespace is read on the strength of an annotation.
//
// Walk fetches every node once per (repository, digest), concurrently under
// one limit for the whole tree, checks every manifest against the digest that
// pointed at it and against a size limit, bounds depth and node count, and
// calls a WalkFunc for each node, parents before children, in the manner of
// fs.WalkDir. Signatures, attestations and other referrers are not nodes.
// The Tree that Walk returns lists the nodes in a deterministic pre-order,
// whatever order they were fetched in.
package walk
