// Command kyverno-verify runs Kyverno's own image verification code on one
// image reference, with no cluster: the verifyImages verifier of
// ClusterPolicies (github.com/kyverno/kyverno/pkg/image/verifiers/cpol/cosign)
// and the cosign verifier of ImageValidatingPolicies
// (pkg/image/verifiers/ivpol/cosign), each given the options Kyverno's engine
// gives it for an attestor with the settings named by the flags.
//
//	kyverno-verify --image REF@DIGEST [--verifier cpol,ivpol] [--type PREDICATE-TYPE] \
//	    (--key FILE | --subject S --issuer I [--roots FILE]) \
//	    [--rekor-url URL --rekor-pubkey FILE | --insecure-ignore-tlog] [--insecure-ignore-sct] \
//	    [--tsa-cert-chain FILE] [--sigstore-bundle] [--tuf-mirror URL --tuf-root FILE] \
//	    [--trusted-root FILE] [--allow-insecure-registry]
//
// For each verifier it checks the image's signature and, with --type, its
// attestation of that predicate type, and prints the verdicts as JSON. It
// exits 1 when a verifier refused, with the verifier's error in the JSON, and
// 2 on bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-logr/logr"
	policiesv1beta1 "github.com/kyverno/api/api/policies.kyverno.io/v1beta1"
	"github.com/kyverno/kyverno/pkg/image/verifiers"
	cpolcosign "github.com/kyverno/kyverno/pkg/image/verifiers/cpol/cosign"
	ivpolcosign "github.com/kyverno/kyverno/pkg/image/verifiers/ivpol/cosign"
	"github.com/kyverno/kyverno/pkg/logging"
	"github.com/kyverno/kyverno/pkg/sigstoretuf"
	"github.com/kyverno/sdk/extensions/imagedataloader"
	"github.com/kyverno/sdk/extensions/registryclient"
)

// Verifier names, as --verifier takes them.
const (
	// CPol is ClusterPolicy verifyImages (type Cosign, or SigstoreBundle
	// with --sigstore-bundle).
	CPol = "cpol"
	// IVPol is ImageValidatingPolicy's cosign attestor.
	IVPol = "ivpol"
)

// defaultRekorURL is what Kyverno's engine uses when an attestor names no
// Rekor (pkg/engine/internal/imageverifier.go).
const defaultRekorURL = "https://rekor.sigstore.dev"

// options are the flags: an attestor's settings, in the names Kyverno's
// policies give them.
type options struct {
	image, predicateType        string
	verifiers                   string
	key                         string
	subject, issuer             string
	subjectRegExp, issuerRegExp string
	roots                       string
	rekorURL, rekorPubKey       string
	ctlogPubKey, tsaCertChain   string
	ignoreTlog, ignoreSCT       bool
	sigstoreBundle, cosignOCI11 bool
	tufMirror, tufRoot          string
	trustedRoot                 string
	allowInsecure               bool
	verbosity                   int
}

// check is one verdict.
type check struct {
	Verifier string `json:"verifier"`
	Check    string `json:"check"`
	Type     string `json:"type,omitempty"`
	Verified bool   `json:"verified"`
	Digest   string `json:"digest,omitempty"`
	Error    string `json:"error,omitempty"`
}

// report is what kyverno-verify prints.
type report struct {
	Image  string  `json:"image"`
	Checks []check `json:"checks"`
}

