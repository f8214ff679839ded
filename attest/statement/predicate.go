package statement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/in-toto/in-toto-golang/in_toto"
	slsa02 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v0.2"
	slsa1 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"

	"github.com/nestattest/nestattest/catalog"
	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// BuildType is the SLSA build type of the default provenance. Its URL is the
// page that documents it: what externalParameters, resolvedDependencies and
// byproducts hold for a run that signs a tree, or composes one and signs it.
const BuildType = "https://github.com/nestattest/nestattest/blob/main/docs/buildtype/v1.md"

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
	// ForTree returns the predicate JSON of one statement whose subjects
	// are nodes of the tree below root (sign --statements tree): what it
	// says of each of them.
	ForTree(root *walk.Node) ([]byte, error)
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

// ForTree implements Predicates.
func (p FilePredicate) ForTree(*walk.Node) ([]byte, error) { return p.Raw, nil }

// Provenance is the default predicate: SLSA v1.0 provenance of the run,
// the same for every node, each node its subject (BuildType documents it).
type Provenance struct {
	// BuilderID is runDetails.builder.id; DefaultBuilderID when empty.
	BuilderID string
	// InvocationID is runDetails.metadata.invocationId, such as a Tekton
	// TaskRun's uid or a GitHub Actions run URL.
	InvocationID string
	// StartedOn and FinishedOn are the run's times; zero leaves them out.
	StartedOn, FinishedOn time.Time
	// GitHub, when set, fills what actions/attest-build-provenance records.
	GitHub *GitHubContext
	// Parameters are the externalParameters: what the run was asked to do.
	// Nil records the root by digest as the reference.
	Parameters *Parameters
	// Inputs are the resolvedDependencies: the children a composed root was
	// composed from (Composed). Nil records the root the run was given.
	Inputs []Artifact
	// Byproducts are the copies of those children that stand in the root's
	// repository, mirrored there so the registry accepts the root.
	Byproducts []Artifact
}

// Parameters are a run's externalParameters: the root as given and what
// bounded the walk, and how the root was composed when it was.
type Parameters struct {
	// Reference is the root as the run was given it: a tag or a digest.
	Reference string `json:"reference"`
	// Walk bounds the walk of the tree.
	Walk *WalkParameters `json:"walk,omitempty"`
	// Compose is there when the run composed the root from children.
	Compose *ComposeParameters `json:"compose,omitempty"`
}

// WalkParameters are the bounds of a walk (walk.Options).
type WalkParameters struct {
	MaxDepth     int  `json:"maxDepth"`
	MaxNodes     int  `json:"maxNodes"`
	AllowMissing bool `json:"allowMissing"`
}

// ComposeParameters say how a root was composed (catalog.Options).
type ComposeParameters struct {
	Mirror           string            `json:"mirror"`
	Discover         bool              `json:"discover"`
	ChildTag         string            `json:"childTag,omitempty"`
	IndexAnnotations map[string]string `json:"indexAnnotations,omitempty"`
}

// Artifact is a manifest in a repository, for resolvedDependencies and
// byproducts: uri oci://<repository> (as Tekton Chains names images),
// its digest and media type, named by its path below the root.
type Artifact struct {
	Path       string
	Repository string
	Digest     string
	MediaType  string
}

// descriptor is the artifact as an in-toto resource descriptor.
func (a Artifact) descriptor() (slsa1.ResourceDescriptor, error) {
	h, err := v1.NewHash(a.Digest)
	if err != nil {
		return slsa1.ResourceDescriptor{}, fmt.Errorf("%w: %s: %v", ErrPredicate, a.Repository, err)
	}
	return slsa1.ResourceDescriptor{
		Name: a.Path, URI: "oci://" + a.Repository, Digest: map[string]string{h.Algorithm: h.Hex}, MediaType: a.MediaType,
	}, nil
}

