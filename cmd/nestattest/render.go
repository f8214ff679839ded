package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/walk"
)

// nodeDoc is one node in JSON output; sign and verify reports extend it.
type nodeDoc struct {
	Path         string `json:"path"`
	Repository   string `json:"repository"`
	Digest       string `json:"digest"`
	MediaType    string `json:"mediaType,omitempty"`
	ArtifactType string `json:"artifactType,omitempty"`
	Kind         string `json:"kind"`
	Platform     string `json:"platform,omitempty"`
	Size         int64  `json:"size"`
	Depth        int    `json:"depth"`
	Parent       string `json:"parent,omitempty"`
	Error        string `json:"error,omitempty"`
}

func newNodeDoc(n *walk.Node) nodeDoc {
	d := nodeDoc{
		Path:         n.Path(),
		Repository:   n.Repository.Name(),
		Digest:       n.Descriptor.Digest.String(),
		MediaType:    string(n.Descriptor.MediaType),
		ArtifactType: n.ArtifactType,
		Kind:         string(n.Kind),
		Platform:     n.Platform(),
		Size:         n.Descriptor.Size,
		Depth:        n.Depth,
	}
	if n.Parent != nil {
		d.Parent = n.Parent.Digest().String()
	}
	if n.Err != nil {
		d.Error = n.Err.Error()
	}
	return d
}

// rootDoc names the root of a tree in JSON output.
type rootDoc struct {
	Reference  string `json:"reference"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
}

func newRootDoc(ref string, t *walk.Tree) rootDoc {
	return rootDoc{Reference: ref, Repository: t.Root.Repository.Name(), Digest: t.Root.Descriptor.Digest.String()}
}

// counts summarises a tree.
type counts struct {
	Nodes        int `json:"nodes"`
	Repositories int `json:"repositories"`
	Indexes      int `json:"indexes"`
	Images       int `json:"images"`
	Artifacts    int `json:"artifacts"`
	Missing      int `json:"missing"`
	Invalid      int `json:"invalid"`
}

func count(t *walk.Tree) counts {
	c := counts{Nodes: len(t.Nodes)}
	repos := map[string]bool{}
	for _, n := range t.Nodes {
		repos[n.Repository.Name()] = true
		switch n.Kind {
		case walk.KindIndex:
			c.Indexes++
		case walk.KindImage:
			c.Images++
		case walk.KindArtifact:
			c.Artifacts++
		case walk.KindMissing:
			c.Missing++
		case walk.KindInvalid:
			c.Invalid++
		}
	}
	c.Repositories = len(repos)
	return c
}

func (c counts) String() string {
	s := fmt.Sprintf("%s in %s (%s, %s, %s)", plural(c.Nodes, "node"), plural(c.Repositories, "repository"),
		plural(c.Indexes, "index"), plural(c.Images, "image"), plural(c.Artifacts, "artifact"))
	if c.Missing > 0 {
		s += fmt.Sprintf(", %d missing", c.Missing)
	}
	if c.Invalid > 0 {
		s += fmt.Sprintf(", %d unreadable", c.Invalid)
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTree writes a tree as indented text, a node per line: path, short
// digest, type, platform, and what mark adds (sign or verify status). A node
// listed twice is shown in full once and marked where it repeats.
func printTree(w io.Writer, t *walk.Tree, mark func(*walk.Node) string) {
	fmt.Fprintf(w, "%s %s%s\n", t.Root.Digest(), describe(t.Root), suffix(mark, t.Root))
	shown := map[*walk.Node]bool{t.Root: true}
	var print func(n *walk.Node, prefix string)
	print = func(n *walk.Node, prefix string) {
		for i, c := range n.Children {
			branch, next := "├── ", "│   "
			if i == len(n.Children)-1 {
				branch, next = "└── ", "    "
			}
			if shown[c] {
				fmt.Fprintf(w, "%s%s%s %s (listed above)\n", prefix, branch, c.Path(), walk.Short(c.Descriptor.Digest))
				continue
			}
			shown[c] = true
			fmt.Fprintf(w, "%s%s%s %s %s%s\n", prefix, branch, c.Path(), walk.Short(c.Descriptor.Digest), describe(c), suffix(mark, c))
			print(c, prefix+next)
		}
	}
	print(t.Root, "")
}

func suffix(mark func(*walk.Node) string, n *walk.Node) string {
	if mark == nil {
		return ""
	}
	if s := mark(n); s != "" {
		return "  " + s
	}
	return ""
}

// describe is a node's type and platform for people: "oci index",
// "docker image linux/amd64", "artifact application/spdx+json".
func describe(n *walk.Node) string {
	var parts []string
	switch n.Kind {
	case walk.KindMissing, walk.KindInvalid:
		parts = append(parts, strings.ToUpper(string(n.Kind)))
	case walk.KindArtifact:
		parts = append(parts, "artifact", artifactType(n))
	default:
		parts = append(parts, family(n.Descriptor.MediaType), string(n.Kind))
	}
	if p := n.Platform(); p != "" {
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func family(mt types.MediaType) string {
	if strings.Contains(string(mt), "docker") {
		return "docker"
	}
	return "oci"
}

func artifactType(n *walk.Node) string {
	if n.ArtifactType != "" {
		return n.ArtifactType
	}
	return string(n.Descriptor.MediaType)
}

// plural is "1 node", "2 nodes", "1 repository", "3 repositories".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	switch {
	case strings.HasSuffix(noun, "y") && !strings.HasSuffix(noun, "ey"):
		noun = noun[:len(noun)-1] + "ies"
	case strings.HasSuffix(noun, "s") || strings.HasSuffix(noun, "x"):
		noun += "es"
	default:
		noun += "s"
	}
	return fmt.Sprintf("%d %s", n, noun)
}

// pronoun is "its" or "their" for n things.
func pronoun(n int) string {
	if n == 1 {
		return "its"
	}
	return "their"
}

// readTree walks the tree under root, showing progress, and stops at the
// first node that cannot be read, as walk.Collect does.
func readTree(ctx context.Context, p *progress, root name.Reference, opts walk.Options) (*walk.Tree, error) {
	p.start("reading the tree", 0)
	defer p.end()
	return walk.Walk(ctx, root, opts, func(_ context.Context, _ *walk.Node, err error) error {
		p.step(err != nil)
		return err
	})
}

// nodeReason is a node's error without the node's own name, which the line
// already gives.
func nodeReason(n *walk.Node, err error) string {
	var ne *walk.NodeError
	if errors.As(err, &ne) && ne.Repository == n.Repository.Name() {
		return ne.Err.Error()
	}
	return err.Error()
}
