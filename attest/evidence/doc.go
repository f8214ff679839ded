// Package evidence holds the witnesses of a signing run: what adds
// evidence to a payload once it is signed, so that it verifies later and
// elsewhere. A TlogWitness logs each signed payload in a transparency log
// (Rekor v1 or v2) and keeps the entry; a TimestampWitness has an RFC 3161
// timestamp authority countersign each signature.
//
// Each witness is an attest.Witness: it adds its evidence to an
// attest.Signed before a layout stores it, and says with Require what a
// verifier then requires of a signature in each layout, which is how a
// re-run tells a node signed without the evidence from one signed with it.
// A new kind of evidence is a new witness here; attest does not change.
package evidence
