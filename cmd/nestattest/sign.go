package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/layout"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/catalog"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

type signOptions struct {
	catalog     catalogOptions
	registry    registryOptions
	walk        walkOptions
	output      outputOptions
	results     resultOptions
	signing     signingOptions
	predicate   predicateOptions
	sbom        sbomOptions
	format      string
	statements  string
	annotations []string
	bindRoot    bool
	mirrors     bool
	verbose     bool
	shard       shardOptions
	vsa         vsaOptions
}

func newSign(s streams) *cobra.Command {
	o := &signOptions{}
	cmd := &cobra.Command{
		Use:   "sign REF",
		Short: "Sign and attest every node of a tree, each in its own repository, as cosign stores them",
		Long: `sign walks the tree under REF across its scoped repositories and gives every
node — the root, every index, every leaf — a cosign signature
(<repo>:sha256-<hex>.sig) and an in-toto attestation (<repo>:sha256-<hex>.att)
in its own repository. What this signer already signed and attested, with the
evidence this run adds (a transparency-log entry, a timestamp), is not written
again; what lacks that evidence is signed anew with it. A node that fails does
not stop the others.

With --sbom attached, every node also gets an attestation of each SBOM its
build attached (ko's sha256-<hex>.sbom tag, an SBOM referrer as oras attach
writes), the document byte for byte as the predicate, the node its only
subject; the report names the nodes that have none.

With --child, --from or --discover, sign first composes the parent index at
REF (a tag) from those children, as nestattest catalog does, then signs and
attests the whole tree: one step for a Tekton Task or a workflow.

Exit codes: 0 every node signed and attested; 1 some nodes failed or the tree
could not be read; 2 bad flags, reference, key, password or predicate.`,
		Example: `  # keyless: one Fulcio certificate for the whole tree (GitHub Actions' token, or a projected one)
  nestattest sign --identity-token-file /var/run/sigstore/cosign/oidc-token --results-dir /tekton/results quay.io/org/ko-build:latest
  # a KMS key, through the cloud's workload identity: no key material where the build runs
  nestattest sign --key awskms:///alias/nestattest --from ko-refs.txt --results-dir /tekton/results quay.io/org/ko-build:v1
  COSIGN_PASSWORD=… nestattest sign --key cosign.key --tlog-upload=false quay.io/org/ko-build:latest
  nestattest sign --key cosign.key --predicate sbom.spdx.json --type spdxjson quay.io/org/ko-build@sha256:…`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, s, args[0]) },
	}
	o.catalog.addFlags(cmd)
	o.registry.addFlags(cmd)
	o.walk.addFlags(cmd)
	o.output.addFlags(cmd)
	o.results.addFlags(cmd)
	o.results.images.addFlags(cmd)
	o.signing.addFlags(cmd)
	o.predicate.addFlags(cmd)
	o.sbom.addFlags(cmd)
	cmd.Flags().StringVar(&o.format, "format", string(layout.Default), "storage format: "+layout.WriteHelp())
	addStatementsFlag(cmd, &o.statements)
	cmd.Flags().StringArrayVarP(&o.annotations, "annotations", "a", nil, "extra key=value annotation in every signature payload, as cosign sign -a")
	cmd.Flags().BoolVar(&o.bindRoot, "bind-root", true, "bind every signature to the root with the "+statement.AnnotationRoot+" annotation (root repository@digest)")
	cmd.Flags().BoolVar(&o.mirrors, "mirrors", true, "also sign and attest a node in the root's repository where it is mirrored there")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "print a line per node, in tree order")
	o.shard.addFlags(cmd, "sign")
	o.vsa.addRunFlags(cmd, "signing")
	return cmd
}

