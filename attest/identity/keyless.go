package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/nestattest/nestattest/attest"
)

// ErrKeyless: a keyless signer could not get or use its certificate.
var ErrKeyless = errors.New("keyless signing")

// TokenSource returns an OIDC identity token to exchange for a
// certificate; it is asked again for every certificate, so a token file
// that a platform rotates is read afresh.
type TokenSource func(ctx context.Context) (string, error)

// KeylessOptions configure a KeylessSigner.
type KeylessOptions struct {
	// CA issues the certificates: sigstore-go's sign.Fulcio, or any
	// certificate provider; required.
	CA sign.CertificateProvider
	// CAURL is where the CA is, for an error when it cannot be reached.
	CAURL string
	// Token is the identity to certify; required.
	Token TokenSource
	// TrustedMaterial holds the certificate authorities the certificates
	// must chain to; required, so that a certificate the CA answers with
	// and a stored signature this signer claims are both checked.
	TrustedMaterial root.TrustedMaterial
	// InsecureSkipSCT accepts a certificate without a verified signed
	// certificate timestamp from a certificate-transparency log, as
	// cosign's --insecure-skip-verify: for private instances without one.
	InsecureSkipSCT bool
	// Renew is how long before its certificate expires a signer renews it;
	// a fifth of the certificate's lifetime when zero.
	Renew time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// KeylessSigner signs with an ephemeral key certified by a certificate
// authority (Fulcio) for the holder of an OIDC identity: one key and one
// certificate for a whole run, however many payloads, and a new key and
// certificate shortly before the current one expires. The private key
// never leaves the process and is never written anywhere.
type KeylessSigner struct {
	opts  KeylessOptions
	certs atomic.Int32

	mu  sync.Mutex
	cur *certified
	id  attest.Identity
}

// certified is an ephemeral key and its certificate.
type certified struct {
	key      *sign.EphemeralKeypair
	chain    []*x509.Certificate
	notAfter time.Time
	renewAt  time.Time
}

// NewKeylessSigner gets the first certificate, so that a refused token or
// an unreachable CA stops the run before anything is read or written.
func NewKeylessSigner(ctx context.Context, opts KeylessOptions) (*KeylessSigner, error) {
	if opts.CA == nil || opts.Token == nil || opts.TrustedMaterial == nil {
		return nil, fmt.Errorf("%w: a certificate authority, an identity token and a trusted root are needed", ErrKeyless)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	k := &KeylessSigner{opts: opts}
	if _, err := k.current(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Certificates is how many certificates the signer got.
func (k *KeylessSigner) Certificates() int { return int(k.certs.Load()) }

// Sign implements attest.Signer.
func (k *KeylessSigner) Sign(ctx context.Context, message []byte) ([]byte, attest.Material, error) {
	c, err := k.current(ctx)
	if err != nil {
		return nil, attest.Material{}, err
	}
	sig, _, err := c.key.SignData(ctx, message)
	if err != nil {
		return nil, attest.Material{}, fmt.Errorf("%w: sign: %v", ErrKeyless, err)
	}
	return sig, attest.Material{Chain: c.chain}, nil
}

// current returns the key and certificate to sign with now, renewing them
// when the certificate is near its end.
func (k *KeylessSigner) current(ctx context.Context) (*certified, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur != nil && k.opts.Now().Before(k.cur.renewAt) {
		return k.cur, nil
	}
	c, err := k.certify(ctx)
	if err != nil {
		return nil, err
	}
	k.cur = c
	return c, nil
}

// certify makes a new key and asks the CA to certify it.
func (k *KeylessSigner) certify(ctx context.Context) (*certified, error) {
	token, err := k.opts.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: identity token: %v", ErrKeyless, err)
	}
	key, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyless, err)
	}
	der, err := k.opts.CA.GetCertificate(ctx, key, &sign.CertificateProviderOptions{IDToken: token})
	if err = attest.Unreachable(attest.ServiceFulcio, k.opts.CAURL, err); errors.Is(err, attest.ErrUnreachable) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrKeyless, err)
	}
	k.certs.Add(1)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate authority answered with no certificate: %v", ErrKeyless, err)
	}
	chains, err := verify.VerifyLeafCertificate(leaf.NotBefore, leaf, k.opts.TrustedMaterial)
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate does not chain to a trusted certificate authority (--trusted-root): %v", ErrKeyless, err)
	}
	if !k.opts.InsecureSkipSCT {
		if err := verify.VerifySignedCertificateTimestamp(chains, 1, k.opts.TrustedMaterial); err != nil {
			return nil, fmt.Errorf("%w: the certificate has no signed certificate timestamp from a trusted CT log: %v (--insecure-skip-verify accepts it)", ErrKeyless, err)
		}
	}
	id, err := identityOf(leaf)
	if err != nil {
		return nil, err
	}
	k.id = id
	renew := k.opts.Renew
	if renew <= 0 {
		renew = leaf.NotAfter.Sub(leaf.NotBefore) / 5
	}
	chain := []*x509.Certificate{leaf}
	if len(chains) > 0 && len(chains[0]) > 1 {
		chain = append(chain, chains[0][1:]...)
	}
	return &certified{key: key, chain: chain, notAfter: leaf.NotAfter, renewAt: leaf.NotAfter.Add(-renew)}, nil
}

// identityOf reads a certificate's subject alternative name and OIDC
// issuer.
func identityOf(leaf *x509.Certificate) (attest.Identity, error) {
	s, err := certificate.SummarizeCertificate(leaf)
	if err != nil {
		return attest.Identity{}, fmt.Errorf("%w: the certificate: %v", ErrKeyless, err)
	}
	return attest.Identity{Subject: s.SubjectAlternativeName, Issuer: s.Issuer}, nil
}

// Trust implements attest.Signer: signatures under a certificate for the
// signer's identity and issuer, chaining to its trusted material. Whichever
// of the run's keys made one, or an earlier run's, it is this identity's.
func (k *KeylessSigner) Trust() attest.Trust {
	id := k.Identity()
	return attest.Trust{Identity: &attest.CertificateIdentity{Subject: id.Subject, Issuer: id.Issuer},
		TrustedMaterial: k.opts.TrustedMaterial, IgnoreSCT: k.opts.InsecureSkipSCT}
}

// Identity implements attest.Signer.
func (k *KeylessSigner) Identity() attest.Identity {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.id
}
