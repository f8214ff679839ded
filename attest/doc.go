// Package attest signs, attests and verifies every node of a tree exactly as
// cosign stores them, so cosign, Tekton Chains, Kyverno, policy-controller
// and Conforma read the results as they are.
//
// Two small interfaces carry the work. A Signer signs payloads with one key,
// decrypted once per run; a Store lists and adds signatures and attestations
// for a node. TagStore is cosign's tag layout: signatures at
// <repo>:sha256-<hex>.sig, attestations at <repo>:sha256-<hex>.att, in the
// node's own repository.
//
// For each node, Sign builds the artifacts as values first: cosign's
// simple-signing payload whose docker-reference is the node's own
// repository, with the user's annotations and a binding to the root
// (AnnotationRoot), and an in-toto statement whose subject is the node,
// DSSE-wrapped. It then publishes only what the store does not already hold
// from this key: a re-run over a signed tree writes nothing.
package attest
