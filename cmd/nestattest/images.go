package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/tektonresult"
	"github.com/nestattest/nestattest/walk"
)

// Values of --images.
const (
	imagesAuto   = "auto"
	imagesAlways = "always"
	imagesNever  = "never"
)

// imagesOptions say whether sign lists the nodes below the root in the
// IMAGES result, and how big Tekton lets results be.
type imagesOptions struct {
	mode          string
	resultsFrom   string
	maxResultSize int
}

func (o *imagesOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.mode, "images", imagesAuto,
		"the IMAGES result (with --results-dir) and output: every node below the root, repository@digest, comma-separated, as Tekton Chains' type hint takes it: auto (when it fits the size Tekton allows, else empty and said so), always (fail when it does not fit), never (empty)")
	cmd.Flags().StringVar(&o.resultsFrom, "results-from", string(tektonresult.FromTerminationMessage),
		"how Tekton reads the results, its results-from feature flag: termination-message (all results of the step share 4,096 bytes) or sidecar-logs (each result up to --max-result-size)")
	cmd.Flags().IntVar(&o.maxResultSize, "max-result-size", tektonresult.DefaultMaxResultSize,
		"with --results-from sidecar-logs, Tekton's max-result-size feature flag: the bytes each result's log line may take")
}

// check refuses flags that name no mode or limits Tekton would not run with.
func (o *imagesOptions) check() error {
	switch o.mode {
	case "", imagesAuto, imagesAlways, imagesNever:
	default:
		return usagef("--images %q: want auto, always or never", o.mode)
	}
	if o.mode == "" {
		return nil
	}
	if err := o.limits().Check(); err != nil {
		return usagef("--results-from, --max-result-size: %v", err)
	}
	return nil
}

func (o *imagesOptions) limits() tektonresult.Limits {
	return tektonresult.Limits{From: tektonresult.From(o.resultsFrom), MaxResultSize: o.maxResultSize}
}

// value is the IMAGES result to write beside files into dir: the list of
// r.images when the mode and Tekton's limits allow it, else "" (no
// image), said on r.log. With always, a list that does not fit is an
// error; never is a list cut short.
func (o *imagesOptions) value(r results, dir string, files map[string]string) (string, error) {
	if r.images == nil || o.mode == "" || o.mode == imagesNever || dir == "" {
		return "", nil
	}
	list := strings.Join(r.images, ",")
	rs := make([]tektonresult.Result, 0, len(files)+1)
	for name, v := range files {
		rs = append(rs, tektonresult.Result{Name: name, Value: v})
	}
	rs = append(rs, tektonresult.Result{Name: resultImages, Value: list})
	size, limit := o.limits().Size(tektonresult.StepOf(dir), rs)
	where := fmt.Sprintf("%d of the %d bytes of the termination message the step's results share", size, limit)
	if o.limits().From == tektonresult.FromSidecarLogs {
		where = fmt.Sprintf("a %d-byte line of the %d the results sidecar may print (max-result-size)", size, limit)
	}
	nodes := plural(len(r.images), "node") + " below the root"
	switch {
	case size <= limit:
		fmt.Fprintf(r.log, "IMAGES: %s, %s\n", nodes, where)
		return list, nil
	case o.mode == imagesAlways:
		return "", fmt.Errorf("--images always: the IMAGES result would take %s; Tekton would fail the step. "+
			"Use --results-from sidecar-logs with a larger --max-result-size where the cluster allows it, or --images auto", where)
	}
	fmt.Fprintf(r.log, "IMAGES: not emitted (empty): %s would take %s. Tekton Chains signs and attests the root alone; "+
		"nestattest propagate gives the nodes below it the root's provenance (docs/tekton.md)\n", nodes, where)
	return "", nil
}

// nodesBelow lists the nodes of tree below its root, each
// repository@digest in its own repository, in tree order: what the IMAGES
// result names. Missing and unreadable nodes are left out.
func nodesBelow(tree *walk.Tree) []string {
	out := []string{}
	for _, n := range tree.Nodes {
		if n == tree.Root || n.Kind == walk.KindMissing || n.Kind == walk.KindInvalid {
			continue
		}
		out = append(out, n.Digest().String())
	}
	return out
}
