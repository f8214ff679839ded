package trees

import (
	"context"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/bundle"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/legacy"
	"github.com/nestattest/nestattest/registry"
)

// TestRerunAddsMissingTimestamps signs the ko tree in both layouts without
// a timestamp authority, then again with one: the second run writes a
// timestamped signature and attestation on every node (verify requiring
// timestamps fails before it and passes after), and a third writes
// nothing. With a key, and keyless.
func TestRerunAddsMissingTimestamps(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	authority := newShortCA(t, time.Hour)
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{authority.Authority()}, nil, vs.TimestampingAuthorities(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keyless := func(t *testing.T) (attest.Signer, attest.Trust) {
		return newTestKeyless(t, authority, tr), attest.Trust{Identity: &attest.CertificateIdentity{Subject: testIdentity, Issuer: testIssuer}, IgnoreSCT: true}
	}
	key := func(t *testing.T) (attest.Signer, attest.Trust) {
		s := loadTestKey(t)
		return s, attest.Trust{Key: s.Identity().Key}
	}
	for _, tc := range []struct {
		name   string
		signer func(t *testing.T) (attest.Signer, attest.Trust)
	}{{"key", key}, {"keyless", keyless}} {
		t.Run(tc.name, func(t *testing.T) {
			r := attesttest.NewRegistry(t, true)
			c := registry.NewClient(registry.Options{})
			tree := r.PushKo(t, c)
			signer, trust := tc.signer(t)
			trust.TrustedMaterial, trust.IgnoreTlog, trust.UseSignedTimestamps = tr, true, true
			verified := func(layout attest.Layout) int {
				vr, err := Verify(ctx, tree, verifyOptsIn(t, c, trust, treeRequirements(), layout))
				if err != nil {
					t.Fatal(err)
				}
				return len(tree.Nodes) - vr.Failed()
			}
			sign := func(tsa bool) *Report {
				opts := signOpts(c, signer, legacy.Store{}, &bundle.Store{})
				if tsa {
					opts.Witnesses = []attest.Witness{&attesttest.VirtualTSA{VS: vs}}
					opts.TrustedMaterial = func() (root.TrustedMaterial, error) { return tr, nil }
				}
				rep, err := Sign(ctx, tree, opts)
				if err != nil {
					t.Fatal(err)
				}
				return rep
			}
			n := len(tree.Nodes)
			if tl := sign(false).Tally(); tl.Written != n {
				t.Fatalf("first run, no timestamps: %+v", tl)
			}
			for _, l := range []attest.Layout{legacy.Layout, bundle.Layout} {
				if got := verified(l); got != 0 {
					t.Errorf("%s before the re-run: %d of %d nodes pass with timestamps required, want none", l, got, n)
				}
			}
			before := r.Writes()
			rep := sign(true)
			places := 0
			for _, res := range rep.Results {
				places += len(res.Places)
			}
			if tl := rep.Tally(); tl.Written != n || tl.Signatures != places || tl.Attestations != places {
				t.Errorf("re-run with a timestamp authority: %+v, want every node written, a signature and an attestation in each of its %d places", tl, places)
			}
			if r.Writes() == before {
				t.Error("re-run with a timestamp authority wrote nothing to the registry")
			}
			for _, l := range []attest.Layout{legacy.Layout, bundle.Layout} {
				if got := verified(l); got != n {
					t.Errorf("%s after the re-run: %d of %d nodes pass with timestamps required", l, got, n)
				}
			}
			before = r.Writes()
			if tl := sign(true).Tally(); tl.Present != n || tl.Written != 0 || r.Writes() != before {
				t.Errorf("third run: %+v, %d writes; want nothing written", tl, r.Writes()-before)
			}
		})
	}
}
