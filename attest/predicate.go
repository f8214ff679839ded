package attest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	slsa02 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v0.2"
	slsa1 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"

	"github.com/nestattest/nestattest/walk"
)

// BuildType is the SLSA build type of the default provenance: the
// externalParameters name the root of the tree (root), the node's
// repository path below it (path) and the node itself (node); under GitHub
// Actions also the workflow, as actions/attest-build-provenance records it.
const BuildType = "https://github.com/nestattest/nestattest/buildtypes/tree/v1"

// DefaultBuilderID identifies nestattest as the builder when nothing else
// does.
const DefaultBuilderID = "https://github.com/nestattest/nestattest"

// Predicates gives the predicate of each node's attestation.
type Predicates interface {
	// Type is the predicate type as `cosign attest --type` takes it: a
	// short name such as slsaprovenance1 or spdxjson, or a URI.
	Type() string
	// For returns the predicate JSON for a node of a tree.
	For(n *walk.Node) ([]byte, error)
}

// predicateTypes are the names `cosign attest --type` takes, with the
// predicate type URIs cosign gives them (cosign's options.PredicateTypeMap,
// built from the same constants without importing cosign's CLI).
var predicateTypes = map[string]string{
	"custom":           attestation.CosignCustomProvenanceV01,
	"slsaprovenance":   slsa02.PredicateSLSAProvenance,
	"slsaprovenance02": slsa02.PredicateSLSAProvenance,
	"slsaprovenance1":  slsa1.PredicateSLSAProvenance,
	"spdx":             in_toto.PredicateSPDX,
	"spdxjson":         in_toto.PredicateSPDX,
	"cyclonedx":        in_toto.PredicateCycloneDX,
	"link":             in_toto.PredicateLinkV1,
	"vuln":             attestation.CosignVulnProvenanceV01,
	"openvex":          attestation.OpenVexNamespace,
}

// PredicateURI returns the predicate type URI of a cosign type name or URI,
// as cosign's options.ParsePredicateType does.
func PredicateURI(typ string) (string, error) {
	if uri, ok := predicateTypes[typ]; ok {
		return uri, nil
	}
	if _, err := url.ParseRequestURI(typ); err != nil {
		return "", fmt.Errorf("%w: type %q: want slsaprovenance, slsaprovenance02, slsaprovenance1, link, spdx, spdxjson, cyclonedx, vuln, openvex, custom, or a URI", ErrPredicate, typ)
	}
	return typ, nil
}

// FilePredicate is the user's predicate, the same for every node, like
// `cosign attest --predicate FILE --type T`.
type FilePredicate struct {
	PredicateType string
	Raw           []byte
}

// Type implements Predicates.
func (p FilePredicate) Type() string { return p.PredicateType }

// For implements Predicates.
func (p FilePredicate) For(*walk.Node) ([]byte, error) { return p.Raw, nil }

// Provenance is the default predicate: SLSA v1.0 provenance for each node.
type Provenance struct {
	// BuilderID is runDetails.builder.id; DefaultBuilderID when empty.
	BuilderID string
	// InvocationID is runDetails.metadata.invocationId, such as a Tekton
	// TaskRun or a GitHub Actions run URL.
	InvocationID string
	// StartedOn and FinishedOn are the run's times; zero leaves them out.
	StartedOn, FinishedOn time.Time
	// GitHub, when set, fills what actions/attest-build-provenance records.
	GitHub *GitHubContext
}

// Type implements Predicates.
func (p Provenance) Type() string { return "slsaprovenance1" }

// For implements Predicates.
func (p Provenance) For(n *walk.Node) ([]byte, error) {
	root := n.Root()
	external := map[string]any{
		"root": root.Digest().String(),
		"path": n.Path(),
		"node": n.Digest().String(),
	}
	pred := slsa1.ProvenancePredicate{
		BuildDefinition: slsa1.ProvenanceBuildDefinition{BuildType: BuildType, ExternalParameters: external},
		RunDetails: slsa1.ProvenanceRunDetails{
			Builder:       slsa1.Builder{ID: p.BuilderID},
			BuildMetadata: slsa1.BuildMetadata{InvocationID: p.InvocationID},
		},
	}
	if p.GitHub != nil {
		p.GitHub.fill(&pred)
	}
	if pred.RunDetails.Builder.ID == "" {
		pred.RunDetails.Builder.ID = DefaultBuilderID
	}
	if !p.StartedOn.IsZero() {
		t := p.StartedOn.UTC()
		pred.RunDetails.BuildMetadata.StartedOn = &t
	}
	if !p.FinishedOn.IsZero() {
		t := p.FinishedOn.UTC()
		pred.RunDetails.BuildMetadata.FinishedOn = &t
	}
	return json.Marshal(pred)
}

