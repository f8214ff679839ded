// Package plan splits a tree into shards that the engines users already run
// sign in parallel: one TaskRun per shard in a Tekton Matrix, one job per
// shard in a GitHub Actions matrix. nestattest never schedules the shards
// itself.
//
// A plan is made once, from one walk of the tree (New). Every node gets one
// shard (Assign): shards are balanced by node count — none has more than
// ⌈nodes/shards⌉ nodes, none fewer than ⌊nodes/shards⌋ — and the nodes of
// one repository stay in one shard unless that would unbalance the shards,
// so a shard reuses one repository's token and connections. Repositories
// are placed largest first on the shard with most room; one that does not
// fit is split across the shards with most room, so at most shards−1
// repositories are split. Each node appears once (the walk visits each
// (repository, digest) once), so each is signed exactly once.
//
// The plan is pushed into the root's repository by digest, without a tag,
// as an OCI artifact: an image manifest of artifactType ArtifactType whose
// empty config is followed by one layer per shard (LayerMediaType), its
// annotations naming the root (repository@digest), the shard count and the
// node count. It has no subject: as a referrer of the root it would show up
// wherever the root's referrers are listed — by cosign, by policy engines,
// by nestattest's own bundle store — though it says nothing about the root.
// Registries that collect untagged manifests may delete a plan after a
// while; a plan lives as long as one pipeline run.
//
// A shard's layer (Shard) holds the shard's own nodes and their ancestors
// up to the root, each with its place in the tree (parent, index in the
// parent, repository path below the root) and its descriptor (digest, size,
// media type, artifact type, platform, annotations). A shard reads the
// plan's manifest and its own layer, two requests, rebuilds walk.Nodes from
// them (Shard.Tree), and fetches only its own nodes' manifests to confirm
// them against the plan (Confirm): no shard walks the tree. A shard's reads
// grow with its own nodes, not with the tree.
//
// A plan is checked before anything is signed: it must be for the root the
// shard was given (the digest a tag names now, or the digest given), its
// shard ids are 0…shards−1, and every repository path in it is a
// further-scoped path below the root (walk.ParseScope) and below its
// parent's, so a plan can name nothing outside the root's namespace.
package plan
