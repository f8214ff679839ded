// Package attest signs, attests and verifies every node of a tree exactly as
// cosign stores them, so cosign, Tekton Chains, Kyverno, policy-controller
// and Conforma read the results as they are.
//
// Three small interfaces carry the work, each implemented apart from the
// orchestration here:
//   - a Signer signs payloads and says who signed them (package identity:
//     a key, a KMS key, keyless);
//   - a Witness adds evidence to a signed payload (package evidence: a
//     transparency-log entry, an RFC 3161 timestamp);
//   - a Store reads, writes and verifies the signatures and attestations
//     of a node in one storage layout: LegacyStore is cosign's tag layout
//     (<repo>:sha256-<hex>.sig and .att), BundleStore sigstore bundles as
//     OCI 1.1 referrers (cosign v3). A layout is one Store.
//
// For each node, Sign builds the artifacts as values first: the store's
// signature payload for the node's own repository, with the user's
// annotations and a binding to the root (AnnotationRoot), and an in-toto
// statement whose subject is the node. It writes only what the node does
// not already carry in a form that passes the policy this run's signer
// and witnesses imply, verified by the store as Verify verifies it: a
// re-run over a signed tree writes nothing, and a re-run that adds
// evidence adds it.
package attest
