package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/catalog"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// Values of --missing-tag.
const (
	missingTagSkip = "skip"
	missingTagFail = "fail"
)

// catalogOptions are the flags that compose a parent index: where its
// children come from and how it is pushed. sign takes them too, and
// composes first when any child source is given.
type catalogOptions struct {
	children    []string
	from        []string
	discover    bool
	childTag    string
	missingTag  string
	pageSize    int
	annotations []string
	mirror      string
	dryRun      bool // only `nestattest catalog` has the flag
	stdin       func() io.Reader
}

func (o *catalogOptions) addFlags(cmd *cobra.Command) {
	o.stdin = cmd.InOrStdin
	f := cmd.Flags()
	f.StringArrayVar(&o.children, "child", nil, "a child as PATH=REF, REF in <parent>/PATH, in full or as :TAG or @DIGEST (repeatable)")
	f.StringArrayVar(&o.from, "from", nil, "a FILE of child references, one a line as ko build prints them, - for standard input; blank lines and # comments are skipped (repeatable)")
	f.BoolVar(&o.discover, "discover", false, "add every repository below the parent that the registry's _catalog lists, at --child-tag")
	f.StringVar(&o.childTag, "child-tag", "", "the tag discovered children are resolved at (default: the parent's tag)")
	f.StringVar(&o.missingTag, "missing-tag", missingTagSkip, "a discovered repository without --child-tag is reported and skipped (skip) or fatal (fail)")
	f.IntVar(&o.pageSize, "catalog-page-size", catalog.DefaultPageSize, "repositories asked for per _catalog page with --discover")
	f.StringArrayVar(&o.annotations, "index-annotation", nil, "a key=value annotation on the composed parent index itself (repeatable)")
	f.StringVar(&o.mirror, "mirror", string(catalog.DefaultMirror),
		"mirror children into the parent repository: auto (when the registry refuses the parent without them), always or never")
}

// requested reports whether any child source was given.
func (o *catalogOptions) requested() bool {
	return len(o.children) > 0 || len(o.from) > 0 || o.discover
}

// readsStdin says whether a --from reads standard input.
func (o *catalogOptions) readsStdin() bool {
	for _, f := range o.from {
		if f == "-" {
			return true
		}
	}
	return false
}

// compose composes the parent index of parent from the flags' children,
// pushes it, and returns it by digest with what was done. The walk flags
// bound the walks mirroring makes. Bad input is a usageError.
func (o *catalogOptions) compose(ctx context.Context, c *registry.Client, parent name.Tag, wo walkOptions) (name.Digest, *catalog.Result, error) {
	opts, err := o.options(c, parent.Context(), wo)
	if err != nil {
		return name.Digest{}, nil, err
	}
	res, err := catalog.Compose(ctx, parent, opts)
	if err != nil {
		return name.Digest{}, res, classify(err)
	}
	return res.Root, res, nil
}

// options converts the flags into catalog.Options.
func (o *catalogOptions) options(c *registry.Client, parent name.Repository, wo walkOptions) (catalog.Options, error) {
	mirror, err := catalog.ParseMirror(o.mirror)
	if err != nil {
		return catalog.Options{}, usagef("--mirror: %v", err)
	}
	if o.missingTag != missingTagSkip && o.missingTag != missingTagFail {
		return catalog.Options{}, usagef("--missing-tag %q: want %s or %s", o.missingTag, missingTagSkip, missingTagFail)
	}
	if o.pageSize < 1 {
		return catalog.Options{}, usagef("--catalog-page-size must be at least 1")
	}
	wopts, err := wo.options(c)
	if err != nil {
		return catalog.Options{}, err
	}
	annotations, err := parseAnnotations("--index-annotation", o.annotations)
	if err != nil {
		return catalog.Options{}, err
	}
	children, err := o.parseChildren(parent, c.Options().NameOptions())
	if err != nil {
		return catalog.Options{}, err
	}
	return catalog.Options{
		Client: c, Children: children, Discover: o.discover, Listing: catalog.DiscoverOptions{PageSize: o.pageSize},
		ChildTag: o.childTag, SkipMissing: o.missingTag == missingTagSkip, Annotations: annotations,
		Mirror: mirror, Walk: wopts, DryRun: o.dryRun,
	}, nil
}

