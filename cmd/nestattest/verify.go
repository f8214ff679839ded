package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/layout"
	"github.com/nestattest/nestattest/attest/sbom"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

type verifyOptions struct {
	registry      registryOptions
	walk          walkOptions
	output        outputOptions
	trust         trustOptions
	format        string
	types         []string
	signatureOnly bool
	annotations   []string
	requireRoot   bool
	requireSBOM   bool
	mirrors       bool
	verbose       bool
	shard         shardOptions
	results       verifyResultOptions
	tuf           tufOptions
	vsa           vsaOptions
}

// verifyTrustHelp is the help of verify's trust flags, cosign verify's.
var verifyTrustHelp = trustHelp{
	key:            "the public key: a PEM file or URL, env://VAR, k8s://NAMESPACE/SECRET, or a KMS key (awskms://, gcpkms://, azurekms://, hashivault://)",
	identity:       "keyless: the identity (subject alternative name) the signing certificate must name",
	identityRegexp: "keyless: a regular expression the certificate's identity must match",
	issuer:         "keyless: the OIDC issuer the signing certificate must name",
	issuerRegexp:   "keyless: a regular expression the certificate's OIDC issuer must match",
	trustedRoot:    "sigstore trusted root JSON: the transparency logs (and certificate and timestamp authorities) to trust (default: the --tuf-mirror repository's)",
	ignoreTlog:     "do not require transparency-log entries, as cosign's flag of that name (for trees signed with --tlog-upload=false)",
	ignoreSCT:      "keyless: do not require a signed certificate timestamp (certificate transparency), as cosign's flag of that name",
	signedTimes:    "require RFC 3161 timestamps from a timestamp authority of the trusted root, as cosign's flag of that name",
}

func newVerify(s streams) *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify REF",
		Short: "Verify every node of a tree, each in its own repository, with cosign's verification",
		Long: `verify walks the tree under REF across its scoped repositories and checks every
node in its own repository with cosign's own verification code: a signature
by the key (or, keyless, under a certificate for the identity) over the node's digest that names the node's repository (and
carries the required annotations), and an attestation of each required
predicate type whose statement's subject is the node's digest.

It reads a node's sigstore bundles (OCI 1.1 referrers) when it has any, else
its legacy sha256-<hex>.sig/.att tags, as cosign v3 does; --format forces
one. As with cosign, transparency-log entries are required unless
--insecure-ignore-tlog (for trees signed with --tlog-upload=false); checking
them needs the sigstore trusted root of your Rekor: --trusted-root, else the
one sigstore's TUF repository serves (the public-good instance's, or
--tuf-mirror and --tuf-root for your own, as cosign initialize takes them).

An SBOM --type (spdxjson, cyclonedx) is checked on every node that has an
SBOM, attached by its build or attested; --require-sbom fails every image
that has none (an index is exempt). With --vsa-key or --vsa-keyless, every
node that passed then gets a signed SLSA verification summary
(https://slsa.dev/verification_summary/v1) naming the policy checked by
digest and what it passed with; a node that failed gets none.

Exit codes: 0 every node passed; 1 some node failed or the tree could not be
read; 2 bad flags, reference or key.`,
		Example: `  nestattest verify --key cosign.pub --insecure-ignore-tlog quay.io/org/ko-build:latest
  nestattest verify --key awskms:///alias/release --insecure-ignore-tlog --format bundle quay.io/org/ko-build:latest
  nestattest verify --certificate-identity https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main \
    --certificate-oidc-issuer https://token.actions.githubusercontent.com quay.io/org/ko-build:latest
  nestattest verify --key cosign.pub --trusted-root trusted_root.json --type slsaprovenance1 --type spdxjson --require-root -o json quay.io/org/ko-build@sha256:…
  nestattest verify --key cosign.pub --insecure-ignore-tlog --require-root --vsa-key awskms:///alias/verifier quay.io/org/ko-build:latest`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, s, args[0]) },
	}
	o.registry.addFlags(cmd)
	o.walk.addFlags(cmd)
	o.output.addFlags(cmd)
	o.trust.addFlags(cmd, "", verifyTrustHelp)
	o.tuf.addFlags(cmd)
	cmd.Flags().StringVar(&o.format, "format", layout.Auto, "storage format read: "+layout.ReadHelp())
	cmd.Flags().StringArrayVar(&o.types, "type", []string{"slsaprovenance1"}, "predicate type every node must carry an attestation of (repeatable; cosign names or a URI); "+
		"an SBOM type (spdx, spdxjson, cyclonedx) is checked on every node that has an SBOM of it, attached by its build or attested")
	cmd.Flags().BoolVar(&o.requireSBOM, "require-sbom", false, "fail every image without an SBOM attestation of the --type SBOM types (spdxjson or cyclonedx when none is given); an index is exempt")
	cmd.Flags().BoolVar(&o.signatureOnly, "signature-only", false, "check signatures only, no attestations")
	cmd.Flags().StringArrayVarP(&o.annotations, "annotations", "a", nil, "key=value every signature must carry (repeatable)")
	cmd.Flags().BoolVar(&o.mirrors, "mirrors", false, "also verify each node's mirrored copy in the root's repository, where catalog mirrored it and sign --mirrors signed it")
	cmd.Flags().BoolVar(&o.requireRoot, "require-root", false, "require the signature of every node below this root to bind it to the root ("+statement.AnnotationRoot+")")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "print a line per node as it is verified")
	o.shard.addFlags(cmd, "verify")
	o.results.addFlags(cmd)
	o.vsa.addFlags(cmd)
	return cmd
}