func (o *signOptions) run(cmd *cobra.Command, s streams, arg string) error {
	started := time.Now()
	ctx := cmd.Context()
	if err := o.output.check(); err != nil {
		return err
	}
	if err := o.shard.check(o.catalog.requested()); err != nil {
		return err
	}
	if err := o.results.images.check(); err != nil {
		return err
	}
	if err := o.sbom.check(); err != nil {
		return err
	}
	if err := o.checkVSA(); err != nil {
		return err
	}
	if err := checkCosignRepository(); err != nil {
		return err
	}
	ref, err := o.registry.parseRef(arg)
	if err != nil {
		return err
	}
	annotations, err := parseAnnotations("--annotations", o.annotations)
	if err != nil {
		return err
	}
	predicates, err := o.predicate.predicates(started)
	if err != nil {
		return err
	}
	client := o.registry.client(s, true, o.walk.jobs)
	stores, err := signStores(o.format)
	if err != nil {
		return err
	}
	statements, err := parseStatements(o.statements)
	if err != nil {
		return err
	}
	loaded, err := o.loadSigning(ctx, cmd, s)
	if err != nil {
		return err
	}
	wopts, err := o.walk.options(client)
	if err != nil {
		return err
	}
	if o.catalog.requested() { // composing writes the parent: not before the key is known good
		if _, err := loaded(); err != nil {
			return err
		}
	}
	root, composed, err := o.composed(ctx, s, client, ref)
	if err != nil {
		return err
	}
	if predicates, err = o.provenance(ctx, predicates, arg, client, composed); err != nil {
		return err
	}
	progress := newProgress(s)
	tree, err := o.shard.readTree(ctx, s, progress, client, root, wopts)
	signing, kerr := loaded()
	if kerr != nil {
		return kerr
	}
	if err != nil {
		return fmt.Errorf("read the tree, nothing signed: %w", err)
	}
	predicates = o.shard.provenance(predicates)
	progress.start("signing", len(tree.Nodes))
	sboms := &sbomFinder{}
	rep, err := trees.Sign(ctx, tree, trees.Options{
		Attached: o.sbom.attached(client, sboms),
		Signer:   signing.signer, Witnesses: signing.witnesses, TrustedMaterial: signing.trusted, Stores: stores, Client: client, Predicates: finish(predicates, time.Now()),
		Annotations: annotations, BindRoot: o.bindRoot, Mirrors: o.mirrors, Statements: statements,
		Jobs: o.walk.jobs, Progress: func(r trees.NodeResult) { progress.step(r.Err != nil) },
	})
	progress.end()
	if rep != nil && rep.Interrupted {
		return o.interrupted(s, arg, tree, rep)
	}
	if rep != nil && rep.Unreachable != nil {
		if err := o.results.writeReport(newSignDoc(arg, tree, rep)); err != nil {
			return err
		}
		return stopped(rep)
	}
	if rep == nil { // nothing was signed
		if errors.Is(err, attest.ErrPredicate) {
			return usageError{err}
		}
		return err
	}
	if o.sbom.mode != sbomAttached {
		sboms = nil
	}
	summaries, vsaErr := o.summarize(ctx, cmd, s, client, tree, rep, signing, predicates)
	if err := o.report(s, arg, tree, rep, predicates, signing.stats(rep), client, sboms, summaries); err != nil {
		return err
	}
	return vsaErr
}

// loadSigning loads the run's signing identities, its signer's and, with
// --vsa-*, the summaries': beside reading the tree when that asks the user
// nothing (every key's password is in a file or $COSIGN_PASSWORD), else
// now. Decrypting a cosign key runs scrypt for a quarter of a second or
// more, as long as reading a tree of 100 nodes from a registry 20 ms away.
// The function it returns waits for them; nothing is written before it
// has given them without an error. A load that failed now is its error.
func (o *signOptions) loadSigning(ctx context.Context, cmd *cobra.Command, s streams) (func() (*signing, error), error) {
	load := func() (*signing, error) {
		g, err := o.signing.load(ctx, cmd, s, !o.catalog.readsStdin())
		if err != nil {
			return nil, err
		}
		return g, o.vsa.load(ctx, cmd, s)
	}
	if !o.signing.key.unattended() || o.vsa.requested() && !o.vsa.signing.key.unattended() {
		g, err := load()
		return func() (*signing, error) { return g, nil }, err
	}
	done := make(chan struct{})
	var (
		g   *signing
		err error
	)
	go func() {
		defer close(done)
		g, err = load()
	}()
	return func() (*signing, error) {
		<-done
		return g, err
	}, nil
}

