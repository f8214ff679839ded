package trees

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// attachSBOMs attaches an SPDX SBOM to every image of the tree, as ko
// does (the .sbom tag), and a CycloneDX one to app1's index as a
// referrer, as oras does; it returns the nodes that have none.
func attachSBOMs(t *testing.T, c *registry.Client, tree *walk.Tree) map[*walk.Node]bool {
	t.Helper()
	none := map[*walk.Node]bool{}
	for _, n := range tree.Nodes {
		switch {
		case n.Kind == walk.KindImage:
			attesttest.AttachSBOMTag(t, c, n.Repository, n.Descriptor.Digest, "text/spdx+json", attesttest.SPDX)
		case n.Path() == "app1":
			attesttest.AttachSBOMReferrer(t, c, n.Repository, v1.Descriptor{MediaType: n.Descriptor.MediaType, Digest: n.Descriptor.Digest, Size: n.Descriptor.Size},
				"application/vnd.cyclonedx+json", attesttest.CycloneDX)
		default:
			none[n] = true
		}
	}
	return none
}

// TestSignAttachedSBOMs: with Attached, every node that has an SBOM
// carries its attestation, the document byte for byte, the node its only
// subject, in both statement modes and every layout; the others are
// reported with none; a re-run writes nothing; verify checks the SBOMs
// where there are some and, with RequireSBOM, fails the images without.
func TestSignAttachedSBOMs(t *testing.T) {
	for _, l := range layouts {
		for _, mode := range []Statements{StatementsNode, StatementsTree} {
			t.Run(l.name+" "+string(mode), func(t *testing.T) {
				r := attesttest.NewRegistry(t, l.referrers)
				c := registry.NewClient(registry.Options{})
				tree := r.PushKo(t, c)
				none := attachSBOMs(t, c, tree)
				signer := loadTestKey(t)
				opts := signOpts(c, signer, l.stores()...)
				opts.Statements, opts.Attached = mode, SBOMs(c, nil)
				rep, err := Sign(context.Background(), tree, opts)
				if err != nil {
					t.Fatal(err)
				}
				for _, res := range rep.Results {
					if none[res.Node] != (len(res.Attached) == 0) {
						t.Errorf("%s: attached %d", res.Node.Path(), len(res.Attached))
					}
					for _, p := range res.Places {
						if p.Attestation != Written {
							t.Errorf("%s %s: attestation %s", res.Node.Path(), p.Repository, p.Attestation)
						}
					}
					for _, src := range res.Attached {
						checkSBOMAttested(t, c, l.stores(), res.Node, src)
					}
				}
				before := r.Writes()
				r.Reads()
				again, err := Sign(context.Background(), tree, opts)
				if err != nil || again.Tally().Present != len(tree.Nodes) || r.Writes() != before {
					t.Errorf("re-run: %+v, %d writes, %v", again.Tally(), r.Writes()-before, err)
				}
				// The SBOM finder and the stores list a node's referrers
				// and tags once between them.
				for path, n := range r.Reads() {
					if n > 1 && (strings.Contains(path, "/referrers/") || strings.Contains(path, "/manifests/sha256-")) {
						t.Errorf("re-run: %s read %d times", path, n)
					}
				}

				vopts := verifyOpts(c, keyTrust(signer), treeRequirements())
				vopts.Stores = l.stores()
				vopts.Require.SBOMTypes, vopts.Attached = []string{"spdxjson", "cyclonedx"}, SBOMs(c, nil)
				vrep, err := Verify(context.Background(), tree, vopts)
				if err != nil || len(failures(vrep)) != 0 {
					t.Fatalf("verify: %q %v", failures(vrep), err)
				}
				vopts.Require.RequireSBOM = true
				vrep, _ = Verify(context.Background(), tree, vopts)
				for _, v := range vrep.Verdicts {
					wantFail := none[v.Node] && v.Node.Kind == walk.KindImage
					if v.Passed() == wantFail {
						t.Errorf("--require-sbom: %s %s passed %v: %s", v.Node.Path(), v.Node.Kind, v.Passed(), v.Reasons())
					}
				}
			})
		}
	}
}

// checkSBOMAttested: n carries, in each store, an attestation of src's
// type whose predicate is src's document byte for byte and whose only
// subject is n.
func checkSBOMAttested(t *testing.T, c *registry.Client, stores []attest.Store, n *walk.Node, src *Source) {
	t.Helper()
	sub := subjectOfNode(n.Repository, n)
	for _, s := range stores {
		entries, err := s.List(context.Background(), c, sub)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range entries {
			signed, err := e.Load(context.Background())
			if err != nil || signed.Kind != attest.KindAttestation {
				continue
			}
			var st struct {
				PredicateType string            `json:"predicateType"`
				Subject       []json.RawMessage `json:"subject"`
			}
			if json.Unmarshal(signed.Payload, &st) != nil || st.PredicateType != src.PredicateType {
				continue
			}
			found = true
			if !strings.Contains(string(signed.Payload), `"predicate":`+string(src.Predicate)+"}") || len(st.Subject) != 1 {
				t.Errorf("%s %s: statement %s, want the SBOM byte for byte, one subject", n.Path(), s.Layout(), signed.Payload)
			}
		}
		if !found {
			t.Errorf("%s %s: no %s attestation", n.Path(), s.Layout(), src.PredicateType)
		}
	}
}

// TestVerifyAttachedSBOMUnattested: a node whose build attached an SBOM
// that is not attested fails an SBOM type, naming where the SBOM is; the
// nodes with none pass it.
func TestVerifyAttachedSBOMUnattested(t *testing.T) {
	_, tree, c, _, opts := signedKo(t)
	attachSBOMs(t, c, tree)
	opts.Require.SBOMTypes, opts.Attached = []string{"spdxjson"}, SBOMs(c, nil)
	rep, err := Verify(context.Background(), tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Verdicts {
		spdx := v.Node.Kind == walk.KindImage
		switch {
		case spdx && (v.Passed() || !strings.Contains(v.Reasons(), ".sbom")):
			t.Errorf("%s: passed %v: %s", v.Node.Path(), v.Passed(), v.Reasons())
		case !spdx && !v.Passed():
			t.Errorf("%s without an SPDX SBOM: %s", v.Node.Path(), v.Reasons())
		case v.NoSBOM == spdx: // app1's index has a CycloneDX SBOM, not checked
			t.Errorf("%s: NoSBOM %v", v.Node.Path(), v.NoSBOM)
		}
	}
}
