package attest

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"github.com/nestattest/nestattest/attest/statement"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Verification asks two things of a node, kept apart as sigstore-go keeps
// them (NewSignedEntityVerifier, NewPolicy): whom to trust (Trust: the
// same for any artifact that signer signs, and what Sign checks to tell a
// node signed already) and what this tree's nodes must show (Requirements).

// The options a Trust and Requirements are made of, named as cosign's
// flags name them: an OptionError names its options so, and a command that
// takes them as flags uses these names (after a prefix of its own, if any).
const (
	OptionKey            = "key"
	OptionIdentity       = "certificate-identity"
	OptionIdentityRegexp = "certificate-identity-regexp"
	OptionIssuer         = "certificate-oidc-issuer"
	OptionIssuerRegexp   = "certificate-oidc-issuer-regexp"
	OptionTrustedRoot    = "trusted-root"
	OptionIgnoreTlog     = "insecure-ignore-tlog"
	OptionIgnoreSCT      = "insecure-ignore-sct"
	OptionSignedTimes    = "use-signed-timestamps"
	OptionType           = "type"
	OptionAnnotations    = "annotations"
	OptionRequireRoot    = "require-root"
)

// Trust says whose signatures are accepted and what evidence they must
// carry: a key, or a keyless identity and the certificate authorities it
// chains to; the transparency logs and timestamp authorities trusted; and
// cosign's rules on log entries, certificate timestamps and signed
// timestamps. A Signer's Trust accepts its signatures. Build one from
// options with NewTrust; Validate refuses one that contradicts itself.
type Trust struct {
	// Key accepts signatures by this key.
	Key crypto.PublicKey
	// Identity accepts keyless signatures whose certificate names this
	// identity and issuer, chained to TrustedMaterial. Key and Identity
	// exclude each other.
	Identity *CertificateIdentity
	// TrustedMaterial holds the certificate authorities, transparency logs
	// and timestamp authorities trusted (a sigstore trusted root); required
	// when NeedsTrustedMaterial.
	TrustedMaterial root.TrustedMaterial
	// IgnoreTlog, IgnoreSCT and UseSignedTimestamps are cosign's flags of
	// those names: transparency-log entries are required unless IgnoreTlog.
	IgnoreTlog, IgnoreSCT, UseSignedTimestamps bool
}

