// Package attest is the vocabulary of signing and verifying the nodes of a
// tree exactly as cosign stores them, so that cosign, Tekton Chains,
// Kyverno, policy-controller and Conforma read the results as they are.
// It holds the small interfaces and values every other package of attest
// speaks in, and no orchestration:
//   - Signed: one signature or attestation, whichever layout stores it —
//     its subject, payload, signature and Material (key or certificate
//     chain, transparency-log entries, timestamps);
//   - a Signer signs payloads and says who signed them (package identity:
//     a key, a KMS key, keyless);
//   - a Witness adds evidence to a signed payload (package evidence: a
//     transparency-log entry, an RFC 3161 timestamp), as far as a layout
//     Keeps it;
//   - a Store reads, writes and verifies the signatures and attestations
//     of a subject in one storage layout (package legacy: cosign's
//     <repo>:sha256-<hex>.sig and .att tags; package bundle: sigstore
//     bundles as OCI 1.1 referrers, as cosign v3 writes them; package
//     layout lists them for the --format flags);
//   - Trust (whom to trust: a key or a certificate identity, the trusted
//     material, the transparency-log and timestamp rules) is kept apart
//     from Requirements (what a tree's nodes must show: predicate types,
//     annotations, the binding to the root), as sigstore-go keeps
//     NewSignedEntityVerifier apart from NewPolicy; a Verifier is a Trust
//     made ready, which each Store verifies its own material against.
//
// Package statement makes what is signed: cosign's signature payloads,
// in-toto statements and their predicates. Package trees signs, verifies
// and propagates over a walked tree: for each node it builds the payloads
// as values, asks the layout's store whether the node already carries them
// in a form that passes the trust this run's signer and witnesses imply
// (verified as verify verifies it), and writes only what is missing — a
// re-run over a signed tree writes nothing, and a re-run that adds evidence
// adds it.
package attest
