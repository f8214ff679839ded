package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/layout"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/internal/backoff"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// The waits between polls for the builder's provenance (--wait): a second,
// doubling up to half a minute.
const (
	pollFirst = time.Second
	pollMax   = 30 * time.Second
)

// propagateOptions are `nestattest propagate`'s flags: whom the source
// provenance must come from, and how to sign what it becomes.
type propagateOptions struct {
	registry   registryOptions
	walk       walkOptions
	output     outputOptions
	results    resultOptions
	signing    signingOptions
	format     string
	statements string
	verbose    bool

	source      trustOptions
	sourceTypes []string
	wait        time.Duration
	vsa         vsaOptions
}

// sourceTrustHelp is the help of propagate's --source-* trust flags: whom
// the builder's provenance must come from.
var sourceTrustHelp = trustHelp{
	key:            "the builder's public key (Tekton Chains' cosign.pub): a file or URL, env://, k8s://NAMESPACE/SECRET or a KMS key",
	identity:       "a keyless builder's certificate identity",
	identityRegexp: "a regular expression a keyless builder's certificate identity must match",
	issuer:         "a keyless builder's OIDC issuer",
	issuerRegexp:   "a regular expression a keyless builder's OIDC issuer must match",
	trustedRoot:    "sigstore trusted root for the builder's signatures (its Fulcio, Rekor and timestamp authority; default: the --tuf-mirror repository's)",
	ignoreTlog:     "accept the builder's signatures without transparency-log entries (a Chains without transparency.enabled)",
	ignoreSCT:      "accept a keyless builder's certificate without a signed certificate timestamp",
	signedTimes:    "require RFC 3161 timestamps on the builder's signatures",
}

func newPropagate(s streams) *cobra.Command {
	o := &propagateOptions{}
	cmd := &cobra.Command{
		Use:   "propagate REF",
		Short: "Give every node of a tree the provenance a trusted builder (Tekton Chains) made for its root",
		Long: `propagate runs where the trusted signing keys live (Tekton Chains' namespace, a
release pipeline), never beside build steps. It verifies the root's signature
and provenance attestation against the builder's identity (--source-key, or
--source-certificate-identity and --source-certificate-oidc-issuer for a
keyless builder), requiring the root's digest among the provenance's subjects;
then walks the tree from that verified digest and gives every node below it a
signature (annotated with the root and the source attestation) and an
attestation whose predicate is the source's, byte for byte, with the node as
subject — signed with --key or keyless, in the storage formats sign has.

The root's digest commits to every child's digest, so the root's provenance
is the provenance of every node below it: policies that require the builder's
provenance then admit each child.

Nothing is written when the root does not verify, when its provenance names
other subjects only, or when the tree cannot be read. --wait polls, with
backoff, until the builder has attested the root (Chains signs after the run
completes).

Exit codes: 0 every node signed and attested; 1 some nodes failed, the root
did not verify or the tree could not be read; 2 bad flags, reference or key.`,
		Example: `  nestattest propagate --source-key k8s://tekton-chains/signing-secrets --source-insecure-ignore-tlog \
    --key awskms:///alias/release --tlog-upload=false --wait 5m quay.io/org/ko-build@sha256:…`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, s, args[0]) },
	}
	o.registry.addFlags(cmd)
	o.walk.addFlags(cmd)
	o.output.addFlags(cmd)
	o.results.addFlags(cmd)
	o.signing.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.format, "format", string(layout.Default), "storage format of what is written: "+layout.WriteHelp())
	addStatementsFlag(cmd, &o.statements)
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print a line per node, in tree order")
	o.source.addFlags(cmd, "source-", sourceTrustHelp)
	f.StringArrayVar(&o.sourceTypes, "source-type", []string{"slsaprovenance1", "slsaprovenance02"},
		"predicate type of the builder's provenance, in order of preference (repeatable; cosign names or a URI)")
	f.DurationVar(&o.wait, "wait", 0, "wait up to this long for the builder to sign and attest the root, polling with backoff")
	o.vsa.addRunFlags(cmd, "propagating (with the builder's identity, --source-*: --key must be the builder's own)")
	return cmd
}

