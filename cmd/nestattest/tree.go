package main

import (
	"github.com/spf13/cobra"
)

// treeDoc is the JSON output of `nestattest tree`.
type treeDoc struct {
	Root    rootDoc   `json:"root"`
	Nodes   []nodeDoc `json:"nodes"`
	Summary counts    `json:"summary"`
}

type treeOptions struct {
	registry registryOptions
	walk     walkOptions
	output   outputOptions
}

func newTree(s streams) *cobra.Command {
	o := &treeOptions{}
	cmd := &cobra.Command{
		Use:   "tree REF",
		Short: "Show the tree of artifacts under a reference, across scoped repositories",
		Example: `  nestattest tree quay.io/org/ko-build:latest
  nestattest tree -o json quay.io/org/ko-build@sha256:…`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, s, args[0]) },
	}
	o.registry.addFlags(cmd)
	o.walk.addFlags(cmd)
	o.output.addFlags(cmd)
	return cmd
}

func (o *treeOptions) run(cmd *cobra.Command, s streams, arg string) error {
	if err := o.output.check(); err != nil {
		return err
	}
	tree, err := walkTree(cmd.Context(), s, &o.registry, &o.walk, arg)
	if err != nil {
		return err
	}
	if o.output.format == "json" {
		doc := treeDoc{Root: newRootDoc(arg, tree), Summary: count(tree)}
		for _, n := range tree.Nodes {
			doc.Nodes = append(doc.Nodes, newNodeDoc(n))
		}
		return writeJSON(s.out, doc)
	}
	printTree(s.out, tree, nil)
	_, err = s.out.Write([]byte(count(tree).String() + "\n"))
	return err
}