var errRefused = errors.New("refused")

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errRefused):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "kyverno-verify:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if err := logging.Setup(logging.JSONFormat, logging.DefaultTime, o.verbosity, true); err != nil {
		return err
	}
	files, err := o.readFiles()
	if err != nil {
		return err
	}
	if o.tufMirror != "" {
		// What Kyverno's controllers do at start with --tufMirror/--tufRoot
		// (cmd/internal/tuf.go): ClusterPolicies read the trusted root
		// from this TUF client.
		var root []byte // nil: the root embedded in sigstore's TUF client
		if files.tufRoot != "" {
			root = []byte(files.tufRoot)
		}
		if err := sigstoretuf.Initialize(ctx, o.tufMirror, root); err != nil {
			return fmt.Errorf("initializing TUF from %s: %w", o.tufMirror, err)
		}
	}
	client := registryclient.New(registryclient.WithAllowInsecureRegistry(o.allowInsecure))
	rep := report{Image: o.image}
	for _, v := range strings.Split(o.verifiers, ",") {
		switch v {
		case CPol:
			rep.Checks = append(rep.Checks, o.cpol(ctx, client, files)...)
		case IVPol:
			rep.Checks = append(rep.Checks, o.ivpol(ctx, client, files)...)
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	for _, c := range rep.Checks {
		if !c.Verified {
			return errRefused
		}
	}
	return nil
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("kyverno-verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.image, "image", "", "the image to verify, REPOSITORY@DIGEST or REPOSITORY:TAG")
	fs.StringVar(&o.verifiers, "verifier", CPol+","+IVPol, "the verifiers to run, comma-separated: cpol (ClusterPolicy verifyImages), ivpol (ImageValidatingPolicy)")
	fs.StringVar(&o.predicateType, "type", "", "also verify an attestation of this predicate type (an attestation's type, e.g. https://slsa.dev/provenance/v1)")
	fs.StringVar(&o.key, "key", "", "a PEM public key file (attestor keys.publicKeys / cosign.key.data)")
	fs.StringVar(&o.subject, "subject", "", "keyless: the certificate's subject (attestor keyless.subject / identities[].subject)")
	fs.StringVar(&o.issuer, "issuer", "", "keyless: the certificate's OIDC issuer (keyless.issuer / identities[].issuer)")
	fs.StringVar(&o.subjectRegExp, "subject-regexp", "", "keyless: a regular expression the subject must match (subjectRegExp)")
	fs.StringVar(&o.issuerRegExp, "issuer-regexp", "", "keyless: a regular expression the issuer must match (issuerRegExp)")
	fs.StringVar(&o.roots, "roots", "", "keyless: a PEM file of the Fulcio root certificates (keyless.roots)")
	fs.StringVar(&o.rekorURL, "rekor-url", "", "the Rekor URL (rekor.url / ctlog.url); cpol defaults to "+defaultRekorURL)
	fs.StringVar(&o.rekorPubKey, "rekor-pubkey", "", "a PEM file of the Rekor public key (rekor.pubkey / ctlog.rekorPubKey)")
	fs.BoolVar(&o.ignoreTlog, "insecure-ignore-tlog", false, "skip the transparency log (rekor.ignoreTlog / ctlog.insecureIgnoreTlog)")
	fs.BoolVar(&o.ignoreSCT, "insecure-ignore-sct", false, "skip the certificate's SCT (ctlog.ignoreSCT / ctlog.insecureIgnoreSCT)")
	fs.StringVar(&o.ctlogPubKey, "ctlog-pubkey", "", "a PEM file of the CT log public key (ctlog.pubkey / ctlog.ctLogPubKey)")
	fs.StringVar(&o.tsaCertChain, "tsa-cert-chain", "", "a PEM file of the timestamp authority's chain (ctlog.tsaCertChain)")
	fs.BoolVar(&o.sigstoreBundle, "sigstore-bundle", false, "cpol: verifyImages type SigstoreBundle (sigstore bundles as OCI referrers) instead of Cosign")
	fs.BoolVar(&o.cosignOCI11, "cosign-oci11", false, "cpol: verifyImages cosignOCI11 (cosign's experimental OCI 1.1 referrers)")
	fs.StringVar(&o.tufMirror, "tuf-mirror", "", "a sigstore TUF mirror (the controllers' --tufMirror; ivpol tuf.mirror)")
	fs.StringVar(&o.tufRoot, "tuf-root", "", "the TUF mirror's root.json file (the controllers' --tufRoot; ivpol tuf.root.path)")
	fs.StringVar(&o.trustedRoot, "trusted-root", "", "ivpol: a sigstore trusted_root.json file (cosign.trustedRoot.value)")
	fs.BoolVar(&o.allowInsecure, "allow-insecure-registry", false, "plain HTTP to the registry (imageRegistryCredentials.allowInsecureRegistry)")
	fs.IntVar(&o.verbosity, "v", 0, "Kyverno's log verbosity (its -v); logs go to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.image == "" || fs.NArg() != 0 {
		return nil, errors.New("--image is required, and no arguments are taken")
	}
	if (o.key == "") == (o.subject == "" && o.subjectRegExp == "") {
		return nil, errors.New("give one of --key or --subject/--subject-regexp (with --issuer/--issuer-regexp)")
	}
	for _, v := range strings.Split(o.verifiers, ",") {
		if v != CPol && v != IVPol {
			return nil, fmt.Errorf("--verifier %q: want %s, %s or both, comma-separated", v, CPol, IVPol)
		}
	}
	return o, nil
}

// contents are the files the flags name, read: policies carry them inline.
type contents struct {
	key, roots, rekorPubKey, ctlogPubKey, tsaCertChain, tufRoot, trustedRoot string
}

func (o *options) readFiles() (contents, error) {
	var c contents
	for _, f := range []struct {
		flag, path string
		to         *string
	}{
		{"--key", o.key, &c.key}, {"--roots", o.roots, &c.roots}, {"--rekor-pubkey", o.rekorPubKey, &c.rekorPubKey},
		{"--ctlog-pubkey", o.ctlogPubKey, &c.ctlogPubKey}, {"--tsa-cert-chain", o.tsaCertChain, &c.tsaCertChain},
		{"--tuf-root", o.tufRoot, &c.tufRoot}, {"--trusted-root", o.trustedRoot, &c.trustedRoot},
	} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return c, fmt.Errorf("%s: %w", f.flag, err)
		}
		*f.to = string(b)
	}
	return c, nil
}