func (o *verifyOptions) run(cmd *cobra.Command, s streams, arg string) error {
	ctx := cmd.Context()
	if err := o.output.check(); err != nil {
		return err
	}
	if err := o.vsa.check(); err != nil {
		return err
	}
	if o.vsa.requested() && o.shard.requested() {
		return usagef("--vsa-key/--vsa-keyless write summaries of a whole tree's verify: not with --shard")
	}
	if err := checkCosignRepository(); err != nil {
		return err
	}
	ref, err := o.registry.parseRef(arg)
	if err != nil {
		return err
	}
	client := o.registry.client(s, o.vsa.requested(), o.walk.jobs)
	vopts, err := o.options(ctx, s, client)
	if err != nil {
		return err
	}
	if err := o.shard.check(false); err != nil {
		return err
	}
	if o.shard.requested() {
		return o.verifyShard(ctx, s, client, arg, ref, vopts)
	}
	wopts, err := o.walk.options(client)
	if err != nil {
		return err
	}
	// Each node is verified as the walk reads it: the progress counts the
	// nodes verified, of those read so far.
	progress := newProgress(s)
	progress.start("verifying", 0)
	vopts.Progress = func(v trees.Verdict) { progress.step(!v.Passed()) }
	verified := time.Now()
	tree, rep, err := trees.VerifyWalk(ctx, ref, wopts, vopts, func(*walk.Node) { progress.grow() })
	progress.end()
	if err != nil {
		if rep == nil && ctx.Err() == nil {
			return fmt.Errorf("read the tree: %w", err)
		}
		return err
	}
	if err := o.print(s, arg, tree, rep); err != nil {
		return err
	}
	if o.vsa.requested() {
		if err := o.writeVSAs(ctx, cmd, s, client, tree, rep, vopts, verified); err != nil {
			return err
		}
	}
	if rep.Failed() > 0 {
		return errFailed
	}
	return o.results.write(ref, tree)
}

// options turn the flags into library options: the trust, the tree's
// requirements (types, annotations, the root) and the stores read.
func (o *verifyOptions) options(ctx context.Context, s streams, c *registry.Client) (trees.VerifyOptions, error) {
	stores, err := layout.Read(o.format)
	if err != nil {
		return trees.VerifyOptions{}, usagef("--format %v", err)
	}
	annotations, err := parseAnnotations("--annotations", o.annotations)
	if err != nil {
		return trees.VerifyOptions{}, err
	}
	req := attest.Requirements{Annotations: annotations, RequireRoot: o.requireRoot, RequireSBOM: o.requireSBOM}
	if !o.signatureOnly {
		req.Types, req.SBOMTypes = splitSBOMTypes(o.types)
	}
	if o.signatureOnly && o.requireSBOM {
		return trees.VerifyOptions{}, usagef("--require-sbom checks attestations: it excludes --signature-only")
	}
	if err := req.Validate(); err != nil {
		return trees.VerifyOptions{}, usageError{err}
	}
	trust, err := o.trust.trust(ctx, s, &o.tuf)
	if err != nil {
		return trees.VerifyOptions{}, err
	}
	vopts := trees.VerifyOptions{Trust: trust, Require: req, Stores: stores, Jobs: o.walk.jobs, Mirrors: o.mirrors, Client: c}
	if len(req.SBOMTypes) > 0 || req.RequireSBOM {
		vopts.Attached = trees.SBOMs(c, nil)
	}
	return vopts, nil
}

// splitSBOMTypes parts --type into the types every node must carry and
// the SBOM types, checked where a node has an SBOM.
func splitSBOMTypes(types []string) (required, sboms []string) {
	for _, t := range types {
		if _, ok := sbom.Types[t]; ok {
			sboms = append(sboms, t)
			continue
		}
		required = append(required, t)
	}
	return required, sboms
}

// verifyDoc is the JSON output of `nestattest verify`.
type verifyDoc struct {
	Root    rootDoc         `json:"root"`
	Nodes   []verifyNodeDoc `json:"nodes"`
	Summary verifySummary   `json:"summary"`
}

