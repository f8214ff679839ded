package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestattest/nestattest/internal/docgen"
	"github.com/nestattest/nestattest/registry"
)

// docsDir is the command reference, generated from the commands.
var docsDir = filepath.Join("..", "..", "docs", "commands")

// TestCommandDocs: docs/commands is what the cobra commands generate, page
// for page, and holds no page of a command that is gone. `make docs`
// (NESTATTEST_UPDATE_DOCS=1) writes it.
func TestCommandDocs(t *testing.T) {
	root := newRoot(streams{in: strings.NewReader(""), out: io.Discard, err: io.Discard, secrets: &registry.Secrets{}})
	if os.Getenv("NESTATTEST_UPDATE_DOCS") == "1" {
		if err := docgen.Write(root, docsDir); err != nil {
			t.Fatal(err)
		}
	}
	pages := docgen.Pages(root)
	for name, want := range pages {
		got, err := os.ReadFile(filepath.Join(docsDir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("docs/commands/%s is not what the commands generate (%v); run `make docs`\n%s", name, err, firstDiff(string(got), string(want)))
		}
	}
	files, _ := filepath.Glob(filepath.Join(docsDir, "*.md"))
	for _, f := range files {
		if _, ok := pages[filepath.Base(f)]; !ok {
			t.Errorf("docs/commands/%s documents no command; run `make docs`", filepath.Base(f))
		}
	}
}

// firstDiff shows the first line that differs.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n  have: %s\n  want: %s", i+1, gl, wl)
		}
	}
	return ""
}
