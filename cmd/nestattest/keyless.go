package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/evidence"
	"github.com/nestattest/nestattest/attest/identity"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/internal/ghoidc"
	"github.com/nestattest/nestattest/trust"
)

// Defaults of the signing flags, cosign's.
const (
	defaultFulcioURL = "https://fulcio.sigstore.dev"
	defaultRekorURL  = "https://rekor.sigstore.dev"
	// defaultTokenFile is where cosign's filesystem OIDC provider reads a
	// projected token: a Kubernetes service-account token mounted there,
	// or a SPIFFE JWT-SVID.
	defaultTokenFile = "/var/run/sigstore/cosign/oidc-token"
	envIDToken       = "SIGSTORE_ID_TOKEN"
	// tokenAudience is the audience Fulcio accepts.
	tokenAudience = "sigstore"
)

// signingOptions say who signs and who witnesses: a key (keyOptions), or
// keyless with a certificate for an OIDC identity; a transparency log and a
// timestamp authority.
type signingOptions struct {
	key                keyOptions
	keyless            bool
	fulcioURL          string
	rekorURL           string
	tsaURL             string
	tlogUpload         bool
	identityToken      string
	identityTokenFile  string
	signingConfig      string
	trustedRoot        string
	insecureSkipVerify bool
	tuf                tufOptions
}

func (o *signingOptions) addFlags(cmd *cobra.Command) {
	o.key.addFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&o.keyless, "keyless", false, "sign with a short-lived certificate for an OIDC identity (the default when no --key is given)")
	f.StringVar(&o.fulcioURL, "fulcio-url", defaultFulcioURL, "Fulcio, the certificate authority for keyless signing")
	f.StringVar(&o.rekorURL, "rekor-url", defaultRekorURL, "Rekor v1 transparency log (a --signing-config can name a Rekor v2 log instead)")
	f.StringVar(&o.tsaURL, "timestamp-server-url", "", "RFC 3161 timestamp authority that countersigns every signature, such as https://timestamp.sigstore.dev/api/v1/timestamp")
	f.BoolVar(&o.tlogUpload, "tlog-upload", true, "log every signature and attestation in the transparency log (=false: no transparency log, as cosign)")
	f.StringVar(&o.identityToken, "identity-token", "", "OIDC identity token for keyless signing, or a file holding one (else $"+envIDToken+", GitHub Actions' token, or "+defaultTokenFile+")")
	f.StringVar(&o.identityTokenFile, "identity-token-file", "", "file holding the OIDC identity token, read again for each certificate (a projected Kubernetes service-account token, a SPIFFE JWT-SVID)")
	f.StringVar(&o.signingConfig, "signing-config", "", "sigstore signing config JSON naming Fulcio, Rekor (v1 or v2) and timestamp authorities; flags given explicitly override it (default: the --tuf-mirror repository's, unless --trusted-root is given)")
	f.StringVar(&o.trustedRoot, "trusted-root", "", "sigstore trusted root JSON: the certificate authorities keyless certificates must chain to, and the transparency logs and timestamp authorities whose evidence a re-run checks on what is signed already (default: the --tuf-mirror repository's)")
	f.BoolVar(&o.insecureSkipVerify, "insecure-skip-verify", false, "accept a keyless certificate without a signed certificate timestamp (private instances without a CT log; tests)")
	o.tuf.addFlags(cmd)
}

// given says whether a flag was given a value. An empty value, such as
// `--rekor-url=$(params.REKOR_URL)` in a Tekton step whose param was left
// at its default "", is no value: the flag's default, or the signing
// config's service, applies. An empty --key already means no key
// (keyless).
func given(cmd *cobra.Command, name string) bool {
	f := cmd.Flags().Lookup(name)
	return f != nil && f.Changed && f.Value.String() != ""
}

// orDefault is v, or def when v is empty.
func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// signing is what a run signs with: the signer, its witnesses, and what
// to say about them.
type signing struct {
	signer    attest.Signer
	witnesses []attest.Witness
	keyless   *identity.KeylessSigner
	tlog      *evidence.TlogWitness
	tsa       *evidence.TimestampWitness
	// trusted verifies the evidence a node carries already, for a key
	// with witnesses (a keyless signer holds its own): loaded once, when a
	// run first finds a node it signed before.
	trusted func() (root.TrustedMaterial, error)
}

// stats are the certificates, transparency-log entries and timestamps a
// run made, for its report.
type signingStats struct {
	Identity string `json:"identity"`
	// Signatures are the signatures made, each one Sign call of the
	// signer (one KMS request); Statements the tree statements among them.
	Signatures   int `json:"signatures"`
	Statements   int `json:"statements,omitempty"`
	Certificates int `json:"certificates"`
	TlogEntries  int `json:"tlogEntries"`
	Timestamps   int `json:"timestamps"`
}

