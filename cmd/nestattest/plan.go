package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/plan"
)

// Names of the plan's Tekton results and GitHub outputs.
const (
	resultPlan   = "PLAN"
	resultShards = "SHARDS"
)

type planOptions struct {
	registry   registryOptions
	walk       walkOptions
	output     outputOptions
	shards     int
	resultsDir string
	verbose    bool
}

func newPlan(s streams) *cobra.Command {
	o := &planOptions{}
	cmd := &cobra.Command{
		Use:   "plan REF --shards N",
		Short: "Walk a tree once and split it into shards for a Tekton Matrix or a GitHub Actions matrix",
		Long: `plan walks the tree under REF once, gives every node one of N shards
(balanced by node count, a repository's nodes kept together where that keeps
the shards balanced), and pushes the plan into REF's repository by digest,
without a tag. It hands on PLAN, the plan as repository@sha256:…, and SHARDS,
the shard ids as a JSON array of strings ["0","1",…]: a Tekton Matrix or a
GitHub Actions matrix runs one
  nestattest sign --plan PLAN --shard ID REF
per id, and each signs only its shard's nodes without walking the tree. A
final nestattest verify REF checks the whole tree.

A tree with fewer nodes than N gets one shard a node. Planning the same
tree in as many shards again pushes nothing.

Exit codes: 0 planned; 1 the tree could not be read or the plan not pushed;
2 bad flags or reference.`,
		Example: `  nestattest plan --shards 16 --results-dir /tekton/results quay.io/org/ko-build:latest
  nestattest plan --shards 8 -o json quay.io/org/rpms@sha256:…`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, s, args[0]) },
	}
	o.registry.addFlags(cmd)
	o.walk.addFlags(cmd)
	o.output.addFlags(cmd)
	cmd.Flags().IntVar(&o.shards, "shards", 0, fmt.Sprintf("number of shards, 1 to %d (Tekton's default cap on a matrix)", plan.MaxShards))
	cmd.Flags().StringVar(&o.resultsDir, "results-dir", "",
		"write the results "+resultPlan+" and "+resultShards+" into this directory (a Tekton results path such as /tekton/results)")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "print each shard's nodes and repositories")
	return cmd
}

func (o *planOptions) run(cmd *cobra.Command, s streams, arg string) error {
	ctx := cmd.Context()
	if err := o.output.check(); err != nil {
		return err
	}
	if o.shards < 1 || o.shards > plan.MaxShards {
		return usagef("--shards %d: want 1 to %d", o.shards, plan.MaxShards)
	}
	ref, err := o.registry.parseRef(arg)
	if err != nil {
		return err
	}
	client := o.registry.client(s, true, o.walk.jobs)
	wopts, err := o.walk.options(client)
	if err != nil {
		return err
	}
	tree, err := readTree(ctx, newProgress(s), ref, wopts)
	if err != nil {
		return fmt.Errorf("read the tree, no plan made: %w", err)
	}
	p, err := plan.New(tree, o.shards, plan.Walk{MaxDepth: o.walk.maxDepth, MaxNodes: o.walk.maxNodes, AllowMissing: o.walk.allowMissing})
	if err != nil {
		return err
	}
	enc, err := p.Encode()
	if err != nil {
		return err
	}
	pref, written, err := plan.Push(ctx, client, tree.Root.Repository, enc, o.walk.jobs)
	if err != nil {
		return err
	}
	doc := newPlanDoc(p, pref.String(), written)
	doc.Root = newRootDoc(arg, tree)
	if err := o.hand(doc); err != nil {
		return err
	}
	return o.print(s, doc)
}

// planDoc is the JSON output of `nestattest plan`.
type planDoc struct {
	Root rootDoc `json:"root"`
	// Plan is the plan, repository@sha256:…; Shards its shard ids.
	Plan   string   `json:"plan"`
	Shards []string `json:"shards"`
	// Written says whether this run pushed the plan (false: it was there).
	Written      bool `json:"written"`
	Nodes        int  `json:"nodes"`
	Repositories int  `json:"repositories"`
	// Split counts the repositories whose nodes are in more than one shard.
	Split int            `json:"splitRepositories"`
	Sizes []planShardDoc `json:"shardSizes"`
}

type planShardDoc struct {
	Shard        string `json:"shard"`
	Nodes        int    `json:"nodes"`
	Repositories int    `json:"repositories"`
}

func newPlanDoc(p *plan.Plan, ref string, written bool) planDoc {
	doc := planDoc{Plan: ref, Shards: p.IDs(), Written: written, Nodes: len(p.Entries), Split: p.Split()}
	repos := map[string]bool{}
	for _, e := range p.Entries {
		repos[e.Path] = true
	}
	doc.Repositories = len(repos)
	perShard := p.Repositories()
	for i, n := range p.Sizes() {
		doc.Sizes = append(doc.Sizes, planShardDoc{Shard: doc.Shards[i], Nodes: n, Repositories: perShard[i]})
	}
	return doc
}

// shardsJSON is SHARDS: the ids as a JSON array of strings, no spaces.
func (d planDoc) shardsJSON() string {
	b, _ := json.Marshal(d.Shards)
	return string(b)
}

// hand writes PLAN and SHARDS into the results directory (exact bytes, no
// newline) and, under GitHub Actions, the outputs plan and shards.
func (o *planOptions) hand(d planDoc) error {
	if o.resultsDir != "" {
		if err := writeFileAtomic(filepath.Join(o.resultsDir, resultPlan), []byte(d.Plan)); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(o.resultsDir, resultShards), []byte(d.shardsJSON())); err != nil {
			return err
		}
	}
	if p := os.Getenv("GITHUB_OUTPUT"); p != "" {
		return appendFile(p, githubOutputs(map[string]string{"plan": d.Plan, "shards": d.shardsJSON(), "nodes": fmt.Sprint(d.Nodes)}))
	}
	return nil
}

func (o *planOptions) print(s streams, d planDoc) error {
	if o.output.format == "json" {
		return writeJSON(s.out, d)
	}
	if o.verbose {
		for _, sz := range d.Sizes {
			fmt.Fprintf(s.err, "shard %-3s %s in %s\n", sz.Shard, plural(sz.Nodes, "node"), plural(sz.Repositories, "repository"))
		}
	}
	state := "pushed"
	if !d.Written {
		state = "already there"
	}
	fmt.Fprintf(s.out, "%s %s (%s)\n%s %s\n", resultPlan, d.Plan, state, resultShards, d.shardsJSON())
	_, err := fmt.Fprintf(s.out, "planned %s in %s into %s of %s; %s split across shards\n",
		plural(d.Nodes, "node"), plural(d.Repositories, "repository"), plural(len(d.Shards), "shard"), sizeRange(d.Sizes), plural(d.Split, "repository"))
	return err
}

// sizeRange says how many nodes the shards have: "625 nodes" or "4 to 5
// nodes".
func sizeRange(sizes []planShardDoc) string {
	lo, hi := sizes[0].Nodes, sizes[0].Nodes
	for _, s := range sizes {
		lo, hi = min(lo, s.Nodes), max(hi, s.Nodes)
	}
	if lo == hi {
		return plural(lo, "node")
	}
	return fmt.Sprintf("%d to %d nodes", lo, hi)
}

// planError turns a plan error into the exit code it deserves: a shard id
// out of range is bad input.
func planError(err error) error {
	if errors.Is(err, plan.ErrShardRange) {
		return usageError{err}
	}
	return err
}
