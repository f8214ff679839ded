package vsa

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/walk"
)

// PredicateType is the VSA's predicate type.
const PredicateType = "https://slsa.dev/verification_summary/v1"

// VerifierID identifies nestattest as the verifier.
const VerifierID = "https://github.com/nestattest/nestattest"

// Passed is the verificationResult of every summary written here.
const Passed = "PASSED"

// BuildLevel1 is the level a verified SLSA provenance justifies: the
// node carries provenance, signed by the trusted identity, naming its
// digest. Higher build levels are not claimed: they need the builder to be
// a hardened, hosted platform, which a key or a certificate identity alone
// does not tell.
const BuildLevel1 = "SLSA_BUILD_LEVEL_1"

// provenanceTypes are the predicate types of SLSA provenance.
var provenanceTypes = []string{"https://slsa.dev/provenance/v0.2", "https://slsa.dev/provenance/v1"}

// Policy is the canonical policy document a summary names by digest:
// what verify required of every node.
type Policy struct {
	// Verifier is VerifierID.
	Verifier string `json:"verifier"`
	// Trust is whose signatures were accepted, and what evidence they had
	// to carry.
	Trust PolicyTrust `json:"trust"`
	// PredicateTypes are the attestations every node had to carry, as URIs.
	PredicateTypes []string `json:"predicateTypes"`
	// SBOMTypes were checked where a node had an SBOM; RequireSBOM made
	// every image have one.
	SBOMTypes   []string `json:"sbomTypes,omitempty"`
	RequireSBOM bool     `json:"requireSBOM,omitempty"`
	// Annotations every signature had to carry; Root, the root every
	// signature below it had to be bound to (repository@digest).
	Annotations map[string]string `json:"annotations,omitempty"`
	Root        string            `json:"root,omitempty"`
	// Mirrors: mirrored copies were checked too.
	Mirrors bool `json:"mirrors,omitempty"`
}

// PolicyTrust is the trust part of a Policy.
type PolicyTrust struct {
	// Key is the trusted key's sha256 fingerprint (of its PKIX encoding).
	Key string `json:"key,omitempty"`
	// Identity is the trusted keyless identity.
	Identity *attest.CertificateIdentity `json:"identity,omitempty"`
	// TransparencyLog, SignedTimestamps and SCT say which evidence was
	// required.
	TransparencyLog  bool `json:"transparencyLog"`
	SignedTimestamps bool `json:"signedTimestamps"`
	SCT              bool `json:"sct"`
}

// NewPolicy is the policy a verify run checked against: trust, req and,
// with req.RequireRoot, root (repository@digest).
func NewPolicy(trust attest.Trust, req attest.Requirements, root string, mirrors bool) (Policy, error) {
	p := Policy{Verifier: VerifierID, Annotations: req.Annotations, RequireSBOM: req.RequireSBOM, Mirrors: mirrors, PredicateTypes: []string{}}
	p.Trust = PolicyTrust{Identity: trust.Identity, TransparencyLog: !trust.IgnoreTlog, SignedTimestamps: trust.UseSignedTimestamps, SCT: trust.Identity != nil && !trust.IgnoreSCT}
	if trust.Key != nil {
		der, err := x509.MarshalPKIXPublicKey(trust.Key)
		if err != nil {
			return Policy{}, fmt.Errorf("the trusted key: %w", err)
		}
		sum := sha256.Sum256(der)
		p.Trust.Key = "sha256:" + hex.EncodeToString(sum[:])
	}
	for _, t := range req.Types {
		uri, err := statement.PredicateURI(t)
		if err != nil {
			return Policy{}, err
		}
		p.PredicateTypes = append(p.PredicateTypes, uri)
	}
	for _, t := range req.SBOMTypes {
		uri, err := statement.PredicateURI(t)
		if err != nil {
			return Policy{}, err
		}
		p.SBOMTypes = append(p.SBOMTypes, uri)
	}
	slices.Sort(p.PredicateTypes)
	slices.Sort(p.SBOMTypes)
	if req.RequireRoot {
		p.Root = root
	}
	return p, nil
}

// Canonical is the policy as a JSON document: fields in a fixed order,
// map keys sorted, no insignificant space; the same policy gives the same
// bytes.
func (p Policy) Canonical() []byte {
	b, _ := json.Marshal(p) // only strings, bools and string maps
	return b
}

// Digest is the canonical document's digest.
func (p Policy) Digest() v1.Hash { return statement.Digest(p.Canonical()) }

// URI is a URI a person reads the canonical document at: a data: URI of
// the document itself, so that the summary says what was required without
// anything to fetch, and its digest can be checked.
func (p Policy) URI() string {
	return "data:application/json," + url.PathEscape(string(p.Canonical()))
}

// ResourceDescriptor is an in-toto resource descriptor.
type ResourceDescriptor struct {
	URI    string            `json:"uri,omitempty"`
	Digest map[string]string `json:"digest"`
}