// String is "signed by X: 26 signatures, 1 certificate, 26
// transparency-log entries, 26 timestamps".
func (st signingStats) String() string {
	sigs := plural(st.Signatures, "signature")
	if st.Statements > 0 {
		sigs += " (" + plural(st.Statements, "tree statement") + ")"
	}
	parts := []string{sigs}
	if st.Certificates > 0 {
		parts = append(parts, plural(st.Certificates, "certificate"))
	}
	parts = append(parts, plural(st.TlogEntries, "transparency-log entry"), plural(st.Timestamps, "timestamp"))
	return fmt.Sprintf("signed by %s: %s", st.Identity, strings.Join(parts, ", "))
}

func (g *signing) stats(rep *trees.Report) signingStats {
	st := signingStats{Identity: g.signer.Identity().String(), Signatures: rep.Signatures, Statements: rep.Statements}
	if g.keyless != nil {
		st.Certificates = g.keyless.Certificates()
	}
	if g.tlog != nil {
		st.TlogEntries = g.tlog.Entries()
	}
	if g.tsa != nil {
		st.Timestamps = g.tsa.Timestamps()
	}
	return st
}

// load sets up the run's signer and witnesses. stdinFree says whether a key
// password may be read from standard input.
func (o *signingOptions) load(ctx context.Context, cmd *cobra.Command, s streams, stdinFree bool) (*signing, error) {
	if o.keyless && o.key.key != "" {
		return nil, usagef("--keyless and --key exclude each other")
	}
	g := &signing{}
	var err error
	var tokens identity.TokenSource
	if o.key.key != "" {
		if g.signer, err = o.key.load(ctx, s, stdinFree); err != nil {
			return nil, err
		}
	} else if tokens, err = o.tokenSource(s); err != nil {
		return nil, err
	}
	sc, err := o.config(cmd, s)
	if err != nil {
		return nil, err
	}
	if tokens != nil {
		if g.keyless, err = o.keylessSigner(ctx, cmd, s, sc, tokens); err != nil {
			return nil, err
		}
		g.signer = g.keyless
	}
	if err := o.witnesses(cmd, sc, g); err != nil {
		return nil, err
	}
	if g.keyless == nil && len(g.witnesses) > 0 {
		g.trusted = sync.OnceValues(func() (root.TrustedMaterial, error) { return o.trustedMaterial(s) })
	}
	return g, nil
}

// config is the signing config: --signing-config, else the TUF
// repository's when the run needs a service no flag names (keyless
// signing's Fulcio, a transparency log) and no --trusted-root says the
// trust material is the user's own; else none, and the flags' defaults.
func (o *signingOptions) config(cmd *cobra.Command, s streams) (*root.SigningConfig, error) {
	if o.signingConfig != "" {
		sc, err := root.NewSigningConfigFromPath(o.signingConfig)
		if err != nil {
			return nil, usagef("--signing-config %s: %v", o.signingConfig, err)
		}
		return sc, nil
	}
	keyless := o.key.key == ""
	needs := (keyless && !given(cmd, "fulcio-url")) || (o.tlogUpload && !given(cmd, "rekor-url"))
	if o.trustedRoot != "" || !needs {
		return nil, nil
	}
	if keyless { // the trusted root first, so that an unreachable mirror is explained as such
		if _, err := o.tuf.trustedRoot(s, "--trusted-root"); err != nil {
			return nil, err
		}
	}
	return o.tuf.signingConfig(s)
}

// configName says where the signing config came from, for errors.
func (o *signingOptions) configName() string {
	if o.signingConfig != "" {
		return "--signing-config " + o.signingConfig
	}
	return "the signing config of the TUF repository at " + orDefault(o.tuf.mirror, trust.DefaultMirror)
}

// trustedMaterial is what keyless certificates must chain to, and what
// verifies the transparency-log entries and timestamps a re-run finds:
// --trusted-root, else the TUF repository's trusted root.
func (o *signingOptions) trustedMaterial(s streams) (root.TrustedMaterial, error) {
	return trustedMaterial(s, o.trustedRoot, "--trusted-root", &o.tuf)
}

// keylessSigner gets the run's one certificate.
func (o *signingOptions) keylessSigner(ctx context.Context, cmd *cobra.Command, s streams, sc *root.SigningConfig, tokens identity.TokenSource) (*identity.KeylessSigner, error) {
	tr, err := o.trustedMaterial(s)
	if err != nil {
		return nil, err
	}
	fulcio, err := o.fulcio(cmd, sc)
	if err != nil {
		return nil, err
	}
	signer, err := identity.NewKeylessSigner(ctx, identity.KeylessOptions{
		CA: sign.NewFulcio(&sign.FulcioOptions{BaseURL: fulcio, Retries: 3}), CAURL: fulcio, Token: tokens,
		TrustedMaterial: tr, InsecureSkipSCT: o.insecureSkipVerify,
	})
	var u *attest.UnreachableError
	if errors.As(err, &u) {
		return nil, unreachableError{u: u}
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("%w (Fulcio at %s)", err, fulcio)}
	}
	return signer, nil
}

