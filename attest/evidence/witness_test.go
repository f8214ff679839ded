package evidence

import (
	"testing"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/bundle"
	"github.com/nestattest/nestattest/attest/legacy"
)

// TestTlogWitnessRequire: the legacy layout keeps Rekor v1 entries only,
// so a Rekor v2 log requires an entry in bundles alone.
func TestTlogWitnessRequire(t *testing.T) {
	for _, tc := range []struct {
		version uint32
		store   attest.Store
		want    bool
	}{{0, legacy.Store{}, true}, {1, legacy.Store{}, true}, {2, legacy.Store{}, false}, {1, &bundle.Store{}, true}, {2, &bundle.Store{}, true}} {
		p := attest.Trust{IgnoreTlog: true}
		(&TlogWitness{Version: tc.version}).Require(&p, tc.store.Keeps())
		if got := !p.IgnoreTlog; got != tc.want {
			t.Errorf("Rekor v%d, %s: entry required %v, want %v", tc.version, tc.store.Layout(), got, tc.want)
		}
	}
}