// Requirements say what every node of a tree must show besides a
// signature the Trust accepts.
type Requirements struct {
	// Types are the predicate types (cosign names or URIs) every node must
	// carry an attestation of.
	Types []string
	// Annotations must all be in every node's signature.
	Annotations map[string]string
	// RequireRoot requires the signature of every node below the root to
	// bind it to the tree's root with statement.AnnotationRoot.
	RequireRoot bool
	// SBOMTypes are SBOM predicate types (spdxjson, cyclonedx, or their
	// URIs) checked on every node that has an SBOM of the type — one its
	// build attached, or an attestation of the type it carries: such a
	// node must carry a verified attestation of the type. A node with
	// none passes, unless RequireSBOM.
	SBOMTypes []string
	// RequireSBOM fails every image (an index is exempt: its software is
	// its children's) that carries no verified attestation of one of
	// SBOMTypes (spdxjson and cyclonedx when empty).
	RequireSBOM bool
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

// TrustOptions describe a Trust before anything is loaded, as cosign
// verify's flags do.
type TrustOptions struct {
	// Key names the public key, as cosign verify's --key does; empty for
	// keyless.
	Key string
	// LoadKey loads the public key Key names; required with Key. Package
	// identity's LoadPublicKey takes cosign's references (a file, a URL,
	// env://, k8s://, a KMS key): attest cannot import it, since identity
	// imports attest.
	LoadKey func(ctx context.Context, ref string) (crypto.PublicKey, error)
	// Identity is the keyless signer; the zero value for a key.
	Identity CertificateIdentity
	// TrustedMaterial returns the trusted material. NewTrust asks for it
	// only when the trust needs some (NeedsTrustedMaterial), after the
	// options are validated and the key loaded.
	TrustedMaterial func() (root.TrustedMaterial, error)
	// IgnoreTlog, IgnoreSCT and UseSignedTimestamps are Trust's.
	IgnoreTlog, IgnoreSCT, UseSignedTimestamps bool
}

// NewTrust is the Trust o describes. It refuses options that conflict or
// fall short with an *OptionError before it loads anything; then it loads
// the key with o.LoadKey and asks for the trusted material when the trust
// needs some, returning either call's error as it is (identity's
// LoadPublicKey wraps ErrKey).
func NewTrust(ctx context.Context, o TrustOptions) (Trust, error) {
	t := Trust{IgnoreTlog: o.IgnoreTlog, IgnoreSCT: o.IgnoreSCT, UseSignedTimestamps: o.UseSignedTimestamps}
	if o.Identity != (CertificateIdentity{}) {
		id := o.Identity
		t.Identity = &id
	}
	if err := validateSigner(o.Key != "", t.Identity); err != nil {
		return Trust{}, err
	}
	var err error
	if o.Key != "" {
		if o.LoadKey == nil {
			return Trust{}, fmt.Errorf("attest: NewTrust with a Key (%s) needs LoadKey", o.Key)
		}
		if t.Key, err = o.LoadKey(ctx, o.Key); err != nil {
			return Trust{}, err
		}
	}
	if t.NeedsTrustedMaterial() && o.TrustedMaterial != nil {
		if t.TrustedMaterial, err = o.TrustedMaterial(); err != nil {
			return Trust{}, err
		}
	}
	return t, t.Validate()
}

// NeedsTrustedMaterial reports whether checking a signature under t needs
// trusted material: the certificate authorities of a keyless identity, the
// transparency logs whose entries are required, the timestamp authorities
// whose timestamps are.
func (t Trust) NeedsTrustedMaterial() bool {
	return t.Identity != nil || !t.IgnoreTlog || t.UseSignedTimestamps
}

// Validate refuses, with an *OptionError, a trust that names no signer or
// two (a key and an identity), an identity that does not name its
// certificate's subject and issuer once each, or one that needs trusted
// material and holds none.
func (t Trust) Validate() error {
	if err := validateSigner(t.Key != nil, t.Identity); err != nil {
		return err
	}
	if !t.NeedsTrustedMaterial() || t.TrustedMaterial != nil {
		return nil
	}
	switch {
	case t.Identity != nil:
		return optionError([]string{OptionTrustedRoot}, "keyless verification needs the trusted root the certificates chain to: give it with %s", OptionTrustedRoot)
	case t.UseSignedTimestamps:
		return optionError([]string{OptionSignedTimes, OptionTrustedRoot}, "%s needs the trusted root of the timestamp authorities: give it with %s", OptionSignedTimes, OptionTrustedRoot)
	}
	return optionError([]string{OptionTrustedRoot, OptionIgnoreTlog}, "checking transparency-log entries needs the trusted root of the logs: give it with %s, or do not check them with %s", OptionTrustedRoot, OptionIgnoreTlog)
}

// validateSigner refuses a trust with no signer, with two, or with an
// identity that names its certificate's subject or issuer not exactly once.
func validateSigner(key bool, id *CertificateIdentity) error {
	switch {
	case !key && id == nil:
		return optionError([]string{OptionKey, OptionIdentity, OptionIssuer},
			"say whom to trust: %s, or %s[-regexp] and %s[-regexp]", OptionKey, OptionIdentity, OptionIssuer)
	case key && id != nil:
		given := id.given()
		return &OptionError{Options: append([]string{OptionKey}, given...), text: func(flag func(string) string) string {
			flags := make([]string, len(given))
			for i, n := range given {
				flags[i] = flag(n)
			}
			return fmt.Sprintf("%s and %s exclude each other: give %s to trust signatures by a key, or %s to trust keyless signatures",
				flag(OptionKey), strings.Join(flags, "/"), flag(OptionKey), strings.Join(flags, " and "))
		}}
	case id == nil:
		return nil
	case id.Subject != "" && id.SubjectRegexp != "":
		return optionError([]string{OptionIdentity, OptionIdentityRegexp}, "%s and %s exclude each other: give one", OptionIdentity, OptionIdentityRegexp)
	case id.Issuer != "" && id.IssuerRegexp != "":
		return optionError([]string{OptionIssuer, OptionIssuerRegexp}, "%s and %s exclude each other: give one", OptionIssuer, OptionIssuerRegexp)
	case id.Subject == "" && id.SubjectRegexp == "":
		return optionError([]string{OptionIdentity, OptionIdentityRegexp}, "keyless verification needs the certificate's identity: give %s or %s", OptionIdentity, OptionIdentityRegexp)
	case id.Issuer == "" && id.IssuerRegexp == "":
		return optionError([]string{OptionIssuer, OptionIssuerRegexp}, "keyless verification needs the certificate's OIDC issuer: give %s or %s", OptionIssuer, OptionIssuerRegexp)
	}
	return nil
}

// given are the options of c that are set.
func (c CertificateIdentity) given() []string {
	var names []string
	for _, f := range []struct{ name, value string }{
		{OptionIdentity, c.Subject}, {OptionIdentityRegexp, c.SubjectRegexp},
		{OptionIssuer, c.Issuer}, {OptionIssuerRegexp, c.IssuerRegexp},
	} {
		if f.value != "" {
			names = append(names, f.name)
		}
	}
	return names
}

// Validate refuses, with an *OptionError, a predicate type that is neither
// one of cosign's names nor a URI, and an annotation that RequireRoot
// would overwrite.
func (r Requirements) Validate() error {
	for _, t := range append(append([]string(nil), r.Types...), r.SBOMTypes...) {
		if _, err := statement.PredicateURI(t); err != nil {
			return &OptionError{Options: []string{OptionType}, err: err,
				text: func(flag func(string) string) string { return flag(OptionType) + ": " + err.Error() }}
		}
	}
	if _, ok := r.Annotations[statement.AnnotationRoot]; ok && r.RequireRoot {
		return optionError([]string{OptionAnnotations, OptionRequireRoot},
			"%s "+statement.AnnotationRoot+"=… and %s exclude each other: %s requires the root this tree is verified from; drop the annotation",
			OptionAnnotations, OptionRequireRoot, OptionRequireRoot)
	}
	return nil
}

// OptionError is a Trust or Requirements refused before anything is
// verified: options that exclude each other, or one missing. Its text
// names the options as cosign's flags (--key, --certificate-identity, …),
// each after Prefix, which a command whose flags carry one sets (propagate:
// --source-key). It wraps ErrOptions, and the error of the option refused
// when there is one (ErrPredicate for a type).
type OptionError struct {
	// Options are the options at fault, among the Option constants.
	Options []string
	// Prefix goes before each option's name in the text.
	Prefix string
	text   func(flag func(name string) string) string
	err    error
}

// optionError is an OptionError whose text is format with each argument,
// an option's name, given as a flag.
func optionError(options []string, format string, names ...string) *OptionError {
	return &OptionError{Options: options, text: func(flag func(string) string) string {
		args := make([]any, len(names))
		for i, n := range names {
			args[i] = flag(n)
		}
		return fmt.Sprintf(format, args...)
	}}
}

// Error names the options as flags.
func (e *OptionError) Error() string {
	flag := func(name string) string { return "--" + e.Prefix + name }
	if e.text == nil {
		flags := make([]string, len(e.Options))
		for i, o := range e.Options {
			flags[i] = flag(o)
		}
		return ErrOptions.Error() + ": " + strings.Join(flags, ", ")
	}
	return e.text(flag)
}

// Unwrap is ErrOptions, and the error of the option refused.
func (e *OptionError) Unwrap() []error {
	if e.err != nil {
		return []error{ErrOptions, e.err}
	}
	return []error{ErrOptions}
}

// checkOpts converts the trust into cosign's verification options, so
// that what cosign accepts, Verify accepts.
func (t Trust) checkOpts() (*cosign.CheckOpts, error) {
	co := &cosign.CheckOpts{
		IgnoreTlog: t.IgnoreTlog, IgnoreSCT: t.IgnoreSCT, UseSignedTimestamps: t.UseSignedTimestamps,
		TrustedMaterial: t.TrustedMaterial,
	}
	if co.TrustedMaterial == nil {
		co.TrustedMaterial = &root.TrustedRoot{}
	}
	switch {
	case t.Key != nil:
		v, err := signature.LoadVerifier(t.Key, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
		co.SigVerifier = v
	case t.Identity != nil:
		co.Identities = []cosign.Identity{{
			Subject: t.Identity.Subject, SubjectRegExp: t.Identity.SubjectRegexp,
			Issuer: t.Identity.Issuer, IssuerRegExp: t.Identity.IssuerRegexp,
		}}
	default:
		return nil, fmt.Errorf("%w: a trust needs a key or a certificate identity", ErrKey)
	}
	return co, nil
}