// GitHubContext is what a GitHub Actions run says about itself in its
// GITHUB_* and RUNNER_* variables.
type GitHubContext struct {
	ServerURL, Repository, RepositoryID, RepositoryOwnerID string
	WorkflowRef, Ref, SHA, EventName, RunID, RunAttempt    string
	RunnerEnvironment                                      string
}

// GitHubFromEnv reads the context of a GitHub Actions run, or returns nil
// outside one.
func GitHubFromEnv(getenv func(string) string) *GitHubContext {
	if getenv("GITHUB_ACTIONS") != "true" {
		return nil
	}
	g := &GitHubContext{
		ServerURL: getenv("GITHUB_SERVER_URL"), Repository: getenv("GITHUB_REPOSITORY"),
		RepositoryID: getenv("GITHUB_REPOSITORY_ID"), RepositoryOwnerID: getenv("GITHUB_REPOSITORY_OWNER_ID"),
		WorkflowRef: getenv("GITHUB_WORKFLOW_REF"), Ref: getenv("GITHUB_REF"), SHA: getenv("GITHUB_SHA"),
		EventName: getenv("GITHUB_EVENT_NAME"), RunID: getenv("GITHUB_RUN_ID"), RunAttempt: getenv("GITHUB_RUN_ATTEMPT"),
		RunnerEnvironment: getenv("RUNNER_ENVIRONMENT"),
	}
	if g.ServerURL == "" {
		g.ServerURL = "https://github.com"
	}
	return g
}

// fill records the workflow the way actions/attest-build-provenance does:
// builder id from the workflow ref, the workflow in externalParameters, the
// github context in internalParameters, the commit as a resolved
// dependency, and the run attempt URL as invocation id.
func (g *GitHubContext) fill(pred *slsa1.ProvenancePredicate) {
	repoURL := g.ServerURL + "/" + g.Repository
	path, _, _ := cutPrefixAt(g.WorkflowRef, g.Repository+"/")
	external := pred.BuildDefinition.ExternalParameters.(map[string]any)
	external["workflow"] = map[string]string{"ref": g.Ref, "repository": repoURL, "path": path}
	pred.BuildDefinition.InternalParameters = map[string]any{"github": map[string]string{
		"event_name": g.EventName, "repository_id": g.RepositoryID,
		"repository_owner_id": g.RepositoryOwnerID, "runner_environment": g.RunnerEnvironment,
	}}
	if g.SHA != "" {
		pred.BuildDefinition.ResolvedDependencies = []slsa1.ResourceDescriptor{{
			URI: "git+" + repoURL + "@" + g.Ref, Digest: map[string]string{"gitCommit": g.SHA},
		}}
	}
	if pred.RunDetails.Builder.ID == "" && g.WorkflowRef != "" {
		pred.RunDetails.Builder.ID = g.ServerURL + "/" + g.WorkflowRef
	}
	if pred.RunDetails.BuildMetadata.InvocationID == "" && g.RunID != "" {
		pred.RunDetails.BuildMetadata.InvocationID = fmt.Sprintf("%s/actions/runs/%s/attempts/%s", repoURL, url.PathEscape(g.RunID), url.PathEscape(g.RunAttempt))
	}
}

// cutPrefixAt returns the part of a workflow ref between the repository and
// the "@ref": ".github/workflows/release.yml".
func cutPrefixAt(workflowRef, prefix string) (string, string, bool) {
	rest := workflowRef
	if len(rest) >= len(prefix) && rest[:len(prefix)] == prefix {
		rest = rest[len(prefix):]
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] == '@' {
			return rest[:i], rest[i+1:], true
		}
	}
	return rest, "", false
}
