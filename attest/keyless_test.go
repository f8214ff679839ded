package attest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/nestattest/nestattest/registry"
)

const (
	testIdentity = "builder@example.test"
	testIssuer   = "https://issuer.example.test"
)

// shortCA is an in-process certificate authority that certifies any key
// for the identity its token names, with certificates that end life
// seconds after they are issued: what a long run meets with Fulcio's ten
// minutes.
type shortCA struct {
	root, inter *x509.Certificate
	key         crypto.Signer
	life        time.Duration
	issued      atomic.Int32
}

func newShortCA(t *testing.T, life time.Duration) *shortCA {
	t.Helper()
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	inter, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return &shortCA{root: rootCert, inter: inter, key: interKey, life: life}
}

// GetCertificate implements sign.CertificateProvider: the token is the
// identity, certified with Fulcio's OIDC issuer extension.
func (c *shortCA) GetCertificate(_ context.Context, kp sign.Keypair, opts *sign.CertificateProviderOptions) ([]byte, error) {
	serial := c.issued.Add(1)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(serial)), EmailAddresses: []string{opts.IDToken},
		NotBefore: now.Add(-time.Second), NotAfter: now.Add(c.life),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}, Value: []byte(testIssuer)}},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, c.inter, kp.GetPublicKey(), c.key)
}

func (c *shortCA) authority() root.CertificateAuthority {
	return &root.FulcioCertificateAuthority{Root: c.root, Intermediates: []*x509.Certificate{c.inter},
		ValidityPeriodStart: time.Now().Add(-time.Hour), ValidityPeriodEnd: time.Now().Add(time.Hour)}
}

// virtualTSA countersigns with sigstore-go's in-process timestamp
// authority, slowly, so a run outlives its certificates.
type virtualTSA struct {
	vs    *ca.VirtualSigstore
	delay time.Duration
	n     atomic.Int32
}

func (v *virtualTSA) Require(t *Trust, _ Layout) { t.UseSignedTimestamps = true }

func (v *virtualTSA) Witness(_ context.Context, s *Signed) error {
	time.Sleep(v.delay)
	ts, err := v.vs.TimestampResponse(s.Signature)
	if err != nil {
		return err
	}
	s.Material.Timestamps = append(s.Material.Timestamps, ts)
	v.n.Add(1)
	if s.DSSE() { // the legacy layout timestamps the envelope
		env, err := s.Envelope()
		if err != nil {
			return err
		}
		if ts, err = v.vs.TimestampResponse(env); err != nil {
			return err
		}
		s.Material.EnvelopeTimestamps = append(s.Material.EnvelopeTimestamps, ts)
	}
	return nil
}

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
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{authority.authority()}, nil, vs.TimestampingAuthorities(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRegistry(t)
	c := registry.NewClient(registry.Options{})
	tree := pushKo(t, r, c)
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
	tsa := &virtualTSA{vs: vs, delay: 120 * time.Millisecond}
	opts := signOpts(c, signer, LegacyStore{Client: c}, &BundleStore{Client: c})
	opts.Witnesses = []Witness{tsa}
	start := time.Now()
	rep, err := Sign(ctx, tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	payloads := int(tsa.n.Load())
	t.Logf("%d payloads timestamped in %v with %d certificates", payloads, took.Round(time.Millisecond), signer.Certificates())
	if signer.Certificates() < 2 || signer.Certificates() > int(took/time.Second)+2 || signer.Certificates() >= payloads {
		t.Errorf("%d certificates for a %v run of %d payloads with 3-second certificates renewed a second before they end", signer.Certificates(), took, payloads)
	}
	if tl := rep.Tally(); tl.Written != len(tree.Nodes) {
		t.Fatalf("tally %+v", tl)
	}

	time.Sleep(time.Until(start.Add(took + 3*time.Second))) // every certificate has expired
	trust := Trust{Identity: &CertificateIdentity{Subject: testIdentity, Issuer: testIssuer}, TrustedMaterial: tr,
		IgnoreTlog: true, IgnoreSCT: true, UseSignedTimestamps: true}
	for _, layout := range []Layout{LayoutLegacy, LayoutBundle} {
		vopts := verifyOpts(c, trust, treeRequirements())
		vopts.Layout = layout
		vr, err := Verify(ctx, tree, vopts)
		if err != nil || vr.Failed() != 0 {
			t.Errorf("%s after expiry: %q, %v", layout, failures(vr), err)
		}
	}
	other := trust
	other.Identity = &CertificateIdentity{Subject: "someone@example.test", Issuer: testIssuer}
	if vr, err := Verify(ctx, tree, verifyOpts(c, other, treeRequirements())); err != nil || vr.Failed() != len(tree.Nodes) {
		t.Errorf("another identity: %d of %d failed, %v", vr.Failed(), len(tree.Nodes), err)
	}

	// A new run, a new key, the same identity: nothing to write.
	before := r.writeCount()
	again := newSigner(testIdentity)
	opts = signOpts(c, again, LegacyStore{Client: c}, &BundleStore{Client: c})
	opts.Witnesses = []Witness{tsa}
	if rep, err := Sign(ctx, tree, opts); err != nil || rep.Tally().Present != len(tree.Nodes) || r.writeCount() != before {
		t.Errorf("re-run: %+v, %d writes, %v", rep.Tally(), r.writeCount()-before, err)
	}
	// Another identity signs anew.
	opts.Signer = newSigner("someone@example.test")
	if rep, err := Sign(ctx, tree, opts); err != nil || rep.Tally().Written != len(tree.Nodes) {
		t.Errorf("another identity: %+v, %v", rep.Tally(), err)
	}
}

// TestKeylessRefusesUntrustedCA: a certificate that does not chain to the
// trusted root stops the run before anything is signed.
func TestKeylessRefusesUntrustedCA(t *testing.T) {
	trusted, untrusted := newShortCA(t, time.Minute), newShortCA(t, time.Minute)
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{trusted.authority()}, nil, nil, nil)
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