// parseChildren reads --child and --from.
func (o *catalogOptions) parseChildren(parent name.Repository, nopts []name.Option) ([]catalog.Child, error) {
	var out []catalog.Child
	for _, spec := range o.children {
		c, err := catalog.ParseChild(parent, spec, nopts...)
		if err != nil {
			return nil, usageError{err}
		}
		out = append(out, c)
	}
	stdin := false
	for _, path := range o.from {
		if path == "-" && stdin {
			return nil, usagef("--from: - (standard input) is given twice")
		}
		stdin = stdin || path == "-"
		cs, err := o.readReferences(parent, path, nopts)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}

// readReferences reads a --from file, or standard input for "-".
func (o *catalogOptions) readReferences(parent name.Repository, path string, nopts []name.Option) ([]catalog.Child, error) {
	if path == "-" {
		cs, err := catalog.ParseReferences(parent, o.stdin(), "standard input", nopts...)
		return cs, classify(err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("--from: %v", err)
	}
	defer f.Close()
	cs, err := catalog.ParseReferences(parent, f, path, nopts...)
	return cs, classify(err)
}

// classify marks refused input as a usage error (exit code 2).
func classify(err error) error {
	for _, bad := range []error{catalog.ErrSyntax, catalog.ErrOutside, catalog.ErrPath, catalog.ErrDuplicate, catalog.ErrNoChildren} {
		if errors.Is(err, bad) {
			return usageError{err}
		}
	}
	return err
}

// catalogCommand is `nestattest catalog`.
type catalogCommand struct {
	registry registryOptions
	walk     walkOptions
	output   outputOptions
	results  resultOptions
	catalog  catalogOptions
}

func newCatalog(s streams) *cobra.Command {
	o := &catalogCommand{}
	cmd := &cobra.Command{
		Use:   "catalog PARENT:TAG",
		Short: "Compose one parent index for a namespace whose entries point into its scoped child repositories",
		Long: `catalog composes an OCI image index at PARENT:TAG with one entry per child:
the child's own descriptor, annotated ` + walk.AnnotationRepository + ` with its
path below PARENT, sorted by path, without timestamps (the same children give
the same digest). Children come from --child, from --from files (the lines
` + "`ko build`" + ` prints) and, with --discover, from the registry's _catalog. Every
input is checked, and every child resolved, before anything is pushed.

Registries that check index children refuse such a parent. --mirror auto
(the default) then pushes every manifest it needs into PARENT by digest,
without tags, its blobs mounted from the child repositories, and pushes the
parent again. A child's home stays its own repository.

To compose and sign in one step, give sign the same child flags.

Exit codes: 0 composed and pushed; 1 a child is missing or the registry
refused; 2 bad flags, references or paths.`,
		Example: `  ko build ./cmd/... > refs.txt   # KO_DOCKER_REPO=quay.io/org/ko-build, --base-import-paths
  nestattest catalog --from refs.txt quay.io/org/ko-build:latest
  ko build ./cmd/... | nestattest catalog --from - quay.io/org/ko-build:latest
  nestattest catalog --child app1=:v1 --child app2=@sha256:… quay.io/org/ko-build:v1
  nestattest catalog --discover --results-dir /tekton/results quay.io/org/myrpmrepo:latest`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, s, args[0]) },
	}
	o.registry.addFlags(cmd)
	o.output.addFlags(cmd)
	o.results.addFlags(cmd)
	o.catalog.addFlags(cmd)
	o.walk.addFlags(cmd)
	cmd.Flags().BoolVar(&o.catalog.dryRun, "dry-run", false, "compose and print the parent index, push nothing")
	return cmd
}

