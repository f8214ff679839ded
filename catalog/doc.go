// Package catalog composes the parent index of a registry namespace: one
// OCI image index in, say, quay.io/org/ko-build whose entries point into the
// scoped child repositories quay.io/org/ko-build/app1, …/app2, with the
// walk.AnnotationRepository annotation, so that one handle stands for the
// whole set and walk, attest and any plain client can find every child.
//
// Children come from three sources, checked before anything is pushed:
// explicit PATH=REF specs (ParseChild), a file of references such as the
// lines `ko build` prints (ParseReferences), and the registry's _catalog
// listing of the repositories below the parent (Discover), each resolved at
// a tag. A child outside the parent namespace, a path walk.ParseScope
// refuses, a path named twice and a child that does not exist are refused
// with an error that names the input; the sentinels are in errors.go.
//
// Each entry of the parent index is the child's own descriptor as its
// registry serves it (media type, digest, size; the platform from the config
// for a single-platform image), annotated with the child's path. Entries are
// sorted by path and the index holds no timestamps, so the same children
// give the same parent digest (Index).
//
// OCI has no cross-repository descriptor, and registries that check index
// children (distribution answers 400 MANIFEST_BLOB_UNKNOWN) refuse such a
// parent. Mirroring makes every manifest the parent needs resolvable in the
// parent repository: each child manifest and, through nested indexes and
// their own scoped children, every manifest below it, pushed by digest with
// no tag, children before their index, configs and layers mounted across
// repositories (POST /v2/<parent>/blobs/uploads/?mount=<digest>&from=<repo>)
// and uploaded, streamed from the child's repository, only where the
// registry answers 202 instead. MirrorAuto mirrors only when the registry
// refuses the plain push; the child's home stays its scoped repository.
//
// Every request of a run, resolving, mirroring and listing, shares one
// concurrency limit (Options.Jobs), and the registry.Client shares one
// authenticated transport per repository and scope.
package catalog
