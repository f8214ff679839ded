package identity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/bundle"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/legacy"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/registry"
)

// TestKeylessRotatesAndVerifiesAfterExpiry signs the ko tree keylessly in
// both layouts with certificates that live three seconds, through a
// timestamp authority slow enough that the run outlives several of them:
// the signer renews its key and certificate, never one per payload; once
// every certificate has expired, each node still verifies by identity, its
// signing time from the timestamp; a re-run with a new key for the same
// identity writes nothing; another identity is refused.
func TestKeylessRotatesAndVerifiesAfterExpiry(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	authority := newShortCA(t, 3*time.Second)
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{authority.Authority()}, nil, vs.TimestampingAuthorities(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := attesttest.NewRegistry(t, false)
	c := registry.NewClient(registry.Options{})
	signed := r.PushKo(t, c)
	ctx := context.Background()
	newSigner := func(identity string) *KeylessSigner {
		s, err := NewKeylessSigner(ctx, KeylessOptions{
			CA: authority, TrustedMaterial: tr, InsecureSkipSCT: true, Renew: time.Second,
			Token: func(context.Context) (string, error) { return identity, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	signer := newSigner(testIdentity)
	tsa := &attesttest.VirtualTSA{VS: vs, Delay: 120 * time.Millisecond}
	opts := signOpts(t, c, signer)
	opts.Witnesses = []attest.Witness{tsa}
	start := time.Now()
	rep, err := trees.Sign(ctx, signed, opts)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	payloads := int(tsa.Timestamps())
	t.Logf("%d payloads timestamped in %v with %d certificates", payloads, took.Round(time.Millisecond), signer.Certificates())
	if signer.Certificates() < 2 || signer.Certificates() > int(took/time.Second)+2 || signer.Certificates() >= payloads {
		t.Errorf("%d certificates for a %v run of %d payloads with 3-second certificates renewed a second before they end", signer.Certificates(), took, payloads)
	}
	if tl := rep.Tally(); tl.Written != len(signed.Nodes) {
		t.Fatalf("tally %+v", tl)
	}

	time.Sleep(time.Until(start.Add(took + 3*time.Second))) // every certificate has expired
	trust := attest.Trust{Identity: &attest.CertificateIdentity{Subject: testIdentity, Issuer: testIssuer}, TrustedMaterial: tr,
		IgnoreTlog: true, IgnoreSCT: true, UseSignedTimestamps: true}
	for _, layout := range []attest.Layout{legacy.Layout, bundle.Layout} {
		vr, err := trees.Verify(ctx, signed, verifyOpts(t, c, trust, treeRequirements(), layout))
		if err != nil || vr.Failed() != 0 {
			t.Errorf("%s after expiry: %q, %v", layout, failures(vr), err)
		}
	}
	other := trust
	other.Identity = &attest.CertificateIdentity{Subject: "someone@example.test", Issuer: testIssuer}
	if vr, err := trees.Verify(ctx, signed, verifyOpts(t, c, other, treeRequirements(), bundle.Layout, legacy.Layout)); err != nil || vr.Failed() != len(signed.Nodes) {
		t.Errorf("another identity: %d of %d failed, %v", vr.Failed(), len(signed.Nodes), err)
	}

	// A new run, a new key, the same identity: nothing to write.
	before := r.Writes()
	again := newSigner(testIdentity)
	opts = signOpts(t, c, again)
	opts.Witnesses = []attest.Witness{tsa}
	if rep, err := trees.Sign(ctx, signed, opts); err != nil || rep.Tally().Present != len(signed.Nodes) || r.Writes() != before {
		t.Errorf("re-run: %+v, %d writes, %v", rep.Tally(), r.Writes()-before, err)
	}
	// Another identity signs anew.
	opts.Signer = newSigner("someone@example.test")
	if rep, err := trees.Sign(ctx, signed, opts); err != nil || rep.Tally().Written != len(signed.Nodes) {
		t.Errorf("another identity: %+v, %v", rep.Tally(), err)
	}
}

// TestKeylessRefusesUntrustedCA: a certificate that does not chain to the
// trusted root stops the run before anything is signed.
func TestKeylessRefusesUntrustedCA(t *testing.T) {
	trusted, untrusted := newShortCA(t, time.Minute), newShortCA(t, time.Minute)
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{trusted.Authority()}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewKeylessSigner(context.Background(), KeylessOptions{CA: untrusted, TrustedMaterial: tr, InsecureSkipSCT: true,
		Token: func(context.Context) (string, error) { return testIdentity, nil }})
	if !errors.Is(err, ErrKeyless) {
		t.Fatalf("error %v, want ErrKeyless", err)
	}
	_, err = NewKeylessSigner(context.Background(), KeylessOptions{CA: trusted, TrustedMaterial: tr,
		Token: func(context.Context) (string, error) { return testIdentity, nil }})
	if !errors.Is(err, ErrKeyless) {
		t.Errorf("without a signed certificate timestamp and without InsecureSkipSCT: %v", err)
	}
}