func descriptors(as []Artifact) ([]slsa1.ResourceDescriptor, error) {
	var out []slsa1.ResourceDescriptor
	for _, a := range as {
		d, err := a.descriptor()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Type implements Predicates.
func (p Provenance) Type() string { return "slsaprovenance1" }

// For implements Predicates.
func (p Provenance) For(n *walk.Node) ([]byte, error) {
	def, err := p.definition(n.Root(), n)
	if err != nil {
		return nil, err
	}
	return p.predicate(def)
}

// ForTree implements Predicates: internalParameters.tree names the root
// only; each subject's name, its repository, tells where it stands.
func (p Provenance) ForTree(root *walk.Node) ([]byte, error) {
	def, err := p.definition(root, nil)
	if err != nil {
		return nil, err
	}
	return p.predicate(def)
}

func (p Provenance) predicate(def slsa1.ProvenanceBuildDefinition) ([]byte, error) {
	var err error
	pred := slsa1.ProvenancePredicate{
		BuildDefinition: def,
		RunDetails: slsa1.ProvenanceRunDetails{
			Builder:       slsa1.Builder{ID: p.BuilderID},
			BuildMetadata: slsa1.BuildMetadata{InvocationID: p.InvocationID},
		},
	}
	if pred.RunDetails.Byproducts, err = descriptors(p.Byproducts); err != nil {
		return nil, err
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

// definition is the buildDefinition: the parameters, the inputs (the root
// the run was given when it composed nothing), and where in the tree the
// run met the node: the root by digest and, for one node n, its path below
// it.
func (p Provenance) definition(root, n *walk.Node) (slsa1.ProvenanceBuildDefinition, error) {
	params := Parameters{Reference: root.Digest().String()}
	if p.Parameters != nil {
		params = *p.Parameters
	}
	external := map[string]any{"reference": params.Reference}
	if params.Walk != nil {
		external["walk"] = params.Walk
	}
	if params.Compose != nil {
		external["compose"] = params.Compose
	}
	inputs := p.Inputs
	if inputs == nil && root.Descriptor.Digest.Hex != "" {
		inputs = []Artifact{{Path: ".", Repository: root.Repository.Name(), Digest: root.Descriptor.Digest.String(), MediaType: string(root.Descriptor.MediaType)}}
	}
	deps, err := descriptors(inputs)
	if err != nil {
		return slsa1.ProvenanceBuildDefinition{}, err
	}
	return slsa1.ProvenanceBuildDefinition{
		BuildType: BuildType, ExternalParameters: external, ResolvedDependencies: deps,
		InternalParameters: map[string]any{"tree": treeParameters(root, n)},
	}, nil
}

func treeParameters(root, n *walk.Node) map[string]string {
	t := map[string]string{"root": root.Digest().String()}
	if n != nil {
		t["path"] = n.Path()
	}
	return t
}

// Composed returns the provenance of a run that composed its root as res
// says: the children as resolvedDependencies and, as byproducts, their
// copies standing in the root's repository. A run that mirrored knows
// which it mirrored; otherwise each child is looked for there (one HEAD a
// child, jobs at once), so a re-run that finds the copies in place says
// what the first run said and attests nothing new.
func (p Provenance) Composed(ctx context.Context, c *registry.Client, res *catalog.Result, jobs int) (Provenance, error) {
	parent, err := name.NewRepository(res.Repository, name.WeakValidation)
	if err != nil {
		return p, err
	}
	p.Inputs = make([]Artifact, 0, len(res.Children))
	there := make([]bool, len(res.Children))
	errs := make([]error, len(res.Children))
	pool.ForEach(len(res.Children), jobs, func(i int) {
		ch := res.Children[i]
		if there[i] = ch.Mirrored; there[i] || res.Mirrored {
			return
		}
		there[i], errs[i] = lookFor(ctx, c, parent, ch)
	})
	if err := errors.Join(errs...); err != nil {
		return p, err
	}
	p.Byproducts = nil
	for i, ch := range res.Children {
		a := Artifact{Path: ch.Path, Repository: ch.Repository, Digest: ch.Digest, MediaType: string(ch.MediaType)}
		p.Inputs = append(p.Inputs, a)
		if there[i] {
			a.Repository = res.Repository
			p.Byproducts = append(p.Byproducts, a)
		}
	}
	return p, nil
}

// lookFor reports whether a child's manifest stands in the parent
// repository.
func lookFor(ctx context.Context, c *registry.Client, parent name.Repository, ch catalog.ChildResult) (bool, error) {
	h, err := v1.NewHash(ch.Digest)
	if err != nil {
		return false, err
	}
	ok, err := c.HasManifest(ctx, parent, v1.Descriptor{MediaType: ch.MediaType, Digest: h, Size: ch.Size})
	if err != nil {
		return false, fmt.Errorf("look for %s's copy in %s: %w", ch.Path, parent, err)
	}
	return ok, nil
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
	internal, _ := pred.BuildDefinition.InternalParameters.(map[string]any)
	if internal == nil {
		internal = map[string]any{}
	}
	internal["github"] = map[string]string{
		"event_name": g.EventName, "repository_id": g.RepositoryID,
		"repository_owner_id": g.RepositoryOwnerID, "runner_environment": g.RunnerEnvironment,
	}
	pred.BuildDefinition.InternalParameters = internal
	if g.SHA != "" {
		pred.BuildDefinition.ResolvedDependencies = append(pred.BuildDefinition.ResolvedDependencies, slsa1.ResourceDescriptor{
			URI: "git+" + repoURL + "@" + g.Ref, Digest: map[string]string{"gitCommit": g.SHA},
		})
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