func (o *propagateOptions) run(cmd *cobra.Command, s streams, arg string) error {
	ctx := cmd.Context()
	if err := o.output.check(); err != nil {
		return err
	}
	if err := checkCosignRepository(); err != nil {
		return err
	}
	ref, err := o.registry.parseRef(arg)
	if err != nil {
		return err
	}
	client := o.registry.client(s, true, o.walk.jobs)
	source, err := o.sourceOptions(ctx, s, client)
	if err != nil {
		return err
	}
	o.vsa.inherit(o.signing, o.statements, o.signing.key.key != "")
	if err := o.vsa.check(); err != nil {
		return err
	}
	stores, err := signStores(o.format)
	if err != nil {
		return err
	}
	statements, err := parseStatements(o.statements)
	if err != nil {
		return err
	}
	wopts, err := o.walk.options(client)
	if err != nil {
		return err
	}
	signing, err := o.signing.load(ctx, cmd, s, true)
	if err != nil {
		return err
	}
	if err := o.sameSigner(source.Trust, signing.signer); err != nil {
		return err
	}
	if err := o.vsa.load(ctx, cmd, s); err != nil {
		return err
	}
	root, sources, err := o.readSources(ctx, s, client, ref, source)
	if err != nil {
		return err
	}
	for _, src := range sources {
		fmt.Fprintf(s.err, "verified %s provenance of %s (%s)\n", src.PredicateType, root, src.Where)
	}
	progress := newProgress(s)
	tree, err := readTree(ctx, progress, root, wopts)
	if err != nil {
		return fmt.Errorf("read the tree from the verified root, nothing written: %w", err)
	}
	progress.start("propagating", len(tree.Nodes)-1)
	rep, err := trees.SignNodes(ctx, tree, tree.Nodes[1:], trees.Options{
		Signer: signing.signer, Witnesses: signing.witnesses, TrustedMaterial: signing.trusted, Stores: stores, Client: client,
		Propagate: sources, Annotations: map[string]string{trees.AnnotationSource: trees.SourceAnnotation(sources)},
		BindRoot: true, Mirrors: true, Jobs: o.walk.jobs, Statements: statements,
		Progress: func(r trees.NodeResult) { progress.step(r.Err != nil) },
	})
	progress.end()
	if rep == nil {
		return err
	}
	if rep.Unreachable != nil {
		return stopped(rep)
	}
	if rep.Interrupted {
		t := rep.Tally()
		fmt.Fprintf(s.err, "interrupted after %d of %s; re-run to finish\n", t.Nodes-t.Pending, plural(t.Nodes, "node"))
		return errInterrupted
	}
	what := fmt.Sprintf("%s provenance of the root", sources[0].PredicateType)
	summaries, vsaErr := o.summarize(ctx, cmd, s, client, tree, rep, source, sources[0].PredicateType)
	// Chains signed the root: no IMAGE_URL/IMAGE_DIGEST, which would have it
	// sign the root again.
	err = runReport{output: o.output, results: o.results, verbose: o.verbose, counts: true, client: client, summaries: summaries}.
		write(s, ref, arg, tree, rep, what, signing.stats(rep))
	if err != nil {
		return err
	}
	return vsaErr
}

