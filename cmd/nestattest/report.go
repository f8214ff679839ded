package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// runReport hands on what a signing run did (sign, propagate): the failed
// nodes and a summary for people, the JSON report, the Tekton results and
// GitHub outputs; and picks the exit code.
type runReport struct {
	output  outputOptions
	results resultOptions
	verbose bool
	// counts writes NODES and WRITTEN as Tekton results instead of the
	// root's IMAGE_URL and IMAGE_DIGEST.
	counts bool
	// client, if set, says with verbose how its tokens fared.
	client *registry.Client
	// sboms, if set, found the nodes' attached SBOMs (sign --sbom
	// attached): the report says which nodes had none.
	sboms *sbomFinder
	// summaries, if set, are the outcomes of the verification summaries
	// written after signing (--vsa-key, --vsa-keyless), by node; a node
	// without one got none.
	summaries map[*walk.Node]trees.Outcome
}

// write reports rep for the tree under ref (arg as the user named it);
// what names what was attested, st who signed.
func (o runReport) write(s streams, ref name.Reference, arg string, tree *walk.Tree, rep *trees.Report, what string, st signingStats) error {
	doc := newSignDoc(arg, tree, rep)
	doc.Signing = &st
	if o.sboms != nil {
		doc.SBOM = newSBOMDoc(rep, o.sboms)
	}
	if o.summaries != nil {
		doc.summarized(o.summaries)
	}
	tally := rep.Tally()
	if o.output.format == "json" {
		if err := writeJSON(s.out, doc); err != nil {
			return err
		}
	} else {
		refused := map[string][]string{}
		var order []string
		for _, r := range rep.Results {
			var denied *registry.DeniedError
			switch {
			case errors.As(r.Err, &denied):
				if refused[denied.Error()] == nil {
					order = append(order, denied.Error())
				}
				refused[denied.Error()] = append(refused[denied.Error()], r.Node.Path()+" "+walk.Short(r.Node.Descriptor.Digest))
			case r.Err != nil:
				fmt.Fprintf(s.err, "failed  %s %s: %s\n", r.Node.Path(), walk.Short(r.Node.Descriptor.Digest), nodeReason(r.Node, r.Err))
			case o.verbose:
				fmt.Fprintf(s.err, "%-7s %s %s\n", r.Outcome(), r.Node.Path(), r.Node.Descriptor.Digest)
			}
		}
		for _, msg := range order {
			fmt.Fprintf(s.err, "refused %s (%s: %s)\n", msg, plural(len(refused[msg]), "node"), strings.Join(refused[msg], ", "))
		}
		if o.verbose && o.client != nil {
			fmt.Fprintln(s.err, tokenLine(o.client))
		}
		fmt.Fprintln(s.out, signSummary(tally, count(tree), what))
		if doc.SBOM != nil {
			fmt.Fprintln(s.out, doc.SBOM.String())
		}
		fmt.Fprintln(s.out, st.String())
	}
	var images []string
	if !o.counts {
		images = nodesBelow(tree)
	}
	err := o.results.write(results{
		root: ref, digest: tree.Root.Descriptor.Digest.String(), report: doc, images: images, log: s.err,
		outputs: map[string]string{
			"nodes": fmt.Sprint(tally.Nodes), "written": fmt.Sprint(tally.Written),
			"present": fmt.Sprint(tally.Present), "failed": fmt.Sprint(tally.Failed),
		},
		summary: signMarkdown(arg, tree, doc) + "\n" + st.String() + "\n",
		counts:  o.counts,
	})
	if err != nil {
		return err
	}
	if tally.Failed > 0 {
		return errFailed
	}
	return nil
}

// tokenLine says how the registry tokens of a run fared: "registry tokens:
// 4 token requests; 2 requests met an expired token and were sent again
// with a fresh one".
func tokenLine(c *registry.Client) string {
	return fmt.Sprintf("registry tokens: %s; %s an expired token and %s sent again with a fresh one",
		plural(c.TokenRequests(), "token request"), plural(c.ExpiredTokens(), "request")+" met", wereWas(c.ExpiredTokens()))
}

func wereWas(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}
