package attest

import (
	"context"
	"crypto/x509"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/nestattest/nestattest/attest/internal/attesttest"
)

const (
	testIdentity = "builder@example.test"
	testIssuer   = "https://issuer.example.test"
)

// newShortCA is an in-process certificate authority whose certificates
// end life after they are issued and name testIssuer.
func newShortCA(t *testing.T, life time.Duration) *attesttest.ShortCA {
	t.Helper()
	return attesttest.NewShortCA(t, life, testIssuer)
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

// testKeyless signs with an ephemeral key that a CA certified for
// testIdentity, once: the keyless Signer of a run in these tests, whose
// Trust is what identity.KeylessSigner's is.
type testKeyless struct {
	key   *sign.EphemeralKeypair
	chain []*x509.Certificate
	tm    root.TrustedMaterial
}

func newTestKeyless(t *testing.T, authority *attesttest.ShortCA, tm root.TrustedMaterial) *testKeyless {
	t.Helper()
	key, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := authority.GetCertificate(context.Background(), key, &sign.CertificateProviderOptions{IDToken: testIdentity})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testKeyless{key: key, chain: append([]*x509.Certificate{leaf}, authority.Chain()...), tm: tm}
}

func (k *testKeyless) Sign(ctx context.Context, message []byte) ([]byte, Material, error) {
	sig, _, err := k.key.SignData(ctx, message)
	return sig, Material{Chain: k.chain}, err
}

func (k *testKeyless) Trust() Trust {
	return Trust{Identity: &CertificateIdentity{Subject: testIdentity, Issuer: testIssuer}, TrustedMaterial: k.tm, IgnoreSCT: true}
}

func (k *testKeyless) Identity() Identity { return Identity{Subject: testIdentity, Issuer: testIssuer} }
