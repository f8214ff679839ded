package attest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
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

// testKeyless signs with an ephemeral key that a CA certified for
// testIdentity, once: the keyless Signer of a run in these tests, whose
// Trust is what identity.KeylessSigner's is.
type testKeyless struct {
	key   *sign.EphemeralKeypair
	chain []*x509.Certificate
	tm    root.TrustedMaterial
}

func newTestKeyless(t *testing.T, authority *shortCA, tm root.TrustedMaterial) *testKeyless {
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
	return &testKeyless{key: key, chain: []*x509.Certificate{leaf, authority.inter, authority.root}, tm: tm}
}

func (k *testKeyless) Sign(ctx context.Context, message []byte) ([]byte, Material, error) {
	sig, _, err := k.key.SignData(ctx, message)
	return sig, Material{Chain: k.chain}, err
}

func (k *testKeyless) Trust() Trust {
	return Trust{Identity: &CertificateIdentity{Subject: testIdentity, Issuer: testIssuer}, TrustedMaterial: k.tm, IgnoreSCT: true}
}

func (k *testKeyless) Identity() Identity { return Identity{Subject: testIdentity, Issuer: testIssuer} }