// sameSigner, with --vsa-key or --vsa-keyless, refuses a --key that is not
// the builder's (--source-key): the summaries say every node passed the
// builder's policy, which a node signed by another key does not.
func (o *propagateOptions) sameSigner(source attest.Trust, signer attest.Signer) error {
	if !o.vsa.requested() {
		return nil
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	mine := signer.Trust()
	switch {
	case source.Key != nil && mine.Key != nil:
		if k, ok := mine.Key.(equaler); ok && k.Equal(source.Key) {
			return nil
		}
	case source.Identity != nil && mine.Identity != nil:
		if source.Identity.SubjectRegexp != "" || source.Identity.IssuerRegexp != "" ||
			(source.Identity.Subject == mine.Identity.Subject && source.Identity.Issuer == mine.Identity.Issuer) {
			return nil
		}
	}
	return usagef("--vsa-key/--vsa-keyless verify the tree with the builder's identity (%s): sign with it too (--key the builder's key), or run verify --vsa-key with your own policy afterwards", o.source.signer())
}

// summarize, with --vsa-key or --vsa-keyless, verifies the whole tree with
// the builder's identity (source) and its provenance type, as a policy that
// requires the builder's provenance on every node would, and gives every
// node that passed a summary, each in the layout it was verified in.
func (o *propagateOptions) summarize(ctx context.Context, cmd *cobra.Command, s streams, c *registry.Client, tree *walk.Tree, rep *trees.Report,
	source trees.VerifyOptions, typ string) (map[*walk.Node]trees.Outcome, error) {
	if !o.vsa.requested() {
		return nil, nil
	}
	if n := rep.Tally().Failed; n > 0 {
		fmt.Fprintf(s.err, "no verification summaries: %s failed; re-run to complete the tree\n", plural(n, "node"))
		return nil, nil
	}
	source.Require = attest.Requirements{Types: []string{typ}, RequireRoot: true}
	source.Mirrors = true
	return o.vsa.summarizeRun(ctx, cmd, s, c, tree, source, nil, o.walk.jobs)
}

// sourceOptions are the verify options for the builder's signatures.
func (o *propagateOptions) sourceOptions(ctx context.Context, s streams, c *registry.Client) (trees.VerifyOptions, error) {
	if err := (attest.Requirements{Types: o.sourceTypes}).Validate(); err != nil {
		return trees.VerifyOptions{}, optionUsage(err, "source-")
	}
	trust, err := o.source.trust(ctx, s, &o.signing.tuf)
	if err != nil {
		return trees.VerifyOptions{}, err
	}
	stores, err := layout.Read(layout.Auto)
	if err != nil {
		return trees.VerifyOptions{}, err
	}
	return trees.VerifyOptions{Trust: trust, Stores: stores, Client: c}, nil
}

// readSources resolves ref and verifies the builder's provenance of it,
// polling until --wait runs out while the root is not yet signed or
// attested. It returns the root by digest: the tree is walked from what
// was verified, whatever the tag names by then.
func (o *propagateOptions) readSources(ctx context.Context, s streams, c *registry.Client, ref name.Reference, opts trees.VerifyOptions) (name.Digest, []*trees.Source, error) {
	deadline := time.Now().Add(o.wait)
	poll := backoff.Backoff{First: pollFirst, Max: pollMax}
	for {
		root, sources, err := o.readSourcesOnce(ctx, c, ref, opts)
		if err == nil {
			return root, sources, nil
		}
		waiting := errors.Is(err, attest.ErrUnsigned) || errors.Is(err, attest.ErrUnattested)
		wait := poll.Next()
		if !waiting || time.Now().Add(wait).After(deadline) {
			if waiting && o.wait > 0 {
				err = fmt.Errorf("%w (waited %v)", err, o.wait)
			}
			return name.Digest{}, nil, fmt.Errorf("the root's provenance does not verify, nothing written: %w", err)
		}
		fmt.Fprintf(s.err, "waiting for the builder's provenance of %s: %v; again in %v\n", ref, err, wait)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return name.Digest{}, nil, err
		}
	}
}

func (o *propagateOptions) readSourcesOnce(ctx context.Context, c *registry.Client, ref name.Reference, opts trees.VerifyOptions) (name.Digest, []*trees.Source, error) {
	m, err := c.GetManifest(ctx, ref, walk.MaxManifestBytes)
	if err != nil {
		return name.Digest{}, nil, err
	}
	root := ref.Context().Digest(m.Digest.String())
	sub := attest.Subject{Repository: ref.Context(), Descriptor: v1.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Raw))}}
	sources, err := trees.ReadSources(ctx, sub, opts, o.sourceTypes)
	return root, sources, err
}