type verifyNodeDoc struct {
	nodeDoc
	Passed bool `json:"passed"`
	// NoSBOM says the node has no SBOM of the --type SBOM types.
	NoSBOM bool `json:"noSBOM,omitempty"`
	// Layouts are the storage layouts the node carries anything in.
	Layouts []attest.Layout `json:"layouts,omitempty"`
	Checks  []trees.Check   `json:"checks"`
}

type verifySummary struct {
	Nodes  int      `json:"nodes"`
	Passed int      `json:"passed"`
	Failed int      `json:"failed"`
	Types  []string `json:"types"`
	Tlog   bool     `json:"tlogChecked"`
	// WithoutSBOM counts the nodes with no SBOM of the --type SBOM types.
	WithoutSBOM int `json:"withoutSBOM,omitempty"`
}

func (o *verifyOptions) print(s streams, arg string, tree *walk.Tree, rep *trees.VerifyReport) error {
	sum := verifySummary{Nodes: len(rep.Verdicts), Failed: rep.Failed(), Types: o.types, Tlog: !o.trust.ignoreTlog}
	if o.signatureOnly {
		sum.Types = []string{}
	}
	sum.Passed = sum.Nodes - sum.Failed
	for _, v := range rep.Verdicts {
		if v.NoSBOM {
			sum.WithoutSBOM++
		}
	}
	if o.output.format == "json" {
		doc := verifyDoc{Root: newRootDoc(arg, tree), Summary: sum}
		for _, v := range rep.Verdicts {
			doc.Nodes = append(doc.Nodes, verifyNodeDoc{nodeDoc: newNodeDoc(v.Node), Passed: v.Passed(), NoSBOM: v.NoSBOM, Layouts: v.Layouts, Checks: v.Checks})
		}
		return writeJSON(s.out, doc)
	}
	verdicts := map[*walk.Node]trees.Verdict{}
	for _, v := range rep.Verdicts {
		verdicts[v.Node] = v
	}
	printTree(s.out, tree, func(n *walk.Node) string {
		v, ok := verdicts[n]
		switch {
		case !ok:
			return "(another shard's)"
		case v.Passed():
			return "✓"
		}
		return "✗ " + v.Reasons()
	})
	if o.verbose {
		printDetails(s.err, rep)
	}
	printGroups(s.out, rep)
	_, err := fmt.Fprintln(s.out, o.summary(sum, tree, rep))
	return err
}

// printDetails writes, with -v, a line per check that failed with the
// verifier's own words, in tree order.
func printDetails(w io.Writer, rep *trees.VerifyReport) {
	for _, v := range rep.Verdicts {
		for _, c := range v.Checks {
			if !c.OK && c.Detail != "" {
				fmt.Fprintf(w, "%s %s: %s: %s\n", v.Node.Path(), walk.Short(v.Node.Descriptor.Digest), c.Name, c.Detail)
			}
		}
	}
}

// printGroups writes each reason for failing with how many nodes it failed,
// when more than one node failed.
func printGroups(w io.Writer, rep *trees.VerifyReport) {
	groups := map[string]int{}
	var order []string
	for _, v := range rep.Verdicts {
		for _, c := range v.Checks {
			if c.OK {
				continue
			}
			k := c.Name + ": " + c.Reason
			if groups[k] == 0 {
				order = append(order, k)
			}
			groups[k]++
		}
	}
	if rep.Failed() < 2 {
		return
	}
	for _, k := range order {
		fmt.Fprintf(w, "  %s: %s\n", plural(groups[k], "node"), k)
	}
}

// summary is the last line: the verdict, the counts, what was required and
// by whom, the layouts read and whether the transparency log was checked.
func (o *verifyOptions) summary(sum verifySummary, tree *walk.Tree, rep *trees.VerifyReport) string {
	what := "signature"
	if len(sum.Types) > 0 {
		what += " and " + strings.Join(sum.Types, ", ") + " attestation"
	}
	verdict := "verified"
	if sum.Failed > 0 {
		verdict = "FAILED"
	}
	line := fmt.Sprintf("%s: %d of %s in %s passed (%s by %s)", verdict, sum.Passed, plural(sum.Nodes, "node"),
		plural(count(tree).Repositories, "repository"), what, o.trust.signer())
	if sum.WithoutSBOM > 0 {
		line += fmt.Sprintf("; %s without an SBOM", plural(sum.WithoutSBOM, "node"))
		if !o.requireSBOM {
			line += " (not required: --require-sbom)"
		}
	}
	if both := carryingBoth(rep); both > 0 {
		line += fmt.Sprintf("; %s carry both layouts, their bundles read (as cosign v3)", plural(both, "node"))
	}
	if sum.Tlog {
		return line + "; transparency log checked"
	}
	return line + "; transparency log not checked (--insecure-ignore-tlog)"
}

func carryingBoth(rep *trees.VerifyReport) int {
	n := 0
	for _, v := range rep.Verdicts {
		if len(v.Layouts) > 1 {
			n++
		}
	}
	return n
}