// Verifier is the VSA's verifier.
type Verifier struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// Predicate is a verification summary, spec v1.2.
type Predicate struct {
	Verifier           Verifier             `json:"verifier"`
	TimeVerified       string               `json:"timeVerified"`
	ResourceURI        string               `json:"resourceUri"`
	Policy             ResourceDescriptor   `json:"policy"`
	InputAttestations  []ResourceDescriptor `json:"inputAttestations"`
	VerificationResult string               `json:"verificationResult"`
	VerifiedLevels     []string             `json:"verifiedLevels"`
	SLSAVersion        string               `json:"slsaVersion"`
}

// Summaries are the statement.Predicates of verify --vsa-key: a summary
// for each node that passed, or one for them all.
type Summaries struct {
	// Policy is what was required.
	Policy Policy
	// PolicyURI overrides Policy.URI, when set.
	PolicyURI string
	// Version is this tool's version.
	Version string
	// Time is when the tree was verified.
	Time time.Time
	// Verdicts are the verdicts of the nodes that passed.
	Verdicts []trees.Verdict

	once   sync.Once
	byNode map[*walk.Node]trees.Verdict
}

// Type implements statement.Predicates.
func (s *Summaries) Type() string { return PredicateType }

// For implements statement.Predicates: the summary of n, its resource the
// node by digest, its inputs what its checks passed with. Only the nodes
// of Verdicts are to be given one (trees.SignNodes with them alone); for
// another, it is a summary of nothing verified.
func (s *Summaries) For(n *walk.Node) ([]byte, error) {
	s.once.Do(func() {
		s.byNode = make(map[*walk.Node]trees.Verdict, len(s.Verdicts))
		for _, v := range s.Verdicts {
			if v.Passed() {
				s.byNode[v.Node] = v
			}
		}
	})
	var vs []trees.Verdict
	if v, ok := s.byNode[n]; ok {
		vs = append(vs, v)
	}
	return s.predicate(ResourceURI(n), vs)
}

// ForTree implements statement.Predicates: one summary of every node that
// passed, its resource the root, its inputs what every node's checks
// passed with, its levels those every node earned.
func (s *Summaries) ForTree(root *walk.Node) ([]byte, error) {
	return s.predicate(ResourceURI(root), s.Verdicts)
}

// ResourceURI names a node by digest: oci://<repository>@<digest>.
func ResourceURI(n *walk.Node) string { return "oci://" + n.Digest().String() }

func (s *Summaries) predicate(resource string, verdicts []trees.Verdict) ([]byte, error) {
	uri := s.PolicyURI
	if uri == "" {
		uri = s.Policy.URI()
	}
	d := s.Policy.Digest()
	p := Predicate{
		Verifier:           Verifier{ID: VerifierID, Version: map[string]string{"nestattest": s.Version}},
		TimeVerified:       s.Time.UTC().Format(time.RFC3339),
		ResourceURI:        resource,
		Policy:             ResourceDescriptor{URI: uri, Digest: map[string]string{d.Algorithm: d.Hex}},
		InputAttestations:  inputs(verdicts),
		VerificationResult: Passed,
		VerifiedLevels:     Levels(s.Policy, verdicts),
		SLSAVersion:        "1.1",
	}
	return json.Marshal(p)
}

// inputs are the stored signatures and attestations the verdicts' checks
// passed with, each once, in order.
func inputs(verdicts []trees.Verdict) []ResourceDescriptor {
	out := []ResourceDescriptor{}
	seen := map[string]bool{}
	for _, v := range verdicts {
		for _, c := range v.Checks {
			if !c.OK || c.Input == nil || c.Input.Digest.Hex == "" {
				continue
			}
			k := c.Input.Where + " " + c.Input.Digest.String()
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, ResourceDescriptor{URI: c.Input.Where, Digest: map[string]string{c.Input.Digest.Algorithm: c.Input.Digest.Hex}})
		}
	}
	return out
}

// Levels are the levels the policy's checks justify for every verdict:
// SLSA_BUILD_LEVEL_1 where SLSA provenance was required (and so verified),
// else none.
func Levels(p Policy, verdicts []trees.Verdict) []string {
	for _, t := range p.PredicateTypes {
		if slices.Contains(provenanceTypes, t) && len(verdicts) > 0 {
			return []string{BuildLevel1}
		}
	}
	return []string{}
}

// Write gives every node of rep that passed a signed summary, through
// trees.SignNodes with o (its signer, witnesses, stores, client and
// statement mode): attestations alone, no signature, s the predicates.
// With trees.StatementsTree, one summary names every node that passed
// (up to statement.MaxSubjects a statement). A node that failed gets
// none. A summary there already that says the same (whenever verified)
// is not written again.
func Write(ctx context.Context, tree *walk.Tree, rep *trees.VerifyReport, s *Summaries, o trees.Options) (*trees.Report, error) {
	var nodes []*walk.Node
	s.Verdicts = nil
	for _, v := range rep.Verdicts {
		if v.Passed() && v.Node.Kind != walk.KindMissing {
			nodes = append(nodes, v.Node)
			s.Verdicts = append(s.Verdicts, v)
		}
	}
	if len(nodes) == 0 {
		return &trees.Report{}, nil
	}
	o.Predicates, o.AttestOnly, o.Propagate, o.Attached, o.Annotations, o.BindRoot = s, true, nil, nil, nil, false
	return trees.SignNodes(ctx, tree, nodes, o)
}