// checkVSA refuses bad --vsa-* flags before anything is read or written.
func (o *signOptions) checkVSA() error {
	o.vsa.inherit(o.signing, o.statements, o.catalog.readsStdin() || o.signing.key.key != "")
	if !o.vsa.requested() {
		return nil
	}
	if o.shard.requested() {
		return usagef("--vsa-key/--vsa-keyless summarize a whole tree's verify: not with --shard (run verify --vsa-key on the tree once every shard is signed)")
	}
	return o.vsa.check()
}

// summarize, with --vsa-key or --vsa-keyless, verifies the tree as this
// run signed it (its identity, its predicate type, its annotations and
// root binding, the attached SBOMs, the evidence its witnesses added) and
// gives every node that passed a summary, in the layouts it signed in.
// A run where a node failed writes none.
func (o *signOptions) summarize(ctx context.Context, cmd *cobra.Command, s streams, c *registry.Client, tree *walk.Tree, rep *trees.Report,
	g *signing, p statement.Predicates) (map[*walk.Node]trees.Outcome, error) {
	if !o.vsa.requested() {
		return nil, nil
	}
	if n := rep.Tally().Failed; n > 0 {
		fmt.Fprintf(s.err, "no verification summaries: %s failed to sign; re-run to complete the tree\n", plural(n, "node"))
		return nil, nil
	}
	read := o.format
	if read == layout.Both {
		read = layout.Auto
	}
	rstores, err := layout.Read(read)
	if err != nil {
		return nil, usagef("--format %v", err)
	}
	trust, err := g.runTrust(rstores[0].Keeps())
	if err != nil {
		return nil, err
	}
	annotations, _ := parseAnnotations("--annotations", o.annotations)
	vopts := trees.VerifyOptions{Trust: trust, Stores: rstores, Mirrors: o.mirrors,
		Require: attest.Requirements{Types: []string{p.Type()}, Annotations: annotations, RequireRoot: o.bindRoot}}
	if o.sbom.mode == sbomAttached {
		vopts.Require.SBOMTypes = []string{"spdxjson", "cyclonedx"}
		vopts.Attached = trees.SBOMs(c, nil)
	}
	wstores, _ := layout.Write(o.format)
	return o.vsa.summarizeRun(ctx, cmd, s, c, tree, vopts, wstores, o.walk.jobs)
}

// addStatementsFlag adds sign's and propagate's --statements.
func addStatementsFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVar(v, "statements", string(trees.StatementsNode),
		"what one signed statement covers: node (every node its own signatures, as cosign signs) or tree (one statement for up to 1,024 nodes, "+
			"stored with each: one signature, one transparency-log entry and one timestamp for them all; cosign's legacy .sig stays per node)")
}

// parseStatements checks --statements.
func parseStatements(s string) (trees.Statements, error) {
	m, err := trees.ParseStatements(s)
	if err != nil {
		return "", usagef("--statements %v", err)
	}
	return m, nil
}

// signStores are the stores of sign's and propagate's --format.
func signStores(format string) ([]attest.Store, error) {
	stores, err := layout.Write(format)
	if err != nil {
		return nil, usagef("--format %v", err)
	}
	return stores, nil
}