func (o *catalogCommand) run(cmd *cobra.Command, s streams, arg string) error {
	if err := o.output.check(); err != nil {
		return err
	}
	client := o.registry.client(s, !o.catalog.dryRun, o.walk.jobs)
	parent, err := name.NewTag(arg, client.Options().NameOptions()...)
	if err != nil {
		return usagef("parent %q: %v (want REPOSITORY:TAG)", arg, err)
	}
	_, res, err := o.catalog.compose(cmd.Context(), client, parent, o.walk)
	if res != nil && (err == nil || res.Digest != "") {
		if perr := o.print(s, res); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	if o.catalog.dryRun {
		return nil
	}
	return o.results.write(results{
		root: parent, digest: res.Digest, report: res, summary: catalogMarkdown(res),
		outputs: map[string]string{"children": fmt.Sprint(len(res.Children)), "mirrored": fmt.Sprint(res.Mirrored)},
	})
}

func (o *catalogCommand) print(s streams, res *catalog.Result) error {
	for _, sk := range res.Skipped {
		fmt.Fprintf(s.err, "skipped %s: %s\n", sk.Path, sk.Reason)
	}
	if o.output.format == "json" {
		return writeJSON(s.out, res)
	}
	printCatalog(s.out, res)
	if o.catalog.dryRun {
		fmt.Fprintln(s.out, "nothing pushed (--dry-run); -o json shows the composed manifest")
	}
	return nil
}

// printCatalog writes the parent and a line per child for people.
func printCatalog(w io.Writer, res *catalog.Result) {
	fmt.Fprintf(w, "%s@%s  %s, %d children\n", res.Repository, res.Digest, catalogStatus(res), len(res.Children))
	width := 0
	for _, c := range res.Children {
		width = max(width, len(c.Path))
	}
	for _, c := range res.Children {
		line := fmt.Sprintf("  %-*s  %s  %s", width, c.Path, shortDigest(c.Digest), strings.TrimSpace(family(c.MediaType)+" "+kindOf(c)+" "+c.Platform))
		if m := c.Mirror; m != nil {
			line += fmt.Sprintf("  mirrored: %d manifests pushed (%d there), %d blobs mounted, %d uploaded (%d bytes), %d there; %d requests",
				m.ManifestsPushed, m.ManifestsPresent, m.BlobsMounted, m.BlobsUploaded, m.BytesUploaded, m.BlobsPresent, c.Requests)
		}
		fmt.Fprintln(w, line)
	}
}

func catalogStatus(res *catalog.Result) string {
	switch {
	case res.Present:
		return "unchanged (the tag already names it)"
	case !res.Pushed:
		return "composed (not pushed)"
	case res.Mirrored:
		return "pushed, children mirrored into " + res.Repository
	}
	return "pushed"
}

func kindOf(c catalog.ChildResult) string {
	if c.MediaType.IsIndex() {
		return "index"
	}
	if c.ArtifactType != "" {
		return "artifact " + c.ArtifactType
	}
	return "image"
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// catalogMarkdown is the GitHub step summary.
func catalogMarkdown(res *catalog.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### nestattest catalog `%s`\n\nParent `%s@%s`, %d children\n\n", res.Reference, res.Repository, res.Digest, len(res.Children))
	b.WriteString("| path | digest | type | mirrored |\n|---|---|---|---|\n")
	for _, c := range res.Children {
		fmt.Fprintf(&b, "| %s | `%s` | %s | %v |\n", c.Path, shortDigest(c.Digest), strings.TrimSpace(kindOf(c)+" "+c.Platform), c.Mirrored)
	}
	for _, sk := range res.Skipped {
		fmt.Fprintf(&b, "\nskipped %s: %s\n", sk.Path, sk.Reason)
	}
	return b.String()
}
