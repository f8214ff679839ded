package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/layout"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/attest/vsa"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// vsaOptions are verify's flags for signing verification summaries: who
// signs them (--vsa-key, or --vsa-keyless with the keyless flags sign
// takes), the evidence added (--tlog-upload, --timestamp-server-url), the
// layout and statement mode they are written in.
type vsaOptions struct {
	signing    signingOptions
	format     string
	statements string
	policyURI  string
}

func (o *vsaOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.signing.key.key, "vsa-key", "", "after verifying, give every node that passed a signed SLSA verification summary (VSA), signed with this key: any reference --key takes in sign")
	f.StringVar(&o.signing.key.passwordFile, "vsa-password-file", "", "file holding the --vsa-key password; else $"+envPassword+", a prompt on a terminal, or standard input")
	f.BoolVar(&o.signing.keyless, "vsa-keyless", false, "sign the verification summaries keyless, with a certificate for an OIDC identity (the keyless flags as sign takes them)")
	f.StringVar(&o.signing.fulcioURL, "fulcio-url", defaultFulcioURL, "with --vsa-keyless: Fulcio, the certificate authority")
	f.StringVar(&o.signing.rekorURL, "rekor-url", defaultRekorURL, "with --vsa-key/--vsa-keyless: Rekor v1 transparency log the summaries are logged in")
	f.StringVar(&o.signing.tsaURL, "timestamp-server-url", "", "with --vsa-key/--vsa-keyless: RFC 3161 timestamp authority that countersigns every summary")
	f.BoolVar(&o.signing.tlogUpload, "tlog-upload", true, "with --vsa-key/--vsa-keyless: log every summary in the transparency log (=false: none, as cosign)")
	f.StringVar(&o.signing.identityToken, "identity-token", "", "with --vsa-keyless: OIDC identity token, or a file holding one")
	f.StringVar(&o.signing.identityTokenFile, "identity-token-file", "", "with --vsa-keyless: file holding the OIDC identity token, read again for each certificate")
	f.StringVar(&o.signing.signingConfig, "signing-config", "", "with --vsa-key/--vsa-keyless: sigstore signing config JSON naming Fulcio, Rekor and timestamp authorities")
	f.BoolVar(&o.signing.insecureSkipVerify, "insecure-skip-verify", false, "with --vsa-keyless: accept a certificate without a signed certificate timestamp (private instances; tests)")
	f.StringVar(&o.format, "vsa-format", layout.Auto, "storage format of the summaries: "+layout.Auto+" (each node's in the layout its signature was verified in: "+
		"a node signed in cosign's tags gains no bundle, which cosign v3 and verify would then read instead of its tags), "+layout.WriteHelp())
	f.StringVar(&o.statements, "statements", string(trees.StatementsNode), "what one signed summary covers: node (each node its own, resourceUri the node) or tree (one for up to 1,024 nodes that passed, resourceUri the root)")
	f.StringVar(&o.policyURI, "vsa-policy-uri", "", "the summaries' policy.uri (default: a data: URI of the canonical policy document itself, whose digest policy.digest is)")
}

// requested says whether summaries are to be written.
func (o *vsaOptions) requested() bool { return o.signing.key.key != "" || o.signing.keyless }

// check refuses bad flags before anything is read.
func (o *vsaOptions) check() error {
	if o.signing.keyless && o.signing.key.key != "" {
		return usagef("--vsa-keyless and --vsa-key exclude each other")
	}
	if _, err := parseStatements(o.statements); err != nil {
		return err
	}
	if o.format == layout.Auto {
		return nil
	}
	if _, err := layout.Write(o.format); err != nil {
		return usagef("--vsa-format %v", err)
	}
	return nil
}

// write gives the nodes of rep that passed a signed summary of what
// verify checked, and says what it wrote.
func (o *verifyOptions) writeVSAs(ctx context.Context, cmd *cobra.Command, s streams, c *registry.Client, tree *walk.Tree, rep *trees.VerifyReport, vopts trees.VerifyOptions, verified time.Time) error {
	o.vsa.signing.trustedRoot, o.vsa.signing.tuf = o.trust.trustedRoot, o.tuf
	signing, err := o.vsa.signing.load(ctx, cmd, s, true)
	if err != nil {
		return err
	}
	statements, _ := parseStatements(o.vsa.statements)
	policy, err := vsa.NewPolicy(vopts.Trust, vopts.Require, tree.Root.Digest().String(), vopts.Mirrors)
	if err != nil {
		return err
	}
	var (
		tally trees.Tally
		all   trees.Report
		errs  []error
	)
	for _, g := range vsaGroups(o.vsa.format, rep) {
		sums := &vsa.Summaries{Policy: policy, PolicyURI: o.vsa.policyURI, Version: version, Time: verified}
		wrep, err := vsa.Write(ctx, tree, g.rep, sums, trees.Options{
			Signer: signing.signer, Witnesses: signing.witnesses, TrustedMaterial: signing.trusted, Stores: g.stores, Client: c,
			Statements: statements, Mirrors: vopts.Mirrors, Jobs: o.walk.jobs,
		})
		if wrep != nil {
			t := wrep.Tally()
			tally.Nodes, tally.Written, tally.Present, tally.Failed = tally.Nodes+t.Nodes, tally.Written+t.Written, tally.Present+t.Present, tally.Failed+t.Failed
			all.Signatures += wrep.Signatures
			all.Statements += wrep.Statements
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	fmt.Fprintf(s.err, "verification summaries (%s, policy %s): %s passed, %d written, %d present, %d failed; %s that failed got none\n",
		vsa.PredicateType, policy.Digest(), plural(tally.Nodes, "node"), tally.Written, tally.Present, tally.Failed, plural(rep.Failed(), "node"))
	fmt.Fprintln(s.err, signing.stats(&all).String())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write the verification summaries: %w", err)
	}
	return nil
}

// vsaGroup is the verdicts whose summaries go into the same stores.
type vsaGroup struct {
	stores []attest.Store
	rep    *trees.VerifyReport
}

// vsaGroups splits rep by where the summaries go: with --vsa-format auto,
// each node's in the layout its signature was verified in (a layout that
// held nothing for a failed node does not matter: it gets none); else all
// in the stores of format.
func vsaGroups(format string, rep *trees.VerifyReport) []vsaGroup {
	if format != layout.Auto {
		stores, _ := layout.Write(format)
		return []vsaGroup{{stores: stores, rep: rep}}
	}
	var out []vsaGroup
	by := map[attest.Layout]int{}
	for _, v := range rep.Verdicts {
		l := layout.Default
		if len(v.Checks) > 0 && v.Checks[0].Layout != "" {
			l = v.Checks[0].Layout
		}
		i, ok := by[l]
		if !ok {
			stores, _ := layout.Write(string(l))
			i, by[l] = len(out), len(out)
			out = append(out, vsaGroup{stores: stores, rep: &trees.VerifyReport{}})
		}
		out[i].rep.Verdicts = append(out[i].rep.Verdicts, v)
	}
	return out
}
