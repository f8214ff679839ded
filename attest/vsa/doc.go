// Package vsa makes SLSA Verification Summary Attestations
// (https://slsa.dev/verification_summary/v1, spec v1.2) for the nodes a
// verify run passed: one signed verdict a deployment gate checks instead
// of re-running the whole policy.
//
// A summary names the verifier (this tool and its version), when it
// verified, the resource (the node by digest), the policy (a canonical
// JSON document of what was required — whom to trust, the predicate
// types, the SBOM rules, the annotations, the root — by its digest, and a
// URI a person can read it at), the signatures and attestations that
// passed (inputAttestations, each by the digest of what is stored:
// attest.Entry.Digest), PASSED, and the levels the checks justify (Levels).
//
// Only nodes that passed get one. A node that failed gets none, not a
// FAILED one: a gate must treat a missing PASSED summary as a refusal
// anyway (anyone who can delete a referrer can withhold a FAILED one), and
// a gate that checks only that some summary is there would admit a
// FAILED one.
package vsa