// cpolOptions are the options pkg/engine/internal/imageverifier.go's
// buildCosignVerifier makes of a verifyImages rule with one attestor.
func (o *options) cpolOptions(client verifiers.Client, c contents) verifiers.Options {
	v := verifiers.Options{
		ImageRef:       o.image,
		Client:         client,
		SigstoreBundle: o.sigstoreBundle,
		CosignOCI11:    o.cosignOCI11,
		RekorURL:       o.rekorURL,
		RekorPubKey:    c.rekorPubKey,
		IgnoreTlog:     o.ignoreTlog,
		IgnoreSCT:      o.ignoreSCT,
		CTLogsPubKey:   c.ctlogPubKey,
		TSACertChain:   c.tsaCertChain,
	}
	if v.RekorURL == "" && !o.ignoreTlog {
		v.RekorURL = defaultRekorURL
	}
	if o.key != "" {
		v.Key = c.key
		return v
	}
	v.Roots, v.Subject, v.Issuer, v.SubjectRegExp, v.IssuerRegExp = c.roots, o.subject, o.issuer, o.subjectRegExp, o.issuerRegExp
	return v
}

// cpol runs the ClusterPolicy verifier: VerifySignature, then, with a type,
// FetchAttestations and the engine's check that a statement of that type
// was among those verified (verifyAttestation).
func (o *options) cpol(ctx context.Context, client verifiers.Client, c contents) []check {
	verifier := cpolcosign.NewVerifier()
	opts := o.cpolOptions(client, c)
	sig := check{Verifier: CPol, Check: "signature"}
	if resp, err := verifier.VerifySignature(ctx, opts); err != nil {
		sig.Error = err.Error()
	} else {
		sig.Verified, sig.Digest = true, resp.Digest
	}
	out := []check{sig}
	if o.predicateType == "" {
		return out
	}
	opts.FetchAttestations, opts.Type = true, o.predicateType
	att := check{Verifier: CPol, Check: "attestation", Type: o.predicateType}
	resp, err := verifier.FetchAttestations(ctx, opts)
	switch {
	case err != nil:
		att.Error = err.Error()
	case !hasType(resp.Statements, o.predicateType):
		att.Error = fmt.Sprintf("attestions not found for predicate type %s", o.predicateType) // the engine's words
	default:
		att.Verified, att.Digest = true, resp.Digest
	}
	return append(out, att)
}

