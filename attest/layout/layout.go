// Package layout lists the storage layouts and makes their stores from the
// names the --format flags take: the one place a new layout is listed,
// beside its own package (legacy, bundle).
package layout

import (
	"fmt"
	"strings"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/bundle"
	"github.com/nestattest/nestattest/attest/legacy"
)

// The formats that are not one layout's name.
const (
	// Both writes every layout (sign, propagate).
	Both = "both"
	// Auto reads every layout, in reading order, as cosign v3 reads a node
	// (verify).
	Auto = "auto"
)

// Default is the layout written when none is named: cosign v2's default.
const Default = legacy.Layout

// layouts are the layouts, in the order a run that writes several writes
// them; read is the order a verifier that reads several reads them (the
// first that holds anything for a node is the one read).
var layouts = []struct {
	name  attest.Layout
	read  int
	store func() attest.Store
	help  string
	what  string // what a node carries in it, for people
}{
	{legacy.Layout, 1, func() attest.Store { return legacy.Store{} }, "cosign's sha256-<hex>.sig/.att tags", "legacy tags"},
	{bundle.Layout, 0, func() attest.Store { return &bundle.Store{} }, "sigstore bundles as OCI 1.1 referrers, as cosign v3 writes", "bundles"},
}

// Write returns the stores a run writes for format: a layout's name, or
// Both.
func Write(format string) ([]attest.Store, error) {
	var out []attest.Store
	for _, l := range layouts {
		if format == string(l.name) || format == Both {
			out = append(out, l.store())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: want %s or %s", format, strings.Join(names(), ", "), Both)
	}
	return out, nil
}

// Read returns the stores a verifier reads for format, in reading order: a
// layout's name, or Auto.
func Read(format string) ([]attest.Store, error) {
	out := make([]attest.Store, len(layouts))
	n := 0
	for _, l := range layouts {
		if format == string(l.name) {
			return []attest.Store{l.store()}, nil
		}
		if format == Auto {
			out[l.read] = l.store()
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%q: want %s, %s", format, Auto, strings.Join(names(), " or "))
	}
	return out, nil
}

// WriteHelp describes the formats Write takes, for a flag's help.
func WriteHelp() string {
	var parts []string
	for _, l := range layouts {
		parts = append(parts, fmt.Sprintf("%s (%s)", l.name, l.help))
	}
	return strings.Join(parts, ", ") + ", or " + Both
}

// ReadHelp describes the formats Read takes, for a flag's help.
func ReadHelp() string {
	order := make([]string, len(layouts))
	for _, l := range layouts {
		order[l.read] = l.what
	}
	return Auto + " (" + strings.Join(order[:len(order)-1], " when a node has any, else ") +
		" when a node has any, else " + order[len(order)-1] + ", as cosign v3), " + strings.Join(names(), " or ")
}

func names() []string {
	var out []string
	for _, l := range layouts {
		out = append(out, string(l.name))
	}
	return out
}