// fulcio is the certificate authority keyless signing asks: --fulcio-url
// when given a value, else the signing config's, else cosign's default.
func (o *signingOptions) fulcio(cmd *cobra.Command, sc *root.SigningConfig) (string, error) {
	if sc == nil || given(cmd, "fulcio-url") {
		return orDefault(o.fulcioURL, defaultFulcioURL), nil
	}
	svc, err := root.SelectService(sc.FulcioCertificateAuthorityURLs(), sign.FulcioAPIVersions, time.Now())
	if err != nil {
		return "", usagef("%s: no Fulcio to use: %v", o.configName(), err)
	}
	return svc.URL, nil
}

// tsa is the timestamp authority every signature is countersigned by:
// --timestamp-server-url when given a value, else the signing config's;
// empty for none.
func (o *signingOptions) tsa(cmd *cobra.Command, sc *root.SigningConfig, now time.Time) string {
	if sc == nil || given(cmd, "timestamp-server-url") {
		return o.tsaURL
	}
	if len(sc.TimestampAuthorityURLs()) == 0 { // and no tsaConfig, which sigstore-go would dereference
		return ""
	}
	svcs, err := root.SelectServices(sc.TimestampAuthorityURLs(), sc.TimestampAuthorityURLsConfig(), sign.TimestampAuthorityAPIVersions, now)
	if err == nil && len(svcs) > 0 {
		return svcs[0].URL
	}
	return ""
}

// rekor is the transparency log every signature is logged in:
// --rekor-url (a Rekor v1) when given a value, else the signing config's
// log (v1 or v2), else cosign's default; nil with --tlog-upload=false.
func (o *signingOptions) rekor(cmd *cobra.Command, sc *root.SigningConfig, now time.Time) (*sign.RekorOptions, error) {
	if !o.tlogUpload {
		return nil, nil
	}
	rekor := &sign.RekorOptions{BaseURL: orDefault(o.rekorURL, defaultRekorURL), Retries: 3, Version: 1}
	if sc != nil && !given(cmd, "rekor-url") {
		var svcs []root.Service
		var err error
		if len(sc.RekorLogURLs()) > 0 { // else no rekorTlogConfig either, which sigstore-go would dereference
			svcs, err = root.SelectServices(sc.RekorLogURLs(), sc.RekorLogURLsConfig(), sign.RekorAPIVersions, now)
		}
		if err != nil || len(svcs) == 0 {
			return nil, usagef("%s names no transparency log; with none, pass --tlog-upload=false", o.configName())
		}
		rekor.BaseURL, rekor.Version = svcs[0].URL, svcs[0].MajorAPIVersion
	}
	return rekor, nil
}

// witnesses adds the transparency log and the timestamp authority the
// flags and the signing config name.
func (o *signingOptions) witnesses(cmd *cobra.Command, sc *root.SigningConfig, g *signing) error {
	now := time.Now()
	if tsa := o.tsa(cmd, sc, now); tsa != "" {
		g.tsa = &evidence.TimestampWitness{TSA: sign.NewTimestampAuthority(&sign.TimestampAuthorityOptions{URL: tsa, Retries: 3}), URL: tsa}
		g.witnesses = append(g.witnesses, g.tsa)
	}
	rekor, err := o.rekor(cmd, sc, now)
	if err != nil || rekor == nil {
		return err
	}
	g.tlog = &evidence.TlogWitness{Log: sign.NewRekor(rekor), URL: rekor.BaseURL, Version: rekor.Version}
	g.witnesses = append(g.witnesses, g.tlog)
	return nil
}

// tokenSource finds the identity token as cosign does: --identity-token (a
// token, or a file holding one), --identity-token-file, $SIGSTORE_ID_TOKEN,
// GitHub Actions' OIDC token for audience sigstore, or the projected token
// at defaultTokenFile. Every token is registered as a secret.
func (o *signingOptions) tokenSource(s streams) (identity.TokenSource, error) {
	secret := func(tok string, err error) (string, error) {
		tok = strings.TrimSpace(tok)
		s.secrets.Add(tok)
		if err == nil && tok == "" {
			err = errors.New("the token is empty")
		}
		return tok, err
	}
	fromFile := func(path string) identity.TokenSource {
		return func(context.Context) (string, error) {
			b, err := os.ReadFile(path)
			return secret(string(b), err)
		}
	}
	switch {
	case o.identityToken != "":
		if _, err := os.Stat(o.identityToken); err == nil {
			return fromFile(o.identityToken), nil
		}
		tok := o.identityToken
		return func(context.Context) (string, error) { return secret(tok, nil) }, nil
	case o.identityTokenFile != "":
		return fromFile(o.identityTokenFile), nil
	case os.Getenv(envIDToken) != "":
		tok := os.Getenv(envIDToken)
		return func(context.Context) (string, error) { return secret(tok, nil) }, nil
	case ghoidc.Available():
		return func(ctx context.Context) (string, error) { return secret(ghoidc.Token(ctx, tokenAudience)) }, nil
	}
	if _, err := os.Stat(defaultTokenFile); err == nil {
		return fromFile(defaultTokenFile), nil
	}
	return nil, usagef("keyless signing needs an OIDC identity token: --identity-token, --identity-token-file (a projected service-account token, a SPIFFE JWT-SVID), $%s, a GitHub Actions job with `permissions: id-token: write`, or a token at %s; or sign with --key", envIDToken, defaultTokenFile)
}
