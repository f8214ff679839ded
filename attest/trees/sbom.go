package trees

import (
	"context"
	"fmt"

	"github.com/nestattest/nestattest/attest/sbom"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// SBOMs finds, through c, the SBOMs each node's build attached to it in
// its own repository (package sbom: cosign's .sbom tag, SBOM referrers),
// each as a Source whose predicate is the document byte for byte and
// whose predicate type is its format's: what Options.Attached and
// VerifyOptions.Attached take. skipped, if set, hears of each SBOM found
// but not attested (not JSON SPDX or CycloneDX), from any goroutine.
func SBOMs(c *registry.Client, skipped func(*walk.Node, sbom.Skipped)) func(context.Context, *walk.Node) ([]*Source, error) {
	return func(ctx context.Context, n *walk.Node) ([]*Source, error) {
		f, err := sbom.Find(ctx, c, n.Repository, n.Descriptor.Digest)
		if err != nil {
			return nil, fmt.Errorf("find its SBOMs: %w", err)
		}
		if skipped != nil {
			for _, s := range f.Skipped {
				skipped(n, s)
			}
		}
		var out []*Source
		for _, s := range f.SBOMs {
			out = append(out, &Source{PredicateType: s.Format.PredicateType(), Predicate: s.Raw, Digest: s.Digest, Where: s.Where})
		}
		return out, nil
	}
}
