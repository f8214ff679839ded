package attest

import (
	"crypto"
	"fmt"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Policy says what a node must carry to pass Verify, and whom to trust.
type Policy struct {
	// Key accepts signatures by this key.
	Key crypto.PublicKey
	// Identity accepts keyless signatures whose certificate names this
	// identity and issuer, chained to TrustedMaterial.
	Identity *CertificateIdentity
	// TrustedMaterial holds the certificate authorities, transparency logs
	// and timestamp authorities trusted (a sigstore trusted root). For a key
	// without transparency log, an empty root will do.
	TrustedMaterial root.TrustedMaterial
	// IgnoreTlog, IgnoreSCT and UseSignedTimestamps are cosign's flags of
	// those names: transparency-log entries are required unless IgnoreTlog.
	IgnoreTlog, IgnoreSCT, UseSignedTimestamps bool
	// Types are the predicate types (cosign names or URIs) every node must
	// carry an attestation of.
	Types []string
	// Annotations must all be in every node's signature.
	Annotations map[string]string
	// RequireRoot requires the signature of every node below the root to
	// bind it to the tree's root with AnnotationRoot.
	RequireRoot bool
}

// CertificateIdentity is a keyless signer as cosign verify names it:
// --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp].
type CertificateIdentity struct {
	Subject, SubjectRegexp string
	Issuer, IssuerRegexp   string
}

// String names the identity for people.
func (c CertificateIdentity) String() string {
	s, i := c.Subject, c.Issuer
	if s == "" {
		s = "~" + c.SubjectRegexp
	}
	if i == "" {
		i = "~" + c.IssuerRegexp
	}
	return s + " from " + i
}

// checkOpts converts the policy into cosign's verification options, so
// that what cosign accepts, Verify accepts.
func (p Policy) checkOpts() (*cosign.CheckOpts, error) {
	co := &cosign.CheckOpts{
		IgnoreTlog: p.IgnoreTlog, IgnoreSCT: p.IgnoreSCT, UseSignedTimestamps: p.UseSignedTimestamps,
		TrustedMaterial: p.TrustedMaterial,
	}
	if co.TrustedMaterial == nil {
		co.TrustedMaterial = &root.TrustedRoot{}
	}
	switch {
	case p.Key != nil:
		v, err := signature.LoadVerifier(p.Key, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
		co.SigVerifier = v
	case p.Identity != nil:
		co.Identities = []cosign.Identity{{
			Subject: p.Identity.Subject, SubjectRegExp: p.Identity.SubjectRegexp,
			Issuer: p.Identity.Issuer, IssuerRegExp: p.Identity.IssuerRegexp,
		}}
	default:
		return nil, fmt.Errorf("%w: a policy needs a key or a certificate identity", ErrKey)
	}
	return co, nil
}
