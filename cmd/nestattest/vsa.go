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
	// stdinBusy says standard input was read already (a signing run's key
	// password, --from -): the --vsa-key password is not read from it.
	stdinBusy bool
	// loaded is the summaries' signer, once load has loaded it.
	loaded *signing
}

// load loads the summaries' signer, when they are requested: a signing
// run loads it before it writes anything, so that a bad --vsa-key stops
// it there.
func (o *vsaOptions) load(ctx context.Context, cmd *cobra.Command, s streams) error {
	if !o.requested() || o.loaded != nil {
		return nil
	}
	g, err := o.signing.load(ctx, cmd, s, !o.stdinBusy)
	o.loaded = g
	return err
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

// writeVSAs gives the nodes of rep that passed a signed summary of what
// verify checked, and says what it wrote.
func (o *verifyOptions) writeVSAs(ctx context.Context, cmd *cobra.Command, s streams, c *registry.Client, tree *walk.Tree, rep *trees.VerifyReport, vopts trees.VerifyOptions, verified time.Time) error {
	o.vsa.signing.trustedRoot, o.vsa.signing.tuf = o.trust.trustedRoot, o.tuf
	_, err := o.vsa.write(ctx, cmd, s, c, tree, rep, vopts, verified, vsaGroups(o.vsa.format, rep), o.walk.jobs)
	return err
}

// write signs a summary for every node of rep that passed, in the
// stores of its group, says what it wrote, and returns each node's
// outcome.
func (o *vsaOptions) write(ctx context.Context, cmd *cobra.Command, s streams, c *registry.Client, tree *walk.Tree, rep *trees.VerifyReport,
	vopts trees.VerifyOptions, verified time.Time, groups []vsaGroup, jobs int) (map[*walk.Node]trees.Outcome, error) {
	if err := o.load(ctx, cmd, s); err != nil {
		return nil, err
	}
	signing := o.loaded
	statements, _ := parseStatements(o.statements)
	policy, err := vsa.NewPolicy(vopts.Trust, vopts.Require, tree.Root.Digest().String(), vopts.Mirrors)
	if err != nil {
		return nil, err
	}
	var (
		tally    trees.Tally
		all      trees.Report
		errs     []error
		outcomes = map[*walk.Node]trees.Outcome{}
	)
	for _, g := range groups {
		sums := &vsa.Summaries{Policy: policy, PolicyURI: o.policyURI, Version: version, Time: verified}
		wrep, err := vsa.Write(ctx, tree, g.rep, sums, trees.Options{
			Signer: signing.signer, Witnesses: signing.witnesses, TrustedMaterial: signing.trusted, Stores: g.stores, Client: c,
			Statements: statements, Mirrors: vopts.Mirrors, Jobs: jobs,
		})
		if wrep != nil {
			t := wrep.Tally()
			tally.Nodes, tally.Written, tally.Present, tally.Failed = tally.Nodes+t.Nodes, tally.Written+t.Written, tally.Present+t.Present, tally.Failed+t.Failed
			all.Signatures += wrep.Signatures
			all.Statements += wrep.Statements
			for _, r := range wrep.Results {
				outcomes[r.Node] = r.Outcome()
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	fmt.Fprintf(s.err, "verification summaries (%s, policy %s): %s passed, %d written, %d present, %d failed; %s that failed got none\n",
		vsa.PredicateType, policy.Digest(), plural(tally.Nodes, "node"), tally.Written, tally.Present, tally.Failed, plural(rep.Failed(), "node"))
	fmt.Fprintln(s.err, signing.stats(&all).String())
	if err := errors.Join(errs...); err != nil {
		return outcomes, fmt.Errorf("write the verification summaries: %w", err)
	}
	return outcomes, nil
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

// addRunFlags adds, to a signing run (sign, propagate), the flags of who
// signs the summaries it writes after signing: --vsa-key or --vsa-keyless.
// Their evidence and services (--tlog-upload, --timestamp-server-url,
// --fulcio-url, --identity-token-file, ...) are the run's own; the
// statement mode is the run's --statements.
func (o *vsaOptions) addRunFlags(cmd *cobra.Command, what string) {
	f := cmd.Flags()
	f.StringVar(&o.signing.key.key, "vsa-key", "", "after "+what+", verify the tree as it was just signed (this run's identity, predicate type and evidence) "+
		"and give every node that passed a signed SLSA verification summary (VSA), signed with this key: any reference --key takes")
	f.StringVar(&o.signing.key.passwordFile, "vsa-password-file", "", "file holding the --vsa-key password; else $"+envPassword+" or a prompt on a terminal")
	f.BoolVar(&o.signing.keyless, "vsa-keyless", false, "as --vsa-key, the summaries signed keyless with a certificate for this run's OIDC identity (the keyless flags)")
}

// inherit takes the run's services and evidence for the summaries: all of
// run but who signs.
func (o *vsaOptions) inherit(run signingOptions, statements string, stdinBusy bool) {
	key, keyless := o.signing.key, o.signing.keyless
	o.signing = run
	o.signing.key, o.signing.keyless = key, keyless
	o.statements, o.format, o.stdinBusy = statements, layout.Auto, stdinBusy
}

// summarizeRun verifies the tree a run signed with vopts and gives every
// node that passed a summary in the stores of groups (nil: each node's in
// the layout it was verified in). A node that failed gets none, and the
// run fails naming it.
func (o *vsaOptions) summarizeRun(ctx context.Context, cmd *cobra.Command, s streams, c *registry.Client, tree *walk.Tree, vopts trees.VerifyOptions,
	stores []attest.Store, jobs int) (map[*walk.Node]trees.Outcome, error) {
	verified := time.Now()
	vopts.Jobs, vopts.Client = jobs, c
	rep, err := trees.Verify(ctx, tree, vopts)
	if err != nil {
		return nil, fmt.Errorf("verify the tree for its summaries: %w", err)
	}
	for _, v := range rep.Verdicts {
		if !v.Passed() {
			fmt.Fprintf(s.err, "no summary %s %s: %s\n", v.Node.Path(), walk.Short(v.Node.Descriptor.Digest), v.Reasons())
		}
	}
	groups := vsaGroups(layout.Auto, rep)
	if stores != nil {
		groups = []vsaGroup{{stores: stores, rep: rep}}
	}
	outcomes, err := o.write(ctx, cmd, s, c, tree, rep, vopts, verified, groups, jobs)
	if n := rep.Failed(); n > 0 {
		err = errors.Join(err, fmt.Errorf("%s did not verify as signed and got no verification summary", plural(n, "node")))
	}
	return outcomes, err
}

// runTrust is the trust that accepts what a run signed, as verify would
// take it: the signer's key or identity, with the evidence its witnesses
// add where keeps stores it.
func (g *signing) runTrust(keeps attest.Keeps) (attest.Trust, error) {
	t := g.signer.Trust()
	t.IgnoreTlog = true
	for _, w := range g.witnesses {
		w.Require(&t, keeps)
	}
	if t.TrustedMaterial == nil && t.NeedsTrustedMaterial() && g.trusted != nil {
		tm, err := g.trusted()
		if err != nil {
			return attest.Trust{}, fmt.Errorf("the trusted root to verify the tree for its summaries: %w", err)
		}
		t.TrustedMaterial = tm
	}
	return t, nil
}