// composed composes the parent at ref first when children were given, and
// returns the root to sign (the composed parent by digest, or ref) and
// what composing did (nil when nothing was composed).
func (o *signOptions) composed(ctx context.Context, s streams, c *registry.Client, ref name.Reference) (name.Reference, *catalog.Result, error) {
	if !o.catalog.requested() {
		return ref, nil, nil
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return nil, nil, usagef("with --child, --from or --discover, REF is the tag to push the composed parent to, not a digest")
	}
	d, res, err := o.catalog.compose(ctx, c, tag, o.walk)
	if err != nil {
		return nil, nil, fmt.Errorf("compose %s, nothing signed: %w", tag, err)
	}
	if res.Present {
		fmt.Fprintf(s.err, "composed %s: %d children, unchanged (the tag already names it)\n", d, len(res.Children))
	} else {
		fmt.Fprintf(s.err, "composed %s: %d children\n", d, len(res.Children))
	}
	return d, res, nil
}

// report prints the outcome, writes the results and picks the exit code.
func (o *signOptions) report(s streams, arg string, tree *walk.Tree, rep *trees.Report, p statement.Predicates, st signingStats, c *registry.Client,
	sboms *sbomFinder, summaries map[*walk.Node]trees.Outcome) error {
	ref, _ := o.registry.parseRef(arg)
	return runReport{output: o.output, results: o.shard.results(s, o.results), verbose: o.verbose, client: c, sboms: sboms, summaries: summaries}.
		write(s, ref, arg, tree, rep, describePredicate(p), st)
}

// interrupted ends a run stopped by a signal: one line, the partial report.
func (o *signOptions) interrupted(s streams, arg string, tree *walk.Tree, rep *trees.Report) error {
	t := rep.Tally()
	fmt.Fprintf(s.err, "interrupted after %d of %s (%d written, %d present, %d failed); re-run to finish\n",
		t.Nodes-t.Pending, plural(t.Nodes, "node"), t.Written, t.Present, t.Failed)
	if err := o.results.writeReport(newSignDoc(arg, tree, rep)); err != nil {
		return err
	}
	return errInterrupted
}

func signSummary(t trees.Tally, c counts, what string) string {
	s := signOutcome(t, c, what)
	if t.Mirrored > 0 {
		s += fmt.Sprintf("; %s also in %s mirrored copies in the root's repository", plural(t.Mirrored, "node"), pronoun(t.Mirrored))
	}
	return s
}

func signOutcome(t trees.Tally, c counts, what string) string {
	switch {
	case t.Failed > 0:
		return fmt.Sprintf("FAILED: %d of %d nodes failed (%d written, %d present); re-run to complete the tree", t.Failed, t.Nodes, t.Written, t.Present)
	case t.Written == 0:
		return fmt.Sprintf("nothing to write: all %s in %s already signed and attested (%s) by this signer", plural(t.Nodes, "node"), plural(c.Repositories, "repository"), what)
	}
	return fmt.Sprintf("signed and attested %s in %s (%s): %d written, %d present", plural(t.Nodes, "node"), plural(c.Repositories, "repository"), what, t.Written, t.Present)
}

// signDoc is the JSON report of `nestattest sign`.
type signDoc struct {
	Root    rootDoc       `json:"root"`
	Nodes   []signNodeDoc `json:"nodes"`
	Summary trees.Tally   `json:"summary"`
	// Signing says who signed and what the witnesses added.
	Signing *signingStats `json:"signing,omitempty"`
	// SBOM, with --sbom attached, counts the nodes whose SBOMs were
	// attested and lists those that have none.
	SBOM *sbomDoc `json:"sbom,omitempty"`
	// Summaries, with --vsa-key or --vsa-keyless, counts the nodes given
	// a verification summary after signing.
	Summaries *summariesDoc `json:"summaries,omitempty"`
}

// summariesDoc counts the nodes that got a verification summary after
// signing: written by this run, present already, failed to write.
type summariesDoc struct {
	Nodes   int `json:"nodes"`
	Written int `json:"written"`
	Present int `json:"present"`
	Failed  int `json:"failed"`
}

