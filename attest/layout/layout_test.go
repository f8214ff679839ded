package layout

import (
	"strings"
	"testing"

	"github.com/nestattest/nestattest/attest"
)

func layoutsOf(stores []attest.Store) string {
	var out []string
	for _, s := range stores {
		out = append(out, string(s.Layout()))
	}
	return strings.Join(out, ",")
}

// TestFormats: sign writes one layout or both, legacy first; verify reads
// one, or every layout as cosign v3 reads a node, bundles first; any other
// name is refused naming the ones taken.
func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		read   bool
		format string
		want   string
	}{
		{false, "legacy", "legacy"}, {false, "bundle", "bundle"}, {false, Both, "legacy,bundle"},
		{true, "legacy", "legacy"}, {true, "bundle", "bundle"}, {true, Auto, "bundle,legacy"},
	} {
		f := Write
		if tc.read {
			f = Read
		}
		stores, err := f(tc.format)
		if err != nil || layoutsOf(stores) != tc.want {
			t.Errorf("read %v %q: %s, %v; want %s", tc.read, tc.format, layoutsOf(stores), err, tc.want)
		}
	}
	if _, err := Write(Auto); err == nil || err.Error() != `"auto": want legacy, bundle or both` {
		t.Errorf("Write(auto): %v", err)
	}
	if _, err := Read(Both); err == nil || err.Error() != `"both": want auto, legacy or bundle` {
		t.Errorf("Read(both): %v", err)
	}
	if Default != "legacy" {
		t.Errorf("default %s, want legacy (cosign v2's)", Default)
	}
}

// TestHelp: the flags' help names every layout, as the commands' reference
// pages show it.
func TestHelp(t *testing.T) {
	if got, want := ReadHelp(), "auto (bundles when a node has any, else legacy tags, as cosign v3), legacy or bundle"; got != want {
		t.Errorf("ReadHelp: %q, want %q", got, want)
	}
	if got, want := WriteHelp(), "legacy (cosign's sha256-<hex>.sig/.att tags), bundle (sigstore bundles as OCI 1.1 referrers, as cosign v3 writes), or both"; got != want {
		t.Errorf("WriteHelp: %q, want %q", got, want)
	}
}
