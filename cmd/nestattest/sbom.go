package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest/sbom"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// The values of sign's --sbom.
const (
	sbomNone     = "none"
	sbomAttached = "attached"
)

// sbomOptions is sign's --sbom: whether to attest what each node's build
// attached as its SBOM.
type sbomOptions struct {
	mode string
}

func (o *sbomOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.mode, "sbom", sbomNone,
		"attached: also attest, on every node, each SBOM its build attached (cosign's sha256-<hex>.sbom tag, as ko writes; "+
			"an OCI 1.1 referrer of an SBOM artifact type, as oras attach writes), the document byte for byte as the predicate "+
			"(spdxjson, cyclonedx) and the node its only subject; the report names the nodes that have none. "+
			"For one SBOM file for every node, use --predicate FILE --type spdxjson")
}

// check refuses anything but none and attached, saying what to use for a
// file.
func (o *sbomOptions) check() error {
	switch o.mode {
	case sbomNone, sbomAttached:
		return nil
	}
	if _, err := os.Stat(o.mode); err == nil {
		return usagef("--sbom %s: --sbom takes attached or none, not a file; to attest one SBOM file for every node, use --predicate %s --type spdxjson (or cyclonedx)", o.mode, o.mode)
	}
	return usagef("--sbom %q: want %s or %s", o.mode, sbomAttached, sbomNone)
}

// sbomFinder finds the SBOMs attached to each node and remembers those it
// passed over, to report them.
type sbomFinder struct {
	mu      sync.Mutex
	skipped []sbomSkipped
}

type sbomSkipped struct {
	Path       string `json:"path"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Where      string `json:"where"`
	MediaType  string `json:"mediaType"`
	Reason     string `json:"reason"`
}

// attached is what trees.Options.Attached takes, or nil without --sbom
// attached.
func (o *sbomOptions) attached(c *registry.Client, f *sbomFinder) func(context.Context, *walk.Node) ([]*trees.Source, error) {
	if o.mode != sbomAttached {
		return nil
	}
	return trees.SBOMs(c, f.skip)
}

func (f *sbomFinder) skip(n *walk.Node, s sbom.Skipped) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skipped = append(f.skipped, sbomSkipped{Path: n.Path(), Repository: n.Repository.Name(), Digest: n.Descriptor.Digest.String(),
		Where: s.Where, MediaType: s.MediaType, Reason: s.Reason})
}

// sbomDoc is the SBOM part of sign's JSON report, with --sbom attached.
type sbomDoc struct {
	// Attested counts the nodes with at least one SBOM attested.
	Attested int `json:"attested"`
	// None are the nodes with no SBOM attached (or none attestable).
	None []nodeRef `json:"none"`
	// Skipped are SBOMs attached but not attested, and why.
	Skipped []sbomSkipped `json:"skipped,omitempty"`
}

type nodeRef struct {
	Path       string `json:"path"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Kind       string `json:"kind"`
}

// sbomRef is one SBOM a node's build attached, as sign's report lists it.
type sbomRef struct {
	PredicateType string `json:"predicateType"`
	From          string `json:"from"`
	Digest        string `json:"digest"`
}

func sbomRefs(srcs []*trees.Source) []sbomRef {
	var out []sbomRef
	for _, s := range srcs {
		out = append(out, sbomRef{PredicateType: s.PredicateType, From: s.Where, Digest: s.Digest.String()})
	}
	return out
}

// newSBOMDoc sums up the SBOMs of a run's nodes that were read.
func newSBOMDoc(rep *trees.Report, f *sbomFinder) *sbomDoc {
	d := &sbomDoc{None: []nodeRef{}}
	for _, r := range rep.Results {
		switch {
		case r.Err != nil || r.Outcome() == trees.Pending:
		case len(r.Attached) > 0:
			d.Attested++
		default:
			d.None = append(d.None, nodeRef{Path: r.Node.Path(), Repository: r.Node.Repository.Name(), Digest: r.Node.Descriptor.Digest.String(), Kind: string(r.Node.Kind)})
		}
	}
	if f != nil {
		f.mu.Lock()
		d.Skipped = append(d.Skipped, f.skipped...)
		f.mu.Unlock()
	}
	return d
}

// String is the report's SBOM line for people.
func (d *sbomDoc) String() string {
	s := fmt.Sprintf("SBOMs: %s with theirs attested", plural(d.Attested, "node"))
	if len(d.None) > 0 {
		s += fmt.Sprintf("; none attached to %s:", plural(len(d.None), "node"))
		for i, n := range d.None {
			if i == 10 {
				s += fmt.Sprintf(" … and %d more (-o json lists them)", len(d.None)-i)
				break
			}
			s += fmt.Sprintf(" %s %s (%s)", n.Path, shortDigest(n.Digest), n.Kind)
			if i < len(d.None)-1 {
				s += ","
			}
		}
	}
	for _, k := range d.Skipped {
		s += fmt.Sprintf("\n  not attested: %s on %s %s: %s", k.Where, k.Path, k.Digest, k.Reason)
	}
	return s
}
