package evidence

import (
	"testing"

	"github.com/nestattest/nestattest/attest"
)

// TestTlogWitnessRequire: the legacy layout keeps Rekor v1 entries only,
// so a Rekor v2 log requires an entry in bundles alone.
func TestTlogWitnessRequire(t *testing.T) {
	for _, tc := range []struct {
		version uint32
		layout  attest.Layout
		want    bool
	}{{0, attest.LayoutLegacy, true}, {1, attest.LayoutLegacy, true}, {2, attest.LayoutLegacy, false}, {1, attest.LayoutBundle, true}, {2, attest.LayoutBundle, true}} {
		p := attest.Trust{IgnoreTlog: true}
		(&TlogWitness{Version: tc.version}).Require(&p, tc.layout)
		if got := !p.IgnoreTlog; got != tc.want {
			t.Errorf("Rekor v%d, %s: entry required %v, want %v", tc.version, tc.layout, got, tc.want)
		}
	}
}
