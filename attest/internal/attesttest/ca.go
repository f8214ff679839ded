// Package attesttest holds test support shared by attest's packages that
// needs none of them: an in-process certificate authority and an
// in-process registry with the samples pushed to it.
package attesttest

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

// ShortCA is an in-process certificate authority that certifies any key
// for the identity its token names, from Issuer, with certificates that end
// Life after they are issued: what a long run meets with Fulcio's ten
// minutes.
type ShortCA struct {
	root, inter *x509.Certificate
	key         crypto.Signer
	life        time.Duration
	issuer      string
	issued      atomic.Int32
}

// NewShortCA returns a ShortCA whose certificates last life and name issuer
// as their OIDC issuer.
func NewShortCA(t testing.TB, life time.Duration, issuer string) *ShortCA {
	t.Helper()
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	inter, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return &ShortCA{root: rootCert, inter: inter, key: interKey, life: life, issuer: issuer}
}

// GetCertificate implements sign.CertificateProvider: the token is the
// identity, certified with Fulcio's OIDC issuer extension.
func (c *ShortCA) GetCertificate(_ context.Context, kp sign.Keypair, opts *sign.CertificateProviderOptions) ([]byte, error) {
	serial := c.issued.Add(1)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(serial)), EmailAddresses: []string{opts.IDToken},
		NotBefore: now.Add(-time.Second), NotAfter: now.Add(c.life),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}, Value: []byte(c.issuer)}},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, c.inter, kp.GetPublicKey(), c.key)
}

// Chain is the CA's intermediate and root, as a certificate chain ends.
func (c *ShortCA) Chain() []*x509.Certificate { return []*x509.Certificate{c.inter, c.root} }

// Authority is the CA as a trusted root lists it.
func (c *ShortCA) Authority() root.CertificateAuthority {
	return &root.FulcioCertificateAuthority{Root: c.root, Intermediates: []*x509.Certificate{c.inter},
		ValidityPeriodStart: time.Now().Add(-time.Hour), ValidityPeriodEnd: time.Now().Add(time.Hour)}
}
