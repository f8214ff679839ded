package trees

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"

	"github.com/nestattest/nestattest/attest"
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

func (k *testKeyless) Sign(ctx context.Context, message []byte) ([]byte, attest.Material, error) {
	sig, _, err := k.key.SignData(ctx, message)
	return sig, attest.Material{Chain: k.chain}, err
}

func (k *testKeyless) Trust() attest.Trust {
	return attest.Trust{Identity: &attest.CertificateIdentity{Subject: testIdentity, Issuer: testIssuer}, TrustedMaterial: k.tm, IgnoreSCT: true}
}

func (k *testKeyless) Identity() attest.Identity {
	return attest.Identity{Subject: testIdentity, Issuer: testIssuer}
}
