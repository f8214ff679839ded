package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/plan"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// shardOptions make sign and verify work on one shard of a plan: --plan
// PLAN --shard ID.
type shardOptions struct {
	plan string
	id   string // --shard as given
	// shard is --shard's id, once checked; read the shard's document, once
	// read.
	shard int
	read  *plan.Shard
}

func (o *shardOptions) addFlags(cmd *cobra.Command, verb string) {
	cmd.Flags().StringVar(&o.plan, "plan", "",
		"the `PLAN` nestattest plan made (its PLAN result, repository@sha256:…): "+verb+" only the nodes of --shard, without walking the tree")
	cmd.Flags().StringVar(&o.id, "shard", "", "the shard of --plan to "+verb+", an `ID` of the plan's SHARDS")
}

// requested reports whether --plan or --shard was given.
func (o *shardOptions) requested() bool { return o.plan != "" || o.id != "" }

// check refuses --plan without --shard and the reverse, a shard id no plan
// has, and composing a root (which plan does not see) with a plan.
func (o *shardOptions) check(composing bool) error {
	if !o.requested() {
		return nil
	}
	n, err := strconv.Atoi(o.id)
	switch {
	case o.plan == "":
		return usagef("--shard needs --plan")
	case o.id == "":
		return usagef("--plan needs --shard")
	case err != nil || strconv.Itoa(n) != o.id:
		return usagef("--shard %q: want a shard id, 0 to the plan's last", o.id)
	case n < 0 || n >= plan.MaxShards:
		return usageError{fmt.Errorf("%w: --shard %d; shards are 0 to %d at most", plan.ErrShardRange, n, plan.MaxShards-1)}
	case composing:
		return usagef("--plan works on a tree already planned: compose it (--child, --from, --discover) before nestattest plan, not with --plan")
	}
	o.shard = n
	return nil
}

// readTree reads what a run works on: the whole tree, or with --plan the
// shard's nodes, confirmed against the plan, without walking the tree.
func (o *shardOptions) readTree(ctx context.Context, s streams, p *progress, c *registry.Client, ref name.Reference, wopts walk.Options) (*walk.Tree, error) {
	if !o.requested() {
		return readTree(ctx, p, ref, wopts)
	}
	pref, err := c.Options().ParseReference(o.plan)
	if err != nil {
		return nil, usagef("--plan %q: %v", o.plan, err)
	}
	d, ok := pref.(name.Digest)
	if !ok {
		return nil, usagef("--plan %s: want the plan by digest, repository@sha256:… (plan's PLAN result)", o.plan)
	}
	p.start("reading shard "+fmt.Sprint(o.shard), 0)
	tree, doc, err := plan.Load(ctx, c, d, ref, o.shard, wopts.Jobs)
	p.end()
	if err != nil {
		return nil, planError(err)
	}
	o.read = doc
	fmt.Fprintf(s.err, "shard %d of %d of plan %s: %s of %d, in %s\n", doc.Shard, doc.Shards, d,
		plural(len(tree.Nodes), "node"), doc.Nodes, plural(count(tree).Repositories, "repository"))
	return tree, nil
}

// provenance records the walk the plan was made with in the default
// provenance, as an unsharded run records its own: a shard's statement is
// the one an unsharded run with the same flags makes.
func (o *shardOptions) provenance(p statement.Predicates) statement.Predicates {
	prov, ok := p.(statement.Provenance)
	if o.read == nil || !ok || prov.Parameters == nil || prov.Parameters.Walk == nil {
		return p
	}
	w := o.read.Walk
	params := *prov.Parameters
	params.Walk = &statement.WalkParameters{MaxDepth: w.MaxDepth, MaxNodes: w.MaxNodes, AllowMissing: w.AllowMissing}
	prov.Parameters = &params
	return prov
}

// results are what a shard hands on: everything but IMAGE_URL and
// IMAGE_DIGEST, which name the whole tree once the final verify passed.
func (o *shardOptions) results(s streams, r resultOptions) resultOptions {
	if o.read != nil && r.dir != "" {
		fmt.Fprintln(s.err, "--results-dir: a shard writes no IMAGE_URL and IMAGE_DIGEST; nestattest verify --results-dir writes them once the whole tree passed")
		r.dir = ""
	}
	if o.read != nil {
		r.images.mode = imagesNever // a shard's nodes are not the tree's
	}
	return r
}

// verifyShard verifies the nodes of one shard of a plan.
func (o *verifyOptions) verifyShard(ctx context.Context, s streams, c *registry.Client, arg string, ref name.Reference, vopts trees.VerifyOptions) error {
	if o.results.dir != "" {
		return usagef("--results-dir with --shard: IMAGE_URL and IMAGE_DIGEST name a tree that passed whole; verify the whole tree to write them")
	}
	wopts, err := o.walk.options(c)
	if err != nil {
		return err
	}
	progress := newProgress(s)
	tree, err := o.shard.readTree(ctx, s, progress, c, ref, wopts)
	if err != nil {
		return fmt.Errorf("read the shard: %w", err)
	}
	progress.start("verifying", len(tree.Nodes))
	vopts.Progress = func(v trees.Verdict) { progress.step(!v.Passed()) }
	rep, err := trees.VerifyNodes(ctx, tree, tree.Nodes, vopts)
	progress.end()
	if err != nil {
		return err
	}
	if err := o.print(s, arg, tree, rep); err != nil {
		return err
	}
	if rep.Failed() > 0 {
		return errFailed
	}
	return nil
}

// verifyResultOptions say where verify hands on the root it verified.
type verifyResultOptions struct {
	dir string
}

func (o *verifyResultOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.dir, "results-dir", "",
		"once every node passed, write the root's IMAGE_URL and IMAGE_DIGEST into this directory (a Tekton results path such as /tekton/results), for Tekton Chains")
}

// write hands on a tree that passed whole: IMAGE_URL and IMAGE_DIGEST in
// the results directory and, under GitHub Actions, the outputs url, digest,
// reference and nodes.
func (o *verifyResultOptions) write(ref name.Reference, tree *walk.Tree) error {
	r := resultOptions{dir: o.dir}
	return r.write(results{root: ref, digest: tree.Root.Descriptor.Digest.String(),
		outputs: map[string]string{"nodes": fmt.Sprint(len(tree.Nodes))}})
}