// hasType reports whether a statement the verifier returned has the type,
// as the engine's buildStatementMap groups them.
func hasType(statements []map[string]any, t string) bool {
	for _, s := range statements {
		if got, _ := s["type"].(string); got == t {
			return true
		}
	}
	return false
}

// attestor is the ImageValidatingPolicy attestor the flags describe.
func (o *options) attestor(c contents) *policiesv1beta1.Attestor {
	cs := &policiesv1beta1.Cosign{CTLog: &policiesv1beta1.CTLog{
		URL: o.rekorURL, RekorPubKey: c.rekorPubKey, CTLogPubKey: c.ctlogPubKey, TSACertChain: c.tsaCertChain,
		InsecureIgnoreTlog: o.ignoreTlog, InsecureIgnoreSCT: o.ignoreSCT,
	}}
	if o.tufMirror != "" || o.tufRoot != "" {
		cs.TUF = &policiesv1beta1.TUF{Mirror: o.tufMirror}
		cs.TUF.Root.Path = o.tufRoot
	}
	if c.trustedRoot != "" {
		cs.TrustedRoot = &policiesv1beta1.StringOrExpression{Value: c.trustedRoot}
	}
	if o.key != "" {
		cs.Key = &policiesv1beta1.Key{Data: c.key}
	} else {
		cs.Keyless = &policiesv1beta1.Keyless{Roots: c.roots, Identities: []policiesv1beta1.Identity{{
			Subject: o.subject, Issuer: o.issuer, SubjectRegExp: o.subjectRegExp, IssuerRegExp: o.issuerRegExp,
		}}}
	}
	return &policiesv1beta1.Attestor{Name: "nestattest", Cosign: cs}
}

// ivpol runs the ImageValidatingPolicy verifier as its CEL functions
// verifyImageSignatures and verifyAttestationSignatures do
// (pkg/cel/libs/imageverify/impl.go): the image's data loaded once by the
// SDK's image data loader, then VerifyImageSignature and
// VerifyAttestationSignature.
func (o *options) ivpol(ctx context.Context, client registryclient.Client, c contents) []check {
	out := []check{{Verifier: IVPol, Check: "signature"}}
	if o.predicateType != "" {
		out = append(out, check{Verifier: IVPol, Check: "attestation", Type: o.predicateType})
	}
	remoteOpts, nameOpts, err := client.Options(ctx)
	var img *imagedataloader.ImageData
	if err == nil {
		var ictx imagedataloader.ImageContext
		if ictx, err = imagedataloader.NewImageContext(nil, nil, nil); err == nil {
			img, err = ictx.Get(ctx, o.image, remoteOpts, nameOpts)
		}
	}
	if err != nil {
		for i := range out {
			out[i].Error = fmt.Sprintf("failed to get imagedata: %v", err) // the CEL function's words
		}
		return out
	}
	verifier := ivpolcosign.NewVerifier(nil, logr.Discard())
	attestor := o.attestor(c)
	if err := verifier.VerifyImageSignature(ctx, img, attestor); err != nil {
		out[0].Error = err.Error()
	} else {
		out[0].Verified, out[0].Digest = true, img.Digest
	}
	if o.predicateType != "" {
		a := &policiesv1beta1.Attestation{Name: "attestation", InToto: &policiesv1beta1.InToto{Type: o.predicateType}}
		if err := verifier.VerifyAttestationSignature(ctx, img, a, attestor); err != nil {
			out[1].Error = err.Error()
		} else {
			out[1].Verified, out[1].Digest = true, img.Digest
		}
	}
	return out
}
