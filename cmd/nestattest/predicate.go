package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/catalog"
	"github.com/nestattest/nestattest/registry"
)

// predicateOptions choose what each node's attestation says: the default
// SLSA v1.0 provenance, or the user's predicate as `cosign attest` takes it.
type predicateOptions struct {
	path, typ                                      string
	builderID, invocationID, startedOn, finishedOn string
}

func (o *predicateOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.path, "predicate", "", "attest this predicate file for every node instead of the default SLSA v1.0 provenance")
	cmd.Flags().StringVar(&o.typ, "type", "",
		"predicate type as cosign attest takes it: slsaprovenance, slsaprovenance02, slsaprovenance1, link, spdx, spdxjson, cyclonedx, vuln, openvex, custom, or a URI (default: slsaprovenance1, or custom with --predicate)")
	cmd.Flags().StringVar(&o.builderID, "builder-id", "", "provenance runDetails.builder.id (default: the GitHub workflow under GitHub Actions, else "+statement.DefaultBuilderID+")")
	cmd.Flags().StringVar(&o.invocationID, "invocation-id", "", "provenance runDetails.metadata.invocationId, such as a TaskRun's uid (default: the GitHub run URL under GitHub Actions)")
	cmd.Flags().StringVar(&o.startedOn, "started-on", "", "provenance startedOn, RFC 3339 (default: when this run started)")
	cmd.Flags().StringVar(&o.finishedOn, "finished-on", "", "provenance finishedOn, RFC 3339 (default: when the tree had been read)")
}

// predicates returns what to attest. started is when the run began.
func (o *predicateOptions) predicates(started time.Time) (statement.Predicates, error) {
	if o.path != "" {
		return o.file()
	}
	if o.typ != "" && o.typ != "slsaprovenance1" {
		return nil, usagef("--type %s needs --predicate FILE; without it nestattest attests SLSA v1.0 provenance (slsaprovenance1)", o.typ)
	}
	p := statement.Provenance{BuilderID: o.builderID, InvocationID: o.invocationID, StartedOn: started,
		GitHub: statement.GitHubFromEnv(os.Getenv)}
	var err error
	if p.StartedOn, err = parseTime("--started-on", o.startedOn, started); err != nil {
		return nil, err
	}
	if p.FinishedOn, err = parseTime("--finished-on", o.finishedOn, time.Time{}); err != nil {
		return nil, err
	}
	return p, nil
}

// provenance records in the default provenance what the run was asked
// (the reference as given, the walk's bounds, how it composed) and, when
// it composed the root, the children and their mirrored copies.
func (o *signOptions) provenance(ctx context.Context, p statement.Predicates, arg string, c *registry.Client, res *catalog.Result) (statement.Predicates, error) {
	prov, ok := p.(statement.Provenance)
	if !ok {
		return p, nil
	}
	prov.Parameters = &statement.Parameters{Reference: arg, Walk: &statement.WalkParameters{
		MaxDepth: o.walk.maxDepth, MaxNodes: o.walk.maxNodes, AllowMissing: o.walk.allowMissing,
	}}
	if res == nil {
		return prov, nil
	}
	prov.Parameters.Compose = &statement.ComposeParameters{
		Mirror: string(res.Mirror), Discover: o.catalog.discover, ChildTag: o.catalog.childTag, IndexAnnotations: res.Annotations,
	}
	return prov.Composed(ctx, c, res, o.walk.jobs)
}

// finish stamps the default provenance's finishedOn when no flag set it.
func finish(p statement.Predicates, at time.Time) statement.Predicates {
	if prov, ok := p.(statement.Provenance); ok && prov.FinishedOn.IsZero() {
		prov.FinishedOn = at
		return prov
	}
	return p
}

func (o *predicateOptions) file() (statement.Predicates, error) {
	typ := o.typ
	if typ == "" {
		typ = "custom" // as cosign attest
	}
	if _, err := statement.PredicateURI(typ); err != nil {
		return nil, usageError{err}
	}
	raw, err := os.ReadFile(o.path)
	if err != nil {
		return nil, usagef("--predicate: %v", err)
	}
	return statement.FilePredicate{PredicateType: typ, Raw: raw}, nil
}

func parseTime(flag, value string, def time.Time) (time.Time, error) {
	if value == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return time.Time{}, usagef("%s %q: want RFC 3339, such as 2026-01-02T15:04:05Z", flag, value)
	}
	return t, nil
}

// parseAnnotations reads k=v pairs as cosign's -a takes them.
func parseAnnotations(flag string, pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef("%s %q: want key=value", flag, p)
		}
		out[k] = v
	}
	return out, nil
}

// describePredicate names the predicate for people.
func describePredicate(p statement.Predicates) string {
	if _, ok := p.(statement.Provenance); ok {
		return "SLSA v1.0 provenance"
	}
	uri, _ := statement.PredicateURI(p.Type())
	return fmt.Sprintf("%s predicate (%s)", p.Type(), uri)
}
