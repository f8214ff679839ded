package main

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "devel"

// registryOptions are the flags that say how to reach registries.
type registryOptions struct {
	allowInsecure bool
	retries       int
}

func (o *registryOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.allowInsecure, "allow-insecure-registry", false,
		"allow plain HTTP and registries with self-signed certificates (loopback registries use plain HTTP anyway)")
	cmd.Flags().BoolVar(&o.allowInsecure, "insecure", false, "alias of --allow-insecure-registry, as crane names it")
	cmd.Flags().IntVar(&o.retries, "retries", registry.DefaultRetries,
		"times a request failing with a connection error, 408, 429 or 5xx, or whose answer breaks off, is retried (0: none)")
}

// client is the run's one registry client: write asks for push access,
// jobs limits the requests each registry host answers at once.
func (o *registryOptions) client(s streams, write bool, jobs int) *registry.Client {
	retries := o.retries
	if retries == 0 {
		retries = -1
	}
	return registry.NewClient(registry.Options{
		Insecure: o.allowInsecure, Write: write, Retries: retries, Jobs: jobs,
		UserAgent: "nestattest/" + version, Secrets: s.secrets,
	})
}

// parseRef parses a tag or digest reference given on the command line.
func (o *registryOptions) parseRef(s string) (name.Reference, error) {
	ref, err := registry.Options{Insecure: o.allowInsecure}.ParseReference(s)
	if err != nil {
		return nil, usageError{fmt.Errorf("reference %q: %w", s, err)}
	}
	return ref, nil
}

// walkOptions are the flags that bound a walk.
type walkOptions struct {
	jobs, maxDepth, maxNodes int
	allowMissing             bool
}

func (o *walkOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().IntVarP(&o.jobs, "jobs", "j", walk.DefaultJobs, "requests each registry answers at once, and nodes processed at once, across the whole tree")
	cmd.Flags().IntVar(&o.maxDepth, "max-depth", walk.DefaultMaxDepth, "deepest a node may sit below the root")
	cmd.Flags().IntVar(&o.maxNodes, "max-nodes", walk.DefaultMaxNodes, "most distinct (repository, digest) nodes a tree may have")
	cmd.Flags().BoolVar(&o.allowMissing, "allow-missing", false, "record a child missing from its repository instead of failing (sparse indexes)")
}

func (o *walkOptions) options(c *registry.Client) (walk.Options, error) {
	if o.jobs < 1 || o.maxDepth < 1 || o.maxNodes < 1 {
		return walk.Options{}, usagef("--jobs, --max-depth and --max-nodes must be at least 1")
	}
	return walk.Options{
		Fetcher:      c,
		Jobs:         o.jobs,
		MaxDepth:     o.maxDepth,
		MaxNodes:     o.maxNodes,
		AllowMissing: o.allowMissing,
	}, nil
}

// outputOptions choose the output format.
type outputOptions struct {
	format string
}

func (o *outputOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "output format: text or json")
}

func (o *outputOptions) check() error {
	if o.format != "text" && o.format != "json" {
		return usagef("--output %q: want text or json", o.format)
	}
	return nil
}

// walkTree walks ref with the registry and walk flags.
func walkTree(ctx context.Context, s streams, ro *registryOptions, wo *walkOptions, arg string) (*walk.Tree, error) {
	ref, err := ro.parseRef(arg)
	if err != nil {
		return nil, err
	}
	opts, err := wo.options(ro.client(s, false, wo.jobs))
	if err != nil {
		return nil, err
	}
	return readTree(ctx, newProgress(s), ref, opts)
}