type signNodeDoc struct {
	nodeDoc
	Places []trees.Placement `json:"places"`
	// SBOMs are the SBOMs its build attached, each attested (--sbom
	// attached).
	SBOMs []sbomRef `json:"sboms,omitempty"`
	// Summary is what became of its verification summary (--vsa-key,
	// --vsa-keyless): written, present, failed, or none when it did not
	// verify as signed.
	Summary trees.Outcome `json:"summary,omitempty"`
	node    *walk.Node
	outcome trees.Outcome
}

// summaryNone is a node's Summary when it got none.
const summaryNone trees.Outcome = "none"

// summarized records the outcome of each node's verification summary.
func (d *signDoc) summarized(outcomes map[*walk.Node]trees.Outcome) {
	d.Summaries = &summariesDoc{}
	for i := range d.Nodes {
		n := &d.Nodes[i]
		n.Summary = outcomes[n.node]
		switch n.Summary {
		case "":
			n.Summary = summaryNone
		case trees.Written:
			d.Summaries.Written++
		case trees.Present:
			d.Summaries.Present++
		case trees.Failed:
			d.Summaries.Failed++
		}
		if n.Summary != summaryNone {
			d.Summaries.Nodes++
		}
	}
}

func newSignDoc(arg string, tree *walk.Tree, rep *trees.Report) signDoc {
	doc := signDoc{Root: newRootDoc(arg, tree), Summary: rep.Tally()}
	for _, r := range rep.Results {
		d := signNodeDoc{nodeDoc: newNodeDoc(r.Node), Places: r.Places, SBOMs: sbomRefs(r.Attached), node: r.Node, outcome: r.Outcome()}
		if r.Err != nil {
			d.Error = r.Err.Error()
		}
		doc.Nodes = append(doc.Nodes, d)
	}
	return doc
}

// signMarkdown is the GitHub step summary: a table of every node, with
// its SBOMs (--sbom attached) and its verification summary (--vsa-key,
// --vsa-keyless) when the run made them.
func signMarkdown(arg string, tree *walk.Tree, doc signDoc) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### nestattest sign `%s`\n\nRoot `%s`\n\n", arg, tree.Root.Digest())
	b.WriteString("| path | digest | type | signature | attestation |")
	sep := "|---|---|---|---|---|"
	if doc.SBOM != nil {
		b.WriteString(" SBOM |")
		sep += "---|"
	}
	if doc.Summaries != nil {
		b.WriteString(" verification summary |")
		sep += "---|"
	}
	b.WriteString("\n" + sep + "\n")
	for _, d := range doc.Nodes {
		sig, att := string(d.outcome), string(d.outcome)
		if len(d.Places) > 0 && d.Error == "" {
			sig, att = string(d.Places[0].Signature), string(d.Places[0].Attestation)
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s |", d.node.Path(), walk.Short(d.node.Descriptor.Digest), describe(d.node), sig, att)
		if doc.SBOM != nil {
			fmt.Fprintf(&b, " %s |", sbomCell(d.SBOMs))
		}
		if doc.Summaries != nil {
			fmt.Fprintf(&b, " %s |", d.Summary)
		}
		b.WriteString("\n")
	}
	t := doc.Summary
	fmt.Fprintf(&b, "\n%s: %d written, %d present, %d failed\n", plural(t.Nodes, "node"), t.Written, t.Present, t.Failed)
	if doc.SBOM != nil {
		fmt.Fprintf(&b, "\n%s\n", doc.SBOM.String())
	}
	if v := doc.Summaries; v != nil {
		fmt.Fprintf(&b, "\nverification summaries: %s, %d written, %d present, %d failed\n", plural(v.Nodes, "node"), v.Written, v.Present, v.Failed)
	}
	return b.String()
}

// sbomCell names a node's attested SBOMs by predicate type, or none.
func sbomCell(refs []sbomRef) string {
	if len(refs) == 0 {
		return "none"
	}
	var types []string
	for _, r := range refs {
		types = append(types, r.PredicateType)
	}
	return strings.Join(types, ", ")
}

func status(r trees.NodeResult) string {
	return string(r.Outcome())
}
