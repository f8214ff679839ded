// Package conforma tests the Conforma policy rule of docs/policy/conforma
// with Open Policy Agent's own Go library (github.com/open-policy-agent/opa
// v1.22.4, v1/rego), on the input Conforma's rules receive, built from the
// provenance Tekton Chains' own code writes and the tree `nestattest tree`
// reads. A module of its own, so that the nestattest module does not
// require OPA, whose graph raises golang.org/x, OpenTelemetry and gRPC.
package conforma
